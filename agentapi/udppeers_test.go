package agentapi

import (
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/packetscope/packetscope/internal/testnet"
)

// TestUDPPeersListsConnectedSockets: a connected UDP socket's peer and
// local port are listed (a QUIC download's, say); an unconnected one is not.
func TestUDPPeersListsConnectedSockets(t *testing.T) {
	testnet.RequireRoot(t)
	conn, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4433})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	unconnected, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer unconnected.Close()
	peers, err := UDPPeersOf(netns.None())()
	if err != nil {
		t.Fatal(err)
	}
	want := UDPPeer{Remote: netip.MustParseAddrPort("127.0.0.1:4433"), LocalPort: uint16(conn.LocalAddr().(*net.UDPAddr).Port)}
	found := false
	for _, p := range peers {
		if p == want {
			found = true
		}
		if p.LocalPort == uint16(unconnected.LocalAddr().(*net.UDPAddr).Port) {
			t.Errorf("unconnected socket listed: %+v", p)
		}
	}
	if !found {
		t.Errorf("%+v not among %d peers: %+v", want, len(peers), peers)
	}
}
