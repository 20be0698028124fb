package alerts

import (
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

const rulesFile = "packetscope.rules.yml"

// testFiles are the promtool unit-test files; together they must cover every alert.
var testFiles = []string{"packetscope.rules.test.yml", "packetscope-baseline.rules.test.yml", "packetscope-health.rules.test.yml",
	"packetscope-connections.rules.test.yml", "packetscope-reset.rules.test.yml"}

// promtool returns the path of promtool (Debian package "prometheus"). In CI
// a missing promtool fails the test; on a developer's machine it skips.
func promtool(tb testing.TB) string {
	tb.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("promtool not found: install Debian's prometheus package (apt-get install -y prometheus)")
		}
		tb.Skip("promtool not found: apt-get install -y prometheus")
	}
	return path
}

func runPromtool(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(promtool(t), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

func TestPromtoolCheckRules(t *testing.T) {
	out := runPromtool(t, "check", "rules", rulesFile)
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool check rules did not report SUCCESS:\n%s", out)
	}
}

func TestPromtoolTestRules(t *testing.T) {
	out := runPromtool(t, append([]string{"test", "rules"}, testFiles...)...)
	if strings.Count(out, "SUCCESS") != len(testFiles) {
		t.Fatalf("promtool test rules did not pass every file:\n%s", out)
	}
}

type ruleFile struct {
	Groups []struct {
		Name     string `json:"name"`
		Interval string `json:"interval"`
		Rules    []rule `json:"rules"`
	} `json:"groups"`
}

type rule struct {
	Alert       string            `json:"alert"`
	Record      string            `json:"record"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

func loadAlerts(t *testing.T) map[string][]rule {
	t.Helper()
	data, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var f ruleFile
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		t.Fatalf("decode %s: %v", rulesFile, err)
	}
	byGroup := map[string][]rule{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				byGroup[g.Name] = append(byGroup[g.Name], r)
			}
		}
	}
	return byGroup
}

// responderGroups are the groups whose alerts carry an `attack` label: the
// floods, the probes the stack's reactions reveal, and the slow connections.
var responderGroups = map[string]bool{"packetscope-floods": true, "packetscope-probes": true, "packetscope-connections": true}

// TestAlertsCarryWhatTheyNeed checks what promtool does not: the fields
// STYLE.md asks of every alert, and the labels the responder and the
// Alertmanager route rely on.
func TestAlertsCarryWhatTheyNeed(t *testing.T) {
	runbook, err := os.ReadFile("runbook.md")
	if err != nil {
		t.Fatal(err)
	}
	anchors := markdownAnchors(string(runbook))
	groups := loadAlerts(t)
	if len(groups["packetscope-floods"]) == 0 {
		t.Fatal("no alerts in group packetscope-floods")
	}
	// Every group the responder acts on is evaluated every second: the
	// global interval (15 s) would put a scan or a slowloris a quarter
	// minute behind.
	for group := range responderGroups {
		if iv := groupIntervals(t)[group]; iv != "1s" {
			t.Errorf("group %s evaluates every %q, want 1s (the defense loop's timing, alerts/runbook.md)", group, iv)
		}
	}
	names := map[string]bool{}
	for group, alerts := range groups {
		for _, a := range alerts {
			t.Run(a.Alert, func(t *testing.T) {
				if names[a.Alert] {
					t.Errorf("alert name used twice")
				}
				names[a.Alert] = true
				if !regexp.MustCompile(`^PacketScope[A-Z][A-Za-z0-9]+$`).MatchString(a.Alert) {
					t.Errorf("name is not CamelCase with the PacketScope prefix")
				}
				d, err := time.ParseDuration(a.For)
				switch {
				case err != nil:
					t.Errorf("for: %q, want a duration, written out", a.For)
				case d <= 0 && group != "packetscope-floods" && !strings.Contains(a.Expr, " offset "):
					// Without for:, only two levels in the expression (an
					// offset: held since then) keep a blip from firing.
					t.Errorf("for: %q, want a positive duration (or two levels, with an offset)", a.For)
				}
				if !slices.Contains([]string{"critical", "warning", "info"}, a.Labels["severity"]) {
					t.Errorf("severity %q, want critical, warning or info", a.Labels["severity"])
				}
				for _, k := range []string{"summary", "description", "runbook_url"} {
					if strings.TrimSpace(a.Annotations[k]) == "" {
						t.Errorf("annotation %s missing", k)
					}
				}
				anchor := strings.ToLower(a.Alert)
				if !strings.HasSuffix(a.Annotations["runbook_url"], "/alerts/runbook.md#"+anchor) || !anchors[anchor] {
					t.Errorf("runbook_url %q: want .../alerts/runbook.md#%s and a '## %s' section in runbook.md", a.Annotations["runbook_url"], anchor, a.Alert)
				}
				// The responder derives the agent from `instance`; an
				// aggregation that drops it makes the alert useless to it.
				if strings.Contains(a.Expr, "by (") && !strings.Contains(a.Expr, "instance") {
					t.Errorf("expression does not keep the instance label")
				}
				if responderGroups[group] {
					if !regexp.MustCompile(`^[a-z0-9_]+$`).MatchString(a.Labels["attack"]) {
						t.Errorf("flood, probe or connection alert needs an attack label (snake_case), got %q", a.Labels["attack"])
					}
					switch {
					case group == "packetscope-floods":
						// Two levels in one rule: an overwhelming rate fires at
						// the first evaluation that sees it, a moderate one
						// must have been over the threshold one scrape (1 s)
						// before too. A `for:` would delay both.
						if d != 0 {
							t.Errorf("for: %s: the 3 s defense loop has no room for it; a moderate flood is held by its `offset 1s` level", d)
						}
						if !strings.Contains(a.Expr, "offset 1s") || !strings.Contains(a.Expr, "overwhelming") {
							t.Errorf("flood alert without its two levels (an overwhelming rate at once, a moderate one over the previous scrape interval too)")
						}
					case d > 10*time.Second:
						t.Errorf("for: %s is too slow for the defense loop", d)
					}
				} else if a.Labels["attack"] != "" {
					t.Errorf("only flood, probe and connection alerts may carry an attack label: the responder acts on it")
				}
			})
		}
	}
}

// groupIntervals returns each rule group's own interval ("" for the global one).
func groupIntervals(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var f ruleFile
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		t.Fatalf("decode %s: %v", rulesFile, err)
	}
	out := map[string]string{}
	for _, g := range f.Groups {
		out[g.Name] = g.Interval
	}
	return out
}

// TestEveryAlertIsUnitTested: each alert appears in a promtool test that
// expects it to fire and in one that expects silence (before `for:` elapses).
func TestEveryAlertIsUnitTested(t *testing.T) {
	type testCase struct {
		Alertname string `json:"alertname"`
		ExpAlerts []any  `json:"exp_alerts"`
	}
	var testFile struct {
		Tests []struct {
			AlertRuleTest []testCase `json:"alert_rule_test"`
		} `json:"tests"`
	}
	fired, silent := map[string]bool{}, map[string]bool{}
	for _, name := range testFiles {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(data, &testFile); err != nil {
			t.Fatalf("decode %s: %v", name, err)
		}
		for _, tc := range testFile.Tests {
			for _, c := range tc.AlertRuleTest {
				if len(c.ExpAlerts) > 0 {
					fired[c.Alertname] = true
				} else {
					silent[c.Alertname] = true
				}
			}
		}
	}
	for _, alerts := range loadAlerts(t) {
		for _, a := range alerts {
			if !fired[a.Alert] || !silent[a.Alert] {
				t.Errorf("%s: unit tests must expect it both silent and firing (has firing case: %v, has silent case: %v)", a.Alert, fired[a.Alert], silent[a.Alert])
			}
		}
	}
}

// markdownAnchors returns the GitHub anchors of the "## Name" headings.
func markdownAnchors(md string) map[string]bool {
	anchors := map[string]bool{}
	for _, line := range strings.Split(md, "\n") {
		if h, ok := strings.CutPrefix(line, "## "); ok {
			anchors[strings.ToLower(strings.TrimSpace(h))] = true
		}
	}
	return anchors
}
