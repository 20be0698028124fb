package exporter

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/packetscope/packetscope/bpf"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// DefaultLatencySampleEvery is the default latency sampling: one skb in 64
// per CPU gets per-stage timestamps; the other 63 cost each stage boundary
// one bit test in a cached bitmap.
const DefaultLatencySampleEvery = 64

// Config selects what the exporter observes.
type Config struct {
	// Netns is the network namespace to report, as a path
	// (/var/run/netns/NAME, /proc/PID/ns/net). Empty: the agent's own.
	Netns string
	// LatencySampleEvery timestamps one skb in N (counted per CPU) through
	// the stack stages; 1 times every skb. Zero means
	// DefaultLatencySampleEvery.
	LatencySampleEvery uint32
}

// Exporter observes one network namespace's stack with eBPF and is a
// prometheus.Collector over what it sees.
type Exporter struct {
	logger  *slog.Logger
	stack   *bpf.Stack
	ns      netns.NsHandle
	nl      *netlink.Handle
	reasons map[uint32]string

	// tcpBase is the socket count per state at start minus the state deltas
	// the kernel had counted at that moment; current = tcpBase + delta.
	tcpBase [16]int64

	mu      sync.Mutex // serializes scrapes (ifnames cache) and Close
	ifnames map[uint32]string
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
	reasons, err := DropReasons()
	if err != nil {
		return nil, fmt.Errorf("read kernel drop reasons: %w", err)
	}
	e := &Exporter{logger: logger, reasons: reasons, ns: -1}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	if cfg.Netns == "" {
		e.ns, err = netns.Get()
	} else {
		e.ns, err = netns.GetFromPath(cfg.Netns)
	}
	if err != nil {
		return nil, fmt.Errorf("open network namespace %q: %w", cfg.Netns, err)
	}
	if e.nl, err = netlink.NewHandleAt(e.ns); err != nil {
		return nil, fmt.Errorf("open netlink in network namespace %q: %w", cfg.Netns, err)
	}
	if e.ifnames, err = interfaceNames(e.nl); err != nil {
		return nil, err
	}
	e.stack, err = bpf.LoadStack(bpf.StackConfig{NetnsPath: cfg.Netns, SampleEvery: cfg.LatencySampleEvery})
	if err != nil {
		return nil, err
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
	logger.Info("stack programs attached", "netns", cfg.Netns, "netns_inode", e.stack.NetnsInode,
		"latency_sample_every", cfg.LatencySampleEvery, "drop_reasons", len(reasons))
	return e, nil
}

// Close detaches every program and frees maps and handles. It may be called
// more than once.
func (e *Exporter) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var errs []error
	if e.stack != nil {
		errs = append(errs, e.stack.Close())
		e.stack = nil
	}
	if e.nl != nil {
		e.nl.Close()
		e.nl = nil
	}
	if e.ns >= 0 {
		errs = append(errs, e.ns.Close())
		e.ns = -1
	}
	return errors.Join(errs...)
}
