package responder

import (
	"cmp"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/packetscope/packetscope/agentapi"
	"github.com/packetscope/packetscope/rule"
)

// Candidate is a rule the fingerprint miner proposes, with what it would
// have done to the recent traffic.
type Candidate struct {
	Rule       rule.Rule `json:"rule"`
	Coverage   float64   `json:"coverage"`   // share of the attack window it matches
	Collateral float64   `json:"collateral"` // share of the baseline it matches
}

// MinerConfig tunes the fingerprint miner. Zero values take the defaults.
type MinerConfig struct {
	MaxRules       int     // rules per decision (default 6)
	MaxSources     int     // per-source rules when this few sources carry the attack (default 8)
	SourceShare    float64 // ...and together carry at least this share of it (default 0.9)
	MinGroupExcess float64 // ignore traffic classes whose share grew less than this (default 0.003)
	Target         float64 // stop once the rules cover this share of the excess (default 0.995)
	Trim           float64 // outliers cut from each end of a range (default 0.001)
	MinBaseline    int     // prune predicates only with at least this many baseline samples (default 100)
	MinPrefixLenV4 int     // never emit a source prefix shorter than this (default 16)
	MinPrefixLenV6 int     // (default 32)
	MaxCollateral  float64 // never propose a rule matching more of the baseline (default 0.01, the guardrails' limit)
}

func (c MinerConfig) withDefaults() MinerConfig {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	deff := func(v *float64, d float64) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.MaxRules, 6)
	def(&c.MaxSources, 8)
	deff(&c.SourceShare, 0.9)
	deff(&c.MinGroupExcess, 0.003)
	deff(&c.Target, 0.995)
	deff(&c.Trim, 0.001)
	def(&c.MinBaseline, 100)
	def(&c.MinPrefixLenV4, 16)
	def(&c.MinPrefixLenV6, 32)
	deff(&c.MaxCollateral, DefaultGuardrails.MaxCollateral)
	return c
}

// Mine is MineAlert with the scope inferred from the window itself.
func Mine(cfg MinerConfig, attack, baseline []rule.Packet, protected []netip.Prefix) []Candidate {
	return MineAlert(cfg, "", attack, baseline, protected)
}

// MineAlert finds rules for the attack window of an alert whose `attack`
// label is attackLabel (empty: inferred from what grew most).
//
// Evidence is scoped by the alert: only traffic classes of the kind the
// alert says grew are mined (a UDP amplification alert gets UDP, fragment
// and ICMP-error rules, never rules for the TCP beside it), unless a class
// outside the scope dominates the window on its own. Packets of served flows
// (established connections the node carries, see served.go) are no evidence
// at all: heavy legitimate traffic is not a flood. Each grown class in scope
// gets its own fingerprint (one rule per vector); per-source rules are used
// instead only when a few sources, new against the baseline, carry the
// attack and cover it better than the fingerprints do.
//
// peers are the node's connected UDP sockets' peers, when the agent lists
// them: their answers are served traffic too.
func MineAlert(cfg MinerConfig, attackLabel string, attack, baseline []rule.Packet, protected []netip.Prefix, peers ...agentapi.UDPPeer) []Candidate {
	cfg = cfg.withDefaults()
	attack = ipOnly(attack)
	baseline = ipOnly(baseline)
	if len(attack) == 0 {
		return nil
	}
	served := newServedFlows(peers, attack, baseline)
	evAttack := served.without(attack)
	evBaseline := served.without(baseline)
	if len(evAttack) == 0 {
		return nil
	}
	scope := scopeFor(attackLabel)
	if scope == nil {
		scope = inferScope(cfg, evAttack, evBaseline, len(attack), len(baseline))
	}
	keepCand := func(cs []Candidate) []Candidate {
		out := cs[:0]
		for _, c := range cs {
			m, err := c.Rule.Match.Compile()
			switch {
			case err != nil:
			case served.refusal(served.matched(m)) == "":
				if c.Collateral <= cfg.MaxCollateral {
					out = append(out, c)
				}
			case served.hitsAreFlood(m, attack):
				// The guardrails rate-limit it at the served flows' rate:
				// collateral counts on the rest of the baseline.
				if ratio(countMatched([]*rule.Matcher{m}, evBaseline), len(evBaseline)) <= cfg.MaxCollateral && openerShare(m, evBaseline) <= cfg.MaxCollateral {
					out = append(out, c)
				}
			}
		}
		return out
	}
	fps := keepCand(mineFingerprints(cfg, scope, evAttack, evBaseline, attack, baseline))
	srcs := keepCand(mineSources(cfg, scope, evAttack, evBaseline, attack, baseline, protected))
	if len(srcs) == 0 {
		return fps
	}
	if len(fps) == 0 {
		return srcs
	}
	rf, rs := ReplayRules(rulesOf(fps), evAttack, baseline), ReplayRules(rulesOf(srcs), evAttack, baseline)
	// Sources, when they do as well: a rule for the flooding hosts leaves
	// everyone else's packets of the same shape alone.
	if rs.Coverage >= rf.Coverage-0.005 && rs.Collateral <= rf.Collateral {
		return srcs
	}
	return fps
}

func rulesOf(cs []Candidate) []rule.Rule {
	out := make([]rule.Rule, len(cs))
	for i, c := range cs {
		out[i] = c.Rule
	}
	return out
}

// classScope tells which traffic classes an alert is about.
type classScope func(classKey) bool

// scopeFor maps an alert's `attack` label (alerts/packetscope.rules.yml) to
// the traffic classes it covers, or nil for a label it does not know.
// Amplification and UDP floods come with their fragments (later fragments
// carry no UDP header) and with the ICMP errors of the hosts the answers
// also hit; TCP floods of any flag class are one scope, since a flood mixes
// flag combinations and an alert fires on whichever counter grew first.
func scopeFor(label string) classScope {
	switch label {
	case "udp_amplification", "udp_flood", "fragment_flood":
		return func(k classKey) bool {
			return k.protocol == rule.ProtoUDP || k.frag == rule.FragLater || k.icmp && isICMPError(k.icmpType)
		}
	case "syn_flood", "ack_flood", "rst_flood", "tcp_flood":
		return func(k classKey) bool { return k.protocol == rule.ProtoTCP }
	case "icmp_flood":
		return func(k classKey) bool { return k.icmp || k.frag == rule.FragLater && isICMPProto(k.protocol) }
	case "port_scan":
		// What a scan sends: SYNs without ACK and UDP datagrams (the probes
		// the reactions show; other TCP scans' odd flags are the TCP flood's).
		return func(k classKey) bool {
			return k.hasL4 && (k.protocol == rule.ProtoUDP || k.protocol == rule.ProtoTCP && k.flags&(rule.FlagSYN|rule.FlagACK) == rule.FlagSYN)
		}
	case AttackResetInjection:
		// Without reactions to name them: the RSTs that arrived.
		return func(k classKey) bool { return k.protocol == rule.ProtoTCP && k.flags&rule.FlagRST != 0 }
	case "syn_queue_exhaustion":
		// Half-open handshakes: the SYNs that fill the queue, and the ACKs of
		// handshakes completed into a full accept queue.
		return func(k classKey) bool { return k.protocol == rule.ProtoTCP }
	}
	return nil
}

func isICMPError(t uint8) bool { return t == 3 || t == 11 || t == 12 || t == 1 || t == 4 } // v4: 3, 11, 12; v6: 1, 4 (unreachable, param problem)

func isICMPProto(p uint8) bool { return p == rule.ProtoICMP || p == rule.ProtoICMPv6 }

// inferScope is the scope of the alert that would have fired: the kind of
// the class that grew most.
func inferScope(cfg MinerConfig, attack, baseline []rule.Packet, totalA, totalB int) classScope {
	classes, _ := grownClasses(cfg, attack, baseline, totalA, totalB)
	if len(classes) == 0 {
		return func(classKey) bool { return false }
	}
	k := classes[0].key
	switch {
	case k.protocol == rule.ProtoUDP || k.frag == rule.FragLater && !isICMPProto(k.protocol):
		return scopeFor("udp_amplification")
	case k.protocol == rule.ProtoTCP:
		return scopeFor("syn_flood")
	case k.icmp:
		return scopeFor("icmp_flood")
	}
	return func(o classKey) bool { return o.protocol == k.protocol }
}

// outOfScopeExcess is the share of the window a class outside the alert's
// scope must have grown by to be mined anyway: it must dominate on its own,
// not be the ordinary traffic beside the attack the alert is about.
const outOfScopeExcess = 0.25

func ipOnly(pkts []rule.Packet) []rule.Packet {
	out := make([]rule.Packet, 0, len(pkts))
	for _, p := range pkts {
		if p.Family != 0 {
			out = append(out, p)
		}
	}
	return out
}

// mineSources returns per-source rules when at most MaxSources addresses,
// each grown over the baseline (new or rare there), carry SourceShare of the
// attack's grown classes in scope. Mined on the evidence (served flows left
// out); replayed on the whole windows.
func mineSources(cfg MinerConfig, scope classScope, attack, baseline, fullAttack, fullBaseline []rule.Packet, protected []netip.Prefix) []Candidate {
	var inScope []rule.Packet
	for i := range attack {
		if scope(keyOf(&attack[i])) {
			inScope = append(inScope, attack[i])
		}
	}
	if len(inScope) == 0 {
		return nil
	}
	ac := map[netip.Addr]int{}
	for _, p := range inScope {
		ac[p.Src]++
	}
	bc := map[netip.Addr]int{}
	for _, p := range baseline {
		bc[p.Src]++
	}
	type srcShare struct {
		addr   netip.Addr
		excess float64
		n      int
	}
	var heavy []srcShare
	for a, n := range ac {
		if ex, ok := grown(n, len(fullAttack), bc[a], len(fullBaseline), 0.02); ok && !isProtected(a, protected) {
			heavy = append(heavy, srcShare{a, ex, n})
		}
	}
	slices.SortFunc(heavy, func(x, y srcShare) int {
		return cmp.Or(cmp.Compare(y.n, x.n), x.addr.Compare(y.addr))
	})
	if len(heavy) == 0 || len(heavy) > min(cfg.MaxSources, cfg.MaxRules) {
		return nil
	}
	// The sources must explain the attack: their excess against the total
	// excess of the traffic classes in scope that grew.
	srcExcess := 0.0
	for _, g := range heavy {
		srcExcess += g.excess
	}
	_, total := grownClasses(cfg, attack, baseline, len(fullAttack), len(fullBaseline), scope)
	if srcExcess < cfg.SourceShare*total {
		return nil
	}
	var out []Candidate
	for _, g := range heavy {
		m := rule.Match{Src: netip.PrefixFrom(g.addr, g.addr.BitLen()).String()}
		// Narrow to the source's protocol when it sends only one: a flooding
		// host may still be a client whose other traffic should pass.
		protos := map[uint8]int{}
		for _, p := range inScope {
			if p.Src == g.addr {
				protos[p.Protocol]++
			}
		}
		if len(protos) == 1 {
			for pr := range protos {
				m.Protocol = agentapi.FormatProtocol(uint32(pr))
			}
		}
		reason := fmt.Sprintf("source %s carries %.0f%% of the attack window", g.addr, 100*ratio(g.n, len(fullAttack)))
		out = append(out, candidateFor(m, reason, fullAttack, fullBaseline))
	}
	return out
}

// emptyBaselineShare is the share of the attack window a traffic class
// needs to be taken for the attack when there is no baseline.
const emptyBaselineShare = 0.05

type grownClass struct {
	key    classKey
	excess float64
}

// grownClasses returns the traffic classes that grew in the attack window
// (largest excess first) and their total excess; with scopes, only classes
// within one of them.
//
// Shares are of the whole windows (totalA, totalB), while the counts are of
// the evidence only (served flows left out): leaving the served traffic out
// of the denominators would inflate every other class's share, most in the
// baseline, where the served flows are most of the traffic.
func grownClasses(cfg MinerConfig, attack, baseline []rule.Packet, totalA, totalB int, scopes ...classScope) ([]grownClass, float64) {
	ac, bc := map[classKey]int{}, map[classKey]int{}
	for i := range attack {
		ac[keyOf(&attack[i])]++
	}
	for i := range baseline {
		bc[keyOf(&baseline[i])]++
	}
	minExcess := cfg.MinGroupExcess
	if len(baseline) == 0 {
		// Nothing to compare with: only classes that dominate the window
		// are taken for the attack, not the ordinary traffic beside it.
		minExcess = max(minExcess, emptyBaselineShare)
	}
	// A flood dilutes the ordinary traffic beside it, so a class the attack
	// shares with much ordinary traffic (ACKs, SYNs) may hold a smaller share
	// of the window than of the baseline and still have grown many times
	// over in packets: a class grown far beyond the ordinary traffic's scale
	// counts too.
	ordScale, scaled := ordinaryScale(attack, baseline)
	var out []grownClass
	total := 0.0
	for k, n := range ac {
		if len(scopes) > 0 && !slices.ContainsFunc(scopes, func(s classScope) bool { return s(k) }) {
			continue
		}
		ex, ok := grown(n, totalA, bc[k], totalB, minExcess)
		if !ok && scaled {
			expect := ordScale * float64(bc[k])
			if ex2 := (float64(n) - expect) / float64(totalA); float64(n) >= 4*expect+10 && ex2 >= minExcess {
				ex, ok = ex2, true
			}
		}
		if ok {
			out = append(out, grownClass{k, ex})
			total += ex
		}
	}
	slices.SortFunc(out, func(a, b grownClass) int {
		return cmp.Or(cmp.Compare(b.excess, a.excess), cmp.Compare(ac[b.key], ac[a.key]), cmp.Compare(a.key.protocol, b.key.protocol),
			cmp.Compare(a.key.frag, b.key.frag), cmp.Compare(a.key.flags, b.key.flags), cmp.Compare(a.key.icmpType, b.key.icmpType))
	})
	return out, total
}

func isProtected(a netip.Addr, protected []netip.Prefix) bool {
	for _, p := range protected {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// classKey is a traffic class: packets a fingerprint's fixed fields can tell
// apart exactly (the kernel matches these fields exactly too).
type classKey struct {
	protocol uint8
	hasL4    bool
	frag     rule.FragKind
	flags    uint8 // TCP only
	icmpType uint8 // ICMP only
	icmp     bool
}

// A first fragment carries the L4 header and joins its unfragmented
// siblings' class (an amplifier's large and small answers are one vector);
// later fragments, with no L4 header, are a class of their own, which gets
// its companion rule.
func keyOf(p *rule.Packet) classKey {
	k := classKey{protocol: p.Protocol, hasL4: p.HasL4, frag: p.Fragment}
	if k.frag == rule.FragFirst && p.HasL4 {
		k.frag = rule.FragNone
	}
	if p.HasL4 && p.Protocol == rule.ProtoTCP {
		k.flags = p.TCPFlags
	}
	if p.IsICMP() {
		k.icmp, k.icmpType = true, p.ICMPType
	}
	return k
}

// mineFingerprints gives each grown class in scope (and each class outside
// it that dominates the window) its own fingerprint: one rule per vector.
// Mined on the evidence; each rule's coverage and collateral are replayed on
// the whole windows.
func mineFingerprints(cfg MinerConfig, scope classScope, attack, baseline, fullAttack, fullBaseline []rule.Packet) []Candidate {
	ac := map[classKey][]int{}
	for i := range attack {
		k := keyOf(&attack[i])
		ac[k] = append(ac[k], i)
	}
	bc := map[classKey][]int{}
	for i := range baseline {
		k := keyOf(&baseline[i])
		bc[k] = append(bc[k], i)
	}
	all, _ := grownClasses(cfg, attack, baseline, len(fullAttack), len(fullBaseline))
	var classes []grownClass
	totalExcess := 0.0
	for _, c := range all {
		if scope(c.key) || c.excess >= outOfScopeExcess {
			classes = append(classes, c)
			totalExcess += c.excess
		}
	}
	scale, ok := ordinaryScale(attack, baseline)
	if !ok {
		scale = ratio(len(attack), len(baseline))
	}
	var out []Candidate
	done := 0.0
	for _, c := range classes {
		if len(out) == cfg.MaxRules || done >= cfg.Target*totalExcess {
			break
		}
		pk := pick(attack, ac[c.key])
		bk := pick(baseline, bc[c.key])
		m, reason := fingerprint(cfg, c.key, pk, bk, len(baseline), scale)
		out = append(out, candidateFor(m, reason, fullAttack, fullBaseline))
		done += c.excess
	}
	return out
}

// ordinaryScale is how much ordinary traffic the attack window holds
// against the baseline: the factor a baseline count is scaled by to predict
// the window's. A flood dilutes the ordinary traffic, so the windows' size
// ratio would overstate it, and the classes a flood leaves alone can be a
// handful of samples (a web server's ordinary traffic is mostly the ACKs and
// SYNs a TCP flood grows too): an estimate from those alone, too low, left
// the clients' ACKs in the flood's excess, so the rule for the flood's ACKs
// took in the served port and failed on collateral. So the scale is measured
// in cells (class and destination port) the baseline holds enough of, the
// grown classes' ordinary cells too: the median of their ratios first,
// which neither the attack's cells (far above) nor a flow that ended (zero)
// moves, however many packets those hold, then the ratio pooled over the
// cells that median predicts within sampling noise, for a steadier figure.
// It reports false when the baseline has no such cell.
func ordinaryScale(attack, baseline []rule.Packet) (float64, bool) {
	type cell struct {
		k    classKey
		port uint16
	}
	ac, bc := map[cell]int{}, map[cell]int{}
	for i := range attack {
		ac[cell{keyOf(&attack[i]), attack[i].DstPort}]++
	}
	for i := range baseline {
		bc[cell{keyOf(&baseline[i]), baseline[i].DstPort}]++
	}
	type cellCount struct{ na, nb int }
	var cells []cellCount
	for c, nb := range bc {
		if nb >= minOrdinaryCell {
			cells = append(cells, cellCount{ac[c], nb})
		}
	}
	if len(cells) == 0 {
		return 0, false
	}
	r := func(c cellCount) float64 { return float64(c.na) / float64(c.nb) }
	slices.SortFunc(cells, func(a, b cellCount) int { return cmp.Compare(r(a), r(b)) })
	median := r(cells[len(cells)/2])
	sumA, sumB := 0, 0
	for _, c := range cells {
		if e := median * float64(c.nb); math.Abs(float64(c.na)-e) <= 3*math.Sqrt(e)+3 {
			sumA += c.na
			sumB += c.nb
		}
	}
	if sumB == 0 {
		return median, true
	}
	return ratio(sumA, sumB), true
}

// minOrdinaryCell is the baseline packets a cell needs to measure the
// ordinary traffic's scale by: a flood to random ports lands in cells the
// baseline holds a packet or two of by chance.
const minOrdinaryCell = 5

func pick(pkts []rule.Packet, idx []int) []rule.Packet {
	out := make([]rule.Packet, len(idx))
	for i, j := range idx {
		out[i] = pkts[j]
	}
	return out
}

// predicate is one field constraint of a fingerprint.
type predicate struct {
	field    string
	apply    func(*rule.Match)
	prunable bool
}

// fingerprint builds the conjunction for one class: its fixed fields plus
// whatever other fields the class's packets share (dominant ports, TTL,
// length and window ranges, a source prefix), then drops the constraints the
// baseline shows are not needed, so the rule is as general as the evidence
// allows (a longer attack varies more than a sample does).
func fingerprint(cfg MinerConfig, k classKey, pk, bk []rule.Packet, baselineTotal int, scale float64) (rule.Match, string) {
	hist := func(get func(*rule.Packet) uint32) map[uint32]float64 { return excessHist(pk, bk, get, scale) }
	// The attack's size within the class: what the constraints must keep.
	// Excess beyond it is ordinary traffic with values the baseline sample
	// happened not to hold (random ephemeral ports, say).
	keepOf := func() float64 {
		keep := float64(len(pk)) - scale*float64(len(bk))
		if keep <= 0 {
			keep = float64(len(pk))
		}
		return keep * (1 - 2*cfg.Trim)
	}
	keep := keepOf()
	var preds []predicate
	proto := agentapi.FormatProtocol(uint32(k.protocol))
	preds = append(preds, predicate{"protocol", func(m *rule.Match) { m.Protocol = proto }, false})
	if k.frag != rule.FragNone {
		frag := rule.Fragment(k.frag.String())
		preds = append(preds, predicate{"fragment", func(m *rule.Match) { m.Fragment = frag }, false})
	}
	if k.hasL4 && k.protocol == rule.ProtoTCP {
		flags := rule.FormatTCPFlags(k.flags, ^k.flags)
		preds = append(preds, predicate{"tcp_flags", func(m *rule.Match) { m.TCPFlags = flags }, false})
	}
	if k.icmp {
		t := int(k.icmpType)
		preds = append(preds, predicate{"icmp_type", func(m *rule.Match) { m.ICMPType = &t }, false})
	}
	if k.hasL4 && (k.protocol == rule.ProtoTCP || k.protocol == rule.ProtoUDP) {
		// The attack's size is an estimate: the ordinary traffic subtracted
		// from the class is a sample's. A port set need not reach into that
		// noise (two standard deviations of the ordinary count), or the gap
		// is wanted from a port the ordinary traffic left a packet over its
		// prediction in, which is too light to list and voids the set. Nine
		// tenths of it at least: a class whose attack is within that noise
		// is not narrowed to its heaviest port.
		portKeep := max(keep-2*math.Sqrt(scale*float64(len(bk))), 0.9*keep)
		if ports := portSet(portKeep, hist(func(p *rule.Packet) uint32 { return uint32(p.DstPort) })); ports != nil {
			preds = append(preds, predicate{"dst_ports", func(m *rule.Match) { m.DstPorts = ports }, true})
		}
		if ports := portSet(portKeep, hist(func(p *rule.Packet) uint32 { return uint32(p.SrcPort) })); ports != nil {
			preds = append(preds, predicate{"src_ports", func(m *rule.Match) { m.SrcPorts = ports }, true})
		}
		// The ports name the vector (a reflector's service port, the
		// attacked service): the ranges below describe the packets on those
		// ports only, not the ordinary traffic that shares the class.
		if c, err := buildMatch(preds).Compile(); err == nil {
			pk, bk = matching(c, pk), matching(c, bk)
			keep = keepOf()
		}
	}
	if k.hasL4 && k.protocol == rule.ProtoTCP {
		if r, ok := bucketRange(keep, pk, bk, func(p *rule.Packet) uint32 { return uint32(p.TCPWindow) }, 256, scale, 65535, 8192); ok {
			preds = append(preds, predicate{"tcp_window", func(m *rule.Match) { m.TCPWindow = r }, true})
		}
	}
	if r, ok := bucketRange(keep, pk, bk, func(p *rule.Packet) uint32 { return uint32(p.TTL) }, 1, scale, 255, 128); ok {
		preds = append(preds, predicate{"ttl", func(m *rule.Match) { m.TTL = r }, true})
	}
	if r, ok := bucketRange(keep, pk, bk, func(p *rule.Packet) uint32 { return uint32(p.Length) }, 32, scale, 65535, 1024); ok {
		preds = append(preds, predicate{"length", func(m *rule.Match) { m.Length = r }, true})
	}
	if pfx, ok := commonSourcePrefix(cfg, pk, bk, scale); ok {
		s := pfx.String()
		preds = append(preds, predicate{"src", func(m *rule.Match) { m.Src = s }, true})
	}

	build := buildMatch
	if baselineTotal >= cfg.MinBaseline {
		// TTL and source prefix describe the path and the senders, which vary
		// more over an attack than a sample shows: drop them when the baseline
		// says they add nothing. Header fields (ports, length, window, flags)
		// stay: they are the tool's signature, and ordinary traffic to the
		// attacked service may simply be missing from the baseline sample.
		base := matchedCount(build(preds), bk)
		for _, field := range []string{"ttl", "src"} {
			i := slices.IndexFunc(preds, func(p predicate) bool { return p.field == field })
			if i < 0 {
				continue
			}
			trial := slices.Delete(slices.Clone(preds), i, i+1)
			if hasSignature(trial) && matchedCount(build(trial), bk) <= base {
				preds = trial
			}
		}
	}
	m := build(preds)
	var fields []string
	for _, p := range preds {
		fields = append(fields, p.field)
	}
	reason := fmt.Sprintf("fingerprint of %s traffic that grew in the attack window (%s)", describeClass(k), strings.Join(fields, ", "))
	return m, reason
}

func buildMatch(ps []predicate) rule.Match {
	var m rule.Match
	for _, p := range ps {
		p.apply(&m)
	}
	return m
}

func matching(m *rule.Matcher, pkts []rule.Packet) []rule.Packet {
	var out []rule.Packet
	for i := range pkts {
		if m.Matches(&pkts[i]) {
			out = append(out, pkts[i])
		}
	}
	return out
}

// hasSignature reports whether a fingerprint still pins a header field
// beyond the traffic class itself.
func hasSignature(ps []predicate) bool {
	return slices.ContainsFunc(ps, func(p predicate) bool {
		switch p.field {
		case "dst_ports", "src_ports", "length", "tcp_window":
			return true
		}
		return false
	})
}

func describeClass(k classKey) string {
	s := agentapi.FormatProtocol(uint32(k.protocol))
	switch {
	case k.hasL4 && k.protocol == rule.ProtoTCP:
		s += " " + rule.FormatTCPFlags(k.flags, 0)
	case k.icmp:
		s += " type " + strconv.Itoa(int(k.icmpType))
	}
	if k.frag != rule.FragNone {
		s += " " + k.frag.String() + "-fragment"
	}
	return s
}

func matchedCount(m rule.Match, pkts []rule.Packet) int {
	c, err := m.Compile()
	if err != nil {
		return len(pkts)
	}
	return countMatched([]*rule.Matcher{c}, pkts)
}

// excessHist is, per value of a field, how many more class packets the
// attack window holds than the baseline predicts (baseline counts scaled by
// the windows' size ratio). The ordinary traffic that shares the class is
// subtracted out, so the fingerprint describes the attack alone.
func excessHist(pk, bk []rule.Packet, get func(*rule.Packet) uint32, scale float64) map[uint32]float64 {
	h := map[uint32]float64{}
	for i := range pk {
		h[get(&pk[i])]++
	}
	for i := range bk {
		v := get(&bk[i])
		if _, ok := h[v]; ok {
			h[v] -= scale
		}
	}
	for v, n := range h {
		if n <= 0 {
			delete(h, v)
		}
	}
	return h
}

type valueWeight struct {
	v uint32
	w float64
}

func sortedByValue(h map[uint32]float64) ([]valueWeight, float64) {
	out := make([]valueWeight, 0, len(h))
	total := 0.0
	for v, w := range h {
		out = append(out, valueWeight{v, w})
		total += w
	}
	slices.SortFunc(out, func(a, b valueWeight) int { return cmp.Compare(a.v, b.v) })
	return out, total
}

// portSet returns the few ports that carry the excess (as a list), a narrow
// range holding them, or nil when ports are spread (spoofed random ports).
// minPortSetWeight is the excess (in samples) a port needs to be listed in
// a port set.
const minPortSetWeight = 1.5

func portSet(keep float64, h map[uint32]float64) []string {
	all, total := sortedByValue(h)
	if total == 0 {
		return nil
	}
	slices.SortStableFunc(all, func(a, b valueWeight) int { return cmp.Compare(b.w, a.w) })
	need := min(keep, total)
	sum := 0.0
	var ports []uint32
	for _, x := range all {
		// A port the attack sample holds once is no member of a set: the
		// field is spread (hping3's incrementing source ports, a
		// reflection's random victim ports), and a list of the values a
		// small sample happened to hold, or their range, misses the
		// attack's next packets. No port predicate then.
		if x.w < minPortSetWeight {
			return nil
		}
		if len(ports) == rule.MaxPortItems {
			break
		}
		ports = append(ports, x.v)
		sum += x.w
		if sum >= need {
			slices.Sort(ports)
			out := make([]string, len(ports))
			for i, p := range ports {
				out[i] = strconv.Itoa(int(p))
			}
			return out
		}
	}
	if r, ok := valueRange(keep, h, 65535, 4096); ok {
		return []string{r}
	}
	return nil
}

// bucketRange is valueRange over buckets of width values: the excess of a
// field whose values spread thinly (answer lengths, windows) is measured per
// bucket, so ordinary traffic's values cancel against the baseline's nearby
// ones instead of passing for attack values the baseline sample happened to
// miss. The range's ends are then the attack's own extreme values within
// the chosen buckets.
func bucketRange(keep float64, pk, bk []rule.Packet, get func(*rule.Packet) uint32, width uint32, scale float64, max, maxWidth uint32) (string, bool) {
	h := excessHist(pk, bk, func(p *rule.Packet) uint32 { return get(p) / width }, scale)
	blo, bhi, ok := trimmedSpan(keep, h)
	if !ok {
		return "", false
	}
	// Within the chosen buckets, the values the attack holds beyond the
	// baseline (exact): a tool's constant beside a stack's nearby one.
	// A value counts when most of the window's packets holding it are
	// beyond what the baseline predicts, not when sampling noise leaves a
	// stack's own value a few packets over.
	//
	// A value ordinary traffic uses (the baseline holds it) that grew by
	// only a sliver of the excess is that traffic reacting to the flood: a
	// served client retrying its handshakes against a flooded port. Spanning
	// it would make the rule match that client.
	exact := excessHist(pk, bk, get, scale)
	seen := map[uint32]float64{}
	for i := range pk {
		seen[get(&pk[i])]++
	}
	ordinary := map[uint32]bool{}
	for i := range bk {
		ordinary[get(&bk[i])] = true
	}
	totalExcess := 0.0
	for _, ex := range exact {
		totalExcess += ex
	}
	lo, hi, found := max, uint32(0), false
	for v, ex := range exact {
		if ordinary[v] && ex < ordinaryGrowthShare*totalExcess {
			continue
		}
		if v/width >= blo && v/width <= bhi && ex >= 0.5*seen[v] {
			lo, hi, found = min(lo, v), maxU32(hi, v), true
		}
	}
	if !found || hi-lo >= maxWidth || lo == 0 && hi == max {
		return "", false
	}
	if lo == hi {
		return strconv.FormatUint(uint64(lo), 10), true
	}
	return fmt.Sprintf("%d-%d", lo, hi), true
}

// ordinaryGrowthShare is the share of a class's excess below which growth
// on a value the baseline holds is taken for ordinary traffic, not the attack.
const ordinaryGrowthShare = 0.01

func maxU32(a, b uint32) uint32 {
	if a > b {
		return a
	}
	return b
}

// trimmedSpan returns the smallest [lo, hi] of h's keys, shrunk from
// whichever end is lighter, that keeps at least keep of its weight.
func trimmedSpan(keep float64, h map[uint32]float64) (uint32, uint32, bool) {
	vals, total := sortedByValue(h)
	if total == 0 {
		return 0, 0, false
	}
	budget := total - min(keep, total)
	i, j := 0, len(vals)-1
	for i < j {
		if vals[i].w <= vals[j].w {
			if vals[i].w > budget {
				break
			}
			budget -= vals[i].w
			i++
		} else {
			if vals[j].w > budget {
				break
			}
			budget -= vals[j].w
			j--
		}
	}
	return vals[i].v, vals[j].v, true
}

// valueRange returns "lo-hi" spanning at least keep of the excess, shrunk
// from whichever end is lighter, or false when the span is at least maxWidth
// (no fingerprint in this field).
func valueRange(keep float64, h map[uint32]float64, max, maxWidth uint32) (string, bool) {
	lo, hi, ok := trimmedSpan(keep, h)
	if !ok || hi-lo >= maxWidth || lo == 0 && hi == max {
		return "", false
	}
	if lo == hi {
		return strconv.FormatUint(uint64(lo), 10), true
	}
	return fmt.Sprintf("%d-%d", lo, hi), true
}

// commonSourcePrefix returns the /24 (v4) or /48 (v6), if allowed by the
// breadth limit, that holds all but Trim of the class's excess sources.
func commonSourcePrefix(cfg MinerConfig, pk, bk []rule.Packet, scale float64) (netip.Prefix, bool) {
	counts := map[netip.Prefix]float64{}
	pfxOf := func(p *rule.Packet) (netip.Prefix, bool) {
		bits := 24
		if p.Family == 6 {
			bits = 48
		}
		pfx, err := p.Src.Prefix(bits)
		return pfx, err == nil
	}
	for i := range pk {
		if pfx, ok := pfxOf(&pk[i]); ok {
			counts[pfx]++
		}
	}
	for i := range bk {
		if pfx, ok := pfxOf(&bk[i]); ok {
			if _, seen := counts[pfx]; seen {
				counts[pfx] -= scale
			}
		}
	}
	total := 0.0
	for _, n := range counts {
		total += max(n, 0)
	}
	for pfx, n := range counts {
		lim := cfg.MinPrefixLenV4
		if pfx.Addr().Is6() {
			lim = cfg.MinPrefixLenV6
		}
		if total > 0 && pfx.Bits() >= lim && n >= total*(1-2*cfg.Trim) {
			return pfx, true
		}
	}
	return netip.Prefix{}, false
}

// grown reports whether a class (or source) carries a larger share of the
// attack window than of the baseline, by at least minExcess and by more
// than sampling noise explains (two-proportion z-test, z > 4), and by how
// much.
func grown(na, totalA, nb, totalB int, minExcess float64) (float64, bool) {
	pa, pb := ratio(na, totalA), ratio(nb, totalB)
	ex := pa - pb
	if ex < minExcess {
		return ex, false
	}
	if totalB == 0 {
		return ex, true
	}
	p := float64(na+nb) / float64(totalA+totalB)
	se := math.Sqrt(p * (1 - p) * (1/float64(totalA) + 1/float64(totalB)))
	return ex, se == 0 || ex/se > 4
}

func candidateFor(m rule.Match, reason string, attack, baseline []rule.Packet) Candidate {
	r := rule.Rule{Action: rule.ActionDrop, Match: m, Reason: reason, Origin: rule.OriginBuiltin}
	rp := ReplayRules([]rule.Rule{r}, attack, baseline)
	c := Candidate{Rule: r, Coverage: rp.Coverage, Collateral: rp.Collateral}
	if m, err := m.Compile(); err == nil {
		// The guardrails judge SYN rules on the baseline's new
		// connections too: a candidate says the larger share.
		c.Collateral = max(c.Collateral, openerShare(m, baseline))
	}
	return c
}
