package guard

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/cilium/ebpf"

	"github.com/packetscope/packetscope/bpf"
	"github.com/packetscope/packetscope/rule"
)

// metaEntries is GUARD_META_ENTRIES: family x fragment kind x has_l4 x protocol.
const metaEntries = 2 * 3 * 2 * 256

// metaKey is the kernel's fp_meta index for a packet (guard_classify_fp).
func metaKey(family uint8, frag rule.FragKind, hasL4 bool, proto uint8) uint32 {
	f := uint32(0)
	if family == 6 {
		f = 1
	}
	l4 := uint32(0)
	if hasL4 {
		l4 = 1
	}
	return ((f*3+uint32(frag))*2+l4)<<8 | uint32(proto)
}

// fpFields mirrors every map of the fingerprint classifier.
type fpFields struct {
	meta, flags, icmp, ttl       *arrayField
	sport, dport, length, window *arrayField
	wild                         *arrayField // fp_wild: address wilds and the active set
	wildClass                    *arrayField // fp_wild_class: 16-bit field wilds per meta class
	src4, src6, dst4, dst6       *prefixField
	names                        *namesField
}

func newFPFields(m *bpf.GuardMaps, pf *prefilter) *fpFields {
	f := &fpFields{
		meta: newArrayField(m.FpMeta), flags: newArrayField(m.FpTcpFlags), icmp: newArrayField(m.FpIcmpType),
		ttl: newArrayField(m.FpTtl), sport: newArrayField(m.FpSport), dport: newArrayField(m.FpDport),
		length: newArrayField(m.FpLength), window: newArrayField(m.FpWindow), wild: newArrayField(m.FpWild),
		wildClass: newArrayField(m.FpWildClass), names: &namesField{m: m.FpNames},
	}
	f.wild.dense = true
	for i := range bpf.GuardWildCount {
		f.wild.vals[i] = new(bitmap)
	}
	f.src4 = newPrefixField(m.FpSrc4, 32, f.wild.vals[bpf.GuardWildSrc4], pf, pfFPSrc4)
	f.src6 = newPrefixField(m.FpSrc6, 128, f.wild.vals[bpf.GuardWildSrc6], pf, pfFPSrc4)
	f.dst4 = newPrefixField(m.FpDst4, 32, f.wild.vals[bpf.GuardWildDst4], pf, pfFPDst4)
	f.dst6 = newPrefixField(m.FpDst6, 128, f.wild.vals[bpf.GuardWildDst6], pf, pfFPDst4)
	return f
}

// check reports a FieldError when the rule would exceed a per-field limit.
func (f *fpFields) check(m *rule.Matcher) error {
	if m.Src.IsValid() && !f.addrField(true, m.Src).canAdd(m.Src) {
		return rule.FieldErrorf("match.src", "the guard already uses %d distinct prefix lengths for this field and family: reuse one of them", bpf.GuardFPPlens)
	}
	if m.Dst.IsValid() && !f.addrField(false, m.Dst).canAdd(m.Dst) {
		return rule.FieldErrorf("match.dst", "the guard already uses %d distinct prefix lengths for this field and family: reuse one of them", bpf.GuardFPPlens)
	}
	return nil
}

func (f *fpFields) addrField(src bool, p netip.Prefix) *prefixField {
	switch {
	case src && p.Addr().Is4():
		return f.src4
	case src:
		return f.src6
	case p.Addr().Is4():
		return f.dst4
	}
	return f.dst6
}

// apply sets (on) or clears the slot's bits in every field but the active set.
func (f *fpFields) apply(slot uint32, m *rule.Matcher, on bool) {
	var classes []uint32
	for fam := range 2 {
		family := uint8(4 + 2*fam)
		for frag := rule.FragNone; frag <= rule.FragLater; frag++ {
			for _, l4 := range []bool{false, true} {
				for proto := range 256 {
					if m.AllowsMeta(family, frag, l4, uint8(proto)) {
						k := metaKey(family, frag, l4, uint8(proto))
						f.meta.set(k, slot, on)
						classes = append(classes, k)
					}
				}
			}
		}
	}
	for v := range uint32(256) {
		if !m.NeedsTCP || uint8(v)&m.FlagsSet == m.FlagsSet && uint8(v)&m.FlagsUnset == 0 {
			f.flags.set(v, slot, on)
		}
		if !m.NeedsICMPType || int(v) == m.ICMPType {
			f.icmp.set(v, slot, on)
		}
		if m.TTL.Contains(v) {
			f.ttl.set(v, slot, on)
		}
	}
	f.applyPorts(f.sport, bpf.GuardWildSport, classes, m.SrcPorts, slot, on)
	f.applyPorts(f.dport, bpf.GuardWildDport, classes, m.DstPorts, slot, on)
	f.applyRange(f.length, bpf.GuardWildLength, classes, m.Length, slot, on)
	f.applyRange(f.window, bpf.GuardWildWindow, classes, m.TCPWindow, slot, on)
	f.applyAddr(true, m.Src, slot, on)
	f.applyAddr(false, m.Dst, slot, on)
	f.names.apply(slot, m, on)
}

// setWild marks the rule open on a 16-bit field in every meta class it allows.
func (f *fpFields) setWild(field uint32, classes []uint32, slot uint32, on bool) {
	for _, c := range classes {
		f.wildClass.set(field*metaEntries+c, slot, on)
	}
}

func (f *fpFields) applyPorts(a *arrayField, wild uint32, classes []uint32, ports []rule.PortRange, slot uint32, on bool) {
	if ports == nil {
		f.setWild(wild, classes, slot, on)
		return
	}
	for _, r := range ports {
		for p := uint32(r.Lo); p <= uint32(r.Hi); p++ {
			a.set(p, slot, on)
		}
	}
}

func (f *fpFields) applyRange(a *arrayField, wild uint32, classes []uint32, r rule.Range, slot uint32, on bool) {
	if !r.Set {
		f.setWild(wild, classes, slot, on)
		return
	}
	for v := r.Lo; v <= r.Hi; v++ {
		a.set(v, slot, on)
	}
}

func (f *fpFields) applyAddr(src bool, p netip.Prefix, slot uint32, on bool) {
	if !p.IsValid() {
		w4, w6, f4, f6 := bpf.GuardWildDst4, bpf.GuardWildDst6, f.dst4, f.dst6
		if src {
			w4, w6, f4, f6 = bpf.GuardWildSrc4, bpf.GuardWildSrc6, f.src4, f.src6
		}
		f.wild.set(w4, slot, on)
		f.wild.set(w6, slot, on)
		f4.addOpen(slot, on)
		f6.addOpen(slot, on)
		return
	}
	pf := f.addrField(src, p)
	if on {
		pf.addRule(slot, p)
	} else {
		pf.removeRule(slot)
	}
}

func (f *fpFields) arrays() []*arrayField {
	return []*arrayField{f.meta, f.flags, f.icmp, f.ttl, f.sport, f.dport, f.length, f.window, f.wildClass}
}

func (f *fpFields) prefixes() []*prefixField {
	return []*prefixField{f.src4, f.src6, f.dst4, f.dst6}
}

// flushFields writes every changed entry except the active set (in fp_wild).
func (f *fpFields) flushFields() error {
	for _, a := range f.arrays() {
		if err := a.flush(); err != nil {
			return err
		}
	}
	for _, p := range f.prefixes() {
		if err := p.flush(); err != nil {
			return err
		}
	}
	if err := f.names.flush(); err != nil {
		return err
	}
	return f.wild.flush()
}

// namesField mirrors fp_names: per field the kernel reads only for the
// candidates that name it, the rules naming it. A bit is set before its
// rule's active bit and cleared after, like every field's bits.
type namesField struct {
	m     *ebpf.Map
	v     bpf.GuardNames
	dirty bool
}

func (n *namesField) apply(slot uint32, m *rule.Matcher, on bool) {
	for _, f := range []struct {
		words *[bpf.GuardFPRules / 64]uint64
		named bool
	}{
		{&n.v.Ttl, m.TTL.Set},
		{&n.v.Length, m.Length.Set},
		{&n.v.TcpFlags, m.FlagsSet|m.FlagsUnset != 0},
		{&n.v.Window, m.TCPWindow.Set},
		{&n.v.IcmpType, m.NeedsICMPType},
		{&n.v.Src, m.Src.IsValid()},
		{&n.v.Dst, m.Dst.IsValid()},
	} {
		if !f.named {
			continue
		}
		bit := uint64(1) << (slot % 64)
		if on {
			f.words[slot/64] |= bit
		} else {
			f.words[slot/64] &^= bit
		}
		n.dirty = true
	}
}

func (n *namesField) flush() error {
	if !n.dirty {
		return nil
	}
	if err := n.m.Update(uint32(0), &n.v, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("update %s: %w", n.m, err)
	}
	n.dirty = false
	return nil
}

// cidrField mirrors the source-CIDR-only rules of one family: entries per
// (prefix length, prefix) holding the lowest slot among the rules whose
// prefix contains the entry's, so the longest hit is the first match.
type cidrField struct {
	m      *ebpf.Map                 // hash map: every entry
	oa     *cidrOA                   // the same entries, those that found a slot
	refs   map[netip.Prefix][]uint32 // prefix -> slots naming it, ascending
	vals   map[netip.Prefix]uint32
	lens   map[int]int // prefix length -> distinct prefixes with it
	dirty  map[netip.Prefix]bool
	gone   map[netip.Prefix]bool
	pf     *prefilter
	marked map[netip.Prefix]bool // entries whose prefilter bit is counted
}

func newCIDRField(m, oa *ebpf.Map, pf *prefilter) *cidrField {
	return &cidrField{m: m, oa: newCIDROA(oa), refs: map[netip.Prefix][]uint32{}, vals: map[netip.Prefix]uint32{},
		lens: map[int]int{}, dirty: map[netip.Prefix]bool{}, gone: map[netip.Prefix]bool{},
		pf: pf, marked: map[netip.Prefix]bool{}}
}

func (c *cidrField) canAdd(p netip.Prefix) bool {
	return c.lens[p.Bits()] > 0 || len(c.lens) < bpf.GuardCIDRPlens
}

func (c *cidrField) plens() []uint8 {
	var out []uint8
	for l := range c.lens {
		out = append(out, uint8(l))
	}
	slices.Sort(out)
	slices.Reverse(out)
	return out
}

// winner is the lowest slot among the rules whose prefix contains p.
func (c *cidrField) winner(p netip.Prefix) (uint32, bool) {
	best, ok := uint32(0), false
	for l := range c.lens {
		if l > p.Bits() {
			continue
		}
		q, _ := p.Addr().Prefix(l)
		if s := c.refs[q]; len(s) > 0 && (!ok || s[0] < best) {
			best, ok = s[0], true
		}
	}
	return best, ok
}

// update recomputes the entries inside p (p's own included).
func (c *cidrField) update(p netip.Prefix) {
	longer := false
	for l := range c.lens {
		if l > p.Bits() {
			longer = true
		}
	}
	recompute := func(e netip.Prefix) {
		w, ok := c.winner(e)
		if !ok {
			return
		}
		if old, had := c.vals[e]; !had || old != w {
			c.vals[e] = w
			c.dirty[e] = true
		}
	}
	if _, ok := c.refs[p]; ok {
		recompute(p)
	}
	if !longer {
		return
	}
	for e := range c.refs {
		if e.Bits() > p.Bits() && p.Contains(e.Addr()) {
			recompute(e)
		}
	}
}

func (c *cidrField) add(slot uint32, p netip.Prefix) {
	s := c.refs[p]
	if len(s) == 0 {
		c.lens[p.Bits()]++
		delete(c.gone, p)
	}
	i, _ := slices.BinarySearch(s, slot)
	c.refs[p] = slices.Insert(s, i, slot)
	c.update(p)
}

// remove takes out a slot's reference to p; one it never added is a no-op
// (counting it down would take another rule's prefix length with it).
func (c *cidrField) remove(slot uint32, p netip.Prefix) {
	s := c.refs[p]
	i, ok := slices.BinarySearch(s, slot)
	if !ok {
		return
	}
	s = slices.Delete(s, i, i+1)
	if len(s) == 0 {
		delete(c.refs, p)
		delete(c.vals, p)
		delete(c.dirty, p)
		c.gone[p] = true
		if c.lens[p.Bits()]--; c.lens[p.Bits()] == 0 {
			delete(c.lens, p.Bits())
		}
	} else {
		c.refs[p] = s
	}
	c.update(p)
}

func (c *cidrField) flush() error {
	for p := range c.dirty {
		if !c.marked[p] {
			if err := c.pf.add(pfCIDR4, p, true); err != nil {
				return err
			}
			c.marked[p] = true
		}
		if err := c.m.Update(addrKey(p), c.vals[p], ebpf.UpdateAny); err != nil {
			return fmt.Errorf("update %s: %w", c.m, err)
		}
		if err := c.oa.put(p, c.vals[p]); err != nil {
			return err
		}
	}
	clear(c.dirty)
	return nil
}

func (c *cidrField) flushGone() error {
	for p := range c.gone {
		if err := c.oa.del(p); err != nil {
			return err
		}
		if err := c.m.Delete(addrKey(p)); err != nil && !isNotExist(err) {
			return fmt.Errorf("delete from %s: %w", c.m, err)
		}
		if c.marked[p] {
			delete(c.marked, p)
			if err := c.pf.remove(pfCIDR4, p); err != nil {
				return err
			}
		}
	}
	clear(c.gone)
	return nil
}
