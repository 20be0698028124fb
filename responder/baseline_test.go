package responder

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/packetscope/packetscope/agentapi"
	"github.com/packetscope/packetscope/rule"
)

// floodedAgent is an agent whose sample window a flood has overwritten:
// before the flood it reports ordinary traffic; during it, only the flood,
// and nothing from before.
type floodedAgent struct {
	Agent
	clock    *fakeClock
	flooding atomic.Bool
	ordinary []rule.Packet
	flood    []rule.Packet
}

func (f *floodedAgent) Traffic(_ context.Context, from, to time.Time, n int) (agentapi.TrafficReport, error) {
	var pkts []rule.Packet
	switch {
	case !f.flooding.Load():
		pkts = f.ordinary
	case f.clock.Now().Sub(to) < 5*time.Second:
		pkts = f.flood
	}
	rep := agentapi.TrafficReport{From: from, To: to, SampleEvery: 1, Protected: []string{nodeAddr.String()}}
	for _, p := range pkts[:min(n, len(pkts))] {
		rep.Samples = append(rep.Samples, rule.Sample{Time: to, Packet: p})
	}
	rep.Totals.SampledPackets = uint64(len(rep.Samples))
	return rep, nil
}

// TestBaselineSurvivesFlood: the responder's own snapshots of ordinary
// traffic stand in for the baseline the flood erased from the agent, so
// collateral is still measured and ordinary traffic still spared.
func TestBaselineSurvivesFlood(t *testing.T) {
	clock := &fakeClock{}
	rulesAgent := newFakeAgent(t, nil, nil) // serves the rules API
	fa := &floodedAgent{clock: clock, ordinary: ordinaryTraffic(101, 3000), flood: mix(7, hpingSYNFlood(12, 3000, true), ordinaryTraffic(102, 100))}
	tr := startResponder(t, Config{AgentURL: rulesAgent.srv.URL, Now: clock.Now, BaselinePoll: 20 * time.Millisecond,
		NewAgent: func(u, tok string) Agent { fa.Agent = agentapi.NewClient(u, tok, nil); return fa }}, true)
	time.Sleep(200 * time.Millisecond) // a few snapshots of ordinary traffic
	clock.Advance(3 * time.Minute)
	fa.flooding.Store(true)
	if code, text := tr.post(t, webhookToken, payload(t, "alertmanager-firing.json", func(m map[string]any) {
		m["alerts"].([]any)[0].(map[string]any)["startsAt"] = clock.Now().Add(-30 * time.Second).Format(time.RFC3339Nano)
	})); code != 200 {
		t.Fatalf("post: %d %s", code, text)
	}
	d := tr.waitDecision(t, isKind("alert"))
	if d.Evidence == nil || d.Evidence.BaselineSource != "responder" || d.Evidence.BaselineSamples < 1000 {
		t.Fatalf("baseline: %+v", d.Evidence)
	}
	if d.Outcome != OutcomeApplied {
		t.Fatalf("outcome %s: %+v", d.Outcome, d.Validations)
	}
	rp := ReplayRules(rulesAgent.store.Adds(), hpingSYNFlood(13, 2000, true), ordinaryTraffic(103, 20000))
	if rp.Coverage < 0.99 || rp.Collateral > 0.01 {
		t.Errorf("coverage %.4f collateral %.4f", rp.Coverage, rp.Collateral)
	}
}
