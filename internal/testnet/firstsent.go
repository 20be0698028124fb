package testnet

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// FirstSent watches a namespace for the first IPv4 packet it sends from now
// on: an attack's figures count from its first packet, not from the start of
// the process that sends it (nmap, slowhttptest and hping3 take tenths of a
// second to resolve, probe and open their sockets). The socket is a packet
// socket in ns, so it sees what leaves any interface there, before the
// victim's XDP guard could drop it. Stop it (or let the test's cleanup) once
// the attack has started.
type FirstSent struct {
	fd   int
	at   atomic.Int64 // unix nanoseconds of the first packet; 0 until then
	done chan struct{}
	once sync.Once
}

// WatchFirstSent opens the packet socket in ns and starts reading.
func WatchFirstSent(tb testing.TB, ns *NS) *FirstSent {
	tb.Helper()
	w := &FirstSent{fd: -1, done: make(chan struct{})}
	err := ns.Do(func() error {
		// ETH_P_ALL: a socket bound to one protocol is not shown what
		// the namespace sends, only what it receives.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		w.fd = fd
		return nil
	})
	if err != nil {
		tb.Fatalf("packet socket in %s: %v", ns.Name, err)
	}
	// A read timeout lets the reader see Stop without closing the fd under it.
	tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(w.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(w.fd)
		tb.Fatalf("packet socket timeout: %v", err)
	}
	stopped := make(chan struct{})
	go w.read(stopped)
	tb.Cleanup(func() { w.Stop(); <-stopped })
	return w
}

func (w *FirstSent) read(stopped chan<- struct{}) {
	defer close(stopped)
	defer unix.Close(w.fd)
	buf := make([]byte, 64)
	for {
		select {
		case <-w.done:
			return
		default:
		}
		_, from, err := unix.Recvfrom(w.fd, buf, 0)
		if err != nil {
			continue // the timeout, or a signal: look at done again
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING && ll.Protocol == htons(unix.ETH_P_IP) {
			w.at.Store(time.Now().UnixNano())
			return
		}
	}
}

// At is when the first packet left the namespace, and whether one has.
func (w *FirstSent) At() (time.Time, bool) {
	ns := w.at.Load()
	return time.Unix(0, ns), ns != 0
}

// Stop ends the watch; At keeps its answer.
func (w *FirstSent) Stop() { w.once.Do(func() { close(w.done) }) }

func htons(v uint16) uint16 { return v<<8 | v>>8 }
