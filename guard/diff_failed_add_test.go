package guard

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/packetscope/packetscope/bpf"
	"github.com/packetscope/packetscope/internal/testframe"
	"github.com/packetscope/packetscope/rule"
)

// kernelVerdict is what the XDP program did with one frame.
type kernelVerdict struct{ ret, slot uint32 }

// kernelVerdicts runs every frame through the XDP program.
func kernelVerdicts(tb testing.TB, g *Guard, frames [][]byte) []kernelVerdict {
	tb.Helper()
	out := make([]kernelVerdict, len(frames))
	for i, b := range frames {
		out[i].ret = run(tb, g.Program(), b)
		nextSample(tb, g)
		out[i].slot = g.lastSampleSlot()
	}
	return out
}

// referenceVerdicts is what the Go reference says the table's rules do.
func referenceVerdicts(tb testing.TB, tbl *RuleTable, frames [][]byte) []kernelVerdict {
	tb.Helper()
	rules := tbl.List()
	ms := make([]*rule.Matcher, len(rules))
	slots := make([]int, len(rules))
	for i, r := range rules {
		ms[i], _ = r.Match.Compile()
		slots[i], _ = tbl.Slot(r.ID)
	}
	out := make([]kernelVerdict, len(frames))
	for i, b := range frames {
		p := rule.ParseFrame(b)
		out[i] = kernelVerdict{ret: xdpPass, slot: 0xffffffff}
		if w := rule.Classify(ms, slots, &p); w >= 0 {
			out[i].slot = uint32(slots[w])
			if rules[w].Action == rule.ActionDrop {
				out[i].ret = xdpDrop
			}
		}
	}
	return out
}

// tableShape is the table as List shows it, without counters.
func tableShape(tbl *RuleTable) string {
	var b strings.Builder
	for _, r := range tbl.List() {
		slot, _ := tbl.Slot(r.ID)
		fmt.Fprintf(&b, "%d %s %s %+v\n", slot, r.ID, r.Action, r.Match)
	}
	return b.String()
}

func defCount(tb testing.TB, m *ebpf.Map) int {
	tb.Helper()
	keys, err := mapKeys[bpf.GuardDefKey](m)
	if err != nil {
		tb.Fatal(err)
	}
	return len(keys)
}

// fillDefs fills rule_defs with chunks of slots no rule can have, leaving
// room free entries, and returns a function that removes them again.
func fillDefs(tb testing.TB, m *ebpf.Map, room int) func() {
	tb.Helper()
	n := int(m.MaxEntries()) - defCount(tb, m) - room
	keys := make([]bpf.GuardDefKey, n)
	for i := range keys {
		keys[i] = bpf.GuardDefKey{Slot: 1<<31 | uint32(i>>8), Chunk: uint32(i & 0xff)}
	}
	const batch = 16384
	for start := 0; start < n; start += batch {
		end := min(start+batch, n)
		if _, err := m.BatchUpdate(keys[start:end], make([]bpf.GuardDefChunk, end-start), nil); err != nil {
			tb.Fatalf("fill rule_defs: %v", err)
		}
	}
	return func() {
		for start := 0; start < n; start += batch {
			end := min(start+batch, n)
			if _, err := m.BatchDelete(keys[start:end], nil); err != nil {
				tb.Fatalf("empty rule_defs: %v", err)
			}
		}
	}
}

// TestFailedAddsKeepRulesInForce: an add the table refuses, at whatever
// step, leaves every existing rule's kernel verdicts as they were. Each kind
// of refusal is tried against a table with source-CIDR rules of 16 prefix
// lengths (several /32s among them), fingerprint rules using all 8 source
// prefix lengths, and random rules of both classes.
func TestFailedAddsKeepRulesInForce(t *testing.T) {
	const maxRules = 200
	rng := rand.New(rand.NewPCG(20261201, 10))
	g := openTestGuard(t, Config{SampleEvery: 1, SampleBuffer: 1, MaxRules: maxRules})
	tbl := g.Rules()
	defs := g.objs.RuleDefs

	// Source-CIDR rules: the /32s the bug took out, and 15 more lengths so
	// that the family's 16 are all in use.
	// Each setup rule gets a frame only it matches (no random rule names
	// protocol 253, and none is added before the check below).
	var frames [][]byte
	var wantSlots []int
	frameFrom := func(src netip.Addr, proto uint8) []byte {
		dst := netip.MustParseAddr("10.99.0.1")
		if src.Is6() {
			dst = netip.MustParseAddr("fd00:99::1")
		}
		return testframe.Frame{Src: src, Dst: dst, Proto: proto, TTL: 64, L4: make([]byte, 8)}.Build()
	}
	addWithFrame := func(r rule.Rule, src string, proto uint8) {
		got := mustAdd(t, tbl, r)
		slot, _ := tbl.Slot(got.ID)
		frames = append(frames, frameFrom(netip.MustParseAddr(src), proto))
		wantSlots = append(wantSlots, slot)
	}
	for i, a := range []string{"10.202.1.1", "10.202.2.9", "192.0.2.77", "10.203.0.1"} {
		addWithFrame(rule.Rule{ID: fmt.Sprintf("host-%d", i), Match: rule.Match{Src: a + "/32"}}, a, 253)
	}
	for i, l := range []int{8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 23, 24, 30} {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(100 + i), 16, 0, 0}), l).Masked()
		addWithFrame(rule.Rule{ID: fmt.Sprintf("len-%d", l), Match: rule.Match{Src: p.String()}}, p.Addr().Next().String(), 253)
	}
	for i, a := range []string{"fd00:202::1", "2001:db8::77"} {
		addWithFrame(rule.Rule{ID: fmt.Sprintf("host6-%d", i), Match: rule.Match{Src: a + "/128"}}, a, 253)
	}
	// Fingerprint rules naming a source prefix of each of the 8 lengths the
	// kernel allows per field and family; each has its own protocol.
	for i, l := range []int{8, 12, 16, 23, 24, 28, 30, 32} {
		p := netip.PrefixFrom(netip.MustParseAddr("10.202.1.1"), l).Masked()
		proto := uint8(240 + i)
		addWithFrame(rule.Rule{ID: fmt.Sprintf("fp-len-%d", l), Match: rule.Match{Src: p.String(), Protocol: fmt.Sprint(proto)}},
			"10.202.1.1", proto)
	}
	setup := kernelVerdicts(t, g, frames)
	for i, v := range setup {
		if v.slot != uint32(wantSlots[i]) {
			t.Fatalf("setup frame %d: slot %d, want %d: the setup is wrong", i, v.slot, wantSlots[i])
		}
	}
	for tbl.Len() < maxRules-20 {
		if _, err := tbl.Add(randRule(rng)); err != nil && !isFieldError(err) {
			t.Fatal(err)
		}
	}
	for range 1500 {
		frames = append(frames, randFrame(rng))
	}

	before := kernelVerdicts(t, g, frames)
	if ref := referenceVerdicts(t, tbl, frames); !slices.Equal(before, ref) {
		t.Fatal("kernel and reference disagree before any failed add: see TestDifferential")
	}
	if !slices.Equal(before[:len(setup)], setup) {
		t.Fatal("random rules changed the setup frames' verdicts")
	}
	shape := tableShape(tbl)
	// rule_defs is filled once, to one free entry (enough for the first
	// chunk of a definition); cases that want none fill that one too.
	unfill := fillDefs(t, defs, 1)
	defsBefore := defCount(t, defs)
	lastEntry := bpf.GuardDefKey{Slot: 1 << 30}

	longReason := strings.Repeat("r", rule.MaxReasonLen) // three definition chunks
	cases := []struct {
		name string
		room int // free rule_defs entries: 0 or 1; -1 when the refusal comes before any write
		rule rule.Rule
		want func(error) bool
	}{
		// Repeated: the mirrors count prefixes per length, and an undo of
		// what was never done counts them down to zero.
		{"definitions full: new /32 source", 0, rule.Rule{Match: rule.Match{Src: "198.51.100.1/32"}}, isTableFull},
		{"definitions full: an existing /32 source", 0, rule.Rule{Match: rule.Match{Src: "10.202.1.1/32"}}, isTableFull},
		{"definitions full: new /128 source", 0, rule.Rule{Match: rule.Match{Src: "2001:db8::99/128"}}, isTableFull},
		{"definitions full: a used length", 0, rule.Rule{Match: rule.Match{Src: "172.99.0.0/16"}}, isTableFull},
		{"definitions full: another used length", 0, rule.Rule{Match: rule.Match{Src: "172.99.0.0/30"}}, isTableFull},
		{"definitions full: fingerprint with new prefixes", 0, rule.Rule{Match: rule.Match{Src: "10.202.1.0/24", Dst: "10.99.0.0/16", Protocol: "udp"}}, isTableFull},
		{"definitions full: fingerprint without prefixes", 0, rule.Rule{Match: rule.Match{Protocol: "udp", DstPorts: []string{"53"}}}, isTableFull},
		{"definitions full after the first chunk: source", 1, rule.Rule{Match: rule.Match{Src: "198.51.100.3/32"}, Reason: longReason}, isTableFull},
		{"definitions full after the first chunk: fingerprint", 1, rule.Rule{Match: rule.Match{Protocol: "tcp", TCPFlags: "syn"}, Reason: longReason}, isTableFull},
		{"source prefix lengths used up", -1, rule.Rule{Match: rule.Match{Src: "198.0.0.0/7"}}, isFieldError},
		{"fingerprint prefix lengths used up", -1, rule.Rule{Match: rule.Match{Src: "10.0.0.0/7", Protocol: "udp"}}, isFieldError},
		{"duplicate id", -1, rule.Rule{ID: "host-0", Match: rule.Match{Src: "198.51.100.4/32"}}, func(err error) bool { return errors.Is(err, rule.ErrRuleExists) }},
		{"invalid rule", -1, rule.Rule{Match: rule.Match{Src: "198.51.100.4/33"}}, isFieldError},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.room == 0 {
				if err := defs.Update(lastEntry, bpf.GuardDefChunk{}, ebpf.UpdateNoExist); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = defs.Delete(lastEntry) })
			}
			// Each case is tried with several prefixes of its rule's
			// lengths, as the lengths' counts are what an undo can break.
			for i := range failedAddRepeats {
				r := tc.rule
				r.Action, r.TTLSeconds = rule.ActionDrop, 600
				r.Match.Src, r.Match.Dst = nthPrefix(r.Match.Src, i), nthPrefix(r.Match.Dst, i)
				if _, err := tbl.Add(r); !tc.want(err) {
					t.Fatalf("add %+v: got %v, want the refusal under test", r.Match, err)
				}
			}
			if got := tableShape(tbl); got != shape {
				t.Errorf("table changed:\n%s\nwant\n%s", got, shape)
			}
			after := kernelVerdicts(t, g, frames)
			for i := range frames {
				if after[i] != before[i] {
					t.Errorf("frame %d: verdict %d slot %d, before the failed add %d slot %d", i, after[i].ret, after[i].slot, before[i].ret, before[i].slot)
				}
			}
			// A failed add used the lowest free slot of its class: no
			// chunk of a definition may stay there to swallow a later rule.
			fpFree, _ := freeSlot(tbl.fpSlots, 0)
			cidrFree, _ := freeSlot(tbl.cidrSlots, FPSlots)
			for _, slot := range []uint32{fpFree, cidrFree} {
				for chunk := range uint32(4) {
					var c bpf.GuardDefChunk
					if err := defs.Lookup(bpf.GuardDefKey{Slot: slot, Chunk: chunk}, &c); !errors.Is(err, ebpf.ErrKeyNotExist) {
						t.Errorf("free slot %d holds definition chunk %d (%v)", slot, chunk, err)
					}
				}
			}
		})
	}
	if n := defCount(t, defs); n != defsBefore {
		t.Fatalf("after the failed adds rule_defs holds %d entries, %d before", n, defsBefore)
	}
	unfill()

	// The table full of rules: the last kind of refusal.
	for tbl.Len() < maxRules {
		if _, err := tbl.Add(randRule(rng)); err != nil && !isFieldError(err) {
			t.Fatal(err)
		}
	}
	before = kernelVerdicts(t, g, frames)
	if _, err := tbl.Add(rule.Rule{Action: rule.ActionDrop, TTLSeconds: 600, Match: rule.Match{Src: "198.51.100.5/32"}}); !isTableFull(err) {
		t.Fatalf("add to a full table: %v", err)
	}
	if after := kernelVerdicts(t, g, frames); !slices.Equal(after, before) {
		t.Error("a refused add to a full table changed verdicts")
	}

	// The bookkeeping is right too: a new /32 works, and deleting one /32
	// leaves the others dropping.
	if err := tbl.Delete(tbl.List()[len(tbl.List())-1].ID); err != nil {
		t.Fatal(err)
	}
	added := mustAdd(t, tbl, rule.Rule{Match: rule.Match{Src: "198.51.100.6/32"}})
	if v := kernelVerdicts(t, g, [][]byte{frameFrom(netip.MustParseAddr("198.51.100.6"), 253)})[0]; v.ret != xdpDrop {
		t.Errorf("a /32 rule added after the failed adds does not drop: %+v", v)
	}
	for _, id := range []string{"host-1", "host-2", "host-3", added.ID} {
		if err := tbl.Delete(id); err != nil {
			t.Fatal(err)
		}
	}
	if v := kernelVerdicts(t, g, frames[:1])[0]; v.ret != xdpDrop || v.slot < FPSlots {
		t.Errorf("the last /32 source rule stopped dropping after the other /32s were deleted: %+v", v)
	}
}

func ruleSrc(s string) rule.Rule {
	return rule.Rule{Action: rule.ActionDrop, TTLSeconds: 600, Match: rule.Match{Src: s}}
}

// failedAddRepeats is how often each failed add is tried: more than the
// rules of any one prefix length the setup holds.
const failedAddRepeats = 12

// nthPrefix returns the i-th prefix of p's length after p (i = 0: p itself),
// in the address's last byte or the byte above the prefix; "" stays "".
func nthPrefix(s string, i int) string {
	if s == "" || i == 0 {
		return s
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return s // an invalid prefix stays as invalid
	}
	b := p.Addr().AsSlice()
	byteIdx := min((p.Bits()-1)/8, len(b)-1)
	b[byteIdx] += byte(i << ((8 - p.Bits()%8) % 8))
	a, _ := netip.AddrFromSlice(b)
	return netip.PrefixFrom(a, p.Bits()).Masked().String()
}

func isTableFull(err error) bool { return errors.Is(err, rule.ErrRuleTableFull) }
