// Package rstinject crafts TCP RSTs aimed at an established IPv4 or IPv6
// connection, from a raw socket: the reset injection the tests attack their
// own namespaces with. Where the receiver's next expected sequence number
// comes from is the caller's business (NextSeq reads it off the peer's own
// socket, which is what an on-path observer of the handshake knows).
package rstinject

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Target is one direction of a connection: the RSTs claim to come from Src
// and go to Dst, whose socket expects RcvNxt next.
type Target struct {
	Src, Dst netip.AddrPort
	RcvNxt   uint32
}

// Shape is what the crafted packets carry besides the 4-tuple: a tool's
// fingerprint.
type Shape struct {
	TTL    uint8
	Window uint16
	Flags  uint8 // TCP flags; 0 is a bare RST (tests of other flags set them)
}

// Frame builds an IPv4 or IPv6 packet (by the target's addresses): a TCP
// segment with s's flags (a RST unless said otherwise; no options, no
// payload) and sequence seq. On IPv6, TTL is the hop limit.
func Frame(t Target, seq uint32, s Shape) ([]byte, error) {
	src, dst := t.Src.Addr().Unmap(), t.Dst.Addr().Unmap()
	var b, tcp []byte
	var pseudo uint32 // the pseudo-header's sum: addresses, protocol, TCP length
	switch {
	case src.Is4() && dst.Is4():
		b = make([]byte, 20+20)
		b[0] = 0x45
		binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
		binary.BigEndian.PutUint16(b[4:], uint16(rand.Uint32()))
		b[8] = s.TTL
		b[9] = syscall.IPPROTO_TCP
		copy(b[12:16], src.AsSlice())
		copy(b[16:20], dst.AsSlice())
		binary.BigEndian.PutUint16(b[10:], checksum(b[:20], 0))
		tcp = b[20:]
		pseudo = sum16(b[12:20], 0)
	case src.Is6() && dst.Is6():
		b = make([]byte, 40+20)
		b[0] = 0x60
		binary.BigEndian.PutUint16(b[4:], 20) // payload length
		b[6] = syscall.IPPROTO_TCP
		b[7] = s.TTL
		copy(b[8:24], src.AsSlice())
		copy(b[24:40], dst.AsSlice())
		tcp = b[40:]
		pseudo = sum16(b[8:40], 0)
	default:
		return nil, fmt.Errorf("rstinject: %s to %s: one address family for both", src, dst)
	}
	binary.BigEndian.PutUint16(tcp[0:], t.Src.Port())
	binary.BigEndian.PutUint16(tcp[2:], t.Dst.Port())
	binary.BigEndian.PutUint32(tcp[4:], seq)
	tcp[12] = 5 << 4
	tcp[13] = cmp.Or(s.Flags, 0x04) // RST unless said otherwise
	binary.BigEndian.PutUint16(tcp[14:], s.Window)
	pseudo += syscall.IPPROTO_TCP + 20
	binary.BigEndian.PutUint16(tcp[16:], checksum(tcp, pseudo))
	return b, nil
}

// sum16 adds b's 16-bit words to sum (one's complement, not folded).
func sum16(b []byte, sum uint32) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	return sum
}

func checksum(b []byte, sum uint32) uint16 {
	sum = sum16(b, sum)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// Injector sends crafted packets from raw sockets of the network namespace
// of the thread that opened it.
type Injector struct {
	fd4, fd6 int // -1 where the family could not be opened
	err6     error
}

// Open opens the raw sockets (CAP_NET_RAW), IPv4 and, where the namespace
// has it, IPv6 (IPPROTO_RAW: the header is ours on both). The kernel routes
// what they send by destination and sends the source address as written:
// spoofed.
func Open() (*Injector, error) {
	fd4, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return nil, fmt.Errorf("open raw socket: %w", err)
	}
	i := &Injector{fd4: fd4, fd6: -1}
	if i.fd6, err = unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW); err != nil {
		i.fd6, i.err6 = -1, fmt.Errorf("open IPv6 raw socket: %w", err)
	}
	return i, nil
}

// Close closes the sockets.
func (i *Injector) Close() error {
	if i.fd6 >= 0 {
		unix.Close(i.fd6)
	}
	return unix.Close(i.fd4)
}

// Send sends one crafted segment (a RST unless s says otherwise) with sequence seq.
func (i *Injector) Send(t Target, seq uint32, s Shape) error {
	b, err := Frame(t, seq, s)
	if err != nil {
		return err
	}
	fd, dst := i.fd4, t.Dst.Addr().Unmap()
	var to unix.Sockaddr
	if dst.Is4() {
		to = &unix.SockaddrInet4{Addr: dst.As4()}
	} else {
		if i.fd6 < 0 {
			return i.err6
		}
		fd, to = i.fd6, &unix.SockaddrInet6{Addr: dst.As16()}
	}
	if err := unix.Sendto(fd, b, 0, to); err != nil {
		return fmt.Errorf("send rst: %w", err)
	}
	return nil
}

// InWindowSpan is how far past RcvNxt the in-window RSTs land: inside any
// receive window Linux opens (ten segments at least), never at RcvNxt
// itself, which would reset the connection.
const InWindowSpan = 8192

// Blind sends RSTs at pps until ctx ends, round robin over targets: a
// share inWindow of them in the window (RcvNxt+1 .. RcvNxt+InWindowSpan-1:
// challenged) and the rest half the sequence space away (out of the
// window), as a sweep guessing the window would. None is exactly at
// RcvNxt. It returns the RSTs sent.
func (i *Injector) Blind(ctx context.Context, targets []Target, s Shape, pps int, inWindow float64) (int, error) {
	tick := time.NewTicker(time.Second / time.Duration(max(pps, 1)))
	defer tick.Stop()
	for n := 0; ; n++ {
		t := targets[n%len(targets)]
		seq := t.RcvNxt + 1<<31 + rand.Uint32N(1<<30)
		if rand.Float64() < inWindow {
			seq = t.RcvNxt + 1 + rand.Uint32N(InWindowSpan-1)
		}
		if err := i.Send(t, seq, s); err != nil {
			return n, err
		}
		select {
		case <-ctx.Done():
			return n + 1, nil
		case <-tick.C:
		}
	}
}

// TargetOf is the target of RSTs that claim to come from c's end of its
// connection: to its peer, whose receive window begins where c sends next
// (NextSeq).
func TargetOf(c *net.TCPConn) (Target, error) {
	seq, err := NextSeq(c)
	if err != nil {
		return Target{}, err
	}
	return Target{Src: c.LocalAddr().(*net.TCPAddr).AddrPort(), Dst: c.RemoteAddr().(*net.TCPAddr).AddrPort(), RcvNxt: seq}, nil
}

// tcpSendQueue is the kernel's TCP_SEND_QUEUE (include/uapi/linux/tcp.h),
// which x/sys/unix does not name.
const tcpSendQueue = 2

// NextSeq reads the sequence number a connected TCP socket sends next
// (TCP_QUEUE_SEQ of its send queue, in repair mode): while it sends
// nothing, its peer's rcv_nxt. Repair mode is left without a window probe.
func NextSeq(c *net.TCPConn) (uint32, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var seq int
	var serr error
	err = raw.Control(func(fd uintptr) {
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_ON); serr != nil {
			return
		}
		defer func() {
			if err := unix.SetsockoptInt(int(fd), unix.SOL_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_OFF_NO_WP); err != nil && serr == nil {
				serr = err
			}
		}()
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_TCP, unix.TCP_REPAIR_QUEUE, tcpSendQueue); serr != nil {
			return
		}
		seq, serr = unix.GetsockoptInt(int(fd), unix.SOL_TCP, unix.TCP_QUEUE_SEQ)
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return 0, fmt.Errorf("read send sequence: %w", err)
	}
	return uint32(seq), nil
}
