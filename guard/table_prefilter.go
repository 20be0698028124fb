package guard

import (
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"

	"github.com/packetscope/packetscope/bpf"
)

// Tables of the address prefilter (enum guard_pf_table).
const (
	pfFPSrc4 = 0
	pfFPDst4 = 1
	pfCIDR4  = 2
	pfFPSrc6 = 3
	pfFPDst6 = 4
	pfCIDR6  = 5
)

const (
	pfK1 = 0x9E3779B97F4A7C15
	pfK2 = 0xC2B2AE3D27D4EB4F
)

// pfHash is the kernel's pf_hash4/pf_hash6 for a prefix entry of table tid
// (the IPv4 table id; IPv6 ids are 3 higher).
func pfHash(tid uint32, p netip.Prefix) uint64 {
	plen := uint64(p.Bits())
	if p.Addr().Is4() {
		a := p.Addr().As4()
		x := uint64(tid<<8|uint32(plen))<<32 | uint64(nativeU32(a[:]))
		return x * pfK1
	}
	a := p.Addr().As16()
	w := func(i int) uint64 { return uint64(nativeU32(a[i*4 : i*4+4])) }
	x := (w(1)<<32 | w(0)) * pfK1
	x ^= w(3)<<32 | w(2)
	x *= pfK2
	x ^= uint64((tid+3)<<8|uint32(plen)) << 32
	return x * pfK1
}

// prefilter mirrors addr_prefilter with a count per bit, so a bit is
// cleared only when no entry hashes to it any more.
type prefilter struct {
	m      *ebpf.Map
	counts map[uint32]uint32 // bit position -> entries hashing to it
	words  map[uint32]uint64
}

func newPrefilter(m *ebpf.Map) *prefilter {
	return &prefilter{m: m, counts: map[uint32]uint32{}, words: map[uint32]uint64{}}
}

func pfPos(h uint64) (word uint32, bit uint32) {
	return uint32(h >> (64 - bpf.GuardPrefilterShift)), uint32(h>>32) & 63
}

// add marks an entry before it goes into its hash map.
func (f *prefilter) add(tid uint32, p netip.Prefix, write bool) error {
	word, bit := pfPos(pfHash(tid, p))
	pos := word<<6 | bit
	f.counts[pos]++
	if f.counts[pos] > 1 {
		return nil
	}
	f.words[word] |= 1 << bit
	if !write {
		return nil
	}
	return f.write(word)
}

// remove unmarks an entry after it left its hash map.
func (f *prefilter) remove(tid uint32, p netip.Prefix) error {
	word, bit := pfPos(pfHash(tid, p))
	pos := word<<6 | bit
	if f.counts[pos] == 0 {
		return nil
	}
	if f.counts[pos]--; f.counts[pos] > 0 {
		return nil
	}
	delete(f.counts, pos)
	f.words[word] &^= 1 << bit
	return f.write(word)
}

func (f *prefilter) write(word uint32) error {
	v := f.words[word]
	if v == 0 {
		delete(f.words, word)
	}
	if err := f.m.Update(word, v, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("update addr_prefilter: %w", err)
	}
	return nil
}

// rewriteAll writes the whole prefilter (adopting pinned maps).
func (f *prefilter) rewriteAll() error {
	n := f.m.MaxEntries()
	const chunk = 1 << 14
	for start := uint32(0); start < n; start += chunk {
		keys := make([]uint32, 0, chunk)
		vals := make([]uint64, 0, chunk)
		for k := start; k < min(start+chunk, n); k++ {
			keys = append(keys, k)
			vals = append(vals, f.words[k])
		}
		if _, err := f.m.BatchUpdate(keys, vals, nil); err != nil {
			return fmt.Errorf("update addr_prefilter: %w", err)
		}
	}
	return nil
}
