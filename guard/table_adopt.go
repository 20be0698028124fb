package guard

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/cilium/ebpf"

	"github.com/packetscope/packetscope/bpf"
	"github.com/packetscope/packetscope/rule"
)

// Why a pinned definition was not adopted: the reason label of
// packetscope_guard_adopt_rejected_total.
const (
	rejectUnreadable = "unreadable"    // no chunk 0, or not strict JSON for a rule
	rejectInvalid    = "invalid"       // fails the rule schema, or has no id
	rejectExpiry     = "expiry"        // no creation or expiry time, or an impossible one
	rejectSlot       = "slot"          // a slot outside the table, or of the other class
	rejectDuplicate  = "duplicate_id"  // an id an earlier slot already holds
	rejectOrphan     = "orphan_chunks" // chunks past a gap after an adopted definition
)

var rejectReasons = []string{rejectUnreadable, rejectInvalid, rejectExpiry, rejectSlot, rejectDuplicate, rejectOrphan}

// expirySlack is how far past MaxTTLSeconds from now a pinned expiry may be
// (a clock stepped back since the rule was added); anything later was never
// written by a rule table.
const expirySlack = 10 * time.Minute

// pinnedDef is one slot's chunks as found in rule_defs.
type pinnedDef struct {
	data   []byte   // chunks 0..n-1 joined, zero padding trimmed
	n      uint32   // chunks present from 0 without a gap
	chunks []uint32 // every chunk index present, ascending
}

// readDefs returns the chunks stored in rule_defs, by slot.
func readDefs(m *ebpf.Map) (map[uint32]*pinnedDef, error) {
	chunks := map[uint32]map[uint32][]byte{}
	var k bpf.GuardDefKey
	var v bpf.GuardDefChunk
	it := m.Iterate()
	for it.Next(&k, &v) {
		if chunks[k.Slot] == nil {
			chunks[k.Slot] = map[uint32][]byte{}
		}
		chunks[k.Slot][k.Chunk] = bytes.Clone(v.Data[:])
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read rule_defs: %w", err)
	}
	out := make(map[uint32]*pinnedDef, len(chunks))
	for slot, cs := range chunks {
		d := &pinnedDef{chunks: slices.Sorted(maps.Keys(cs))}
		for ; cs[d.n] != nil; d.n++ {
			d.data = append(d.data, cs[d.n]...)
		}
		d.data = bytes.TrimRight(d.data, "\x00")
		out[slot] = d
	}
	return out, nil
}

// decodePinnedDef decodes one pinned rule definition as strictly as the API
// decodes a new rule, and checks what only the table sets: an id, and a
// creation and expiry time a rule table could have written at most
// MaxTTLSeconds before now. It returns the rule, or why it is rejected.
func decodePinnedDef(data []byte, now time.Time) (rule.Rule, string) {
	var r rule.Rule
	if len(data) == 0 || rule.UnmarshalStrict(data, &r) != nil {
		return rule.Rule{}, rejectUnreadable
	}
	r.Normalize()
	if r.ID == "" || r.Validate() != nil {
		return rule.Rule{}, rejectInvalid
	}
	latest := now.Add(rule.MaxTTLSeconds*time.Second + expirySlack)
	if r.CreatedAt.IsZero() || r.ExpiresAt.IsZero() || !r.ExpiresAt.After(r.CreatedAt) ||
		r.CreatedAt.After(now.Add(expirySlack)) || r.ExpiresAt.After(latest) {
		return rule.Rule{}, rejectExpiry
	}
	return r, ""
}

// rejectPinned removes a slot's definition chunks and metadata, with one log
// line and a count by reason. Called with t.mu held.
func (t *RuleTable) rejectPinned(slot uint32, d *pinnedDef, reason string) error {
	t.logger.Warn("removed a pinned rule definition that cannot be adopted", "slot", slot, "reason", reason,
		"chunks", len(d.chunks), "definition", rule.CleanText(string(d.data[:min(len(d.data), 200)])))
	t.adoptRejected[reason]++
	if err := t.deleteChunks(slot, d.chunks); err != nil {
		return err
	}
	if slot < FPSlots+CIDRSlots {
		if err := t.maps.RuleMeta.Update(slot, bpf.GuardRuleMeta{}, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("clear rule_meta: %w", err)
		}
	}
	return nil
}

func (t *RuleTable) deleteChunks(slot uint32, chunks []uint32) error {
	for _, c := range chunks {
		if err := t.maps.RuleDefs.Delete(bpf.GuardDefKey{Slot: slot, Chunk: c}); err != nil && !isNotExist(err) {
			return fmt.Errorf("delete from rule_defs: %w", err)
		}
	}
	return nil
}

// AdoptRejected returns how many pinned definitions this table refused to
// adopt when it opened, by reason (every reason present).
func (t *RuleTable) AdoptRejected() map[string]uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]uint64, len(rejectReasons))
	for _, r := range rejectReasons {
		out[r] = t.adoptRejected[r]
	}
	return out
}
