package responder

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/packetscope/packetscope/rule"
)

// A flood overwrites an agent's sample window within seconds (the window is
// bounded by count), so by the time an alert fires the traffic from before
// the attack may be gone. The responder therefore keeps its own small,
// bounded record of each known agent's ordinary traffic: a snapshot of
// sampled headers every poll interval, from which a baseline is rebuilt when
// the agent's own window no longer reaches back far enough.

const (
	baselinePollEvery     = 30 * time.Second
	baselineSnapSamples   = 500 // headers per snapshot
	baselineMaxSnaps      = 24  // 12 minutes at one per 30 s
	baselineMaxAgents     = 16  // agents polled
	minAgentBaselineShare = 200 // fewer samples than this in the agent's baseline: use the cache
)

type baselineSnap struct {
	from, to time.Time
	pkts     []rule.Packet
}

type baselineCache struct {
	mu     sync.Mutex
	agents map[string][]baselineSnap // agent URL → snapshots, oldest first
}

func newBaselineCache() *baselineCache { return &baselineCache{agents: map[string][]baselineSnap{}} }

// track adds an agent to the polled set (bounded).
func (c *baselineCache) track(url string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.agents[url]; !ok && len(c.agents) < baselineMaxAgents {
		c.agents[url] = nil
	}
}

func (c *baselineCache) urls() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.agents))
	for u := range c.agents {
		out = append(out, u)
	}
	slices.Sort(out)
	return out
}

func (c *baselineCache) add(url string, s baselineSnap) {
	c.mu.Lock()
	defer c.mu.Unlock()
	snaps := append(c.agents[url], s)
	if len(snaps) > baselineMaxSnaps {
		snaps = slices.Delete(snaps, 0, len(snaps)-baselineMaxSnaps)
	}
	c.agents[url] = snaps
}

// window returns the cached packets of snapshots lying within [from, to].
func (c *baselineCache) window(url string, from, to time.Time) []rule.Packet {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []rule.Packet
	for _, s := range c.agents[url] {
		if !s.from.Before(from) && !s.to.After(to) {
			out = append(out, s.pkts...)
		}
	}
	return out
}

// pollBaselines takes one snapshot of every tracked agent's last interval.
func (r *Responder) pollBaselines(ctx context.Context, every time.Duration) {
	now := r.cfg.Now()
	for _, url := range r.baselines.urls() {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		rep, err := r.agentFor(url).Traffic(cctx, now.Add(-every), now, baselineSnapSamples)
		cancel()
		if err != nil {
			r.logger.Debug("baseline snapshot failed", "agent", url, "err", err)
			continue
		}
		r.baselines.add(url, baselineSnap{from: now.Add(-every), to: now, pkts: packetsOf(rep.Samples)})
	}
}
