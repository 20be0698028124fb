package rule

import (
	"slices"
)

// Narrowing returns the match fields (as the rule JSON names them, in the
// contract's order) that exclude part of their own field's domain. A field is
// absent when it is unset or when its value covers every value the field can
// take: src or dst of length 0 (0.0.0.0/0, ::/0), ttl 0-255, length 0-65535,
// tcp_window 0-65535, ports whose ranges together cover 0-65535. protocol
// counts only when given, not when tcp_flags or tcp_window imply it.
//
// What a field implies about other fields (an IPv4 prefix selects IPv4, a
// tcp_window selects TCP) is not counted: a rule with no narrowing field
// matches everything of a family or protocol, which is what the last-gate
// and breadth checks must see. fragment "any" narrows: it matches fragments
// only, first or later (see FragmentAny).
func (m *Matcher) Narrowing() []string {
	var out []string
	add := func(field string, narrows bool) {
		if narrows {
			out = append(out, field)
		}
	}
	add("src", m.Src.IsValid() && m.Src.Bits() > 0)
	add("dst", m.Dst.IsValid() && m.Dst.Bits() > 0)
	add("protocol", m.ProtocolGiven && m.Protocol >= 0)
	add("src_ports", m.SrcPorts != nil && !coversAllPorts(m.SrcPorts))
	add("dst_ports", m.DstPorts != nil && !coversAllPorts(m.DstPorts))
	add("tcp_flags", m.FlagsSet|m.FlagsUnset != 0)
	add("icmp_type", m.NeedsICMPType)
	add("ttl", !m.TTL.covers(255))
	add("length", !m.Length.covers(65535))
	add("tcp_window", !m.TCPWindow.covers(65535))
	add("fragment", m.Fragment != "")
	return out
}

// covers reports whether the range holds every value 0..max (unset does).
func (r Range) covers(max uint32) bool { return !r.Set || r.Lo == 0 && r.Hi >= max }

// coversAllPorts reports whether the union of ranges is 0-65535.
func coversAllPorts(ranges []PortRange) bool {
	rs := slices.Clone(ranges)
	slices.SortFunc(rs, func(a, b PortRange) int { return int(a.Lo) - int(b.Lo) })
	next := 0 // lowest port not yet covered
	for _, r := range rs {
		if int(r.Lo) > next {
			return false
		}
		next = max(next, int(r.Hi)+1)
	}
	return next > 65535
}
