package guard

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/packetscope/packetscope/internal/testnet"
)

// TestRemoveRefusesOtherFileSystems: a pin path that is not bpffs (a typo,
// a tmpfs, a home directory) is left exactly as it was.
func TestRemoveRefusesOtherFileSystems(t *testing.T) {
	testnet.RequireRoot(t)
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	names := []string{"rule_defs", "rule_meta", "link_eth0", "notes.txt"}
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("keep me"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{dir, t.TempDir()} {
		err := Remove(p)
		if err == nil || !strings.Contains(err.Error(), "not on a bpffs mount") {
			t.Errorf("Remove(%s) = %v, want a refusal naming bpffs", p, err)
		}
	}
	for _, n := range names {
		if b, err := os.ReadFile(filepath.Join(dir, n)); err != nil || string(b) != "keep me" {
			t.Errorf("%s after the refused Remove: %q, %v", n, b, err)
		}
	}
	if err := Remove(filepath.Join(dir, "missing")); err != nil {
		t.Errorf("Remove of a missing path: %v", err)
	}
}

// TestRemoveOnlyOurPins: on bpffs, Remove takes the guard's maps and XDP
// links and leaves another tool's pins, whatever they are called.
func TestRemoveOnlyOurPins(t *testing.T) {
	pin := testPinPath(t)
	ns := testnet.NewNS(t, "ps-grd-rm")
	peer := testnet.NewNS(t, "ps-grd-rp")
	testnet.Link(t, ns, "rm0", "10.202.50.1/24", peer, "rp0", "10.202.50.2/24")
	var g *Guard
	if err := ns.Do(func() (err error) {
		g, err = Open(testLogger(t), Config{Interfaces: []string{"rm0"}, PinPath: pin, NoSampling: true})
		return err
	}); err != nil {
		t.Fatalf("open guard in %s: %v", ns.Name, err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	// Foreign pins: a map under a name of its own, a map named like one of
	// our links, and a directory.
	foreign := []string{"other_tool_map", "link_notalink", "other_dir"}
	for _, n := range foreign[:2] {
		m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Pin(filepath.Join(pin, n)); err != nil {
			t.Fatal(err)
		}
		_ = m.Close()
	}
	if err := os.Mkdir(filepath.Join(pin, foreign[2]), 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, n := range foreign {
			_ = os.Remove(filepath.Join(pin, n))
		}
		_ = os.Remove(pin)
	})
	before := dirNames(t, pin)
	if !slices.Contains(before, "link_rm0") || !slices.Contains(before, "rule_defs") {
		t.Fatalf("the guard pinned %v: no link_rm0 or rule_defs", before)
	}

	if err := Remove(pin); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if got := dirNames(t, pin); !slices.Equal(got, sortedCopy(foreign)) {
		t.Errorf("left %v, want only the foreign pins %v", got, foreign)
	}
	// The XDP program is off the interface.
	out, err := ns.Run("ip", "-d", "link", "show", "rm0")
	if err != nil || strings.Contains(out, "xdp") {
		t.Errorf("rm0 after Remove: %s %v", out, err)
	}
}

func dirNames(tb testing.TB, dir string) []string {
	tb.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}
