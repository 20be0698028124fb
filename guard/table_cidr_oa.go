package guard

import (
	"errors"
	"fmt"
	"net/netip"
	"unsafe"

	"github.com/cilium/ebpf"

	"github.com/packetscope/packetscope/bpf"
)

// cidrOA mirrors one open-addressing source-CIDR table (cidr_oa4/6 in
// guard.bpf.c): the entries of a cidrField that found a slot within
// GuardOAProbes of their home. The field's hash map holds every entry and
// the kernel reads it when the array has no valid entry for a prefix, so an
// entry left out here (spilled) is only slower to find. Hence the order of
// writes: the hash map first when an entry comes or changes, last when it
// goes.
//
// A table slot's rule changes only while the slot is not valid: put makes
// it a tombstone, rewrites it and makes it valid again, each write changing
// either the flags or words a reader ignores, so the kernel sees the old
// rule, the new one, or none (and asks the hash map).
type cidrOA struct {
	m      *ebpf.Map
	slotOf map[netip.Prefix]uint32 // table slot of each placed entry
	rule   map[netip.Prefix]uint32 // rule slot written in it
	state  []uint8                 // per table slot: 0 empty, OA_USED (tombstone), OA_USED|OA_VALID
	spill  map[netip.Prefix]uint32 // entries that found no slot (in the hash map only), with their rule slot
}

func newCIDROA(m *ebpf.Map) *cidrOA {
	return &cidrOA{m: m, slotOf: map[netip.Prefix]uint32{}, rule: map[netip.Prefix]uint32{},
		state: make([]uint8, 1<<bpf.GuardCIDROAShift), spill: map[netip.Prefix]uint32{}}
}

// home is the kernel's: the top bits of the prefilter hash.
func (t *cidrOA) home(p netip.Prefix) uint32 {
	return uint32(pfHash(pfCIDR4, p) >> (64 - bpf.GuardCIDROAShift))
}

func (t *cidrOA) mask() uint32 { return uint32(len(t.state) - 1) }

func (t *cidrOA) write(s uint32, p netip.Prefix, rule uint32, flags uint16) error {
	var v any
	if p.Addr().Is4() {
		a := p.Addr().As4()
		v = &bpf.GuardCIDR4Entry{Flags: flags, Plen: uint16(p.Bits()), Addr: nativeU32(a[:]), Slot: rule}
	} else {
		a := p.Addr().As16()
		e := &bpf.GuardCIDR6Entry{Flags: flags, Plen: uint16(p.Bits()), Slot: rule}
		for i := range 4 {
			e.Addr[i] = nativeU32(a[i*4 : i*4+4])
		}
		v = e
	}
	if err := t.m.Update(s, v, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("update %s: %w", t.m, err)
	}
	t.state[s] = uint8(flags)
	return nil
}

// put places p with its winning rule slot, in place when p has a table slot.
func (t *cidrOA) put(p netip.Prefix, rule uint32) error {
	if s, ok := t.slotOf[p]; ok {
		if t.rule[p] == rule {
			return nil
		}
		for _, w := range []struct {
			rule  uint32
			flags uint16
		}{{t.rule[p], bpf.GuardOAUsed}, {rule, bpf.GuardOAUsed}, {rule, bpf.GuardOAUsed | bpf.GuardOAValid}} {
			if err := t.write(s, p, w.rule, w.flags); err != nil {
				return err
			}
		}
		t.rule[p] = rule
		return nil
	}
	home := t.home(p)
	for j := uint32(0); j < bpf.GuardOAProbes; j++ {
		s := (home + j) & t.mask()
		if t.state[s]&bpf.GuardOAValid != 0 {
			continue
		}
		if err := t.write(s, p, rule, bpf.GuardOAUsed); err != nil {
			return err
		}
		if err := t.write(s, p, rule, bpf.GuardOAUsed|bpf.GuardOAValid); err != nil {
			return err
		}
		t.slotOf[p], t.rule[p] = s, rule
		delete(t.spill, p)
		return nil
	}
	t.spill[p] = rule
	return nil
}

// del takes p out: its slot becomes a tombstone, and tombstones that end a
// probe chain become empty again, so churn does not leave every miss probing
// the whole neighbourhood.
func (t *cidrOA) del(p netip.Prefix) error {
	delete(t.spill, p)
	s, ok := t.slotOf[p]
	if !ok {
		return nil
	}
	if err := t.write(s, p, t.rule[p], bpf.GuardOAUsed); err != nil {
		return err
	}
	delete(t.slotOf, p)
	delete(t.rule, p)
	if err := t.reclaim(s, p); err != nil {
		return err
	}
	return t.promote(s)
}

// promote places the spilled entries whose neighbourhood holds the slot s
// just freed.
func (t *cidrOA) promote(s uint32) error {
	for p, rule := range t.spill {
		if (s-t.home(p))&t.mask() < bpf.GuardOAProbes {
			if err := t.put(p, rule); err != nil {
				return err
			}
		}
	}
	return nil
}

// reclaim empties tombstones from s backwards while the slot after each is
// empty: no probe chain reaches past an empty slot, so none passes them.
func (t *cidrOA) reclaim(s uint32, p netip.Prefix) error {
	for range bpf.GuardOAProbes {
		if t.state[s] != bpf.GuardOAUsed || t.state[(s+1)&t.mask()] != 0 {
			return nil
		}
		if err := t.write(s, p, 0, 0); err != nil {
			return err
		}
		s = (s - 1) & t.mask()
	}
	return nil
}

// adopt makes the table hold exactly want (prefix -> winning rule slot),
// keeping in place the entries a previous agent left and turning anything
// else valid there into a tombstone.
func (t *cidrOA) adopt(want map[netip.Prefix]uint32) error {
	found, err := t.load()
	if err != nil {
		return err
	}
	for p, rule := range want {
		if err := t.put(p, rule); err != nil {
			return err
		}
	}
	for p := range found {
		if _, ok := want[p]; !ok {
			if err := t.del(p); err != nil {
				return err
			}
		}
	}
	return nil
}

// load reads every slot. A valid entry that is not also marked used, is no
// masked prefix, or repeats one, was never written by a sound agent: it
// becomes a tombstone at once.
func (t *cidrOA) load() (map[netip.Prefix]bool, error) {
	found := map[netip.Prefix]bool{}
	each := func(s uint32, p netip.Prefix, rule uint32, flags uint16) error {
		t.state[s] = uint8(flags & (bpf.GuardOAUsed | bpf.GuardOAValid))
		if flags&bpf.GuardOAValid == 0 {
			return nil
		}
		if _, dup := t.slotOf[p]; dup || flags&bpf.GuardOAUsed == 0 || !p.IsValid() || p != p.Masked() {
			return t.write(s, p, rule, bpf.GuardOAUsed)
		}
		t.slotOf[p], t.rule[p] = s, rule
		found[p] = true
		return nil
	}
	var err error
	if t.m.ValueSize() == uint32(unsafe.Sizeof(bpf.GuardCIDR4Entry{})) {
		err = readArray(t.m, func(s uint32, e *bpf.GuardCIDR4Entry) error {
			var a [4]byte
			putNativeU32(a[:], e.Addr)
			return each(s, netip.PrefixFrom(netip.AddrFrom4(a), int(e.Plen)), e.Slot, e.Flags)
		})
	} else {
		err = readArray(t.m, func(s uint32, e *bpf.GuardCIDR6Entry) error {
			var a [16]byte
			for i := range 4 {
				putNativeU32(a[i*4:], e.Addr[i])
			}
			return each(s, netip.PrefixFrom(netip.AddrFrom16(a), int(e.Plen)), e.Slot, e.Flags)
		})
	}
	return found, err
}

// readArray hands every entry of an array map to each, by index, reading
// it in batches (2^18 single lookups would take a restart a second).
func readArray[E any](m *ebpf.Map, each func(i uint32, e *E) error) error {
	var cursor ebpf.MapBatchCursor
	keys := make([]uint32, 4096)
	vals := make([]E, 4096)
	for {
		n, err := m.BatchLookup(&cursor, keys, vals, nil)
		for i := range n {
			if err := each(keys[i], &vals[i]); err != nil {
				return err
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", m, err)
		}
	}
}
