package responder

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/packetscope/packetscope/rule"
)

// scriptedAnalyst answers with fixed rules or a fixed error.
type scriptedAnalyst struct {
	name  AnalystName
	rules []rule.Rule
	err   error
	asked *[]AnalystName
}

func (s scriptedAnalyst) Name() AnalystName { return s.name }

func (s scriptedAnalyst) Propose(context.Context, *Evidence) (Answer, error) {
	*s.asked = append(*s.asked, s.name)
	return Answer{Rules: s.rules, Rationale: "scripted"}, s.err
}

// proposal builds a rule the test's check accepts (reason "good") or
// rejects (anything else).
func proposal(reason string) rule.Rule {
	return rule.Rule{Action: rule.ActionDrop, TTLSeconds: 60, Reason: reason, Match: rule.Match{Protocol: "udp"}}
}

func scriptedCheck(analyst AnalystName, rules []rule.Rule) []Validation {
	var vs []Validation
	for _, r := range rules {
		r.Origin = string(analyst)
		v := Validation{Rule: r, Accepted: r.Reason == "good"}
		if !v.Accepted {
			v.Reason = "rejected by the test"
		}
		vs = append(vs, v)
	}
	return vs
}

// TestFallbackPolicy: the next analyst is asked when one fails, proposes
// nothing while the miner has candidates, or has every rule rejected; the
// first answer that stands, or the last one, decides.
func TestFallbackPolicy(t *testing.T) {
	const first, second AnalystName = "first", "second"
	withCandidates := &Evidence{Candidates: []Candidate{{Rule: proposal("good")}}}
	noCandidates := &Evidence{}
	cases := []struct {
		name         string
		firstRules   []rule.Rule
		firstErr     error
		ev           *Evidence
		chainOfOne   bool
		wantAsked    []AnalystName
		wantAnalyst  AnalystName
		wantCause    string // of the first attempt
		wantAccepted int
		wantRejected int // from both analysts: the passed-over ones stay on the record
	}{
		{name: "accepted", firstRules: []rule.Rule{proposal("good"), proposal("bad")}, ev: withCandidates,
			wantAsked: []AnalystName{first}, wantAnalyst: first, wantAccepted: 1, wantRejected: 1},
		{name: "error with a cause", firstErr: &LLMError{Cause: "timeout", Err: errors.New("deadline")}, ev: withCandidates,
			wantAsked: []AnalystName{first, second}, wantAnalyst: second, wantCause: "timeout", wantAccepted: 1},
		{name: "plain error", firstErr: errors.New("boom"), ev: withCandidates,
			wantAsked: []AnalystName{first, second}, wantAnalyst: second, wantCause: CauseError, wantAccepted: 1},
		{name: "empty while the miner has candidates", ev: withCandidates,
			wantAsked: []AnalystName{first, second}, wantAnalyst: second, wantCause: CauseEmptyAnswer, wantAccepted: 1},
		{name: "empty and nothing to find", ev: noCandidates,
			wantAsked: []AnalystName{first}, wantAnalyst: first},
		{name: "all rejected", firstRules: []rule.Rule{proposal("bad"), proposal("worse")}, ev: withCandidates,
			wantAsked: []AnalystName{first, second}, wantAnalyst: second, wantCause: CauseAllRejected, wantAccepted: 1, wantRejected: 2},
		{name: "all rejected, nobody to fall back to", firstRules: []rule.Rule{proposal("bad")}, ev: withCandidates, chainOfOne: true,
			wantAsked: []AnalystName{first}, wantAnalyst: first, wantCause: CauseAllRejected, wantRejected: 1},
		{name: "error, nobody to fall back to", firstErr: errors.New("boom"), ev: withCandidates, chainOfOne: true,
			wantAsked: []AnalystName{first}, wantAnalyst: first, wantCause: CauseError},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var asked []AnalystName
			chain := []Analyst{scriptedAnalyst{name: first, rules: tc.firstRules, err: tc.firstErr, asked: &asked}}
			if !tc.chainOfOne {
				chain = append(chain, scriptedAnalyst{name: second, rules: []rule.Rule{proposal("good")}, asked: &asked})
			}
			p := proposeWithFallback(context.Background(), chain, tc.ev, scriptedCheck)
			if !slices.Equal(asked, tc.wantAsked) {
				t.Fatalf("asked %v, want %v", asked, tc.wantAsked)
			}
			if p.Analyst != tc.wantAnalyst || len(p.Attempts) != len(tc.wantAsked) {
				t.Fatalf("decided by %s after %d attempts, want %s after %d", p.Analyst, len(p.Attempts), tc.wantAnalyst, len(tc.wantAsked))
			}
			if got := p.Attempts[0].Cause; got != tc.wantCause {
				t.Errorf("first attempt's cause %q, want %q", got, tc.wantCause)
			}
			accepted, rejected := 0, 0
			for _, v := range p.Validations {
				if v.Accepted {
					accepted++
					if v.Rule.Origin != string(p.Analyst) {
						t.Errorf("accepted rule from %s, but %s decided", v.Rule.Origin, p.Analyst)
					}
				} else {
					rejected++
				}
			}
			if accepted != tc.wantAccepted || rejected != tc.wantRejected {
				t.Errorf("%d accepted, %d rejected; want %d, %d", accepted, rejected, tc.wantAccepted, tc.wantRejected)
			}
		})
	}
}

// TestOfflineFallsBackLikeTheResponder: AnalyzeOffline follows the same
// policy as a live decision (TestLLMAnswers): an LLM that proposes nothing
// while the miner sees the flood, or has every rule rejected, is passed
// over for the builtin analyst; one that fails without fallback is an error.
func TestOfflineFallsBackLikeTheResponder(t *testing.T) {
	attack := mix(6, hpingSYNFlood(5, 3000, true), ordinaryTraffic(42, 300))
	baseline := ordinaryTraffic(41, 4000)
	synRule := map[string]any{"protocol": "tcp", "dst_ports": []string{"80"}, "tcp_flags": "syn,!ack", "tcp_window": "512", "length": "40"}
	cases := []struct {
		name        string
		answer      func(w http.ResponseWriter, r *http.Request)
		noFallback  bool
		wantAnalyst string
		wantWhy     string // in LLMError
		wantErr     string
	}{
		{name: "good rule", answer: toolAnswer(rulesArgs("syn flood", synRule)), wantAnalyst: "llm"},
		{name: "empty answer", answer: toolAnswer(`{"rationale":"all is well","rules":[]}`),
			wantAnalyst: "builtin (fallback)", wantWhy: "proposed no rule"},
		{name: "all rejected", answer: toolAnswer(rulesArgs("all", map[string]any{"src": "0.0.0.0/0"})),
			wantAnalyst: "builtin (fallback)", wantWhy: "was rejected"},
		{name: "server error", answer: statusAnswer(500), wantAnalyst: "builtin (fallback)", wantWhy: "server_error"},
		{name: "server error without fallback", answer: statusAnswer(500), noFallback: true, wantErr: "ask the llm analyst"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			llm := newFakeLLM(t, tc.answer)
			res, err := AnalyzeOffline(context.Background(), OfflineConfig{Analyst: AnalystLLM,
				LLM: LLMConfig{BaseURL: llm.srv.URL + "/v1", Model: "m", APIKey: llmKey, Timeout: 5 * time.Second, FallbackToBuiltin: !tc.noFallback}},
				attack, baseline)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Analyst != tc.wantAnalyst || !strings.Contains(res.LLMError, tc.wantWhy) || (tc.wantWhy == "") != (res.LLMError == "") {
				t.Fatalf("analyst %q, llm error %q; want %q, %q", res.Analyst, res.LLMError, tc.wantAnalyst, tc.wantWhy)
			}
			if len(res.Accepted) == 0 {
				t.Fatalf("no rule accepted: %s", fmt.Sprint(res.Validations))
			}
		})
	}
}
