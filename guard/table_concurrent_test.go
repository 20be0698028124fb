package guard

import (
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/packetscope/packetscope/rule"
)

// TestTableConcurrent runs writers adding and deleting rules at once, then
// checks the kernel state against the Go reference on random packets: the
// table must come out whole, whatever the interleaving.
func TestTableConcurrent(t *testing.T) {
	g := openTestGuard(t, Config{SampleEvery: 1, SampleBuffer: 1})
	tbl := g.Rules()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 99))
			var mine []string
			for range 120 {
				if len(mine) > 0 && rng.IntN(3) == 0 {
					i := rng.IntN(len(mine))
					if err := tbl.Delete(mine[i]); err != nil {
						t.Errorf("delete %s: %v", mine[i], err)
						return
					}
					mine = append(mine[:i], mine[i+1:]...)
					continue
				}
				r, err := tbl.Add(randRule(rng))
				if err != nil {
					if isFieldError(err) {
						continue
					}
					t.Errorf("add: %v", err)
					return
				}
				mine = append(mine, r.ID)
			}
		})
	}
	wg.Wait()
	rules := tbl.List()
	matchers := make([]*rule.Matcher, len(rules))
	slots := make([]int, len(rules))
	for i, r := range rules {
		matchers[i], _ = r.Match.Compile()
		slots[i], _ = tbl.Slot(r.ID)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		b := randFrame(rng)
		p := rule.ParseFrame(b)
		want := uint32(0xffffffff)
		if w := rule.Classify(matchers, slots, &p); w >= 0 {
			want = uint32(slots[w])
		}
		run(t, g.Program(), b)
		nextSample(t, g)
		if got := g.lastSampleSlot(); got != want {
			t.Fatalf("packet %d after concurrent writers: kernel slot %d, reference %d (%d rules)", i, got, want, len(rules))
		}
	}
	t.Logf("%d rules left by 8 concurrent writers; 2000 packets agree", len(rules))
}
