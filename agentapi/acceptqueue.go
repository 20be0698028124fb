package agentapi

import (
	"encoding/binary"
	"time"

	"github.com/vishvananda/netns"
)

// Accept queues: the connections whose handshake a listener completed and
// that its application has not accepted yet (sock_diag reports their number
// as a listening socket's idiag_rqueue). A healthy server accepts within
// microseconds; connections waiting by the dozen mean it has no worker or
// slot left to take them: a slowloris holding every slot, or an overload.
// This shows long before the queue overflows (with the default somaxconn of
// 4096, a slowloris of a few hundred connections never makes it overflow),
// and long before its connections are old enough to call slow. Listing the
// listeners alone costs little at every scrape: a node has a few, however
// many connections it holds.

// acceptQueues is what a listing of the listeners shows: the most
// connections waiting on one of them, and how many have a full queue (as
// many waiting as their backlog allows: the next completed handshake is
// dropped, or answered with a cookie).
type acceptQueues struct {
	Longest int
	Full    int
}

// settled is the smaller of two listings: what waited through both.
func (a acceptQueues) settled(b acceptQueues) acceptQueues {
	return acceptQueues{Longest: min(a.Longest, b.Longest), Full: min(a.Full, b.Full)}
}

// A scrape that finds acceptQueueRecheckAt connections or more waiting, or
// a full queue, reads again acceptQueueSettle later and reports the
// smaller numbers.
const (
	acceptQueueRecheckAt = 8
	acceptQueueSettle    = 50 * time.Millisecond
)

// sizeofInetDiagMsg is struct inet_diag_msg (linux/inet_diag.h): family,
// state, timer, retrans, the 48-byte socket id, expires, rqueue, wqueue,
// uid, inode.
const sizeofInetDiagMsg = 72

// listenQueueLister returns a function listing the accept queues of the
// listeners of ns, IPv4 and IPv6.
func listenQueueLister(ns netns.NsHandle) func() (acceptQueues, error) {
	return func() (acceptQueues, error) {
		var out acceptQueues
		err := dumpTCP(ns, 1<<tcpListen, 0, func(m []byte) {
			waiting, limit, ok := acceptQueueOf(m)
			if !ok {
				return
			}
			out.Longest = max(out.Longest, waiting)
			if limit > 0 && waiting >= limit {
				out.Full++
			}
		})
		if err != nil {
			return acceptQueues{}, err
		}
		return out, nil
	}
}

// acceptQueueOf reads a listening socket's accept queue length and limit
// (idiag_rqueue, idiag_wqueue: its backlog, capped by somaxconn) from one
// inet_diag_msg; a short or non-listening message is skipped.
func acceptQueueOf(m []byte) (waiting, limit int, ok bool) {
	if len(m) < sizeofInetDiagMsg || m[1] != tcpListen {
		return 0, 0, false
	}
	return int(binary.NativeEndian.Uint32(m[56:60])), int(binary.NativeEndian.Uint32(m[60:64])), true
}
