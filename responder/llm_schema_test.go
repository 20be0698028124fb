package responder

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/sashabaranov/go-openai"

	"github.com/packetscope/packetscope/rule"
)

// matchSchemaProperties returns the tool schema's match properties.
func matchSchemaProperties(t *testing.T) (props map[string]map[string]any, required []string) {
	t.Helper()
	var s struct {
		Properties struct {
			Rules struct {
				Items struct {
					Properties struct {
						Match struct {
							Required   []string                  `json:"required"`
							Properties map[string]map[string]any `json:"properties"`
						} `json:"match"`
					} `json:"properties"`
				} `json:"items"`
			} `json:"rules"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(ruleSchema, &s); err != nil {
		t.Fatalf("the tool schema is not JSON: %v", err)
	}
	m := s.Properties.Rules.Items.Properties.Match
	return m.Properties, m.Required
}

// toolCall answers with a propose_rules call whose one rule has match.
func toolCall(t *testing.T, match rule.Match) openai.ChatCompletionResponse {
	t.Helper()
	b, err := json.Marshal(match)
	if err != nil {
		t.Fatal(err)
	}
	var given map[string]any
	_ = json.Unmarshal(b, &given)
	args := map[string]any{}
	for _, f := range rule.MatchFields() {
		args[f.Name] = given[f.Name] // nil (null) when not given
	}
	body, _ := json.Marshal(map[string]any{"rationale": "r", "rules": []any{map[string]any{
		"action": "drop", "rate_pps": nil, "ttl_seconds": 600, "reason": "x", "match": args}}})
	return openai.ChatCompletionResponse{Choices: []openai.ChatCompletionChoice{{Message: openai.ChatCompletionMessage{
		ToolCalls: []openai.ToolCall{{Type: openai.ToolTypeFunction, Function: openai.FunctionCall{Name: proposeTool, Arguments: string(body)}}}}}}}
}

// TestLLMSchemaFollowsRuleMatch: every field of rule.Match is in the tool
// schema with a description and a nullable type, is required (strict mode),
// and a tool call that sets it decodes into the same rule.Match; the
// system prompt names it too.
func TestLLMSchemaFollowsRuleMatch(t *testing.T) {
	props, required := matchSchemaProperties(t)
	fields := rule.MatchFields()
	if len(props) != len(fields) || len(required) != len(fields) {
		t.Fatalf("schema has %d match properties (%d required), rule.Match %d fields", len(props), len(required), len(fields))
	}
	var all rule.Match
	for _, f := range fields {
		t.Run(f.Name, func(t *testing.T) {
			p, ok := props[f.Name]
			if !ok {
				t.Fatalf("the tool schema lacks match.%s", f.Name)
			}
			if d, _ := p["description"].(string); d == "" || d != f.Description {
				t.Errorf("description %q, want %q", d, f.Description)
			}
			types, _ := p["type"].([]any)
			if len(types) != 2 || types[1] != "null" {
				t.Errorf("type %v, want a nullable type", p["type"])
			}
			if !strings.Contains(systemPrompt, "- "+f.Name+": ") {
				t.Errorf("the system prompt does not describe %s", f.Name)
			}

			var want rule.Match
			if err := f.Set(&want, f.Example); err != nil {
				t.Fatal(err)
			}
			_ = f.Set(&all, f.Example)
			a, lerr := parseToolAnswer(toolCall(t, want))
			if lerr != nil {
				t.Fatalf("decode tool call: %v", lerr)
			}
			if len(a.Rules) != 1 || !reflect.DeepEqual(a.Rules[0].Match, want) {
				t.Fatalf("decoded %+v, want match %+v", a.Rules, want)
			}
		})
	}
	a, lerr := parseToolAnswer(toolCall(t, all))
	if lerr != nil || len(a.Rules) != 1 || !reflect.DeepEqual(a.Rules[0].Match, all) {
		t.Fatalf("every field at once: decoded %+v (%v), want %+v", a.Rules, lerr, all)
	}
}

// TestLLMSchemaEnums: the schema's enumerations are the rule package's.
func TestLLMSchemaEnums(t *testing.T) {
	props, _ := matchSchemaProperties(t)
	for _, f := range rule.MatchFields() {
		if len(f.Enum) == 0 {
			continue
		}
		want := []any{}
		for _, v := range f.Enum {
			want = append(want, v)
		}
		want = append(want, nil)
		if got := props[f.Name]["enum"]; !reflect.DeepEqual(got, want) {
			t.Errorf("match.%s enum %v, want %v", f.Name, got, want)
		}
	}
	var s map[string]any
	_ = json.Unmarshal(ruleSchema, &s)
	action := s["properties"].(map[string]any)["rules"].(map[string]any)["items"].(map[string]any)["properties"].(map[string]any)["action"].(map[string]any)
	var want []any
	for _, a := range rule.Actions {
		want = append(want, string(a))
	}
	if !reflect.DeepEqual(action["enum"], want) {
		t.Errorf("action enum %v, want %v", action["enum"], want)
	}
}
