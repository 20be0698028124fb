package guard

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/packetscope/packetscope/internal/testnet"
	"github.com/packetscope/packetscope/rule"
)

// XDP return codes.
const (
	xdpDrop = 1
	xdpPass = 2
)

func testLogger(tb testing.TB) *slog.Logger {
	tb.Helper()
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// testPinPath returns a fresh bpffs directory removed (with whatever guard
// state is pinned in it) when the test ends.
func testPinPath(tb testing.TB) string {
	tb.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	p := filepath.Join("/sys/fs/bpf", "ps-grd-test-"+hex.EncodeToString(b))
	tb.Cleanup(func() {
		if err := Remove(p); err != nil {
			tb.Errorf("remove pinned guard state: %v", err)
		}
	})
	return p
}

// openTestGuard opens a guard attached to no interface, for prog.Run.
func openTestGuard(tb testing.TB, cfg Config) *Guard {
	tb.Helper()
	testnet.RequireRoot(tb)
	if cfg.PinPath == "" {
		cfg.PinPath = testPinPath(tb)
	}
	g, err := Open(testLogger(tb), cfg)
	if err != nil {
		tb.Fatalf("open guard: %v", err)
	}
	tb.Cleanup(func() { _ = g.Close() })
	return g
}

// run feeds one frame to the XDP program and returns its verdict.
func run(tb testing.TB, prog *ebpf.Program, frame []byte) uint32 {
	tb.Helper()
	ret, err := prog.Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		tb.Fatalf("prog run: %v", err)
	}
	return ret
}

// nextSample waits for the sample of the packet just run.
func nextSample(tb testing.TB, g *Guard) rule.Sample {
	tb.Helper()
	select {
	case s := <-g.Samples():
		return s
	case <-time.After(2 * time.Second):
		tb.Fatal("no sample from the ring buffer within 2s")
	}
	return rule.Sample{}
}

func mustAdd(tb testing.TB, t *RuleTable, r rule.Rule) rule.Rule {
	tb.Helper()
	if r.TTLSeconds == 0 {
		r.TTLSeconds = 600
	}
	if r.Action == "" {
		r.Action = rule.ActionDrop
	}
	got, err := t.Add(r)
	if err != nil {
		tb.Fatalf("add rule %+v: %v", r.Match, err)
	}
	return got
}

func isFieldError(err error) bool {
	var fe *rule.FieldError
	return errors.As(err, &fe)
}

// lastSampleSlot is the kernel's matching slot for the newest sample
// (0xffffffff: no rule).
func (g *Guard) lastSampleSlot() uint32 { return g.sampler.lastSlot.Load() }

func mustPinnedMap(tb testing.TB, pin, name string) *ebpf.Map {
	tb.Helper()
	m, err := ebpf.LoadPinnedMap(filepath.Join(pin, name), nil)
	if err != nil {
		tb.Fatalf("open pinned map %s: %v", name, err)
	}
	tb.Cleanup(func() { _ = m.Close() })
	return m
}

// mustIfaceStats reads the guard's interface counters, by counter slot.
func mustIfaceStats(tb testing.TB, g *Guard) map[uint32]IfaceStats {
	tb.Helper()
	st, err := g.ifaceStats()
	if err != nil {
		tb.Fatal(err)
	}
	return st
}
