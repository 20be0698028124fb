package main

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"testing"

	"github.com/packetscope/packetscope/responder"
)

// TestAnalyzeCaptures: `packetscope analyze` proposes rules that match at
// least 99 % of each real attack capture and at most 1 % of the ordinary
// traffic capture.
func TestAnalyzeCaptures(t *testing.T) {
	re := regexp.MustCompile(`accepted rules together: coverage ([0-9.]+) % .*collateral ([0-9.]+) %`)
	for _, capture := range []string{"pkt.TCP.synflood.spoofed.pcap", "amp.UDP.snmp.src161.pcapng"} {
		t.Run(capture, func(t *testing.T) {
			var out bytes.Buffer
			err := runAnalyze(context.Background(), analyzeConfig{
				pcap: "../../responder/testdata/" + capture, baseline: "../../responder/testdata/ordinary.pcap",
				neverBlock: []string{"10.10.10.10/32"}, output: "text", analyst: analystConfig{analyst: responder.AnalystBuiltin}, mode: responder.ModeEnforce, out: &out,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Log("\n" + out.String())
			m := re.FindStringSubmatch(out.String())
			if m == nil {
				t.Fatal("no summary line")
			}
			cov, _ := strconv.ParseFloat(m[1], 64)
			col, _ := strconv.ParseFloat(m[2], 64)
			if cov < 99 || col > 1 {
				t.Errorf("coverage %.3f %%, collateral %.3f %%", cov, col)
			}
		})
	}
}
