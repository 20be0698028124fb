package guard

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/packetscope/packetscope/bpf"
	"github.com/packetscope/packetscope/internal/testframe"
	"github.com/packetscope/packetscope/rule"
)

// putDef writes data into rule_defs as chunks of one slot (indices given,
// or 0.. when nil), the way a crashed or corrupted agent could have left it.
func putDef(tb testing.TB, m *ebpf.Map, slot uint32, data string, chunks []uint32) {
	tb.Helper()
	if chunks == nil {
		for i := 0; i*bpf.GuardDefChunkLen < len(data); i++ {
			chunks = append(chunks, uint32(i))
		}
	}
	for i, c := range chunks {
		var v bpf.GuardDefChunk
		if i*bpf.GuardDefChunkLen < len(data) {
			copy(v.Data[:], data[i*bpf.GuardDefChunkLen:])
		} else {
			v.Data[0] = '}' // what a chunk past the end of a longer definition holds
		}
		if err := m.Update(bpf.GuardDefKey{Slot: slot, Chunk: c}, v, ebpf.UpdateAny); err != nil {
			tb.Fatal(err)
		}
	}
}

// pinnedJSON is a definition as a rule table writes it, with fields changed.
func pinnedJSON(tb testing.TB, r rule.Rule, edit func(map[string]any)) string {
	tb.Helper()
	if r.ID == "" {
		r.ID = "pinned"
	}
	if r.Action == "" {
		r.Action = rule.ActionDrop
	}
	r.TTLSeconds = 600
	r.Origin = "manual"
	r.CreatedAt = time.Now().UTC().Truncate(time.Millisecond)
	r.ExpiresAt = r.CreatedAt.Add(600 * time.Second)
	b, _ := json.Marshal(r)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	if edit != nil {
		edit(m)
	}
	b, _ = json.Marshal(m)
	return string(b)
}

// TestAdoptRemovesCorruptPins writes definitions no rule table writes into
// a real pinned rule_defs map and opens a guard on it: each is removed with
// its reason counted, the good rules are adopted, and new rules take the
// freed slots and survive the next restart (no leftover chunk swallows them).
func TestAdoptRemovesCorruptPins(t *testing.T) {
	pin := testPinPath(t)
	g := openTestGuard(t, Config{SampleEvery: 1, SampleBuffer: 1, PinPath: pin})
	good := mustAdd(t, g.Rules(), rule.Rule{ID: "good-fp", Match: rule.Match{Protocol: "udp", DstPorts: []string{"9"}}})
	mustAdd(t, g.Rules(), rule.Rule{ID: "good-cidr", Match: rule.Match{Src: "198.51.100.0/24"}})
	if s, _ := g.Rules().Slot(good.ID); s != 0 {
		t.Fatalf("first rule in slot %d", s)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}

	defs := mustPinnedMap(t, pin, "rule_defs")
	meta := mustPinnedMap(t, pin, "rule_meta")
	fp := rule.Rule{Match: rule.Match{Protocol: "tcp", TCPFlags: "syn"}}
	long := fp
	long.Reason = strings.Repeat("x", 400)
	longJSON := pinnedJSON(t, long, nil)
	set := func(k string, v any) func(map[string]any) { return func(m map[string]any) { m[k] = v } }
	corrupt := []struct {
		slot   uint32
		data   string
		chunks []uint32
		reason string
	}{
		{1, `not json{`, nil, rejectUnreadable},
		{2, strings.Replace(pinnedJSON(t, fp, nil), `"id":"pinned"`, `"id":"pinned","id":"other"`, 1), nil, rejectUnreadable},
		{3, pinnedJSON(t, fp, nil) + `}}]]`, nil, rejectUnreadable},
		{4, longJSON[:bpf.GuardDefChunkLen], nil, rejectUnreadable},            // cut short: only its first chunk
		{5, longJSON[bpf.GuardDefChunkLen:], []uint32{1, 2}, rejectUnreadable}, // its chunk 0 deleted, the rest left
		{6, pinnedJSON(t, fp, set("expires_at", "9999-12-31T23:59:59Z")), nil, rejectExpiry},
		{7, pinnedJSON(t, fp, set("expires_at", time.Now().Add(30*24*time.Hour).UTC().Format(time.RFC3339))), nil, rejectExpiry},
		{8, pinnedJSON(t, fp, set("created_at", nil)), nil, rejectExpiry},
		{9, pinnedJSON(t, fp, set("action", "nuke")), nil, rejectInvalid},
		{10, pinnedJSON(t, fp, set("id", "")), nil, rejectInvalid},
		{11, pinnedJSON(t, fp, set("id", "../../etc")), nil, rejectInvalid},
		{12, pinnedJSON(t, rule.Rule{Match: rule.Match{Src: "203.0.113.0/24"}}, nil), nil, rejectSlot}, // source-only in a fingerprint slot
		{13, pinnedJSON(t, fp, set("id", "good-fp")), nil, rejectDuplicate},
		{FPSlots + CIDRSlots + 3, pinnedJSON(t, fp, nil), nil, rejectSlot},
		{FPSlots + 1, pinnedJSON(t, fp, set("id", "fp-in-cidr")), nil, rejectSlot},
	}
	want := map[string]int{rejectOrphan: 1}
	for _, c := range corrupt {
		putDef(t, defs, c.slot, c.data, c.chunks)
		if c.slot < FPSlots+CIDRSlots {
			// A stale verdict left in the slot must not outlive its definition.
			if err := meta.Update(c.slot, bpf.GuardRuleMeta{Action: kernelDrop, ExpiresNs: 1 << 62}, ebpf.UpdateAny); err != nil {
				t.Fatal(err)
			}
		}
		want[c.reason]++
	}
	putDef(t, defs, 0, "", []uint32{7}) // an orphan chunk past the good rule's definition

	g2 := openTestGuard(t, Config{SampleEvery: 1, SampleBuffer: 1, PinPath: pin})
	var ids []string
	for _, r := range g2.Rules().List() {
		ids = append(ids, r.ID)
	}
	if strings.Join(ids, ",") != "good-fp,good-cidr" {
		t.Fatalf("adopted %v, want the two good rules", ids)
	}
	var expected strings.Builder
	expected.WriteString("# HELP packetscope_guard_adopt_rejected_total Pinned rule definitions the agent removed instead of adopting when it started, by reason: unreadable, invalid, expiry (impossible creation or expiry time), slot, duplicate_id, orphan_chunks (left past a definition by a crash).\n# TYPE packetscope_guard_adopt_rejected_total counter\n")
	for _, r := range []string{rejectDuplicate, rejectExpiry, rejectInvalid, rejectOrphan, rejectSlot, rejectUnreadable} {
		fmt.Fprintf(&expected, "packetscope_guard_adopt_rejected_total{reason=%q} %d\n", r, want[r])
	}
	if err := testutil.CollectAndCompare(g2.Collector(), strings.NewReader(expected.String()), "packetscope_guard_adopt_rejected_total"); err != nil {
		t.Error(err)
	}
	keys, err := mapKeys[bpf.GuardDefKey](defs)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k.Slot != 0 && k.Slot != FPSlots || k.Chunk > 1 {
			t.Errorf("rule_defs still holds slot %d chunk %d", k.Slot, k.Chunk)
		}
	}
	for _, c := range corrupt {
		var m bpf.GuardRuleMeta
		if c.slot < FPSlots+CIDRSlots && (meta.Lookup(c.slot, &m) != nil || m != bpf.GuardRuleMeta{}) {
			t.Errorf("slot %d keeps rule_meta %+v", c.slot, m)
		}
	}

	// New rules take the freed slots, work, and outlive a restart: nothing
	// left in those slots runs into their definitions.
	for i := range 14 {
		r := mustAdd(t, g2.Rules(), rule.Rule{ID: fmt.Sprintf("new-%d", i), Match: rule.Match{Protocol: fmt.Sprint(200 + i)}})
		if s, _ := g2.Rules().Slot(r.ID); s != i+1 {
			t.Fatalf("new rule %d in slot %d, want %d", i, s, i+1)
		}
	}
	mustAdd(t, g2.Rules(), rule.Rule{ID: "new-cidr", Match: rule.Match{Src: "192.0.2.0/24"}})
	frame := func(proto uint8) []byte {
		return testframe.Frame{Src: netip.MustParseAddr("10.1.1.1"), Dst: netip.MustParseAddr("10.1.1.2"), Proto: proto, TTL: 64, L4: make([]byte, 8)}.Build()
	}
	for i := range 14 {
		if v := run(t, g2.Program(), frame(uint8(200+i))); v != xdpDrop {
			t.Errorf("new rule in slot %d: verdict %d, want drop", i+1, v)
		}
		nextSample(t, g2)
	}
	before := len(g2.Rules().List())
	if err := g2.Close(); err != nil {
		t.Fatal(err)
	}
	g3 := openTestGuard(t, Config{SampleEvery: 1, SampleBuffer: 1, PinPath: pin})
	if n := len(g3.Rules().List()); n != before {
		t.Errorf("the restart adopted %d rules, want %d", n, before)
	}
	for r, n := range g3.Rules().AdoptRejected() {
		if n != 0 {
			t.Errorf("the restart rejected %d definitions (%s) it wrote itself", n, r)
		}
	}
}

func TestDecodePinnedDef(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	ok := `{"id":"r1","action":"drop","match":{"protocol":"udp"},"ttl_seconds":600,"origin":"manual",` +
		`"created_at":"2026-12-01T11:59:00Z","expires_at":"2026-12-01T12:09:00Z","packets":0,"bytes":0}`
	cases := []struct {
		name, data, reason string
	}{
		{"as written", ok, ""},
		{"reason with control characters is cleaned", strings.Replace(ok, `"origin"`, `"reason":"a\u001b[2Jb","origin"`, 1), ""},
		{"empty", ``, rejectUnreadable},
		{"duplicate key", strings.Replace(ok, `"action":"drop"`, `"action":"monitor","action":"drop"`, 1), rejectUnreadable},
		{"unknown key", strings.Replace(ok, `"origin"`, `"owner":"x","origin"`, 1), rejectUnreadable},
		{"case-folded key", strings.Replace(ok, `"action"`, `"ACTION"`, 1), rejectUnreadable},
		{"trailing", ok + `]`, rejectUnreadable},
		{"no id", strings.Replace(ok, `"id":"r1",`, ``, 1), rejectInvalid},
		{"ttl beyond the maximum", strings.Replace(ok, `"ttl_seconds":600`, `"ttl_seconds":99999999`, 1), rejectInvalid},
		{"year 9999", strings.Replace(ok, `2026-12-01T12:09:00Z`, `9999-12-31T00:00:00Z`, 1), rejectExpiry},
		{"beyond the maximum ttl from now", strings.Replace(ok, `2026-12-01T12:09:00Z`, `2026-12-09T12:30:00Z`, 1), rejectExpiry},
		{"expires before created", strings.Replace(ok, `2026-12-01T12:09:00Z`, `2026-12-01T11:00:00Z`, 1), rejectExpiry},
		{"created in the future", strings.Replace(ok, `2026-12-01T11:59:00Z`, `2026-12-01T13:00:00Z`, 1), rejectExpiry},
		{"no expiry", strings.Replace(ok, `"expires_at":"2026-12-01T12:09:00Z",`, ``, 1), rejectExpiry},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, reason := decodePinnedDef([]byte(tc.data), now)
			if reason != tc.reason {
				t.Fatalf("reason %q, want %q", reason, tc.reason)
			}
			if reason == "" && !rule.IsCleanText(r.Reason) {
				t.Errorf("reason %q kept control characters", r.Reason)
			}
		})
	}
}
