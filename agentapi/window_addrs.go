package agentapi

import (
	"cmp"
	"encoding/binary"
	"net/netip"
	"slices"
)

// addrKeys collects the addresses of a report's packets to count them by
// sorting: IPv4 as 4-byte words, IPv6 as two 8-byte ones, invalid ones as a
// count. A spoofed flood fills a report with as many sources as samples
// (200,000): as map keys, its sources and their prefixes took ~30 MB per
// report, and a responder pulls two at once; as IPv4 words they take 0.8 MB,
// and each source's /24 or /48 is a run of the same sorted slice.
type addrKeys struct {
	v4      []uint32
	v6      []addr6Key
	invalid uint64
}

type addr6Key struct{ hi, lo uint64 }

func newAddrKeys(n int) addrKeys { return addrKeys{v4: make([]uint32, 0, n)} }

func (k *addrKeys) add(a netip.Addr) {
	switch {
	case a.Is4():
		b := a.As4()
		k.v4 = append(k.v4, binary.BigEndian.Uint32(b[:]))
	case a.Is6():
		b := a.As16()
		k.v6 = append(k.v6, addr6Key{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])})
	default:
		k.invalid++
	}
}

func addr4(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

func addr6(k addr6Key) netip.Addr {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], k.hi)
	binary.BigEndian.PutUint64(b[8:], k.lo)
	return netip.AddrFrom16(b)
}

func compare6(a, b addr6Key) int {
	if c := cmp.Compare(a.hi, b.hi); c != 0 {
		return c
	}
	return cmp.Compare(a.lo, b.lo)
}

// Source prefixes a report aggregates to: /24 for IPv4, /48 for IPv6.
const (
	prefixBits4 = 24
	prefixBits6 = 48
	mask4       = ^uint32(1<<(32-prefixBits4) - 1)
	mask6hi     = ^uint64(1<<(64-prefixBits6) - 1)
)

// runs calls f with each distinct value of sorted keys under key (a mask
// that keeps the order) and how many times it occurs.
func runs[T any, K comparable](sorted []T, key func(T) K, f func(K, uint64)) {
	for i := 0; i < len(sorted); {
		k := key(sorted[i])
		j := i + 1
		for j < len(sorted) && key(sorted[j]) == k {
			j++
		}
		f(k, uint64(j-i))
		i = j
	}
}

// top sorts the keys and returns the k most frequent addresses and, when
// withPrefixes, the k most frequent /24 or /48 prefixes among them (an
// invalid address counts as an address, and has no prefix).
func (keys *addrKeys) top(k int, withPrefixes bool) (addrs, prefixes []ValueCount) {
	slices.Sort(keys.v4)
	slices.SortFunc(keys.v6, compare6)
	ta := newTopK(k, netip.Addr.Compare)
	if keys.invalid > 0 {
		ta.offer(netip.Addr{}, keys.invalid)
	}
	same4 := func(v uint32) uint32 { return v }
	same6 := func(v addr6Key) addr6Key { return v }
	runs(keys.v4, same4, func(v uint32, n uint64) { ta.offer(addr4(v), n) })
	runs(keys.v6, same6, func(v addr6Key, n uint64) { ta.offer(addr6(v), n) })
	tp := newTopK(k, comparePrefix)
	if withPrefixes {
		runs(keys.v4, func(v uint32) uint32 { return v & mask4 }, func(v uint32, n uint64) {
			tp.offer(netip.PrefixFrom(addr4(v), prefixBits4), n)
		})
		runs(keys.v6, func(v addr6Key) addr6Key { return addr6Key{v.hi & mask6hi, 0} }, func(v addr6Key, n uint64) {
			tp.offer(netip.PrefixFrom(addr6(v), prefixBits6), n)
		})
	}
	return ta.values(netip.Addr.String), tp.values(netip.Prefix.String)
}
