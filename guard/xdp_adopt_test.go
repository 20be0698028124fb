package guard

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/packetscope/packetscope/rule"
)

// TestPinAdopt closes a guard with rules of every kind in its pinned maps
// (some deleted, leaving tombstones) and opens a new one on the same pin
// path: it must list the same rules with the same ids, slots and expiry,
// give every packet the same verdict, and keep adding rules without clashes.
func TestPinAdopt(t *testing.T) {
	pin := testPinPath(t)
	rng := rand.New(rand.NewPCG(7, 7))
	g := openTestGuard(t, Config{SampleEvery: 1, SampleBuffer: 1, PinPath: pin})
	var ids []string
	for range 300 {
		r, err := g.Rules().Add(randRule(rng))
		if err != nil {
			if isFieldError(err) {
				continue
			}
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	for i, id := range ids {
		if i%3 == 0 {
			if err := g.Rules().Delete(id); err != nil {
				t.Fatal(err)
			}
		}
	}
	frames := make([][]byte, 1500)
	slots := make([]uint32, len(frames))
	for i := range frames {
		frames[i] = randFrame(rng)
		run(t, g.Program(), frames[i])
		nextSample(t, g)
		slots[i] = g.lastSampleSlot()
	}
	type key struct {
		id   string
		slot int
	}
	before := map[key]rule.Rule{}
	for _, r := range g.Rules().List() {
		s, _ := g.Rules().Slot(r.ID)
		before[key{r.ID, s}] = r
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}

	g2 := openTestGuard(t, Config{SampleEvery: 1, SampleBuffer: 1, PinPath: pin})
	after := g2.Rules().List()
	if len(after) != len(before) {
		t.Fatalf("adopted %d rules, want %d", len(after), len(before))
	}
	for _, r := range after {
		s, _ := g2.Rules().Slot(r.ID)
		b, ok := before[key{r.ID, s}]
		if !ok || !b.ExpiresAt.Equal(r.ExpiresAt) || b.Reason != r.Reason || b.Packets != r.Packets {
			t.Errorf("adopted rule %s slot %d = %+v, before %+v", r.ID, s, r, b)
		}
	}
	for i, f := range frames {
		run(t, g2.Program(), f)
		nextSample(t, g2)
		if got := g2.lastSampleSlot(); got != slots[i] {
			t.Fatalf("frame %d: slot %d after adoption, %d before", i, got, slots[i])
		}
	}
	// New rules take free slots, never an adopted one.
	used := []int{}
	for _, r := range after {
		s, _ := g2.Rules().Slot(r.ID)
		used = append(used, s)
	}
	for range 20 {
		r := mustAdd(t, g2.Rules(), rule.Rule{Match: rule.Match{Protocol: "udp", DstPorts: []string{"7"}}})
		s, _ := g2.Rules().Slot(r.ID)
		if slices.Contains(used, s) {
			t.Fatalf("new rule got adopted slot %d", s)
		}
		used = append(used, s)
	}
}
