//go:build ignore

// gen writes PacketScope's Grafana dashboards (the *.json files beside it).
// The dashboards are generated so that every panel shares one layout, one
// datasource variable and one set of conventions; edit this file, then run
// `go generate ./dashboards`. The package's test fails when the committed
// JSON and this generator disagree.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"log"
	"os"
	"path/filepath"
)

func main() {
	out := flag.String("out", ".", "directory to write the dashboards to")
	flag.Parse()
	for _, d := range []dashboard{overview(), stackLatency(), tcp(), defense()} {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(d); err != nil {
			log.Fatalf("encode %s: %v", d.UID, err)
		}
		name := filepath.Join(*out, d.UID+".json")
		if err := os.WriteFile(name, buf.Bytes(), 0o644); err != nil {
			log.Fatalf("write %s: %v", name, err)
		}
	}
}

// Common selectors. Every agent metric is filtered by the instance variable;
// per-interface metrics also by the interface variable.
const (
	inst  = `instance=~"$instance"`
	iface = `instance=~"$instance",interface=~"$interface"`
	ri    = "$__rate_interval"
)

func overview() dashboard {
	b := newBoard("packetscope-overview", "PacketScope / Overview",
		"Traffic, XDP guard verdicts and kernel drops of every agent.",
		varDatasource(), varInstance(), varInterface())

	b.row("How much traffic does each host see, and of what kind?")
	b.add(12, timeseries("Packets by protocol and direction", "pps",
		"Packets through the network stack (rx: received, tx: sent), from the stack's tracepoints.",
		q(`sum by (protocol, direction) (rate(packetscope_packets_total{`+iface+`}[`+ri+`]))`, "{{protocol}} {{direction}}")))
	b.add(12, timeseries("Bytes by protocol and direction", "Bps",
		"Bytes through the network stack.",
		q(`sum by (protocol, direction) (rate(packetscope_bytes_total{`+iface+`}[`+ri+`]))`, "{{protocol}} {{direction}}")))
	b.add(12, timeseries("Packets at the XDP guard by protocol", "pps",
		"Every packet the XDP guard sees on arrival, before any rule: what the flood alerts watch. fragment = later IP fragments.",
		q(`sum by (protocol) (rate(packetscope_xdp_protocol_packets_total{`+iface+`}[`+ri+`]))`, "{{protocol}}")))
	b.add(12, timeseries("TCP packets at the XDP guard by flags", "pps",
		"syn = SYN without ACK (new connections, or a SYN flood), synack, ack = pure ACK, rst, fin, other.",
		q(`sum by (flags) (rate(packetscope_xdp_tcp_flags_packets_total{`+iface+`}[`+ri+`]))`, "{{flags}}")))

	b.row("What does the XDP guard do with the packets?")
	b.add(16, timeseries("XDP verdicts", "pps",
		"pass, drop (a drop rule), rate_limited (over a rate_limit rule's rate), monitor (a monitor rule would drop it; passed).",
		q(`sum by (action) (rate(packetscope_xdp_packets_total{`+iface+`}[`+ri+`]))`, "{{action}}")))
	b.add(8, stat("Dropped at XDP", "percentunit",
		"Share of the packets arriving at the guard that it dropped (drop and rate_limited).",
		q(`sum(rate(packetscope_xdp_packets_total{`+iface+`,action=~"drop|rate_limited"}[`+ri+`])) / sum(rate(packetscope_xdp_packets_total{`+iface+`}[`+ri+`]))`, "dropped")))

	b.row("What is the kernel dropping, and why?")
	b.add(16, stacked(timeseries("Kernel drops by reason", "pps",
		"skb:kfree_skb with the kernel's own drop reason names (enum skb_drop_reason of the running kernel).",
		q(`sum by (reason) (rate(packetscope_drops_total{`+inst+`}[`+ri+`]))`, "{{reason}}"))))
	b.add(8, barGauge("Top drop reasons in the time range", "short",
		"Packets dropped per reason over the dashboard's time range.",
		instant(q(`topk(10, sum by (reason) (increase(packetscope_drops_total{`+inst+`}[$__range])))`, "{{reason}}"))))
	b.add(12, timeseries("Kernel drops by protocol", "pps", "",
		q(`sum by (protocol) (rate(packetscope_drops_total{`+inst+`}[`+ri+`]))`, "{{protocol}}")))

	b.row("Is the agent healthy?")
	b.add(6, stat("Agents up", "short", "Agents Prometheus scraped successfully, of all it knows.",
		q(`sum(up{job="packetscope",`+inst+`})`, "up")))
	b.add(6, timeseries("Collector success", "short", "1 when the collector read its maps during the scrape.",
		q(`min by (collector) (packetscope_scrape_collector_success{`+inst+`})`, "{{collector}}")))
	b.add(6, timeseries("Collector duration", "s", "",
		q(`max by (collector) (packetscope_scrape_collector_duration_seconds{`+inst+`})`, "{{collector}}")))
	b.add(6, timeseries("Lost events", "pps", "Kernel events the agent could not record, by cause; and sampled headers the guard could not queue.",
		q(`sum by (cause) (rate(packetscope_ebpf_events_lost_total{`+inst+`}[`+ri+`]))`, "{{cause}}"),
		q(`sum(rate(packetscope_xdp_samples_lost_total{`+iface+`}[`+ri+`]))`, "guard samples")))
	b.add(24, timeseries("eBPF program cost per run", "s",
		"Average run time of each program (needs sysctl kernel.bpf_stats_enabled=1; empty otherwise).",
		q(`sum by (program) (rate(packetscope_ebpf_program_run_seconds_total{`+inst+`}[`+ri+`])) / sum by (program) (rate(packetscope_ebpf_program_runs_total{`+inst+`}[`+ri+`]))`, "{{program}}")))
	return b.done()
}

func stackLatency() dashboard {
	b := newBoard("packetscope-stack-latency", "PacketScope / Stack latency",
		"Time sampled packets spend in each stage of the kernel's network stack. Exemplars link to the packet's trace.",
		varDatasource(), varTraces(), varInstance(),
		varQuery("rx_stage", "Receive stages", `label_values(packetscope_stack_latency_seconds_count{direction="rx"}, stage)`),
		varQuery("tx_stage", "Send stages", `label_values(packetscope_stack_latency_seconds_count{direction="tx"}, stage)`))

	b.row("Which stage is slow? (click an exemplar for the packet's trace)")
	b.add(12, exemplars(timeseries("p99 per stage", "s",
		"99th percentile per direction and stage. Exemplar dots carry the trace id of a sampled packet in that bucket.",
		q(`histogram_quantile(0.99, sum by (direction, stage, le) (rate(packetscope_stack_latency_seconds_bucket{`+inst+`}[`+ri+`])))`, "{{direction}} {{stage}}"))))
	b.add(12, exemplars(timeseries("p50 per stage", "s", "",
		q(`histogram_quantile(0.5, sum by (direction, stage, le) (rate(packetscope_stack_latency_seconds_bucket{`+inst+`}[`+ri+`])))`, "{{direction}} {{stage}}"))))

	b.row("How long does a received packet spend in each stage?")
	b.addRepeated(8, "rx_stage", heatmap("rx $rx_stage", "s",
		q(`sum by (le) (rate(packetscope_stack_latency_seconds_bucket{`+inst+`,direction="rx",stage=~"$rx_stage"}[`+ri+`]))`, "{{le}}")))

	b.row("How long does a sent packet spend in each stage?")
	b.addRepeated(8, "tx_stage", heatmap("tx $tx_stage", "s",
		q(`sum by (le) (rate(packetscope_stack_latency_seconds_bucket{`+inst+`,direction="tx",stage=~"$tx_stage"}[`+ri+`]))`, "{{le}}")))

	b.row("How many packets are timed?")
	b.add(12, timeseries("Sampled packets per stage", "pps",
		"Packets timed per stage (1 in --stack.latency-sample-every).",
		q(`sum by (direction, stage) (rate(packetscope_stack_latency_seconds_count{`+inst+`}[`+ri+`]))`, "{{direction}} {{stage}}")))
	b.add(12, traceSearch("Recent packet traces", "Packet-path traces from the trace backend (service packetscope)."))
	return b.done()
}

func tcp() dashboard {
	b := newBoard("packetscope-tcp", "PacketScope / TCP",
		"TCP connections, round-trip time, retransmits and resets.",
		varDatasource(), varTraces(), varInstance(), varInterface())

	b.row("How many connections are there, in which state?")
	b.add(12, stacked(timeseries("Connections by state", "short",
		"TCP sockets per state (request sockets of half-open connections are not sockets yet: a SYN flood shows in the flags panel below, not here).",
		q(`sum by (state) (packetscope_tcp_connections{`+inst+`})`, "{{state}}"))))
	b.add(4, stat("Established", "short", "",
		q(`sum(packetscope_tcp_connections{`+inst+`,state="established"})`, "established")))
	b.add(4, stat("Half-open", "short", "Handshakes in progress on the node's listeners (SYN_RECV request sockets: the SYN queue).",
		q(`sum(packetscope_tcp_half_open_connections{`+inst+`})`, "half-open")))
	b.add(4, stat("Waiting to be accepted", "short", "Connections whose handshake is done and that the application has not accepted, on the listener with the most: dozens mean it has no slot or worker free (a slowloris holding them, or an overload).",
		q(`max(packetscope_tcp_accept_queue_longest{`+inst+`})`, "waiting")))

	b.row("How long is the round trip?")
	b.add(12, heatmap("RTT", "s",
		q(`sum by (le) (rate(packetscope_tcp_rtt_seconds_bucket{`+inst+`}[`+ri+`]))`, "{{le}}")))
	b.add(12, exemplars(timeseries("RTT percentiles", "s", "Smoothed RTT observed at every received segment.",
		q(`histogram_quantile(0.5, sum by (le) (rate(packetscope_tcp_rtt_seconds_bucket{`+inst+`}[`+ri+`])))`, "p50"),
		q(`histogram_quantile(0.99, sum by (le) (rate(packetscope_tcp_rtt_seconds_bucket{`+inst+`}[`+ri+`])))`, "p99"))))

	b.row("Is TCP losing segments or resetting connections?")
	b.add(6, timeseries("Retransmits", "pps", "",
		q(`sum(rate(packetscope_tcp_retransmits_total{`+inst+`}[`+ri+`]))`, "retransmits")))
	b.add(6, timeseries("Retransmitted share of sent segments", "percentunit",
		"Retransmits over TCP packets sent; the retransmit alert fires above 2 %.",
		q(`sum(rate(packetscope_tcp_retransmits_total{`+inst+`}[`+ri+`])) / sum(rate(packetscope_packets_total{`+inst+`,direction="tx",protocol="tcp"}[`+ri+`]))`, "retransmitted")))
	b.add(6, timeseries("Resets", "pps", "rx: resets received; tx: resets sent.",
		q(`sum by (direction) (rate(packetscope_tcp_resets_total{`+inst+`}[`+ri+`]))`, "{{direction}}")))
	b.add(6, timeseries("Received RSTs by verdict", "pps",
		"accepted: exactly in sequence, the connection was reset; challenged (in the window, not exact) and out_of_window: rejected, guesses of a reset injection; its alert fires above 10/s of these two.",
		q(`sum by (verdict) (rate(packetscope_tcp_rst_verdicts_total{`+inst+`}[`+ri+`]))`, "{{verdict}}")))

	b.row("Is someone flooding with SYN, RST or ACK?")
	b.add(12, timeseries("TCP flags at the XDP guard", "pps",
		"What the SYN, RST and ACK flood alerts watch.",
		q(`sum by (flags) (rate(packetscope_xdp_tcp_flags_packets_total{`+iface+`}[`+ri+`]))`, "{{flags}}")))
	b.add(12, timeseries("SYNs and completed handshakes", "pps",
		"The SYN flood alert counts the SYNs no handshake completes: the gap between the two lines.",
		q(`sum(rate(packetscope_xdp_tcp_flags_packets_total{`+iface+`,flags="syn"}[`+ri+`]))`, "SYNs at the guard"),
		q(`sum(rate(packetscope_tcp_passive_opens_total{`+inst+`}[`+ri+`]))`, "handshakes completed")))

	b.row("Is someone scanning ports or exhausting listen queues?")
	b.add(12, timeseries("Distinct closed ports probed (last 10 s)", "short",
		"SYNs and UDP datagrams to ports nobody listens on, counted once per port; the port scan alert fires at 100.",
		q(`sum by (protocol) (packetscope_closed_ports_probed{`+inst+`})`, "{{protocol}}")))
	b.add(12, timeseries("Listen queue events", "ops",
		"SYNs met by a full SYN queue (answered with a cookie or dropped) and accept-queue overflows; the queue exhaustion alert fires above 1/s.",
		q(`sum by (event) (rate(packetscope_tcp_listen_queue_events_total{`+inst+`,event!="listen_drop"}[`+ri+`]))`, "{{event}}")))
	return b.done()
}

func defense() dashboard {
	b := newBoard("packetscope-defense", "PacketScope / Defense",
		"The defense loop: flood alerts, the responder's decisions, and the rules in the XDP guard.",
		varDatasource(), varInstance(), varInterface())

	b.row("Are we under attack?")
	b.add(12, stacked(timeseries("Flood alerts firing", "short",
		"PacketScope alerts with an attack label, as Prometheus evaluates them.",
		q(`sum by (alertname, attack) (ALERTS{alertname=~"PacketScope.*",attack!="",alertstate="firing",`+inst+`})`, "{{attack}}"))))
	b.add(12, timeseries("Packets at the XDP guard by protocol", "pps", "",
		q(`sum by (protocol) (rate(packetscope_xdp_protocol_packets_total{`+iface+`}[`+ri+`]))`, "{{protocol}}")))

	b.row("Which rules are in force?")
	b.add(8, stat("Active rules", "short", "", q(`sum(packetscope_guard_rules{`+inst+`})`, "rules")))
	b.add(16, stacked(timeseries("Rules by origin and action", "short",
		"origin: manual (an operator), builtin or llm (the responder's analysts).",
		q(`sum by (origin, action) (packetscope_guard_rules{`+inst+`})`, "{{origin}} {{action}}"))))

	b.row("What are the rules hitting?")
	b.add(12, timeseries("Hits per rule", "pps", "Packets that matched each rule (first match wins).",
		q(`topk(20, sum by (rule) (rate(packetscope_guard_rule_packets_total{`+inst+`}[`+ri+`])))`, "{{rule}}")))
	b.add(12, timeseries("XDP verdicts", "pps", "",
		q(`sum by (action) (rate(packetscope_xdp_packets_total{`+iface+`}[`+ri+`]))`, "{{action}}")))

	b.row("What did the responder decide, and how fast?")
	b.add(12, stacked(bars(timeseries("Decisions by outcome", "short",
		"Alerts the responder decided on, by analyst and outcome.",
		q(`sum by (analyst, outcome) (increase(packetscope_responder_decisions_total[`+ri+`]))`, "{{analyst}} {{outcome}}")))))
	b.add(12, timeseries("Decision latency", "s", "From the webhook's arrival to the last rule pushed to the agent.",
		q(`histogram_quantile(0.5, sum by (analyst, le) (rate(packetscope_responder_decision_latency_seconds_bucket[`+ri+`])))`, "p50 {{analyst}}"),
		q(`histogram_quantile(0.99, sum by (analyst, le) (rate(packetscope_responder_decision_latency_seconds_bucket[`+ri+`])))`, "p99 {{analyst}}")))
	b.add(12, timeseries("Proposed rules by guardrail verdict", "short", "",
		q(`sum by (analyst, result) (increase(packetscope_responder_rule_validations_total[`+ri+`]))`, "{{analyst}} {{result}}")))
	b.add(12, timeseries("Webhook requests by status", "reqps", "",
		q(`sum by (code) (rate(packetscope_responder_webhook_requests_total[`+ri+`]))`, "{{code}}")))

	b.row("How is the LLM analyst doing?")
	b.add(8, timeseries("LLM request duration", "s", "Only with --analyst=llm.",
		q(`histogram_quantile(0.5, sum by (le) (rate(packetscope_responder_llm_request_duration_seconds_bucket[`+ri+`])))`, "p50"),
		q(`histogram_quantile(0.99, sum by (le) (rate(packetscope_responder_llm_request_duration_seconds_bucket[`+ri+`])))`, "p99")))
	b.add(8, timeseries("LLM tokens", "short", "",
		q(`sum by (kind) (rate(packetscope_responder_llm_tokens_total[`+ri+`]))`, "{{kind}}")))
	b.add(8, timeseries("Fallbacks to the builtin analyst", "short", "",
		q(`sum by (cause) (increase(packetscope_responder_llm_fallbacks_total[`+ri+`]))`, "{{cause}}")))
	return b.done()
}

// ---- Grafana JSON model ----

type dashboard struct {
	UID           string         `json:"uid"`
	Title         string         `json:"title"`
	Description   string         `json:"description"`
	Tags          []string       `json:"tags"`
	Editable      bool           `json:"editable"`
	GraphTooltip  int            `json:"graphTooltip"`
	SchemaVersion int            `json:"schemaVersion"`
	Version       int            `json:"version"`
	Refresh       string         `json:"refresh"`
	Time          map[string]any `json:"time"`
	Timezone      string         `json:"timezone"`
	Templating    map[string]any `json:"templating"`
	Annotations   map[string]any `json:"annotations"`
	Links         []any          `json:"links"`
	Panels        []*panel       `json:"panels"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

var (
	prometheusDS = &datasource{Type: "prometheus", UID: "${datasource}"}
	tracesDS     = &datasource{Type: "jaeger", UID: "${traces}"}
)

type target struct {
	Datasource   *datasource `json:"datasource"`
	RefID        string      `json:"refId"`
	Expr         string      `json:"expr,omitempty"`
	LegendFormat string      `json:"legendFormat,omitempty"`
	Format       string      `json:"format,omitempty"`
	Range        bool        `json:"range,omitempty"`
	Instant      bool        `json:"instant,omitempty"`
	Exemplar     bool        `json:"exemplar,omitempty"`
	// Jaeger search
	QueryType string `json:"queryType,omitempty"`
	Service   string `json:"service,omitempty"`
	Limit     int    `json:"limit,omitempty"`
}

type gridPos struct {
	H int `json:"h"`
	W int `json:"w"`
	X int `json:"x"`
	Y int `json:"y"`
}

type panel struct {
	ID              int            `json:"id"`
	Type            string         `json:"type"`
	Title           string         `json:"title"`
	Description     string         `json:"description,omitempty"`
	GridPos         gridPos        `json:"gridPos"`
	Datasource      *datasource    `json:"datasource,omitempty"`
	Targets         []target       `json:"targets,omitempty"`
	FieldConfig     map[string]any `json:"fieldConfig,omitempty"`
	Options         map[string]any `json:"options,omitempty"`
	Collapsed       *bool          `json:"collapsed,omitempty"`
	Panels          []*panel       `json:"panels,omitempty"`
	Repeat          string         `json:"repeat,omitempty"`
	RepeatDirection string         `json:"repeatDirection,omitempty"`
	MaxPerRow       int            `json:"maxPerRow,omitempty"`
}

// board lays panels out left to right, top to bottom, a row per question.
type board struct {
	d      dashboard
	x, y   int
	rowH   int
	nextID int
}

func newBoard(uid, title, description string, vars ...map[string]any) *board {
	return &board{d: dashboard{
		UID: uid, Title: title, Description: description,
		Tags: []string{"packetscope"}, Editable: true, GraphTooltip: 1, SchemaVersion: 39, Version: 1,
		Refresh: "10s", Time: map[string]any{"from": "now-1h", "to": "now"}, Timezone: "browser",
		Templating: map[string]any{"list": vars},
		Annotations: map[string]any{"list": []any{
			map[string]any{
				"builtIn": 1, "datasource": map[string]any{"type": "grafana", "uid": "-- Grafana --"},
				"enable": true, "hide": true, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts",
				"type": "dashboard",
			},
			map[string]any{
				"datasource": prometheusDS, "enable": true, "iconColor": "red", "name": "Flood alerts",
				"expr": `ALERTS{alertname=~"PacketScope.*",attack!="",alertstate="firing",` + inst + `}`,
				"step": "10s", "titleFormat": "{{alertname}}", "textFormat": "{{instance}} {{interface}} {{attack}}",
				"useValueForTime": false,
			},
		}},
		Links: []any{map[string]any{
			"type": "dashboards", "tags": []string{"packetscope"}, "asDropdown": false,
			"includeVars": true, "keepTime": true, "title": "PacketScope",
		}},
	}, nextID: 1}
}

func (b *board) row(title string) {
	b.newLine()
	collapsed := false
	b.d.Panels = append(b.d.Panels, &panel{ID: b.id(), Type: "row", Title: title, Collapsed: &collapsed,
		GridPos: gridPos{H: 1, W: 24, X: 0, Y: b.y}, Panels: nil})
	b.y++
}

func (b *board) newLine() {
	if b.x > 0 {
		b.y += b.rowH
		b.x, b.rowH = 0, 0
	}
}

func (b *board) add(w int, p *panel) {
	const h = 8
	if b.x+w > 24 {
		b.newLine()
	}
	p.ID = b.id()
	p.GridPos = gridPos{H: h, W: w, X: b.x, Y: b.y}
	b.d.Panels = append(b.d.Panels, p)
	b.x += w
	b.rowH = max(b.rowH, h)
}

// addRepeated adds a panel Grafana repeats for each value of variable.
func (b *board) addRepeated(w int, variable string, p *panel) {
	p.Repeat, p.RepeatDirection, p.MaxPerRow = variable, "h", 24/w
	b.add(w, p)
	b.newLine()
}

func (b *board) id() int { b.nextID++; return b.nextID - 1 }

func (b *board) done() dashboard { return b.d }

// ---- panels ----

func q(expr, legend string) target {
	return target{Datasource: prometheusDS, Expr: expr, LegendFormat: legend, Range: true}
}

func instant(t target) target { t.Range, t.Instant = false, true; return t }

func withRefIDs(ts []target) []target {
	for i := range ts {
		ts[i].RefID = string(rune('A' + i))
	}
	return ts
}

func timeseries(title, unit, description string, ts ...target) *panel {
	return &panel{
		Type: "timeseries", Title: title, Description: description, Datasource: prometheusDS,
		Targets: withRefIDs(ts),
		FieldConfig: map[string]any{
			"defaults": map[string]any{
				"unit": unit,
				"custom": map[string]any{
					"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never",
					"spanNulls": false, "stacking": map[string]any{"mode": "none", "group": "A"},
				},
			},
			"overrides": []any{},
		},
		Options: map[string]any{
			"legend":  map[string]any{"displayMode": "list", "placement": "bottom", "showLegend": true},
			"tooltip": map[string]any{"mode": "multi", "sort": "desc"},
		},
	}
}

func stacked(p *panel) *panel {
	custom := p.FieldConfig["defaults"].(map[string]any)["custom"].(map[string]any)
	custom["stacking"] = map[string]any{"mode": "normal", "group": "A"}
	custom["fillOpacity"] = 60
	return p
}

func bars(p *panel) *panel {
	custom := p.FieldConfig["defaults"].(map[string]any)["custom"].(map[string]any)
	custom["drawStyle"] = "bars"
	return p
}

// exemplars shows the exemplars Prometheus stored with the histogram; the
// datasource's exemplarTraceIdDestinations (provisioning/datasources) turns
// their trace_id into a link to the trace backend.
func exemplars(p *panel) *panel {
	for i := range p.Targets {
		p.Targets[i].Exemplar = true
	}
	return p
}

func stat(title, unit, description string, ts ...target) *panel {
	for i := range ts {
		ts[i] = instant(ts[i])
	}
	return &panel{
		Type: "stat", Title: title, Description: description, Datasource: prometheusDS, Targets: withRefIDs(ts),
		FieldConfig: map[string]any{"defaults": map[string]any{"unit": unit}, "overrides": []any{}},
		Options: map[string]any{
			"reduceOptions": map[string]any{"calcs": []string{"lastNotNull"}, "fields": "", "values": false},
			"colorMode":     "value", "graphMode": "area", "textMode": "auto",
		},
	}
}

func barGauge(title, unit, description string, ts ...target) *panel {
	return &panel{
		Type: "bargauge", Title: title, Description: description, Datasource: prometheusDS, Targets: withRefIDs(ts),
		FieldConfig: map[string]any{"defaults": map[string]any{"unit": unit}, "overrides": []any{}},
		Options: map[string]any{
			"reduceOptions": map[string]any{"calcs": []string{"lastNotNull"}, "fields": "", "values": false},
			"orientation":   "horizontal", "displayMode": "gradient", "showUnfilled": true,
		},
	}
}

func heatmap(title, unit string, t target) *panel {
	t.Format, t.Exemplar = "heatmap", true
	return &panel{
		Type: "heatmap", Title: title, Datasource: prometheusDS, Targets: withRefIDs([]target{t}),
		FieldConfig: map[string]any{"defaults": map[string]any{}, "overrides": []any{}},
		Options: map[string]any{
			"calculate":    false,
			"cellGap":      1,
			"color":        map[string]any{"mode": "scheme", "scheme": "Oranges", "steps": 64, "exponent": 0.5, "fill": "dark-orange", "scale": "exponential"},
			"exemplars":    map[string]any{"color": "rgba(255,0,255,0.7)"},
			"filterValues": map[string]any{"le": 1e-9},
			"legend":       map[string]any{"show": true},
			"rowsFrame":    map[string]any{"layout": "auto"},
			"tooltip":      map[string]any{"show": true, "yHistogram": true},
			"yAxis":        map[string]any{"axisPlacement": "left", "unit": unit},
		},
	}
}

// traceSearch lists recent packet traces from the trace backend chosen by
// the traces variable.
func traceSearch(title, description string) *panel {
	return &panel{
		Type: "table", Title: title, Description: description, Datasource: tracesDS,
		Targets: withRefIDs([]target{{Datasource: tracesDS, QueryType: "search", Service: "packetscope", Limit: 20}}),
	}
}

// ---- variables ----

func varDatasource() map[string]any {
	return map[string]any{
		"type": "datasource", "name": "datasource", "label": "Prometheus", "query": "prometheus",
		"current": map[string]any{}, "hide": 0, "includeAll": false, "multi": false, "refresh": 1, "regex": "",
	}
}

// varTraces picks the trace backend (Jaeger; switch the query to "tempo"
// for Tempo) that the trace panels and exemplar links use.
func varTraces() map[string]any {
	return map[string]any{
		"type": "datasource", "name": "traces", "label": "Traces", "query": "jaeger",
		"current": map[string]any{}, "hide": 0, "includeAll": false, "multi": false, "refresh": 1, "regex": "",
	}
}

func varQuery(name, label, query string) map[string]any {
	return map[string]any{
		"type": "query", "name": name, "label": label, "datasource": prometheusDS,
		"query":      map[string]any{"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
		"definition": query, "current": map[string]any{}, "hide": 0, "includeAll": true, "multi": true,
		"allValue": ".+", "refresh": 2, "regex": "", "sort": 1,
	}
}

func varInstance() map[string]any {
	return varQuery("instance", "Agent", `label_values(up{job="packetscope"}, instance)`)
}

func varInterface() map[string]any {
	return varQuery("interface", "Interface", `label_values(packetscope_packets_total{instance=~"$instance"}, interface)`)
}
