package guard

import (
	"github.com/cilium/ebpf"

	"github.com/packetscope/packetscope/bpf"
)

// readIfaceStats sums the per-CPU iface_stats map, by ifindex.
func readIfaceStats(m *ebpf.Map) map[uint32]IfaceStats {
	out := map[uint32]IfaceStats{}
	var k uint32
	var per []bpf.GuardIfaceStats
	it := m.Iterate()
	for it.Next(&k, &per) {
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
	return out
}
