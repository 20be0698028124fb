package rule

import (
	"encoding/binary"
	"net/netip"
)

// EtherTypes and IPv6 extension headers the parser knows.
const (
	etherTypeIPv4  = 0x0800
	etherTypeIPv6  = 0x86dd
	etherTypeVLAN  = 0x8100 // 802.1Q
	etherTypeQinQ  = 0x88a8 // 802.1ad
	maxVLANTags    = 2
	ethHeaderLen   = 14
	vlanTagLen     = 4
	ipv4MinHdrLen  = 20
	ipv6HdrLen     = 40
	ipv6FragHdrLen = 8

	nextHopByHop = 0
	nextRouting  = 43
	nextFragment = 44
	nextAH       = 51
	nextDestOpts = 60
)

// ParseFrame parses an Ethernet frame the way the XDP guard does (see Packet
// for the rules). It never reads past the frame; a frame it cannot read as IP
// gives Family 0.
func ParseFrame(frame []byte) Packet {
	var p Packet
	if len(frame) < ethHeaderLen {
		return p
	}
	off := ethHeaderLen
	etherType := binary.BigEndian.Uint16(frame[12:14])
	for i := 0; i < maxVLANTags && (etherType == etherTypeVLAN || etherType == etherTypeQinQ); i++ {
		if len(frame) < off+vlanTagLen {
			return p
		}
		etherType = binary.BigEndian.Uint16(frame[off+2 : off+4])
		off += vlanTagLen
	}
	var l4 int
	switch etherType {
	case etherTypeIPv4:
		l4 = parseIPv4(frame, off, &p)
	case etherTypeIPv6:
		l4 = parseIPv6(frame, off, &p)
	default:
		return p
	}
	if p.Family == 0 || l4 < 0 || p.Fragment == FragLater {
		return p
	}
	parseL4(frame[l4:], &p)
	return p
}

// parseIPv4 fills the IPv4 fields and returns the L4 offset, or -1 when the
// header does not fit (p.Family stays 0).
func parseIPv4(frame []byte, off int, p *Packet) int {
	if len(frame) < off+ipv4MinHdrLen {
		return -1
	}
	h := frame[off:]
	ihl := int(h[0]&0x0f) * 4
	if h[0]>>4 != 4 || ihl < ipv4MinHdrLen || len(h) < ihl {
		return -1
	}
	p.Family = 4
	p.Length = binary.BigEndian.Uint16(h[2:4])
	fragField := binary.BigEndian.Uint16(h[6:8])
	switch {
	case fragField&0x1fff != 0:
		p.Fragment = FragLater
	case fragField&0x2000 != 0:
		p.Fragment = FragFirst
	}
	p.TTL = h[8]
	p.Protocol = h[9]
	p.Src = netip.AddrFrom4([4]byte(h[12:16]))
	p.Dst = netip.AddrFrom4([4]byte(h[16:20]))
	return off + ihl
}

// parseIPv6 fills the IPv6 fields, walking up to MaxIPv6ExtHeaders extension
// headers, and returns the L4 offset, or -1 when there is no L4 header to
// read: the chain is too long or truncated (Protocol is then the last
// next-header read), or the IPv6 header itself does not fit (Family 0).
func parseIPv6(frame []byte, off int, p *Packet) int {
	if len(frame) < off+ipv6HdrLen || frame[off]>>4 != 6 {
		return -1
	}
	h := frame[off:]
	p.Family = 6
	p.Length = binary.BigEndian.Uint16(h[4:6]) + ipv6HdrLen
	p.TTL = h[7]
	p.Src = netip.AddrFrom16([16]byte(h[8:24]))
	p.Dst = netip.AddrFrom16([16]byte(h[24:40]))
	next := h[6]
	off += ipv6HdrLen
	for i := 0; i < MaxIPv6ExtHeaders; i++ {
		var hdrLen int
		switch next {
		case nextHopByHop, nextRouting, nextDestOpts:
			if len(frame) < off+2 {
				p.Protocol = next
				return -1
			}
			hdrLen = (int(frame[off+1]) + 1) * 8
		case nextAH:
			if len(frame) < off+2 {
				p.Protocol = next
				return -1
			}
			hdrLen = (int(frame[off+1]) + 2) * 4
		case nextFragment:
			hdrLen = ipv6FragHdrLen
		default:
			p.Protocol = next
			return off
		}
		// An extension header counts only when all of it is in the frame.
		if len(frame) < off+hdrLen {
			p.Protocol = next
			return -1
		}
		if next == nextFragment {
			fo := binary.BigEndian.Uint16(frame[off+2 : off+4])
			if fo&0xfff8 != 0 {
				// A later fragment's payload is data, not headers: stop here.
				p.Fragment = FragLater
				p.Protocol = frame[off]
				return -1
			}
			p.Fragment = FragFirst
		}
		next = frame[off]
		off += hdrLen
	}
	p.Protocol = next
	if isExtHeader(next) {
		return -1
	}
	return off
}

func isExtHeader(n uint8) bool {
	switch n {
	case nextHopByHop, nextRouting, nextFragment, nextAH, nextDestOpts:
		return true
	}
	return false
}

// parseL4 fills the L4 fields when the protocol's header is within b.
func parseL4(b []byte, p *Packet) {
	switch p.Protocol {
	case ProtoTCP:
		if len(b) < 20 {
			return
		}
		p.SrcPort = binary.BigEndian.Uint16(b[0:2])
		p.DstPort = binary.BigEndian.Uint16(b[2:4])
		p.TCPFlags = b[13]
		p.TCPWindow = binary.BigEndian.Uint16(b[14:16])
	case ProtoUDP:
		if len(b) < 8 {
			return
		}
		p.SrcPort = binary.BigEndian.Uint16(b[0:2])
		p.DstPort = binary.BigEndian.Uint16(b[2:4])
	case ProtoICMP, ProtoICMPv6:
		if len(b) < 4 {
			return
		}
		p.ICMPType = b[0]
	default:
		return
	}
	p.HasL4 = true
}
