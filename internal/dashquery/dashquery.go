// Package dashquery reads the Prometheus queries out of the Grafana
// dashboards in dashboards/, so tests can run them against a live Prometheus.
package dashquery

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Query is one panel target's PromQL, with Grafana's variables replaced.
type Query struct {
	Panel string // dashboard uid / panel title
	Expr  string
}

var templateVar = regexp.MustCompile(`\$\{?[A-Za-z_][A-Za-z0-9_]*\}?`)

// Load returns the Prometheus-datasource queries of every dashboard JSON in
// dir, with Grafana's variables replaced as Grafana would: every value of a
// template variable, a rate interval of 30s (many 1 s scrapes), a range
// of 5m.
func Load(dir string) ([]Query, error) {
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) == 0 {
		return nil, errors.New("no dashboards in " + dir)
	}
	type panel struct {
		Title   string `json:"title"`
		Targets []struct {
			Datasource struct {
				UID string `json:"uid"`
			} `json:"datasource"`
			Expr string `json:"expr"`
		} `json:"targets"`
	}
	vars := strings.NewReplacer("$__rate_interval", "30s", "$__range", "5m")
	var out []Query
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var d struct {
			UID    string  `json:"uid"`
			Panels []panel `json:"panels"`
		}
		if err := json.Unmarshal(data, &d); err != nil {
			return nil, fmt.Errorf("decode %s: %w", f, err)
		}
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				if tg.Datasource.UID == "${datasource}" {
					out = append(out, Query{d.UID + " / " + p.Title, templateVar.ReplaceAllString(vars.Replace(tg.Expr), ".+")})
				}
			}
		}
	}
	return out, nil
}

// NeedsDefenseLoop matches the queries only a running defense loop with the
// LLM analyst feeds: LLM latency and tokens, firing alerts, decision
// latency. The end-to-end defense test checks those; a stack without an
// attack checks the rest.
var NeedsDefenseLoop = regexp.MustCompile(`packetscope_responder_llm_|ALERTS|packetscope_responder_decision_latency_seconds`)
