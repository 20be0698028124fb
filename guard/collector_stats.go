package guard

import (
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/packetscope/packetscope/bpf"
)

// ifaceSlot is the iface_stats index of an ifindex (GUARD_IFACE_SLOTS).
func ifaceSlot(ifindex uint32) uint32 { return ifindex & (bpf.GuardIfaceSlots - 1) }

// readIfaceStats sums the per-CPU iface_stats array, by slot (ifaceSlot),
// leaving out slots that saw nothing. On an error it returns what it read.
func readIfaceStats(m *ebpf.Map) (map[uint32]IfaceStats, error) {
	out := map[uint32]IfaceStats{}
	var k uint32
	var per []bpf.GuardIfaceStats
	it := m.Iterate()
	for it.Next(&k, &per) {
		if isZeroStats(per) {
			continue
		}
		var sum IfaceStats
		for _, s := range per {
			for i := range sum.Actions {
				sum.Actions[i] += s.Actions[i]
			}
			for i := range sum.Protocols {
				sum.Protocols[i] += s.Protocols[i]
			}
			for i := range sum.TcpFlags {
				sum.TcpFlags[i] += s.TcpFlags[i]
			}
			sum.SamplesLost += s.SamplesLost
		}
		out[k] = sum
	}
	if err := it.Err(); err != nil {
		return out, fmt.Errorf("read iface_stats: %w", err)
	}
	return out, nil
}

func isZeroStats(per []bpf.GuardIfaceStats) bool {
	for _, s := range per {
		if s != (bpf.GuardIfaceStats{}) {
			return false
		}
	}
	return true
}
