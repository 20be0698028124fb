package guard

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/cilium/ebpf"

	"github.com/packetscope/packetscope/bpf"
)

// bitmap is a set of fingerprint slots as the kernel stores it.
type bitmap = bpf.GuardBitmap

func bmSet(b *bitmap, slot uint32)      { b.Words[slot/64] |= 1 << (slot % 64); b.Sum |= 1 << (slot / 64) }
func bmHas(b *bitmap, slot uint32) bool { return b.Words[slot/64]&(1<<(slot%64)) != 0 }
func bmClear(b *bitmap, slot uint32) {
	b.Words[slot/64] &^= 1 << (slot % 64)
	if b.Words[slot/64] == 0 {
		b.Sum &^= 1 << (slot / 64)
	}
}

// setBit sets or clears slot in b and reports whether b changed.
func setBit(b *bitmap, slot uint32, on bool) bool {
	if bmHas(b, slot) == on {
		return false
	}
	if on {
		bmSet(b, slot)
	} else {
		bmClear(b, slot)
	}
	return true
}

// arrayField mirrors one BPF array of bitmaps indexed by a field's value.
// Dense fields keep every entry; sparse ones (16-bit fields) only non-empty
// ones, the open rules being in fp_wild.
type arrayField struct {
	m     *ebpf.Map
	dense bool // keep empty entries in vals (their pointers are shared)
	vals  map[uint32]*bitmap
	dirty map[uint32]bool
}

func newArrayField(m *ebpf.Map) *arrayField {
	return &arrayField{m: m, vals: make(map[uint32]*bitmap), dirty: make(map[uint32]bool)}
}

func (f *arrayField) set(key, slot uint32, on bool) {
	b := f.vals[key]
	if b == nil {
		if !on {
			return
		}
		b = new(bitmap)
		f.vals[key] = b
	}
	if setBit(b, slot, on) {
		f.dirty[key] = true
	}
}

// flush writes the changed entries in one batch.
func (f *arrayField) flush() error {
	if len(f.dirty) == 0 {
		return nil
	}
	keys := make([]uint32, 0, len(f.dirty))
	vals := make([]bitmap, 0, len(f.dirty))
	for k := range f.dirty {
		keys = append(keys, k)
		if b := f.vals[k]; b != nil {
			vals = append(vals, *b)
			if b.Sum == 0 && !f.dense {
				delete(f.vals, k)
			}
		} else {
			vals = append(vals, bitmap{})
		}
	}
	clear(f.dirty)
	if _, err := f.m.BatchUpdate(keys, vals, nil); err != nil {
		return fmt.Errorf("update %s: %w", f.m, err)
	}
	return nil
}

// rewriteAll writes every entry of the array, empty ones included: used when
// adopting pinned maps, to wipe bits a crashed agent may have left.
func (f *arrayField) rewriteAll() error {
	n := f.m.MaxEntries()
	const chunk = 4096
	for start := uint32(0); start < n; start += chunk {
		end := min(start+chunk, n)
		keys := make([]uint32, 0, end-start)
		vals := make([]bitmap, 0, end-start)
		for k := start; k < end; k++ {
			keys = append(keys, k)
			if b := f.vals[k]; b != nil {
				vals = append(vals, *b)
			} else {
				vals = append(vals, bitmap{})
			}
		}
		if _, err := f.m.BatchUpdate(keys, vals, nil); err != nil {
			return fmt.Errorf("update %s: %w", f.m, err)
		}
	}
	clear(f.dirty)
	return nil
}

// prefixField mirrors one address field of one family: exact-match entries
// per (prefix length, prefix) whose bitmaps already hold the open rules and
// the rules of every containing prefix, so the longest hit is the answer.
type prefixField struct {
	m       *ebpf.Map
	tab     *oaTable
	bits    int // 32 or 128
	wild    *bitmap
	entries map[netip.Prefix]*bitmap
	rules   map[uint32]netip.Prefix // slot -> prefix, rules naming this field
	refs    map[netip.Prefix]int
	dirty   map[netip.Prefix]bool
	gone    map[netip.Prefix]bool
	pf      *prefilter
	tid     uint32                // prefilter table (IPv4 id)
	marked  map[netip.Prefix]bool // entries whose prefilter bit is counted
}

func newPrefixField(m *ebpf.Map, bits int, wild *bitmap, pf *prefilter, tid uint32) *prefixField {
	return &prefixField{
		m: m, tab: newOATable(m, tid), bits: bits, wild: wild, pf: pf, tid: tid, marked: make(map[netip.Prefix]bool),
		entries: make(map[netip.Prefix]*bitmap), rules: make(map[uint32]netip.Prefix),
		refs: make(map[netip.Prefix]int), dirty: make(map[netip.Prefix]bool), gone: make(map[netip.Prefix]bool),
	}
}

// plens returns the prefix lengths in use, longest first.
func (f *prefixField) plens() []uint8 {
	seen := map[int]bool{}
	var out []uint8
	for p := range f.refs {
		if !seen[p.Bits()] {
			seen[p.Bits()] = true
			out = append(out, uint8(p.Bits()))
		}
	}
	slices.Sort(out)
	slices.Reverse(out)
	return out
}

// canAdd reports whether a rule naming p fits the per-field prefix-length limit.
func (f *prefixField) canAdd(p netip.Prefix) bool {
	if f.refs[p] > 0 {
		return true
	}
	for q := range f.refs {
		if q.Bits() == p.Bits() {
			return true
		}
	}
	return len(f.plens()) < bpf.GuardFPPlens
}

// addOpen sets slot in every entry: a rule that leaves this field open.
func (f *prefixField) addOpen(slot uint32, on bool) {
	for p, b := range f.entries {
		if setBit(b, slot, on) {
			f.dirty[p] = true
		}
	}
}

func (f *prefixField) addRule(slot uint32, p netip.Prefix) {
	f.rules[slot] = p
	f.refs[p]++
	if f.entries[p] == nil {
		b := *f.wild
		for s, q := range f.rules {
			if q.Bits() <= p.Bits() && q.Contains(p.Addr()) {
				bmSet(&b, s)
			}
		}
		f.entries[p] = &b
		f.dirty[p] = true
		delete(f.gone, p)
	}
	for e, b := range f.entries {
		if e.Bits() >= p.Bits() && p.Contains(e.Addr()) && setBit(b, slot, true) {
			f.dirty[e] = true
		}
	}
}

func (f *prefixField) removeRule(slot uint32) {
	p, ok := f.rules[slot]
	if !ok {
		return
	}
	delete(f.rules, slot)
	for e, b := range f.entries {
		if e.Bits() >= p.Bits() && p.Contains(e.Addr()) && setBit(b, slot, false) {
			f.dirty[e] = true
		}
	}
	if f.refs[p]--; f.refs[p] == 0 {
		delete(f.refs, p)
		delete(f.entries, p)
		delete(f.dirty, p)
		f.gone[p] = true
	}
}

func (f *prefixField) flush() error {
	for p := range f.dirty {
		if !f.marked[p] {
			if err := f.pf.add(f.tid, p, true); err != nil {
				return err
			}
			f.marked[p] = true
		}
		if err := f.tab.put(p, f.entries[p]); err != nil {
			return err
		}
	}
	clear(f.dirty)
	return nil
}

// flushGone removes entries no rule names any more; called after the
// config stopped naming their prefix lengths.
func (f *prefixField) flushGone() error {
	for p := range f.gone {
		if err := f.tab.del(p); err != nil {
			return err
		}
		if f.marked[p] {
			delete(f.marked, p)
			if err := f.pf.remove(f.tid, p); err != nil {
				return err
			}
		}
	}
	clear(f.gone)
	return nil
}

// adopt makes the kernel table hold exactly the mirror's entries, rewriting
// the entries a previous agent left in their slots.
func (f *prefixField) adopt() error {
	found, err := f.tab.load()
	if err != nil {
		return err
	}
	for p := range f.entries {
		if err := f.tab.put(p, f.entries[p]); err != nil {
			return err
		}
	}
	for p := range found {
		if f.entries[p] == nil {
			if err := f.tab.del(p); err != nil {
				return err
			}
		}
	}
	clear(f.dirty)
	clear(f.gone)
	return nil
}

func (f *prefixField) key(p netip.Prefix) any {
	return addrKey(p)
}

// addrKey is the kernel's key for a prefix: GuardKey4 or GuardKey6.
func addrKey(p netip.Prefix) any {
	if p.Addr().Is4() {
		a := p.Addr().As4()
		return bpf.GuardKey4{Plen: uint32(p.Bits()), Addr: nativeU32(a[:])}
	}
	a := p.Addr().As16()
	k := bpf.GuardKey6{Plen: uint32(p.Bits())}
	for i := range 4 {
		k.Addr[i] = nativeU32(a[i*4 : i*4+4])
	}
	return k
}

// nativeU32 reads 4 network-order bytes as the kernel's __u32 holding them
// (little-endian host).
func nativeU32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}
