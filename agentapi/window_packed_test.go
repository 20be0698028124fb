package agentapi

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"
	"time"
	"unsafe"

	"github.com/packetscope/packetscope/rule"
)

// TestPackedSampleRoundTrip: what the window keeps gives back the sample it
// was given, field for field, for every kind of address a sample can carry.
func TestPackedSampleRoundTrip(t *testing.T) {
	if got := unsafe.Sizeof(packedSample{}); got != 64 {
		t.Errorf("packedSample is %d bytes, want 64", got)
	}
	at := time.Date(2026, 12, 2, 20, 1, 2, 345678901, time.UTC)
	cases := []rule.Sample{
		{Time: at, Interface: "eth0", Packet: rule.Packet{Family: 4, Src: netip.MustParseAddr("198.51.100.7"),
			Dst: netip.MustParseAddr("192.0.2.1"), Protocol: rule.ProtoTCP, TTL: 63, Length: 40, HasL4: true,
			SrcPort: 40000, DstPort: 443, TCPFlags: rule.FlagSYN, TCPWindow: 64240}},
		{Time: at, Interface: "vlan.100", Reaction: "NO_SOCKET", Packet: rule.Packet{Family: 6,
			Src: netip.MustParseAddr("2001:db8::7"), Dst: netip.MustParseAddr("fd00::1"), Protocol: rule.ProtoICMPv6,
			TTL: 255, Length: 1280, HasL4: true, ICMPType: 128}},
		// A v4-mapped IPv6 address stays IPv6; a later fragment has no L4.
		{Time: at, Interface: "eth0", Packet: rule.Packet{Family: 6, Src: netip.MustParseAddr("::ffff:198.51.100.7"),
			Dst: netip.MustParseAddr("fd00::1"), Protocol: rule.ProtoUDP, Length: 1500, Fragment: rule.FragLater}},
		// A frame that is not IP: no addresses at all.
		{Time: at, Interface: "eth1", Packet: rule.Packet{Length: 60}},
	}
	var n names
	epoch := at.Add(-time.Hour)
	for i, want := range cases {
		ps := n.pack(&want, int64(want.Time.Sub(epoch)))
		if got := n.unpack(&ps, epoch); !reflect.DeepEqual(got, want) {
			t.Errorf("case %d: unpacked\n%+v\nwant\n%+v", i, got, want)
		}
	}
	if len(n.list) != 5 { // "", eth0, vlan.100, NO_SOCKET, eth1
		t.Errorf("names interned %q, want each once", n.list)
	}
}

// TestWindowTimesKeepTheirOrder: times far from the window's epoch (a zero
// time, say) saturate, so eviction and report bounds still order.
func TestWindowTimesKeepTheirOrder(t *testing.T) {
	w := NewTrafficWindow(WindowConfig{})
	times := []time.Time{{}, time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC), time.Unix(0, 0), time.Now(),
		time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)}
	for i := 1; i < len(times); i++ {
		if a, b := w.since(times[i-1]), w.since(times[i]); a > b {
			t.Errorf("%v packs after %v (%d > %d)", times[i-1], times[i], a, b)
		}
	}
}

// TestNamesAreBounded: past maxNames distinct strings a new one is kept as
// "", and the ones already kept keep their names.
func TestNamesAreBounded(t *testing.T) {
	var n names
	first := n.intern("eth0")
	for i := range maxNames + 10 {
		n.intern(fmt.Sprintf("veth%d", i))
	}
	if len(n.list) != maxNames {
		t.Fatalf("%d names kept, want %d", len(n.list), maxNames)
	}
	if got := n.intern("one-too-many"); got != 0 || n.name(got) != "" {
		t.Errorf("a name past the bound got index %d (%q), want 0 (\"\")", got, n.name(got))
	}
	if n.name(first) != "eth0" || n.intern("eth0") != first {
		t.Errorf("eth0 lost its index")
	}
}

// TestTopAddrsAgreesWithMaps: counting sorted keys gives what counting in
// maps gives (the way reports counted before), ties and order included, on
// sources of both families, v4-mapped IPv6, invalid addresses, and many
// addresses per /24 and /48.
func TestTopAddrsAgreesWithMaps(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	var addrs []netip.Addr
	for range 20_000 {
		var a netip.Addr
		switch rnd.IntN(5) {
		case 0:
			a = netip.AddrFrom4([4]byte{198, 51, byte(rnd.IntN(4)), byte(rnd.IntN(8))})
		case 1:
			a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, byte(rnd.IntN(3)), 0, 0, 0, 0, 0, 0, 0, 0, 0, byte(rnd.IntN(6))})
		case 2:
			a = netip.AddrFrom16(netip.AddrFrom4([4]byte{198, 51, 0, byte(rnd.IntN(3))}).As16()) // ::ffff:198.51.0.x
		case 3:
			a = netip.AddrFrom4([4]byte{byte(rnd.IntN(256)), byte(rnd.IntN(256)), byte(rnd.IntN(256)), byte(rnd.IntN(256))})
		default:
			if rnd.IntN(10) == 0 {
				a = netip.Addr{}
			} else {
				a = netip.AddrFrom4([4]byte{203, 0, 113, byte(rnd.IntN(2))})
			}
		}
		addrs = append(addrs, a)
	}
	for _, k := range []int{1, 10, 100} {
		keys := newAddrKeys(len(addrs))
		byAddr, byPrefix := map[netip.Addr]uint64{}, map[netip.Prefix]uint64{}
		for _, a := range addrs {
			keys.add(a)
			byAddr[a]++
			bits := 24
			if a.Is6() {
				bits = 48
			}
			// An invalid address has no prefix (Prefix gives the zero
			// Prefix for it, which reports used to list as "invalid Prefix").
			if p, err := a.Prefix(bits); err == nil && a.IsValid() {
				byPrefix[p]++
			}
		}
		ta, tp := newTopK(k, netip.Addr.Compare), newTopK(k, comparePrefix)
		for a, n := range byAddr {
			ta.offer(a, n)
		}
		for p, n := range byPrefix {
			tp.offer(p, n)
		}
		gotA, gotP := keys.top(k, true)
		if want := ta.values(netip.Addr.String); !reflect.DeepEqual(gotA, want) {
			t.Errorf("k=%d: addresses\n%v\nwant\n%v", k, gotA, want)
		}
		if want := tp.values(netip.Prefix.String); !reflect.DeepEqual(gotP, want) {
			t.Errorf("k=%d: prefixes\n%v\nwant\n%v", k, gotP, want)
		}
	}
}
