package dashboards

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

type dashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []variable `json:"list"`
	} `json:"templating"`
	Annotations struct {
		List []struct {
			Name       string      `json:"name"`
			Datasource *datasource `json:"datasource"`
			Expr       string      `json:"expr"`
		} `json:"list"`
	} `json:"annotations"`
	Panels []panel `json:"panels"`
}

type variable struct {
	Type       string      `json:"type"`
	Name       string      `json:"name"`
	Query      any         `json:"query"`
	Datasource *datasource `json:"datasource"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID         int                      `json:"id"`
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	Datasource *datasource              `json:"datasource"`
	GridPos    struct{ H, W, X, Y int } `json:"gridPos"`
	Repeat     string                   `json:"repeat"`
	Targets    []struct {
		Datasource *datasource `json:"datasource"`
		RefID      string      `json:"refId"`
		Expr       string      `json:"expr"`
		Exemplar   bool        `json:"exemplar"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

// wantDashboards are the dashboards issue 6 asks for, by uid.
var wantDashboards = []string{"packetscope-defense", "packetscope-overview", "packetscope-stack-latency", "packetscope-tcp"}

func loadDashboards(t *testing.T) map[string]dashboard {
	t.Helper()
	files, err := filepath.Glob("*.json")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]dashboard{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		dec := json.NewDecoder(bytes.NewReader(data))
		if err := dec.Decode(&d); err != nil {
			t.Fatalf("decode %s: %v", f, err)
		}
		out[f] = d
	}
	var uids []string
	for _, d := range out {
		uids = append(uids, d.UID)
	}
	slices.Sort(uids)
	if !slices.Equal(uids, wantDashboards) {
		t.Fatalf("dashboards %v, want %v", uids, wantDashboards)
	}
	return out
}

// allPanels flattens rows (collapsed rows hold their panels).
func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

func TestDashboardConventions(t *testing.T) {
	for file, d := range loadDashboards(t) {
		t.Run(d.UID, func(t *testing.T) {
			if file != d.UID+".json" {
				t.Errorf("file %s holds uid %s: name files after their uid", file, d.UID)
			}
			if len(d.UID) > 40 || !regexp.MustCompile(`^packetscope-[a-z-]+$`).MatchString(d.UID) {
				t.Errorf("uid %q: want a fixed packetscope-... uid of at most 40 characters", d.UID)
			}
			if !strings.HasPrefix(d.Title, "PacketScope / ") {
				t.Errorf("title %q", d.Title)
			}
			vars := map[string]variable{}
			for _, v := range d.Templating.List {
				vars[v.Name] = v
			}
			if v := vars["datasource"]; v.Type != "datasource" || v.Query != "prometheus" {
				t.Errorf("no ${datasource} variable of type datasource (prometheus): %+v", v)
			}
			ids := map[int]bool{}
			occupied := map[[2]int]string{}
			var hasExemplars bool
			for _, p := range allPanels(d.Panels) {
				if ids[p.ID] {
					t.Errorf("panel id %d used twice", p.ID)
				}
				ids[p.ID] = true
				if p.GridPos.X < 0 || p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 || p.GridPos.H <= 0 {
					t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, p.GridPos)
				}
				for x := p.GridPos.X; x < p.GridPos.X+p.GridPos.W; x++ {
					for y := p.GridPos.Y; y < p.GridPos.Y+p.GridPos.H; y++ {
						if other, ok := occupied[[2]int{x, y}]; ok {
							t.Fatalf("panels %q and %q overlap", other, p.Title)
						}
						occupied[[2]int{x, y}] = p.Title
					}
				}
				if p.Type == "row" {
					if !strings.Contains(p.Title, "?") {
						t.Errorf("row %q: a row answers an operator's question; title it as one", p.Title)
					}
					continue
				}
				if p.Repeat != "" && vars[p.Repeat].Name == "" {
					t.Errorf("panel %q repeats over unknown variable %q", p.Title, p.Repeat)
				}
				if p.Datasource == nil || (p.Datasource.UID != "${datasource}" && p.Datasource.UID != "${traces}") {
					t.Errorf("panel %q: datasource %+v, want ${datasource} (or ${traces})", p.Title, p.Datasource)
				}
				if p.Datasource != nil && p.Datasource.UID == "${traces}" && vars["traces"].Type != "datasource" {
					t.Errorf("panel %q uses ${traces}, which is not defined", p.Title)
				}
				if len(p.Targets) == 0 {
					t.Errorf("panel %q has no query", p.Title)
				}
				for _, tg := range p.Targets {
					if tg.RefID == "" || tg.Datasource == nil || tg.Datasource.UID != p.Datasource.UID {
						t.Errorf("panel %q target %q: datasource %+v differs from the panel's", p.Title, tg.RefID, tg.Datasource)
					}
					if tg.Datasource == nil || tg.Datasource.UID != "${datasource}" {
						continue
					}
					// Fixed rate windows break at other scrape intervals.
					for _, m := range regexp.MustCompile(`\[([^\]]+)\]`).FindAllStringSubmatch(tg.Expr, -1) {
						if m[1] != "$__rate_interval" && m[1] != "$__range" {
							t.Errorf("panel %q: range [%s], want [$__rate_interval]", p.Title, m[1])
						}
					}
					if regexp.MustCompile(`packetscope_(stack_latency|tcp_rtt)_seconds_bucket`).MatchString(tg.Expr) {
						if !tg.Exemplar {
							t.Errorf("panel %q: latency query without exemplars", p.Title)
						}
					}
					if tg.Exemplar {
						hasExemplars = true
					}
				}
			}
			if d.UID == "packetscope-stack-latency" && (!hasExemplars || vars["traces"].Type != "datasource") {
				t.Errorf("the stack latency dashboard needs exemplars and a ${traces} datasource variable")
			}
		})
	}
}

// grafanaVars stand in for Grafana's variables so that the expressions are
// plain PromQL: built-in intervals become durations, template variables a
// regex that matches anything (they are only used in =~ matchers).
var grafanaVars = strings.NewReplacer(
	"$__rate_interval", "1m", "$__interval", "1m", "$__range", "1h",
)

var templateVar = regexp.MustCompile(`\$\{?[A-Za-z_][A-Za-z0-9_]*\}?`)

func toPromQL(expr string) string {
	return templateVar.ReplaceAllString(grafanaVars.Replace(expr), ".+")
}

var labelValues = regexp.MustCompile(`^label_values\((.+),\s*([A-Za-z_][A-Za-z0-9_]*)\)$`)

// TestPanelQueriesParse writes every PromQL expression of the dashboards
// (panel targets, annotation queries, label_values selectors of the
// variables) into a rules file as recording rules, and has promtool, the
// parser Prometheus itself uses, check it.
func TestPanelQueriesParse(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool not found: apt-get install -y prometheus")
		}
		t.Skip("promtool not found: apt-get install -y prometheus")
	}
	type rule struct {
		Record string `json:"record"`
		Expr   string `json:"expr"`
	}
	var rules []rule
	where := map[string]string{}
	add := func(origin, expr string) {
		if strings.TrimSpace(expr) == "" {
			t.Errorf("%s: empty query", origin)
			return
		}
		name := fmt.Sprintf("dashboard_query_%d", len(rules))
		where[name] = origin
		rules = append(rules, rule{Record: name, Expr: toPromQL(expr)})
	}
	for _, d := range loadDashboards(t) {
		for _, p := range allPanels(d.Panels) {
			for _, tg := range p.Targets {
				if tg.Datasource != nil && tg.Datasource.UID == "${datasource}" {
					add(d.UID+" / "+p.Title+" / "+tg.RefID, tg.Expr)
				}
			}
		}
		for _, a := range d.Annotations.List {
			if a.Datasource != nil && a.Datasource.Type == "prometheus" {
				add(d.UID+" / annotation "+a.Name, a.Expr)
			}
		}
		for _, v := range d.Templating.List {
			if v.Type != "query" {
				continue
			}
			q, _ := v.Query.(map[string]any)
			s, _ := q["query"].(string)
			m := labelValues.FindStringSubmatch(s)
			if m == nil {
				t.Errorf("%s: variable %s: query %q is not label_values(selector, label)", d.UID, v.Name, s)
				continue
			}
			add(d.UID+" / variable "+v.Name, m[1])
		}
	}
	if len(rules) < 40 {
		t.Fatalf("only %d queries found: the dashboards lost panels, or the test lost its way", len(rules))
	}
	data, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboards", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "dashboard-queries.yml")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "check", "rules", file).CombinedOutput()
	if err != nil {
		// Name the panel behind each failing rule.
		msg := string(out)
		for name, origin := range where {
			msg = regexp.MustCompile(`\b`+name+`\b`).ReplaceAllString(msg, name+" ("+origin+")")
		}
		t.Fatalf("promtool check rules on the dashboards' queries: %v\n%s", err, msg)
	}
	t.Logf("%d queries parse", len(rules))
}

// TestDashboardsAreGenerated: the committed JSON is what gen.go writes.
func TestDashboardsAreGenerated(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command("go", "run", "gen.go", "-out", dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go run gen.go: %v\n%s", err, out)
	}
	generated, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	committed, _ := filepath.Glob("*.json")
	if len(generated) != len(committed) {
		t.Fatalf("gen.go writes %d dashboards, %d are committed: run go generate ./dashboards", len(generated), len(committed))
	}
	for _, g := range generated {
		want, _ := os.ReadFile(g)
		got, err := os.ReadFile(filepath.Base(g))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s differs from gen.go's output: run go generate ./dashboards", filepath.Base(g))
		}
	}
}

// TestProvisioning: the datasources the dashboards expect, and exemplar
// links to the trace backend.
func TestProvisioning(t *testing.T) {
	var ds struct {
		APIVersion  int `json:"apiVersion"`
		Datasources []struct {
			Name      string         `json:"name"`
			UID       string         `json:"uid"`
			Type      string         `json:"type"`
			Access    string         `json:"access"`
			URL       string         `json:"url"`
			IsDefault bool           `json:"isDefault"`
			JSONData  map[string]any `json:"jsonData"`
		} `json:"datasources"`
	}
	readStrict(t, "provisioning/datasources/packetscope.yml", &ds)
	uids := map[string]string{}
	for _, d := range ds.Datasources {
		uids[d.Type] = d.UID
	}
	if uids["prometheus"] == "" || uids["jaeger"] == "" {
		t.Fatalf("want a prometheus and a jaeger datasource, got %v", uids)
	}
	for _, d := range ds.Datasources {
		if d.Type != "prometheus" {
			continue
		}
		dests, _ := d.JSONData["exemplarTraceIdDestinations"].([]any)
		if len(dests) != 1 {
			t.Fatalf("prometheus datasource: want one exemplarTraceIdDestinations entry, got %v", dests)
		}
		dest, _ := dests[0].(map[string]any)
		if dest["name"] != "trace_id" || dest["datasourceUid"] != uids["jaeger"] {
			t.Errorf("exemplar destination %v: want label trace_id linking to datasource %s", dest, uids["jaeger"])
		}
		if d.JSONData["timeInterval"] != "2s" {
			t.Errorf("timeInterval %v, want the shipped scrape interval 2s", d.JSONData["timeInterval"])
		}
	}

	var prov struct {
		APIVersion int `json:"apiVersion"`
		Providers  []struct {
			Name                  string         `json:"name"`
			OrgID                 int            `json:"orgId"`
			Folder                string         `json:"folder"`
			FolderUID             string         `json:"folderUid"`
			Type                  string         `json:"type"`
			DisableDeletion       bool           `json:"disableDeletion"`
			AllowUIUpdates        bool           `json:"allowUiUpdates"`
			UpdateIntervalSeconds int            `json:"updateIntervalSeconds"`
			Options               map[string]any `json:"options"`
		} `json:"providers"`
	}
	readStrict(t, "provisioning/dashboards/packetscope.yml", &prov)
	if len(prov.Providers) != 1 || prov.Providers[0].Type != "file" || prov.Providers[0].Options["path"] == nil {
		t.Errorf("want one file provider with a path: %+v", prov.Providers)
	}
}

func readStrict(tb testing.TB, name string, v any) {
	tb.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		tb.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, v); err != nil {
		tb.Fatalf("decode %s: %v", name, err)
	}
}
