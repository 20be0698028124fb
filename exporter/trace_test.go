package exporter

import (
	"net"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/packetscope/packetscope/bpf"
	"github.com/packetscope/packetscope/internal/testnet"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// Trace test hosts: "a" receives, "b" sends; each has its own exporter.
const (
	trcA  = "10.206.1.1"
	trcB  = "10.206.1.2"
	trc6A = "fd00:206:1::1"
	trc6B = "fd00:206:1::2"
)

type traceHost struct {
	exp *Exporter
	rec *tracetest.SpanRecorder
	reg *prometheus.Registry
}

// newTraceHost starts an exporter on ns that follows and keeps every packet.
func newTraceHost(t *testing.T, ns *testnet.NS) *traceHost {
	t.Helper()
	h := &traceHost{rec: tracetest.NewSpanRecorder(), reg: prometheus.NewPedanticRegistry()}
	exp, err := New(nil, Config{Netns: openTestNetns(t, ns.Path()), LatencySampleEvery: 1, StageWindow: time.Second, StagePeriod: time.Second, TraceSpanProcessor: h.rec,
		TraceTrackEvery: 1, TraceKeepEvery: 1})
	if err != nil {
		t.Fatalf("New with tracing: %v", err)
	}
	t.Cleanup(func() {
		if err := exp.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	h.exp = exp
	h.reg.MustRegister(exp)
	return h
}

func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.Emit()
		}
	}
	return ""
}

// traceOf is one packet's spans on one host: the root and its children in
// start order.
type traceOf struct {
	root     sdktrace.ReadOnlySpan
	children []sdktrace.ReadOnlySpan
}

func (tr traceOf) names() []string {
	var out []string
	for _, c := range tr.children {
		out = append(out, c.Name())
	}
	return out
}

// findTraces groups a recorder's ended spans by trace and returns those
// whose root matches.
func findTraces(rec *tracetest.SpanRecorder, match func(root sdktrace.ReadOnlySpan) bool) []traceOf {
	byTrace := map[trace.TraceID]*traceOf{}
	var order []trace.TraceID
	for _, s := range rec.Ended() {
		id := s.SpanContext().TraceID()
		tr, ok := byTrace[id]
		if !ok {
			tr = &traceOf{}
			byTrace[id] = tr
			order = append(order, id)
		}
		if !s.Parent().IsValid() {
			tr.root = s
		} else {
			tr.children = append(tr.children, s)
		}
	}
	var out []traceOf
	for _, id := range order {
		tr := byTrace[id]
		if tr.root != nil && match(tr.root) {
			out = append(out, *tr)
		}
	}
	return out
}

func waitTraces(t *testing.T, what string, rec *tracetest.SpanRecorder, match func(sdktrace.ReadOnlySpan) bool) []traceOf {
	t.Helper()
	var got []traceOf
	waitFor(t, what, func() (bool, string) {
		got = findTraces(rec, match)
		return len(got) > 0, "no matching trace among " + itoa(len(rec.Ended())) + " spans"
	})
	return got
}

func itoa(n int) string { return strconv.Itoa(n) }

// checkShape asserts a trace's children are the stage spans in path order,
// contiguous, inside the root, each a child of the root.
func checkShape(t *testing.T, tr traceOf) {
	t.Helper()
	root := tr.root
	if root.StartTime().After(root.EndTime()) {
		t.Errorf("root %s starts after it ends", root.Name())
	}
	if d := time.Since(root.StartTime()); d < 0 || d > time.Minute {
		t.Errorf("root %s starts %v ago: kernel time not converted to wall time", root.Name(), d)
	}
	for i, c := range tr.children {
		if c.Parent().SpanID() != root.SpanContext().SpanID() {
			t.Errorf("span %s: parent %s, want the root %s", c.Name(), c.Parent().SpanID(), root.SpanContext().SpanID())
		}
		if c.StartTime().Before(root.StartTime()) || c.EndTime().After(root.EndTime()) {
			t.Errorf("span %s [%v, %v] outside the root [%v, %v]", c.Name(), c.StartTime(), c.EndTime(), root.StartTime(), root.EndTime())
		}
		if i > 0 && !c.StartTime().Equal(tr.children[i-1].EndTime()) {
			t.Errorf("span %s starts at %v, not where %s ended (%v)", c.Name(), c.StartTime(), tr.children[i-1].Name(), tr.children[i-1].EndTime())
		}
	}
}

func isPrefix(want, got []string) bool {
	if len(got) < len(want) {
		return false
	}
	for i := range want {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

func newTraceNets(t *testing.T) (a, b *testnet.NS) {
	t.Helper()
	requireKernel(t)
	a = testnet.NewNS(t, "ps-trc")
	b = testnet.NewNS(t, "ps-trc")
	testnet.Link(t, a, "eth0", trcA+"/24,"+trc6A+"/64", b, "eth0", trcB+"/24,"+trc6B+"/64")
	return a, b
}

// TestTraceLive: UDP, TCP, ICMP and a drop between two namespaces, each
// observed by its own exporter: the receiver's rx path and the sender's tx
// path of the same packet share a trace ID.
func TestTraceLive(t *testing.T) {
	a, b := newTraceNets(t)
	ha := newTraceHost(t, a)
	hb := newTraceHost(t, b)

	// UDP b -> a, read by a.
	srv := listenUDP(t, a, trcA+":6001")
	c := mustDial(t, b, "udp", trcA+":6001")
	for range 3 {
		if _, err := c.Write([]byte("packetscope trace")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		_ = srv.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, _, err := srv.ReadFrom(buf); err != nil {
			t.Fatalf("read on a: %v", err)
		}
	}
	udpRX := func(r sdktrace.ReadOnlySpan) bool {
		return r.Name() == "packet rx" && attr(r, "network.transport") == "udp" && attr(r, "destination.port") == "6001"
	}
	rx := waitTraces(t, "udp rx trace on a", ha.rec, udpRX)
	tr := rx[0]
	if want := []string{"rx backlog", "rx core", "rx ip", "rx socket enqueue"}; !isPrefix(want, tr.names()) {
		t.Errorf("udp rx stages = %v, want %v", tr.names(), want)
	}
	checkShape(t, tr)
	for k, v := range map[string]string{"source.address": trcB, "destination.address": trcA, "network.interface.name": "eth0",
		"network.type": "ipv4", "packetscope.direction": "rx"} {
		if got := attr(tr.root, k); got != v {
			t.Errorf("udp rx root %s = %q, want %q", k, got, v)
		}
	}
	// The sender's tx path of the same packet: same trace ID.
	txByID := map[trace.TraceID]traceOf{}
	for _, x := range waitTraces(t, "udp tx trace on b", hb.rec, func(r sdktrace.ReadOnlySpan) bool {
		return r.Name() == "packet tx" && attr(r, "destination.port") == "6001"
	}) {
		txByID[x.root.SpanContext().TraceID()] = x
	}
	waitFor(t, "b's tx trace of a's rx packet", func() (bool, string) {
		for _, x := range findTraces(hb.rec, func(r sdktrace.ReadOnlySpan) bool { return r.Name() == "packet tx" }) {
			txByID[x.root.SpanContext().TraceID()] = x
		}
		for _, r := range findTraces(ha.rec, udpRX) {
			if tx, ok := txByID[r.root.SpanContext().TraceID()]; ok {
				if want := []string{"tx ip", "tx neigh", "tx qdisc", "tx driver"}; !isPrefix(want, tx.names()) {
					return false, "tx stages " + strings.Join(tx.names(), ",")
				}
				checkShape(t, tx)
				if tx.root.SpanContext().SpanID() == r.root.SpanContext().SpanID() {
					return false, "both hosts' roots have the same span ID"
				}
				return true, ""
			}
		}
		return false, itoa(len(txByID)) + " tx traces on b, none shares a trace ID with a udp rx trace on a"
	})

	// A datagram to a closed port: dropped with NO_SOCKET.
	closed := mustDial(t, b, "udp", trcA+":6009")
	if _, err := closed.Write([]byte("nobody")); err != nil {
		t.Fatal(err)
	}
	drop := waitTraces(t, "drop trace on a", ha.rec, func(r sdktrace.ReadOnlySpan) bool {
		return attr(r, "destination.port") == "6009" && r.Status().Code == codes.Error
	})[0]
	if drop.root.Status().Description != "NO_SOCKET" || attr(drop.root, "packetscope.drop_reason") != "NO_SOCKET" {
		t.Errorf("drop root status %+v, drop_reason %q; want NO_SOCKET", drop.root.Status(), attr(drop.root, "packetscope.drop_reason"))
	}
	if n := drop.names(); len(n) == 0 || n[len(n)-1] != "drop" {
		t.Errorf("drop trace stages = %v, want a last span named drop", n)
	}
	checkShape(t, drop)

	// TCP b -> a with data read by a.
	ln := listenTCP(t, a, trcA+":6002")
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		buf := make([]byte, 4096)
		for {
			if _, err := conn.Read(buf); err != nil {
				return
			}
		}
	}()
	tc := mustDial(t, b, "tcp", trcA+":6002")
	for range 5 {
		if _, err := tc.Write([]byte(strings.Repeat("t", 300))); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	tcp := waitTraces(t, "tcp rx trace with the copy to the reader on a", ha.rec, func(r sdktrace.ReadOnlySpan) bool {
		return r.Name() == "packet rx" && attr(r, "network.transport") == "tcp" && attr(r, "destination.port") == "6002" &&
			len(findTraces(ha.rec, func(x sdktrace.ReadOnlySpan) bool { return x == r })[0].children) >= 4
	})[0]
	if n := tcp.names(); !isPrefix([]string{"rx backlog", "rx core", "rx ip"}, n) || n[len(n)-1] != "rx socket read" && n[len(n)-1] != "rx socket" {
		t.Errorf("tcp rx stages = %v, want backlog, core, ip ... ending at the socket read", n)
	}
	checkShape(t, tcp)

	// ICMP echo b -> a.
	b.MustRun("ping", "-c", "3", "-i", "0.05", "-W", "2", trcA)
	icmp := waitTraces(t, "icmp rx trace on a", ha.rec, func(r sdktrace.ReadOnlySpan) bool {
		return r.Name() == "packet rx" && attr(r, "network.transport") == "icmp" && attr(r, "source.address") == trcB
	})[0]
	if !isPrefix([]string{"rx backlog", "rx core", "rx ip"}, icmp.names()) {
		t.Errorf("icmp rx stages = %v", icmp.names())
	}
	checkShape(t, icmp)
	for _, x := range []traceOf{tr, drop, tcp, icmp} {
		t.Logf("%s %s %s: %v", x.root.SpanContext().TraceID(), x.root.Name(), attr(x.root, "network.transport"), x.names())
	}

	// UDP over IPv6: same trace ID on both hosts too.
	srv6 := listenUDP(t, a, "["+trc6A+"]:6003")
	c6 := mustDial(t, b, "udp", "["+trc6A+"]:6003")
	for i := range 3 {
		// Distinct payloads: identical IPv6 datagrams of one flow are the
		// same packet to the identity hash.
		if _, err := c6.Write([]byte(strconv.Itoa(i) + " v6 trace")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		_ = srv6.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := srv6.ReadFrom(buf); err != nil {
			t.Fatalf("read on a over IPv6: %v", err)
		}
	}
	waitFor(t, "an IPv6 UDP packet's rx trace on a and tx trace on b with one trace ID", func() (bool, string) {
		tx := map[trace.TraceID]bool{}
		for _, x := range findTraces(hb.rec, func(r sdktrace.ReadOnlySpan) bool {
			return r.Name() == "packet tx" && attr(r, "network.type") == "ipv6" && attr(r, "destination.port") == "6003"
		}) {
			tx[x.root.SpanContext().TraceID()] = true
		}
		rx := findTraces(ha.rec, func(r sdktrace.ReadOnlySpan) bool {
			return r.Name() == "packet rx" && attr(r, "destination.address") == trc6A && attr(r, "destination.port") == "6003"
		})
		for _, r := range rx {
			if tx[r.root.SpanContext().TraceID()] {
				checkShape(t, r)
				return true, ""
			}
		}
		return false, itoa(len(rx)) + " rx traces on a, " + itoa(len(tx)) + " tx traces on b, none shared"
	})

	// Exemplars: some latency bucket carries a trace ID that a recorded
	// trace has.
	known := map[string]bool{}
	for _, s := range ha.rec.Ended() {
		known[s.SpanContext().TraceID().String()] = true
	}
	mfs, err := ha.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, mf := range mfs {
		if mf.GetName() != "packetscope_stack_latency_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, bk := range m.GetHistogram().GetBucket() {
				ex := bk.GetExemplar()
				if ex == nil {
					continue
				}
				for _, lp := range ex.GetLabel() {
					if lp.GetName() == "trace_id" && known[lp.GetValue()] {
						found++
					}
					if ex.GetValue() > bk.GetUpperBound() {
						t.Errorf("exemplar %v above its bucket's bound %v", ex.GetValue(), bk.GetUpperBound())
					}
				}
			}
		}
	}
	if found == 0 {
		t.Error("no packetscope_stack_latency_seconds bucket carries the trace_id of a recorded trace")
	}
	if v := value(t, ha.reg, "packetscope_ebpf_events_lost_total", labels("cause", "trace_ringbuf")); v != 0 {
		t.Errorf("lost trace records = %v, want 0 at this rate", v)
	}
}

// TestTraceTailBudget: a flood of drops is traced up to the per-CPU budget;
// the rest is counted as lost (cause trace_rate).
func TestTraceTailBudget(t *testing.T) {
	a, b := newTraceNets(t)
	rec := tracetest.NewSpanRecorder()
	exp, err := New(nil, Config{Netns: openTestNetns(t, a.Path()), StageWindow: time.Second, StagePeriod: time.Second, TraceSpanProcessor: rec, TraceTrackEvery: 1 << 20, TraceKeepEvery: 1 << 30,
		TraceTailBudget: 5})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = exp.Close() })
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(exp)
	c := mustDial(t, b, "udp", trcA+":6010")
	const n = 300
	for range n {
		_, _ = c.Write([]byte("flood")) // ICMP unreachable answers make some writes fail
	}
	rate := labels("cause", "trace_rate")
	waitFor(t, "drops over the budget counted", func() (bool, string) {
		v := value(t, reg, "packetscope_ebpf_events_lost_total", rate)
		return v > 0, "trace_rate " + strconv.FormatFloat(v, 'f', -1, 64)
	})
	time.Sleep(200 * time.Millisecond) // let the reader drain the ring
	drops := findTraces(rec, func(r sdktrace.ReadOnlySpan) bool { return attr(r, "packetscope.drop_reason") == "NO_SOCKET" })
	// 5 per CPU and ~1.07 s window; the flood spans at most a few windows.
	if len(drops) == 0 || len(drops) > 5*runtime.NumCPU()*3 {
		t.Errorf("%d drop traces from %d drops, want 1..%d (budget 5 per CPU and window)", len(drops), n, 5*runtime.NumCPU()*3)
	}
	lost := value(t, reg, "packetscope_ebpf_events_lost_total", rate)
	if int(lost)+len(drops) > n {
		t.Errorf("lost %v + traced %d > %d drops", lost, len(drops), n)
	}
}

// TestTraceOffByDefault: without OTEL_* configuration no tracer runs and
// no trace_ringbuf loss is reported.
func TestTraceOffByDefault(t *testing.T) {
	for _, k := range []string{"OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
		t.Setenv(k, "")
	}
	requireKernel(t)
	a := testnet.NewNS(t, "ps-trc")
	exp := newExporter(t, a.Path())
	if exp.tracer != nil {
		t.Fatal("tracer running without OTEL_* configuration")
	}
	t.Setenv("OTEL_TRACES_EXPORTER", "none")
	if tracingFromEnv() {
		t.Error("OTEL_TRACES_EXPORTER=none turns tracing on")
	}
	t.Setenv("OTEL_TRACES_EXPORTER", "")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
	if !tracingFromEnv() {
		t.Error("OTEL_EXPORTER_OTLP_ENDPOINT does not turn tracing on")
	}
	t.Setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
	t.Setenv("OTEL_TRACES_SAMPLER_ARG", "0.01")
	if n, err := keepEveryFromEnv(); err != nil || n != 128 {
		t.Errorf("keep rate for ratio 0.01 = %d, %v; want 128", n, err)
	}
	t.Setenv("OTEL_TRACES_SAMPLER_ARG", "2")
	if _, err := keepEveryFromEnv(); err == nil {
		t.Error("ratio 2 accepted")
	}
}

// TestTraceSpanShape: a synthetic record's spans: names, parents, order,
// times from the kernel timestamps, drop status, deterministic IDs.
func TestTraceSpanShape(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp, err := newTracerProvider(t.Context(), rec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	tr := &tracer{tr: tp.Tracer("test"), host: 42, ifname: func(uint32) string { return "eth0" },
		reasons: map[uint32]string{2: "NO_SOCKET"}}
	for i := range tr.examples {
		tr.examples[i] = map[int]exemplar{}
	}
	// Offset fixed: kernel ns 1,000 is wall 2026-01-01T00:00:00.000001Z.
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tr.clock = monoClock{offset: base.UnixNano(), checked: time.Now().Add(time.Hour)}
	r := bpf.TraceRecord{Hash: 0xabcdef, Family: 4, Protocol: bpf.ProtocolUDP, SrcPort: 1000, DstPort: 53,
		Ifindex: 2, Direction: bpf.DirectionRX, End: bpf.TraceEndDrop, DropReason: 2, StartNs: 1000, EndNs: 9000}
	copy(r.Src[:], net.ParseIP(trcB).To4())
	copy(r.Dst[:], net.ParseIP(trcA).To4())
	r.Points[bpf.PointRXEntry] = 1000
	r.Points[bpf.PointRXNetifRecv] = 3000
	r.Points[bpf.PointRXPreRouting] = 4000
	// LOCAL_IN not reached: dropped after PRE_ROUTING.
	tr.emit(r)

	spans := rec.Ended()
	if len(spans) != 4 {
		t.Fatalf("got %d spans, want root + 2 stages + drop", len(spans))
	}
	got := findTraces(rec, func(sdktrace.ReadOnlySpan) bool { return true })
	if len(got) != 1 {
		t.Fatalf("got %d traces, want 1", len(got))
	}
	root := got[0].root
	if root.Name() != "packet rx" || !root.StartTime().Equal(base.Add(1000)) || !root.EndTime().Equal(base.Add(9000)) {
		t.Errorf("root %s [%v, %v]", root.Name(), root.StartTime(), root.EndTime())
	}
	if root.Status().Code != codes.Error || root.Status().Description != "NO_SOCKET" {
		t.Errorf("root status %+v", root.Status())
	}
	if root.SpanContext().TraceID() != traceID(0xabcdef) {
		t.Errorf("trace ID %s, want the packet's %s", root.SpanContext().TraceID(), traceID(0xabcdef))
	}
	want := []struct {
		name       string
		start, end int64
	}{{"rx backlog", 1000, 3000}, {"rx core", 3000, 4000}, {"drop", 4000, 9000}}
	for i, w := range want {
		c := got[0].children[i]
		if c.Name() != w.name || !c.StartTime().Equal(base.Add(time.Duration(w.start))) || !c.EndTime().Equal(base.Add(time.Duration(w.end))) {
			t.Errorf("child %d = %s [%v, %v], want %s [%d, %d] ns after base", i, c.Name(), c.StartTime(), c.EndTime(), w.name, w.start, w.end)
		}
		if c.Parent().SpanID() != root.SpanContext().SpanID() {
			t.Errorf("child %s is not the root's", c.Name())
		}
	}
	wantAttrs := map[attribute.Key]string{"network.transport": "udp", "source.address": trcB, "source.port": "1000",
		"destination.address": trcA, "destination.port": "53", "network.interface.name": "eth0"}
	for k, v := range wantAttrs {
		if got := attr(root, string(k)); got != v {
			t.Errorf("root %s = %q, want %q", k, got, v)
		}
	}
	// Same record again: same IDs (deterministic per host and stage).
	tr.emit(r)
	again := rec.Ended()[4:]
	for i := range again {
		if again[i].SpanContext().SpanID() != spans[i].SpanContext().SpanID() {
			t.Errorf("span %s: ID changed between identical records", spans[i].Name())
		}
	}
	// The backlog stage (entry -> netif_receive_skb, 2,000 ns) is an exemplar
	// in bucket ceil(log2(2000)) = 11.
	if ex, ok := tr.examples[bpf.StageRXBacklog][11]; !ok || ex.traceID != traceID(0xabcdef).String() {
		t.Errorf("backlog exemplars = %+v", tr.examples[bpf.StageRXBacklog])
	}
}
