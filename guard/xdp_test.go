package guard

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/packetscope/packetscope/internal/testframe"
	"github.com/packetscope/packetscope/rule"
	"golang.org/x/sys/unix"
)

// TestXDPParserAgrees checks the kernel parser against ParseFrame on every
// parse case, through the sampled header the program emits.
func TestXDPParserAgrees(t *testing.T) {
	g := openTestGuard(t, Config{SampleEvery: 1})
	for _, tc := range testframe.ParseCases {
		t.Run(tc.Name, func(t *testing.T) {
			frame := tc.Frame.Build()
			if len(frame) < 14 {
				return // BPF_PROG_TEST_RUN refuses frames shorter than Ethernet; so do NICs
			}
			if ret := run(t, g.Program(), frame); ret != xdpPass {
				t.Fatalf("verdict %d, want pass", ret)
			}
			got := nextSample(t, g).Packet
			if want := rule.ParseFrame(frame); got != want {
				t.Errorf("kernel parsed\n %+v\nParseFrame\n %+v", got, want)
			}
		})
	}
}

func intp(v int) *int { return &v }

func TestXDPVerdicts(t *testing.T) {
	synV4 := testframe.Frame{Src: testframe.V4A, Dst: testframe.V4B, Proto: rule.ProtoTCP, TTL: 64, L4: testframe.TCP(40000, 80, rule.FlagSYN, 1024)}.Build()
	ackV4 := testframe.Frame{Src: testframe.V4A, Dst: testframe.V4B, Proto: rule.ProtoTCP, TTL: 64, L4: testframe.TCP(40000, 80, rule.FlagACK, 1024)}.Build()
	echoV4 := testframe.Frame{Src: testframe.V4A, Dst: testframe.V4B, Proto: rule.ProtoICMP, TTL: 64, L4: testframe.ICMP(8)}.Build()
	udpV6 := testframe.Frame{Src: testframe.V6A, Dst: testframe.V6B, Proto: rule.ProtoUDP, TTL: 200, L4: testframe.UDP(161, 5000, 100)}.Build()
	fragV4 := testframe.Frame{Src: testframe.V4A, Dst: testframe.V4B, Proto: rule.ProtoUDP, TTL: 64, FragOff: 100, L4: testframe.UDP(1, 2, 0)}.Build()
	qinqSyn := testframe.Frame{Tags: []uint16{testframe.QinQ, testframe.VLAN}, Src: testframe.V4A, Dst: testframe.V4B, Proto: rule.ProtoTCP, TTL: 64, L4: testframe.TCP(1, 80, rule.FlagSYN, 0)}.Build()
	arp := testframe.Frame{EtherType: 0x0806}.Build()
	cases := []struct {
		name  string
		rules []rule.Rule
		frame []byte
		want  uint32
		hit   int // index of the rule that must count the packet, -1 none
	}{
		{"no rules", nil, synV4, xdpPass, -1},
		{"syn flood rule", []rule.Rule{{Match: rule.Match{Protocol: "tcp", TCPFlags: "syn,!ack", DstPorts: []string{"80"}}}}, synV4, xdpDrop, 0},
		{"syn rule spares ack", []rule.Rule{{Match: rule.Match{TCPFlags: "syn,!ack"}}}, ackV4, xdpPass, -1},
		{"icmp type", []rule.Rule{{Match: rule.Match{Protocol: "icmp", ICMPType: intp(8)}}}, echoV4, xdpDrop, 0},
		{"icmp type other", []rule.Rule{{Match: rule.Match{Protocol: "icmp", ICMPType: intp(0)}}}, echoV4, xdpPass, -1},
		{"udp v6 src port and ttl", []rule.Rule{{Match: rule.Match{Protocol: "udp", SrcPorts: []string{"100-200"}, TTL: "128-255", Dst: "fd00:202::/64"}}}, udpV6, xdpDrop, 0},
		{"v4 rule spares v6", []rule.Rule{{Match: rule.Match{Src: "10.0.0.0/8", Protocol: "udp"}}}, udpV6, xdpPass, -1},
		{"length range", []rule.Rule{{Match: rule.Match{Length: "148-148"}}}, udpV6, xdpDrop, 0},
		{"window", []rule.Rule{{Match: rule.Match{TCPWindow: "1024"}}}, synV4, xdpDrop, 0},
		{"later fragment", []rule.Rule{{Match: rule.Match{Fragment: rule.FragmentLater}}}, fragV4, xdpDrop, 0},
		{"ports never match a later fragment", []rule.Rule{{Match: rule.Match{DstPorts: []string{"0-65535"}}}}, fragV4, xdpPass, -1},
		{"qinq", []rule.Rule{{Match: rule.Match{TCPFlags: "syn"}}}, qinqSyn, xdpDrop, 0},
		{"non-ip never matches", []rule.Rule{{Match: rule.Match{}}}, arp, xdpPass, -1},
		{"empty match matches all ip", []rule.Rule{{Match: rule.Match{}}}, udpV6, xdpDrop, 0},
		{"monitor passes and counts", []rule.Rule{{Action: rule.ActionMonitor, Match: rule.Match{Protocol: "tcp"}}}, synV4, xdpPass, 0},
		{"first match wins", []rule.Rule{{Action: rule.ActionMonitor, Match: rule.Match{Protocol: "tcp"}}, {Match: rule.Match{Protocol: "tcp"}}}, synV4, xdpPass, 0},
		{"cidr only rule", []rule.Rule{{Match: rule.Match{Src: "10.202.0.0/16"}}}, synV4, xdpDrop, 0},
		{"cidr v6 host", []rule.Rule{{Match: rule.Match{Src: "fd00:202::1"}}}, udpV6, xdpDrop, 0},
		{"fingerprint before cidr", []rule.Rule{{Match: rule.Match{Src: "10.202.1.1/32"}}, {Action: rule.ActionMonitor, Match: rule.Match{Protocol: "tcp"}}}, synV4, xdpPass, 1},
		{"longer cidr inside a lower slot", []rule.Rule{{Match: rule.Match{Src: "10.0.0.0/8"}}, {Action: rule.ActionMonitor, Match: rule.Match{Src: "10.202.1.0/24"}}}, synV4, xdpDrop, 0},
		{"src and dst prefixes", []rule.Rule{{Match: rule.Match{Src: "10.202.1.0/24", Dst: "10.202.1.2", Protocol: "tcp"}}}, synV4, xdpDrop, 0},
		{"dst prefix misses", []rule.Rule{{Match: rule.Match{Src: "10.202.1.0/24", Dst: "10.202.1.3", Protocol: "tcp"}}}, synV4, xdpPass, -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := openTestGuard(t, Config{NoSampling: true})
			var ids []string
			for _, r := range tc.rules {
				ids = append(ids, mustAdd(t, g.Rules(), r).ID)
			}
			for range 3 {
				if got := run(t, g.Program(), tc.frame); got != tc.want {
					t.Fatalf("verdict %d, want %d", got, tc.want)
				}
			}
			for i, r := range g.Rules().List() {
				want := uint64(0)
				if tc.hit >= 0 && r.ID == ids[tc.hit] {
					want = 3
				}
				if r.Packets != want || r.Bytes != want*uint64(len(tc.frame)) {
					t.Errorf("rule %d (%s): %d packets %d bytes, want %d packets", i, r.ID, r.Packets, r.Bytes, want)
				}
			}
		})
	}
}

func TestXDPRateLimit(t *testing.T) {
	g := openTestGuard(t, Config{NoSampling: true})
	mustAdd(t, g.Rules(), rule.Rule{Action: rule.ActionRateLimit, RatePPS: 5, Match: rule.Match{Protocol: "udp"}})
	f := testframe.Frame{Src: testframe.V4A, Dst: testframe.V4B, Proto: rule.ProtoUDP, TTL: 1, L4: testframe.UDP(1, 2, 0)}.Build()
	passed := 0
	for range 50 {
		if run(t, g.Program(), f) == xdpPass {
			passed++
		}
	}
	// The bucket starts full (one second of rate); 50 packets take far less
	// than a second, so at most one more token can accrue.
	if passed < 5 || passed > 6 {
		t.Errorf("%d of 50 packets passed a 5 pps limit, want 5 or 6", passed)
	}
	st := mustIfaceStats(t, g)
	var limited uint64
	for _, s := range st {
		limited += s.Actions[2]
	}
	if limited != uint64(50-passed) {
		t.Errorf("rate_limited counter %d, want %d", limited, 50-passed)
	}
}

func TestXDPCountsProtocolsAndFlags(t *testing.T) {
	g := openTestGuard(t, Config{NoSampling: true})
	mustAdd(t, g.Rules(), rule.Rule{Match: rule.Match{TCPFlags: "syn,!ack"}})
	frames := [][]byte{
		testframe.Frame{Src: testframe.V4A, Dst: testframe.V4B, Proto: rule.ProtoTCP, TTL: 1, L4: testframe.TCP(1, 2, rule.FlagSYN, 0)}.Build(),
		testframe.Frame{Src: testframe.V4A, Dst: testframe.V4B, Proto: rule.ProtoTCP, TTL: 1, L4: testframe.TCP(1, 2, rule.FlagSYN|rule.FlagACK, 0)}.Build(),
		testframe.Frame{Src: testframe.V6A, Dst: testframe.V6B, Proto: rule.ProtoICMPv6, TTL: 1, L4: testframe.ICMP(128)}.Build(),
		testframe.Frame{EtherType: 0x0806}.Build(),
	}
	for _, f := range frames {
		run(t, g.Program(), f)
	}
	var sum IfaceStats
	for _, s := range mustIfaceStats(t, g) {
		for i := range s.Actions {
			sum.Actions[i] += s.Actions[i]
		}
		for i := range s.Protocols {
			sum.Protocols[i] += s.Protocols[i]
		}
		for i := range s.TcpFlags {
			sum.TcpFlags[i] += s.TcpFlags[i]
		}
	}
	if sum.Actions != [4]uint64{3, 1, 0, 0} {
		t.Errorf("actions %v, want pass 3 drop 1", sum.Actions)
	}
	if sum.Protocols != [7]uint64{2, 0, 0, 1, 0, 1, 0} {
		t.Errorf("protocols %v, want tcp 2 icmpv6 1 non_ip 1", sum.Protocols)
	}
	if sum.TcpFlags != [6]uint64{1, 1, 0, 0, 0, 0} {
		t.Errorf("tcp flags %v, want syn 1 synack 1", sum.TcpFlags)
	}
}

func TestTableErrors(t *testing.T) {
	g := openTestGuard(t, Config{NoSampling: true, MaxRules: 3})
	tb := g.Rules()
	if _, err := tb.Add(rule.Rule{Action: "explode", TTLSeconds: 5}); !isFieldError(err) {
		t.Errorf("invalid action: %v, want a FieldError", err)
	}
	r := mustAdd(t, tb, rule.Rule{ID: "a", Match: rule.Match{Protocol: "udp"}})
	if r.ExpiresAt.Sub(r.CreatedAt) != 600*time.Second || r.Origin != "manual" {
		t.Errorf("stored rule %+v: want expiry 600s after creation and origin manual", r)
	}
	if _, err := tb.Add(rule.Rule{ID: "a", Action: rule.ActionDrop, TTLSeconds: 5}); !errors.Is(err, rule.ErrRuleExists) {
		t.Errorf("duplicate id: %v, want ErrRuleExists", err)
	}
	mustAdd(t, tb, rule.Rule{Match: rule.Match{Src: "10.0.0.0/8"}})
	mustAdd(t, tb, rule.Rule{Match: rule.Match{Protocol: "tcp"}})
	if _, err := tb.Add(rule.Rule{Action: rule.ActionDrop, TTLSeconds: 5}); !errors.Is(err, rule.ErrRuleTableFull) {
		t.Errorf("full table: %v, want ErrRuleTableFull", err)
	}
	if err := tb.Delete("nope"); !errors.Is(err, rule.ErrRuleNotFound) {
		t.Errorf("delete unknown: %v, want ErrRuleNotFound", err)
	}
	if err := tb.Delete("a"); err != nil {
		t.Fatal(err)
	}
	if n := len(tb.List()); n != 2 {
		t.Errorf("%d rules after delete, want 2", n)
	}
}

func TestTablePrefixLengthLimit(t *testing.T) {
	g := openTestGuard(t, Config{NoSampling: true})
	for l := 9; l < 9+8; l++ {
		mustAdd(t, g.Rules(), rule.Rule{Match: rule.Match{Src: netip.PrefixFrom(testframe.V4A, l).Masked().String(), Protocol: "tcp"}})
	}
	_, err := g.Rules().Add(rule.Rule{Action: rule.ActionDrop, TTLSeconds: 5, Match: rule.Match{Src: "10.202.1.0/30", Protocol: "tcp"}})
	var fe *rule.FieldError
	if !errors.As(err, &fe) || fe.Field != "match.src" {
		t.Errorf("ninth prefix length: %v, want a match.src FieldError", err)
	}
}

func TestXDPExpiry(t *testing.T) {
	g := openTestGuard(t, Config{NoSampling: true, ExpireEvery: time.Hour})
	mustAdd(t, g.Rules(), rule.Rule{TTLSeconds: 1, Match: rule.Match{Protocol: "udp"}})
	mustAdd(t, g.Rules(), rule.Rule{TTLSeconds: 1, Match: rule.Match{Src: "10.202.0.0/16"}})
	udp := testframe.Frame{Src: testframe.V4A, Dst: testframe.V4B, Proto: rule.ProtoUDP, TTL: 1, L4: testframe.UDP(1, 2, 0)}.Build()
	tcp := testframe.Frame{Src: testframe.V4A, Dst: testframe.V4B, Proto: rule.ProtoTCP, TTL: 1, L4: testframe.TCP(1, 2, 0, 0)}.Build()
	if run(t, g.Program(), udp) != xdpDrop || run(t, g.Program(), tcp) != xdpDrop {
		t.Fatal("rules not in force before expiry")
	}
	time.Sleep(1100 * time.Millisecond)
	// The agent has not swept yet (ExpireEvery is an hour): the kernel alone
	// must ignore the expired rules.
	if n := g.Rules().Len(); n != 2 {
		t.Fatalf("%d rules, want both still listed", n)
	}
	if run(t, g.Program(), udp) != xdpPass || run(t, g.Program(), tcp) != xdpPass {
		t.Error("expired rules still match in the kernel")
	}
	if n := g.Rules().Expire(time.Now()); n != 2 || g.Rules().Len() != 0 {
		t.Errorf("Expire removed %d, %d left; want 2 removed, none left", n, g.Rules().Len())
	}
}

// TestXDPTracePassRecord: with TraceXDP on, a passed frame leaves its
// address and start time in xdp_pass for the stack's traces; a dropped one
// and a guard with tracing off leave nothing.
func TestXDPTracePassRecord(t *testing.T) {
	syn := testframe.Frame{Src: testframe.V4A, Dst: testframe.V4B, Proto: rule.ProtoTCP, TTL: 64, L4: testframe.TCP(40000, 80, rule.FlagSYN, 1024)}.Build()
	echo := testframe.Frame{Src: testframe.V4A, Dst: testframe.V4B, Proto: rule.ProtoICMP, TTL: 64, L4: testframe.ICMP(8)}.Build()
	g := openTestGuard(t, Config{NoSampling: true})
	mustAdd(t, g.Rules(), rule.Rule{Match: rule.Match{Protocol: "icmp"}})
	record := func() (data, ts uint64) {
		var vals []struct{ Data, Ts uint64 }
		if err := g.XDPPass().Lookup(uint32(0), &vals); err != nil {
			t.Fatal(err)
		}
		for _, v := range vals { // the CPU the test run used
			if v.Data != 0 {
				return v.Data, v.Ts
			}
		}
		return 0, 0
	}

	run(t, g.Program(), syn)
	if d, _ := record(); d != 0 {
		t.Fatalf("tracing off: the guard noted a frame (%#x)", d)
	}
	if err := g.TraceXDP(true); err != nil {
		t.Fatal(err)
	}
	if got := run(t, g.Program(), echo); got != xdpDrop {
		t.Fatalf("echo verdict %d, want drop", got)
	}
	if d, _ := record(); d != 0 {
		t.Fatalf("a dropped frame was noted (%#x)", d)
	}
	before := monotonicNs(t)
	if got := run(t, g.Program(), syn); got != xdpPass {
		t.Fatalf("syn verdict %d, want pass", got)
	}
	after := monotonicNs(t)
	d, ts := record()
	if d == 0 || ts < before || ts > after {
		t.Fatalf("a passed frame was not noted: data %#x, ts %d, want within [%d, %d]", d, ts, before, after)
	}
	if err := g.TraceXDP(false); err != nil {
		t.Fatal(err)
	}
}

// monotonicNs reads CLOCK_MONOTONIC, bpf_ktime_get_ns's clock.
func monotonicNs(t *testing.T) uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return uint64(ts.Nano())
}
