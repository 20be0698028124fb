package exporter

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/packetscope/packetscope/bpf"
	"github.com/vishvananda/netlink"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// DefaultLatencySampleEvery is the default latency sampling: one skb in 64
// per CPU gets per-stage timestamps; the other 63 cost each stage boundary
// one bit test in a cached bitmap.
const DefaultLatencySampleEvery = 64

// Config selects what the exporter observes.
type Config struct {
	// Netns is the network namespace to report, opened by the caller
	// (bpf.OpenNetns) and closed after the Exporter.
	Netns *bpf.Netns
	// LatencySampleEvery timestamps one skb in N (counted per CPU) through
	// the stack stages; 1 times every skb. Zero means
	// DefaultLatencySampleEvery.
	LatencySampleEvery uint32
	// XDPPass is the XDP guard's pass record map (guard.Guard.XDPPass):
	// received packets' traces then start at the guard. Nil: at the
	// device's hand-over to the stack.
	XDPPass *ebpf.Map
	// XDPTrace turns the guard's pass records on and off
	// (guard.Guard.TraceXDP); the exporter keeps them on during the stage
	// windows while it traces.
	XDPTrace func(on bool) error
	// StageWindow and StagePeriod sample the stages in windows: the stage
	// boundaries are attached for StageWindow at the start of every
	// StagePeriod (on the wall clock). A window as long as the period keeps
	// them attached. Zero means DefaultStageWindow, DefaultStagePeriod.
	StageWindow, StagePeriod time.Duration

	// Packet-path tracing is on when the standard OpenTelemetry
	// environment configures a trace exporter (OTEL_EXPORTER_OTLP_ENDPOINT,
	// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or OTEL_TRACES_EXPORTER other than
	// none), or when TraceSpanProcessor is set. Otherwise the kernel's
	// tracing code paths stay off.

	// TraceSpanProcessor receives the packet spans instead of an exporter
	// from the environment (tests, embedding).
	TraceSpanProcessor sdktrace.SpanProcessor
	// TraceSlow: a followed packet whose path took at least this long is
	// always traced. Zero means DefaultTraceSlow.
	TraceSlow time.Duration
	// TraceTrackEvery: one packet in N (a power of two, by a hash of the
	// packet's identity) is followed through every stage. Zero means
	// DefaultTraceTrackEvery.
	TraceTrackEvery uint32
	// TraceKeepEvery: one packet in N (a power of two, at least
	// TraceTrackEvery) is traced even when ordinary. Zero means
	// OTEL_TRACES_SAMPLER_ARG's ratio with OTEL_TRACES_SAMPLER=traceidratio,
	// else DefaultTraceKeepEvery.
	TraceKeepEvery uint32
	// TraceTailBudget caps the dropped or slow packets traced beyond the
	// one in TraceKeepEvery, per CPU and second (the excess is counted as
	// packetscope_ebpf_events_lost_total{cause="trace_rate"}). Zero means
	// DefaultTraceTailBudget.
	TraceTailBudget uint32
}

// Exporter observes one network namespace's stack with eBPF and is a
// prometheus.Collector over what it sees.
type Exporter struct {
	logger  *slog.Logger
	stack   *bpf.Stack
	ns      *bpf.Netns
	nl      *netlink.Handle
	reasons map[uint32]string

	// tcpBase is the socket count per state at start minus the state deltas
	// the kernel had counted at that moment; current = tcpBase + delta.
	tcpBase [16]int64

	mu      sync.Mutex // serializes scrapes (ifnames cache) and Close
	ifnames map[uint32]string

	stopWindows context.CancelFunc
	windowsDone chan struct{}
	closed      closedPorts // closed ports probed, the last ClosedPortWindow
	closedDone  chan struct{}
	xdpTrace    func(on bool) error
	stopDevices chan struct{}
	devicesDone chan struct{}

	tracer *tracer // nil when tracing is off
	// traceNames is the tracer's own interface name cache (it runs
	// outside scrapes).
	traceNamesMu sync.Mutex
	traceNames   map[uint32]string
}

// logFeatures says once, at start, what the running kernel does not give
// the agent: one line per missing feature, with the version that brings it.
func logFeatures(logger *slog.Logger, features []bpf.Feature) {
	release := bpf.KernelRelease()
	for _, f := range features {
		if !f.Enabled {
			logger.Info("kernel feature missing", "feature", f.Name, "kernel", release, "since", "Linux "+f.Since,
				"effect", f.Without)
		}
	}
}

// New loads and attaches the stack programs for the configured namespace.
// On failure everything it attached is detached again.
func New(logger *slog.Logger, cfg Config) (_ *Exporter, err error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.LatencySampleEvery == 0 {
		cfg.LatencySampleEvery = DefaultLatencySampleEvery
	}
	if cfg.StageWindow == 0 {
		cfg.StageWindow = DefaultStageWindow
	}
	if cfg.StagePeriod == 0 {
		cfg.StagePeriod = DefaultStagePeriod
	}
	if cfg.StageWindow < 0 || cfg.StagePeriod < 0 {
		return nil, fmt.Errorf("stage window %v and period %v must be positive", cfg.StageWindow, cfg.StagePeriod)
	}
	reasons, err := DropReasons()
	if err != nil {
		return nil, fmt.Errorf("read kernel drop reasons: %w", err)
	}
	if cfg.Netns == nil {
		return nil, errors.New("new exporter: no network namespace to observe")
	}
	e := &Exporter{logger: logger, reasons: reasons, ns: cfg.Netns, xdpTrace: cfg.XDPTrace, traceNames: map[uint32]string{}}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	if err = e.ns.Do(func() (err error) {
		e.nl, err = netlink.NewHandle() // a netlink socket belongs to the namespace it is opened in
		return err
	}); err != nil {
		return nil, fmt.Errorf("open netlink in network namespace %q: %w", cfg.Netns.Path, err)
	}
	if e.ifnames, err = interfaceNames(e.nl); err != nil {
		return nil, err
	}
	traceCfg, err := traceConfig(&cfg)
	if err != nil {
		return nil, err
	}
	e.stack, err = bpf.LoadStack(bpf.StackConfig{Netns: cfg.Netns, SampleEvery: cfg.LatencySampleEvery,
		XDPPass: cfg.XDPPass, Trace: traceCfg})
	if err != nil {
		return nil, err
	}
	logFeatures(logger, e.stack.Features())
	if traceCfg != nil {
		if err := e.startTracer(cfg.TraceSpanProcessor); err != nil {
			return nil, err
		}
		logger.Info("packet tracing on", "track_every", traceCfg.TrackEvery, "keep_every", traceCfg.KeepEvery,
			"slow", time.Duration(traceCfg.SlowNs), "tail_budget", traceCfg.TailBudget)
	}
	// Programs first, snapshot second: a socket that changes state in
	// between is counted by both, which at worst shifts one socket between
	// states until it changes state again.
	delta, err := e.stack.TCPStateDelta()
	if err != nil {
		return nil, err
	}
	snap, err := tcpSnapshot(e.ns)
	if err != nil {
		return nil, fmt.Errorf("count tcp sockets: %w", err)
	}
	for i := range e.tcpBase {
		e.tcpBase[i] = snap[i] - delta[i]
	}
	if err := e.startDevices(); err != nil {
		return nil, err
	}
	// The first window opens now, so that a failure to attach the stage
	// boundaries stops the start (the device watcher already runs: lock).
	e.mu.Lock()
	err = e.stack.AttachPath()
	e.mu.Unlock()
	if err != nil {
		return nil, err
	}
	e.traceXDP(true)
	ctx, cancel := context.WithCancel(context.Background())
	e.stopWindows, e.windowsDone = cancel, make(chan struct{})
	go func() {
		defer close(e.windowsDone)
		e.runStageWindows(ctx, cfg.StageWindow, cfg.StagePeriod)
	}()
	e.closedDone = make(chan struct{})
	go func() {
		defer close(e.closedDone)
		e.runClosedPorts(ctx)
	}()
	logger.Info("stack programs attached", "netns", cfg.Netns.Path, "netns_inode", e.stack.NetnsInode,
		"latency_sample_every", cfg.LatencySampleEvery, "stage_window", cfg.StageWindow,
		"stage_period", cfg.StagePeriod, "drop_reasons", len(reasons))
	return e, nil
}

// Close detaches every program and frees maps and handles. It may be called
// more than once.
func (e *Exporter) Close() error {
	if e.stopWindows != nil {
		e.stopWindows()
		<-e.windowsDone
		<-e.closedDone
		e.stopWindows = nil
	}
	e.closeDevices()
	e.mu.Lock()
	defer e.mu.Unlock()
	var errs []error
	if e.tracer != nil {
		errs = append(errs, e.tracer.close())
		e.tracer = nil
	}
	if e.stack != nil {
		errs = append(errs, e.stack.Close())
		e.stack = nil
	}
	if e.nl != nil {
		e.nl.Close()
		e.nl = nil
	}
	return errors.Join(errs...)
}

// traceConfig resolves the kernel trace sampling, or nil when tracing is off.
func traceConfig(cfg *Config) (*bpf.TraceConfig, error) {
	if cfg.TraceSpanProcessor == nil && !tracingFromEnv() {
		return nil, nil
	}
	tc := &bpf.TraceConfig{TrackEvery: cfg.TraceTrackEvery, KeepEvery: cfg.TraceKeepEvery, SlowNs: uint64(cfg.TraceSlow),
		TailBudget: cfg.TraceTailBudget}
	if tc.TailBudget == 0 {
		tc.TailBudget = DefaultTraceTailBudget
	}
	if tc.TrackEvery == 0 {
		tc.TrackEvery = DefaultTraceTrackEvery
	}
	if tc.KeepEvery == 0 {
		n, err := keepEveryFromEnv()
		if err != nil {
			return nil, err
		}
		if n == 0 {
			n = DefaultTraceKeepEvery
		}
		tc.KeepEvery = max(n, tc.TrackEvery)
	}
	if tc.SlowNs == 0 {
		tc.SlowNs = uint64(DefaultTraceSlow)
	}
	if !powerOfTwo(tc.TrackEvery) || !powerOfTwo(tc.KeepEvery) || tc.KeepEvery < tc.TrackEvery {
		return nil, fmt.Errorf("trace sampling: track every %d and keep every %d must be powers of two, keep >= track",
			tc.TrackEvery, tc.KeepEvery)
	}
	return tc, nil
}

// startTracer opens the trace ring buffer and starts exporting spans. Span
// IDs are per host: the host name and the observed namespace.
func (e *Exporter) startTracer(sp sdktrace.SpanProcessor) error {
	tp, err := newTracerProvider(context.Background(), sp)
	if err != nil {
		return err
	}
	rd, err := e.stack.TraceReader()
	if err != nil {
		_ = tp.Shutdown(context.Background())
		return err
	}
	h := fnv.New64a()
	host, _ := os.Hostname()
	h.Write([]byte(host + "/" + strconv.FormatUint(e.stack.NetnsInode, 10)))
	e.tracer = newTracer(e.logger, tp, rd, h.Sum64(), e.traceIfname, e.reasons)
	return nil
}

// traceIfname names an interface for the tracer, refreshing its cache on
// an unknown index.
func (e *Exporter) traceIfname(idx uint32) string {
	e.traceNamesMu.Lock()
	defer e.traceNamesMu.Unlock()
	if name, ok := e.traceNames[idx]; ok {
		return name
	}
	if link, err := e.nl.LinkByIndex(int(idx)); err == nil {
		e.traceNames[idx] = link.Attrs().Name
		return link.Attrs().Name
	}
	return "ifindex_" + strconv.FormatUint(uint64(idx), 10)
}
