package responder

import "time"

// recheckLimit bounds how often a firing alert whose decision proposed
// nothing is decided again on the responder's own initiative.
const recheckLimit = 3

// scheduleRecheck decides an alert again when its decision found nothing
// to block, or failed at the agent: after cfg.Recheck, then twice and four times that (1, 2, 4 s by
// default: the first as soon as another second of traffic is in the
// window, the last a few seconds on, for evidence that needs time, such as
// a connection's age). An alert can fire before the traffic
// window shows its cause plainly: a flood's first second is sampled thinly,
// a slow client's connections are not yet old enough. Alertmanager repeats a
// firing alert only every repeat_interval (minutes) and a repeat is decided
// again only after cfg.Reanalyze, so without a recheck the attack runs on
// unanswered; the same holds for an agent that failed to answer (restarting,
// say). Rechecks stop when the alert resolves, when a decision installs
// rules, and after recheckLimit tries: a bounded number of extra analyst
// calls per alert. It reports whether a recheck is scheduled, and when: the decision is
// then "deferred", not "no_action", so PacketScopeFloodNotMitigated waits for
// the last word. Called with r.mu held.
func (r *Responder) scheduleRecheck(fp string, s *alertState) (time.Duration, bool) {
	if s.rechecks >= recheckLimit {
		return 0, false
	}
	delay := r.cfg.Recheck << s.rechecks
	s.rechecks++
	time.AfterFunc(delay, func() { r.recheck(fp, s) })
	return delay, true
}

// recheck queues the alert's decision again if it is the same alert, still
// firing, still without rules and not in hand already (a notification may
// have retried a failed one meanwhile).
func (r *Responder) recheck(fp string, s *alertState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.alerts[fp] != s || s.resolved || (s.status != statusDone && s.status != statusFailed) || len(s.rules) > 0 {
		return
	}
	r.requeue(s, job{kind: jobAnalyze, alert: s.alert, agentURL: s.agentURL, received: r.cfg.Now(), recheck: s.rechecks})
}

// requeue queues a decision the responder starts itself, unless the queue is
// full of newer alerts: they go first. Called with r.mu held.
func (r *Responder) requeue(s *alertState, j job) {
	select {
	case r.queue <- j:
		s.status = statusPending
		r.metrics.queueDepth.Set(float64(len(r.queue)))
	default:
	}
}

// topUpBelow: a decision whose rules cover less of the attack window than
// this is followed by one top-up.
const topUpBelow = 0.95

// scheduleTopUp decides an alert once more, 2 × cfg.Recheck after a
// decision whose rules cover only part of the attack window. A flood of
// several kinds (SYN, ACK, odd flags at once) can fire its first alert
// while the window holds too few of one kind's packets for a rule, and
// every alert of the flood can decide on that same thin window; the part
// left over may be under every alert's floor, so no alert comes for it and
// Alertmanager's repeat is minutes away. The top-up sees a window with
// seconds more of the flood and adds what it finds; it never removes or
// replaces the alert's rules (push). One per alert: a bounded extra
// analyst call. Called with r.mu held.
func (r *Responder) scheduleTopUp(fp string, s *alertState) (time.Duration, bool) {
	if s.toppedUp {
		return 0, false
	}
	s.toppedUp = true
	delay := 2 * r.cfg.Recheck
	time.AfterFunc(delay, func() { r.topUp(fp, s) })
	return delay, true
}

// topUp queues the alert's top-up if it is the same alert, still firing,
// decided, with its rules, and no refresh in hand.
func (r *Responder) topUp(fp string, s *alertState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.alerts[fp] != s || s.resolved || s.status != statusDone || len(s.rules) == 0 || s.refreshing {
		return
	}
	r.requeue(s, job{kind: jobAnalyze, alert: s.alert, agentURL: s.agentURL, received: r.cfg.Now(), topUp: true})
}
