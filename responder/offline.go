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
	Analyst    AnalystName // AnalystBuiltin (default) or AnalystLLM
	LLM        LLMConfig
	Mode       Mode          // ModeEnforce (default) or ModeMonitor
	RuleTTL    time.Duration // default DefaultRuleTTL
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
	check := func(analyst AnalystName, rules []rule.Rule) []Validation {
		return rc.Guardrails.Check(CheckInput{Attack: attack, Baseline: baseline, Protected: cfg.Protected,
			Mode: rc.Mode, RuleTTL: rc.RuleTTL, Origin: string(analyst)}, rules)
	}
	p := proposeWithFallback(ctx, analystChain(rc, newMetrics(prometheus.NewRegistry())), ev, check)
	stands := p.Attempts[len(p.Attempts)-1]
	if stands.Err != nil {
		return OfflineResult{Analyst: string(stands.Analyst), LLMError: stands.Err.Error()},
			fmt.Errorf("ask the %s analyst: %w", stands.Analyst, stands.Err)
	}
	res := OfflineResult{Analyst: string(p.Analyst), Rationale: stands.Answer.Rationale, Validations: p.Validations}
	if passed := p.Attempts[:len(p.Attempts)-1]; len(passed) > 0 {
		res.Analyst += " (fallback)"
		res.LLMError = whyPassedOver(passed[len(passed)-1])
	}
	return finishOffline(res, attack, baseline), nil
}

// whyPassedOver says in a sentence why an analyst's answer was set aside.
func whyPassedOver(at Attempt) string {
	switch {
	case at.Err != nil:
		return at.Err.Error()
	case at.Cause == CauseAllRejected:
		return "every rule the " + string(at.Analyst) + " analyst proposed was rejected"
	case at.Cause == CauseEmptyAnswer:
		return "the " + string(at.Analyst) + " analyst proposed no rule while the fingerprint miner found candidates"
	}
	return at.Cause
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
