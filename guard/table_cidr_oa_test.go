package guard

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/packetscope/packetscope/bpf"
	"github.com/packetscope/packetscope/rule"
)

// collidingSources returns n IPv4 addresses in 100.64.0.0/10 whose /32
// entries share one home slot in cidr_oa4: a neighbourhood only
// GuardOAProbes of them fit, as an attacker choosing its sources could make.
func collidingSources(n int) []netip.Addr {
	var t cidrOA
	t.state = make([]uint8, 1<<bpf.GuardCIDROAShift)
	byHome := map[uint32][]netip.Addr{}
	for x := uint32(0); ; x++ {
		a := netip.AddrFrom4([4]byte{100, 64 + byte(x>>16)&63, byte(x >> 8), byte(x)})
		h := t.home(netip.PrefixFrom(a, 32))
		byHome[h] = append(byHome[h], a)
		if len(byHome[h]) == n {
			return byHome[h]
		}
	}
}

// TestCIDRTableCollisions fills one neighbourhood of the CIDR array past
// what fits: the entries that found no slot are still matched, through the
// hash map; a rule that becomes a contained entry's winner is matched at
// once; deleting a placed entry lets a spilled one in; and a new agent
// adopts the array in place, wiping valid entries no rule made.
func TestCIDRTableCollisions(t *testing.T) {
	pin := testPinPath(t)
	g := openTestGuard(t, Config{SampleEvery: 1, SampleBuffer: 1, PinPath: pin})
	srcs := collidingSources(bpf.GuardOAProbes + 4)
	dst := netip.MustParseAddr("10.202.0.1")
	frame := func(src netip.Addr) []byte { return benchFrame(src, dst, 4444, 9) }
	slotOf := func(g *Guard, src netip.Addr) uint32 {
		t.Helper()
		if v := run(t, g.Program(), frame(src)); v != xdpDrop {
			t.Fatalf("frame from %s: verdict %d, want drop", src, v)
		}
		nextSample(t, g)
		return g.lastSampleSlot()
	}

	first := mustAdd(t, g.Rules(), rule.Rule{Match: rule.Match{Src: "198.18.0.0/15"}})
	ids := map[netip.Addr]string{}
	for _, a := range srcs {
		ids[a] = mustAdd(t, g.Rules(), rule.Rule{Match: rule.Match{Src: a.String() + "/32"}}).ID
	}
	oa := g.table.cidr4.oa
	if n := len(oa.slotOf); n != bpf.GuardOAProbes+1 || len(oa.spill) != 4 {
		t.Fatalf("placed %d, spilled %d; want %d (the colliding ones and the /15) and 4", n, len(oa.spill), bpf.GuardOAProbes+1)
	}
	for _, a := range srcs {
		want, _ := g.Rules().Slot(ids[a])
		if got := slotOf(g, a); got != uint32(want) {
			_, spilled := oa.spill[netip.PrefixFrom(a, 32)]
			t.Errorf("frame from %s (spilled %t) matched slot %d, want %d", a, spilled, got, want)
		}
	}

	// A /24 rule taking the freed lowest slot wins for the /32s it holds.
	low, _ := g.Rules().Slot(first.ID)
	if err := g.Rules().Delete(first.ID); err != nil {
		t.Fatal(err)
	}
	p24, _ := srcs[0].Prefix(24)
	r24 := mustAdd(t, g.Rules(), rule.Rule{Match: rule.Match{Src: p24.String()}})
	if s, _ := g.Rules().Slot(r24.ID); s != low {
		t.Fatalf("the /24 took slot %d, want the freed %d", s, low)
	}
	if got := slotOf(g, srcs[0]); got != uint32(low) {
		t.Errorf("frame from %s matched slot %d after a lower containing rule came, want %d", srcs[0], got, low)
	}

	// Deleting placed entries lets the spilled ones in.
	var gone []netip.Addr
	for _, a := range srcs[1:] {
		if _, placed := oa.slotOf[netip.PrefixFrom(a, 32)]; placed && len(gone) < 2 {
			if err := g.Rules().Delete(ids[a]); err != nil {
				t.Fatal(err)
			}
			gone = append(gone, a)
		}
	}
	if len(oa.spill) != 2 {
		t.Errorf("%d entries spilled after two placed ones went, want 2", len(oa.spill))
	}
	for _, a := range gone {
		if v := run(t, g.Program(), frame(a)); v != xdpPass {
			t.Errorf("frame from %s, whose rule was deleted: verdict %d, want pass", a, v)
		}
		nextSample(t, g)
	}

	// What every remaining source matches, then what a crash could leave:
	// a valid entry giving a placed source another rule's slot, and one for
	// an address no rule names.
	want := map[netip.Addr]uint32{}
	for _, a := range srcs {
		if !slices.Contains(gone, a) {
			want[a] = slotOf(g, a)
		}
	}
	arr := mustPinnedMap(t, pin, "cidr_oa4")
	var victim netip.Addr
	for _, a := range srcs[1:] {
		if _, ok := oa.slotOf[netip.PrefixFrom(a, 32)]; ok && !slices.Contains(gone, a) {
			victim = a
			break
		}
	}
	writeCIDR4(t, arr, oa.slotOf[netip.PrefixFrom(victim, 32)], victim, uint32(low))
	if got := slotOf(g, victim); got != uint32(low) {
		t.Fatalf("the kernel does not read the array: frame from %s matched slot %d, want the forged %d", victim, got, low)
	}
	stray := netip.MustParseAddr("203.0.113.7")
	straySlot := oa.home(netip.PrefixFrom(stray, 32))
	writeCIDR4(t, arr, straySlot, stray, uint32(low))
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}

	g2 := openTestGuard(t, Config{SampleEvery: 1, SampleBuffer: 1, PinPath: pin})
	for a, w := range want {
		if got := slotOf(g2, a); got != w {
			t.Errorf("frame from %s matched slot %d after adoption, want %d", a, got, w)
		}
	}
	var e bpf.GuardCIDR4Entry
	if err := arr.Lookup(straySlot, &e); err != nil || e.Flags&bpf.GuardOAValid != 0 {
		t.Errorf("the stray entry in cidr_oa4[%d] is %+v after adoption (%v), want no valid entry", straySlot, e, err)
	}
	if n := len(g2.table.cidr4.oa.slotOf); n != bpf.GuardOAProbes+1 {
		t.Errorf("%d entries placed after adoption, want %d (the neighbourhood and the /24)", n, bpf.GuardOAProbes+1)
	}
}

// writeCIDR4 writes a valid cidr_oa4 entry for a /32 behind the agent's back.
func writeCIDR4(tb testing.TB, m *ebpf.Map, slot uint32, a netip.Addr, rule uint32) {
	tb.Helper()
	b := a.As4()
	e := bpf.GuardCIDR4Entry{Flags: bpf.GuardOAUsed | bpf.GuardOAValid, Plen: 32, Addr: nativeU32(b[:]), Slot: rule}
	if err := m.Update(slot, &e, ebpf.UpdateAny); err != nil {
		tb.Fatal(fmt.Errorf("write cidr_oa4[%d]: %w", slot, err))
	}
}

// TestCIDRTableAdoptsPinsWithoutArrays opens a guard on the pins of a
// version before the CIDR arrays (rule definitions and hash maps, no
// cidr_oa4/6): the new arrays are made and filled from the adopted rules.
func TestCIDRTableAdoptsPinsWithoutArrays(t *testing.T) {
	pin := testPinPath(t)
	g := openTestGuard(t, Config{PinPath: pin, NoSampling: true})
	srcs := []netip.Addr{netip.MustParseAddr("100.64.1.1"), netip.MustParseAddr("2001:db8:5::1")}
	for _, a := range srcs {
		mustAdd(t, g.Rules(), rule.Rule{Match: rule.Match{Src: netip.PrefixFrom(a, a.BitLen()).String()}})
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"cidr_oa4", "cidr_oa6"} {
		if err := os.Remove(filepath.Join(pin, name)); err != nil {
			t.Fatal(err)
		}
	}
	g2 := openTestGuard(t, Config{PinPath: pin, NoSampling: true})
	for _, a := range srcs {
		dst := netip.MustParseAddr("10.202.0.1")
		if a.Is6() {
			dst = netip.MustParseAddr("fd00:202::1")
		}
		if v := run(t, g2.Program(), benchFrame(a, dst, 4444, 9)); v != xdpDrop {
			t.Errorf("frame from %s after adoption: verdict %d, want drop", a, v)
		}
	}
	if n4, n6 := len(g2.table.cidr4.oa.slotOf), len(g2.table.cidr6.oa.slotOf); n4 != 1 || n6 != 1 {
		t.Errorf("placed %d IPv4 and %d IPv6 entries after adoption, want 1 and 1", n4, n6)
	}
}
