package agentapi

import (
	"encoding/binary"
	"fmt"

	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// sockDestroyer closes the connections it is given in the namespace ns
// with sock_diag's SOCK_DESTROY (the kernel's tcp_abort: the local end is
// gone, the peer gets a RST), IPv4 and IPv6 alike. Each request names the
// socket by its cookie as well as its addresses, so a connection that
// closed since the listing and whose 4-tuple came back is left alone
// (ESTALE). It returns how many it closed and the last error. netlink's
// own SocketDestroy handles IPv4 only, without the cookie.
func sockDestroyer(ns netns.NsHandle) func([]tcpConn) (int, error) {
	return func(conns []tcpConn) (int, error) {
		s, err := nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_INET_DIAG)
		if err != nil {
			return 0, fmt.Errorf("open sock_diag socket: %w", err)
		}
		defer s.Close()
		sockets := map[int]*nl.SocketHandle{unix.NETLINK_INET_DIAG: {Socket: s}}
		closed := 0
		var lastErr error
		for _, c := range conns {
			req := nl.NewNetlinkRequest(nl.SOCK_DESTROY, unix.NLM_F_ACK)
			req.Sockets = sockets
			req.AddData(destroyRequest{c})
			if _, err := req.Execute(unix.NETLINK_INET_DIAG, 0); err != nil {
				lastErr = fmt.Errorf("close %s-%s: %w", c.local, c.remote, err)
				continue
			}
			closed++
		}
		return closed, lastErr
	}
}

// destroyRequest is a struct inet_diag_req_v2 (linux/inet_diag.h) naming
// one TCP connection.
type destroyRequest struct{ c tcpConn }

const sizeofInetDiagReqV2 = 56

func (r destroyRequest) Len() int { return sizeofInetDiagReqV2 }

func (r destroyRequest) Serialize() []byte {
	b := make([]byte, sizeofInetDiagReqV2)
	b[0] = unix.AF_INET
	if r.c.local.Addr().Is6() {
		b[0] = unix.AF_INET6
	}
	b[1] = unix.IPPROTO_TCP
	binary.NativeEndian.PutUint32(b[4:], 1<<tcpEstablished|1<<tcpSynRecv) // idiag_states: a lookup of one socket ignores it
	binary.BigEndian.PutUint16(b[8:], r.c.local.Port())
	binary.BigEndian.PutUint16(b[10:], r.c.remote.Port())
	// Addresses in network order, an IPv4 one in the first 4 of 16 bytes.
	copy(b[12:28], r.c.local.Addr().AsSlice())
	copy(b[28:44], r.c.remote.Addr().AsSlice())
	binary.NativeEndian.PutUint32(b[44:], r.c.ifindex)
	binary.NativeEndian.PutUint32(b[48:], uint32(r.c.cookie))
	binary.NativeEndian.PutUint32(b[52:], uint32(r.c.cookie>>32))
	return b
}
