package e2e

import (
	"fmt"
	"testing"
	"time"
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
