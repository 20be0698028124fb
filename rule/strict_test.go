package rule

import (
	"errors"
	"strings"
	"testing"
)

func TestUnmarshalStrictRejectsWithTheKey(t *testing.T) {
	type inner struct {
		A string            `json:"a"`
		M map[string]string `json:"m"`
		L []inner           `json:"l"`
	}
	type outer struct {
		Name  string `json:"name"`
		In    inner  `json:"in"`
		Any   any    `json:"any"`
		Plain int
	}
	cases := []struct {
		name, json, field, why string
	}{
		{"duplicate top-level key", `{"name":"a","name":"b"}`, "name", "duplicate"},
		{"duplicate nested key", `{"in":{"a":"x","a":"y"}}`, "in.a", "duplicate"},
		{"duplicate key in a map", `{"in":{"m":{"k":"1","k":"2"}}}`, "in.m.k", "duplicate"},
		{"duplicate key in an array element", `{"in":{"l":[{"a":"1"},{"a":"1","a":"2"}]}}`, "in.l[1].a", "duplicate"},
		{"duplicate key under any", `{"any":{"x":{"y":1,"y":2}}}`, "any.x.y", "duplicate"},
		{"case-folded key", `{"NAME":"a"}`, "NAME", "spelled \"name\""},
		{"unicode-folded key (long s)", `{"in":{"l":[{"\u017f":"x"}]},"name":"x"}`, "in.l[0].ſ", "unknown field"},
		{"kelvin sign folds onto k? no: unknown", `{"in":{"m":{}},"\u212aey":1}`, "\u212aey", "unknown field"},
		{"go name with wrong case", `{"plain":1}`, "plain", "spelled \"Plain\""},
		{"unknown key", `{"in":{"b":1}}`, "in.b", "unknown field"},
		{"trailing closers", `{"name":"a"}}]]`, "body", "trailing"},
		{"trailing value", `{"name":"a"} {}`, "body", "trailing"},
		{"truncated", `{"name":"a"`, "body", "invalid JSON"},
		{"empty", ``, "body", "empty"},
		{"type mismatch names the field", `{"in":{"a":5}}`, "in.a", "must be a JSON string"},
		{"too deep", `{"any":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`, "any" + strings.Repeat("[0]", maxStrictDepth-1), "deeper"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var v outer
			err := UnmarshalStrict([]byte(tc.json), &v)
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("want a *FieldError, got %v", err)
			}
			if fe.Field != tc.field || !strings.Contains(fe.Reason, tc.why) {
				t.Errorf("got %q, want field %q with %q", err, tc.field, tc.why)
			}
		})
	}
}

func TestUnmarshalStrictAccepts(t *testing.T) {
	type inner struct {
		A string `json:"a"`
	}
	type outer struct {
		Name string            `json:"name"`
		In   *inner            `json:"in"`
		M    map[string]string `json:"m"`
	}
	var v outer
	// Case-distinct map keys are distinct keys; white space may trail.
	err := UnmarshalStrict([]byte(` {"name":"n","in":{"a":"x"},"m":{"k":"1","K":"2"}} `+"\n"), &v)
	if err != nil {
		t.Fatal(err)
	}
	if v.Name != "n" || v.In == nil || v.In.A != "x" || v.M["k"] != "1" || v.M["K"] != "2" {
		t.Errorf("decoded %+v", v)
	}
}

func TestParseRuleStrict(t *testing.T) {
	cases := []struct {
		name, json, field, why string
	}{
		{"duplicate action (last would win)", `{"action":"monitor","action":"drop","ttl_seconds":60,"match":{}}`, "action", "duplicate"},
		{"duplicate match.src", `{"action":"drop","ttl_seconds":60,"match":{"src":"10.0.0.0/8","src":"0.0.0.0/0"}}`, "match.src", "duplicate"},
		{"case-folded action", `{"Action":"drop","ttl_seconds":60,"match":{}}`, "Action", "case"},
		{"case-folded match field", `{"action":"drop","ttl_seconds":60,"match":{"SRC":"10.0.0.1"}}`, "match.SRC", "case"},
		{"closers after the rule", `{"action":"drop","ttl_seconds":60,"match":{}}}]]`, "body", "trailing"},
		{"unknown match field", `{"action":"drop","ttl_seconds":60,"match":{"port":80}}`, "match.port", "unknown"},
		{"id with a slash", `{"id":"../x","action":"drop","ttl_seconds":60,"match":{}}`, "id", "letters"},
		{"id starting with a dash", `{"id":"-rf","action":"drop","ttl_seconds":60,"match":{}}`, "id", "start"},
		{"id starting with a dot", `{"id":".hidden","action":"drop","ttl_seconds":60,"match":{}}`, "id", "start"},
		{"id with non-ASCII letter", `{"id":"r\u00e9gle","action":"drop","ttl_seconds":60,"match":{}}`, "id", "ASCII"},
		{"id with NUL", `{"id":"a\u0000b","action":"drop","ttl_seconds":60,"match":{}}`, "id", "letters"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseRule([]byte(tc.json))
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("want a *FieldError, got %v", err)
			}
			if fe.Field != tc.field || !strings.Contains(fe.Reason, tc.why) {
				t.Errorf("got %q, want field %q with %q", err, tc.field, tc.why)
			}
		})
	}
}

func TestParseRuleCleansReason(t *testing.T) {
	r, err := ParseRule([]byte(`{"action":"monitor","ttl_seconds":60,"match":{},
		"reason":"\u001b[2Jsyn\u0000 flood\u202e from\nbots\u200b\u0085ok\u00ad "}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := "[2Jsyn flood from bots ok"; r.Reason != want {
		t.Errorf("reason = %q, want %q", r.Reason, want)
	}
}

func TestCleanText(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"plain", "SYN flood from 203.0.113.0/24", "SYN flood from 203.0.113.0/24"},
		{"other scripts kept", "攻撃 — Überlast", "攻撃 — Überlast"},
		{"ESC sequence loses its ESC", "\x1b[31mred", "[31mred"},
		{"NUL and DEL", "a\x00b\x7fc", "abc"},
		{"C1 CSI", "a\u009bb", "ab"},
		{"bidi override and isolates", "abc\u202edcba\u2066x\u2069", "abcdcbax"},
		{"zero width and BOM", "a\u200bb\ufeffc\u2060d", "abcd"},
		{"tag characters", "a\U000E0041\U000E0042b", "ab"},
		{"line breaks become spaces", "a\r\nb\u2028c\td", "a  b c d"},
		{"invalid UTF-8 dropped", "a\xffb\xc3", "ab"},
		{"trimmed", "  a  ", "a"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := CleanText(tc.in); got != tc.want {
				t.Errorf("CleanText(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if !IsCleanText(CleanText(tc.in)) {
				t.Errorf("CleanText is not idempotent on %q", tc.in)
			}
		})
	}
}
