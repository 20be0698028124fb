package responder

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
	"unicode"

	"github.com/packetscope/packetscope/agentapi"
	"github.com/packetscope/packetscope/rule"
)

// Guardrails are the checks every proposed rule passes before it reaches an
// agent, whoever proposed it. They are policy on top of rule.Rule.Validate
// (the schema).
type Guardrails struct {
	NeverBlock     []netip.Prefix // configured CIDRs; loopback and link-local are always added
	MinPrefixLenV4 int            // shortest source/destination prefix allowed (breadth)
	MinPrefixLenV6 int
	MinRuleTTL     time.Duration
	MaxRuleTTL     time.Duration
	MaxRules       int     // responder rules active on one agent
	MinCoverage    float64 // share of the attack window a rule must match
	MaxCollateral  float64 // share of the baseline a rule may match
	// MinBaseline is the baseline size (samples) below which collateral is
	// not measurable: a rule is then installed as monitor only.
	MinBaseline int
	// MaxSourceShare is the share of the baseline a rule's source prefix may
	// send (any packet, not only those the rule matches): a flood that
	// spoofs a real talker (a resolver, the gateway's peer) must not get it
	// blocked because its ordinary traffic is a small share.
	MaxSourceShare float64
}

// DefaultGuardrails are the limits used where Config leaves a field zero.
var DefaultGuardrails = Guardrails{
	MinPrefixLenV4: 16,
	MinPrefixLenV6: 32,
	MinRuleTTL:     30 * time.Second,
	MaxRuleTTL:     24 * time.Hour,
	MaxRules:       64,
	MinCoverage:    0.005,
	MaxCollateral:  0.01,
	MinBaseline:    50, // ~5 s of a light service's traffic at 1-in-16 sampling; an agent restarted mid-flood has ~0
	MaxSourceShare: 0.001,
}

// alwaysProtected are never blocked whatever the configuration says.
var alwaysProtected = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("::ffff:127.0.0.0/104"),
}

// Validation is the verdict on one proposed rule, as the audit trail shows it.
type Validation struct {
	Rule       rule.Rule `json:"rule"`
	Accepted   bool      `json:"accepted"`
	Reason     string    `json:"reason,omitempty"` // why it was rejected
	Notes      []string  `json:"notes,omitempty"`  // adjustments made (TTL clamped, action set by mode)
	Coverage   float64   `json:"coverage"`
	Collateral float64   `json:"collateral"`
	Replay     Replay    `json:"replay"`
	// Unmeasured: the baseline was too small to measure collateral, so the
	// rule was accepted as monitor only (a later decision with a baseline
	// may promote it).
	Unmeasured bool `json:"unmeasured,omitempty"`
}

// CheckInput is what the guardrails judge a proposal against.
type CheckInput struct {
	Attack, Baseline []rule.Packet
	Protected        []netip.Prefix // the node's addresses and gateways (from the agent)
	ActiveRules      int            // responder rules already active on the agent
	Mode             Mode           // ModeEnforce or ModeMonitor
	RuleTTL          time.Duration  // the lifetime to give a rule that asks for none, and the most any rule gets
	Origin           string         // builtin or llm: set on every rule, whatever it claims
	// SampleEvery and BaselineSeconds turn baseline sample counts into
	// packet rates (a rule overlapping served traffic is rate-limited at
	// the served flows' rate); zero: rates unknown, such rules are refused.
	SampleEvery     uint32
	BaselineSeconds float64
	// UDPPeers are the node's connected UDP sockets' peers: their packets
	// are served traffic (served.go).
	UDPPeers []agentapi.UDPPeer
	// SlowSources are the sources the agent reports holding slow
	// connections, set only for a slow_connections alert, and SlowTotal
	// the node's slow connections: a rule on one of these sources may cut
	// its established connections (slow.go).
	SlowSources map[netip.Addr]agentapi.SlowSource
	SlowTotal   int
	// Unserved are sources the agent lists holding slow connections and
	// no answered one, under any alert (slow.go's unservedSources): the
	// flows the windows show of them are no served client's.
	Unserved map[netip.Addr]bool
}

// Check judges each proposed rule and returns one Validation per rule, in
// order. A rule is adjusted before it is judged: origin and action are the
// responder's (monitor mode forces monitor), the reason is sanitized, the TTL
// clamped to bounds; then schema, never-block, breadth, emptiness, the rule
// cap and the replay decide.
func (g Guardrails) Check(in CheckInput, proposed []rule.Rule) []Validation {
	protected := normalizePrefixes(append(append(append([]netip.Prefix{}, alwaysProtected...), g.NeverBlock...), in.Protected...))
	accepted := 0
	out := make([]Validation, 0, len(proposed))
	for _, r := range proposed {
		v := Validation{}
		r, v.Notes = g.adjust(in, r)
		v.Rule = r
		if reason := g.judge(in, r, protected); reason != "" {
			v.Reason = reason
		} else if m, err := r.Match.Compile(); err != nil {
			v.Reason = "schema: " + err.Error()
		} else {
			v.Replay = replayMatchers([]*rule.Matcher{m}, in.Attack, in.Baseline)
			v.Coverage, v.Collateral = v.Replay.Coverage, v.Replay.Collateral
			measurable := v.Replay.BaselineTotal >= max(g.MinBaseline, 1)
			servedReason, servedRate := servedVerdict(m, in)
			// A rule rate-limited for the served flows is judged on the
			// rest of the baseline: the served flows keep their rate.
			collateral, judged := v.Collateral, in.Baseline
			if servedRate > 0 {
				judged = in.servedFlows().without(in.Baseline)
				collateral = replayMatchers([]*rule.Matcher{m}, nil, judged).Collateral
			}
			openers, openersMatched, openersTotal := openerCollateral(m, judged)
			// A source holding slow connections: its connections are the
			// attack, measured in connections, not packets (slow.go).
			slowSrc, slow := in.slowSource(m)
			if slow {
				servedReason, servedRate = "", 0
				v.Coverage = slowCoverage(slowSrc, in)
				v.Notes = append(v.Notes, fmt.Sprintf("source %s holds %d slow connections (%.0f%% of the node's): its established connections are the attack; coverage is that share",
					slowSrc.Src, slowSrc.Slow, 100*v.Coverage))
			}
			switch {
			case hitsProtected(m, in.Baseline, protected):
				v.Reason = "matches baseline packets from a protected address"
			case servedReason != "":
				v.Reason = servedReason
			case v.Coverage < g.MinCoverage:
				v.Reason = fmt.Sprintf("coverage %.4f of the attack window is below %.4f", v.Coverage, g.MinCoverage)
			case !slow && v.Replay.BaselineTotal > 0 && collateral > g.MaxCollateral:
				v.Reason = fmt.Sprintf("collateral %.4f of the baseline is above %.4f", collateral, g.MaxCollateral)
			case !slow && openers > g.MaxCollateral:
				v.Reason = fmt.Sprintf("collateral %.4f of the baseline's new connections is above %.4f: it matches %d of its %d TCP SYNs",
					openers, g.MaxCollateral, openersMatched, openersTotal)
			case !slow && measurable && sourceShare(m, in.Baseline) > g.MaxSourceShare:
				v.Reason = fmt.Sprintf("source %s sends %.4f of the baseline (above %.4f): a flood spoofing it must not cut it off",
					m.Src, sourceShare(m, in.Baseline), g.MaxSourceShare)
			case in.ActiveRules+accepted >= g.MaxRules:
				v.Reason = fmt.Sprintf("rule cap reached: %d responder rules active", in.ActiveRules+accepted)
			default:
				v.Accepted = true
				accepted++
				if v.Rule.Action == rule.ActionDrop && matchesPathMTUErrors(m) {
					v.Notes = append(v.Notes, fmt.Sprintf("matches ICMP errors path MTU discovery needs (fragmentation needed, packet too big) from more than one host: installed as rate_limit at %d pps", pathMTURatePPS))
					v.Rule.Action, v.Rule.RatePPS = rule.ActionRateLimit, pathMTURatePPS
				}
				if servedRate > 0 && v.Rule.Action != rule.ActionMonitor && (v.Rule.Action == rule.ActionDrop || v.Rule.RatePPS < servedRate) {
					v.Notes = append(v.Notes, fmt.Sprintf("overlaps connections the node serves: %s installed as rate_limit at %d pps (%.0f x their baseline rate)",
						v.Rule.Action, servedRate, servedRateHeadroom))
					v.Rule.Action, v.Rule.RatePPS = rule.ActionRateLimit, servedRate
				}
				if slow {
					slowAccept(&v, slowSrc, v.Replay.BaselineTotal > 0 && v.Collateral > g.MaxCollateral)
				}
				if !measurable {
					// What cannot be measured is not trusted (after an agent
					// restart, say): counted, not enforced.
					v.Unmeasured = true
					if v.Rule.Action != rule.ActionMonitor {
						v.Notes = append(v.Notes, fmt.Sprintf("baseline of %d samples (fewer than %d): collateral not measurable; %s installed as monitor",
							v.Replay.BaselineTotal, g.MinBaseline, v.Rule.Action))
						v.Rule.Action, v.Rule.RatePPS = rule.ActionMonitor, 0
					}
				}
			}
		}
		out = append(out, v)
	}
	return out
}

func (g Guardrails) adjust(in CheckInput, r rule.Rule) (rule.Rule, []string) {
	var notes []string
	r.Origin = in.Origin
	r.Reason = SanitizeText(r.Reason, rule.MaxReasonLen)
	r.CreatedAt, r.ExpiresAt, r.Packets, r.Bytes = time.Time{}, time.Time{}, 0, 0
	if in.Mode == ModeMonitor {
		if r.Action != rule.ActionMonitor {
			notes = append(notes, fmt.Sprintf("mode monitor: action %q installed as monitor", r.Action))
		}
		r.Action, r.RatePPS = rule.ActionMonitor, 0
	}
	if r.Action == "" {
		r.Action = rule.ActionDrop
	}
	ttl := time.Duration(r.TTLSeconds) * time.Second
	if ttl <= 0 {
		ttl = in.RuleTTL
	}
	if ttl < g.MinRuleTTL {
		notes = append(notes, fmt.Sprintf("ttl raised to %s", g.MinRuleTTL))
		ttl = g.MinRuleTTL
	}
	// No analyst outlasts the responder's own rule TTL: a model asking for
	// a day gets --responder.rule-ttl, and repeats extend it while the
	// alert fires.
	maxTTL := g.MaxRuleTTL
	if in.RuleTTL > 0 && in.RuleTTL < maxTTL {
		maxTTL = in.RuleTTL
	}
	if ttl > maxTTL {
		notes = append(notes, fmt.Sprintf("ttl lowered to %s", maxTTL))
		ttl = maxTTL
	}
	r.TTLSeconds = int64(ttl / time.Second)
	return r, notes
}

// judge returns why r must not be installed, or "" for the replay to decide.
func (g Guardrails) judge(in CheckInput, r rule.Rule, protected []netip.Prefix) string {
	if err := r.Validate(); err != nil {
		return "schema: " + err.Error()
	}
	if matchIsEmpty(r.Match) {
		return "match is empty: it would match every packet"
	}
	for _, f := range []struct{ name, val string }{{"src", r.Match.Src}, {"dst", r.Match.Dst}} {
		if f.val == "" {
			continue
		}
		p, err := parsePrefixLoose(f.val)
		if err != nil {
			return fmt.Sprintf("%s: %v", f.name, err)
		}
		if p.Bits() == 0 {
			return fmt.Sprintf("%s %s matches every address", f.name, p)
		}
		lim := g.MinPrefixLenV4
		if p.Addr().Is6() {
			lim = g.MinPrefixLenV6
		}
		if p.Bits() < lim {
			return fmt.Sprintf("%s %s is broader than /%d", f.name, p, lim)
		}
		for _, q := range protected {
			if p.Overlaps(q) {
				return fmt.Sprintf("%s %s covers protected %s", f.name, p, q)
			}
		}
	}
	if m, err := r.Match.Compile(); err == nil && len(m.Narrowing()) == 0 {
		return "match has no narrowing field: whole-domain ranges match every packet"
	}
	if r.Action == rule.ActionRateLimit && r.RatePPS == 0 {
		return "rate_limit needs rate_pps"
	}
	return ""
}

// pathMTURatePPS is the rate at which ICMP errors that path MTU discovery
// needs still pass a rule that would drop them: a router's "fragmentation
// needed" or "packet too big" is rare (routers rate-limit their ICMP, about
// one a second per destination on Linux, and the node caches the path MTU),
// and without it connections through a smaller MTU hang (Linux does not
// probe by default). A flood of ICMP errors (reflectors' unreachables) is
// cut to this rate instead of to 0. At 500 pps the ICMP vector of an
// amplification at 20 kpps (7-20 % of its packets) kept 2.5-4 % of the
// attack flowing.
const pathMTURatePPS = 100

// matchesPathMTUErrors reports whether m can match ICMPv4 destination
// unreachable (type 3, code 4 among them: the match has no code) or ICMPv6
// packet too big (type 2) from more than one host. TTL, length and
// destination do not count: routers send these from any distance, at
// lengths that depend on the packet they answer.
func matchesPathMTUErrors(m *rule.Matcher) bool {
	if m.Src.IsValid() && m.Src.IsSingleIP() || m.Fragment == rule.FragmentLater {
		return false
	}
	// A rule on any protocol is about its sources or a header shape, not
	// about ICMP: its breadth and collateral are judged elsewhere.
	v4 := m.Protocol == rule.ProtoICMP && (m.ICMPType < 0 || m.ICMPType == 3)
	v6 := m.Protocol == rule.ProtoICMPv6 && (m.ICMPType < 0 || m.ICMPType == 2)
	return v4 || v6
}

func matchIsEmpty(m rule.Match) bool {
	return m.Src == "" && m.Dst == "" && m.Protocol == "" && len(m.SrcPorts) == 0 && len(m.DstPorts) == 0 &&
		m.TCPFlags == "" && m.ICMPType == nil && m.TTL == "" && m.Length == "" && m.TCPWindow == "" && m.Fragment == ""
}

// sourceShare is the share of the baseline sent from m's source prefix, in
// any packet; 0 for a rule without a source.
func sourceShare(m *rule.Matcher, baseline []rule.Packet) float64 {
	if !m.Src.IsValid() || len(baseline) == 0 {
		return 0
	}
	n := 0
	for i := range baseline {
		if m.Src.Contains(baseline[i].Src) {
			n++
		}
	}
	return float64(n) / float64(len(baseline))
}

// normalizePrefixes writes IPv4-mapped IPv6 prefixes as IPv4, so overlap
// tests see them in the family packets and rules use.
func normalizePrefixes(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
		}
		out = append(out, p.Masked())
	}
	return out
}

// hitsProtected reports whether m matches any baseline packet sent by a
// protected address (the node itself, its gateway): it would cut them off.
// Only the baseline counts: in the attack window a spoofed flood claims
// random sources, loopback and the gateway among them, and those packets
// are the attack's, not the gateway's.
func hitsProtected(m *rule.Matcher, baseline []rule.Packet, protected []netip.Prefix) bool {
	for i := range baseline {
		if isProtected(baseline[i].Src, protected) && m.Matches(&baseline[i]) {
			return true
		}
	}
	return false
}

func parsePrefixLoose(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return p.Masked(), nil
}

// SanitizeText makes untrusted text (a model's answer, alert annotations,
// anything that reaches the agent or the audit trail) one bounded line of
// printable characters.
func SanitizeText(s string, maxLen int) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n' || r == '\r' || r == '\t':
			b.WriteByte(' ')
		case unicode.IsPrint(r):
			b.WriteRune(r)
		}
		if b.Len() >= 4*maxLen {
			break
		}
	}
	out := strings.Join(strings.Fields(b.String()), " ")
	if len(out) > maxLen {
		out = strings.ToValidUTF8(out[:maxLen], "")
	}
	return out
}
