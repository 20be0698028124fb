package rule

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Action is what a matching rule does to a packet.
type Action string

const (
	ActionDrop      Action = "drop"
	ActionRateLimit Action = "rate_limit"
	ActionMonitor   Action = "monitor" // counts would-drop packets, passes them
)

// Fragment selects packets by their fragmentation.
type Fragment string

const (
	FragmentAny   Fragment = "any"   // a fragment, first or later
	FragmentNone  Fragment = "none"  // not a fragment
	FragmentFirst Fragment = "first" // offset 0 with more-fragments set (IPv4) or a fragment header at offset 0 (IPv6)
	FragmentLater Fragment = "later" // offset > 0: carries no L4 header
)

// Limits every rule is checked against.
const (
	MinTTLSeconds = 1
	MaxTTLSeconds = 7 * 24 * 3600
	MaxPortItems  = 16 // entries in src_ports or dst_ports
	MaxRuleIDLen  = 64
	MaxReasonLen  = 512
)

// Rule is the contract's rule JSON (README.md, "Rules"), plus what the agent reports.
type Rule struct {
	ID         string `json:"id,omitempty"`
	Action     Action `json:"action"`
	RatePPS    uint32 `json:"rate_pps,omitempty"`
	Match      Match  `json:"match"`
	TTLSeconds int64  `json:"ttl_seconds"`
	Reason     string `json:"reason,omitempty"`
	Origin     string `json:"origin,omitempty"`

	// Set by the agent.
	CreatedAt time.Time `json:"created_at,omitzero"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	Packets   uint64    `json:"packets"`
	Bytes     uint64    `json:"bytes"`
}

// Match holds the contract's match fields as JSON strings. Compile turns it
// into a Matcher; every field is optional and all given fields must match.
type Match struct {
	Src       string   `json:"src,omitempty"`
	Dst       string   `json:"dst,omitempty"`
	Protocol  string   `json:"protocol,omitempty"`
	SrcPorts  []string `json:"src_ports,omitempty"`
	DstPorts  []string `json:"dst_ports,omitempty"`
	TCPFlags  string   `json:"tcp_flags,omitempty"`
	ICMPType  *int     `json:"icmp_type,omitempty"`
	TTL       string   `json:"ttl,omitempty"`
	Length    string   `json:"length,omitempty"`
	TCPWindow string   `json:"tcp_window,omitempty"`
	Fragment  Fragment `json:"fragment,omitempty"`
}

// FieldError says which rule field is invalid and why; the API turns it into
// a 400 with that text.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// FieldErrorf builds the error a caller gets for an invalid field: it names
// the field (as the rule JSON spells it) and why.
func FieldErrorf(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// ParseRule decodes one rule from JSON with UnmarshalStrict (no unknown,
// duplicate or case-folded keys, no trailing data), normalizes it (its
// reason loses control and format characters: Normalize), and validates it.
func ParseRule(data []byte) (Rule, error) {
	var r Rule
	if err := UnmarshalStrict(data, &r); err != nil {
		return Rule{}, err
	}
	r.Normalize()
	if err := r.Validate(); err != nil {
		return Rule{}, err
	}
	return r, nil
}

// Normalize cleans the rule's free text (CleanText) and writes an empty
// port list, which means any port, as an absent one, so that a rule reads
// back from its JSON as it was stored.
func (r *Rule) Normalize() {
	r.Reason = CleanText(r.Reason)
	if len(r.Match.SrcPorts) == 0 {
		r.Match.SrcPorts = nil
	}
	if len(r.Match.DstPorts) == 0 {
		r.Match.DstPorts = nil
	}
}

// Validate checks the rule's schema: every field well formed and in range.
// Policy (never-block lists, breadth limits, replay) is the responder's.
func (r *Rule) Validate() error {
	if len(r.ID) > MaxRuleIDLen {
		return FieldErrorf("id", "longer than %d characters", MaxRuleIDLen)
	}
	if !ValidID(r.ID) {
		return FieldErrorf("id", "may hold only ASCII letters, digits, '-', '_' and '.', and must start with a letter or digit")
	}
	switch r.Action {
	case ActionDrop, ActionMonitor:
		if r.RatePPS != 0 {
			return FieldErrorf("rate_pps", "only valid with action rate_limit")
		}
	case ActionRateLimit:
		if r.RatePPS == 0 {
			return FieldErrorf("rate_pps", "required and > 0 with action rate_limit")
		}
	case "":
		return FieldErrorf("action", "required: drop, rate_limit or monitor")
	default:
		return FieldErrorf("action", "%q is not one of drop, rate_limit, monitor", r.Action)
	}
	if r.TTLSeconds < MinTTLSeconds || r.TTLSeconds > MaxTTLSeconds {
		return FieldErrorf("ttl_seconds", "required, between %d and %d", MinTTLSeconds, MaxTTLSeconds)
	}
	if len(r.Reason) > MaxReasonLen {
		return FieldErrorf("reason", "longer than %d characters", MaxReasonLen)
	}
	switch r.Origin {
	case "", "manual", "builtin", "llm":
	default:
		return FieldErrorf("origin", "%q is not one of manual, builtin, llm", r.Origin)
	}
	_, err := r.Match.Compile()
	return err
}

// ValidID reports whether id is empty (the agent assigns one) or a safe rule
// id: ASCII letters, digits, '-', '_' and '.', starting with a letter or
// digit (so it is never a flag, a hidden file or a path step), at most
// MaxRuleIDLen long. Ids end up in URLs, logs, metric labels and pin names.
func ValidID(id string) bool {
	if len(id) > MaxRuleIDLen {
		return false
	}
	for i, c := range []byte(id) {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '-' && c != '_' && c != '.') {
			return false
		}
	}
	return true
}

// Matcher is a compiled Match: the Go reference semantics of the XDP guard.
type Matcher struct {
	Src, Dst      netip.Prefix // invalid = any
	Family        uint8        // 0 any, 4 or 6: implied by src/dst or protocol icmp/icmpv6
	Protocol      int          // -1 any
	ProtocolGiven bool         // match.protocol was given, not only implied by tcp_flags/tcp_window
	SrcPorts      []PortRange  // nil = any
	DstPorts      []PortRange  // nil = any
	FlagsSet      uint8        // TCP flags that must be set
	FlagsUnset    uint8        // TCP flags that must be clear
	ICMPType      int          // -1 any
	TTL           Range        // Any() = any
	Length        Range
	TCPWindow     Range
	Fragment      Fragment // "" = any
	NeedsTCP      bool     // tcp_flags or tcp_window given
	NeedsPorts    bool     // src_ports or dst_ports given
	NeedsICMPType bool
}

// PortRange is an inclusive range of ports.
type PortRange struct{ Lo, Hi uint16 }

// Range is an inclusive range of a header field; Lo > Hi never occurs.
type Range struct {
	Lo, Hi uint32
	Set    bool
}

// TCP flag bits as in the TCP header's 13th byte.
const (
	FlagFIN uint8 = 1 << iota
	FlagSYN
	FlagRST
	FlagPSH
	FlagACK
	FlagURG
	FlagECE
	FlagCWR
)

var tcpFlagNames = []struct {
	name string
	bit  uint8
}{
	{"fin", FlagFIN}, {"syn", FlagSYN}, {"rst", FlagRST}, {"psh", FlagPSH},
	{"ack", FlagACK}, {"urg", FlagURG}, {"ece", FlagECE}, {"cwr", FlagCWR},
}

// Protocol numbers used by the matcher.
const (
	ProtoICMP   = 1
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoICMPv6 = 58
)

// Compile validates m and returns its matcher.
func (m Match) Compile() (*Matcher, error) {
	c := &Matcher{Protocol: -1, ICMPType: -1}
	var err error
	if m.Src != "" {
		if c.Src, err = parsePrefix(m.Src); err != nil {
			return nil, FieldErrorf("match.src", "%v", err)
		}
		c.Family = familyOf(c.Src.Addr())
	}
	if m.Dst != "" {
		if c.Dst, err = parsePrefix(m.Dst); err != nil {
			return nil, FieldErrorf("match.dst", "%v", err)
		}
		f := familyOf(c.Dst.Addr())
		if c.Family != 0 && c.Family != f {
			return nil, FieldErrorf("match.dst", "address family differs from match.src")
		}
		c.Family = f
	}
	if m.Protocol != "" {
		if c.Protocol, err = parseProtocol(m.Protocol); err != nil {
			return nil, FieldErrorf("match.protocol", "%v", err)
		}
		c.ProtocolGiven = true
		switch c.Protocol {
		case ProtoICMP:
			if c.Family == 6 {
				return nil, FieldErrorf("match.protocol", "icmp is IPv4; use icmpv6 with IPv6 addresses")
			}
			c.Family = 4
		case ProtoICMPv6:
			if c.Family == 4 {
				return nil, FieldErrorf("match.protocol", "icmpv6 is IPv6; use icmp with IPv4 addresses")
			}
			c.Family = 6
		}
	}
	if len(m.SrcPorts) > 0 {
		if c.SrcPorts, err = parsePorts(m.SrcPorts); err != nil {
			return nil, FieldErrorf("match.src_ports", "%v", err)
		}
		c.NeedsPorts = true
	}
	if len(m.DstPorts) > 0 {
		if c.DstPorts, err = parsePorts(m.DstPorts); err != nil {
			return nil, FieldErrorf("match.dst_ports", "%v", err)
		}
		c.NeedsPorts = true
	}
	if c.NeedsPorts && c.Protocol >= 0 && c.Protocol != ProtoTCP && c.Protocol != ProtoUDP {
		return nil, FieldErrorf("match.protocol", "ports need protocol tcp or udp")
	}
	if m.TCPFlags != "" {
		if c.FlagsSet, c.FlagsUnset, err = parseTCPFlags(m.TCPFlags); err != nil {
			return nil, FieldErrorf("match.tcp_flags", "%v", err)
		}
		c.NeedsTCP = true
	}
	if m.TCPWindow != "" {
		if c.TCPWindow, err = parseRange(m.TCPWindow, 65535); err != nil {
			return nil, FieldErrorf("match.tcp_window", "%v", err)
		}
		c.NeedsTCP = true
	}
	if c.NeedsTCP {
		if c.Protocol >= 0 && c.Protocol != ProtoTCP {
			return nil, FieldErrorf("match.protocol", "tcp_flags and tcp_window need protocol tcp")
		}
		c.Protocol = ProtoTCP
	}
	if m.ICMPType != nil {
		if *m.ICMPType < 0 || *m.ICMPType > 255 {
			return nil, FieldErrorf("match.icmp_type", "must be 0-255")
		}
		if c.Protocol >= 0 && c.Protocol != ProtoICMP && c.Protocol != ProtoICMPv6 {
			return nil, FieldErrorf("match.icmp_type", "needs protocol icmp or icmpv6")
		}
		if c.NeedsPorts {
			return nil, FieldErrorf("match.icmp_type", "cannot be combined with ports")
		}
		c.ICMPType = *m.ICMPType
		c.NeedsICMPType = true
	}
	if m.TTL != "" {
		if c.TTL, err = parseRange(m.TTL, 255); err != nil {
			return nil, FieldErrorf("match.ttl", "%v", err)
		}
	}
	if m.Length != "" {
		if c.Length, err = parseRange(m.Length, 65535); err != nil {
			return nil, FieldErrorf("match.length", "%v", err)
		}
	}
	switch m.Fragment {
	case "", FragmentAny, FragmentNone, FragmentFirst:
	case FragmentLater:
		if c.NeedsPorts || c.NeedsTCP || c.NeedsICMPType {
			return nil, FieldErrorf("match.fragment", "later fragments carry no L4 header: drop ports, tcp_flags, tcp_window and icmp_type")
		}
	default:
		return nil, FieldErrorf("match.fragment", "%q is not one of any, none, first, later", m.Fragment)
	}
	c.Fragment = m.Fragment
	return c, nil
}

func familyOf(a netip.Addr) uint8 {
	if a.Is4() {
		return 4
	}
	return 6
}

func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR", s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR", s)
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("%q: write IPv4-mapped prefixes as IPv4", s)
	}
	if p.Addr().Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q: zones are not allowed", s)
	}
	return p.Masked(), nil
}

func parseProtocol(s string) (int, error) {
	switch strings.ToLower(s) {
	case "tcp":
		return ProtoTCP, nil
	case "udp":
		return ProtoUDP, nil
	case "icmp":
		return ProtoICMP, nil
	case "icmpv6", "ipv6-icmp":
		return ProtoICMPv6, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 255 {
		return 0, fmt.Errorf("%q is not tcp, udp, icmp, icmpv6 or 0-255", s)
	}
	return n, nil
}

func parsePorts(items []string) ([]PortRange, error) {
	if len(items) > MaxPortItems {
		return nil, fmt.Errorf("at most %d entries", MaxPortItems)
	}
	out := make([]PortRange, 0, len(items))
	for _, it := range items {
		r, err := parseRange(it, 65535)
		if err != nil {
			return nil, err
		}
		out = append(out, PortRange{uint16(r.Lo), uint16(r.Hi)})
	}
	return out, nil
}

// parseRange parses "N" or "A-B" with 0 <= A <= B <= max.
func parseRange(s string, max uint32) (Range, error) {
	lo, hi, isRange := strings.Cut(strings.TrimSpace(s), "-")
	if !isRange {
		hi = lo
	}
	a, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 32)
	b, err2 := strconv.ParseUint(strings.TrimSpace(hi), 10, 32)
	if err1 != nil || err2 != nil {
		return Range{}, fmt.Errorf("%q is not N or A-B", s)
	}
	if a > uint64(max) || b > uint64(max) {
		return Range{}, fmt.Errorf("%q is out of range 0-%d", s, max)
	}
	if a > b {
		return Range{}, fmt.Errorf("%q: start is above end", s)
	}
	return Range{Lo: uint32(a), Hi: uint32(b), Set: true}, nil
}

func parseTCPFlags(s string) (set, unset uint8, err error) {
	for _, tok := range strings.Split(s, ",") {
		tok = strings.ToLower(strings.TrimSpace(tok))
		neg := strings.HasPrefix(tok, "!")
		name := strings.TrimPrefix(tok, "!")
		var bit uint8
		for _, f := range tcpFlagNames {
			if f.name == name {
				bit = f.bit
			}
		}
		if bit == 0 {
			return 0, 0, fmt.Errorf("%q is not a TCP flag (fin, syn, rst, psh, ack, urg, ece, cwr; prefix ! for unset)", tok)
		}
		if neg {
			unset |= bit
		} else {
			set |= bit
		}
	}
	if set&unset != 0 {
		return 0, 0, fmt.Errorf("%q requires a flag both set and unset", s)
	}
	return set, unset, nil
}

// FormatTCPFlags writes flag bits in the tcp_flags syntax, e.g. "syn,ack".
func FormatTCPFlags(set, unset uint8) string {
	var parts []string
	for _, f := range tcpFlagNames {
		if set&f.bit != 0 {
			parts = append(parts, f.name)
		}
	}
	for _, f := range tcpFlagNames {
		if unset&f.bit != 0 {
			parts = append(parts, "!"+f.name)
		}
	}
	return strings.Join(parts, ",")
}
