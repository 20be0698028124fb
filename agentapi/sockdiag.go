package agentapi

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The slow-connection listing asks sock_diag for the TCP sockets in the
// states it reads (listening, handshaking, established) and their
// tcp_info. netlink's SocketDiagTCPInfo asks for every state, and a node
// answering short requests holds tens of thousands of TIME_WAIT sockets:
// listing them all at each scrape took most of its time under the
// 10-minute ordinary run's load (134 ms a scrape on average). The kernel
// filters by state before it writes a message.

// listedStates are the TCP states the classifier reads.
const listedStates = 1<<tcpEstablished | 1<<tcpSynRecv | 1<<tcpListen

// inetDiagInfo is INET_DIAG_INFO (linux/inet_diag.h): the tcp_info
// attribute, and its bit in inet_diag_req_v2's idiag_ext.
const inetDiagInfo = 2

// Offsets in struct tcp_info (linux/tcp.h) of what the classifier reads.
const (
	tcpInfoLastDataRecv  = 52  // __u32 tcpi_last_data_recv, ms
	tcpInfoBytesAcked    = 120 // __u64 tcpi_bytes_acked
	tcpInfoBytesReceived = 128 // __u64 tcpi_bytes_received
	tcpInfoBytesSent     = 200 // __u64 tcpi_bytes_sent (Linux 4.19)
)

// sockDiagLister lists the TCP sockets of ns, IPv4 and IPv6, in the
// listedStates, with tcp_info.
func sockDiagLister(ns netns.NsHandle) func() ([]tcpConn, error) {
	return func() ([]tcpConn, error) {
		var out []tcpConn
		err := dumpTCP(ns, listedStates, 1<<(inetDiagInfo-1), func(m []byte) {
			if c, ok := tcpConnOf(m); ok {
				out = append(out, c)
			}
		})
		if err != nil {
			return nil, err
		}
		return out, nil
	}
}

// dumpTCP asks sock_diag in ns for the TCP sockets, IPv4 then IPv6, in
// states (a bitmask of 1<<state) with the ext attributes, and hands each
// inet_diag_msg to each.
func dumpTCP(ns netns.NsHandle, states uint32, ext uint8, each func(m []byte)) error {
	s, err := nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_INET_DIAG)
	if err != nil {
		return fmt.Errorf("open sock_diag socket: %w", err)
	}
	defer s.Close()
	sockets := map[int]*nl.SocketHandle{unix.NETLINK_INET_DIAG: {Socket: s}}
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		req := nl.NewNetlinkRequest(nl.SOCK_DIAG_BY_FAMILY, unix.NLM_F_DUMP)
		req.Sockets = sockets
		req.AddData(tcpDumpRequest{family: fam, states: states, ext: ext})
		msgs, err := req.Execute(unix.NETLINK_INET_DIAG, nl.SOCK_DIAG_BY_FAMILY)
		if err != nil {
			return fmt.Errorf("sock_diag tcp (family %d, states %#x): %w", fam, states, err)
		}
		for _, m := range msgs {
			each(m)
		}
	}
	return nil
}

// tcpConnOf reads one inet_diag_msg and its tcp_info attribute; a short
// message is skipped, a socket without tcp_info (a request socket) keeps
// zero counters.
func tcpConnOf(m []byte) (tcpConn, bool) {
	if len(m) < sizeofInetDiagMsg {
		return tcpConn{}, false
	}
	addr := func(b []byte) netip.Addr {
		if m[0] == unix.AF_INET {
			return netip.AddrFrom4([4]byte(b[:4]))
		}
		return netip.AddrFrom16([16]byte(b[:16])).Unmap()
	}
	c := tcpConn{
		state:   m[1],
		local:   netip.AddrPortFrom(addr(m[8:24]), binary.BigEndian.Uint16(m[4:6])),
		remote:  netip.AddrPortFrom(addr(m[24:40]), binary.BigEndian.Uint16(m[6:8])),
		ifindex: binary.NativeEndian.Uint32(m[40:44]),
		cookie:  uint64(binary.NativeEndian.Uint32(m[48:52]))<<32 | uint64(binary.NativeEndian.Uint32(m[44:48])),
		unread:  binary.NativeEndian.Uint32(m[56:60]),
	}
	for attrs := m[sizeofInetDiagMsg:]; len(attrs) >= unix.SizeofRtAttr; {
		n := int(binary.NativeEndian.Uint16(attrs[0:2]))
		if n < unix.SizeofRtAttr || n > len(attrs) {
			break
		}
		if binary.NativeEndian.Uint16(attrs[2:4]) == inetDiagInfo {
			ti := attrs[unix.SizeofRtAttr:n]
			u64 := func(off int) uint64 {
				if len(ti) < off+8 {
					return 0
				}
				return binary.NativeEndian.Uint64(ti[off:])
			}
			if len(ti) >= tcpInfoLastDataRecv+4 {
				c.lastDataRecv = time.Duration(binary.NativeEndian.Uint32(ti[tcpInfoLastDataRecv:])) * time.Millisecond
			}
			c.bytesReceived = u64(tcpInfoBytesReceived)
			c.bytesSent = max(u64(tcpInfoBytesSent), u64(tcpInfoBytesAcked))
		}
		attrs = attrs[min(len(attrs), (n+unix.RTA_ALIGNTO-1)&^(unix.RTA_ALIGNTO-1)):]
	}
	return c, true
}

// tcpDumpRequest is a struct inet_diag_req_v2 asking for every TCP socket
// of a family in states (a bitmask of 1<<state), with the ext attributes.
type tcpDumpRequest struct {
	family uint8
	states uint32
	ext    uint8
}

func (r tcpDumpRequest) Len() int { return sizeofInetDiagReqV2 }

func (r tcpDumpRequest) Serialize() []byte {
	b := make([]byte, sizeofInetDiagReqV2)
	b[0] = r.family
	b[1] = unix.IPPROTO_TCP
	b[2] = r.ext
	binary.NativeEndian.PutUint32(b[4:], r.states)
	return b
}
