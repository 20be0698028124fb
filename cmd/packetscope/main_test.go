package main

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/packetscope/packetscope/agentapi"
	"github.com/packetscope/packetscope/guard"
	"github.com/packetscope/packetscope/responder"
)

func flagNames(cmd *kingpin.CmdClause) []string {
	var names []string
	for _, f := range cmd.Model().Flags {
		names = append(names, f.Name)
	}
	return names
}

// TestCommandFlags: each command has the flags the README's configuration
// table promises, and `run` has both the agent's and the responder's own
// flags, each once.
func TestCommandFlags(t *testing.T) {
	c := newCLI()
	agentFlags := []string{"web.listen-address", "web.config.file", "interfaces", "api.token-file", "bpf.pin-path",
		"guard.sample-every", "guard.max-rules", "guard.traffic-max-samples"}
	responderOwn := []string{"webhook.token-file", "responder.audit-file", "analyst", "llm.base-url", "llm.model",
		"llm.api-key-file", "llm.timeout", "llm.fallback", "mode", "responder.rule-ttl"}
	cases := []struct {
		cmd     *kingpin.CmdClause
		want    []string
		notWant []string
	}{
		{c.agentCmd, agentFlags, responderOwn},
		{c.responderCmd, append([]string{"web.listen-address", "agent.url", "agent.token-file"}, responderOwn...), []string{"interfaces", "bpf.pin-path"}},
		// run reaches its agent over loopback with --api.token-file.
		{c.runCmd, append(slices.Clone(agentFlags), responderOwn...), []string{"agent.url", "agent.token-file"}},
		{c.analyzeCmd, []string{"pcap", "baseline", "analyst", "llm.model", "mode", "responder.rule-ttl"}, []string{"web.listen-address"}},
	}
	for _, tc := range cases {
		t.Run(tc.cmd.FullCommand(), func(t *testing.T) {
			got := flagNames(tc.cmd)
			for _, name := range tc.want {
				if n := countOf(got, name); n != 1 {
					t.Errorf("--%s appears %d times, want once", name, n)
				}
			}
			for _, name := range tc.notWant {
				if slices.Contains(got, name) {
					t.Errorf("--%s is there; it does not belong to this command", name)
				}
			}
		})
	}
}

func countOf(names []string, name string) int {
	n := 0
	for _, s := range names {
		if s == name {
			n++
		}
	}
	return n
}

// TestFlagDefaults: a flag's default is its package's constant, so the two
// cannot drift apart.
func TestFlagDefaults(t *testing.T) {
	c := newCLI()
	if _, err := c.app.Parse([]string{"run"}); err != nil {
		t.Fatal(err)
	}
	a, r := c.run.agent, c.run.responder
	cases := []struct {
		flag      string
		got, want any
	}{
		{"guard.sample-every", int(a.guardSampleEvery), guard.DefaultSampleEvery},
		{"guard.max-rules", a.maxRules, guard.DefaultMaxRules},
		{"guard.traffic-max-samples", a.trafficMaxSamples, agentapi.DefaultWindowMaxSamples},
		{"guard.traffic-window", a.trafficWindow, agentapi.DefaultWindowMaxAge},
		{"bpf.pin-path", a.pinPath, guard.DefaultPinPath},
		{"responder.rule-ttl", r.ruleTTL, responder.DefaultRuleTTL},
		{"responder.attack-window-min", r.attackWindowMin, responder.DefaultAttackWindowMin},
		{"responder.baseline-gap", r.baselineGap, responder.DefaultBaselineGap},
		{"llm.timeout", r.analyst.llmTimeout, responder.DefaultLLMTimeout},
		{"web.listen-address", (*a.web.WebListenAddresses)[0], defaultAgentListenAddress},
	}
	for _, tc := range cases {
		if tc.got != tc.want {
			t.Errorf("--%s defaults to %v, want %v", tc.flag, tc.got, tc.want)
		}
	}

	c = newCLI()
	if _, err := c.app.Parse([]string{"rules", "list"}); err != nil {
		t.Fatal(err)
	}
	if want := "http://127.0.0.1" + defaultAgentListenAddress; c.rules.agentURL != want {
		t.Errorf("rules --agent.url defaults to %s, want the agent's default listen address, %s", c.rules.agentURL, want)
	}

	// Both halves of run parse their flags from one command line.
	c = newCLI()
	if _, err := c.app.Parse([]string{"run", "--guard.sample-every=8", "--analyst=llm", "--responder.rule-ttl=2m", "--webhook.token-file=/w"}); err != nil {
		t.Fatal(err)
	}
	if c.run.agent.guardSampleEvery != 8 || c.run.responder.analyst.analyst != responder.AnalystLLM ||
		c.run.responder.ruleTTL != 2*time.Minute || c.run.responder.webhookTokenFile != "/w" {
		t.Fatalf("run parsed agent %+v, responder %+v", c.run.agent, c.run.responder)
	}
}

func TestDurationDefault(t *testing.T) {
	for d, want := range map[time.Duration]string{
		10 * time.Minute: "10m", time.Hour: "1h", 90 * time.Minute: "1h30m", 20 * time.Second: "20s",
		time.Millisecond: "1ms", 90 * time.Second: "1m30s",
	} {
		if got := durationDefault(d); got != want {
			t.Errorf("durationDefault(%s) = %q, want %q", d, got, want)
		}
		if back, err := time.ParseDuration(durationDefault(d)); err != nil || back != d {
			t.Errorf("%q parses back to %s (%v)", durationDefault(d), back, err)
		}
	}
}

func TestReadSecretFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := dir + "/" + name
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name, path, want, wantErr string
	}{
		{"no file configured", "", "", ""},
		{"token with newline", write("tok", "  s3cret\n"), "s3cret", ""},
		{"empty file", write("empty", "\n"), "", "is empty"},
		{"missing file", dir + "/nope", "", "cannot read --api.token-file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readSecretFile(tc.path, "--api.token-file")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// TestEnumFlags: enumerated flags take exactly their package's constants.
func TestEnumFlags(t *testing.T) {
	cases := []struct {
		args   []string
		wantOK bool
	}{
		{[]string{"run", "--mode=monitor", "--analyst=llm"}, true},
		{[]string{"run", "--mode=bogus"}, false},
		{[]string{"responder", "--analyst=oracle"}, false},
		{[]string{"analyze", "--pcap=x", "--mode=enforce"}, true},
		{[]string{"rules", "add", "--fragment=later", "--origin=llm", "--action=rate_limit"}, true},
		{[]string{"rules", "add", "--fragment=most"}, false},
		{[]string{"rules", "add", "--origin=oracle"}, false},
		{[]string{"rules", "add", "--action=explode"}, false},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, err := newCLI().app.Parse(tc.args)
			if (err == nil) != tc.wantOK {
				t.Fatalf("parse: %v, want ok=%v", err, tc.wantOK)
			}
		})
	}
}
