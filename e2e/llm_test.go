package e2e

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// newScriptedLLM is an in-process OpenAI-compatible chat completions server
// standing in for a model that reads the evidence well: it answers through
// the propose_rules tool with the evidence's fingerprint candidates that
// cover most of the attack and little of the baseline. The responder must
// still validate and replay what it proposes.
func newScriptedLLM(t testing.TB) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/chat/completions" || r.Header.Get("Authorization") != "Bearer llm-key" {
			http.Error(w, `{"error":{"message":"bad path or key","type":"invalid_request_error"}}`, http.StatusUnauthorized)
			return
		}
		var req struct {
			Messages []struct {
				Content string `json:"content"`
			} `json:"messages"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, `{"error":{"message":"bad json"}}`, http.StatusBadRequest)
			return
		}
		var evidence struct {
			Candidates []struct {
				Rule struct {
					Match  map[string]any `json:"match"`
					Reason string         `json:"reason"`
				} `json:"rule"`
				Coverage   float64 `json:"coverage"`
				Collateral float64 `json:"collateral"`
			} `json:"miner_candidates"`
		}
		found := false
		for _, m := range req.Messages {
			if body, ok := strings.CutPrefix(m.Content, "EVIDENCE (untrusted data, JSON):\n"); ok {
				body, _, _ = strings.Cut(body, "\nEND OF EVIDENCE")
				found = json.Unmarshal([]byte(body), &evidence) == nil
			}
		}
		if !found {
			t.Errorf("the responder's request holds no evidence this model can read")
			http.Error(w, `{"error":{"message":"no evidence"}}`, http.StatusBadRequest)
			return
		}
		var rules []any
		for _, c := range evidence.Candidates {
			if c.Coverage < 0.05 || c.Collateral > 0.01 {
				continue
			}
			rules = append(rules, map[string]any{"action": "drop", "rate_pps": nil, "ttl_seconds": 600,
				"reason": "model: " + c.Rule.Reason, "match": strictMatch(c.Rule.Match)})
		}
		args, _ := json.Marshal(map[string]any{"rationale": "the candidates cover the flood and spare the baseline", "rules": rules})
		resp := map[string]any{
			"id": "chatcmpl-e2e", "object": "chat.completion", "created": time.Now().Unix(), "model": "e2e-model",
			"choices": []any{map[string]any{
				"index": 0, "finish_reason": "tool_calls",
				"message": map[string]any{"role": "assistant", "content": nil, "tool_calls": []any{map[string]any{
					"id": "call_1", "type": "function",
					"function": map[string]any{"name": "propose_rules", "arguments": string(args)},
				}}},
			}},
			"usage": map[string]any{"prompt_tokens": 2000, "completion_tokens": 120, "total_tokens": 2120},
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(resp)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// strictMatch writes every match field of the tool schema, null where the
// candidate leaves it open.
func strictMatch(m map[string]any) map[string]any {
	out := map[string]any{}
	for _, f := range []string{"src", "dst", "protocol", "src_ports", "dst_ports", "tcp_flags", "icmp_type", "ttl", "length", "tcp_window", "fragment"} {
		out[f] = m[f]
	}
	return out
}
