package agentapi

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/packetscope/packetscope/rule"
)

// gateProtected is what the fake node protects: its own addresses, its
// gateway and an operator's never-block CIDR.
var gateProtected = []netip.Prefix{
	netip.MustParsePrefix("10.203.0.1/32"),     // own address
	netip.MustParsePrefix("10.203.0.254/32"),   // gateway
	netip.MustParsePrefix("2001:db8:1::1/128"), // own IPv6 address
	netip.MustParsePrefix("198.18.0.0/15"),     // --guard.never-block
}

// TestAPILastGate drives the handler with the operator's own token: the
// agent refuses what would turn it against its node, whoever asks.
func TestAPILastGate(t *testing.T) {
	cases := []struct {
		name   string
		body   string
		status int
		field  string
		why    string
	}{
		{"narrow drop passes", `{"action":"drop","match":{"protocol":"udp","dst_ports":["53"]},"ttl_seconds":60}`, 201, "", ""},
		{"src elsewhere passes", `{"action":"drop","match":{"src":"203.0.113.0/24"},"ttl_seconds":60}`, 201, "", ""},
		{"empty match drop", `{"action":"drop","match":{},"ttl_seconds":60}`, 400, "match", "narrowing field"},
		{"empty match rate_limit", `{"action":"rate_limit","rate_pps":1,"match":{},"ttl_seconds":60}`, 400, "match", "rate-limit every packet"},
		{"empty match monitor passes", `{"action":"monitor","match":{},"ttl_seconds":60}`, 201, "", ""},
		{"whole-domain fields only", `{"action":"drop","match":{"ttl":"0-255","length":"0-65535","dst_ports":["0-65535"]},"ttl_seconds":60}`, 400, "match", "narrowing field"},
		{"tcp_window 0-65535 only", `{"action":"drop","match":{"tcp_window":"0-65535"},"ttl_seconds":60}`, 400, "match", "narrowing field"},
		{"src 0.0.0.0/0 with a port covers the node", `{"action":"drop","match":{"src":"0.0.0.0/0","protocol":"udp","dst_ports":["53"]},"ttl_seconds":60}`, 400, "match.src", "0.0.0.0/0 covers protected"},
		{"src is the node", `{"action":"drop","match":{"src":"10.203.0.1","protocol":"tcp"},"ttl_seconds":60}`, 400, "match.src", "covers protected"},
		{"src covers the gateway", `{"action":"drop","match":{"src":"10.203.0.128/25","protocol":"icmp"},"ttl_seconds":60}`, 400, "match.src", "10.203.0.254/32"},
		{"src inside never-block", `{"action":"drop","match":{"src":"198.19.7.7/32"},"ttl_seconds":60}`, 400, "match.src", "198.18.0.0/15"},
		{"src covers never-block", `{"action":"rate_limit","rate_pps":10,"match":{"src":"198.0.0.0/8"},"ttl_seconds":60}`, 400, "match.src", "198.18.0.0/15"},
		{"src loopback", `{"action":"drop","match":{"src":"127.0.0.53/32"},"ttl_seconds":60}`, 400, "match.src", "127.0.0.0/8"},
		{"src link-local v4", `{"action":"drop","match":{"src":"169.254.1.0/24"},"ttl_seconds":60}`, 400, "match.src", "169.254.0.0/16"},
		{"src link-local v6", `{"action":"drop","match":{"src":"fe80::1"},"ttl_seconds":60}`, 400, "match.src", "fe80::/10"},
		{"src v6 covers own v6", `{"action":"drop","match":{"src":"2001:db8::/32"},"ttl_seconds":60}`, 400, "match.src", "2001:db8:1::1/128"},
		{"src v4-mapped loopback", `{"action":"drop","match":{"src":"::ffff:127.0.0.1/128"},"ttl_seconds":60}`, 400, "match.src", "IPv4-mapped"},
		{"src v4-mapped node", `{"action":"drop","match":{"src":"::ffff:10.203.0.0/120"},"ttl_seconds":60}`, 400, "match.src", "IPv4-mapped"},
		{"dst is the node", `{"action":"drop","match":{"dst":"10.203.0.1/32","protocol":"udp","dst_ports":["53"]},"ttl_seconds":60}`, 400, "match.dst", "covers protected 10.203.0.1/32"},
		{"dst gateway", `{"action":"drop","match":{"dst":"10.203.0.254"},"ttl_seconds":60}`, 400, "match.dst", "10.203.0.254/32"},
		{"dst never-block", `{"action":"drop","match":{"dst":"198.18.0.0/16","protocol":"tcp"},"ttl_seconds":60}`, 400, "match.dst", "198.18.0.0/15"},
		{"dst link-local v6 (neighbor discovery)", `{"action":"drop","match":{"dst":"fe80::/64","protocol":"icmpv6"},"ttl_seconds":60}`, 400, "match.dst", "fe80::/10"},
		{"dst elsewhere passes", `{"action":"drop","match":{"dst":"192.0.2.0/24"},"ttl_seconds":60}`, 201, "", ""},
		{"monitor may cover the node", `{"action":"monitor","match":{"src":"10.203.0.0/16"},"ttl_seconds":60}`, 201, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newAPIFixtureProtecting(t, gateProtected)
			resp, body := f.do(t, "POST", "/api/v1/rules", "Bearer "+testToken, tc.body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if tc.status == 201 {
				if len(f.store.List()) != 1 {
					t.Fatal("accepted rule not stored")
				}
				return
			}
			var er ErrorResponse
			if err := json.Unmarshal(body, &er); err != nil {
				t.Fatal(err)
			}
			if er.Field != tc.field || !strings.Contains(er.Error, tc.why) {
				t.Errorf("got field %q error %q, want field %q with %q", er.Field, er.Error, tc.field, tc.why)
			}
			if len(f.store.List()) != 0 {
				t.Error("a refused rule reached the rule table")
			}
		})
	}
}

// TestAPILastGateWithoutProtectedList: an agent that knows nothing of its
// node still protects loopback and link-local, and still wants narrowing.
func TestAPILastGateWithoutProtectedList(t *testing.T) {
	f := newAPIFixtureProtecting(t, nil)
	for body, want := range map[string]int{
		`{"action":"drop","match":{"src":"127.0.0.1"},"ttl_seconds":60}`:  400,
		`{"action":"drop","match":{"dst":"fe80::/16"},"ttl_seconds":60}`:  400,
		`{"action":"drop","match":{},"ttl_seconds":60}`:                   400,
		`{"action":"drop","match":{"src":"10.203.0.1"},"ttl_seconds":60}`: 201,
	} {
		if resp, data := f.do(t, "POST", "/api/v1/rules", "Bearer "+testToken, body); resp.StatusCode != want {
			t.Errorf("%s: status %d, want %d: %s", body, resp.StatusCode, want, data)
		}
	}
}

func TestCheckLastGateReadsTheListEachTime(t *testing.T) {
	// The protected list changes when an address is added to the node; the
	// gate asks for it on every rule.
	var current []netip.Prefix
	st := newMemStore(10)
	w := NewTrafficWindow(WindowConfig{MaxAge: time.Minute, Protected: func() []netip.Prefix { return current }})
	f := &apiFixture{store: st, window: w, h: NewAPI(quietLogger, st, w, testToken)}
	body := `{"action":"drop","match":{"src":"192.0.2.7"},"ttl_seconds":60}`
	if resp, data := f.do(t, "POST", "/api/v1/rules", "Bearer "+testToken, body); resp.StatusCode != 201 {
		t.Fatalf("status %d: %s", resp.StatusCode, data)
	}
	current = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	body = `{"action":"drop","match":{"src":"192.0.2.8"},"ttl_seconds":60}`
	if resp, data := f.do(t, "POST", "/api/v1/rules", "Bearer "+testToken, body); resp.StatusCode != 400 {
		t.Fatalf("status %d after the node gained 192.0.2.0/24: %s", resp.StatusCode, data)
	}
}

func newAPIFixtureProtecting(t *testing.T, protected []netip.Prefix) *apiFixture {
	t.Helper()
	st := newMemStore(10)
	w := NewTrafficWindow(WindowConfig{MaxAge: time.Minute, Protected: func() []netip.Prefix { return protected }})
	return &apiFixture{store: st, window: w, h: NewAPI(quietLogger, st, w, testToken)}
}

func TestCheckLastGateIgnoresMonitorAndNeedsValidMatch(t *testing.T) {
	// A protected list read as IPv4-mapped IPv6 still protects the IPv4 address.
	mapped := []netip.Prefix{netip.MustParsePrefix("::ffff:10.9.0.1/128")}
	err0 := CheckLastGate(rule.Rule{Action: rule.ActionDrop, TTLSeconds: 60, Match: rule.Match{Src: "10.9.0.0/16"}}, mapped)
	if fe, ok := err0.(*rule.FieldError); !ok || fe.Field != "match.src" {
		t.Errorf("mapped protected address not met: %v", err0)
	}
	if err := CheckLastGate(rule.Rule{Action: rule.ActionMonitor, TTLSeconds: 60}, gateProtected); err != nil {
		t.Errorf("monitor refused: %v", err)
	}
	err := CheckLastGate(rule.Rule{Action: rule.ActionDrop, TTLSeconds: 60, Match: rule.Match{Src: "nonsense"}}, nil)
	if fe, ok := err.(*rule.FieldError); !ok || fe.Field != "match.src" {
		t.Errorf("invalid match: %v", err)
	}
}
