package rule

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestParseRuleRejectsWithTheFieldAndWhy(t *testing.T) {
	cases := []struct {
		name, json, field, why string
	}{
		{"not json", `{`, "body", "invalid JSON"},
		{"unknown field", `{"action":"drop","ttl_seconds":60,"match":{},"bogus":1}`, "bogus", "unknown field"},
		{"trailing data", `{"action":"drop","ttl_seconds":60,"match":{}} {}`, "body", "trailing"},
		{"no action", `{"ttl_seconds":60,"match":{}}`, "action", "required"},
		{"bad action", `{"action":"nuke","ttl_seconds":60,"match":{}}`, "action", "not one of"},
		{"rate without rate_limit", `{"action":"drop","rate_pps":5,"ttl_seconds":60,"match":{}}`, "rate_pps", "only valid"},
		{"rate_limit without rate", `{"action":"rate_limit","ttl_seconds":60,"match":{}}`, "rate_pps", "required"},
		{"no ttl", `{"action":"drop","match":{}}`, "ttl_seconds", "required"},
		{"ttl too long", `{"action":"drop","ttl_seconds":99999999,"match":{}}`, "ttl_seconds", "between"},
		{"bad origin", `{"action":"drop","ttl_seconds":60,"origin":"me","match":{}}`, "origin", "not one of"},
		{"bad id", `{"id":"a b","action":"drop","ttl_seconds":60,"match":{}}`, "id", "letters"},
		{"bad cidr", `{"action":"drop","ttl_seconds":60,"match":{"src":"10.0.0.0/33"}}`, "match.src", "not a CIDR"},
		{"mixed families", `{"action":"drop","ttl_seconds":60,"match":{"src":"10.0.0.0/8","dst":"2001:db8::/32"}}`, "match.dst", "family"},
		{"bad protocol", `{"action":"drop","ttl_seconds":60,"match":{"protocol":"sctpx"}}`, "match.protocol", "not tcp"},
		{"ports on icmp", `{"action":"drop","ttl_seconds":60,"match":{"protocol":"icmp","dst_ports":["80"]}}`, "match.protocol", "ports need"},
		{"port range reversed", `{"action":"drop","ttl_seconds":60,"match":{"dst_ports":["90-80"]}}`, "match.dst_ports", "start is above end"},
		{"port too big", `{"action":"drop","ttl_seconds":60,"match":{"src_ports":["70000"]}}`, "match.src_ports", "out of range"},
		{"bad flag", `{"action":"drop","ttl_seconds":60,"match":{"tcp_flags":"syn,fog"}}`, "match.tcp_flags", "not a TCP flag"},
		{"flag set and unset", `{"action":"drop","ttl_seconds":60,"match":{"tcp_flags":"syn,!syn"}}`, "match.tcp_flags", "both"},
		{"flags on udp", `{"action":"drop","ttl_seconds":60,"match":{"protocol":"udp","tcp_flags":"syn"}}`, "match.protocol", "need protocol tcp"},
		{"icmp type on tcp", `{"action":"drop","ttl_seconds":60,"match":{"protocol":"tcp","icmp_type":8}}`, "match.icmp_type", "needs protocol icmp"},
		{"icmp type range", `{"action":"drop","ttl_seconds":60,"match":{"icmp_type":300}}`, "match.icmp_type", "0-255"},
		{"ttl range", `{"action":"drop","ttl_seconds":60,"match":{"ttl":"0-256"}}`, "match.ttl", "out of range"},
		{"length text", `{"action":"drop","ttl_seconds":60,"match":{"length":"big"}}`, "match.length", "not N or A-B"},
		{"icmpv6 with v4", `{"action":"drop","ttl_seconds":60,"match":{"src":"10.0.0.1","protocol":"icmpv6"}}`, "match.protocol", "IPv6"},
		{"later with ports", `{"action":"drop","ttl_seconds":60,"match":{"fragment":"later","dst_ports":["53"]}}`, "match.fragment", "no L4 header"},
		{"bad fragment", `{"action":"drop","ttl_seconds":60,"match":{"fragment":"some"}}`, "match.fragment", "not one of"},
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

func TestParseRuleAcceptsTheContractExample(t *testing.T) {
	r, err := ParseRule([]byte(`{
	  "action": "rate_limit", "rate_pps": 1000,
	  "match": {"src": "203.0.113.0/24", "dst": "192.0.2.10/32", "protocol": "tcp",
	    "src_ports": ["161", "1000-2000"], "dst_ports": ["25565"], "tcp_flags": "syn,!ack",
	    "ttl": "200-255", "length": "40-40", "tcp_window": "0-0", "fragment": "none"},
	  "ttl_seconds": 600, "reason": "why", "origin": "manual"}`))
	if err != nil {
		t.Fatal(err)
	}
	m, err := r.Match.Compile()
	if err != nil {
		t.Fatal(err)
	}
	if m.FlagsSet != FlagSYN || m.FlagsUnset != FlagACK || m.Family != 4 || m.Protocol != ProtoTCP {
		t.Errorf("compiled wrongly: %+v", m)
	}
	if got := FormatTCPFlags(m.FlagsSet, m.FlagsUnset); got != "syn,!ack" {
		t.Errorf("FormatTCPFlags = %q", got)
	}
}

func TestMatcherSemantics(t *testing.T) {
	syn := Packet{Family: 4, Src: netip.MustParseAddr("203.0.113.7"), Dst: netip.MustParseAddr("192.0.2.10"),
		Protocol: ProtoTCP, TTL: 240, Length: 40, HasL4: true, SrcPort: 1500, DstPort: 25565, TCPFlags: FlagSYN}
	later := syn
	later.Fragment, later.HasL4, later.SrcPort, later.DstPort, later.TCPFlags = FragLater, false, 0, 0, 0
	ping6 := Packet{Family: 6, Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("2001:db8::2"),
		Protocol: ProtoICMPv6, TTL: 64, Length: 104, HasL4: true, ICMPType: 128}
	icmpType := func(n int) *int { return &n }

	cases := []struct {
		name  string
		match Match
		pkt   Packet
		want  bool
	}{
		{"empty matches any IP packet", Match{}, syn, true},
		{"empty never matches non-IP", Match{}, Packet{}, false},
		{"src prefix", Match{Src: "203.0.113.0/24"}, syn, true},
		{"src prefix miss", Match{Src: "198.51.100.0/24"}, syn, false},
		{"v4 prefix never matches v6", Match{Src: "0.0.0.0/0"}, ping6, false},
		{"port range and list", Match{SrcPorts: []string{"161", "1000-2000"}}, syn, true},
		{"port list miss", Match{DstPorts: []string{"80", "443"}}, syn, false},
		{"ports never match a later fragment", Match{Protocol: "tcp", DstPorts: []string{"0-65535"}}, later, false},
		{"syn,!ack", Match{TCPFlags: "syn,!ack"}, syn, true},
		{"ack required", Match{TCPFlags: "ack"}, syn, false},
		{"window 0-0", Match{TCPWindow: "0-0"}, syn, true},
		{"ttl range", Match{TTL: "200-255"}, syn, true},
		{"ttl range miss", Match{TTL: "1-64"}, syn, false},
		{"length", Match{Length: "40"}, syn, true},
		{"icmpv6 echo", Match{Protocol: "icmpv6", ICMPType: icmpType(128)}, ping6, true},
		{"icmp type alone matches icmpv6", Match{ICMPType: icmpType(128)}, ping6, true},
		{"icmp (v4) never matches icmpv6", Match{Protocol: "icmp"}, ping6, false},
		{"fragment none", Match{Fragment: FragmentNone}, syn, true},
		{"fragment any", Match{Fragment: FragmentAny}, later, true},
		{"fragment later", Match{Fragment: FragmentLater}, later, true},
		{"fragment first miss", Match{Fragment: FragmentFirst}, later, false},
		{"protocol number", Match{Protocol: "6"}, later, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := tc.match.Compile()
			if err != nil {
				t.Fatal(err)
			}
			if got := m.Matches(&tc.pkt); got != tc.want {
				t.Errorf("Matches = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestClassifyFirstMatchBySlot(t *testing.T) {
	pkt := Packet{Family: 4, Src: netip.MustParseAddr("10.0.0.1"), Protocol: ProtoUDP, HasL4: true, DstPort: 53}
	compile := func(m Match) *Matcher {
		c, err := m.Compile()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	matchers := []*Matcher{compile(Match{Protocol: "udp"}), compile(Match{DstPorts: []string{"53"}}), compile(Match{Protocol: "tcp"})}
	if got := Classify(matchers, []int{5, 2, 0}, &pkt); got != 1 {
		t.Errorf("Classify = %d, want 1 (the matching rule with the lowest slot)", got)
	}
	if got := Classify(matchers[2:], []int{0}, &pkt); got != -1 {
		t.Errorf("Classify = %d, want -1 (no rule matches)", got)
	}
}
