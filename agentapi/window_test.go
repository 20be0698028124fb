package agentapi

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"reflect"
	"runtime"
	"testing"
	"time"

	"github.com/packetscope/packetscope/rule"
)

// fakeClock is a settable clock for the window.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func tcpSample(at time.Time, src string, dport uint16, flags uint8) rule.Sample {
	return rule.Sample{Time: at, Interface: "eth0", Packet: rule.Packet{
		Family: 4, Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr("192.0.2.10"),
		Protocol: rule.ProtoTCP, TTL: 64, Length: 40, HasL4: true,
		SrcPort: 40000, DstPort: dport, TCPFlags: flags, TCPWindow: 512,
	}}
}

func TestWindowEvictsByCount(t *testing.T) {
	clk := &fakeClock{t0}
	w := NewTrafficWindow(WindowConfig{MaxSamples: 100_000, MaxAge: time.Hour, Now: clk.now})
	s := tcpSample(t0, "198.51.100.1", 80, rule.FlagSYN)
	const adds = 1_000_000
	for i := range adds {
		s.Packet.SrcPort = uint16(i)
		s.Time = t0.Add(time.Duration(i) * time.Microsecond)
		w.Add(s)
	}
	st := w.Stats()
	if st.Samples != 100_000 || st.Added != adds || st.EvictedCount != adds-100_000 || st.EvictedAge != 0 {
		t.Fatalf("stats = %+v, want 100,000 held, %d added, %d evicted by count", st, adds, adds-100_000)
	}
	if got := w.ring.capacity(); got > 100_000 {
		t.Fatalf("ring capacity %d exceeds MaxSamples 100,000", got)
	}
	clk.t = t0.Add(2 * time.Second)
	r := w.Report(t0, clk.t, 5)
	if r.Totals.SampledPackets != 100_000 {
		t.Fatalf("report counts %d packets, want the 100,000 held", r.Totals.SampledPackets)
	}
	// The newest five, oldest first.
	for i, s := range r.Samples {
		if want := uint16(adds - 5 + i); s.Packet.SrcPort != want {
			t.Fatalf("sample %d has src port %d, want %d (newest last)", i, s.Packet.SrcPort, want)
		}
	}
}

func TestWindowEvictsByAge(t *testing.T) {
	clk := &fakeClock{t0}
	w := NewTrafficWindow(WindowConfig{MaxSamples: 2_000_000, MaxAge: 10 * time.Second, Now: clk.now})
	const adds = 1_000_000
	// 1M samples over 100 s: 10,000/s, so at most ~100,000 (10 s) are kept.
	for i := range adds {
		clk.t = t0.Add(time.Duration(i) * 100 * time.Microsecond)
		w.Add(tcpSample(clk.t, "198.51.100.1", 80, rule.FlagSYN))
	}
	st := w.Stats()
	if st.Samples > 100_001 || st.Samples < 99_000 {
		t.Fatalf("window holds %d samples, want about 100,000 (10 s at 10,000/s)", st.Samples)
	}
	if st.EvictedAge != adds-uint64(st.Samples) || st.EvictedCount != 0 {
		t.Fatalf("stats = %+v: want every eviction by age", st)
	}
	if w.ring.capacity() > 4*101_000 {
		t.Fatalf("ring capacity %d: the ring grew far beyond what it holds", w.ring.capacity())
	}
	// Nothing arrives for a minute: a report sees an empty window and memory is released.
	clk.t = clk.t.Add(time.Minute)
	r := w.Report(t0, clk.t, 10)
	if r.Totals.SampledPackets != 0 || len(r.Samples) != 0 || w.Stats().Samples != 0 {
		t.Fatalf("after MaxAge of silence the report still has %d packets", r.Totals.SampledPackets)
	}
}

func TestWindowMemoryBounded(t *testing.T) {
	w := NewTrafficWindow(WindowConfig{MaxSamples: 10_000, MaxAge: time.Hour})
	s := tcpSample(time.Now(), "198.51.100.1", 80, rule.FlagSYN)
	for range 20_000 { // fill the ring first
		w.Add(s)
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 1_000_000 {
		w.Add(s)
	}
	runtime.ReadMemStats(&after)
	if n := after.Mallocs - before.Mallocs; n > 1000 {
		t.Fatalf("1M Adds into a full window made %d allocations, want (nearly) none", n)
	}
}

func TestWindowRingWrapAfterAgeEviction(t *testing.T) {
	// Exercise the ring's index arithmetic: wrap, shrink by age, grow again;
	// in one chunk, across chunks (10,000 samples: 4,096 + 4,096 + 1,808),
	// and a ring bounded by age, not count, which slides down to its start.
	checkRingAgainstModel(t, 7, 50, 1)
	checkRingAgainstModel(t, 10_000, 40, 1_500)
	checkRingAgainstModel(t, 100_000, 40, 1_500)
}

// checkRingAgainstModel adds perStep samples a second for steps seconds,
// some from the future, to a window of maxSamples and 10 s, and compares
// its samples after each second with a plain model of the same eviction.
func checkRingAgainstModel(t *testing.T, maxSamples, steps, perStep int) {
	t.Helper()
	clk := &fakeClock{t0}
	w := NewTrafficWindow(WindowConfig{MaxSamples: maxSamples, MaxAge: 10 * time.Second, Now: clk.now})
	type item struct {
		at   time.Time
		port uint16
	}
	var model []item // what the window must hold: same eviction rules, written plainly
	id := 0
	for i := range steps {
		clk.t = t0.Add(time.Duration(i) * time.Second)
		if i%13 == 0 { // samples from the future, so times are not monotonic
			clk.t = clk.t.Add(time.Duration(i%3) * 8 * time.Second)
		}
		for range perStep {
			s := tcpSample(clk.t, "198.51.100.1", 80, rule.FlagSYN)
			s.Packet.SrcPort = uint16(id)
			w.Add(s)
			for len(model) > 0 && model[0].at.Before(clk.t.Add(-10*time.Second)) {
				model = model[1:]
			}
			model = append(model, item{clk.t, uint16(id)})
			if len(model) > maxSamples {
				model = model[1:]
			}
			id++
		}
		r := w.Report(time.Time{}, clk.t.Add(time.Hour), 2*maxSamples)
		var got, want []uint16
		for _, s := range r.Samples {
			got = append(got, s.Packet.SrcPort)
		}
		for _, m := range model {
			want = append(want, m.port)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("max %d, step %d: %d samples, want %d (first %v, want %v)", maxSamples, i, len(got), len(want),
				got[:min(len(got), 5)], want[:min(len(want), 5)])
		}
		if c := w.ring.capacity(); c > maxSamples || c > 2*len(model)+chunkLen {
			t.Fatalf("max %d, step %d: ring capacity %d for %d samples", maxSamples, i, c, len(model))
		}
	}
}

func TestWindowTimeFilter(t *testing.T) {
	clk := &fakeClock{t0.Add(time.Hour)}
	w := NewTrafficWindow(WindowConfig{MaxAge: 2 * time.Hour, SampleEvery: 100, Now: clk.now})
	for i := range 60 {
		s := tcpSample(t0.Add(time.Duration(i)*time.Second), "198.51.100.1", 80, rule.FlagSYN)
		s.Packet.SrcPort = uint16(i)
		w.Add(s)
	}
	r := w.Report(t0.Add(10*time.Second), t0.Add(19*time.Second), 3)
	if r.Totals.SampledPackets != 10 || r.Totals.SampledBytes != 400 {
		t.Fatalf("totals %+v, want 10 packets / 400 bytes in [10 s, 19 s]", r.Totals)
	}
	if r.Totals.EstimatedPackets != 1000 || r.Totals.EstimatedBytes != 40000 || r.SampleEvery != 100 {
		t.Fatalf("estimates %+v at 1-in-%d, want sampled x 100", r.Totals, r.SampleEvery)
	}
	if len(r.Samples) != 3 || r.Samples[0].Packet.SrcPort != 17 || r.Samples[2].Packet.SrcPort != 19 {
		t.Fatalf("samples %+v, want src ports 17, 18, 19", r.Samples)
	}
	if got := r.Top["src_port"]; len(got) != 10 || got[0] != (ValueCount{"10", 1}) {
		t.Fatalf("src_port top %v, want the 10 ports of the window, ties ordered by value", got)
	}
	if r.From != t0.Add(10*time.Second) || r.To != t0.Add(19*time.Second) {
		t.Fatalf("report window %v..%v, want the requested one", r.From, r.To)
	}
}

func TestWindowTopK(t *testing.T) {
	clk := &fakeClock{t0}
	w := NewTrafficWindow(WindowConfig{TopK: 3, Now: clk.now,
		Protected: func() []netip.Prefix { return []netip.Prefix{netip.MustParsePrefix("192.0.2.10/32")} }})
	add := func(n int, s rule.Sample) {
		for range n {
			w.Add(s)
		}
	}
	// A SYN flood from a spread of 10.1.x.y sources to port 80, some ordinary
	// traffic, a UDP flow, ICMP echo, an IPv6 flow, a later fragment, a non-IP frame.
	for i := range 500 {
		add(1, tcpSample(t0, fmt.Sprintf("10.1.%d.%d", i%4, i%250+1), 80, rule.FlagSYN))
	}
	add(30, tcpSample(t0, "198.51.100.7", 443, rule.FlagACK|rule.FlagPSH))
	add(20, tcpSample(t0, "198.51.100.8", 443, 0))
	udp := rule.Sample{Time: t0, Packet: rule.Packet{Family: 4, Src: netip.MustParseAddr("198.51.100.9"),
		Dst: netip.MustParseAddr("192.0.2.10"), Protocol: rule.ProtoUDP, TTL: 250, Length: 1200, HasL4: true, SrcPort: 53, DstPort: 5353}}
	add(40, udp)
	icmp := rule.Sample{Time: t0, Packet: rule.Packet{Family: 4, Src: netip.MustParseAddr("198.51.100.10"),
		Dst: netip.MustParseAddr("192.0.2.10"), Protocol: rule.ProtoICMP, TTL: 64, Length: 84, HasL4: true, ICMPType: 8}}
	add(15, icmp)
	v6 := rule.Sample{Time: t0, Packet: rule.Packet{Family: 6, Src: netip.MustParseAddr("2001:db8:1:2::5"),
		Dst: netip.MustParseAddr("2001:db8:ff::1"), Protocol: rule.ProtoICMPv6, TTL: 64, Length: 104, HasL4: true, ICMPType: 128}}
	add(12, v6)
	frag := udp
	frag.Packet.Fragment, frag.Packet.HasL4 = rule.FragLater, false
	add(11, frag)
	add(1000, rule.Sample{Time: t0, Packet: rule.Packet{Family: 0}}) // not IP: counted nowhere but totals

	r := w.Report(t0, t0, 0)
	want := map[string][]ValueCount{
		"src":        {{"198.51.100.9", 51}, {"198.51.100.7", 30}, {"198.51.100.8", 20}},
		"src_prefix": {{"10.1.0.0/24", 125}, {"10.1.1.0/24", 125}, {"10.1.2.0/24", 125}},
		"dst":        {{"192.0.2.10", 616}, {"2001:db8:ff::1", 12}},
		"protocol":   {{"tcp", 550}, {"udp", 51}, {"icmp", 15}},
		"src_port":   {{"40000", 550}, {"53", 40}},
		"dst_port":   {{"80", 500}, {"443", 50}, {"5353", 40}},
		"tcp_flags":  {{"syn", 500}, {"psh,ack", 30}, {"!fin,!syn,!rst,!psh,!ack,!urg,!ece,!cwr", 20}},
		"ttl":        {{"64", 577}, {"250", 51}},
		"length":     {{"40", 550}, {"1200", 51}, {"84", 15}},
		"tcp_window": {{"512", 550}},
		"icmp_type":  {{"8", 15}, {"128", 12}},
		"fragment":   {{"none", 617}, {"later", 11}},
	}
	if !reflect.DeepEqual(r.Top, want) {
		for _, f := range TopFields {
			if !reflect.DeepEqual(r.Top[f], want[f]) {
				t.Errorf("top %s = %v, want %v", f, r.Top[f], want[f])
			}
		}
		t.FailNow()
	}
	if len(r.Top) != len(TopFields) {
		t.Fatalf("top has %d fields, want %d", len(r.Top), len(TopFields))
	}
	if r.Totals.SampledPackets != 1628 {
		t.Fatalf("sampled packets %d, want 1628", r.Totals.SampledPackets)
	}
	if !reflect.DeepEqual(r.Protected, []string{"192.0.2.10/32"}) {
		t.Fatalf("protected %v", r.Protected)
	}
	if r.Samples == nil {
		t.Fatal("samples is nil; JSON clients expect []")
	}
	// Every top value of a rule field must be accepted by the rule parser as that field.
	for _, f := range []string{"protocol", "tcp_flags"} {
		for _, vc := range r.Top[f] {
			var m rule.Match
			if f == "protocol" {
				m.Protocol = vc.Value
			} else {
				m.TCPFlags = vc.Value
			}
			if _, err := m.Compile(); err != nil {
				t.Errorf("top %s value %q is not valid rule syntax: %v", f, vc.Value, err)
			}
		}
	}
	// The report survives a JSON round trip (what the client sees).
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back TrafficReport
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Top, r.Top) || back.Totals != r.Totals {
		t.Fatalf("JSON round trip changed the report")
	}
}

func BenchmarkWindowAdd(b *testing.B) {
	w := NewTrafficWindow(WindowConfig{MaxSamples: 100_000, MaxAge: time.Minute})
	s := tcpSample(time.Now(), "198.51.100.1", 80, rule.FlagSYN)
	b.ReportAllocs()
	for b.Loop() {
		w.Add(s)
	}
}

func BenchmarkWindowReport100k(b *testing.B) {
	w := NewTrafficWindow(WindowConfig{MaxSamples: 100_000, MaxAge: time.Hour})
	now := time.Now()
	for i := range 100_000 {
		w.Add(tcpSample(now, fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), uint16(i%1000), rule.FlagSYN))
	}
	b.ReportAllocs()
	for b.Loop() {
		w.Report(now.Add(-time.Minute), now.Add(time.Minute), 100)
	}
}

// BenchmarkWindowAddWhileReporting is the feeder's cost per sample while
// reports over a full 100k window run back to back: the worst case for the
// lock the sampler shares with the API.
func BenchmarkWindowAddWhileReporting(b *testing.B) {
	w := NewTrafficWindow(WindowConfig{MaxSamples: 100_000, MaxAge: time.Hour})
	now := time.Now()
	for i := range 100_000 {
		w.Add(tcpSample(now, fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), uint16(i%1000), rule.FlagSYN))
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			w.Report(now.Add(-time.Minute), now.Add(time.Minute), 100)
		}
	}()
	s := tcpSample(now, "198.51.100.1", 80, rule.FlagSYN)
	b.ReportAllocs()
	for b.Loop() {
		w.Add(s)
	}
	b.StopTimer()
	close(stop)
	<-done
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "adds/s")
}
