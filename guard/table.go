package guard

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/packetscope/packetscope/bpf"
	"github.com/packetscope/packetscope/rule"
)

// Slot classes. Priority is the slot, lowest first (guard.Classify): a rule
// whose match names only a source CIDR gets a slot in the CIDR class
// (FPSlots and up), which the kernel looks up in per-prefix-length hash maps
// that scale to ~100k rules; every other rule is a fingerprint rule with a
// slot below FPSlots. So fingerprint rules take precedence over CIDR-only
// rules, and within a class the earlier free slot wins.
const (
	FPSlots   = bpf.GuardFPRules
	CIDRSlots = bpf.GuardCIDRRules
)

// Kernel action codes (enum guard_action).
const (
	kernelDrop      = 1
	kernelRateLimit = 2
	kernelMonitor   = 3
)

// RuleTable is the guard's rule table: it compiles rules into the XDP
// program's maps and keeps each rule's definition in a pinned map, so the
// kernel state is the whole truth and a restarted agent adopts it.
// Safe for concurrent use.
type RuleTable struct {
	mu        sync.Mutex
	logger    *slog.Logger
	maps      *bpf.GuardMaps
	maxRules  int
	byID      map[string]*tableRule
	fpSlots   []*tableRule
	cidrSlots []*tableRule
	fp        *fpFields
	cidr4     *cidrField
	cidr6     *cidrField
	cfg       bpf.GuardConfig
	pf        *prefilter
	now       func() time.Time
	// adoptRejected counts the pinned definitions adopt removed, by reason.
	adoptRejected map[string]uint64
}

type tableRule struct {
	rule rule.Rule
	m    *rule.Matcher
	slot uint32
	// classified is set once the rule's bits or CIDR entries are in the
	// classifier's mirrors: only then may uninstall take them out (the
	// mirrors count references, and taking out what was never put in would
	// take another rule's).
	classified bool
	chunks     uint32 // definition chunks written to rule_defs (0..chunks-1)
}

func newRuleTable(logger *slog.Logger, maps *bpf.GuardMaps, maxRules int, sampleEvery uint32) *RuleTable {
	pf := newPrefilter(maps.AddrPrefilter)
	return &RuleTable{
		pf:        pf,
		logger:    logger,
		maps:      maps,
		maxRules:  maxRules,
		byID:      make(map[string]*tableRule),
		fpSlots:   make([]*tableRule, FPSlots),
		cidrSlots: make([]*tableRule, CIDRSlots),
		fp:        newFPFields(maps, pf),
		cidr4:     newCIDRField(maps.CidrSrc4, maps.CidrOa4, pf),
		cidr6:     newCIDRField(maps.CidrSrc6, maps.CidrOa6, pf),
		cfg:       bpf.GuardConfig{SampleEvery: sampleEvery},
		now:       time.Now,

		adoptRejected: make(map[string]uint64),
	}
}

// isCIDROnly reports whether a match names a source prefix and nothing else.
func isCIDROnly(m *rule.Match) bool {
	return m.Src != "" && m.Dst == "" && m.Protocol == "" && len(m.SrcPorts) == 0 && len(m.DstPorts) == 0 &&
		m.TCPFlags == "" && m.ICMPType == nil && m.TTL == "" && m.Length == "" && m.TCPWindow == "" && m.Fragment == ""
}

// Add validates r, assigns an id when it has none, sets CreatedAt and
// ExpiresAt, and puts it in force. It returns the rule as stored.
func (t *RuleTable) Add(r rule.Rule) (rule.Rule, error) {
	r.Normalize() // whoever calls: the pinned definition is read back by every later agent
	if err := r.Validate(); err != nil {
		return rule.Rule{}, err
	}
	m, err := r.Match.Compile()
	if err != nil {
		return rule.Rule{}, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if r.ID == "" {
		for r.ID == "" || t.byID[r.ID] != nil {
			r.ID = newRuleID()
		}
	} else if t.byID[r.ID] != nil {
		return rule.Rule{}, rule.ErrRuleExists
	}
	if len(t.byID) >= t.maxRules {
		return rule.Rule{}, fmt.Errorf("%w (%d rules, the configured maximum)", rule.ErrRuleTableFull, t.maxRules)
	}
	if r.Origin == "" {
		r.Origin = "manual"
	}
	now := t.now()
	r.CreatedAt = now.UTC().Truncate(time.Millisecond)
	r.ExpiresAt = r.CreatedAt.Add(time.Duration(r.TTLSeconds) * time.Second)
	r.Packets, r.Bytes = 0, 0
	tr := &tableRule{rule: r, m: m}
	cidr := isCIDROnly(&r.Match)
	var ok bool
	if cidr {
		if !t.cidrFor(m).canAdd(m.Src) {
			return rule.Rule{}, rule.FieldErrorf("match.src", "the guard already uses %d distinct prefix lengths for source-only rules of this family: reuse one of them", bpf.GuardCIDRPlens)
		}
		tr.slot, ok = freeSlot(t.cidrSlots, FPSlots)
	} else {
		if err := t.fp.check(m); err != nil {
			return rule.Rule{}, err
		}
		tr.slot, ok = freeSlot(t.fpSlots, 0)
	}
	if !ok {
		return rule.Rule{}, fmt.Errorf("%w (all %d %s slots in use)", rule.ErrRuleTableFull, cap(t.slotsFor(cidr)), map[bool]string{true: "source-CIDR", false: "fingerprint"}[cidr])
	}
	if err := t.install(tr); err != nil {
		// Take back whatever made it into the maps, and only that: every
		// other rule's kernel state stays as it was.
		if rerr := t.uninstall(tr); rerr != nil {
			t.logger.Error("roll back failed rule", "rule_id", r.ID, "err", rerr)
		}
		return rule.Rule{}, fmt.Errorf("install rule %s: %w", r.ID, err)
	}
	t.logger.Info("rule added", "rule_id", r.ID, "slot", tr.slot, "action", r.Action, "origin", r.Origin, "expires_at", r.ExpiresAt)
	return r, nil
}

// Delete removes the rule with that id from the kernel.
func (t *RuleTable) Delete(id string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	tr := t.byID[id]
	if tr == nil {
		return rule.ErrRuleNotFound
	}
	if err := t.uninstall(tr); err != nil {
		return fmt.Errorf("remove rule %s: %w", id, err)
	}
	t.logger.Info("rule deleted", "rule_id", id)
	return nil
}

// List returns the rules in priority order, with hit counters.
func (t *RuleTable) List() []rule.Rule {
	t.mu.Lock()
	trs := make([]*tableRule, 0, len(t.byID))
	for _, tr := range t.byID {
		trs = append(trs, tr)
	}
	t.mu.Unlock()
	slices.SortFunc(trs, func(a, b *tableRule) int { return cmp.Compare(a.slot, b.slot) })
	out := make([]rule.Rule, 0, len(trs))
	for _, tr := range trs {
		r := tr.rule
		r.Packets, r.Bytes = t.ruleStats(tr.slot)
		out = append(out, r)
	}
	return out
}

// Len is the number of rules in the table.
func (t *RuleTable) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byID)
}

// Slot returns the slot (priority) of the rule with that id.
func (t *RuleTable) Slot(id string) (int, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tr := t.byID[id]; tr != nil {
		return int(tr.slot), true
	}
	return 0, false
}

func (t *RuleTable) ruleStats(slot uint32) (packets, bytes uint64) {
	var per []bpf.GuardRuleStats
	if err := t.maps.RuleStats.Lookup(slot, &per); err != nil {
		return 0, 0
	}
	for _, s := range per {
		packets += s.Packets
		bytes += s.Bytes
	}
	return packets, bytes
}

// Expire deletes the rules whose expiry is at or before now and returns how
// many it deleted. The kernel already ignores them; this frees their slots.
func (t *RuleTable) Expire(now time.Time) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for id, tr := range t.byID {
		if now.Before(tr.rule.ExpiresAt) {
			continue
		}
		if err := t.uninstall(tr); err != nil {
			t.logger.Error("remove expired rule", "rule_id", id, "err", err)
			continue
		}
		t.logger.Info("rule expired", "rule_id", id, "expires_at", tr.rule.ExpiresAt)
		n++
	}
	return n
}

// ExpireLoop deletes expired rules every interval until ctx is done.
func (t *RuleTable) ExpireLoop(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			t.Expire(t.now())
		}
	}
}

func (t *RuleTable) slotsFor(cidr bool) []*tableRule {
	if cidr {
		return t.cidrSlots
	}
	return t.fpSlots
}

func (t *RuleTable) cidrFor(m *rule.Matcher) *cidrField {
	if m.Src.Addr().Is4() {
		return t.cidr4
	}
	return t.cidr6
}

func freeSlot(slots []*tableRule, base uint32) (uint32, bool) {
	for i, tr := range slots {
		if tr == nil {
			return base + uint32(i), true
		}
	}
	return 0, false
}

func newRuleID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "r-" + hex.EncodeToString(b)
}

// install writes the rule's definition, verdict parameters and classifier
// bits, the active bit last, so the kernel never sees half a rule.
func (t *RuleTable) install(tr *tableRule) error {
	t.byID[tr.rule.ID] = tr
	if tr.slot >= FPSlots {
		t.cidrSlots[tr.slot-FPSlots] = tr
	} else {
		t.fpSlots[tr.slot] = tr
	}
	if err := t.writeDef(tr); err != nil {
		return err
	}
	if err := t.writeMeta(tr); err != nil {
		return err
	}
	if err := t.resetCounters(tr.slot); err != nil {
		return err
	}
	tr.classified = true
	if tr.slot >= FPSlots {
		c := t.cidrFor(tr.m)
		c.add(tr.slot, tr.m.Src)
		if err := c.flush(); err != nil {
			return err
		}
		return t.writeConfig()
	}
	t.fp.apply(tr.slot, tr.m, true)
	if err := t.fp.flushFields(); err != nil {
		return err
	}
	if err := t.writeConfig(); err != nil {
		return err
	}
	t.fp.wild.set(bpf.GuardWildActive, tr.slot, true)
	return t.fp.wild.flush()
}

// uninstall takes the rule out of force first (active bit, or its CIDR
// entries), then clears the rest.
func (t *RuleTable) uninstall(tr *tableRule) error {
	var errs []error
	switch {
	case !tr.classified:
		// A failed install that never reached the classifier: its slot's
		// meta and definition are all there is to clear.
	case tr.slot >= FPSlots:
		c := t.cidrFor(tr.m)
		c.remove(tr.slot, tr.m.Src)
		errs = append(errs, c.flush(), t.writeConfig(), c.flushGone())
	default:
		t.fp.wild.set(bpf.GuardWildActive, tr.slot, false)
		errs = append(errs, t.fp.wild.flush())
		t.fp.apply(tr.slot, tr.m, false)
		errs = append(errs, t.fp.flushFields(), t.writeConfig())
		for _, p := range t.fp.prefixes() {
			errs = append(errs, p.flushGone())
		}
	}
	errs = append(errs, t.maps.RuleMeta.Update(tr.slot, bpf.GuardRuleMeta{}, ebpf.UpdateAny))
	errs = append(errs, t.deleteDef(tr.slot, tr.chunks))
	delete(t.byID, tr.rule.ID)
	if tr.slot >= FPSlots {
		t.cidrSlots[tr.slot-FPSlots] = nil
	} else {
		t.fpSlots[tr.slot] = nil
	}
	return errors.Join(errs...)
}

func (t *RuleTable) writeMeta(tr *tableRule) error {
	meta := bpf.GuardRuleMeta{ExpiresNs: bootNs(tr.rule.ExpiresAt, t.now()), RatePps: tr.rule.RatePPS}
	switch tr.rule.Action {
	case rule.ActionDrop:
		meta.Action = kernelDrop
	case rule.ActionRateLimit:
		meta.Action = kernelRateLimit
	case rule.ActionMonitor:
		meta.Action = kernelMonitor
	}
	if err := t.maps.RuleMeta.Update(tr.slot, meta, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("update rule_meta: %w", err)
	}
	return nil
}

func (t *RuleTable) resetCounters(slot uint32) error {
	zero := make([]bpf.GuardRuleStats, ebpf.MustPossibleCPU())
	if err := t.maps.RuleStats.Update(slot, zero, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("reset rule_stats: %w", err)
	}
	if err := t.maps.RuleBuckets.Update(slot, bpf.GuardBucket{}, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("reset rule_buckets: %w", err)
	}
	return nil
}

// bootNs converts a wall-clock time to CLOCK_MONOTONIC nanoseconds, the
// clock of the kernel's bpf_ktime_get_coarse_ns (expiry, rate limits).
func bootNs(at, now time.Time) uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	ns := ts.Nano() + at.Sub(now).Nanoseconds()
	if ns <= 0 {
		return 1 // already expired; 0 would mean an empty slot
	}
	return uint64(ns)
}

func (t *RuleTable) writeConfig() error {
	c := &t.cfg
	fill := func(dst []uint8, n *uint8, lens []uint8) {
		clear(dst)
		*n = uint8(copy(dst, lens))
	}
	fill(c.Src4Plens[:], &c.Src4PlensN, t.fp.src4.plens())
	fill(c.Src6Plens[:], &c.Src6PlensN, t.fp.src6.plens())
	fill(c.Dst4Plens[:], &c.Dst4PlensN, t.fp.dst4.plens())
	fill(c.Dst6Plens[:], &c.Dst6PlensN, t.fp.dst6.plens())
	fill(c.Cidr4Plens[:], &c.Cidr4PlensN, t.cidr4.plens())
	fill(c.Cidr6Plens[:], &c.Cidr6PlensN, t.cidr6.plens())
	if err := t.maps.GuardConfig.Update(uint32(0), c, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("update guard_config: %w", err)
	}
	return nil
}

// SetSampleEvery changes the 1-in-N sampling rate in the kernel (0 = off).
func (t *RuleTable) SetSampleEvery(n uint32) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cfg.SampleEvery = n
	return t.writeConfig()
}

// writeDef stores the rule's JSON in the pinned rule_defs map, counting in
// tr.chunks the chunks written so far (what deleteDef must take back).
func (t *RuleTable) writeDef(tr *tableRule) error {
	r := tr.rule
	r.Packets, r.Bytes = 0, 0
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode rule: %w", err)
	}
	for i := 0; i*bpf.GuardDefChunkLen < len(data); i++ {
		var c bpf.GuardDefChunk
		copy(c.Data[:], data[i*bpf.GuardDefChunkLen:])
		if err := t.maps.RuleDefs.Update(bpf.GuardDefKey{Slot: tr.slot, Chunk: uint32(i)}, c, ebpf.UpdateAny); err != nil {
			if errors.Is(err, unix.E2BIG) || errors.Is(err, unix.ENOMEM) {
				return fmt.Errorf("%w (no room for rule definitions)", rule.ErrRuleTableFull)
			}
			return fmt.Errorf("update rule_defs: %w", err)
		}
		tr.chunks = uint32(i + 1)
	}
	return nil
}

// deleteDef removes a slot's definition chunks, the last one first: an
// interrupted delete leaves a definition cut short (adopt removes it as
// unreadable), never chunks without a chunk 0. Chunks past the count (none
// unless a crash left them) are removed too.
func (t *RuleTable) deleteDef(slot, chunks uint32) error {
	for i := chunks; ; i++ {
		err := t.maps.RuleDefs.Delete(bpf.GuardDefKey{Slot: slot, Chunk: i})
		if isNotExist(err) {
			break
		}
		if err != nil {
			return fmt.Errorf("delete from rule_defs: %w", err)
		}
	}
	for i := chunks; i > 0; i-- {
		if err := t.maps.RuleDefs.Delete(bpf.GuardDefKey{Slot: slot, Chunk: i - 1}); err != nil && !isNotExist(err) {
			return fmt.Errorf("delete from rule_defs: %w", err)
		}
	}
	return nil
}

func isNotExist(err error) bool { return errors.Is(err, ebpf.ErrKeyNotExist) }

// adopt loads the rules a previous agent left in the pinned maps and
// rewrites every classifier map from them, wiping anything half-written.
func (t *RuleTable) adopt() (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	defs, err := readDefs(t.maps.RuleDefs)
	if err != nil {
		return 0, err
	}
	now := t.now()
	for _, slot := range slices.Sorted(maps.Keys(defs)) {
		d := defs[slot]
		r, reason := rule.Rule{}, rejectSlot
		var m *rule.Matcher
		if slot < FPSlots+CIDRSlots {
			r, reason = decodePinnedDef(d.data, now)
		}
		if reason == "" {
			m, _ = r.Match.Compile() // Validate compiled it already
			switch {
			case isCIDROnly(&r.Match) != (slot >= FPSlots):
				reason = rejectSlot
			case t.byID[r.ID] != nil:
				reason = rejectDuplicate
			}
		}
		if reason != "" {
			if err := t.rejectPinned(slot, d, reason); err != nil {
				return 0, err
			}
			continue
		}
		if len(d.chunks) > int(d.n) {
			// Chunks past a gap: left by a crash; a later, longer
			// definition in this slot would run into them.
			t.logger.Warn("removed orphan rule definition chunks", "slot", slot, "chunks", len(d.chunks)-int(d.n))
			t.adoptRejected[rejectOrphan]++
			if err := t.deleteChunks(slot, d.chunks[d.n:]); err != nil {
				return 0, err
			}
		}
		cidr := slot >= FPSlots
		tr := &tableRule{rule: r, m: m, slot: slot, classified: true, chunks: d.n}
		t.byID[r.ID] = tr
		if cidr {
			t.cidrSlots[slot-FPSlots] = tr
			t.cidrFor(m).add(slot, m.Src)
		} else {
			t.fpSlots[slot] = tr
			t.fp.apply(slot, m, true)
			t.fp.wild.set(bpf.GuardWildActive, slot, true)
		}
		if err := t.writeMeta(tr); err != nil {
			return 0, err
		}
	}
	for _, a := range append(t.fp.arrays(), t.fp.wild) {
		if err := a.rewriteAll(); err != nil {
			return 0, err
		}
	}
	t.fp.names.dirty = true // a crash may have left bits of rules gone
	if err := t.fp.names.flush(); err != nil {
		return 0, err
	}
	// Prefilter bits first: an entry must never be in a map with its bit clear.
	for _, p := range t.fp.prefixes() {
		for e := range p.entries {
			_ = t.pf.add(p.tid, e, false)
			p.marked[e] = true
		}
	}
	for _, c := range []*cidrField{t.cidr4, t.cidr6} {
		for e := range c.vals {
			_ = t.pf.add(pfCIDR4, e, false)
			c.marked[e] = true
		}
	}
	if err := t.pf.rewriteAll(); err != nil {
		return 0, err
	}
	for _, p := range t.fp.prefixes() {
		if err := p.adopt(); err != nil {
			return 0, err
		}
	}
	for _, c := range []*cidrField{t.cidr4, t.cidr6} {
		if err := syncHash(c.m, c.vals, func(v uint32) any { return v }); err != nil {
			return 0, err
		}
		if err := c.oa.adopt(c.vals); err != nil {
			return 0, err
		}
		clear(c.dirty)
		clear(c.gone)
	}
	return len(t.byID), t.writeConfig()
}

// syncHash makes a prefix-keyed hash map hold exactly want.
func syncHash[V any](m *ebpf.Map, want map[netip.Prefix]V, val func(V) any) error {
	wantKeys := make(map[any]bool, len(want))
	for p, v := range want {
		k := addrKey(p)
		wantKeys[k] = true
		if err := m.Update(k, val(v), ebpf.UpdateAny); err != nil {
			return fmt.Errorf("update %s: %w", m, err)
		}
	}
	var stale []any
	if m.KeySize() == 8 {
		keys, err := mapKeys[bpf.GuardKey4](m)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if !wantKeys[k] {
				stale = append(stale, k)
			}
		}
	} else {
		keys, err := mapKeys[bpf.GuardKey6](m)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if !wantKeys[k] {
				stale = append(stale, k)
			}
		}
	}
	for _, k := range stale {
		if err := m.Delete(k); err != nil && !isNotExist(err) {
			return fmt.Errorf("delete from %s: %w", m, err)
		}
	}
	return nil
}

// mapKeys returns every key of a hash map.
func mapKeys[K any](m *ebpf.Map) ([]K, error) {
	var out []K
	var prev any
	for {
		var k K
		err := m.NextKey(prev, &k)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read keys of %s: %w", m, err)
		}
		out = append(out, k)
		prev = k
	}
}
