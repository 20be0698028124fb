package guard

import (
	"encoding/binary"
	"net/netip"
)

// frame describes a test frame; build turns it into bytes. The zero value
// of each field gives an ordinary untagged packet.
type frame struct {
	tags      []uint16 // VLAN TPIDs, outermost first (0x8100, 0x88a8)
	etherType uint16   // 0: from the address family
	src, dst  netip.Addr
	proto     uint8
	ttl       uint8
	ipv4Opts  int    // bytes of IPv4 options (multiple of 4)
	fragOff   uint16 // in 8-byte units
	moreFrags bool
	ipv6Ext   []uint8 // extension header types before L4 (44 = fragment)
	extLen    uint8   // hdr ext len byte of hop/routing/dst-opts/AH headers
	l4        []byte  // L4 header and payload
	lenDelta  int     // added to the length written in the IP header
	truncate  int     // when > 0, cut the frame to this many bytes
	version   uint8   // 0: from the family
}

func tcpHdr(sport, dport uint16, flags uint8, window uint16) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	b[12] = 5 << 4
	b[13] = flags
	binary.BigEndian.PutUint16(b[14:], window)
	return b
}

func udpHdr(sport, dport uint16, payload int) []byte {
	b := make([]byte, 8+payload)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(8+payload))
	return b
}

func icmpHdr(typ uint8) []byte { return []byte{typ, 0, 0, 0, 0, 1, 0, 1} }

func (f frame) build() []byte {
	b := []byte{0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1}
	et := f.etherType
	if et == 0 {
		et = etherTypeIPv4
		if f.src.Is6() {
			et = etherTypeIPv6
		}
	}
	for i, tpid := range f.tags {
		b = binary.BigEndian.AppendUint16(b, tpid)
		b = binary.BigEndian.AppendUint16(b, uint16(100+i))
	}
	b = binary.BigEndian.AppendUint16(b, et)
	switch {
	case f.src.Is4():
		b = append(b, f.ipv4()...)
	case f.src.Is6():
		b = append(b, f.ipv6()...)
	}
	if f.truncate > 0 && f.truncate < len(b) {
		b = b[:f.truncate]
	}
	return b
}

func (f frame) ipv4() []byte {
	ihl := 20 + f.ipv4Opts
	h := make([]byte, ihl)
	v := f.version
	if v == 0 {
		v = 4
	}
	h[0] = v<<4 | uint8(ihl/4)&0x0f
	binary.BigEndian.PutUint16(h[2:], uint16(ihl+len(f.l4)+f.lenDelta))
	ff := f.fragOff & 0x1fff
	if f.moreFrags {
		ff |= 0x2000
	}
	binary.BigEndian.PutUint16(h[6:], ff)
	h[8] = f.ttl
	h[9] = f.proto
	s, d := f.src.As4(), f.dst.As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	for i := 20; i < ihl; i++ {
		h[i] = 1 // NOP options
	}
	return append(h, f.l4...)
}

func (f frame) ipv6() []byte {
	h := make([]byte, 40)
	v := f.version
	if v == 0 {
		v = 6
	}
	h[0] = v << 4
	h[7] = f.ttl
	s, d := f.src.As16(), f.dst.As16()
	copy(h[8:], s[:])
	copy(h[24:], d[:])
	var ext []byte
	next := f.proto
	// Build the chain backwards so each header names the next.
	for i := len(f.ipv6Ext) - 1; i >= 0; i-- {
		t := f.ipv6Ext[i]
		var e []byte
		switch t {
		case nextFragment:
			e = make([]byte, 8)
			fo := f.fragOff << 3
			if f.moreFrags {
				fo |= 1
			}
			binary.BigEndian.PutUint16(e[2:], fo)
		case nextAH:
			e = make([]byte, (int(f.extLen)+2)*4)
			e[1] = f.extLen
		default:
			e = make([]byte, (int(f.extLen)+1)*8)
			e[1] = f.extLen
		}
		e[0] = next
		next = t
		ext = append(e, ext...)
	}
	h[6] = next
	binary.BigEndian.PutUint16(h[4:], uint16(len(ext)+len(f.l4)+f.lenDelta))
	h = append(h, ext...)
	return append(h, f.l4...)
}
