package guard

import (
	"errors"
	"fmt"
	"net/netip"
	"unsafe"

	"github.com/cilium/ebpf"

	"github.com/packetscope/packetscope/bpf"
)

// oaTable mirrors one open-addressing address table of the kernel (an
// array of slots; see fp_src4 in guard.bpf.c). Entries sit within
// GuardOAProbes slots of their home; a deleted entry leaves a tombstone
// (used, not valid) so probing goes on past it.
//
// The kernel reads slots while the agent writes them, and an array update
// is a plain copy, so every write changes either only the flags word or
// only words a reader ignores: a new entry is written invalid first, then
// made valid; an entry's bitmap changes only in the bit of a rule whose
// active bit is off.
type oaTable struct {
	m      *ebpf.Map
	tid    uint32 // prefilter/hash table id (IPv4 id)
	slotOf map[netip.Prefix]uint32
	state  []uint8                 // per slot: 0 empty, OA_USED (tombstone), OA_USED|OA_VALID
	last   map[netip.Prefix]bitmap // bitmap last written, so a tombstone changes only flags
}

var errOAFull = errors.New("no free slot near its home: too many address entries")

func newOATable(m *ebpf.Map, tid uint32) *oaTable {
	return &oaTable{m: m, tid: tid, slotOf: map[netip.Prefix]uint32{}, state: make([]uint8, 1<<bpf.GuardOAShift),
		last: map[netip.Prefix]bitmap{}}
}

func (t *oaTable) home(p netip.Prefix) uint32 {
	return uint32(pfHash(t.tid, p) >> (64 - bpf.GuardOAShift))
}

func (t *oaTable) write(slot uint32, p netip.Prefix, b *bitmap, flags uint32) error {
	var err error
	if p.Addr().Is4() {
		a := p.Addr().As4()
		e := bpf.GuardAddr4Entry{Flags: flags, Plen: uint32(p.Bits()), Addr: nativeU32(a[:])}
		if b != nil {
			e.Bitmap = *b
		}
		err = t.m.Update(slot, &e, ebpf.UpdateAny)
	} else {
		a := p.Addr().As16()
		e := bpf.GuardAddr6Entry{Flags: flags, Plen: uint32(p.Bits())}
		for i := range 4 {
			e.Addr[i] = nativeU32(a[i*4 : i*4+4])
		}
		if b != nil {
			e.Bitmap = *b
		}
		err = t.m.Update(slot, &e, ebpf.UpdateAny)
	}
	if err != nil {
		return fmt.Errorf("update %s: %w", t.m, err)
	}
	return nil
}

// put stores p's bitmap, in place when p has a slot.
func (t *oaTable) put(p netip.Prefix, b *bitmap) error {
	t.last[p] = *b
	if s, ok := t.slotOf[p]; ok {
		return t.write(s, p, b, bpf.GuardOAUsed|bpf.GuardOAValid)
	}
	home := t.home(p)
	mask := uint32(len(t.state) - 1)
	for j := uint32(0); j < bpf.GuardOAProbes; j++ {
		s := (home + j) & mask
		if t.state[s]&bpf.GuardOAValid != 0 {
			continue
		}
		if err := t.write(s, p, b, bpf.GuardOAUsed); err != nil {
			return err
		}
		if err := t.write(s, p, b, bpf.GuardOAUsed|bpf.GuardOAValid); err != nil {
			return err
		}
		t.state[s] = bpf.GuardOAUsed | bpf.GuardOAValid
		t.slotOf[p] = s
		return nil
	}
	delete(t.last, p)
	return fmt.Errorf("%w (%s)", errOAFull, p)
}

// del turns p's slot into a tombstone, keeping its last bitmap so that a
// reader racing the write sees either the live entry or none.
func (t *oaTable) del(p netip.Prefix) error {
	s, ok := t.slotOf[p]
	if !ok {
		return nil
	}
	b := t.last[p]
	if err := t.write(s, p, &b, bpf.GuardOAUsed); err != nil {
		return err
	}
	t.state[s] = bpf.GuardOAUsed
	delete(t.slotOf, p)
	delete(t.last, p)
	return nil
}

// load reads the slots a previous agent left, so adopting rewrites entries
// in place: the kernel never sees an entry move.
func (t *oaTable) load() (map[netip.Prefix]*bitmap, error) {
	found := map[netip.Prefix]*bitmap{}
	n := uint32(len(t.state))
	for s := uint32(0); s < n; s++ {
		var p netip.Prefix
		var b bitmap
		var flags uint32
		if t.m.ValueSize() == uint32(unsafe.Sizeof(bpf.GuardAddr4Entry{})) {
			var e bpf.GuardAddr4Entry
			if err := t.m.Lookup(s, &e); err != nil {
				return nil, fmt.Errorf("read %s: %w", t.m, err)
			}
			flags, b = e.Flags, e.Bitmap
			var a [4]byte
			putNativeU32(a[:], e.Addr)
			p = netip.PrefixFrom(netip.AddrFrom4(a), int(e.Plen))
		} else {
			var e bpf.GuardAddr6Entry
			if err := t.m.Lookup(s, &e); err != nil {
				return nil, fmt.Errorf("read %s: %w", t.m, err)
			}
			flags, b = e.Flags, e.Bitmap
			var a [16]byte
			for i := range 4 {
				putNativeU32(a[i*4:], e.Addr[i])
			}
			p = netip.PrefixFrom(netip.AddrFrom16(a), int(e.Plen))
		}
		t.state[s] = uint8(flags & (bpf.GuardOAUsed | bpf.GuardOAValid))
		if flags&bpf.GuardOAValid != 0 && p.IsValid() {
			if _, dup := t.slotOf[p]; !dup {
				t.slotOf[p] = s
				t.last[p] = b
				found[p] = &b
				continue
			}
			t.state[s] = bpf.GuardOAUsed // a duplicate: never written by a sound agent
		}
	}
	return found, nil
}

func putNativeU32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}
