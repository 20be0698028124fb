package agentapi

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// UDPPeer is a remote endpoint the node talks to over a connected UDP
// socket: a QUIC download, a resolver, a VoIP call. The node asked it, so
// what it sends to LocalPort is served traffic, not a reflection, however
// much of it arrives (the responder's served flows, responder/served.go).
// Unconnected sockets (a server's, or a client that uses sendto) name no
// peer and are not listed.
type UDPPeer struct {
	Remote    netip.AddrPort `json:"remote"`
	LocalPort uint16         `json:"local_port"`
}

// maxUDPPeers bounds a report: a node with more connected UDP sockets
// reports this many (the rest count as unknown, as before this list).
const maxUDPPeers = 4096

// UDPPeersOf returns a function listing the connected UDP sockets' peers in
// network namespace ns (netns.None(): the caller's own), for
// WindowConfig.UDPPeers.
func UDPPeersOf(ns netns.NsHandle) func() ([]UDPPeer, error) {
	return func() ([]UDPPeer, error) {
		h, err := netlink.NewHandleAt(ns, unix.NETLINK_INET_DIAG)
		if err != nil {
			return nil, fmt.Errorf("open sock_diag handle: %w", err)
		}
		defer h.Close()
		var out []UDPPeer
		for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
			socks, err := h.SocketDiagUDP(fam)
			if err != nil {
				return nil, fmt.Errorf("sock_diag udp (family %d): %w", fam, err)
			}
			for _, s := range socks {
				rip, ok := netip.AddrFromSlice(s.ID.Destination)
				if !ok || rip.Unmap().IsUnspecified() || s.ID.DestinationPort == 0 {
					continue // not connected
				}
				out = append(out, UDPPeer{Remote: netip.AddrPortFrom(rip.Unmap(), s.ID.DestinationPort), LocalPort: s.ID.SourcePort})
				if len(out) == maxUDPPeers {
					return out, nil
				}
			}
		}
		return out, nil
	}
}
