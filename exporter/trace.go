package exporter

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/bits"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/packetscope/packetscope/bpf"
	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sys/unix"
)

// Trace sampling defaults: one packet in 32 (by identity hash) is followed
// through every stage, and kept when dropped or slower than 1 ms (within the
// tail budget, 20 per CPU and second: a flow's duplicate segments alone make
// TCP_OLD_SEQUENCE drops by the hundred per second); one in 4096 is kept
// anyway. Dropped packets are traced even when not followed (with the drop
// point only).
const (
	DefaultTraceTrackEvery = 32
	DefaultTraceKeepEvery  = 4096
	DefaultTraceSlow       = time.Millisecond
	// DefaultTraceTailBudget: dropped or slow packets traced per CPU and
	// second beyond the one in DefaultTraceKeepEvery.
	DefaultTraceTailBudget = 20
)

// tracingFromEnv reports whether the standard OpenTelemetry environment
// asks for traces: an OTLP endpoint or an OTEL_TRACES_EXPORTER other than
// "none".
func tracingFromEnv() bool {
	if exp := os.Getenv("OTEL_TRACES_EXPORTER"); exp != "" {
		return exp != "none"
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// keepEveryFromEnv maps OTEL_TRACES_SAMPLER=traceidratio (or its
// parentbased_ form) with OTEL_TRACES_SAMPLER_ARG=ratio to the kernel's
// power-of-two keep rate; 0 when not set.
func keepEveryFromEnv() (uint32, error) {
	sampler := os.Getenv("OTEL_TRACES_SAMPLER")
	if !strings.HasSuffix(sampler, "traceidratio") {
		return 0, nil
	}
	arg := os.Getenv("OTEL_TRACES_SAMPLER_ARG")
	if arg == "" {
		return 0, nil
	}
	ratio, err := strconv.ParseFloat(arg, 64)
	if err != nil || ratio <= 0 || ratio > 1 {
		return 0, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG %q is not a ratio in (0, 1]", arg)
	}
	n := uint32(1) << uint(min(math.Round(math.Log2(1/ratio)), 31))
	return n, nil
}

func powerOfTwo(n uint32) bool { return n != 0 && bits.OnesCount32(n) == 1 }

// idsKey carries the deterministic IDs of the span being started to
// packetIDs.
type idsKey struct{}

type spanIDs struct {
	trace trace.TraceID
	span  trace.SpanID
}

// packetIDs gives spans the IDs the tracer computed from the packet: the
// SDK asks its IDGenerator, which sees the Start context.
type packetIDs struct{}

func (packetIDs) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	ids, _ := ctx.Value(idsKey{}).(spanIDs)
	return ids.trace, ids.span
}

func (packetIDs) NewSpanID(ctx context.Context, _ trace.TraceID) trace.SpanID {
	ids, _ := ctx.Value(idsKey{}).(spanIDs)
	return ids.span
}

func mix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// traceID derives the trace ID from the packet identity alone, so every
// host that sees the packet names the same trace.
func traceID(hash uint64) trace.TraceID {
	var id trace.TraceID
	binary.BigEndian.PutUint64(id[:8], hash)
	binary.BigEndian.PutUint64(id[8:], mix64(hash^0x7061636b6574))
	return id
}

// spanID is deterministic per packet, host (agent and namespace),
// direction and stage.
func spanID(hash, host uint64, direction uint8, point int) trace.SpanID {
	var id trace.SpanID
	v := mix64(hash ^ mix64(host^uint64(direction)<<8^uint64(point+1)))
	if v == 0 {
		v = 1
	}
	binary.BigEndian.PutUint64(id[:], v)
	return id
}

// monoClock converts bpf_ktime_get_ns (CLOCK_MONOTONIC) to wall time with
// an offset refreshed once a second, so wall-clock steps are followed.
type monoClock struct {
	offset  int64 // realtime - monotonic, ns
	checked time.Time
}

func (c *monoClock) wall(mono uint64) time.Time {
	if now := time.Now(); now.Sub(c.checked) > time.Second {
		var ts unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err == nil {
			c.offset = time.Now().UnixNano() - ts.Nano()
			c.checked = now
		}
	}
	return time.Unix(0, int64(mono)+c.offset)
}

// stage of a trace point: the span ending there, and the latency histogram
// stage it is when the previous point is the one just before (-1: none).
type pointStage struct {
	name  string
	hist  int
	after int // the point that must precede for the histogram stage
}

var pointStages = map[int]pointStage{
	bpf.PointRXEntry:       {"rx xdp", -1, 0},
	bpf.PointRXNetifRecv:   {"rx backlog", bpf.StageRXBacklog, bpf.PointRXEntry},
	bpf.PointRXPreRouting:  {"rx core", bpf.StageRXCore, bpf.PointRXNetifRecv},
	bpf.PointRXLocalIn:     {"rx ip", bpf.StageRXIP, bpf.PointRXPreRouting},
	bpf.PointRXQueued:      {"rx socket enqueue", -1, 0},
	bpf.PointRXDelivered:   {"rx socket", bpf.StageRXSocket, bpf.PointRXLocalIn},
	bpf.PointTXPostRouting: {"tx ip", bpf.StageTXIP, bpf.PointTXLocalOut},
	bpf.PointTXQueue:       {"tx neigh", bpf.StageTXNeigh, bpf.PointTXPostRouting},
	bpf.PointTXStartXmit:   {"tx qdisc", bpf.StageTXQdisc, bpf.PointTXQueue},
	bpf.PointTXXmit:        {"tx driver", bpf.StageTXDriver, bpf.PointTXStartXmit},
}

// Path order of the points per direction.
var pathOrder = [2][]int{
	bpf.DirectionRX: {bpf.PointRXXDP, bpf.PointRXEntry, bpf.PointRXNetifRecv, bpf.PointRXPreRouting, bpf.PointRXLocalIn, bpf.PointRXQueued, bpf.PointRXDelivered},
	bpf.DirectionTX: {bpf.PointTXLocalOut, bpf.PointTXPostRouting, bpf.PointTXQueue, bpf.PointTXStartXmit, bpf.PointTXXmit},
}

var transportNames = map[uint8]string{
	bpf.ProtocolTCP: "tcp", bpf.ProtocolUDP: "udp", bpf.ProtocolICMP: "icmp", bpf.ProtocolICMPv6: "icmpv6",
}

// exemplar is the last traced packet that fell in a latency bucket.
type exemplar struct {
	seconds float64
	traceID string
	at      time.Time
}

// tracer turns the kernel's path records into spans.
type tracer struct {
	logger   *slog.Logger
	tp       *sdktrace.TracerProvider
	tr       trace.Tracer
	rd       *bpf.TraceReader
	host     uint64
	ifname   func(uint32) string
	reasons  map[uint32]string
	clock    monoClock
	done     chan struct{}
	mu       sync.Mutex
	examples [bpf.StageCount]map[int]exemplar // by log2 bucket
}

func newTracer(logger *slog.Logger, tp *sdktrace.TracerProvider, rd *bpf.TraceReader, host uint64,
	ifname func(uint32) string, reasons map[uint32]string) *tracer {
	t := &tracer{
		logger: logger, tp: tp, tr: tp.Tracer("github.com/packetscope/packetscope/exporter"), rd: rd,
		host: host, ifname: ifname, reasons: reasons, done: make(chan struct{}),
	}
	for i := range t.examples {
		t.examples[i] = map[int]exemplar{}
	}
	go t.run()
	return t
}

func (t *tracer) run() {
	defer close(t.done)
	for {
		rec, err := t.rd.Read()
		if err != nil {
			if errors.Is(err, bpf.ErrTraceClosed) {
				return
			}
			t.logger.Warn("read trace record", "err", err)
			continue
		}
		t.emit(rec)
	}
}

func addr(family uint8, b [16]byte) string {
	switch family {
	case 4:
		return netip.AddrFrom4([4]byte(b[:4])).String()
	case 6:
		return netip.AddrFrom16(b).String()
	}
	return ""
}

// emit exports one packet's path: a root span over the whole path with the
// flow, a child per stage between consecutive points it passed, and for a
// drop a last child up to the drop with the reason as error status.
func (t *tracer) emit(rec bpf.TraceRecord) {
	hash := rec.Hash
	if hash == 0 { // unreadable headers: a trace of its own
		hash = mix64(rec.EndNs ^ t.host)
	}
	tid := traceID(hash)
	dir := rec.Direction & 1
	dirName := directionLabels[dir]
	attrs := []attribute.KeyValue{
		attribute.String("packetscope.direction", dirName),
		attribute.String("network.io.direction", map[uint8]string{bpf.DirectionRX: "receive", bpf.DirectionTX: "transmit"}[dir]),
	}
	if name, ok := transportNames[rec.Protocol]; ok {
		attrs = append(attrs, attribute.String("network.transport", name))
	}
	if rec.Family != 0 {
		attrs = append(attrs,
			attribute.String("network.type", "ipv"+strconv.Itoa(int(rec.Family))),
			attribute.String("source.address", addr(rec.Family, rec.Src)),
			attribute.String("destination.address", addr(rec.Family, rec.Dst)))
	}
	if rec.Protocol == bpf.ProtocolTCP || rec.Protocol == bpf.ProtocolUDP {
		attrs = append(attrs, attribute.Int("source.port", int(rec.SrcPort)), attribute.Int("destination.port", int(rec.DstPort)))
	}
	if rec.Ifindex != 0 {
		attrs = append(attrs, attribute.String("network.interface.name", t.ifname(rec.Ifindex)))
	}
	var reason string
	if rec.End == bpf.TraceEndDrop {
		reason = dropReasonName(t.reasons, rec.DropReason)
		attrs = append(attrs, attribute.String("packetscope.drop_reason", reason))
	}

	ctx := context.WithValue(context.Background(), idsKey{}, spanIDs{tid, spanID(hash, t.host, dir, -1)})
	ctx, root := t.tr.Start(ctx, "packet "+dirName, trace.WithTimestamp(t.clock.wall(rec.StartNs)),
		trace.WithAttributes(attrs...), trace.WithSpanKind(trace.SpanKindInternal))
	prev, prevNs := -1, uint64(0)
	for _, p := range pathOrder[dir] {
		ns := rec.Points[p]
		if ns == 0 {
			continue
		}
		if prev >= 0 {
			st := pointStages[p]
			name := st.name
			if p == bpf.PointRXDelivered && prev == bpf.PointRXQueued {
				name = "rx socket read"
			}
			sctx := context.WithValue(ctx, idsKey{}, spanIDs{tid, spanID(hash, t.host, dir, p)})
			_, s := t.tr.Start(sctx, name, trace.WithTimestamp(t.clock.wall(prevNs)))
			s.End(trace.WithTimestamp(t.clock.wall(ns)))
			if st.hist >= 0 && (prev == st.after || p == bpf.PointRXDelivered && prev == bpf.PointRXQueued) {
				t.example(st.hist, ns-rec.Points[st.after], tid)
			}
		}
		prev, prevNs = p, ns
	}
	if rec.End == bpf.TraceEndDrop {
		start := rec.EndNs
		if prev >= 0 {
			start = prevNs
		}
		sctx := context.WithValue(ctx, idsKey{}, spanIDs{tid, spanID(hash, t.host, dir, bpf.TracePoints)})
		_, s := t.tr.Start(sctx, "drop", trace.WithTimestamp(t.clock.wall(start)),
			trace.WithAttributes(attribute.String("packetscope.drop_reason", reason)))
		s.SetStatus(codes.Error, reason)
		s.End(trace.WithTimestamp(t.clock.wall(rec.EndNs)))
		root.SetStatus(codes.Error, reason)
	}
	root.End(trace.WithTimestamp(t.clock.wall(rec.EndNs)))
}

// example remembers a traced packet's stage latency as the exemplar of the
// histogram bucket it falls in (the kernel's log2 buckets).
func (t *tracer) example(stage int, ns uint64, tid trace.TraceID) {
	if ns == 0 || ns > 1<<62 {
		return
	}
	b := bits.Len64(ns - 1) // ceil(log2(ns)), as stack.bpf.c's log2_bucket
	t.mu.Lock()
	t.examples[stage][b] = exemplar{seconds: float64(ns) / 1e9, traceID: tid.String(), at: time.Now()}
	t.mu.Unlock()
}

// exemplars returns one stage's bucket exemplars.
func (t *tracer) exemplars(stage int) []exemplar {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]exemplar, 0, len(t.examples[stage]))
	for _, e := range t.examples[stage] {
		out = append(out, e)
	}
	return out
}

// close stops reading, waits for the reader and flushes what is batched.
func (t *tracer) close() error {
	err := t.rd.Close()
	<-t.done
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return errors.Join(err, t.tp.Shutdown(ctx))
}

// newTracerProvider builds the provider: the given processor (tests), or a
// batching exporter from the OTEL_* environment (autoexport: otlp over
// grpc or http/protobuf, console, none).
func newTracerProvider(ctx context.Context, sp sdktrace.SpanProcessor) (*sdktrace.TracerProvider, error) {
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "packetscope")),
		resource.WithFromEnv(), resource.WithHost())
	if err != nil {
		return nil, fmt.Errorf("build trace resource: %w", err)
	}
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		// The kernel sampled already; every record becomes spans.
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithIDGenerator(packetIDs{}),
	}
	if sp != nil {
		opts = append(opts, sdktrace.WithSpanProcessor(sp))
	} else {
		exp, err := autoexport.NewSpanExporter(ctx)
		if err != nil {
			return nil, fmt.Errorf("configure trace exporter from OTEL_* environment: %w", err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	return sdktrace.NewTracerProvider(opts...), nil
}
