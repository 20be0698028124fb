package guard

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/packetscope/packetscope/internal/testframe"
	"github.com/packetscope/packetscope/rule"
)

// The differential test: random rules and random packets (edge cases
// included) through the XDP program (BPF_PROG_TEST_RUN) and through the Go
// reference (Classify/Matches) must agree on every packet's matching rule,
// verdict and every rule's counters.

var (
	diffV4 = []netip.Addr{
		netip.MustParseAddr("10.202.1.1"), netip.MustParseAddr("10.202.1.2"), netip.MustParseAddr("10.202.2.9"),
		netip.MustParseAddr("10.203.0.1"), netip.MustParseAddr("192.0.2.77"),
	}
	diffV6 = []netip.Addr{
		netip.MustParseAddr("fd00:202::1"), netip.MustParseAddr("fd00:202::2"), netip.MustParseAddr("fd00:202:0:1::9"),
		netip.MustParseAddr("fd00:203::1"), netip.MustParseAddr("2001:db8::77"),
	}
	diffV4Lens = []int{8, 16, 23, 24, 30, 32}
	diffV6Lens = []int{16, 32, 48, 64, 127, 128}
	diffPorts  = []uint16{0, 1, 53, 80, 123, 161, 443, 1024, 40000, 65535}
	diffTTLs   = []uint8{0, 1, 32, 63, 64, 128, 200, 255}
	diffLens   = []uint16{0, 20, 28, 40, 60, 64, 100, 148, 1500, 65535}
)

func pick[T any](rng *rand.Rand, s []T) T { return s[rng.IntN(len(s))] }

// randAddr picks from the pool most of the time, so rules hit, and
// otherwise anywhere, so prefixes also miss.
func randAddr(rng *rand.Rand, v6 bool) netip.Addr {
	if rng.IntN(10) < 7 {
		if v6 {
			return pick(rng, diffV6)
		}
		return pick(rng, diffV4)
	}
	var b [16]byte
	for i := range b {
		b[i] = byte(rng.IntN(256))
	}
	if v6 {
		return netip.AddrFrom16(b)
	}
	return netip.AddrFrom4([4]byte(b[:4]))
}

func randPrefix(rng *rand.Rand, v6 bool) string {
	if v6 {
		return netip.PrefixFrom(pick(rng, diffV6), pick(rng, diffV6Lens)).Masked().String()
	}
	return netip.PrefixFrom(pick(rng, diffV4), pick(rng, diffV4Lens)).Masked().String()
}

func randRange(rng *rand.Rand, vals []uint16) string {
	a, b := pick(rng, vals), pick(rng, vals)
	if rng.IntN(4) == 0 {
		b = a
	}
	if a > b {
		a, b = b, a
	}
	if rng.IntN(3) == 0 {
		return fmt.Sprint(a)
	}
	return fmt.Sprintf("%d-%d", a, b)
}

// randRule returns a valid random rule; about a third are source-only.
func randRule(rng *rand.Rand) rule.Rule {
	r := rule.Rule{TTLSeconds: 600}
	switch rng.IntN(6) {
	case 0:
		r.Action = rule.ActionMonitor
	case 1:
		r.Action, r.RatePPS = rule.ActionRateLimit, 1_000_000_000 // never limits: verdicts stay deterministic
	default:
		r.Action = rule.ActionDrop
	}
	v6 := rng.IntN(2) == 0
	m := &r.Match
	if rng.IntN(3) == 0 {
		m.Src = randPrefix(rng, v6)
		return r
	}
	for {
		*m = rule.Match{}
		if rng.IntN(4) == 0 {
			m.Src = randPrefix(rng, v6)
		}
		if rng.IntN(4) == 0 {
			m.Dst = randPrefix(rng, v6)
		}
		if rng.IntN(2) == 0 {
			m.Protocol = pick(rng, []string{"tcp", "udp", "icmp", "icmpv6", "47", "tcp", "udp"})
		}
		if rng.IntN(4) == 0 {
			m.SrcPorts = []string{randRange(rng, diffPorts)}
		}
		if rng.IntN(3) == 0 {
			for range 1 + rng.IntN(3) {
				m.DstPorts = append(m.DstPorts, randRange(rng, diffPorts))
			}
		}
		if rng.IntN(3) == 0 {
			m.TCPFlags = pick(rng, []string{"syn", "syn,!ack", "ack", "rst", "fin,!ack", "!syn", "syn,ack"})
		}
		if rng.IntN(6) == 0 {
			m.ICMPType = intp(pick(rng, []int{0, 3, 8, 128, 129}))
		}
		if rng.IntN(4) == 0 {
			a, b := pick(rng, diffTTLs), pick(rng, diffTTLs)
			m.TTL = fmt.Sprintf("%d-%d", min(a, b), max(a, b))
		}
		if rng.IntN(5) == 0 {
			m.Length = randRange(rng, diffLens)
		}
		if rng.IntN(6) == 0 {
			m.TCPWindow = randRange(rng, []uint16{0, 512, 1024, 65535})
		}
		if rng.IntN(5) == 0 {
			m.Fragment = pick(rng, []rule.Fragment{rule.FragmentAny, rule.FragmentNone, rule.FragmentFirst, rule.FragmentLater})
		}
		if isCIDROnly(m) || fieldsGiven(m) < 4 {
			continue // fingerprint rules specific enough that many packets match none
		}
		if _, err := m.Compile(); err == nil {
			return r
		}
	}
}

// randFrame returns a random frame, often an odd one.
func randFrame(rng *rand.Rand) []byte {
	f := testframe.Frame{TTL: pick(rng, diffTTLs)}
	v6 := rng.IntN(2) == 0
	f.Src, f.Dst = randAddr(rng, v6), randAddr(rng, v6)
	switch rng.IntN(8) {
	case 0:
		f.Tags = []uint16{testframe.VLAN}
	case 1:
		f.Tags = []uint16{testframe.QinQ, testframe.VLAN}
	case 2:
		if rng.IntN(4) == 0 {
			f.Tags = []uint16{testframe.VLAN, testframe.VLAN, testframe.VLAN}
		}
	}
	sp, dp := pick(rng, diffPorts), pick(rng, diffPorts)
	switch rng.IntN(6) {
	case 0, 1:
		f.Proto = rule.ProtoTCP
		f.L4 = testframe.TCP(sp, dp, uint8(rng.IntN(256)), pick(rng, []uint16{0, 512, 1024, 65535}))
	case 2:
		f.Proto = rule.ProtoUDP
		f.L4 = testframe.UDP(sp, dp, rng.IntN(40))
	case 3:
		f.Proto = rule.ProtoICMP
		if f.Src.Is6() {
			f.Proto = rule.ProtoICMPv6
		}
		if rng.IntN(5) == 0 {
			f.Proto = rule.ProtoICMP + rule.ProtoICMPv6 - f.Proto // the other family's ICMP
		}
		f.L4 = testframe.ICMP(pick(rng, []uint8{0, 3, 8, 128, 129}))
	case 4:
		f.Proto = 47
		f.L4 = make([]byte, 8)
	case 5:
		f.Proto = rule.ProtoTCP
		f.L4 = testframe.TCP(sp, dp, rule.FlagSYN, 1024)
	}
	if f.Src.Is4() && rng.IntN(5) == 0 {
		f.IPv4Opts = 4 * (1 + rng.IntN(10))
	}
	if f.Src.Is6() && rng.IntN(3) == 0 {
		for range 1 + rng.IntN(7) {
			f.IPv6Ext = append(f.IPv6Ext, pick(rng, []uint8{0, 43, 44, 51, 60}))
		}
		f.ExtLen = uint8(rng.IntN(3))
	}
	switch rng.IntN(8) {
	case 0:
		f.FragOff = uint16(1 + rng.IntN(100))
	case 1:
		f.MoreFrags = true
	}
	if rng.IntN(6) == 0 {
		f.LenDelta = rng.IntN(2000) - 20
	}
	b := f.Build()
	if rng.IntN(6) == 0 {
		b = b[:14+rng.IntN(len(b)-13)]
	}
	return b
}

func TestDifferential(t *testing.T) {
	const rounds, rulesPerRound, packetsPerRound = 3, 700, 2500
	rng := rand.New(rand.NewPCG(20261125, 3))
	// Churn keeps up to ~1,400 rules live: above DefaultMaxRules.
	g := openTestGuard(t, Config{SampleEvery: 1, SampleBuffer: 1, MaxRules: 4096})
	tbl := g.Rules()
	type ruleState struct {
		m       *rule.Matcher
		slot    int
		packets uint64
		bytes   uint64
	}
	live := map[string]*ruleState{}
	totalRules, totalPackets, matched, fpMatched := 0, 0, 0, 0
	for round := range rounds {
		// Churn: delete about half the rules, then add new ones, so slots are
		// reused and the classifier's maps are updated incrementally.
		for id := range live {
			if rng.IntN(2) == 0 {
				if err := tbl.Delete(id); err != nil {
					t.Fatal(err)
				}
				delete(live, id)
			}
		}
		for range rulesPerRound {
			r := randRule(rng)
			got, err := tbl.Add(r)
			if err != nil {
				if isFieldError(err) {
					continue // a per-field prefix-length limit: fine, rule refused
				}
				t.Fatalf("add %+v: %v", r, err)
			}
			m, _ := got.Match.Compile()
			slot, _ := tbl.Slot(got.ID)
			live[got.ID] = &ruleState{m: m, slot: slot}
			totalRules++
		}
		// Counters restart from what the kernel holds now.
		for _, r := range tbl.List() {
			live[r.ID].packets, live[r.ID].bytes = r.Packets, r.Bytes
		}
		ids := make([]string, 0, len(live))
		matchers := make([]*rule.Matcher, 0, len(live))
		slots := make([]int, 0, len(live))
		for id, st := range live {
			ids = append(ids, id)
			matchers = append(matchers, st.m)
			slots = append(slots, st.slot)
		}
		mismatches := 0
		for i := range packetsPerRound {
			b := randFrame(rng)
			p := rule.ParseFrame(b)
			want := rule.Classify(matchers, slots, &p)
			wantRet, wantSlot := uint32(xdpPass), uint32(0xffffffff)
			if want >= 0 {
				matched++
				if slots[want] < FPSlots {
					fpMatched++
				}
				st := live[ids[want]]
				st.packets++
				st.bytes += uint64(len(b))
				wantSlot = uint32(st.slot)
				if r := tbl.byID[ids[want]].rule; r.Action == rule.ActionDrop {
					wantRet = xdpDrop
				}
			}
			ret := run(t, g.Program(), b)
			smp := nextSample(t, g)
			gotSlot := g.lastSampleSlot()
			if ret != wantRet || gotSlot != wantSlot || smp.Packet != p {
				mismatches++
				if mismatches <= 5 {
					t.Errorf("round %d packet %d (% x):\n parsed %+v\n kernel %+v\n verdict %d slot %d, reference %d slot %d",
						round, i, b, p, smp.Packet, ret, gotSlot, wantRet, wantSlot)
				}
			}
			totalPackets++
		}
		for _, r := range tbl.List() {
			st := live[r.ID]
			if r.Packets != st.packets || r.Bytes != st.bytes {
				t.Errorf("round %d rule %s (slot %d): kernel counted %d packets %d bytes, reference %d packets %d bytes",
					round, r.ID, st.slot, r.Packets, r.Bytes, st.packets, st.bytes)
			}
		}
		if mismatches > 0 {
			t.Fatalf("round %d: %d of %d packets disagree", round, mismatches, packetsPerRound)
		}
	}
	t.Logf("%d rules added, %d packets compared (%d matched a rule, %d a fingerprint rule), all agree",
		totalRules, totalPackets, matched, fpMatched)
	// The test means something only if rules of both classes matched often
	// and missed often.
	if fpMatched < totalPackets/10 || matched-fpMatched < totalPackets/20 || matched > totalPackets*9/10 {
		t.Errorf("uninformative run: %d of %d matched, %d by fingerprint rules", matched, totalPackets, fpMatched)
	}
}

func fieldsGiven(m *rule.Match) int {
	n := 0
	for _, given := range []bool{m.Src != "", m.Dst != "", m.Protocol != "", m.SrcPorts != nil, m.DstPorts != nil,
		m.TCPFlags != "", m.ICMPType != nil, m.TTL != "", m.Length != "", m.TCPWindow != "", m.Fragment != ""} {
		if given {
			n++
		}
	}
	return n
}
