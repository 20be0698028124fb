package guard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/packetscope/packetscope/bpf"
	"github.com/packetscope/packetscope/rule"
)

// Defaults of Config.
const (
	DefaultPinPath     = "/sys/fs/bpf/packetscope"
	DefaultMaxRules    = 1024
	DefaultSampleEvery = 64
	DefaultExpireEvery = time.Second
)

// Config configures Open.
type Config struct {
	// Netns is the network namespace whose interfaces the guard attaches to
	// (opened once by the caller); nil means the calling thread's.
	Netns       *bpf.Netns
	Interfaces  []string // interfaces to attach the XDP guard to
	PinPath     string   // bpffs directory for maps and links; DefaultPinPath when empty
	MaxRules    int      // rules in the table at most; DefaultMaxRules when 0
	SampleEvery uint32   // 1-in-N packets sampled for the traffic window; DefaultSampleEvery when 0
	NoSampling  bool     // sample nothing (SampleEvery ignored)
	ExpireEvery time.Duration
	// SampleBuffer is the capacity of the Samples channel; samples that do
	// not fit are counted and dropped. 8192 when 0.
	SampleBuffer int
}

// Guard is the XDP guard attached to the configured interfaces.
type Guard struct {
	logger  *slog.Logger
	cfg     Config
	objs    bpf.GuardObjects
	links   []link.Link
	ifaces  map[uint32]string // ifindex -> name, for counter labels
	table   *RuleTable
	sampler *sampler
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	closed  bool
}

// Open loads the XDP guard, adopts the rules and links pinned under
// cfg.PinPath by a previous agent (or starts empty), attaches to every
// interface (native mode where the driver has it, generic otherwise) and
// starts expiry and sampling.
func Open(logger *slog.Logger, cfg Config) (*Guard, error) {
	if cfg.PinPath == "" {
		cfg.PinPath = DefaultPinPath
	}
	if cfg.MaxRules <= 0 {
		cfg.MaxRules = DefaultMaxRules
	}
	if cfg.MaxRules > FPSlots+CIDRSlots {
		return nil, fmt.Errorf("max rules %d is above the guard's capacity of %d", cfg.MaxRules, FPSlots+CIDRSlots)
	}
	if cfg.SampleEvery == 0 {
		cfg.SampleEvery = DefaultSampleEvery
	}
	if cfg.NoSampling {
		cfg.SampleEvery = 0
	}
	if cfg.ExpireEvery <= 0 {
		cfg.ExpireEvery = DefaultExpireEvery
	}
	if cfg.SampleBuffer <= 0 {
		cfg.SampleBuffer = 8192
	}
	ifaces := make(map[uint32]string, len(cfg.Interfaces))
	var ifindexes []int
	if err := inNetns(cfg.Netns, func() error {
		var err error
		ifindexes, err = resolveInterfaces(cfg.Interfaces, ifaces)
		return err
	}); err != nil {
		return nil, err
	}
	if err := bpf.EnsureFilesystems(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.PinPath, 0o700); err != nil {
		return nil, fmt.Errorf("create pin path %s: %w", cfg.PinPath, err)
	}
	spec, err := bpf.LoadGuardSpec()
	if err != nil {
		return nil, fmt.Errorf("load guard spec: %w", err)
	}
	g := &Guard{logger: logger, cfg: cfg, ifaces: ifaces}
	// Which maps persist is declared in guard.bpf.c (LIBBPF_PIN_BY_NAME): the
	// loader reuses those pinned under PinPath and pins the ones it creates.
	err = spec.LoadAndAssign(&g.objs, &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: cfg.PinPath}})
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load xdp guard: %+v", ve)
		}
		return nil, fmt.Errorf("load xdp guard (pinned maps under %s from an incompatible version? remove them with `packetscope cleanup`): %w", cfg.PinPath, err)
	}
	g.table = newRuleTable(logger, g.objs.Maps(), cfg.MaxRules, cfg.SampleEvery)
	n, err := g.table.adopt()
	if err != nil {
		g.objs.Close()
		return nil, fmt.Errorf("adopt pinned rules: %w", err)
	}
	if n > 0 {
		logger.Info("adopted pinned rules", "rules", n, "pin_path", cfg.PinPath)
	}
	// An XDP link names its interface by ifindex, which is resolved in the
	// namespace of the thread that creates it.
	if err := inNetns(cfg.Netns, func() error {
		for i, name := range cfg.Interfaces {
			l, err := g.attach(name, ifindexes[i])
			if err != nil {
				return err
			}
			g.links = append(g.links, l)
		}
		return nil
	}); err != nil {
		g.closeAll()
		return nil, err
	}
	g.detachUnconfigured()
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	g.wg.Go(func() { g.table.ExpireLoop(ctx, cfg.ExpireEvery) })
	if cfg.SampleEvery > 0 {
		s, err := newSampler(logger, g.objs.Samples, ifaces, cfg.SampleBuffer)
		if err != nil {
			g.Close()
			return nil, err
		}
		g.sampler = s
		g.wg.Go(s.run)
	}
	return g, nil
}

func linkPin(pinPath, ifname string) string { return filepath.Join(pinPath, "link_"+ifname) }

// attach puts the program on one interface: it replaces the program of a
// link a previous agent pinned (no gap in protection), or creates and pins
// a new link, native mode first.
func (g *Guard) attach(name string, ifindex int) (link.Link, error) {
	pin := linkPin(g.cfg.PinPath, name)
	if l, err := link.LoadPinnedLink(pin, nil); err == nil {
		if err := l.Update(g.objs.GuardXdp); err == nil {
			g.logger.Info("xdp guard adopted pinned link", "ifname", name, "pin", pin)
			return l, nil
		} else {
			g.logger.Warn("pinned xdp link unusable, attaching anew", "ifname", name, "err", err)
			_ = l.Unpin()
			_ = l.Close()
		}
	}
	mode := "native"
	l, err := link.AttachXDP(link.XDPOptions{Program: g.objs.GuardXdp, Interface: ifindex, Flags: link.XDPDriverMode})
	if err != nil {
		mode = "generic"
		var gerr error
		l, gerr = link.AttachXDP(link.XDPOptions{Program: g.objs.GuardXdp, Interface: ifindex, Flags: link.XDPGenericMode})
		if gerr != nil {
			return nil, fmt.Errorf("attach xdp to %q: native: %v; generic: %w", name, err, gerr)
		}
	}
	if err := l.Pin(pin); err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("pin xdp link of %q: %w", name, err)
	}
	g.logger.Info("xdp guard attached", "ifname", name, "mode", mode, "pin", pin)
	return l, nil
}

// detachUnconfigured removes the pinned links of interfaces a previous
// agent guarded but this one is not configured for.
func (g *Guard) detachUnconfigured() {
	entries, err := os.ReadDir(g.cfg.PinPath)
	if err != nil {
		return
	}
	want := map[string]bool{}
	for _, name := range g.cfg.Interfaces {
		want["link_"+name] = true
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "link_") || want[e.Name()] {
			continue
		}
		p := filepath.Join(g.cfg.PinPath, e.Name())
		l, err := link.LoadPinnedLink(p, nil)
		if err != nil {
			_ = os.Remove(p)
			continue
		}
		_ = l.Unpin()
		_ = l.Close()
		g.logger.Info("xdp guard detached from an interface no longer configured", "ifname", strings.TrimPrefix(e.Name(), "link_"))
	}
}

// Rules returns the rule table.
func (g *Guard) Rules() *RuleTable { return g.table }

// Samples returns sampled packet headers; nil when sampling is off. The
// channel is closed by Close.
func (g *Guard) Samples() <-chan rule.Sample {
	if g.sampler == nil {
		return nil
	}
	return g.sampler.out
}

// SampleEvery is the 1-in-N sampling rate in force (0 = off).
func (g *Guard) SampleEvery() uint32 { return g.cfg.SampleEvery }

// Program is the XDP program (for tests and benchmarks).
func (g *Guard) Program() *ebpf.Program { return g.objs.GuardXdp }

// Close stops expiry and sampling and releases the agent's handles. The
// pinned XDP links and maps stay: the guard keeps enforcing the rules until
// Remove, and the next Open adopts them.
func (g *Guard) Close() error {
	if g.closed {
		return nil
	}
	g.closed = true
	if g.cancel != nil {
		g.cancel()
	}
	if g.sampler != nil {
		g.sampler.close()
	}
	g.wg.Wait()
	g.closeAll()
	return nil
}

// XDPPass is the map where the guard notes the last frame it passed on each
// CPU, for the stack's packet-path traces (bpf.StackConfig.XDPPass).
func (g *Guard) XDPPass() *ebpf.Map { return g.objs.XdpPass }

// TraceXDP turns the pass records on (a clock read per packet) or off.
// Close turns them off: the pinned program outlives the agent.
func (g *Guard) TraceXDP(on bool) error {
	var v uint32
	if on {
		v = 1
	}
	if err := g.objs.TraceXdp.Set(v); err != nil {
		return fmt.Errorf("set the xdp guard's trace_xdp: %w", err)
	}
	return nil
}

func (g *Guard) closeAll() {
	if g.objs.TraceXdp != nil {
		_ = g.TraceXDP(false)
	}
	for _, l := range g.links {
		_ = l.Close()
	}
	g.links = nil
	_ = g.objs.Close()
}

// resolveInterfaces looks up the guarded interfaces in the current thread's
// namespace, fills ifaces (ifindex -> name) and returns their ifindexes.
func resolveInterfaces(names []string, ifaces map[uint32]string) ([]int, error) {
	var ifindexes []int
	for i, name := range names {
		if slices.Contains(names[:i], name) {
			return nil, fmt.Errorf("guard interface %q is listed twice: check --interfaces", name)
		}
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return nil, fmt.Errorf("guard interface %q does not exist in this network namespace: check --interfaces", name)
		}
		for other, n := range ifaces {
			if ifaceSlot(other) == ifaceSlot(uint32(ifi.Index)) {
				return nil, fmt.Errorf("guard interfaces %q and %q share counter slot %d (ifindex %d and %d modulo %d): guard one of them", n, name, ifaceSlot(other), other, ifi.Index, bpf.GuardIfaceSlots)
			}
		}
		ifaces[uint32(ifi.Index)] = name
		ifindexes = append(ifindexes, ifi.Index)
	}
	return ifindexes, nil
}

// inNetns runs f inside ns, or as is when ns is nil.
func inNetns(ns *bpf.Netns, f func() error) error {
	if ns == nil {
		return f()
	}
	return ns.Do(f)
}
