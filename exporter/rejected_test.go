package exporter

import (
	"encoding/binary"
	"net"
	"net/netip"
	"syscall"
	"testing"

	"github.com/packetscope/packetscope/internal/testframe"
	"github.com/packetscope/packetscope/internal/testnet"
)

// TestTCPRejected: segments of no connection are counted per flag class
// (a FIN to a closed port and an ACK to a listener are answered with
// resets, flags that mean nothing to a listener are dropped as TCP_FLAGS);
// a connection's own FIN is not.
func TestTCPRejected(t *testing.T) {
	tb := newTestbed(t)
	l := listenTCP(t, tb.a, addrA+":6010")
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 16)
			_, _ = c.Read(buf) // until the client closes
			c.Close()
		}
	}()
	rejected := func(class string) float64 {
		return value(t, tb.reg, "packetscope_tcp_rejected_packets_total", labels("flags", class))
	}
	before := map[string]float64{}
	for _, c := range []string{"syn", "synack", "ack", "rst", "fin", "other"} {
		before[c] = rejected(c)
	}

	// A connection opened and closed by the client: its FIN belongs.
	mustDial(t, tb.b, "tcp", addrA+":6010").Close()

	const finFlags, ackFlags, pshFlags, synAckFlags = 0x11, 0x10, 0x08, 0x12
	sendTCP(t, tb.b, addrA, 40001, 6999, finFlags)    // closed port: reset
	sendTCP(t, tb.b, addrA, 40002, 6010, ackFlags)    // listener, ACK of nothing: reset
	sendTCP(t, tb.b, addrA, 40003, 6010, pshFlags)    // listener, PSH alone: TCP_FLAGS
	sendTCP(t, tb.b, addrA, 40004, 6999, synAckFlags) // an answer nobody asked for: reset
	for class, n := range map[string]float64{"fin": 1, "ack": 1, "other": 1, "synack": 1} {
		tb.atLeast(t, "packetscope_tcp_rejected_packets_total", labels("flags", class), before[class], n)
	}
	for class, want := range map[string]float64{"fin": 1, "syn": 0, "rst": 0} {
		if got := rejected(class) - before[class]; got != want {
			t.Errorf("rejected %s segments grew by %.0f, want %.0f", class, got, want)
		}
	}
}

// sendTCP sends one bare TCP segment (no payload) from ns to dst through a
// raw socket: the kernel writes the IP header, the checksum is ours.
func sendTCP(t *testing.T, ns *testnet.NS, dst string, sport, dport uint16, flags uint8) {
	t.Helper()
	seg := testframe.TCP(sport, dport, flags, 1024)
	binary.BigEndian.PutUint32(seg[4:], 1000) // sequence
	binary.BigEndian.PutUint32(seg[8:], 2000) // acknowledgment
	binary.BigEndian.PutUint16(seg[16:], tcpChecksum(netip.MustParseAddr(addrB), netip.MustParseAddr(dst), seg))
	err := ns.Do(func() error {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_TCP)
		if err != nil {
			return err
		}
		defer syscall.Close(fd)
		to := &syscall.SockaddrInet4{Addr: netip.MustParseAddr(dst).As4()}
		return syscall.Sendto(fd, seg, 0, to)
	})
	if err != nil {
		t.Fatalf("send a TCP segment from %s to %s: %v", ns.Name, net.JoinHostPort(dst, "0"), err)
	}
}

// tcpChecksum is the TCP checksum over the IPv4 pseudo-header and seg
// (whose checksum field is zero).
func tcpChecksum(src, dst netip.Addr, seg []byte) uint16 {
	s, d := src.As4(), dst.As4()
	var sum uint32
	for _, b := range [][]byte{s[:], d[:], {0, syscall.IPPROTO_TCP, byte(len(seg) >> 8), byte(len(seg))}, seg} {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
