package guard

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
)

// rewritePcap copies a classic Ethernet pcap, sending every IPv4 packet for
// from to to (checksums fixed) with the given MACs. tcprewrite 4.4.3 would do
// it, but it also rewrites the IPv4 total length of padded frames (40 -> 46
// for these 60-byte SYNs), which changes the very fingerprint under test.
func rewritePcap(in, out string, from, to netip.Addr, dmac, smac net.HardwareAddr) (int, error) {
	data, err := os.ReadFile(in)
	if err != nil {
		return 0, err
	}
	if len(data) < 24 {
		return 0, fmt.Errorf("%s: not a pcap file", in)
	}
	var bo binary.ByteOrder
	switch binary.LittleEndian.Uint32(data) {
	case 0xa1b2c3d4, 0xa1b23c4d:
		bo = binary.LittleEndian
	case 0xd4c3b2a1, 0x4d3cb2a1:
		bo = binary.BigEndian
	default:
		return 0, fmt.Errorf("%s: not a classic pcap file", in)
	}
	if bo.Uint32(data[20:]) != 1 {
		return 0, fmt.Errorf("%s: link type %d, want Ethernet", in, bo.Uint32(data[20:]))
	}
	buf := append([]byte(nil), data...)
	n := 0
	for off := 24; off+16 <= len(buf); {
		incl := int(bo.Uint32(buf[off+8:]))
		f := buf[off+16 : min(off+16+incl, len(buf))]
		off += 16 + incl
		if len(f) < 34 || binary.BigEndian.Uint16(f[12:]) != etherTypeIPv4 {
			continue
		}
		copy(f[0:6], dmac)
		copy(f[6:12], smac)
		ip := f[14:]
		ihl := int(ip[0]&0x0f) * 4
		if netip.AddrFrom4([4]byte(ip[16:20])) != from || len(ip) < ihl {
			continue
		}
		t := to.As4()
		copy(ip[16:20], t[:])
		binary.BigEndian.PutUint16(ip[10:], 0)
		binary.BigEndian.PutUint16(ip[10:], ^csum(0, ip[:ihl]))
		total := int(binary.BigEndian.Uint16(ip[2:]))
		if ip[9] == ProtoTCP && total <= len(ip) && total >= ihl+20 {
			seg := ip[ihl:total]
			binary.BigEndian.PutUint16(seg[16:], 0)
			pseudo := make([]byte, 12)
			copy(pseudo, ip[12:20])
			pseudo[9] = ProtoTCP
			binary.BigEndian.PutUint16(pseudo[10:], uint16(len(seg)))
			binary.BigEndian.PutUint16(seg[16:], ^csum(uint32(csum(0, pseudo)), seg))
		}
		n++
	}
	return n, os.WriteFile(out, buf, 0o600)
}

// csum adds b to a ones'-complement sum.
func csum(sum uint32, b []byte) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return uint16(sum)
}
