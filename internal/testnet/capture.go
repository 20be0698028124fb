package testnet

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// RewriteCapture copies a pcap or pcapng capture of Ethernet frames to a
// classic pcap at out, readdressing every IPv4 packet for from to to and
// setting the MACs, with the IP, TCP and UDP checksums fixed. It returns the
// number of packets rewritten.
//
// tcprewrite (4.4.3, Debian 12) would do this, but it also rewrites the IPv4
// total length of padded frames (40 -> 46 for a 60-byte SYN), which changes
// the very fingerprints (length) the tests check.
func RewriteCapture(in, out string, from, to netip.Addr, dmac, smac net.HardwareAddr) (int, error) {
	data, err := os.ReadFile(in)
	if err != nil {
		return 0, err
	}
	var src interface {
		ReadPacketData() ([]byte, gopacket.CaptureInfo, error)
	}
	if len(data) >= 4 && binary.LittleEndian.Uint32(data) == 0x0a0d0d0a {
		r, err := pcapgo.NewNgReader(bytes.NewReader(data), pcapgo.DefaultNgReaderOptions)
		if err != nil {
			return 0, fmt.Errorf("read %s: %w", in, err)
		}
		src = r
	} else {
		r, err := pcapgo.NewReader(bytes.NewReader(data))
		if err != nil {
			return 0, fmt.Errorf("read %s: %w", in, err)
		}
		src = r
	}
	f, err := os.Create(out)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	bw := bufio.NewWriter(f)
	w := pcapgo.NewWriter(bw)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		return 0, err
	}
	n := 0
	for {
		frame, ci, err := src.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			return n, fmt.Errorf("read %s: %w", in, err)
		}
		frame = append([]byte(nil), frame...)
		if rewriteFrame(frame, from, to, dmac, smac) {
			n++
		}
		ci.CaptureLength = len(frame)
		if err := w.WritePacket(ci, frame); err != nil {
			return n, err
		}
	}
	if err := bw.Flush(); err != nil {
		return n, err
	}
	return n, f.Close()
}

// rewriteFrame readdresses one untagged Ethernet/IPv4 frame in place.
func rewriteFrame(f []byte, from, to netip.Addr, dmac, smac net.HardwareAddr) bool {
	if len(f) < 34 || binary.BigEndian.Uint16(f[12:]) != 0x0800 {
		return false
	}
	copy(f[0:6], dmac)
	copy(f[6:12], smac)
	ip := f[14:]
	ihl := int(ip[0]&0x0f) * 4
	if ihl < 20 || len(ip) < ihl || netip.AddrFrom4([4]byte(ip[16:20])) != from {
		return false
	}
	t := to.As4()
	copy(ip[16:20], t[:])
	binary.BigEndian.PutUint16(ip[10:], 0)
	binary.BigEndian.PutUint16(ip[10:], ^checksum(0, ip[:ihl]))
	total := int(binary.BigEndian.Uint16(ip[2:]))
	later := binary.BigEndian.Uint16(ip[6:])&0x1fff != 0
	if total > len(ip) || total < ihl || later {
		return true // a truncated or non-first fragment: no L4 checksum to fix
	}
	seg := ip[ihl:total]
	var at int
	switch {
	case ip[9] == 6 && len(seg) >= 20:
		at = 16
	case ip[9] == 17 && len(seg) >= 8:
		if binary.BigEndian.Uint16(seg[6:]) == 0 {
			return true // UDP without a checksum
		}
		at = 6
	default:
		return true
	}
	binary.BigEndian.PutUint16(seg[at:], 0)
	pseudo := make([]byte, 12)
	copy(pseudo, ip[12:20])
	pseudo[9] = ip[9]
	binary.BigEndian.PutUint16(pseudo[10:], uint16(len(seg)))
	sum := ^checksum(uint32(checksum(0, pseudo)), seg)
	if ip[9] == 17 && sum == 0 {
		sum = 0xffff
	}
	binary.BigEndian.PutUint16(seg[at:], sum)
	return true
}

// checksum adds b to a ones'-complement sum.
func checksum(sum uint32, b []byte) uint16 {
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
