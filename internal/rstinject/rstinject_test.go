package rstinject

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// TestFrame: the RST's headers say what was asked, and both checksums
// verify (a receiver drops a bad one before TCP sees it).
func TestFrame(t *testing.T) {
	tg := Target{Src: netip.MustParseAddrPort("10.0.0.2:40001"), Dst: netip.MustParseAddrPort("10.0.0.1:80")}
	b, err := Frame(tg, 0xdeadbeef, Shape{TTL: 99, Window: 1234})
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 40 || b[0] != 0x45 || b[8] != 99 || b[9] != 6 || binary.BigEndian.Uint16(b[2:]) != 40 {
		t.Fatalf("IP header % x", b[:20])
	}
	if checksum(b[:20], 0) != 0 {
		t.Error("IP header checksum does not verify")
	}
	tcp := b[20:]
	if binary.BigEndian.Uint16(tcp[0:]) != 40001 || binary.BigEndian.Uint16(tcp[2:]) != 80 ||
		binary.BigEndian.Uint32(tcp[4:]) != 0xdeadbeef || tcp[13] != 0x04 || binary.BigEndian.Uint16(tcp[14:]) != 1234 {
		t.Fatalf("TCP header % x", tcp)
	}
	pseudo := uint32(10<<8|0) + 2 + uint32(10<<8|0) + 1 + 6 + 20 // 10.0.0.2, 10.0.0.1, protocol, length
	if checksum(tcp, pseudo) != 0 {
		t.Error("TCP checksum does not verify")
	}
	if _, err := Frame(Target{Src: netip.MustParseAddrPort("10.0.0.2:1"), Dst: netip.MustParseAddrPort("[fd00::1]:80")}, 1, Shape{}); err == nil {
		t.Error("IPv4 to IPv6: no error")
	}
}

// TestFrameIPv6: the same over IPv6, whose header has no checksum and
// whose TCP checksum covers the 128-bit addresses.
func TestFrameIPv6(t *testing.T) {
	tg := Target{Src: netip.MustParseAddrPort("[fd00::2]:40001"), Dst: netip.MustParseAddrPort("[fd00::1]:80")}
	b, err := Frame(tg, 0xdeadbeef, Shape{TTL: 99, Window: 1234, Flags: 0x11})
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 60 || b[0]>>4 != 6 || binary.BigEndian.Uint16(b[4:]) != 20 || b[6] != 6 || b[7] != 99 ||
		netip.AddrFrom16([16]byte(b[8:24])) != tg.Src.Addr() || netip.AddrFrom16([16]byte(b[24:40])) != tg.Dst.Addr() {
		t.Fatalf("IPv6 header % x", b[:40])
	}
	tcp := b[40:]
	if binary.BigEndian.Uint16(tcp[0:]) != 40001 || binary.BigEndian.Uint16(tcp[2:]) != 80 ||
		binary.BigEndian.Uint32(tcp[4:]) != 0xdeadbeef || tcp[13] != 0x11 || binary.BigEndian.Uint16(tcp[14:]) != 1234 {
		t.Fatalf("TCP header % x", tcp)
	}
	pseudo := uint32(0xfd00) + 2 + 0xfd00 + 1 + 6 + 20 // fd00::2, fd00::1, protocol, length
	if checksum(tcp, pseudo) != 0 {
		t.Error("TCP checksum does not verify")
	}
}
