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
	if _, err := Frame(Target{Src: netip.MustParseAddrPort("[fd00::2]:1"), Dst: netip.MustParseAddrPort("[fd00::1]:80")}, 1, Shape{}); err == nil {
		t.Error("IPv6: no error")
	}
}
