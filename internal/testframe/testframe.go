// Package testframe builds Ethernet frames for tests: VLAN tags, IPv4 options,
// fragments, IPv6 extension headers, truncations and lying length fields, so the
// Go parser and the XDP guard can be fed the same bytes.
package testframe

import (
	"encoding/binary"
	"net/netip"
)

// Wire constants (the parser under test keeps its own copies on purpose: a
// shared constant would hide a shared mistake).
const (
	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd
	nextHopByHop  = 0
	nextRouting   = 43
	nextFragment  = 44
	nextAH        = 51
	nextDestOpts  = 60
)

// VLAN tag protocol identifiers for Frame.Tags.
const (
	VLAN = 0x8100 // 802.1Q
	QinQ = 0x88a8 // 802.1ad
)

// Frame describes a test frame; Build turns it into bytes. The zero value
// of each field gives an ordinary untagged packet.
type Frame struct {
	Tags      []uint16 // VLAN TPIDs, outermost first (0x8100, 0x88a8)
	EtherType uint16   // 0: from the address family
	Src, Dst  netip.Addr
	Proto     uint8
	TTL       uint8
	IPv4Opts  int    // bytes of IPv4 options (multiple of 4)
	FragOff   uint16 // in 8-byte units
	MoreFrags bool
	IPv6Ext   []uint8 // extension header types before L4 (44 = fragment)
	ExtLen    uint8   // hdr ext len byte of hop/routing/dst-opts/AH headers
	L4        []byte  // L4 header and payload
	LenDelta  int     // added to the length written in the IP header
	Truncate  int     // when > 0, cut the frame to this many bytes
	Version   uint8   // 0: from the family
}

// TCP is a 20-byte TCP header.
func TCP(sport, dport uint16, flags uint8, window uint16) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	b[12] = 5 << 4
	b[13] = flags
	binary.BigEndian.PutUint16(b[14:], window)
	return b
}

// UDP is a UDP header and payload bytes.
func UDP(sport, dport uint16, payload int) []byte {
	b := make([]byte, 8+payload)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(8+payload))
	return b
}

// ICMP is an 8-byte ICMP header of a type.
func ICMP(typ uint8) []byte { return []byte{typ, 0, 0, 0, 0, 1, 0, 1} }

// Build returns the frame's bytes.
func (f Frame) Build() []byte {
	b := []byte{0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1}
	et := f.EtherType
	if et == 0 {
		et = etherTypeIPv4
		if f.Src.Is6() {
			et = etherTypeIPv6
		}
	}
	for i, tpid := range f.Tags {
		b = binary.BigEndian.AppendUint16(b, tpid)
		b = binary.BigEndian.AppendUint16(b, uint16(100+i))
	}
	b = binary.BigEndian.AppendUint16(b, et)
	switch {
	case f.Src.Is4():
		b = append(b, f.ipv4()...)
	case f.Src.Is6():
		b = append(b, f.ipv6()...)
	}
	if f.Truncate > 0 && f.Truncate < len(b) {
		b = b[:f.Truncate]
	}
	return b
}

func (f Frame) ipv4() []byte {
	ihl := 20 + f.IPv4Opts
	h := make([]byte, ihl)
	v := f.Version
	if v == 0 {
		v = 4
	}
	h[0] = v<<4 | uint8(ihl/4)&0x0f
	binary.BigEndian.PutUint16(h[2:], uint16(ihl+len(f.L4)+f.LenDelta))
	ff := f.FragOff & 0x1fff
	if f.MoreFrags {
		ff |= 0x2000
	}
	binary.BigEndian.PutUint16(h[6:], ff)
	h[8] = f.TTL
	h[9] = f.Proto
	s, d := f.Src.As4(), f.Dst.As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	for i := 20; i < ihl; i++ {
		h[i] = 1 // NOP options
	}
	return append(h, f.L4...)
}

func (f Frame) ipv6() []byte {
	h := make([]byte, 40)
	v := f.Version
	if v == 0 {
		v = 6
	}
	h[0] = v << 4
	h[7] = f.TTL
	s, d := f.Src.As16(), f.Dst.As16()
	copy(h[8:], s[:])
	copy(h[24:], d[:])
	var ext []byte
	next := f.Proto
	// Build the chain backwards so each header names the next.
	for i := len(f.IPv6Ext) - 1; i >= 0; i-- {
		t := f.IPv6Ext[i]
		var e []byte
		switch t {
		case nextFragment:
			e = make([]byte, 8)
			fo := f.FragOff << 3
			if f.MoreFrags {
				fo |= 1
			}
			binary.BigEndian.PutUint16(e[2:], fo)
		case nextAH:
			e = make([]byte, (int(f.ExtLen)+2)*4)
			e[1] = f.ExtLen
		default:
			e = make([]byte, (int(f.ExtLen)+1)*8)
			e[1] = f.ExtLen
		}
		e[0] = next
		next = t
		ext = append(e, ext...)
	}
	h[6] = next
	binary.BigEndian.PutUint16(h[4:], uint16(len(ext)+len(f.L4)+f.LenDelta))
	h = append(h, ext...)
	return append(h, f.L4...)
}
