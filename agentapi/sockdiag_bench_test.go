package agentapi

import (
	"net"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// BenchmarkSockDiagListing: the slow-connection listing on a node that
// answered 20,000 short requests (their sockets in TIME_WAIT) and holds
// 200 established connections, against netlink's SocketDiagTCPInfo, which
// asks for every state:
//
//	go test ./agentapi -run '^$' -bench SockDiagListing
func BenchmarkSockDiagListing(b *testing.B) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close() // the server closes first: its side waits in TIME_WAIT
		}
	}()
	for range 20000 {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		_, _ = c.Read(make([]byte, 1))
		c.Close()
	}
	l2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l2.Close()
	for range 200 {
		c, err := net.Dial("tcp", l2.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
	}
	b.Run("listed-states", func(b *testing.B) {
		list := sockDiagLister(netns.None())
		for b.Loop() {
			if _, err := list(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("netlink-all-states", func(b *testing.B) {
		for b.Loop() {
			for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
				if _, err := netlink.SocketDiagTCPInfo(fam); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
