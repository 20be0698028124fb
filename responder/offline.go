package responder

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/packetscope/packetscope/rule"
	"github.com/prometheus/client_golang/prometheus"
)

// OfflineConfig configures AnalyzeOffline.
type OfflineConfig struct {
	Analyst    string // builtin (default) or llm
	LLM        LLMConfig
	Mode       string        // enforce (default) or monitor
	RuleTTL    time.Duration // default 10m
	Protected  []netip.Prefix
	Guardrails Guardrails // zero fields take DefaultGuardrails
	Miner      MinerConfig
	Attack     string // the alert's attack label to scope the analysis by (udp_amplification, syn_flood, …); "" infers it
}

// OfflineResult is what the analyst proposed for a capture and what the
// guardrails made of it.
type OfflineResult struct {
	Analyst     string
	Rationale   string
	LLMError    string // why the LLM's answer was not used, if it was not
	Validations []Validation
	Accepted    []rule.Rule
	Replay      Replay // the accepted rules together
}

// AnalyzeOffline runs the analyst and the guardrails on packets read from a
// capture: attack is the capture, baseline (possibly empty) ordinary traffic.
func AnalyzeOffline(ctx context.Context, cfg OfflineConfig, attack, baseline []rule.Packet) (OfflineResult, error) {
	rc := Config{Analyst: cfg.Analyst, Mode: cfg.Mode, RuleTTL: cfg.RuleTTL, Guardrails: cfg.Guardrails, Miner: cfg.Miner, LLM: cfg.LLM}
	if err := rc.setDefaults(); err != nil {
		return OfflineResult{}, err
	}
	attack, baseline = ipOnly(attack), ipOnly(baseline)
	if len(attack) == 0 {
		return OfflineResult{}, errors.New("the capture holds no IP packets")
	}
	protected := normalizePrefixes(append(append([]netip.Prefix{}, cfg.Protected...), alwaysProtected...))
	ev := &Evidence{Alert: AlertInfo{Name: "offline", Fingerprint: "offline", Status: "firing", Labels: map[string]string{"attack": cfg.Attack}}, Attack: attack, Baseline: baseline,
		Protected: cfg.Protected, SampleEvery: 1, Estimated: uint64(len(attack))}
	ev.Candidates = MineAlert(rc.Miner, cfg.Attack, attack, baseline, protected)
	in := CheckInput{Attack: attack, Baseline: baseline, Protected: cfg.Protected, Mode: rc.Mode, TTL: rc.RuleTTL}

	res := OfflineResult{Analyst: rc.Analyst}
	if rc.Analyst == "llm" {
		l := newLLM(rc.LLM, newMetrics(prometheus.NewRegistry()))
		a, err := l.Propose(ctx, ev)
		if err == nil {
			in.Origin = "llm"
			res.Rationale, res.Validations = a.Rationale, rc.Guardrails.Check(in, a.Rules)
			if len(a.Rules) == 0 || anyAccepted(res.Validations) || !rc.LLM.FallbackToBuiltin {
				return finishOffline(res, attack, baseline), nil
			}
			res.LLMError = "every rule the LLM proposed was rejected"
		} else {
			res.LLMError = err.Error()
			if !rc.LLM.FallbackToBuiltin {
				return res, fmt.Errorf("ask the llm: %w", err)
			}
		}
		res.Analyst = "builtin (fallback)"
	}
	a, _ := Builtin{}.Propose(ctx, ev)
	in.Origin = "builtin"
	res.Rationale = a.Rationale
	res.Validations = append(rejectedOnly(res.Validations), rc.Guardrails.Check(in, a.Rules)...)
	return finishOffline(res, attack, baseline), nil
}

func finishOffline(res OfflineResult, attack, baseline []rule.Packet) OfflineResult {
	for _, v := range res.Validations {
		if v.Accepted {
			res.Accepted = append(res.Accepted, v.Rule)
		}
	}
	res.Replay = ReplayRules(res.Accepted, attack, baseline)
	return res
}
