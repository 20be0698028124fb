package exporter

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/packetscope/packetscope/bpf"
)

// TCP states as the kernel numbers them (include/net/tcp_states.h), with
// the label each gets. TIME_WAIT, CLOSE and NEW_SYN_RECV are not reported:
// time-wait and request sockets are mini sockets that never pass through
// inet_sock_set_state, and CLOSE is where sockets end, not a connection.
var tcpStateLabels = map[int]string{
	1:  "established",
	2:  "syn_sent",
	3:  "syn_recv",
	4:  "fin_wait1",
	5:  "fin_wait2",
	8:  "close_wait",
	9:  "last_ack",
	10: "listen",
	11: "closing",
}

// tcpSnapshot counts the TCP sockets per state in the namespace, from
// /proc/thread-self/net/tcp{,6} read by a thread inside it. SYN_RECV rows are
// skipped: they are request sockets, which are not followed afterwards.
func tcpSnapshot(ns *bpf.Netns) ([16]int64, error) {
	var out [16]int64
	err := ns.Do(func() error {
		for _, name := range []string{"tcp", "tcp6"} {
			data, err := os.ReadFile("/proc/thread-self/net/" + name)
			if err != nil {
				if os.IsNotExist(err) && name == "tcp6" {
					continue // IPv6 disabled
				}
				return fmt.Errorf("read /proc/net/%s: %w", name, err)
			}
			if err := countTCPStates(data, &out); err != nil {
				return fmt.Errorf("parse /proc/net/%s: %w", name, err)
			}
		}
		return nil
	})
	return out, err
}

// countTCPStates adds the state column ("st", hex) of a /proc/net/tcp table.
func countTCPStates(data []byte, out *[16]int64) error {
	sc := bufio.NewScanner(bytes.NewReader(data))
	first := true
	for sc.Scan() {
		if first { // header
			first = false
			continue
		}
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 {
			continue
		}
		st, err := strconv.ParseUint(fields[3], 16, 8)
		if err != nil {
			return fmt.Errorf("state %q: %w", fields[3], err)
		}
		if st < 16 && st != 3 {
			out[st]++
		}
	}
	return sc.Err()
}
