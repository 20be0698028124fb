package responder

import (
	"cmp"
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"

	"github.com/packetscope/packetscope/internal/attackgen"
	"github.com/packetscope/packetscope/rule"
)

// The offline class matrix: every attack class of internal/attackgen,
// inside ordinary traffic and beside a legitimate bulk upload that began
// with it, goes through AnalyzeOffline (what `packetscope analyze` runs)
// scoped by the alert the class raises. The accepted rules must cover
// >= 99 % of the attack as it goes on (packets the analyst never saw) and
// match <= 1 % of ordinary traffic from another window, and <= 0.1 % of the
// established connections the node serves, counted apart. Heavy legitimate
// traffic alone must get no accepted rule. Held-out classes run last.

const (
	matrixWindowAttack = 6000  // attack samples in the analysed window
	matrixWindowOther  = 2500  // ordinary samples beside them
	matrixUpload       = 800   // a legitimate upload's samples beside them
	matrixBaseline     = 20000 // samples in the baseline window
	matrixUnseen       = 20000 // samples of each judged window
)

var matrixCache sync.Map

func parseFrames(frames [][]byte) []rule.Packet {
	out := make([]rule.Packet, len(frames))
	for i, f := range frames {
		out[i] = rule.ParseFrame(f)
	}
	return out
}

var headerOnly = attackgen.Config{Snap: 96}

func background(seed uint64, n int) []rule.Packet {
	type key struct {
		seed uint64
		n    int
	}
	if v, ok := matrixCache.Load(key{seed, n}); ok {
		return v.([]rule.Packet)
	}
	p := parseFrames(attackgen.Background(headerOnly, seed, n))
	matrixCache.Store(key{seed, n}, p)
	return p
}

func classPackets(tb testing.TB, name string, seed uint64, n int) []rule.Packet {
	tb.Helper()
	type key struct {
		name string
		seed uint64
		n    int
	}
	if v, ok := matrixCache.Load(key{name, seed, n}); ok {
		return v.([]rule.Packet)
	}
	c, ok := attackgen.Lookup(name)
	if !ok {
		tb.Fatalf("no class %q", name)
	}
	p := parseFrames(c.Frames(headerOnly, seed, n))
	matrixCache.Store(key{name, seed, n}, p)
	return p
}

func mixPackets(seed uint64, sets ...[]rule.Packet) []rule.Packet {
	var out []rule.Packet
	for _, s := range sets {
		out = append(out, s...)
	}
	return mix(seed, out, nil)
}

// matrixResult is one class's row.
type matrixResult struct {
	Rules                      []rule.Rule
	Coverage, Collateral       float64
	ServedMatched, ServedTotal int
	Rejected                   []string
}

func runMatrixClass(tb testing.TB, c attackgen.Class) matrixResult {
	tb.Helper()
	baseline := background(1, matrixBaseline)
	unseen := background(9, matrixUnseen)
	upload := classPackets(tb, "bulk_upload", 3, matrixUpload)
	var window, judged []rule.Packet
	if c.Legit {
		window = mixPackets(4, classPackets(tb, c.Name, 2, matrixWindowAttack), background(3, matrixWindowOther))
	} else {
		all := classPackets(tb, c.Name, 2, matrixWindowAttack+matrixUnseen)
		window = mixPackets(4, all[:matrixWindowAttack], background(3, matrixWindowOther), upload)
		judged = all[matrixWindowAttack:]
	}
	res, err := AnalyzeOffline(context.Background(), OfflineConfig{Attack: c.Alert}, window, baseline)
	if err != nil {
		tb.Fatalf("analyze: %v", err)
	}
	out := matrixResult{Rules: res.Accepted}
	for _, v := range res.Validations {
		if !v.Accepted {
			js, _ := json.Marshal(v.Rule.Match)
			out.Rejected = append(out.Rejected, string(js)+": "+v.Reason)
		}
	}
	if !c.Legit {
		rp := ReplayRules(res.Accepted, judged, unseen)
		out.Coverage, out.Collateral = rp.Coverage, rp.Collateral
	}
	out.ServedMatched, out.ServedTotal = ServedCollateral(res.Accepted, unseen, classPackets(tb, "bulk_upload", 9, 5000),
		classPackets(tb, "bulk_download", 9, 5000))
	return out
}

func TestUnseenClassMatrix(t *testing.T) {
	classes := attackgen.Classes()
	slices.SortStableFunc(classes, func(a, b attackgen.Class) int {
		return cmp.Compare(btoi(a.HeldOut), btoi(b.HeldOut))
	})
	for _, c := range classes {
		name := c.Name
		if c.HeldOut {
			name = "heldout/" + name
		}
		t.Run(name, func(t *testing.T) {
			r := runMatrixClass(t, c)
			for _, ru := range r.Rules {
				js, _ := json.Marshal(ru.Match)
				t.Logf("rule %s %s: %s", ru.Action, js, ru.Reason)
			}
			for _, s := range r.Rejected {
				t.Logf("rejected %s", s)
			}
			kind := "attack"
			if c.Legit {
				kind = "legit"
			}
			t.Logf("%s (alert %s): coverage %.4f, collateral %.4f, served %d/%d, rules %d, %s", name, c.Alert, r.Coverage, r.Collateral, r.ServedMatched, r.ServedTotal, len(r.Rules), kind)
			if c.Legit {
				if len(r.Rules) != 0 {
					t.Errorf("heavy legitimate traffic got %d accepted rules", len(r.Rules))
				}
				return
			}
			if c.Mimic {
				// Indistinguishable by header: coverage is reported, and the
				// defense must not pay for it with the clients.
				if r.Collateral > 0.01 || r.ServedMatched > 0 {
					t.Errorf("a flood mimicking clients got rules with collateral %.4f, served %d", r.Collateral, r.ServedMatched)
				}
				return
			}
			if r.Coverage < 0.99 {
				t.Errorf("coverage %.4f < 0.99", r.Coverage)
			}
			if r.Collateral > 0.01 {
				t.Errorf("collateral %.4f > 0.01", r.Collateral)
			}
			if float64(r.ServedMatched) > servedMaxShare*float64(r.ServedTotal) {
				t.Errorf("served collateral %d of %d packets of established connections", r.ServedMatched, r.ServedTotal)
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestCapturesOffline: the two real captures through the offline path
// (`packetscope analyze --pcap X --baseline testdata/ordinary.pcap`), with
// the alert's scope and with the scope inferred, stay mitigated.
func TestCapturesOffline(t *testing.T) {
	baseline := readCapture(t, "ordinary.pcap")
	unseen := ordinaryTraffic(2, 50000)
	for _, tc := range []struct{ file, alert string }{
		{"amp.UDP.snmp.src161.pcapng", "udp_amplification"},
		{"amp.UDP.snmp.src161.pcapng", ""},
		{"pkt.TCP.synflood.spoofed.pcap", "syn_flood"},
		{"pkt.TCP.synflood.spoofed.pcap", ""},
	} {
		t.Run(tc.file+"/"+cmp.Or(tc.alert, "inferred"), func(t *testing.T) {
			attack := readCapture(t, tc.file)
			res, err := AnalyzeOffline(context.Background(), OfflineConfig{Attack: tc.alert}, attack, baseline)
			if err != nil {
				t.Fatal(err)
			}
			rp := ReplayRules(res.Accepted, attack, unseen)
			for _, r := range res.Accepted {
				js, _ := json.Marshal(r.Match)
				t.Logf("rule %s %s", r.Action, js)
			}
			t.Logf("coverage %.4f, collateral on unseen ordinary traffic %.4f", rp.Coverage, rp.Collateral)
			if rp.Coverage < 0.99 || rp.Collateral > 0.01 {
				t.Errorf("coverage %.4f (want >= 0.99), collateral %.4f (want <= 0.01)", rp.Coverage, rp.Collateral)
			}
		})
	}
}
