package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/packetscope/packetscope/internal/testnet"
)

// twoHosts returns a victim and a client namespace joined by a veth pair:
// victim eth0 10.210.0.1, client eth0 10.210.0.2.
func twoHosts(t *testing.T) (victim, client *testnet.NS) {
	t.Helper()
	victim = testnet.NewNS(t, "ps-e2e-v")
	client = testnet.NewNS(t, "ps-e2e-c")
	testnet.Link(t, victim, "eth0", "10.210.0.1/24", client, "eth0", "10.210.0.2/24")
	return victim, client
}

// TestAgentFaultsAreOneClearSentence: bad input at start ends with one
// sentence naming what is wrong, exit 1, and nothing left attached or pinned.
func TestAgentFaultsAreOneClearSentence(t *testing.T) {
	testnet.RequireRoot(t)
	bin := testnet.PacketscopeBinary(t)
	victim, _ := twoHosts(t)

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	cases := []struct {
		name string
		args []string
		want string
	}{
		{"missing interface", []string{"agent", "--netns", victim.Path(), "--interfaces", "nosuch0"}, `nosuch0\" does not exist`},
		{"port in use", []string{"agent", "--netns", victim.Path(), "--interfaces", "eth0", "--web.listen-address", busy.Addr().String()}, "is already in use"},
		{"missing netns", []string{"agent", "--netns", "/var/run/netns/ps-e2e-none", "--interfaces", "eth0"}, "cannot be opened"},
		{"unreadable token file", []string{"agent", "--netns", victim.Path(), "--interfaces", "eth0", "--api.token-file", "/nonexistent/token"}, "cannot read --api.token-file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pins := pinDir(t)
			args := append(tc.args, "--bpf.pin-path="+pins)
			if !contains(args, "--web.listen-address") {
				args = append(args, fmt.Sprintf("--web.listen-address=127.0.0.1:%d", testnet.FreePort(t)))
			}
			out, err := exec.Command(bin, args...).CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("want exit status 1, got %v:\n%s", err, out)
			}
			text := string(out)
			if !strings.Contains(text, tc.want) {
				t.Errorf("output does not say %q:\n%s", tc.want, text)
			}
			if strings.Contains(text, "goroutine ") || strings.Contains(text, "panic") {
				t.Errorf("output holds a stack trace:\n%s", text)
			}
			if n := strings.Count(strings.TrimSpace(text), "\n"); n > 0 {
				t.Errorf("want one line, got %d:\n%s", n+1, text)
			}
			if _, err := os.Stat(pins); err == nil {
				t.Errorf("a failed start left pins in %s", pins)
			}
			if xdp := victim.MustRun("ip", "link", "show", "eth0"); strings.Contains(xdp, "xdp") {
				t.Errorf("a failed start left XDP attached:\n%s", xdp)
			}
		})
	}

	t.Run("not root", func(t *testing.T) {
		cmd := exec.Command(bin, "agent", "--netns", victim.Path(), "--interfaces", "eth0")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("agent started as nobody:\n%s", out)
		}
		if !strings.Contains(string(out), "needs root") {
			t.Errorf("output does not say it needs root:\n%s", out)
		}
	})
}

// TestAgentLifecycle runs the real agent on a namespace: it serves metrics a
// promtool check accepts, counts the traffic, takes rules only with the
// token, keeps them across a restart, detaches its tracing programs on
// SIGTERM, and `cleanup` removes the guard.
func TestAgentLifecycle(t *testing.T) {
	testnet.RequireRoot(t)
	victim, client := twoHosts(t)
	pins := pinDir(t)
	token := "e2e-" + fmt.Sprint(time.Now().UnixNano())
	tokenFile := writeToken(t, token)
	args := []string{"agent", "--netns", victim.Path(), "--interfaces", "eth0", "--bpf.pin-path", pins,
		"--api.token-file", tokenFile, "--guard.sample-every", "1"}

	agent := startAgent(t, args...)

	client.MustRun("ping", "-c", "20", "-i", "0.01", "-W", "1", "10.210.0.1")
	_, metrics := httpGet(t, agent.URL+"/metrics")
	if v := metricValue(metrics, "packetscope_xdp_packets_total", "interface=eth0"); v < 20 {
		t.Errorf("packetscope_xdp_packets_total{interface=eth0} = %v, want >= 20 after 20 pings", v)
	}
	if v := metricValue(metrics, "packetscope_packets_total", "interface=eth0", "direction=rx", "protocol=icmp"); v < 20 {
		t.Errorf("packetscope_packets_total{eth0,rx,icmp} = %v, want >= 20", v)
	}
	if v := metricValue(metrics, "packetscope_build_info"); v != 1 {
		t.Errorf("packetscope_build_info = %v, want 1", v)
	}
	promtoolCheckMetrics(t, metrics)

	rule := `{"action":"drop","match":{"src":"10.210.0.2/32","protocol":"udp","dst_ports":["9"]},"ttl_seconds":600,"reason":"e2e"}`
	if code, body := httpDo(t, "POST", agent.URL+"/api/v1/rules", "", rule); code != 401 {
		t.Errorf("POST without token: %d %s, want 401", code, body)
	}
	if code, body := httpDo(t, "POST", agent.URL+"/api/v1/rules", "wrong", rule); code != 401 {
		t.Errorf("POST with a wrong token: %d %s, want 401", code, body)
	}
	if code, body := httpDo(t, "POST", agent.URL+"/api/v1/rules", token, `{"action":"drop","match":{"src":"10.0.0.0/33"},"ttl_seconds":60}`); code != 400 || !strings.Contains(body, "match.src") {
		t.Errorf("POST an invalid rule: %d %s, want 400 naming match.src", code, body)
	}
	code, body := httpDo(t, "POST", agent.URL+"/api/v1/rules", token, rule)
	if code != 200 && code != 201 {
		t.Fatalf("POST a valid rule: %d %s", code, body)
	}
	var added struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(body), &added); err != nil || added.ID == "" {
		t.Fatalf("POST answer has no rule id: %s", body)
	}

	held := heldPrograms(t, agent.Cmd.Process.Pid)
	if len(held) < 5 {
		t.Errorf("the running agent holds %d programs (%v), want the exporter's and the guard's", len(held), held)
	}
	if err := agent.Stop(t); err != nil {
		t.Errorf("agent exit after SIGTERM: %v\n%s", err, agent.Out.String())
	}
	// The kernel frees a closed program asynchronously: give it a moment.
	var left []string
	for deadline := time.Now().Add(5 * time.Second); ; {
		left = left[:0]
		loaded := loadedPrograms(t)
		for id := range held {
			if name, ok := loaded[id]; ok && name != "guard_xdp" {
				left = append(left, fmt.Sprintf("%d (%s)", id, name))
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(left) > 0 {
		t.Errorf("programs still loaded 5s after the agent stopped: %v", left)
	}
	if xdp := victim.MustRun("ip", "link", "show", "eth0"); !strings.Contains(xdp, "xdp") {
		t.Errorf("the guard did not stay in force after the agent stopped:\n%s", xdp)
	}

	agent = startAgent(t, args...)
	_, list := httpGet(t, agent.URL+"/api/v1/rules")
	if strings.Count(list, added.ID) != 1 {
		t.Errorf("after a restart the rule %s is not listed exactly once: %s", added.ID, list)
	}
	if code, body := httpDo(t, "DELETE", agent.URL+"/api/v1/rules/"+added.ID, token, ""); code/100 != 2 {
		t.Errorf("DELETE: %d %s", code, body)
	}
	if code, _ := httpDo(t, "DELETE", agent.URL+"/api/v1/rules/"+added.ID, token, ""); code != 404 {
		t.Errorf("DELETE of a deleted rule: %d, want 404", code)
	}
	if err := agent.Stop(t); err != nil {
		t.Errorf("agent exit after SIGTERM: %v", err)
	}

	if out, err := exec.Command(testnet.PacketscopeBinary(t), "cleanup", "--bpf.pin-path="+pins).CombinedOutput(); err != nil {
		t.Fatalf("cleanup: %v\n%s", err, out)
	}
	if xdp := victim.MustRun("ip", "link", "show", "eth0"); strings.Contains(xdp, "xdp") {
		t.Errorf("XDP still attached after cleanup:\n%s", xdp)
	}
	if _, err := os.Stat(pins); err == nil {
		t.Errorf("pins left in %s after cleanup", pins)
	}
}

// heldPrograms returns the ids of the programs process pid holds through
// program or link file descriptors (their fdinfo names a prog_id).
func heldPrograms(t *testing.T, pid int) map[int]bool {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read %s: %v", dir, err)
	}
	ids := make(map[int]bool)
	for _, e := range entries {
		b, err := os.ReadFile(dir + "/" + e.Name())
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "prog_id:"); ok {
				var id int
				fmt.Sscan(strings.TrimSpace(v), &id)
				ids[id] = true
			}
		}
	}
	return ids
}

// loadedPrograms returns the names of every loaded program by id.
func loadedPrograms(t *testing.T) map[int]string {
	t.Helper()
	out, err := exec.Command("bpftool", "-j", "prog", "show").Output()
	if err != nil {
		t.Fatalf("bpftool prog show: %v", err)
	}
	var progs []struct {
		ID   int    `json:"id"`
		Name string `json:"name"`
	}
	if err := json.Unmarshal(out, &progs); err != nil {
		t.Fatalf("parse bpftool output: %v", err)
	}
	names := make(map[int]string)
	for _, p := range progs {
		names[p.ID] = p.Name
	}
	return names
}

// promtoolCheckMetrics runs `promtool check metrics` on an exposition.
func promtoolCheckMetrics(t *testing.T, exposition string) {
	t.Helper()
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = strings.NewReader(exposition)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

func contains(list []string, prefix string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}
