package testnet

import (
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestRewriteCaptureKeepsLengthsAndFixesChecksums checks both shipped
// captures with tcpdump, which verifies every checksum it prints.
func TestRewriteCaptureKeepsLengthsAndFixesChecksums(t *testing.T) {
	dmac, _ := net.ParseMAC("02:00:00:00:00:01")
	smac, _ := net.ParseMAC("02:00:00:00:00:02")
	for _, tc := range []struct {
		file, wantLen string
		packets       int
	}{
		{"pkt.TCP.synflood.spoofed.pcap", "length 40)", 37841},
		{"amp.UDP.snmp.src161.pcapng", "proto UDP (17), length 54)", 4373},
	} {
		t.Run(tc.file, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out.pcap")
			n, err := RewriteCapture(filepath.Join("..", "..", "responder", "testdata", tc.file), out,
				netip.MustParseAddr("10.10.10.10"), netip.MustParseAddr("10.9.0.1"), dmac, smac)
			if err != nil {
				t.Fatal(err)
			}
			if n < tc.packets*99/100 {
				t.Errorf("rewrote %d packets, want about %d", n, tc.packets)
			}
			dump, err := exec.Command("tcpdump", "-vvnr", out, "-c", "200").CombinedOutput()
			if err != nil {
				t.Fatalf("tcpdump: %v\n%s", err, dump)
			}
			text := string(dump)
			if strings.Contains(text, "incorrect") || strings.Contains(text, "bad cksum") || strings.Contains(text, "bad udp cksum") {
				t.Errorf("a checksum is wrong after the rewrite:\n%s", text[:min(len(text), 2000)])
			}
			if !strings.Contains(text, "10.9.0.1") || !strings.Contains(text, tc.wantLen) {
				t.Errorf("rewritten packets lack the new address or original length %q:\n%s", tc.wantLen, text[:min(len(text), 1000)])
			}
			if strings.Contains(text, "10.10.10.10") {
				t.Errorf("the old victim address is still there")
			}
		})
	}
}
