package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/packetscope/packetscope/internal/testnet"
)

// logFigures logs one line of the #15 attacks' figures, which
// scripts/bench-defense.sh tabulates: the attack, the analyst, the alert of
// the first decision that applied a rule and when it fired (its startsAt),
// when the attack was dropped at XDP (dropped: what the test waited for,
// e.g. ">= 95 % dropped"), and the legitimate client's requests since the
// attack's start. Seconds count from the attack's first packet.
func logFigures(t testing.TB, st *defenseStack, attack, analyst string, startedAt time.Time, droppedAfter time.Duration, dropped string, ok, failed int64) {
	t.Helper()
	alert, fired := "?", "?"
	var first *decision
	for _, d := range getDecisions(t, st.agent) {
		if d.Kind == "alert" && len(d.Applied) > 0 && (first == nil || d.ReceivedAt.Before(first.ReceivedAt)) {
			first = &d
		}
	}
	if first != nil {
		alert, fired = first.Alert.Name, fmt.Sprintf("%.1fs", first.Alert.StartsAt.Sub(startedAt).Seconds())
	}
	t.Logf("figures: %s | %s | %s | %s | %.1fs (%s) | %d of %d", attack, analyst, alert, fired, droppedAfter.Seconds(), dropped, ok, ok+failed)
}

// firstPacket is when the attack's first packet left the attacker, which
// the figures count from (the process's start-up is not the defense's
// time); a test measured from startedAt subtracts firstPacket - startedAt.
func firstPacket(t testing.TB, w *testnet.FirstSent, startedAt time.Time) time.Time {
	t.Helper()
	w.Stop()
	at, ok := w.At()
	if !ok || at.Before(startedAt) {
		t.Errorf("no attack packet seen leaving the attacker after %s (seen %v at %s)", startedAt.Format("15:04:05.000"), ok, at.Format("15:04:05.000"))
		return startedAt
	}
	t.Logf("the attack's first packet left the attacker %.2fs after its process started", at.Sub(startedAt).Seconds())
	return at
}
