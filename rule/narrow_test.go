package rule

import (
	"slices"
	"testing"
)

func TestNarrowing(t *testing.T) {
	icmpType := func(n int) *int { return &n }
	cases := []struct {
		name  string
		match Match
		want  []string
	}{
		{"empty", Match{}, nil},
		{"src 0.0.0.0/0 covers all IPv4", Match{Src: "0.0.0.0/0"}, nil},
		{"dst ::/0 covers all IPv6", Match{Dst: "::/0"}, nil},
		{"src /1 narrows", Match{Src: "128.0.0.0/1"}, []string{"src"}},
		{"dst host", Match{Dst: "192.0.2.10"}, []string{"dst"}},
		{"protocol", Match{Protocol: "udp"}, []string{"protocol"}},
		{"protocol number 0 narrows", Match{Protocol: "0"}, []string{"protocol"}},
		{"ttl 0-255 covers all", Match{TTL: "0-255"}, nil},
		{"ttl 1-255 narrows", Match{TTL: "1-255"}, []string{"ttl"}},
		{"ttl 0-254 narrows", Match{TTL: "0-254"}, []string{"ttl"}},
		{"length 0-65535 covers all", Match{Length: "0-65535"}, nil},
		{"length 40", Match{Length: "40"}, []string{"length"}},
		{"dst_ports 0-65535 covers all", Match{DstPorts: []string{"0-65535"}}, nil},
		{"dst_ports split but complete", Match{DstPorts: []string{"1000-65535", "0-999"}}, nil},
		{"dst_ports overlapping but complete", Match{DstPorts: []string{"0-40000", "30000-65535", "5"}}, nil},
		{"dst_ports with a gap", Match{DstPorts: []string{"0-999", "1001-65535"}}, []string{"dst_ports"}},
		{"src_ports missing 65535", Match{SrcPorts: []string{"0-65534"}}, []string{"src_ports"}},
		{"tcp_window 0-65535 covers all (its implied tcp is not counted)", Match{TCPWindow: "0-65535"}, nil},
		{"tcp_window 0", Match{TCPWindow: "0"}, []string{"tcp_window"}},
		{"tcp_flags", Match{TCPFlags: "syn,!ack"}, []string{"tcp_flags"}},
		{"icmp_type", Match{ICMPType: icmpType(8)}, []string{"icmp_type"}},
		{"fragment any is fragments only", Match{Fragment: FragmentAny}, []string{"fragment"}},
		{"fragment none", Match{Fragment: FragmentNone}, []string{"fragment"}},
		{"all wide fields together", Match{Src: "0.0.0.0/0", Dst: "0.0.0.0/0", TTL: "0-255", Length: "0-65535",
			SrcPorts: []string{"0-65535"}, DstPorts: []string{"0-65535"}, TCPWindow: "0-65535"}, nil},
		{"contract order", Match{Fragment: FragmentNone, TTL: "200-255", Protocol: "tcp", Src: "203.0.113.0/24",
			DstPorts: []string{"25565"}, TCPFlags: "syn"}, []string{"src", "protocol", "dst_ports", "tcp_flags", "ttl", "fragment"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := tc.match.Compile()
			if err != nil {
				t.Fatal(err)
			}
			if got := m.Narrowing(); !slices.Equal(got, tc.want) {
				t.Errorf("Narrowing = %q, want %q", got, tc.want)
			}
		})
	}
}
