package deploy

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amconfig "github.com/prometheus/alertmanager/config"
	"github.com/prometheus/alertmanager/dispatch"
	"github.com/prometheus/common/model"
	"sigs.k8s.io/yaml"
)

// tool returns the path of a command-line tool. In CI a missing tool fails
// the test; on a developer's machine it skips, saying what to install.
func tool(tb testing.TB, name, debianPackage string) string {
	tb.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("%s not found: apt-get install -y %s", name, debianPackage)
		}
		tb.Skipf("%s not found: apt-get install -y %s", name, debianPackage)
	}
	return path
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

func TestPrometheusConfig(t *testing.T) {
	promtool := tool(t, "promtool", "prometheus")
	// Full check: also loads and checks the rule files it names.
	out := run(t, promtool, "check", "config", "prometheus.yml")
	if !strings.Contains(out, "SUCCESS: 1 rule files found") {
		t.Errorf("prometheus.yml: want its one rule file found and valid:\n%s", out)
	}
	// The in-cluster file names paths of a Prometheus pod: syntax only.
	run(t, promtool, "check", "config", "--syntax-only", "kubernetes/prometheus.yml")

	// The intervals the alerts' timing (alerts/runbook.md) is built on: the
	// flood alerts look one scrape back (`offset 1s`) and their group
	// evaluates every second, so the agent must be scraped every second.
	var cfg promConfig
	readYAML(t, "prometheus.yml", &cfg)
	if len(cfg.RuleFiles) != 1 || filepath.Clean(cfg.RuleFiles[0]) != filepath.Clean("../alerts/packetscope.rules.yml") {
		t.Errorf("rule_files %v, want [../alerts/packetscope.rules.yml]", cfg.RuleFiles)
	}
	var agentJob bool
	for _, sc := range cfg.ScrapeConfigs {
		if sc.JobName == "packetscope" && len(sc.StaticConfigs) == 1 && strings.Join(sc.StaticConfigs[0].Targets, ",") == "127.0.0.1:9436" {
			agentJob = true
		}
	}
	if !agentJob {
		t.Errorf("no job \"packetscope\" scraping 127.0.0.1:9436 (the alerts use job=\"packetscope\")")
	}
	var k8s promConfig
	readYAML(t, "kubernetes/prometheus.yml", &k8s)
	for name, c := range map[string]promConfig{"prometheus.yml": cfg, "kubernetes/prometheus.yml": k8s} {
		if got := c.agentScrapeInterval(); got != time.Second {
			t.Errorf("%s: the agents (job packetscope) are scraped every %s, want 1s (the flood alerts' timing depends on it)", name, got)
		}
	}
}

type promConfig struct {
	Global struct {
		ScrapeInterval string `json:"scrape_interval"`
	} `json:"global"`
	RuleFiles     []string `json:"rule_files"`
	ScrapeConfigs []struct {
		JobName        string `json:"job_name"`
		ScrapeInterval string `json:"scrape_interval"`
		StaticConfigs  []struct {
			Targets []string `json:"targets"`
		} `json:"static_configs"`
	} `json:"scrape_configs"`
}

// agentScrapeInterval is the scrape interval of job packetscope (0 if
// there is no such job or the interval does not parse).
func (c promConfig) agentScrapeInterval() time.Duration {
	for _, sc := range c.ScrapeConfigs {
		if sc.JobName != "packetscope" {
			continue
		}
		s := sc.ScrapeInterval
		if s == "" {
			s = c.Global.ScrapeInterval
		}
		if s == "" {
			s = "1m" // Prometheus' default
		}
		d, err := model.ParseDuration(s)
		if err != nil {
			return 0
		}
		return time.Duration(d)
	}
	return 0
}

func TestAlertmanagerConfig(t *testing.T) {
	tests := []struct {
		file, webhookURL, credentialsFile string
	}{
		{"alertmanager.yml", "http://127.0.0.1:9436/api/v1/alerts", mustAbs(t, "webhook.token")},
		{"kubernetes/alertmanager.yml", "http://packetscope-responder.packetscope.svc:9437/api/v1/alerts",
			"/etc/alertmanager/secrets/packetscope-tokens/webhook.token"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			// The same loader and validation Alertmanager runs at start.
			cfg, err := amconfig.LoadFile(mustAbs(t, tt.file)) // absolute: relative paths resolve against its directory
			if err != nil {
				t.Fatalf("load %s: %v", tt.file, err)
			}
			var responder *amconfig.Receiver
			for i := range cfg.Receivers {
				if cfg.Receivers[i].Name == "packetscope-responder" {
					responder = &cfg.Receivers[i]
				}
			}
			if responder == nil || len(responder.WebhookConfigs) != 1 {
				t.Fatalf("want a receiver packetscope-responder with one webhook")
			}
			wh := responder.WebhookConfigs[0]
			if string(wh.URL) != tt.webhookURL {
				t.Errorf("webhook url %s, want %s", wh.URL, tt.webhookURL)
			}
			if !wh.SendResolved() {
				t.Errorf("send_resolved is off: the responder records resolved alerts")
			}
			auth := wh.HTTPConfig.Authorization
			if auth == nil || auth.Type != "Bearer" || auth.CredentialsFile != tt.credentialsFile {
				t.Errorf("webhook authorization %+v, want Bearer from %s", auth, tt.credentialsFile)
			}

			// Route real label sets through the configuration's tree.
			route := dispatch.NewRoute(cfg.Route, nil)
			receivers := func(ls model.LabelSet) []string {
				var names []string
				for _, r := range route.Match(ls) {
					names = append(names, r.RouteOpts.Receiver)
				}
				return names
			}
			flood := model.LabelSet{"alertname": "PacketScopeSYNFlood", "instance": "127.0.0.1:9436",
				"interface": "eth0", "attack": "syn_flood", "severity": "critical"}
			if got := strings.Join(receivers(flood), ","); got != "packetscope-responder,operators" {
				t.Errorf("a flood alert goes to %q, want packetscope-responder,operators", got)
			}
			for _, r := range route.Match(flood) {
				if r.RouteOpts.Receiver == "packetscope-responder" {
					if r.RouteOpts.GroupWait != 0 {
						t.Errorf("group_wait %s for the responder, want 0s (the defense loop has 3 s)", r.RouteOpts.GroupWait)
					}
					if r.RouteOpts.RepeatInterval > 10*time.Minute {
						t.Errorf("repeat_interval %s: longer than the responder's default rule TTL (10m), so rules lapse while the alert fires", r.RouteOpts.RepeatInterval)
					}
					for _, l := range []model.LabelName{"alertname", "instance", "attack"} {
						if _, ok := r.RouteOpts.GroupBy[l]; !ok {
							t.Errorf("responder route does not group by %s: two attacks would share a notification", l)
						}
					}
				}
			}
			// The probe alerts (group packetscope-probes) have no interface.
			for _, probe := range []model.LabelSet{
				{"alertname": "PacketScopePortScan", "instance": "127.0.0.1:9436", "protocol": "tcp", "attack": "port_scan", "severity": "warning"},
				{"alertname": "PacketScopeSYNQueueExhaustion", "instance": "127.0.0.1:9436", "attack": "syn_queue_exhaustion", "severity": "critical"},
			} {
				if got := strings.Join(receivers(probe), ","); got != "packetscope-responder,operators" {
					t.Errorf("alert %s goes to %q, want packetscope-responder,operators", probe["alertname"], got)
				}
			}
			down := model.LabelSet{"alertname": "PacketScopeAgentDown", "instance": "127.0.0.1:9436", "severity": "critical"}
			if got := strings.Join(receivers(down), ","); got != "operators" {
				t.Errorf("an alert without attack label goes to %q, want operators only", got)
			}
		})
	}
}

// TestAmtoolCheckConfig: Debian's Alertmanager (0.25) accepts the files too,
// not only the version in go.mod.
func TestAmtoolCheckConfig(t *testing.T) {
	amtool := tool(t, "amtool", "prometheus-alertmanager")
	for _, f := range []string{"alertmanager.yml", "kubernetes/alertmanager.yml"} {
		if out := run(t, amtool, "check-config", f); !strings.Contains(out, "SUCCESS") {
			t.Errorf("amtool check-config %s:\n%s", f, out)
		}
	}
}

func TestSystemdUnit(t *testing.T) {
	analyze := tool(t, "systemd-analyze", "systemd")
	unit, err := os.ReadFile("systemd/packetscope.service")
	if err != nil {
		t.Fatal(err)
	}
	const bin = "/usr/local/bin/packetscope"
	if !bytes.Contains(unit, []byte("ExecStart="+bin+" run ")) {
		t.Fatalf("ExecStart does not run %s run", bin)
	}
	// verify insists that ExecStart exists: point it at a binary that does.
	tmp := filepath.Join(t.TempDir(), "packetscope.service")
	if err := os.WriteFile(tmp, bytes.ReplaceAll(unit, []byte(bin), []byte("/bin/true")), 0o644); err != nil {
		t.Fatal(err)
	}
	// verify exits 0 on unknown keys, so any output at all is a failure.
	if out := run(t, analyze, "verify", tmp); strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify:\n%s", out)
	}
}

func readYAML(tb testing.TB, name string, v any) {
	tb.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		tb.Fatal(err)
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		tb.Fatalf("decode %s: %v", name, err)
	}
}

func mustAbs(tb testing.TB, name string) string {
	tb.Helper()
	abs, err := filepath.Abs(name)
	if err != nil {
		tb.Fatal(err)
	}
	return abs
}
