package responder

import (
	"context"
	"errors"
	"time"

	"github.com/packetscope/packetscope/rule"
)

// Causes for setting an analyst's answer aside, beside an *LLMError's: the
// cause label of packetscope_responder_llm_fallbacks_total and
// AnswerRecord.Cause.
const (
	CauseError       = "error"              // the analyst failed without saying why
	CauseAllRejected = "all_rules_rejected" // the guardrails rejected every rule it proposed
	CauseEmptyAnswer = "empty_answer"       // it proposed nothing while the miner found candidates
)

// Attempt is one analyst's turn under the fallback policy.
type Attempt struct {
	Analyst     AnalystName
	Answer      Answer
	Err         error        // the analyst failed; Answer is empty
	Validations []Validation // the guardrails' verdicts on Answer.Rules
	// Cause says why the answer is not good enough ("" if it is). The next
	// analyst, if there is one, is asked then.
	Cause    string
	Duration time.Duration
}

// Proposal is what the fallback policy settled on.
type Proposal struct {
	Analyst     AnalystName  // whose answer stands: the last one asked
	Validations []Validation // rules rejected from the analysts passed over, then the standing answer's verdicts
	Attempts    []Attempt    // every analyst asked, in order
}

// checkFunc judges the rules an analyst proposed; the rules get the
// analyst's name as their origin.
type checkFunc func(analyst AnalystName, rules []rule.Rule) []Validation

// proposeWithFallback is the one fallback policy: it asks the analysts in
// order until one gives an answer that stands. The next analyst is asked
// when one fails, when the guardrails reject every rule it proposed, or when
// it proposes nothing although the miner found candidates (it missed the
// flood, or was talked out of seeing it). The last analyst's answer stands,
// whatever it is. analysts must not be empty.
func proposeWithFallback(ctx context.Context, analysts []Analyst, ev *Evidence, check checkFunc) Proposal {
	var p Proposal
	for i, a := range analysts {
		at := Attempt{Analyst: a.Name()}
		start := time.Now()
		at.Answer, at.Err = a.Propose(ctx, ev)
		at.Duration = time.Since(start)
		if at.Err == nil {
			at.Validations = check(at.Analyst, at.Answer.Rules)
		}
		at.Cause = unusable(at, ev)
		p.Attempts = append(p.Attempts, at)
		if at.Cause == "" || i == len(analysts)-1 {
			p.Analyst = at.Analyst
			p.Validations = append(p.Validations, at.Validations...)
			return p
		}
		// The rejected rules stay on the record; the next analyst decides.
		p.Validations = append(p.Validations, rejectedOnly(at.Validations)...)
	}
	return p
}

// unusable says why an attempt's answer should not stand, or "".
func unusable(at Attempt, ev *Evidence) string {
	switch {
	case at.Err != nil:
		if le, ok := errors.AsType[*LLMError](at.Err); ok {
			return le.Cause
		}
		return CauseError
	case len(at.Answer.Rules) > 0 && !anyAccepted(at.Validations):
		return CauseAllRejected
	case len(at.Answer.Rules) == 0 && len(ev.Candidates) > 0:
		return CauseEmptyAnswer
	}
	return ""
}

// analystChain is the configured analyst, then the builtin one when the LLM
// may fall back to it.
func analystChain(cfg Config, m *metrics) []Analyst {
	builtin := Builtin{RuleTTL: cfg.RuleTTL}
	if cfg.Analyst != AnalystLLM {
		return []Analyst{builtin}
	}
	chain := []Analyst{newLLM(cfg.LLM, m)}
	if cfg.LLM.FallbackToBuiltin {
		chain = append(chain, builtin)
	}
	return chain
}

func anyAccepted(vs []Validation) bool {
	for _, v := range vs {
		if v.Accepted {
			return true
		}
	}
	return false
}

func rejectedOnly(vs []Validation) []Validation {
	var out []Validation
	for _, v := range vs {
		if !v.Accepted {
			out = append(out, v)
		}
	}
	return out
}
