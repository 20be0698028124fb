package rule

import (
	"strings"
	"testing"
)

// TestEnumerationsAgreeWithValidate: every value the schema lists as a
// choice validates, and a value it does not list is refused, so the lists
// offered to the LLM and the CLI cannot drift from Validate.
func TestEnumerationsAgreeWithValidate(t *testing.T) {
	base := func() Rule { return Rule{Action: ActionDrop, TTLSeconds: 60, Match: Match{Protocol: "udp"}} }
	type variant struct {
		name string
		set  func(*Rule)
	}
	var valid []variant
	for _, a := range Actions {
		valid = append(valid, variant{"action " + string(a), func(r *Rule) {
			r.Action = a
			if a == ActionRateLimit {
				r.RatePPS = 10
			}
		}})
	}
	for _, f := range Fragments {
		valid = append(valid, variant{"fragment " + string(f), func(r *Rule) { r.Match.Fragment = f }})
	}
	for _, o := range Origins {
		valid = append(valid, variant{"origin " + o, func(r *Rule) { r.Origin = o }})
	}
	for _, v := range valid {
		t.Run(v.name, func(t *testing.T) {
			r := base()
			v.set(&r)
			if err := r.Validate(); err != nil {
				t.Fatalf("listed value refused: %v", err)
			}
		})
	}
	invalid := []struct {
		field string
		set   func(*Rule)
	}{
		{"action", func(r *Rule) { r.Action = "explode" }},
		{"match.fragment", func(r *Rule) { r.Match.Fragment = "most" }},
		{"origin", func(r *Rule) { r.Origin = "oracle" }},
	}
	for _, tc := range invalid {
		t.Run("unlisted "+tc.field, func(t *testing.T) {
			r := base()
			tc.set(&r)
			err := r.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("err = %v, want one naming %s", err, tc.field)
			}
		})
	}
}
