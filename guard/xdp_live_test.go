package guard

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/packetscope/packetscope/agentapi"
	"github.com/packetscope/packetscope/internal/testnet"
	"github.com/packetscope/packetscope/rule"
)

// liveNet is a victim namespace guarded on two veths: one to an attacker
// namespace, one to a legitimate client's namespace. No namespace has a
// default route, so nothing (spoofed replies included) can leave them.
type liveNet struct {
	victim, attacker, client *testnet.NS
	pin                      string
	g                        *Guard
	api                      *httptest.Server
	token                    string
	every                    uint32
}

const (
	victimAtkIP = "10.202.30.1"
	victimCliIP = "10.202.31.1"
)

func newLiveNet(t testing.TB) *liveNet { return newLiveNetSampling(t, 1000) }

// newLiveNetSampling builds the namespaces and opens the guard sampling
// 1-in-sampleEvery packets.
func newLiveNetSampling(t testing.TB, sampleEvery uint32) *liveNet {
	t.Helper()
	testnet.RequireRoot(t)
	for _, tool := range []string{"hping3", "tcpreplay", "tcprewrite"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: apt-get install -y hping3 tcpreplay", tool)
		}
	}
	ln := &liveNet{
		victim:   testnet.NewNS(t, "ps-grd-v"),
		attacker: testnet.NewNS(t, "ps-grd-a"),
		client:   testnet.NewNS(t, "ps-grd-c"),
		pin:      testPinPath(t),
		token:    "live-test-token",
		every:    sampleEvery,
	}
	testnet.Link(t, ln.victim, "vatk", victimAtkIP+"/24", ln.attacker, "atk0", "10.202.30.2/24")
	testnet.Link(t, ln.victim, "vcli", victimCliIP+"/24", ln.client, "cli0", "10.202.31.2/24")
	ln.open(t)
	window := agentapi.NewTrafficWindow(agentapi.WindowConfig{SampleEvery: 1000})
	// The API serves on loopback of the test's own namespace.
	ln.api = httptest.NewServer(agentapi.NewAPI(testLogger(t), ruleStoreOf{ln}, window, ln.token))
	t.Cleanup(ln.api.Close)
	for _, port := range []int{8080, 25565} {
		ln.serveTCP(t, port)
	}
	return ln
}

// ruleStoreOf follows the live guard across restarts.
type ruleStoreOf struct{ ln *liveNet }

func (r ruleStoreOf) Add(x rule.Rule) (rule.Rule, error) { return r.ln.g.Rules().Add(x) }
func (r ruleStoreOf) Delete(id string) error             { return r.ln.g.Rules().Delete(id) }
func (r ruleStoreOf) List() []rule.Rule                  { return r.ln.g.Rules().List() }

// open starts (or restarts) the agent's guard in the victim namespace.
func (ln *liveNet) open(t testing.TB) {
	t.Helper()
	err := ln.victim.Do(func() (err error) {
		ln.g, err = Open(testLogger(t), Config{Interfaces: []string{"vatk", "vcli"}, PinPath: ln.pin, SampleEvery: ln.every})
		return err
	})
	if err != nil {
		t.Fatalf("open guard in %s: %v", ln.victim.Name, err)
	}
	g := ln.g
	t.Cleanup(func() { _ = g.Close() })
}

// serveTCP accepts and closes connections on port in the victim namespace.
func (ln *liveNet) serveTCP(t testing.TB, port int) {
	t.Helper()
	var l net.Listener
	if err := ln.victim.Do(func() (err error) {
		l, err = net.Listen("tcp4", fmt.Sprintf(":%d", port))
		return err
	}); err != nil {
		t.Fatalf("listen in victim: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
}

// legitClient connects to the victim every 50ms until ctx is done.
type legitClient struct{ ok, failed atomic.Int64 }

func (ln *liveNet) startClient(t testing.TB, ctx context.Context, port int) *legitClient {
	t.Helper()
	lc := &legitClient{}
	go func() {
		for ctx.Err() == nil {
			err := ln.client.Do(func() error {
				c, err := net.DialTimeout("tcp4", fmt.Sprintf("%s:%d", victimCliIP, port), time.Second)
				if err == nil {
					_ = c.Close()
				}
				return err
			})
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				lc.failed.Add(1)
			} else {
				lc.ok.Add(1)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	return lc
}

func (ln *liveNet) post(t testing.TB, body string) rule.Rule {
	t.Helper()
	req, _ := http.NewRequest("POST", ln.api.URL+"/api/v1/rules", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+ln.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		t.Fatalf("POST rule: %s: %s", resp.Status, buf.String())
	}
	var r rule.Rule
	if err := json.Unmarshal(buf.Bytes(), &r); err != nil {
		t.Fatalf("decode rule: %v: %s", err, buf.String())
	}
	return r
}

func (ln *liveNet) listIDs(t testing.TB) []string {
	t.Helper()
	resp, err := http.Get(ln.api.URL + "/api/v1/rules")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rr agentapi.RulesResponse
	if err := json.NewDecoder(resp.Body).Decode(&rr); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range rr.Rules {
		ids = append(ids, r.ID)
	}
	return ids
}

// dropShare measures, over d, the share of packets on vatk the guard dropped.
func (ln *liveNet) dropShare(d time.Duration) (share float64, total uint64) {
	a := ln.g.InterfaceStats("vatk")
	time.Sleep(d)
	b := ln.g.InterfaceStats("vatk")
	var drop uint64
	for i := range a.Actions {
		total += b.Actions[i] - a.Actions[i]
	}
	drop = b.Actions[1] - a.Actions[1]
	if total == 0 {
		return 0, 0
	}
	return float64(drop) / float64(total), total
}

// flood runs hping3 --flood in the attacker namespace for at most seconds.
// Not testnet's Start: its cleanup kills only `ip netns exec` and then waits
// on the output pipes hping3 still holds. Here the whole process group dies.
func (ln *liveNet) flood(t testing.TB, seconds int, args ...string) {
	t.Helper()
	cmd := ln.attacker.Cmd("timeout", append([]string{"--foreground", strconv.Itoa(seconds), "hping3", "--flood", "-q"}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start hping3: %v", err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	time.Sleep(500 * time.Millisecond)
}

func checkClient(t *testing.T, lc *legitClient, what string) {
	t.Helper()
	if lc.ok.Load() < 10 || lc.failed.Load() > 0 {
		t.Errorf("%s: legitimate client connected %d times, failed %d; want >= 10 and no failure", what, lc.ok.Load(), lc.failed.Load())
	}
}

func TestLiveICMPFloodAndExpiry(t *testing.T) {
	ln := newLiveNet(t)
	ln.flood(t, 12, "-1", victimAtkIP)
	r := ln.post(t, `{"action":"drop","match":{"protocol":"icmp","icmp_type":8},"ttl_seconds":3,"reason":"icmp echo flood","origin":"manual"}`)
	ctx, cancel := context.WithCancel(context.Background())
	lc := ln.startClient(t, ctx, 8080)
	time.Sleep(200 * time.Millisecond)
	share, total := ln.dropShare(1500 * time.Millisecond)
	cancel()
	t.Logf("icmp flood: %d packets on the attacker link in 1.5s, %.4f dropped at XDP", total, share)
	if total < 1000 || share < 0.99 {
		t.Errorf("icmp flood: %.4f of %d packets dropped, want >= 0.99 of a real flood", share, total)
	}
	checkClient(t, lc, "icmp flood")
	// TTL: the rule (3s) expires, the agent removes it, the flood passes again.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && len(ln.listIDs(t)) > 0 {
		time.Sleep(100 * time.Millisecond)
	}
	if ids := ln.listIDs(t); len(ids) != 0 {
		t.Fatalf("rule %s still listed after its TTL: %v", r.ID, ids)
	}
	if share, total := ln.dropShare(time.Second); total < 1000 || share > 0.01 {
		t.Errorf("after expiry: %.4f of %d packets dropped, want the flood passing", share, total)
	}
}

func TestLiveSYNFloodAndRestart(t *testing.T) {
	ln := newLiveNet(t)
	ln.flood(t, 15, "-S", "-p", "8080", victimAtkIP)
	// hping3's SYNs carry no options (IP length 40); Linux's carry 20 bytes.
	r := ln.post(t, `{"action":"drop","match":{"protocol":"tcp","tcp_flags":"syn,!ack","dst_ports":["8080"],"length":"40"},"ttl_seconds":600,"reason":"syn flood without options"}`)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lc := ln.startClient(t, ctx, 8080)
	time.Sleep(200 * time.Millisecond)
	share, total := ln.dropShare(1500 * time.Millisecond)
	t.Logf("syn flood: %d packets on the attacker link in 1.5s, %.4f dropped at XDP", total, share)
	if total < 1000 || share < 0.99 {
		t.Errorf("syn flood: %.4f of %d packets dropped, want >= 0.99", share, total)
	}
	// Stop the agent: the pinned link and maps keep dropping.
	g := ln.g
	before := g.Rules().List()
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	stats, err := readIfaceStats(mustPinnedMap(t, ln.pin, "iface_stats"))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	after, err := readIfaceStats(mustPinnedMap(t, ln.pin, "iface_stats"))
	if err != nil {
		t.Fatal(err)
	}
	var dropped uint64
	for ifindex := range after {
		dropped += after[ifindex].Actions[1] - stats[ifindex].Actions[1]
	}
	if dropped < 1000 {
		t.Errorf("agent stopped: %d packets dropped in 1s, want the flood still dropped", dropped)
	}
	// Restart: the new agent adopts the same rule.
	ln.open(t)
	got := ln.g.Rules().List()
	if len(got) != 1 || got[0].ID != r.ID || !got[0].ExpiresAt.Equal(before[0].ExpiresAt) || got[0].Packets < before[0].Packets {
		t.Errorf("after restart rules = %+v, want %s adopted with its expiry and counters", got, r.ID)
	}
	if share, total := ln.dropShare(time.Second); share < 0.99 {
		t.Errorf("after restart: %.4f of %d dropped", share, total)
	}
	cancel()
	checkClient(t, lc, "syn flood")
}

func TestLiveReplaySYNFloodCapture(t *testing.T) {
	ln := newLiveNet(t)
	vatk, atk0 := mac(t, ln.victim, "vatk"), mac(t, ln.attacker, "atk0")
	rewritten := filepath.Join(t.TempDir(), "synflood.pcap")
	n, err := testnet.RewriteCapture("testdata/pkt.TCP.synflood.spoofed.pcap", rewritten,
		netip.MustParseAddr("10.10.10.10"), netip.MustParseAddr(victimAtkIP), vatk, atk0)
	if err != nil || n != 37841 {
		t.Fatalf("rewrite capture: %d packets, %v", n, err)
	}
	// A fingerprint written by hand from the capture: SYN to 25565, window 0, no options.
	r := ln.post(t, `{"action":"drop","match":{"protocol":"tcp","dst_ports":["25565"],"tcp_flags":"syn,!ack","tcp_window":"0","length":"40"},"ttl_seconds":600,"reason":"spoofed syn flood fingerprint"}`)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lc := ln.startClient(t, ctx, 25565)
	rep := ln.attacker.MustRun("tcpreplay", "-i", "atk0", "--pps=50000", rewritten)
	cancel()
	m := regexp.MustCompile(`Successful packets:\s+(\d+)`).FindStringSubmatch(rep)
	if m == nil {
		t.Fatalf("tcpreplay output without a packet count:\n%s", rep)
	}
	sent, _ := strconv.Atoi(m[1])
	time.Sleep(100 * time.Millisecond)
	var hits uint64
	for _, x := range ln.g.Rules().List() {
		if x.ID == r.ID {
			hits = x.Packets
		}
	}
	t.Logf("replayed %d packets, the fingerprint dropped %d (%.4f); client connected %d times", sent, hits, float64(hits)/float64(sent), lc.ok.Load())
	if sent < 37000 || float64(hits) < 0.99*float64(sent) {
		t.Errorf("fingerprint dropped %d of %d replayed packets, want >= 99%%", hits, sent)
	}
	checkClient(t, lc, "replay")
}

func mac(t *testing.T, ns *testnet.NS, ifname string) net.HardwareAddr {
	t.Helper()
	var hw net.HardwareAddr
	if err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err == nil {
			hw = ifi.HardwareAddr
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return hw
}
