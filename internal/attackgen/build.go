package attackgen

import (
	"net"
	"net/netip"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Frames are built with gopacket's layers, as a NIC would hand them to the
// XDP guard: Ethernet, IPv4 or IPv6, then TCP, UDP or ICMP with a zero
// payload of the real size. Large UDP datagrams are fragmented at the MTU
// the way a reflector's stack does it (first fragment with the UDP header,
// later ones with none), so whatever parses the frames meets real fragments.

const mtu = 1500

var (
	macSrc = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
	macDst = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
)

// builder serializes frames; snap > 0 cuts each frame to that many bytes
// (a header-only capture, as tcpdump -s writes), keeping the IP length.
type builder struct {
	snap int
	buf  gopacket.SerializeBuffer
}

func newBuilder(snap int) *builder { return &builder{snap: snap, buf: gopacket.NewSerializeBuffer()} }

func (b *builder) serialize(ls ...gopacket.SerializableLayer) []byte {
	if err := gopacket.SerializeLayers(b.buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		// Only a bug in this package (a layer combination gopacket cannot
		// write) gets here: the generator's callers are tests.
		panic("serialize frame: " + err.Error())
	}
	out := b.buf.Bytes()
	if b.snap > 0 && len(out) > b.snap {
		out = out[:b.snap]
	}
	return append([]byte(nil), out...)
}

// zeros backs every payload: its bytes are copied into the frame.
var zeros = make([]byte, 1<<16)

func payload(n int) gopacket.Payload { return gopacket.Payload(zeros[:n]) }

func eth(v6 bool) *layers.Ethernet {
	t := layers.EthernetTypeIPv4
	if v6 {
		t = layers.EthernetTypeIPv6
	}
	return &layers.Ethernet{SrcMAC: macSrc, DstMAC: macDst, EthernetType: t}
}

// ipHeader is what varies per packet in the IP header.
type ipHeader struct {
	src, dst netip.Addr
	ttl      uint8
	id       uint16
}

func (h ipHeader) v4(proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, IHL: 5, TTL: h.ttl, Id: h.id, Protocol: proto,
		SrcIP: h.src.AsSlice(), DstIP: h.dst.AsSlice()}
}

func (h ipHeader) v6(next layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: h.ttl, NextHeader: next, SrcIP: h.src.AsSlice(), DstIP: h.dst.AsSlice()}
}

// tcpSeg is one TCP segment's header fields; payload is its data length.
type tcpSeg struct {
	sport, dport uint16
	flags        uint8 // FIN 0x01 SYN 0x02 RST 0x04 PSH 0x08 ACK 0x10 URG 0x20 ECE 0x40 CWR 0x80
	window       uint16
	seq, ack     uint32
	options      int // bytes of options (multiple of 4): 12 for timestamps, 20 for a Linux SYN
	payload      int
}

func (b *builder) tcp(h ipHeader, s tcpSeg) []byte {
	t := &layers.TCP{SrcPort: layers.TCPPort(s.sport), DstPort: layers.TCPPort(s.dport), Seq: s.seq, Ack: s.ack, Window: s.window,
		FIN: s.flags&0x01 != 0, SYN: s.flags&0x02 != 0, RST: s.flags&0x04 != 0, PSH: s.flags&0x08 != 0,
		ACK: s.flags&0x10 != 0, URG: s.flags&0x20 != 0, ECE: s.flags&0x40 != 0, CWR: s.flags&0x80 != 0}
	if s.options > 0 {
		// NOPs: the length is what matters to a fingerprint, not the kinds.
		for range s.options {
			t.Options = append(t.Options, layers.TCPOption{OptionType: layers.TCPOptionKindNop, OptionLength: 1})
		}
	}
	pl := payload(s.payload)
	if h.src.Is6() {
		ip := h.v6(layers.IPProtocolTCP)
		_ = t.SetNetworkLayerForChecksum(ip)
		return b.serialize(eth(true), ip, t, pl)
	}
	ip := h.v4(layers.IPProtocolTCP)
	_ = t.SetNetworkLayerForChecksum(ip)
	return b.serialize(eth(false), ip, t, pl)
}

// udp returns the frames of one UDP datagram with payload bytes of data:
// one frame, or IPv4 fragments when it exceeds the MTU.
func (b *builder) udp(h ipHeader, sport, dport uint16, size int) [][]byte {
	u := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	pl := payload(size)
	if h.src.Is6() {
		ip := h.v6(layers.IPProtocolUDP)
		_ = u.SetNetworkLayerForChecksum(ip)
		return [][]byte{b.serialize(eth(true), ip, u, pl)}
	}
	ip := h.v4(layers.IPProtocolUDP)
	if 20+8+size <= mtu {
		_ = u.SetNetworkLayerForChecksum(ip)
		return [][]byte{b.serialize(eth(false), ip, u, pl)}
	}
	// Serialize the whole datagram once, then cut its bytes into fragments
	// of 1480 (a multiple of 8) as the sender's IP layer does.
	_ = u.SetNetworkLayerForChecksum(ip)
	dg := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(dg, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, u, pl); err != nil {
		panic("serialize datagram: " + err.Error())
	}
	data := dg.Bytes()
	const chunk = mtu - 20
	var out [][]byte
	for off := 0; off < len(data); off += chunk {
		end := min(off+chunk, len(data))
		fip := h.v4(layers.IPProtocolUDP)
		fip.FragOffset = uint16(off / 8)
		if end < len(data) {
			fip.Flags = layers.IPv4MoreFragments
		}
		out = append(out, b.serialize(eth(false), fip, gopacket.Payload(data[off:end])))
	}
	return out
}

// icmp returns an ICMP (v4) message of the given type and code; for errors
// (unreachable, time exceeded) the payload quotes an IP header and 8 bytes.
func (b *builder) icmp(h ipHeader, typ, code uint8, size int) []byte {
	ic := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code)}
	return b.serialize(eth(false), h.v4(layers.IPProtocolICMPv4), ic, payload(size))
}
