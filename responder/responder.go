// Package responder closes the defense loop: it receives Alertmanager
// webhooks, pulls the alerting agent's traffic window, asks an analyst
// (builtin fingerprint mining or an LLM) for rules, judges them with
// guardrails no analyst can bypass, pushes the accepted ones to the agent and
// records every step in an audit trail.
package responder

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/packetscope/packetscope/agentapi"
	"github.com/packetscope/packetscope/rule"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/config"
)

// Defaults of Config that operators see as flag defaults.
const (
	DefaultRuleTTL         = 10 * time.Minute
	DefaultAttackWindowMin = 30 * time.Second
	DefaultBaselineGap     = time.Minute
)

// Mode says what the responder's rules do to the packets they match.
type Mode string

const (
	ModeEnforce Mode = "enforce" // rules act: drop or rate-limit
	ModeMonitor Mode = "monitor" // every rule is installed as a would-drop counter
)

// Modes are the modes there are.
var Modes = []Mode{ModeEnforce, ModeMonitor}

// Config configures a Responder. Zero values take the defaults noted.
type Config struct {
	// The agents: AgentURL and AgentURLs (--agent.url) and the file_sd
	// targets file AgentTargetsFile, re-read every AgentTargetsReload
	// (default 5s). An alert's instance label selects among them; at least
	// one source is needed.
	AgentURL           string
	AgentURLs          []string
	AgentTargetsFile   string
	AgentTargetsReload time.Duration
	// AgentHTTP is how the responder authenticates to agents (Prometheus'
	// http_config: authorization, basic_auth, tls_config, proxy).
	// AgentToken is the shorthand: a bearer token, when AgentHTTP sets no
	// authorization of its own.
	AgentHTTP    config.HTTPClientConfig
	AgentToken   string
	WebhookToken string      // bearer token Alertmanager must send; "" refuses every webhook
	Analyst      AnalystName // AnalystBuiltin (default) or AnalystLLM
	LLM          LLMConfig
	Mode         Mode   // ModeEnforce (default) or ModeMonitor
	AuditFile    string // JSON-lines audit trail; "" keeps it in memory only
	// The audit file rotates past AuditMaxSizeMB (default 100), keeping
	// AuditMaxFiles old files (default 5).
	AuditMaxSizeMB int
	AuditMaxFiles  int
	// APIToken, when set, is the bearer token GET /api/v1/decisions needs
	// (--api.token-file): the trail holds evidence about the network.
	APIToken string

	RemoveOnResolve bool          // delete an alert's rules when it resolves
	RuleTTL         time.Duration // TTL of installed rules (default DefaultRuleTTL)
	Reanalyze       time.Duration // a firing alert that got no rules is analyzed again after this (default 2m)
	// Recheck: an alert whose decision proposed nothing is decided
	// again after this, then after twice and four times this, while it
	// fires (default 1s; see scheduleRecheck).
	Recheck time.Duration

	Guardrails Guardrails  // zero fields take DefaultGuardrails
	Miner      MinerConfig // fingerprint miner tuning

	AttackWindowMin time.Duration // the attack window is at least this long (default DefaultAttackWindowMin)
	AttackWindowMax time.Duration // ...and at most this (default 2m)
	BaselineWindow  time.Duration // the baseline window before the attack (default 5m)
	// BaselineGap separates the baseline from the attack window: an alert
	// starts after its expression crossed the threshold over a rate window,
	// so the flood began earlier than the alert's StartsAt (default
	// DefaultBaselineGap).
	BaselineGap time.Duration
	// BaselinePoll is how often the responder snapshots each known agent's
	// traffic, so a baseline survives a flood that overwrites the agent's
	// window (default 30s).
	BaselinePoll time.Duration
	MaxSamples   int // sampled headers pulled per window (default 5000)

	QueueSize    int // alerts waiting for a worker (default 256); full → 503
	Workers      int // concurrent decisions (default 2)
	MaxAlerts    int // alerts tracked at once (default 10000); beyond → 503
	MaxDecisions int // decisions kept in memory for GET /api/v1/decisions (default 1000)

	// NewAgent returns the client for a configured agent URL; nil means an
	// agentapi.Client over the AgentHTTP client (token "" then: the HTTP
	// client carries the credential, on every request).
	NewAgent func(baseURL, token string) Agent
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() error {
	switch {
	case c.Analyst == "":
		c.Analyst = AnalystBuiltin
	case !slices.Contains(AnalystNames, c.Analyst):
		return fmt.Errorf("analyst %q is not one of %v", c.Analyst, AnalystNames)
	}
	switch {
	case c.Mode == "":
		c.Mode = ModeEnforce
	case !slices.Contains(Modes, c.Mode):
		return fmt.Errorf("mode %q is not one of %v", c.Mode, Modes)
	}
	dur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	num := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	dur(&c.RuleTTL, DefaultRuleTTL)
	dur(&c.Reanalyze, 2*time.Minute)
	dur(&c.Recheck, time.Second)
	dur(&c.AttackWindowMin, DefaultAttackWindowMin)
	dur(&c.AttackWindowMax, 2*time.Minute)
	dur(&c.BaselineWindow, 5*time.Minute)
	dur(&c.BaselineGap, DefaultBaselineGap)
	dur(&c.BaselinePoll, baselinePollEvery)
	num(&c.MaxSamples, 5000)
	num(&c.QueueSize, 256)
	num(&c.Workers, 2)
	num(&c.MaxAlerts, 10000)
	num(&c.MaxDecisions, 1000)
	g, d := &c.Guardrails, DefaultGuardrails
	num(&g.MinPrefixLenV4, d.MinPrefixLenV4)
	num(&g.MinPrefixLenV6, d.MinPrefixLenV6)
	dur(&g.MinRuleTTL, d.MinRuleTTL)
	dur(&g.MaxRuleTTL, d.MaxRuleTTL)
	num(&g.MaxRules, d.MaxRules)
	if g.MinCoverage <= 0 {
		g.MinCoverage = d.MinCoverage
	}
	if g.MaxCollateral <= 0 {
		g.MaxCollateral = d.MaxCollateral
	}
	num(&g.MinBaseline, d.MinBaseline)
	if g.MaxSourceShare <= 0 {
		g.MaxSourceShare = d.MaxSourceShare
	}
	if c.Miner.MinPrefixLenV4 == 0 {
		c.Miner.MinPrefixLenV4 = g.MinPrefixLenV4
	}
	if c.Miner.MinPrefixLenV6 == 0 {
		c.Miner.MinPrefixLenV6 = g.MinPrefixLenV6
	}
	dur(&c.AgentTargetsReload, 5*time.Second)
	if c.NewAgent == nil {
		hc, err := NewAgentHTTPClient(c.AgentHTTP, c.AgentToken)
		if err != nil {
			return err
		}
		c.NewAgent = func(baseURL, _ string) Agent { return agentapi.NewClient(baseURL, "", hc) }
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Responder receives alerts and acts on them; see the package comment.
type Responder struct {
	logger  *slog.Logger
	cfg     Config
	metrics *metrics
	audit   *AuditLog
	// webhookToken guards POST /api/v1/alerts (refused while unset);
	// apiToken guards GET /api/v1/decisions (open while unset).
	webhookToken, apiToken agentapi.BearerToken
	// analysts are asked in order under the fallback policy.
	analysts []Analyst

	queue chan job

	mu        sync.Mutex
	alerts    map[string]*alertState // by fingerprint
	targets   *AgentTargets
	agents    map[string]Agent     // by URL, configured agents only
	healthy   map[string]time.Time // agent URL → last successful probe
	closed    bool
	seq       uint64
	pushMu    sync.Mutex // one decision pushes to agents at a time
	handler   http.Handler
	baselines *baselineCache
}

type jobKind int

const (
	jobAnalyze jobKind = iota // a new firing alert
	jobRefresh                // a repeat: extend the rules' TTL
	jobResolve                // the alert resolved
)

type job struct {
	kind     jobKind
	alert    AlertInfo
	agentURL string
	received time.Time
	recheck  int  // > 0: the responder's own recheck of an alert (scheduleRecheck)
	topUp    bool // the responder's own second look at a flood its rules held only in part (scheduleTopUp)
}

type alertStatus int

const (
	statusPending alertStatus = iota // queued or being decided
	statusDone                       // decided (rules may be empty)
	statusFailed                     // the agent failed: the next notification retries
)

type alertState struct {
	status     alertStatus
	agentURL   string
	analyst    string
	rules      []AppliedRule
	decidedAt  time.Time
	lastSeen   time.Time
	refreshing bool
	resolved   bool // resolved while pending: the decision in flight cleans up
	unmeasured bool // rules went in as monitor for want of a baseline: a repeat decides again
	rechecks   int  // decisions the responder started itself after one found nothing
	toppedUp   bool // a top-up was scheduled: one per alert
	alert      AlertInfo
}

// New builds a responder and reloads its audit trail.
func New(logger *slog.Logger, reg prometheus.Registerer, cfg Config) (*Responder, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	urls := slices.Clone(cfg.AgentURLs)
	if cfg.AgentURL != "" {
		urls = append(urls, cfg.AgentURL)
	}
	targets, err := NewAgentTargets(logger, urls, cfg.AgentTargetsFile)
	if err != nil {
		return nil, err
	}
	if len(urls) == 0 && cfg.AgentTargetsFile == "" {
		return nil, errors.New("no agents configured: set --agent.url or --agent.targets-file")
	}
	audit, err := OpenAuditLog(logger, AuditConfig{Path: cfg.AuditFile, MaxDecisions: cfg.MaxDecisions,
		MaxSizeMB: cfg.AuditMaxSizeMB, MaxFiles: cfg.AuditMaxFiles})
	if err != nil {
		return nil, err
	}
	r := &Responder{
		webhookToken: agentapi.NewBearerToken(cfg.WebhookToken),
		apiToken:     agentapi.NewBearerToken(cfg.APIToken),
		logger:       logger,
		cfg:          cfg,
		metrics:      newMetrics(reg),
		audit:        audit,
		queue:        make(chan job, cfg.QueueSize),
		alerts:       map[string]*alertState{},
		agents:       map[string]Agent{},
		healthy:      map[string]time.Time{},

		baselines: newBaselineCache(),
	}
	r.targets = targets
	for _, u := range targets.URLs() {
		r.baselines.track(u)
	}
	r.analysts = analystChain(cfg, r.metrics)
	r.handler = r.newHandler()
	r.restore()
	return r, nil
}

// restore rebuilds which alerts have live rules from the audit trail, so a
// restarted responder extends them on a repeat instead of adding duplicates.
func (r *Responder) restore() {
	now := r.cfg.Now()
	for _, d := range r.audit.All() {
		fp := d.Alert.Fingerprint
		switch d.Kind {
		case "alert", "repeat":
			var live []AppliedRule
			for _, a := range d.Applied {
				if a.Error == "" && a.ExpiresAt.After(now) {
					live = append(live, a)
				}
			}
			if len(live) > 0 {
				r.alerts[fp] = &alertState{status: statusDone, agentURL: d.Agent, analyst: d.Analyst, rules: live, decidedAt: d.Time, lastSeen: d.Time, alert: d.Alert}
			}
		case "resolved", "expired":
			delete(r.alerts, fp)
		}
	}
	if n := len(r.alerts); n > 0 {
		r.logger.Info("restored alerts with live rules from the audit trail", "alerts", n)
	}
}

// agentFor returns the client for a configured agent. Any other URL (one an
// older version's audit trail recorded from an alert's instance label, or an
// agent since removed from the targets file) gets a client that refuses
// every call: the credential goes to configured agents only.
func (r *Responder) agentFor(url string) Agent {
	if !r.targets.Has(url) {
		return unconfiguredAgent{}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	a, ok := r.agents[url]
	if !ok {
		a = r.cfg.NewAgent(url, r.cfg.AgentToken)
		if len(r.agents) < 2*maxTargets { // bound the cache across target reloads
			r.agents[url] = a
		}
	}
	return a
}

// Run processes queued alerts and expires records until ctx is done, then
// finishes the alerts already queued and returns.
func (r *Responder) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for range r.cfg.Workers {
		wg.Go(func() {
			for {
				select {
				case j := <-r.queue:
					r.metrics.queueDepth.Set(float64(len(r.queue)))
					r.process(ctx, j)
				case <-ctx.Done():
					return
				}
			}
		})
	}
	wg.Go(func() { r.targets.Watch(ctx, r.cfg.AgentTargetsReload) })
	wg.Go(func() {
		r.pollBaselines(ctx, r.cfg.BaselinePoll)
		tick := time.NewTicker(r.cfg.BaselinePoll)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				r.pollBaselines(ctx, r.cfg.BaselinePoll)
			case <-ctx.Done():
				return
			}
		}
	})
	tick := time.NewTicker(15 * time.Second)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case <-tick.C:
			r.sweep(ctx)
		case <-ctx.Done():
			done = true
		}
	}
	wg.Wait()
	// Drain: alerts Alertmanager was told were accepted are still decided.
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	for {
		select {
		case j := <-r.queue:
			r.process(dctx, j)
		default:
			return r.audit.Close()
		}
	}
}

func (r *Responder) process(ctx context.Context, j job) {
	switch j.kind {
	case jobAnalyze:
		r.decide(ctx, j)
	case jobRefresh:
		_ = r.refresh(ctx, j) // the webhook runs refreshes itself; this path is for a drained queue
	case jobResolve:
		r.resolve(ctx, j)
	}
}

func (r *Responder) nextID() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	return fmt.Sprintf("%d-%d", r.cfg.Now().UnixMilli(), r.seq)
}

func (r *Responder) record(d Decision) {
	if d.ID == "" {
		d.ID = r.nextID()
	}
	if d.Time.IsZero() {
		d.Time = r.cfg.Now()
	}
	analyst := d.Analyst
	if analyst == "" {
		analyst = string(r.cfg.Analyst)
	}
	r.metrics.decisions.WithLabelValues(analyst, d.Outcome).Inc()
	if err := r.audit.Record(d); err != nil {
		r.logger.Error("record decision", "err", err)
	}
	r.logger.Info("decision", "alert", d.Alert.Name, "fingerprint", d.Alert.Fingerprint, "kind", d.Kind,
		"outcome", d.Outcome, "analyst", d.Analyst, "rules", len(d.Applied), "err", d.Error)
}

// ruleIDPrefix makes a decision's rule IDs a function of the alert, so a
// rule can never be added twice for one alert: the agent refuses a second
// rule with the same id.
func ruleIDPrefix(fingerprint string) string {
	b := make([]byte, 0, 16)
	for i := 0; i < len(fingerprint) && len(b) < 16; i++ {
		c := fingerprint[i]
		if c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' {
			b = append(b, c)
		}
	}
	return "ps-" + string(b) + "-"
}

// decide runs one alert through evidence → analyst → guardrails → agent.
func (r *Responder) decide(ctx context.Context, j job) {
	d := Decision{Kind: "alert", Alert: j.alert, Agent: j.agentURL, ReceivedAt: j.received, Analyst: string(r.cfg.Analyst)}
	if j.recheck > 0 {
		d.Notes = append(d.Notes, fmt.Sprintf("recheck %d of %d: the alert still fires and the last decision applied nothing", j.recheck, recheckLimit))
	}
	if j.topUp {
		d.Notes = append(d.Notes, "top-up: the alert still fires and the last decision's rules covered only part of its attack window; rules in force stay")
	}
	agent := r.agentFor(j.agentURL)
	ev, summary, err := r.gather(ctx, agent, j)
	if err != nil {
		d.Outcome, d.Error = OutcomeAgentError, err.Error()
		r.finish(j, &d, statusFailed)
		r.record(d)
		return
	}
	d.Evidence = summary
	validations, analyst := r.analyze(ctx, ev, &d)
	d.Analyst, d.Validations = string(analyst), validations
	var accepted []rule.Rule
	for _, v := range validations {
		res := "rejected"
		if v.Accepted {
			res = "accepted"
			accepted = append(accepted, v.Rule)
		}
		r.metrics.validations.WithLabelValues(string(analyst), res).Inc()
	}
	switch {
	case len(validations) == 0 && d.Answer != nil && d.Answer.Error != "":
		d.Outcome = OutcomeAnalystErr
	case len(validations) == 0:
		d.Outcome = OutcomeNoAction
	case len(accepted) == 0:
		d.Outcome = OutcomeRejected
	default:
		rp := ReplayRules(accepted, ev.Attack, ev.Baseline)
		d.Coverage, d.Collateral = rp.Coverage, rp.Collateral
		failed, added := r.push(ctx, agent, j, accepted, validations, &d)
		d.LatencySecs = r.cfg.Now().Sub(j.received).Seconds()
		switch {
		case j.topUp && added == 0 && failed == 0:
			d.Outcome = OutcomeRepeat
			d.Notes = append(d.Notes, "top-up: every rule proposed is in force already")
		case failed > 0 && added == 0 && (failed == len(accepted) || j.topUp):
			d.Outcome, d.Error = OutcomeAgentError, "no rule could be pushed"
			r.finish(j, &d, statusFailed)
			r.record(d)
			return
		case r.cfg.Mode == ModeMonitor || allMonitor(accepted):
			d.Outcome = OutcomeMonitor
		default:
			d.Outcome = OutcomeApplied
		}
		r.metrics.latency.WithLabelValues(string(analyst)).Observe(d.LatencySecs)
	}
	r.finish(j, &d, statusDone)
	r.record(d)
}

// push adds the accepted rules to the agent under ids derived from the
// alert. Pushes are serialized and the agent's rules listed first, so a rule
// whose match is already enforced (another alert of the same flood) is not
// added twice, and rules an earlier decision for this alert left behind (a
// restart lost the state, say) are replaced, never duplicated; a top-up
// keeps them. It returns how many pushes failed and how many rules it added.
func (r *Responder) push(ctx context.Context, agent Agent, j job, accepted []rule.Rule, vs []Validation, d *Decision) (failed, added int) {
	r.pushMu.Lock()
	defer r.pushMu.Unlock()
	active, err := agent.ListRules(ctx)
	if err != nil {
		for _, ar := range accepted {
			d.Applied = append(d.Applied, AppliedRule{Action: string(ar.Action), Error: agentFailure("list rules", err)})
		}
		return len(accepted), 0
	}
	prefix := ruleIDPrefix(j.alert.Fingerprint)
	var others, own []rule.Rule
	used := map[string]bool{}
	for _, old := range active {
		switch {
		case !strings.HasPrefix(old.ID, prefix):
			others = append(others, old)
		case j.topUp:
			// A top-up adds to the alert's rules, never takes one away:
			// they hold the part of the flood they were made for.
			own = append(own, old)
			used[old.ID] = true
			d.Applied = append(d.Applied, AppliedRule{ID: old.ID, Action: string(old.Action), ExpiresAt: old.ExpiresAt})
		default:
			_ = agent.DeleteRule(ctx, old.ID)
		}
	}
	for i, nr := range accepted {
		if sameRule(own, nr) != nil {
			continue // in force for this alert already, and listed
		}
		if dup := sameRule(others, nr); dup != nil {
			d.Applied = append(d.Applied, AppliedRule{ID: dup.ID, Action: string(dup.Action), ExpiresAt: dup.ExpiresAt, Existing: true})
			continue
		}
		nr.ID = fmt.Sprintf("%s%d", prefix, i)
		for n := len(accepted); used[nr.ID]; n++ {
			nr.ID = fmt.Sprintf("%s%d", prefix, n)
		}
		used[nr.ID] = true
		if nr.Origin == rule.OriginLLM {
			// The model's own words stay in the audit trail; the agent
			// gets a reason the responder wrote.
			v := vs[indexOf(vs, i)]
			nr.Reason = fmt.Sprintf("llm rule for alert %s (coverage %.3f, collateral %.3f)", SanitizeIdent(j.alert.Name), v.Coverage, v.Collateral)
		}
		ar := AppliedRule{ID: nr.ID, Action: string(nr.Action)}
		got, err := agent.AddRule(ctx, nr)
		if err != nil {
			ar.Error = agentFailure("add rule", err)
			failed++
		} else {
			added++
			ar.ExpiresAt = got.ExpiresAt
			if ar.ExpiresAt.IsZero() {
				ar.ExpiresAt = r.cfg.Now().Add(time.Duration(nr.TTLSeconds) * time.Second)
			}
		}
		d.Applied = append(d.Applied, ar)
	}
	return failed, added
}

// sameRule returns the active rule that already does what r would do.
func sameRule(active []rule.Rule, r rule.Rule) *rule.Rule {
	want, _ := json.Marshal(r.Match)
	for i := range active {
		a := &active[i]
		if a.Action != r.Action || a.RatePPS != r.RatePPS {
			continue
		}
		if got, _ := json.Marshal(a.Match); bytes.Equal(got, want) {
			return a
		}
	}
	return nil
}

// indexOf maps the i-th accepted rule back to its validation.
func indexOf(vs []Validation, i int) int {
	n := -1
	for k, v := range vs {
		if v.Accepted {
			n++
			if n == i {
				return k
			}
		}
	}
	return 0
}

// SanitizeIdent keeps an identifier (alert name) to letters, digits, '_',
// ':', '-' and '.', at most 64 of them.
func SanitizeIdent(s string) string {
	b := make([]byte, 0, min(len(s), 64))
	for i := 0; i < len(s) && len(b) < 64; i++ {
		c := s[i]
		if c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == ':' || c == '-' || c == '.' {
			b = append(b, c)
		}
	}
	return string(b)
}

func (r *Responder) finish(j job, d *Decision, st alertStatus) {
	r.mu.Lock()
	s, ok := r.alerts[j.alert.Fingerprint]
	if !ok || s.resolved {
		// The alert resolved while it was being decided: its state is not
		// recreated, and with RemoveOnResolve the rules just pushed go.
		delete(r.alerts, j.alert.Fingerprint)
		r.mu.Unlock()
		d.Notes = append(d.Notes, "the alert resolved while it was being decided")
		if r.cfg.RemoveOnResolve && len(d.Applied) > 0 {
			r.pushMu.Lock()
			removed := r.removeRules(context.Background(), j.agentURL, ownRules(d.Applied))
			r.pushMu.Unlock()
			d.Notes = append(d.Notes, fmt.Sprintf("%d rules removed on resolve", len(removed)))
		}
		return
	}
	defer r.mu.Unlock()
	if j.topUp && d.Outcome != OutcomeApplied {
		// Nothing added: the alert keeps the rules it had, as decided.
		s.status = statusDone
		return
	}
	s.status, s.agentURL, s.analyst, s.decidedAt, s.alert = st, j.agentURL, d.Analyst, r.cfg.Now(), j.alert
	s.rules = ownRules(d.Applied)
	s.unmeasured = false
	for _, v := range d.Validations {
		s.unmeasured = s.unmeasured || (v.Accepted && v.Unmeasured)
	}
	switch {
	case st == statusDone && d.Outcome == OutcomeApplied && !j.topUp && d.Coverage < topUpBelow:
		if delay, ok := r.scheduleTopUp(j.alert.Fingerprint, s); ok {
			d.Notes = append(d.Notes, fmt.Sprintf("the rules cover %.1f %% of the attack window: looked at again in %s", 100*d.Coverage, delay))
		}
	case st == statusDone && d.Outcome == OutcomeNoAction:
		if delay, ok := r.scheduleRecheck(j.alert.Fingerprint, s); ok {
			d.Outcome = OutcomeDeferred
			d.Notes = append(d.Notes, fmt.Sprintf("nothing to block yet: decided again in %s", delay))
		}
	case st == statusFailed:
		// An agent restarting or briefly overloaded: its next answer is
		// seconds away, Alertmanager's next notification minutes.
		if delay, ok := r.scheduleRecheck(j.alert.Fingerprint, s); ok {
			d.Notes = append(d.Notes, fmt.Sprintf("the agent failed: decided again in %s", delay))
		}
	}
}

func allMonitor(rules []rule.Rule) bool {
	for _, r := range rules {
		if r.Action != rule.ActionMonitor {
			return false
		}
	}
	return true
}

// ownRules keeps the applied rules that were pushed without error. Existing
// rules belong to another alert, which extends and removes them; they are
// kept so a repeat knows this alert is covered.
func ownRules(applied []AppliedRule) []AppliedRule {
	var out []AppliedRule
	for _, a := range applied {
		if a.Error == "" {
			out = append(out, a)
		}
	}
	return out
}

// gather pulls the attack and baseline windows and the active rules.
func (r *Responder) gather(ctx context.Context, agent Agent, j job) (*Evidence, *EvidenceSummary, error) {
	now := r.cfg.Now()
	from := j.alert.StartsAt
	if from.IsZero() || from.After(now.Add(-r.cfg.AttackWindowMin)) {
		from = now.Add(-r.cfg.AttackWindowMin)
	}
	if from.Before(now.Add(-r.cfg.AttackWindowMax)) {
		from = now.Add(-r.cfg.AttackWindowMax)
	}
	// The baseline ends before the flood began, which is before the alert
	// started, even when the attack window looks only at its last minutes.
	anchor := from
	if st := j.alert.StartsAt; !st.IsZero() && st.Before(anchor) {
		anchor = st
	}
	baseEnd := anchor.Add(-r.cfg.BaselineGap)
	// The three pulls are independent: made at once, the evidence costs
	// one round trip to the agent, not three (the defense loop has 3 s).
	var (
		attack, baseline         agentapi.TrafficReport
		active                   []rule.Rule
		attackErr, baseErr, lErr error
		wg                       sync.WaitGroup
	)
	wg.Go(func() { attack, attackErr = agent.Traffic(ctx, from, now, r.cfg.MaxSamples) })
	wg.Go(func() {
		baseline, baseErr = agent.Traffic(ctx, baseEnd.Add(-r.cfg.BaselineWindow), baseEnd, r.cfg.MaxSamples)
	})
	wg.Go(func() { active, lErr = agent.ListRules(ctx) })
	wg.Wait()
	switch {
	case attackErr != nil:
		return nil, nil, errors.New(agentFailure("pull attack window", attackErr))
	case baseErr != nil:
		return nil, nil, errors.New(agentFailure("pull baseline window", baseErr))
	case lErr != nil:
		return nil, nil, errors.New(agentFailure("list rules", lErr))
	}
	if j.alert.Labels["attack"] == AttackSlowConnections {
		// A slow-connection alert fires seconds after the connections
		// opened (they must be a while old): the baseline ends before the
		// first of them, whatever the gap.
		if began := attack.SlowConnections.Began(); !began.IsZero() {
			baseline.Samples = slices.DeleteFunc(baseline.Samples, func(s rule.Sample) bool { return !s.Time.Before(began) })
		}
	}
	basePkts, baseSource, baseSpan := packetsOf(baseline.Samples), "agent", sampleSpan(baseline.Samples)
	if len(basePkts) < minAgentBaselineShare {
		if cached := r.baselines.window(j.agentURL, baseEnd.Add(-r.cfg.BaselineWindow), baseEnd); len(cached) > len(basePkts) {
			basePkts, baseSource, baseSpan = cached, "responder", r.cfg.BaselineWindow
		}
	}
	ev := &Evidence{
		Alert: j.alert, AttackFrom: from, AttackTo: now,
		Attack: packetsOf(attack.Samples), Baseline: basePkts, Reactions: attack.Reactions,
		AttackTop: attack.Top, SampleEvery: attack.SampleEvery, Estimated: attack.Totals.EstimatedPackets,
		BaselineSeconds: baseSpan.Seconds(),
		ActiveRules:     active,
	}
	ev.Protected = append(ev.Protected, r.cfg.Guardrails.NeverBlock...)
	for _, s := range append(attack.Protected, baseline.Protected...) {
		if p, err := parsePrefixLoose(s); err == nil {
			ev.Protected = append(ev.Protected, p)
		} else {
			r.logger.Warn("agent reported an unreadable protected address", "value", SanitizeText(s, 64))
		}
	}
	ev.SlowConnections = attack.SlowConnections
	ev.UDPPeers = attack.UDPPeers
	if j.alert.Labels["attack"] == AttackSlowConnections {
		ev.Candidates = MineSlow(r.cfg.Miner, ev.SlowConnections, normalizePrefixes(append(ev.Protected, alwaysProtected...)))
	} else {
		ev.Candidates = MineEvidence(r.cfg.Miner, j.alert.Labels["attack"], ev.Attack, ev.Baseline, ev.Reactions, normalizePrefixes(append(ev.Protected, alwaysProtected...)), ev.UDPPeers...)
	}
	sum := &EvidenceSummary{
		AttackFrom: from, AttackTo: now, BaselineFrom: baseEnd.Add(-r.cfg.BaselineWindow), BaselineTo: baseEnd, BaselineSource: baseSource,
		AttackSamples: len(ev.Attack), BaselineSamples: len(ev.Baseline), Reactions: len(ev.Reactions), SampleEvery: ev.SampleEvery,
		Estimated: ev.Estimated, Candidates: ev.Candidates, ActiveRules: len(active), Top: map[string][]agentapi.ValueCount{},
	}
	for k, vs := range attack.Top {
		sum.Top[k] = vs[:min(3, len(vs))]
	}
	sum.SlowConnections = slowForPrompt(ev)
	for _, p := range ev.Protected {
		sum.Protected = append(sum.Protected, p.String())
	}
	return ev, sum, nil
}

// sampleSpan is the time the samples span: an agent up for less than the
// baseline window holds less than it. At least a second, so a rate from
// a handful of samples is not inflated without bound.
func sampleSpan(ss []rule.Sample) time.Duration {
	if len(ss) == 0 {
		return 0
	}
	lo, hi := ss[0].Time, ss[0].Time
	for _, s := range ss[1:] {
		if s.Time.Before(lo) {
			lo = s.Time
		}
		if s.Time.After(hi) {
			hi = s.Time
		}
	}
	return max(hi.Sub(lo), time.Second)
}

func packetsOf(ss []rule.Sample) []rule.Packet {
	out := make([]rule.Packet, len(ss))
	for i := range ss {
		out[i] = ss[i].Packet
	}
	return out
}

// analyze asks the analysts under the fallback policy and records their
// answers. It returns the validations that count and the analyst whose
// answer stands.
func (r *Responder) analyze(ctx context.Context, ev *Evidence, d *Decision) ([]Validation, AnalystName) {
	check := func(analyst AnalystName, rules []rule.Rule) []Validation {
		return r.cfg.Guardrails.Check(CheckInput{
			Attack: ev.Attack, Baseline: ev.Baseline, Protected: ev.Protected,
			ActiveRules: countResponderRules(ev.ActiveRules), Mode: r.cfg.Mode, RuleTTL: r.cfg.RuleTTL, Origin: string(analyst),
			SampleEvery: ev.SampleEvery, BaselineSeconds: ev.BaselineSeconds, UDPPeers: ev.UDPPeers,
			SlowSources: slowEvidence(ev.Alert.Labels["attack"], ev.SlowConnections), SlowTotal: slowTotal(ev.SlowConnections),
			Unserved: unservedSources(ev.SlowConnections),
		}, rules)
	}
	p := proposeWithFallback(ctx, r.analysts, ev, check)
	for i, at := range p.Attempts {
		rec := answerRecord(at)
		if i == 0 {
			d.Answer = rec
			continue
		}
		d.Fallback = rec
		r.metrics.llmFallback.WithLabelValues(p.Attempts[i-1].Cause).Inc()
	}
	return p.Validations, p.Analyst
}

// answerRecord is an attempt as the audit trail keeps it.
func answerRecord(at Attempt) *AnswerRecord {
	rec := &AnswerRecord{Analyst: string(at.Analyst), Cause: at.Cause, DurationSec: at.Duration.Seconds()}
	if at.Err != nil {
		rec.Error = SanitizeText(at.Err.Error(), 512)
	} else {
		rec.Rationale, rec.Rules = at.Answer.Rationale, at.Answer.Rules
	}
	return rec
}

func countResponderRules(rules []rule.Rule) int {
	n := 0
	for _, r := range rules {
		if r.Origin == rule.OriginBuiltin || r.Origin == rule.OriginLLM {
			n++
		}
	}
	return n
}

// refresh extends a repeat alert's rules with a fresh TTL. No analyst is
// asked. Each rule is added again under a new id before the old one is
// deleted, so a failing agent never leaves the alert uncovered; it runs under
// the push lock, so it never interleaves with a decision's or a resolve's
// pushes. It returns an error when a rule could not be extended, which the
// webhook turns into a 503 so Alertmanager sends the notification again.
func (r *Responder) refresh(ctx context.Context, j job) error {
	r.pushMu.Lock()
	defer r.pushMu.Unlock()
	r.mu.Lock()
	s, ok := r.alerts[j.alert.Fingerprint]
	var rules []AppliedRule
	var analyst, agentURL string
	if ok {
		rules, analyst, agentURL = slices.Clone(s.rules), s.analyst, s.agentURL
	}
	r.mu.Unlock()
	if !ok || len(rules) == 0 {
		r.clearRefreshing(j.alert.Fingerprint, nil)
		return nil
	}
	if agentURL == "" {
		agentURL = j.agentURL
	}
	agent := r.agentFor(agentURL)
	d := Decision{Kind: "repeat", Alert: j.alert, Agent: agentURL, ReceivedAt: j.received, Analyst: analyst}
	active, err := agent.ListRules(ctx)
	if err != nil {
		d.Outcome, d.Error = OutcomeAgentError, agentFailure("list rules", err)
		r.clearRefreshing(j.alert.Fingerprint, nil)
		r.record(d)
		return errors.New(d.Error)
	}
	byID := map[string]rule.Rule{}
	for _, a := range active {
		byID[a.ID] = a
	}
	var updated []AppliedRule
	failed := 0
	for _, ar := range rules {
		if ar.Existing {
			updated = append(updated, ar)
			continue
		}
		cur, ok := byID[ar.ID]
		if !ok {
			continue // expired meanwhile; a new decision will come on the next repeat
		}
		next := cur
		next.ID = refreshedRuleID(ar.ID, r.cfg.Now())
		next.TTLSeconds = int64(r.cfg.RuleTTL / time.Second)
		next.CreatedAt, next.ExpiresAt, next.Packets, next.Bytes = time.Time{}, time.Time{}, 0, 0
		got, err := agent.AddRule(ctx, next)
		if err != nil {
			// The old rule stays in force until its own expiry.
			failed++
			old := ar
			old.Packets, old.Error = cur.Packets, agentFailure("extend rule", err)
			updated = append(updated, old)
			continue
		}
		out := AppliedRule{ID: next.ID, Action: ar.Action, Packets: cur.Packets, ExpiresAt: got.ExpiresAt}
		if out.ExpiresAt.IsZero() {
			out.ExpiresAt = r.cfg.Now().Add(r.cfg.RuleTTL)
		}
		if err := agent.DeleteRule(ctx, ar.ID); err != nil && !isNotFound(err) {
			// Both are in force now; the old one expires on its own.
			r.logger.Warn("delete the refreshed rule's old copy", "rule_id", ar.ID, "err", agentFailure("delete rule", err))
		}
		updated = append(updated, out)
	}
	d.Applied, d.Outcome = updated, OutcomeRepeat
	if failed > 0 {
		d.Outcome, d.Error = OutcomeAgentError, fmt.Sprintf("%d of the alert's rules could not be extended; they stay until they expire", failed)
	}
	d.LatencySecs = r.cfg.Now().Sub(j.received).Seconds()
	r.clearRefreshing(j.alert.Fingerprint, updated)
	r.record(d)
	if failed > 0 {
		return errors.New(d.Error)
	}
	return nil
}

// refreshedRuleID names a refreshed copy of a rule: the decision's id with a
// new generation suffix, so it keeps the alert's prefix and never collides
// with the copy it replaces.
func refreshedRuleID(id string, now time.Time) string {
	if i := strings.LastIndex(id, "-r"); i > 0 {
		id = id[:i]
	}
	return id + "-r" + strconv.FormatInt(now.UnixMilli(), 36)
}

func isNotFound(err error) bool {
	ae, ok := agentapi.AsAPIError(err)
	return ok && ae.Status == http.StatusNotFound
}

// clearRefreshing ends a refresh; updated (when not nil) replaces the rules.
// A rule whose extension failed keeps its old expiry and stays listed.
func (r *Responder) clearRefreshing(fp string, updated []AppliedRule) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.alerts[fp]
	if !ok {
		return
	}
	s.refreshing = false
	if updated != nil {
		s.rules = nil
		for _, a := range updated {
			if a.Error == "" || a.ExpiresAt.After(r.cfg.Now()) {
				a.Error = ""
				s.rules = append(s.rules, a)
			}
		}
	}
}

// resolve records a resolved alert and, if configured, removes its rules.
// An alert still being decided is only marked: the decision, when it
// finishes, sees the mark and cleans up (finish), rather than recreating
// the state of an alert that is over.
func (r *Responder) resolve(ctx context.Context, j job) {
	r.pushMu.Lock()
	defer r.pushMu.Unlock()
	r.mu.Lock()
	s, ok := r.alerts[j.alert.Fingerprint]
	var rules []AppliedRule
	d := Decision{Kind: "resolved", Outcome: OutcomeResolved, Alert: j.alert, Agent: j.agentURL, ReceivedAt: j.received}
	if ok {
		rules, d.Analyst = s.rules, s.analyst
		if s.agentURL != "" {
			d.Agent = s.agentURL
		}
		if s.status == statusPending {
			s.resolved = true
			rules = nil
		} else {
			delete(r.alerts, j.alert.Fingerprint)
		}
	}
	r.mu.Unlock()
	d.Applied = rules
	if r.cfg.RemoveOnResolve && len(rules) > 0 && d.Agent != "" {
		d.Applied = r.removeRules(ctx, d.Agent, rules)
	}
	r.record(d)
}

// removeRules deletes the alert's own rules (not Existing ones: those belong
// to another alert) and returns what happened to each.
func (r *Responder) removeRules(ctx context.Context, agentURL string, rules []AppliedRule) []AppliedRule {
	agent := r.agentFor(agentURL)
	var out []AppliedRule
	for _, ar := range rules {
		if ar.Existing {
			continue
		}
		o := AppliedRule{ID: ar.ID, Action: ar.Action}
		if err := agent.DeleteRule(ctx, ar.ID); err != nil && !isNotFound(err) {
			o.Error = agentFailure("delete rule", err)
		}
		out = append(out, o)
	}
	return out
}

// sweep records rules that expired (with their last hit counts) and forgets
// alerts that have been quiet for long.
// sweepItem is an alert whose decision left rules on an agent.
type sweepItem struct {
	fp, agent string
	rules     []AppliedRule
	alert     AlertInfo
	analyst   string
}

func (r *Responder) sweep(ctx context.Context) {
	now := r.cfg.Now()
	var live []sweepItem
	r.mu.Lock()
	for fp, s := range r.alerts {
		if s.status != statusPending && len(s.rules) == 0 && now.Sub(s.lastSeen) > time.Hour {
			delete(r.alerts, fp)
			continue
		}
		if s.status == statusDone && len(s.rules) > 0 {
			live = append(live, sweepItem{fp: fp, agent: s.agentURL, rules: append([]AppliedRule(nil), s.rules...), alert: s.alert, analyst: s.analyst})
		}
	}
	r.mu.Unlock()
	for _, it := range live {
		agent := r.agentFor(it.agent)
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		active, err := agent.ListRules(cctx)
		cancel()
		if err != nil {
			continue
		}
		byID := map[string]rule.Rule{}
		for _, a := range active {
			byID[a.ID] = a
		}
		var gone, kept []AppliedRule
		for _, ar := range it.rules {
			if cur, ok := byID[ar.ID]; ok {
				ar.Packets = cur.Packets
				kept = append(kept, ar)
			} else if !now.Before(ar.ExpiresAt) {
				gone = append(gone, ar)
			} else {
				kept = append(kept, ar) // deleted by hand or not yet visible: keep until expiry
			}
		}
		kept = r.withdrawServed(ctx, agent, it, active, kept)
		r.mu.Lock()
		if s, ok := r.alerts[it.fp]; ok {
			s.rules = kept
		}
		r.mu.Unlock()
		if len(gone) > 0 {
			alert := it.alert
			if alert.Fingerprint == "" {
				alert.Fingerprint = it.fp
			}
			r.record(Decision{Kind: "expired", Outcome: OutcomeExpired, Alert: alert, Agent: it.agent, Analyst: it.analyst, Applied: gone, ReceivedAt: now})
		}
	}
}

// ParseNeverBlock parses configured never-block CIDRs.
func ParseNeverBlock(items []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range items {
		p, err := parsePrefixLoose(s)
		if err != nil {
			return nil, fmt.Errorf("parse never-block %q: %w", s, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// Decisions returns up to limit decisions, newest first.
func (r *Responder) Decisions(limit int) []Decision { return r.audit.List(limit, "") }
