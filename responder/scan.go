package responder

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"

	"github.com/packetscope/packetscope/agentapi"
	"github.com/packetscope/packetscope/rule"
)

// Port scans. A scanner needs the node's answers (RST, SYN-ACK, ICMP port
// unreachable), so it sends from its real address, and the stack's
// reactions (agentapi.TrafficReport.Reactions) name it: the probes the
// kernel dropped with reason NO_SOCKET, one per closed port. A source that
// probed many distinct closed ports in the attack window is a scanner, and
// gets a rule of its own; probes spread over many sources (decoys, spoofed
// sources that never read the answers, a botnet) leave the scope's
// fingerprints to the miner.

// Scanner thresholds.
const (
	// minScanPorts is the distinct closed ports (per protocol and port) a
	// source must have probed in the attack window's reactions. The kernel
	// emits up to a few hundred reactions per CPU and second, so a scan
	// shows hundreds; a client retrying a closed port, or a stray late
	// datagram, shows one or two.
	minScanPorts = 20
	// maxServedShare: a source whose sampled packets are mostly (this share
	// or more) established connections the node serves is a client first,
	// whatever else it probed: it is never blocked.
	maxServedShare = 0.5
)

// Reactions the scan miner counts.
const reactionNoSocket = "NO_SOCKET"

// ScanSource is a source the reactions show probing closed ports.
type ScanSource struct {
	Addr      netip.Addr      `json:"src"`
	Ports     int             `json:"closed_ports"` // distinct protocol/port pairs
	Probes    int             `json:"probes"`       // reactions
	Protocols map[string]int  `json:"protocols"`    // probes per protocol
	ports     map[uint32]bool // protocol<<16 | port
	protos    map[uint8]int
}

// isProbe reports whether a reaction is a closed port's probe: a SYN without
// ACK or a UDP datagram dropped with NO_SOCKET (the kernel emits nothing else
// for that reason, but an agent is not trusted to).
func isProbe(s *rule.Sample) bool {
	p := &s.Packet
	if s.Reaction != reactionNoSocket || !p.HasPorts() {
		return false
	}
	return p.Protocol == rule.ProtoUDP || p.TCPFlags&(rule.FlagSYN|rule.FlagACK) == rule.FlagSYN
}

// ScanSources ranks the sources of the closed-port probes among reactions:
// most distinct ports first.
func ScanSources(reactions []rule.Sample) []ScanSource {
	by := map[netip.Addr]*ScanSource{}
	for i := range reactions {
		s := &reactions[i]
		if !isProbe(s) || !s.Packet.Src.IsValid() {
			continue
		}
		src := s.Packet.Src.Unmap()
		g := by[src]
		if g == nil {
			g = &ScanSource{Addr: src, ports: map[uint32]bool{}, protos: map[uint8]int{}}
			by[src] = g
		}
		g.Probes++
		g.ports[uint32(s.Packet.Protocol)<<16|uint32(s.Packet.DstPort)] = true
		g.protos[s.Packet.Protocol]++
	}
	out := make([]ScanSource, 0, len(by))
	for _, g := range by {
		g.Ports = len(g.ports)
		g.Protocols = map[string]int{}
		for p, n := range g.protos {
			g.Protocols[agentapi.FormatProtocol(uint32(p))] = n
		}
		out = append(out, *g)
	}
	slices.SortFunc(out, func(a, b ScanSource) int {
		return cmp.Or(cmp.Compare(b.Ports, a.Ports), a.Addr.Compare(b.Addr))
	})
	return out
}

// MineEvidence is MineAlert with the stack's reactions: for a port_scan
// alert, per-source rules for the scanners they show (MineScanners); for a
// reset_injection alert, rules for the RSTs the stack rejected
// (MineResets); when there are none (or for any other alert), MineAlert's
// candidates.
func MineEvidence(cfg MinerConfig, attackLabel string, attack, baseline []rule.Packet, reactions []rule.Sample, protected []netip.Prefix, peers ...agentapi.UDPPeer) []Candidate {
	switch attackLabel {
	case "port_scan":
		if cs := MineScanners(cfg, attack, baseline, reactions, protected, peers...); len(cs) > 0 {
			return cs
		}
	case AttackResetInjection:
		if cs := MineResets(cfg, attack, baseline, reactions, protected, peers...); len(cs) > 0 {
			return cs
		}
	}
	return MineAlert(cfg, attackLabel, attack, baseline, protected, peers...)
}

// MineScanners proposes a drop rule per scanner: a source with at least
// minScanPorts distinct closed ports among the reactions, when at most
// MaxSources sources are (more is a distributed scan: no per-source rules).
// The rule is the source's address (/32 or /128), with the protocol when the
// source sends only one. A source served established connections in the
// windows is a client too: mostly served, it is left alone; otherwise its
// rule is narrowed to what a scan sends and a client's connections do not
// (TCP SYNs without ACK to every port but those it is served on). Rules
// that match the served flows or too much of the baseline are not proposed.
func MineScanners(cfg MinerConfig, attack, baseline []rule.Packet, reactions []rule.Sample, protected []netip.Prefix, peers ...agentapi.UDPPeer) []Candidate {
	cfg = cfg.withDefaults()
	attack, baseline = ipOnly(attack), ipOnly(baseline)
	var scanners []ScanSource
	for _, s := range ScanSources(reactions) {
		if s.Ports < minScanPorts {
			break
		}
		if !isProtected(s.Addr, protected) {
			scanners = append(scanners, s)
		}
	}
	if len(scanners) == 0 || len(scanners) > min(cfg.MaxSources, cfg.MaxRules) {
		return nil
	}
	served := newServedFlows(peers, attack, baseline)
	var out []Candidate
	for _, s := range scanners {
		sent, servedPkts := 0, 0
		servedPorts := map[uint16]bool{}
		protos := map[uint8]bool{}
		for p := range s.protos {
			protos[p] = true
		}
		for _, w := range [][]rule.Packet{attack, baseline} {
			for i := range w {
				p := &w[i]
				if p.Src.Unmap() != s.Addr {
					continue
				}
				sent++
				if served.isServed(p) {
					servedPkts++
					servedPorts[p.DstPort] = true
				}
			}
		}
		for i := range attack {
			if attack[i].Src.Unmap() == s.Addr {
				protos[attack[i].Protocol] = true
			}
		}
		if sent > 0 && float64(servedPkts) >= maxServedShare*float64(sent) {
			continue // a client first
		}
		m := rule.Match{Src: netip.PrefixFrom(s.Addr, s.Addr.BitLen()).String()}
		if len(protos) == 1 {
			for p := range protos {
				m.Protocol = agentapi.FormatProtocol(uint32(p))
			}
		}
		reason := fmt.Sprintf("source %s probed %d distinct closed ports (%d probes the kernel dropped as NO_SOCKET)", s.Addr, s.Ports, s.Probes)
		if len(servedPorts) > 0 || !served.allows(m) {
			if len(protos) != 1 || !protos[rule.ProtoTCP] || len(servedPorts) >= rule.MaxPortItems {
				continue // no narrower rule leaves its connections alone
			}
			m.TCPFlags = "syn,!ack"
			m.DstPorts = portsExcept(servedPorts)
			reason += "; it is also served on " + strconv.Itoa(len(servedPorts)) + " port(s): only its SYNs to the others"
		}
		if !served.allows(m) {
			continue
		}
		c := candidateFor(m, reason, attack, baseline)
		if c.Collateral > cfg.MaxCollateral {
			continue
		}
		out = append(out, c)
	}
	return out
}

// portsExcept writes the ports other than those given as rule port ranges.
func portsExcept(except map[uint16]bool) []string {
	ps := make([]int, 0, len(except))
	for p := range except {
		ps = append(ps, int(p))
	}
	slices.Sort(ps)
	var out []string
	lo := 0
	for _, p := range ps {
		if p > lo {
			out = append(out, rangeString(lo, p-1))
		}
		lo = p + 1
	}
	if lo <= 65535 {
		out = append(out, rangeString(lo, 65535))
	}
	return out
}

func rangeString(lo, hi int) string {
	if lo == hi {
		return strconv.Itoa(lo)
	}
	return strconv.Itoa(lo) + "-" + strconv.Itoa(hi)
}
