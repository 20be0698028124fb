package guard

import (
	"net/netip"
	"testing"

	"github.com/packetscope/packetscope/bpf"
	"github.com/packetscope/packetscope/rule"
)

// noSlot is the kernel's slot for a packet no rule matched.
const noSlot = 0xffffffff

// collidingDsts returns n addresses of one family whose full-length entries
// share one home slot in fp_dst4 (or fp_dst6).
func collidingDsts(n int, v6 bool) []netip.Addr {
	t := newOATable(nil, pfFPDst4)
	byHome := map[uint32][]netip.Addr{}
	for x := uint32(1); ; x++ {
		a := netip.AddrFrom4([4]byte{10, 203, byte(x >> 8), byte(x)})
		if v6 {
			a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0xdd, 12: byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)})
		}
		h := t.home(netip.PrefixFrom(a, a.BitLen()))
		byHome[h] = append(byHome[h], a)
		if len(byHome[h]) == n {
			return byHome[h]
		}
	}
}

// TestAddrTableProbes covers the kernel's two ways to an address field's
// bitmap: the inlined probe of the longest prefix length's home slot, and
// the full walk it falls back to. Destinations whose entries share a home
// slot sit past it, so only the walk finds them; a destination no rule names
// whose home slot is taken must miss; so must one whose entry was deleted
// (a tombstone at home); and with two prefix lengths in use an empty home
// slot for the longer one must not end the search.
func TestAddrTableProbes(t *testing.T) {
	for _, fam := range []struct {
		name      string
		v6        bool
		src       netip.Addr
		shortBits int
	}{
		{"ipv4", false, netip.MustParseAddr("192.0.2.7"), 24},
		{"ipv6", true, netip.MustParseAddr("2001:db8:5::7"), 120},
	} {
		t.Run(fam.name, func(t *testing.T) {
			g := openTestGuard(t, Config{SampleEvery: 1, SampleBuffer: 1})
			dsts := collidingDsts(bpf.GuardOAProbes/2, fam.v6)
			slotOf := func(dst netip.Addr) uint32 {
				t.Helper()
				v := run(t, g.Program(), benchFrame(fam.src, dst, 4444, 9))
				nextSample(t, g)
				if v == xdpPass {
					return noSlot
				}
				return g.lastSampleSlot()
			}
			slots := map[netip.Addr]uint32{}
			ids := map[netip.Addr]string{}
			named := dsts[:len(dsts)-1]
			for _, a := range named {
				r := mustAdd(t, g.Rules(), rule.Rule{Match: rule.Match{Protocol: "udp", Dst: a.String()}})
				s, _ := g.Rules().Slot(r.ID)
				slots[a], ids[a] = uint32(s), r.ID
			}
			tab := g.table.fp.dst4.tab
			if fam.v6 {
				tab = g.table.fp.dst6.tab
			}
			past := 0
			for _, a := range named {
				p := netip.PrefixFrom(a, a.BitLen())
				if tab.slotOf[p] != tab.home(p) {
					past++
				}
			}
			if past != len(named)-1 {
				t.Fatalf("%d of %d colliding entries past their home slot, want %d", past, len(named), len(named)-1)
			}
			for _, a := range named {
				if got := slotOf(a); got != slots[a] {
					t.Errorf("frame to %s matched slot %d, want %d", a, got, slots[a])
				}
			}
			if got := slotOf(dsts[len(dsts)-1]); got != noSlot {
				t.Errorf("frame to %s (no rule; its home slot taken) matched slot %d", dsts[len(dsts)-1], got)
			}

			// The entry at home deleted: a tombstone there, the others found past it.
			if err := g.Rules().Delete(ids[named[0]]); err != nil {
				t.Fatal(err)
			}
			if got := slotOf(named[0]); got != noSlot {
				t.Errorf("frame to %s (rule deleted) matched slot %d", named[0], got)
			}
			for _, a := range named[1:] {
				if got := slotOf(a); got != slots[a] {
					t.Errorf("after the delete, frame to %s matched slot %d, want %d", a, got, slots[a])
				}
			}

			// Two prefix lengths: a destination inside the shorter prefix,
			// whose full-length home slot is empty, is matched by it.
			short := netip.PrefixFrom(named[1], fam.shortBits).Masked()
			r := mustAdd(t, g.Rules(), rule.Rule{Match: rule.Match{Protocol: "udp", Dst: short.String()}})
			want, _ := g.Rules().Slot(r.ID)
			for b := short.Addr().Next(); short.Contains(b); b = b.Next() {
				p := netip.PrefixFrom(b, b.BitLen())
				if _, taken := slots[b]; taken || tab.state[tab.home(p)] != 0 {
					continue
				}
				if got := slotOf(b); got != uint32(want) {
					t.Errorf("frame to %s (in %s, empty home slot) matched slot %d, want %d", b, short, got, want)
				}
				return
			}
			t.Fatalf("no address in %s with an empty home slot", short)
		})
	}
}
