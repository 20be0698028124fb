package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/packetscope/packetscope/internal/testnet"
)

// TestAgentLastGate: the real binary, with --guard.never-block, refuses
// rules that cover the node, its never-block CIDRs or everything, even with
// its own token; traffic reads need the token once one is configured.
func TestAgentLastGate(t *testing.T) {
	testnet.RequireRoot(t)
	victim, _ := twoHosts(t)
	token := "lastgate-e2e"
	agent := startAgent(t, "agent", "--netns", victim.Path(), "--interfaces", "eth0", "--bpf.pin-path", pinDir(t),
		"--api.token-file", writeToken(t, token), "--guard.never-block", "10.210.0.128/25", "--guard.never-block", "2001:db8:77::1")

	cases := []struct {
		name, body string
		status     int
		field      string
	}{
		{"everything", `{"action":"drop","match":{},"ttl_seconds":60}`, 400, `"field":"match"`},
		{"the node's own address", `{"action":"drop","match":{"src":"10.210.0.1","protocol":"udp"},"ttl_seconds":60}`, 400, `"field":"match.src"`},
		{"traffic to the node", `{"action":"drop","match":{"dst":"10.210.0.0/24","protocol":"udp"},"ttl_seconds":60}`, 400, `"field":"match.dst"`},
		{"a never-block CIDR", `{"action":"rate_limit","rate_pps":10,"match":{"src":"10.210.0.200"},"ttl_seconds":60}`, 400, `"field":"match.src"`},
		{"a never-block address", `{"action":"drop","match":{"src":"2001:db8:77::/64"},"ttl_seconds":60}`, 400, `"field":"match.src"`},
		{"a narrow rule", `{"action":"drop","match":{"src":"10.210.0.2","protocol":"udp","dst_ports":["9"]},"ttl_seconds":60}`, 201, ""},
		{"a monitor rule over the node", `{"action":"monitor","match":{"src":"10.210.0.0/24"},"ttl_seconds":60}`, 201, ""},
	}
	for _, tc := range cases {
		code, body := httpDo(t, "POST", agent.URL+"/api/v1/rules", token, tc.body)
		if code != tc.status || !strings.Contains(body, tc.field) {
			t.Errorf("%s: %d %s, want %d with %s", tc.name, code, body, tc.status, tc.field)
		}
	}
	if code, body := httpDo(t, "GET", agent.URL+"/api/v1/traffic", "", ""); code != 401 {
		t.Errorf("traffic without the token: %d %s, want 401", code, body)
	}
	code, body := httpDo(t, "GET", agent.URL+"/api/v1/traffic", token, "")
	if code != 200 || !strings.Contains(body, "10.210.0.128/25") {
		t.Errorf("traffic with the token: %d %s, want 200 listing the never-block CIDR as protected", code, body)
	}
	if code, _ := httpGet(t, agent.URL+"/metrics"); code != 200 {
		t.Errorf("/metrics: %d, want 200 without a token", code)
	}
}

// TestCleanupOnlyOnBPFFS: `packetscope cleanup` on a directory that is not
// bpffs (a mistyped --bpf.pin-path) deletes nothing and says why.
func TestCleanupOnlyOnBPFFS(t *testing.T) {
	testnet.RequireRoot(t)
	dir := t.TempDir()
	for _, n := range []string{"rule_defs", "link_eth0", "notes"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command(testnet.PacketscopeBinary(t), "cleanup", "--bpf.pin-path", dir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not on a bpffs mount") {
		t.Errorf("cleanup on %s: %v\n%s\nwant exit 1 naming bpffs", dir, err, out)
	}
	if es, _ := os.ReadDir(dir); len(es) != 3 {
		t.Errorf("cleanup left %d of 3 files", len(es))
	}
}
