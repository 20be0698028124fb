package agentapi

import (
	"net/netip"
	"strings"

	"github.com/packetscope/packetscope/rule"
)

// AlwaysProtected are prefixes no drop or rate_limit rule may cover on any
// node, whatever the configuration: loopback and link-local (IPv6 neighbor
// discovery and DHCP live there), in both families.
var AlwaysProtected = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("fe80::/10"),
}

// CheckLastGate is the agent's own policy check on a rule it is asked to
// install, whoever asks (an operator, the responder, a script with the
// token). The rule is already schema-valid (rule.ParseRule). It returns a
// *rule.FieldError naming the field and why, or nil.
//
// Monitor rules pass: they count would-drop packets and pass them all, so
// they cannot cut the node off. A drop or rate_limit rule is refused when
//
//   - its match has no narrowing field (rule.Matcher.Narrowing): it would
//     drop everything arriving at the node (of one family or protocol at
//     most), and the guard sees only what arrives at the node;
//   - its src or dst prefix overlaps a protected prefix: one of protected
//     (the node's own addresses and gateways, and the --guard.never-block
//     CIDRs), or AlwaysProtected. A src covering a protected address would
//     cut off the node's own traffic or its gateway's; a dst covering the
//     node's own address adds nothing a rule needs (everything the guard
//     sees is on its way to or through the node: leave dst out) and over a
//     gateway, loopback, link-local or never-block CIDR it cuts off what
//     the operator said must stay reachable. An overlap in either direction
//     counts: 10.0.0.0/8 covers the node's 10.0.0.5, and 10.0.0.5/32 is
//     inside a never-block 10.0.0.0/8.
func CheckLastGate(r rule.Rule, protected []netip.Prefix) error {
	if r.Action == rule.ActionMonitor {
		return nil
	}
	m, err := r.Match.Compile()
	if err != nil {
		return err
	}
	all := protectedForms(append(append([]netip.Prefix{}, AlwaysProtected...), protected...))
	for _, f := range []struct {
		name string
		p    netip.Prefix
	}{{"match.src", m.Src}, {"match.dst", m.Dst}} {
		if !f.p.IsValid() {
			continue
		}
		for _, q := range all {
			if f.p.Overlaps(q) {
				return rule.FieldErrorf(f.name, "%s covers protected %s (the node's own addresses, gateways, loopback, link-local and --guard.never-block CIDRs are never blocked)", f.p, q)
			}
		}
	}
	if len(m.Narrowing()) == 0 {
		return rule.FieldErrorf("match", "a %s rule needs at least one narrowing field (%s); this one would %s every packet that reaches the node",
			r.Action, strings.Join(narrowingFields, ", "), verb(r.Action))
	}
	return nil
}

// narrowingFields lists the match fields, for the refusal message.
var narrowingFields = []string{"src", "dst", "protocol", "src_ports", "dst_ports", "tcp_flags", "icmp_type", "ttl", "length", "tcp_window", "fragment"}

func verb(a rule.Action) string {
	if a == rule.ActionRateLimit {
		return "rate-limit"
	}
	return "drop"
}

// protectedForms masks every prefix and writes an IPv4-mapped IPv6 one as
// IPv4: rules cannot hold mapped prefixes (the schema refuses them), so a
// protected address must be in the family a rule uses to meet it.
func protectedForms(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		p = p.Masked()
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p)
	}
	return out
}
