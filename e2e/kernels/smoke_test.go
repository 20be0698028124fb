//go:build kernelsmoke

package kernels

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/packetscope/packetscope/internal/rstinject"
	"github.com/packetscope/packetscope/internal/testnet"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// binary is the static packetscope the script put into the initramfs.
func binary(tb testing.TB) string {
	tb.Helper()
	bin := os.Getenv("PACKETSCOPE_BIN")
	if bin == "" {
		tb.Fatal("PACKETSCOPE_BIN is not set: these tests run inside the guest that scripts/test-kernels.sh boots")
	}
	if _, err := os.Stat(bin); err != nil {
		tb.Fatalf("packetscope binary: %v", err)
	}
	return bin
}

// features and the Linux version that brings each, as README.md's Kernels
// table states them: the guest checks the agent's metric against it.
var features = map[string]string{
	"kfunc_reads":        "6.2",
	"netfilter_stages":   "6.4",
	"socket_queue_trace": "6.5",
	"tcx":                "6.6",
	"drop_reason_socket": "6.11",
}

func release() string {
	var u unix.Utsname
	_ = unix.Uname(&u)
	return unix.ByteSliceToString(u.Release[:])
}

// atLeast compares "6.1.0-57-cloud-amd64" with "6.4".
func atLeast(tb testing.TB, rel, version string) bool {
	tb.Helper()
	num := func(s string) (int, int) {
		parts := strings.SplitN(s, ".", 3)
		major, err1 := strconv.Atoi(parts[0])
		if len(parts) < 2 {
			tb.Fatalf("parse kernel version %q", s)
		}
		minor := parts[1]
		if i := strings.IndexFunc(minor, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
			minor = minor[:i]
		}
		m, err2 := strconv.Atoi(minor)
		if err1 != nil || err2 != nil {
			tb.Fatalf("parse kernel version %q", s)
		}
		return major, m
	}
	a, b := num(rel)
	c, d := num(version)
	return a > c || a == c && b >= d
}

type agent = testnet.Packetscope

// spanSink is an OTLP/HTTP trace receiver: it keeps the names and status
// of every span the agent exports.
type spanSink struct {
	url   string
	mu    sync.Mutex
	spans []*tracepb.Span
}

func newSpanSink(tb testing.TB) *spanSink {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &spanSink{url: "http://" + l.Addr().String()}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		var req collectortrace.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(body, &req)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		for _, rs := range req.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				s.spans = append(s.spans, ss.GetSpans()...)
			}
		}
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	})}
	go srv.Serve(l)
	tb.Cleanup(func() { srv.Close() })
	return s
}

// byTrace groups the received spans' names by trace, with whether the
// trace's root ended in error (a drop: "<dropped>", and its reason as
// "<reason REASON>").
func (s *spanSink) byTrace() map[string]map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]map[string]bool{}
	for _, sp := range s.spans {
		id := string(sp.GetTraceId())
		if out[id] == nil {
			out[id] = map[string]bool{}
		}
		out[id][sp.GetName()] = true
		if sp.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR && len(sp.GetParentSpanId()) == 0 {
			out[id]["<dropped>"] = true
			out[id]["<reason "+sp.GetStatus().GetMessage()+">"] = true
		}
	}
	return out
}

// startAgent starts `packetscope agent` and waits for /readyz (TCG
// emulation on a busy 2-core machine is slow: up to three minutes).
func startAgent(tb testing.TB, env []string, args ...string) *agent {
	tb.Helper()
	return testnet.StartPacketscope(tb, testnet.ProcessConfig{Binary: binary(tb), Env: append([]string{}, env...),
		ReadyTimeout: 180 * time.Second, StopTimeout: 30 * time.Second}, args...)
}

func metrics(tb testing.TB, a *agent) string {
	tb.Helper()
	_, body := httpDo(tb, "GET", a.URL+"/metrics", "")
	return body
}

func httpDo(tb testing.TB, method, url, body string) (int, string) {
	tb.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, url, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// token is the agent API's bearer token (the API is read-only without one).
const token = "kernel-smoke-token"

// metricValue sums the samples of family whose labels include every
// given label=value.
func metricValue(exposition, family string, labels ...string) (float64, bool) {
	var sum float64
	found := false
	for _, line := range strings.Split(exposition, "\n") {
		if !strings.HasPrefix(line, family) {
			continue
		}
		rest := line[len(family):]
		if rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		ok := true
		for _, l := range labels {
			k, v, _ := strings.Cut(l, "=")
			if !strings.Contains(rest, k+`="`+v+`"`) {
				ok = false
			}
		}
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err == nil {
			sum += v
			found = true
		}
	}
	return sum, found
}

// sendUDP sends n datagrams of size bytes from ns to addr, paced so that a
// slow emulated guest drops none on its own. The socket is unconnected: a
// connected one reports the ICMP unreachable a closed port answers on its
// next write, which then sends nothing.
func sendUDP(tb testing.TB, ns *testnet.NS, addr string, n, size int) {
	tb.Helper()
	err := ns.Do(func() error {
		dst, err := net.ResolveUDPAddr("udp4", addr)
		if err != nil {
			return err
		}
		c, err := net.ListenUDP("udp4", nil)
		if err != nil {
			return err
		}
		defer c.Close()
		buf := make([]byte, size)
		for i := range n {
			if _, err := c.WriteToUDP(buf, dst); err != nil {
				return err
			}
			if i%50 == 49 {
				time.Sleep(10 * time.Millisecond)
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("send udp to %s: %v", addr, err)
	}
}

// checkStages: the stages that do not touch the IP layer are observed on
// every kernel; those that start or end at a netfilter boundary only where
// BPF netfilter links exist (netfilter_stages).
func checkStages(t *testing.T, m, rel string) {
	t.Helper()
	nf := atLeast(t, rel, features["netfilter_stages"])
	for _, st := range []struct {
		direction, stage string
		want             bool
	}{
		{"rx", "backlog", true},
		{"tx", "qdisc", true},
		{"tx", "driver", true},
		{"rx", "core", nf},
		{"tx", "ip", nf},
	} {
		n, _ := metricValue(m, "packetscope_stack_latency_seconds_count", "direction="+st.direction, "stage="+st.stage)
		if (n > 0) != st.want {
			t.Errorf("stack_latency_seconds_count{%s,%s} = %v on Linux %s, want observed=%v", st.direction, st.stage, n, rel, st.want)
		} else {
			t.Logf("stage %s %s: %v observations", st.direction, st.stage, n)
		}
	}
}

// TestAgentOnThisKernel runs the agent on the guest's kernel the way a
// user would, over two namespaces and a veth pair.
func TestAgentOnThisKernel(t *testing.T) {
	rel := release()
	t.Logf("kernel %s", rel)
	victim := testnet.NewNS(t, "ps-k-v")
	client := testnet.NewNS(t, "ps-k-c")
	testnet.Link(t, victim, "va", "10.211.0.1/24", client, "vc", "10.211.0.2/24")
	pins := fmt.Sprintf("/sys/fs/bpf/ps-k-%d", time.Now().UnixNano())
	tokenFile := t.TempDir() + "/token"
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"agent", "--netns", victim.Path(), "--interfaces", "va", "--bpf.pin-path", pins,
		"--guard.sample-every", "1", "--api.token-file", tokenFile,
		// Every skb timed, stage boundaries attached all the time: the
		// stages test below must not depend on hitting a window.
		"--stack.latency-sample-every", "1", "--stack.stage-window", "20s", "--stack.stage-period", "20s"}
	t.Cleanup(func() {
		_ = exec.Command(binary(t), "cleanup", "--bpf.pin-path="+pins).Run()
		_ = os.RemoveAll(pins)
	})

	// Packet-path traces, configured as a user would: OTEL_* variables. Every
	// packet is followed (drops are always kept).
	sink := newSpanSink(t)
	env := []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + sink.url, "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
		"OTEL_BSP_SCHEDULE_DELAY=100"}
	args = append(args, "--trace.track-every", "1")
	start := time.Now()
	ag := startAgent(t, env, args...)
	t.Logf("agent ready in %v", time.Since(start).Round(time.Millisecond))

	t.Run("features", func(t *testing.T) {
		m := metrics(t, ag)
		logs := ag.Out.String()
		for name, since := range features {
			v, ok := metricValue(m, "packetscope_feature_enabled", "feature="+name)
			if !ok {
				t.Errorf("packetscope_feature_enabled{feature=%q} missing", name)
				continue
			}
			want := atLeast(t, rel, since)
			if (v == 1) != want {
				t.Errorf("packetscope_feature_enabled{feature=%q} = %v on Linux %s, want %v (since %s)", name, v, rel, want, since)
			}
			lines := strings.Count(logs, "feature="+name+" ")
			switch {
			case want && lines != 0:
				t.Errorf("the log reports %s missing although the kernel has it:\n%s", name, logs)
			case !want && lines != 1:
				t.Errorf("the log reports missing %s %d times, want once, naming Linux %s:\n%s", name, lines, since, logs)
			case !want && !strings.Contains(logs, `since="Linux `+since+`"`):
				t.Errorf("the log does not name Linux %s for %s:\n%s", since, name, logs)
			}
		}
	})

	t.Run("traffic", func(t *testing.T) {
		// The first datagrams wait for ARP, and the neighbour queue keeps
		// only a few: resolve first, then count.
		sendUDP(t, client, "10.211.0.1:7", 1, 10)
		time.Sleep(time.Second)
		before := metrics(t, ag)
		p0, _ := metricValue(before, "packetscope_packets_total", "interface=va", "direction=rx", "protocol=udp")
		b0, _ := metricValue(before, "packetscope_bytes_total", "interface=va", "direction=rx", "protocol=udp")
		sendUDP(t, client, "10.211.0.1:7", 100, 200)
		deadline := time.Now().Add(10 * time.Second)
		for {
			m := metrics(t, ag)
			p, _ := metricValue(m, "packetscope_packets_total", "interface=va", "direction=rx", "protocol=udp")
			b, _ := metricValue(m, "packetscope_bytes_total", "interface=va", "direction=rx", "protocol=udp")
			tx, _ := metricValue(m, "packetscope_packets_total", "interface=va", "direction=tx")
			drops, _ := metricValue(m, "packetscope_drops_total", "reason=NO_SOCKET", "protocol=udp")
			if p-p0 >= 100 && b-b0 >= 100*200 && tx >= 1 && drops >= 1 {
				t.Logf("rx udp packets +%v bytes +%v, tx packets %v, NO_SOCKET udp drops %v", p-p0, b-b0, tx, drops)
				checkStages(t, m, rel)
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("after 100 datagrams of 200 bytes to a closed port: rx udp packets +%v (want >= 100), bytes +%v (want >= 20000), tx packets %v (want >= 1: ICMP unreachable), NO_SOCKET udp drops %v (want >= 1)",
					p-p0, b-b0, tx, drops)
			}
			time.Sleep(500 * time.Millisecond)
		}
	})

	t.Run("packet-path traces", func(t *testing.T) {
		// The closed-port datagrams above were dropped (NO_SOCKET): their
		// traces end in a drop, with the stages this kernel has. Other
		// packets may be dropped earlier on their way (a 6.12 guest once
		// traced one dropped between rx core and rx ip): only NO_SOCKET
		// traces are the datagrams'.
		nf := atLeast(t, rel, features["netfilter_stages"])
		var dropped map[string]bool
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && dropped == nil; time.Sleep(500 * time.Millisecond) {
			for _, names := range sink.byTrace() {
				if names["<dropped>"] && names["<reason NO_SOCKET>"] && names["rx backlog"] {
					dropped = names
					break
				}
			}
		}
		if dropped == nil {
			t.Fatalf("no trace of a NO_SOCKET drop with an rx backlog span among %d traces: %v", len(sink.byTrace()), sink.byTrace())
		}
		if !dropped["drop"] || !dropped["packet rx"] {
			t.Errorf("a dropped packet's trace lacks its root or drop span: %v", dropped)
		}
		if dropped["rx ip"] != nf {
			t.Errorf("rx ip span present=%v on Linux %s, want %v (netfilter_stages): %v", dropped["rx ip"], rel, nf, dropped)
		}
		t.Logf("a dropped packet's spans: %v", dropped)
	})

	t.Run("traffic window", func(t *testing.T) {
		code, body := httpDo(t, "GET", ag.URL+"/api/v1/traffic?window=60s", "")
		if code != http.StatusOK {
			t.Fatalf("GET /api/v1/traffic: %d %s", code, body)
		}
		var report struct {
			Totals struct {
				SampledPackets uint64 `json:"sampled_packets"`
			} `json:"totals"`
			Samples   []json.RawMessage `json:"samples"`
			Reactions []struct {
				Reaction string `json:"reaction"`
				Packet   struct {
					DstPort uint16 `json:"dst_port"`
				} `json:"packet"`
			} `json:"reactions"`
		}
		if err := json.Unmarshal([]byte(body), &report); err != nil {
			t.Fatalf("decode /api/v1/traffic: %v: %s", err, body)
		}
		// 101 datagrams passed the guard, sampled 1 in 1.
		if report.Totals.SampledPackets < 100 || len(report.Samples) == 0 {
			t.Errorf("traffic window holds %d sampled packets and %d samples, want >= 100 and some", report.Totals.SampledPackets, len(report.Samples))
		}
		// ...and the stack refused them: closed-port probes, each a reaction.
		if len(report.Reactions) < 100 || report.Reactions[0].Reaction != "NO_SOCKET" || report.Reactions[0].Packet.DstPort != 7 {
			t.Errorf("traffic window holds %d reactions (first %+v), want >= 100 NO_SOCKET probes of port 7", len(report.Reactions), report.Reactions[:min(1, len(report.Reactions))])
		}
		if n, _ := metricValue(metrics(t, ag), "packetscope_closed_port_probes_total", "protocol=udp"); n < 100 {
			t.Errorf("packetscope_closed_port_probes_total{protocol=udp} = %v, want >= 100", n)
		}
	})

	t.Run("rejected RSTs", func(t *testing.T) {
		// Crafted RSTs into a connection of the victim: in its window but not
		// exact (challenged) and out of it, by the running kernel's drop
		// reasons (TCP_RESET and the sequence checks', read from its BTF).
		var l net.Listener
		if err := victim.Do(func() (err error) { l, err = net.Listen("tcp", "10.211.0.1:7100"); return err }); err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		accepted := make(chan net.Conn, 1)
		go func() {
			if c, err := l.Accept(); err == nil {
				accepted <- c
			}
		}()
		defer func() {
			select {
			case c := <-accepted:
				c.Close()
			default:
			}
		}()
		var c net.Conn
		if err := client.Do(func() (err error) { c, err = net.DialTimeout("tcp", "10.211.0.1:7100", 5*time.Second); return err }); err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		target, err := rstinject.TargetOf(c.(*net.TCPConn))
		if err != nil {
			t.Fatal(err)
		}
		seq := target.RcvNxt
		var inj *rstinject.Injector
		if err := client.Do(func() (err error) { inj, err = rstinject.Open(); return err }); err != nil {
			t.Fatal(err)
		}
		defer inj.Close()
		for k := range uint32(10) {
			if err := inj.Send(target, seq+1+k*100, rstinject.Shape{TTL: 64}); err != nil {
				t.Fatal(err)
			}
			if err := inj.Send(target, seq+1<<31+k*1000, rstinject.Shape{TTL: 64}); err != nil {
				t.Fatal(err)
			}
		}
		// Exactly at rcv_nxt: the connection is reset, on every kernel
		// (tcp:tcp_receive_reset names the socket).
		if err := inj.Send(target, seq, rstinject.Shape{TTL: 64}); err != nil {
			t.Fatal(err)
		}
		// The rejected ones are kfree_skb drops of an skb that kept neither
		// its device nor an owning socket: kernels whose kfree_skb names the
		// receiving socket (drop_reason_socket) place them in the observed
		// namespace by it, older ones by tcp_probe_rst's note.
		const want = 10.0
		deadline := time.Now().Add(10 * time.Second)
		for {
			m := metrics(t, ag)
			ch, _ := metricValue(m, "packetscope_tcp_rst_verdicts_total", "verdict=challenged")
			oow, _ := metricValue(m, "packetscope_tcp_rst_verdicts_total", "verdict=out_of_window")
			acc, _ := metricValue(m, "packetscope_tcp_rst_verdicts_total", "verdict=accepted")
			if ch == want && oow == want && acc >= 1 {
				t.Logf("RSTs challenged %v, out of window %v, accepted %v", ch, oow, acc)
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("after 10 in-window, 10 out-of-window and 1 exact RST: challenged %v, out_of_window %v (want %v each), accepted %v (want >= 1)", ch, oow, want, acc)
			}
			time.Sleep(500 * time.Millisecond)
		}
	})

	const floodPort = "9999"
	var ruleID string
	t.Run("guard drops a flood", func(t *testing.T) {
		rule := `{"action":"drop","match":{"src":"10.211.0.2/32","protocol":"udp","dst_ports":["` + floodPort + `"]},"ttl_seconds":600,"reason":"kernel smoke"}`
		code, body := httpDo(t, "POST", ag.URL+"/api/v1/rules", rule)
		if code/100 != 2 {
			t.Fatalf("POST rule: %d %s", code, body)
		}
		var added struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal([]byte(body), &added); err != nil || added.ID == "" {
			t.Fatalf("POST answer has no rule id: %s", body)
		}
		ruleID = added.ID
		m0 := metrics(t, ag)
		d0, _ := metricValue(m0, "packetscope_xdp_packets_total", "interface=va", "action=drop")
		p0, _ := metricValue(m0, "packetscope_packets_total", "interface=va", "direction=rx", "protocol=udp")
		sendUDP(t, client, "10.211.0.1:"+floodPort, 1000, 64)
		m := metrics(t, ag)
		d, _ := metricValue(m, "packetscope_xdp_packets_total", "interface=va", "action=drop")
		p, _ := metricValue(m, "packetscope_packets_total", "interface=va", "direction=rx", "protocol=udp")
		if d-d0 < 1000 {
			t.Errorf("xdp drops +%v after a 1000-datagram flood the rule covers, want >= 1000", d-d0)
		}
		if p-p0 > 10 {
			t.Errorf("the stack still saw %v rx udp packets of the dropped flood", p-p0)
		}
		t.Logf("xdp drops +%v, stack rx udp +%v", d-d0, p-p0)
	})

	t.Run("rules survive a restart", func(t *testing.T) {
		if ruleID == "" {
			t.Fatal("no rule was added")
		}
		if err := ag.Stop(t); err != nil {
			t.Errorf("agent exit after SIGTERM: %v\n%s", err, ag.Out.String())
		}
		if out := victim.MustRun("tc", "filter", "show", "dev", "va", "ingress"); strings.Contains(out, "bpf") {
			t.Errorf("a stopped agent left its tc filter:\n%s", out)
		}
		ag = startAgent(t, env, args...)
		_, list := httpDo(t, "GET", ag.URL+"/api/v1/rules", "")
		if strings.Count(list, ruleID) != 1 {
			t.Errorf("after a restart the rule %s is not listed exactly once: %s", ruleID, list)
		}
		sendUDP(t, client, "10.211.0.1:"+floodPort, 200, 64)
		if d, _ := metricValue(metrics(t, ag), "packetscope_xdp_packets_total", "interface=va", "action=drop"); d < 200 {
			t.Errorf("xdp drops after the restart = %v, want >= 200", d)
		}
	})

	t.Run("failed start leaves nothing", func(t *testing.T) {
		bad := fmt.Sprintf("/sys/fs/bpf/ps-k-bad-%d", time.Now().UnixNano())
		out, err := exec.Command(binary(t), "agent", "--netns", client.Path(), "--interfaces", "nosuch0",
			"--bpf.pin-path", bad, fmt.Sprintf("--web.listen-address=127.0.0.1:%d", testnet.FreePort(t))).CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Fatalf("want exit status 1, got %v:\n%s", err, out)
		}
		if n := strings.Count(strings.TrimSpace(string(out)), "\n"); n > 0 && !strings.Contains(string(out), "kernel feature missing") {
			t.Errorf("want one line, got %d:\n%s", n+1, out)
		}
		if _, err := os.Stat(bad); err == nil {
			t.Errorf("a failed start left pins in %s", bad)
		}
		if l := client.MustRun("ip", "link", "show", "vc"); strings.Contains(l, "xdp") {
			t.Errorf("a failed start left XDP attached:\n%s", l)
		}
		if f := client.MustRun("tc", "filter", "show", "dev", "vc", "ingress"); strings.Contains(f, "bpf") {
			t.Errorf("a failed start left a tc filter:\n%s", f)
		}
	})
}
