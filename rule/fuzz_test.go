package rule

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode"
)

// FuzzParseRule: the rule decoder never panics; a rule it accepts is valid,
// has a clean reason and a safe id, and survives a round trip through its
// own JSON unchanged.
func FuzzParseRule(f *testing.F) {
	for _, s := range []string{
		`{"action":"drop","ttl_seconds":60,"match":{"src":"203.0.113.0/24","protocol":"tcp","tcp_flags":"syn,!ack"}}`,
		`{"action":"rate_limit","rate_pps":1000,"match":{"src":"203.0.113.0/24","dst":"192.0.2.10/32","protocol":"tcp","src_ports":["161","1000-2000"],"dst_ports":["25565"],"tcp_flags":"syn,!ack","ttl":"200-255","length":"40-40","tcp_window":"0-0","fragment":"none"},"ttl_seconds":600,"reason":"why","origin":"manual"}`,
		`{"action":"monitor","ttl_seconds":1,"match":{"dst":"2001:db8::/32","protocol":"icmpv6","icmp_type":128},"reason":"\u202eevil\u001b[2J"}`,
		`{"id":"r-1.a_b","action":"drop","ttl_seconds":604800,"match":{"fragment":"later"}}`,
		`{"action":"drop","action":"monitor","ttl_seconds":60,"match":{}}`,
		`{"Action":"drop","ttl_seconds":60,"match":{}}`,
		`{"action":"drop","ttl_seconds":60,"match":{}}}]]`,
		`{"action":"drop","ttl_seconds":60,"match":{"src":"::ffff:1.2.3.4/128"}}`,
		`{"action":"drop","ttl_seconds":60,"created_at":"2026-01-01T00:00:00+02:00","match":{"icmp_type":0}}`,
		`[]`, `null`, `{}`, ``, `{"action":"monitor","ttl_seconds":5,"match":{"src_ports":[],"dst_ports":[]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseRule(data)
		if err != nil {
			if _, ok := err.(*FieldError); !ok {
				t.Fatalf("error %v is not a *FieldError", err)
			}
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("accepted rule does not validate: %v", err)
		}
		if !ValidID(r.ID) {
			t.Fatalf("accepted id %q", r.ID)
		}
		for _, c := range r.Reason {
			if unicode.IsControl(c) || unicode.Is(unicode.Cf, c) {
				t.Fatalf("reason %q keeps %U", r.Reason, c)
			}
		}
		out, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("marshal accepted rule: %v", err)
		}
		again, err := ParseRule(out)
		if err != nil {
			t.Fatalf("re-parse %s: %v", out, err)
		}
		if !sameRule(r, again) {
			t.Fatalf("round trip changed the rule:\n %+v\n %+v", r, again)
		}
		m1, _ := r.Match.Compile()
		m2, _ := again.Match.Compile()
		if !reflect.DeepEqual(m1, m2) || strings.Join(m1.Narrowing(), ",") != strings.Join(m2.Narrowing(), ",") {
			t.Fatalf("round trip changed the compiled match:\n %+v\n %+v", m1, m2)
		}
	})
}

// sameRule compares rules with times by instant (a zone written as an
// offset comes back as another *Location).
func sameRule(a, b Rule) bool {
	if !a.CreatedAt.Equal(b.CreatedAt) || !a.ExpiresAt.Equal(b.ExpiresAt) {
		return false
	}
	a.CreatedAt, a.ExpiresAt = b.CreatedAt, b.ExpiresAt
	return reflect.DeepEqual(a, b)
}
