package deploy

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/packetscope/packetscope/internal/dashquery"
	"github.com/packetscope/packetscope/internal/testnet"
)

// TestRunStack brings up the single-host stack exactly as `make run` does
// (run-stack.sh with the shipped prometheus.yml, alertmanager.yml and alert
// rules: the real packetscope binary, Debian's Prometheus and Alertmanager),
// inside a network namespace of its own, and checks the wiring these files
// are responsible for: Prometheus scrapes the agent and loads every rule
// group, and Alertmanager delivers a flood alert, and only a flood alert, to
// the responder's webhook with the bearer token the responder accepts.
// The defense loop under a real flood is the end-to-end suite's (e2e/).
func TestRunStack(t *testing.T) {
	testnet.RequireRoot(t)
	tool(t, "prometheus", "prometheus")
	if _, err := exec.LookPath("prometheus-alertmanager"); err != nil {
		tool(t, "alertmanager", "prometheus-alertmanager")
	}
	tool(t, "curl", "curl")

	bin := testnet.PacketscopeBinary(t)

	ns := testnet.NewNS(t, "ps-h5")
	peer := testnet.NewNS(t, "ps-h5p")
	testnet.Link(t, ns, "h5stack", "10.215.0.1/24", peer, "h5peer", "10.215.0.2/24")

	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	pin := "/sys/fs/bpf/ps-h5-" + hex.EncodeToString(suffix)
	t.Cleanup(func() {
		if out, err := exec.Command(bin, "cleanup", "--bpf.pin-path="+pin).CombinedOutput(); err != nil {
			t.Logf("packetscope cleanup: %v\n%s", err, out)
		}
		_ = os.RemoveAll(pin)
	})

	state := t.TempDir()
	cmd := ns.Cmd("env", "PACKETSCOPE="+bin, "STATE_DIR="+state,
		"./run-stack.sh", "--interfaces=h5stack", "--bpf.pin-path="+pin)
	var out testnet.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start run-stack.sh: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		// Ctrl-C, as a user stops it: the script stops its children.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	logs := func() string {
		var b strings.Builder
		fmt.Fprintf(&b, "run-stack.sh:\n%s\n", out.String())
		for _, f := range []string{"packetscope.log", "prometheus.log", "alertmanager.log"} {
			data, _ := os.ReadFile(filepath.Join(state, f))
			fmt.Fprintf(&b, "--- %s (last 2000 bytes):\n%s\n", f, tail(string(data), 2000))
		}
		return b.String()
	}

	testnet.WaitForProcess(t, 90*time.Second, exited, logs, "the stack to come up", func() bool {
		return strings.Contains(out.String(), "PacketScope stack is up")
	})

	get := func(url string) []byte {
		body, err := ns.Cmd("curl", "-fsS", "--max-time", "5", url).Output()
		if err != nil {
			return nil
		}
		return body
	}

	// Prometheus scrapes the agent under job "packetscope" (the alerts and
	// dashboards rely on that name).
	testnet.WaitForProcess(t, 30*time.Second, exited, logs, "Prometheus to scrape the agent", func() bool {
		var r struct {
			Data struct {
				ActiveTargets []struct {
					Labels map[string]string `json:"labels"`
					Health string            `json:"health"`
				} `json:"activeTargets"`
			} `json:"data"`
		}
		if json.Unmarshal(get("http://127.0.0.1:9090/api/v1/targets"), &r) != nil {
			return false
		}
		for _, tg := range r.Data.ActiveTargets {
			if tg.Labels["job"] == "packetscope" && tg.Labels["instance"] == "127.0.0.1:9436" && tg.Health == "up" {
				return true
			}
		}
		return false
	})

	// Traffic of every kind the dashboards show, from the peer namespace
	// over the veth pair: TCP (to the agent's port), ICMP, UDP to a closed
	// port (kernel drops), a connection refused (a reset), and a guard rule
	// (monitor: it only counts) for the rule panels.
	peer.MustRun("ping", "-q", "-f", "-c", "2000", "10.215.0.1")
	peer.MustRun("bash", "-c", `for i in $(seq 40); do curl -s -o /dev/null --max-time 2 http://10.215.0.1:9436/metrics; done;
		for i in $(seq 200); do echo x > /dev/udp/10.215.0.1/9; done;
		curl -s --max-time 2 http://10.215.0.1:1/ || true`)
	ns.MustRun(bin, "rules", "add", "--agent.url=http://127.0.0.1:9436", "--api.token-file="+filepath.Join(state, "api.token"),
		"--action=monitor", "--protocol=icmp", "--ttl=5m", "--reason=stack test")
	peer.MustRun("ping", "-q", "-f", "-c", "500", "10.215.0.1")
	trafficAt := time.Now()

	// Every rule group is loaded; the fast groups (floods, 1s) have evaluated cleanly and
	// no rule, including the 30s baselines, has failed.
	rulesFile, err := os.ReadFile("../alerts/packetscope.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	ruleGroups := len(regexp.MustCompile(`(?m)^  - name: `).FindAll(rulesFile, -1))
	testnet.WaitForProcess(t, 30*time.Second, exited, logs, "every alert rule to evaluate cleanly", func() bool {
		var r struct {
			Data struct {
				Groups []struct {
					Name     string  `json:"name"`
					Interval float64 `json:"interval"`
					Rules    []struct {
						Name      string `json:"name"`
						Health    string `json:"health"`
						LastError string `json:"lastError"`
					} `json:"rules"`
				} `json:"groups"`
			} `json:"data"`
		}
		if json.Unmarshal(get("http://127.0.0.1:9090/api/v1/rules"), &r) != nil || len(r.Data.Groups) != ruleGroups {
			return false
		}
		for _, g := range r.Data.Groups {
			for _, rule := range g.Rules {
				if rule.Health == "err" {
					t.Fatalf("rule %s/%s fails: %s", g.Name, rule.Name, rule.LastError)
				}
				if rule.Health != "ok" && g.Interval <= 2 {
					return false
				}
			}
		}
		return true
	})

	// A flood alert, as Prometheus would send it, reaches the responder
	// through Alertmanager's route, webhook URL and bearer token; an alert
	// without an attack label does not.
	now := time.Now().UTC().Format(time.RFC3339)
	alerts := fmt.Sprintf(`[
	  {"labels": {"alertname": "PacketScopeSYNFlood", "attack": "syn_flood", "instance": "127.0.0.1:9436",
	   "interface": "h5stack", "severity": "critical"},
	   "annotations": {"summary": "stack test"}, "startsAt": %q},
	  {"labels": {"alertname": "PacketScopeAgentDown", "instance": "127.0.0.1:9436", "job": "packetscope",
	   "severity": "critical"}, "annotations": {"summary": "stack test"}, "startsAt": %q}]`, now, now)
	if body, err := ns.Cmd("curl", "-fsS", "--max-time", "5", "-H", "Content-Type: application/json",
		"--data", alerts, "http://127.0.0.1:9093/api/v2/alerts").CombinedOutput(); err != nil {
		t.Fatalf("post alerts to Alertmanager: %v\n%s\n%s", err, body, logs())
	}
	var names []string
	testnet.WaitForProcess(t, 20*time.Second, exited, logs, "the responder to record the flood alert", func() bool {
		var r struct {
			Decisions []struct {
				Alert *struct {
					Name string `json:"name"`
				} `json:"alert"`
			} `json:"decisions"`
		}
		// The audit trail is a sensitive read: it needs the API token.
		body, err := ns.Cmd("curl", "-fsS", "--max-time", "5", "-H", "Authorization: Bearer "+readTokenFile(t, filepath.Join(state, "api.token")),
			"http://127.0.0.1:9436/api/v1/decisions").Output()
		if err != nil || json.Unmarshal(body, &r) != nil {
			return false
		}
		names = names[:0]
		for _, d := range r.Decisions {
			if d.Alert != nil {
				names = append(names, d.Alert.Name)
			}
		}
		return strings.Contains(strings.Join(names, ","), "PacketScopeSYNFlood")
	})
	if strings.Contains(strings.Join(names, ","), "PacketScopeAgentDown") {
		t.Errorf("the responder received PacketScopeAgentDown, an alert without an attack label: %v", names)
	}

	// Every dashboard query returns data from this live Prometheus, but for
	// the few that need what this test does not make: the LLM analyst, a
	// flood alert firing in Prometheus, a rule applied by the responder.
	time.Sleep(max(time.Until(trafficAt.Add(8*time.Second)), 6*time.Second)) // a few scrapes after the traffic and the webhook
	var checked int
	queries, err := dashquery.Load("../dashboards")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range queries {
		if dashquery.NeedsDefenseLoop.MatchString(q.Expr) {
			continue
		}
		checked++
		var r struct {
			Status string `json:"status"`
			Error  string `json:"error"`
			Data   struct {
				Result []json.RawMessage `json:"result"`
			} `json:"data"`
		}
		body, err := ns.Cmd("curl", "-sS", "--max-time", "5", "--data-urlencode", "query="+q.Expr,
			"http://127.0.0.1:9090/api/v1/query").Output()
		if err != nil || json.Unmarshal(body, &r) != nil || r.Status != "success" {
			t.Errorf("%s: query %s: %v %s %s", q.Panel, q.Expr, err, r.Error, body)
			continue
		}
		if len(r.Data.Result) == 0 {
			t.Errorf("%s: no data for %s", q.Panel, q.Expr)
		}
	}
	t.Logf("%d dashboard queries return data", checked)
}

func TestMain(m *testing.M) {
	code := m.Run()
	testnet.RemovePacketscopeBinary()
	os.Exit(code)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// readTokenFile returns the token run-stack.sh wrote.
func readTokenFile(tb testing.TB, path string) string {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
