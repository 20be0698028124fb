package responder

import (
	"context"
	"net/netip"
	"time"

	"github.com/packetscope/packetscope/agentapi"
	"github.com/packetscope/packetscope/rule"
)

// Evidence is everything an analyst may look at for one alert.
type Evidence struct {
	Alert      AlertInfo
	AttackFrom time.Time
	AttackTo   time.Time
	Attack     []rule.Packet // sampled headers in the attack window
	Baseline   []rule.Packet // sampled headers in the window before it
	// Reactions are the stack's answers in the attack window: received
	// packets the kernel dropped because nobody asked for them, with the
	// drop reason in Reaction (NO_SOCKET: a closed port's probe, answered
	// with a RST or an ICMP port unreachable; TCP_LISTEN_OVERFLOW).
	Reactions   []rule.Sample
	AttackTop   map[string][]agentapi.ValueCount
	SampleEvery uint32
	// BaselineSeconds is how long the baseline's samples span, to turn
	// their counts into rates (0: unknown).
	BaselineSeconds float64
	Estimated       uint64         // packets in the attack window, estimated from sampling
	Protected       []netip.Prefix // never-block: node addresses, gateways, configured CIDRs
	ActiveRules     []rule.Rule    // what the agent enforces now
	Candidates      []Candidate    // the fingerprint miner's proposals with their replay
	// SlowConnections is the agent's report of its inbound connections and
	// the sources holding slow ones (nil: the agent does not track them).
	SlowConnections *agentapi.SlowConnReport
	// UDPPeers are the node's connected UDP sockets' peers now (the agent's
	// report): their answers are served traffic (served.go).
	UDPPeers []agentapi.UDPPeer
}

// AlertInfo is the part of an Alertmanager alert the responder uses.
type AlertInfo struct {
	Name        string            `json:"name"`
	Fingerprint string            `json:"fingerprint"`
	Status      string            `json:"status"`
	StartsAt    time.Time         `json:"starts_at"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Truncated   int               `json:"truncated,omitempty"` // labels and annotations dropped or cut on arrival
}

// Answer is an analyst's proposal.
type Answer struct {
	Rules     []rule.Rule `json:"rules"`
	Rationale string      `json:"rationale,omitempty"`
}

// AnalystName names an analyst: the --analyst value, the analyst label of
// the responder's metrics, and the origin of the rules it proposes.
type AnalystName string

const (
	AnalystBuiltin AnalystName = rule.OriginBuiltin // fingerprint mining
	AnalystLLM     AnalystName = rule.OriginLLM     // an OpenAI-compatible model
)

// AnalystNames are the analysts there are.
var AnalystNames = []AnalystName{AnalystBuiltin, AnalystLLM}

// Analyst turns evidence into proposed rules. Proposals are untrusted: the
// guardrails judge every rule whoever proposed it.
type Analyst interface {
	Name() AnalystName
	Propose(ctx context.Context, ev *Evidence) (Answer, error)
}

// Builtin is the fingerprint-mining analyst; it needs no network.
type Builtin struct {
	RuleTTL time.Duration // lifetime given to its rules; 0 leaves it to the guardrails
}

func (Builtin) Name() AnalystName { return AnalystBuiltin }

// Propose returns the miner's candidates (already in ev.Candidates).
func (b Builtin) Propose(_ context.Context, ev *Evidence) (Answer, error) {
	a := Answer{Rationale: "fingerprint mining: traffic classes that grew in the attack window against the baseline"}
	for _, c := range ev.Candidates {
		r := c.Rule
		if b.RuleTTL > 0 {
			r.TTLSeconds = int64(b.RuleTTL / time.Second)
		}
		a.Rules = append(a.Rules, r)
	}
	return a, nil
}
