package responder

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/packetscope/packetscope/agentapi"
	"github.com/packetscope/packetscope/rule"
)

// Decision is one audit record: an alert and everything done about it, or a
// later event (repeat, resolve, expiry) of the same alert.
type Decision struct {
	ID          string    `json:"id"`
	Time        time.Time `json:"time"`
	Kind        string    `json:"kind"` // alert, repeat, resolved, expired
	Outcome     string    `json:"outcome"`
	Analyst     string    `json:"analyst,omitempty"`
	Alert       AlertInfo `json:"alert"`
	Agent       string    `json:"agent,omitempty"`
	Error       string    `json:"error,omitempty"`
	ReceivedAt  time.Time `json:"received_at"`
	LatencySecs float64   `json:"latency_seconds,omitempty"` // webhook received → last rule pushed

	Evidence    *EvidenceSummary `json:"evidence,omitempty"`
	Answer      *AnswerRecord    `json:"answer,omitempty"`
	Fallback    *AnswerRecord    `json:"fallback,omitempty"` // the builtin answer when the LLM failed
	Validations []Validation     `json:"validations,omitempty"`
	Applied     []AppliedRule    `json:"applied,omitempty"`
	Coverage    float64          `json:"coverage"`   // accepted rules together, on the attack window
	Collateral  float64          `json:"collateral"` // ...and on the baseline
}

// EvidenceSummary is what the analyst saw, in brief.
type EvidenceSummary struct {
	AttackFrom      time.Time                        `json:"attack_from"`
	AttackTo        time.Time                        `json:"attack_to"`
	BaselineFrom    time.Time                        `json:"baseline_from"`
	BaselineTo      time.Time                        `json:"baseline_to"`
	BaselineSource  string                           `json:"baseline_source"` // agent, or responder (its own snapshots: the flood overwrote the agent's window)
	AttackSamples   int                              `json:"attack_samples"`
	BaselineSamples int                              `json:"baseline_samples"`
	SampleEvery     uint32                           `json:"sample_every"`
	Estimated       uint64                           `json:"attack_packets_estimated"`
	Top             map[string][]agentapi.ValueCount `json:"top,omitempty"` // top 3 per field
	Protected       []string                         `json:"protected,omitempty"`
	Candidates      []Candidate                      `json:"candidates,omitempty"`
	ActiveRules     int                              `json:"active_rules"`
}

// AnswerRecord is an analyst's answer as recorded.
type AnswerRecord struct {
	Analyst     string      `json:"analyst"`
	Rationale   string      `json:"rationale,omitempty"`
	Rules       []rule.Rule `json:"rules,omitempty"`
	Error       string      `json:"error,omitempty"`
	Cause       string      `json:"cause,omitempty"` // why the LLM's answer was not used
	DurationSec float64     `json:"duration_seconds"`
}

// AppliedRule is a rule pushed to the agent (or the failure to push it).
type AppliedRule struct {
	ID        string    `json:"id"`
	Action    string    `json:"action"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	Packets   uint64    `json:"packets,omitempty"`  // hits, on expiry records
	Existing  bool      `json:"existing,omitempty"` // an identical rule was already active: not added again
	Error     string    `json:"error,omitempty"`
}

// AuditLog keeps the newest decisions in memory and appends every one to a
// JSON-lines file, which is read back on start so the trail (and the
// responder's memory of which alerts have rules) survives restarts.
type AuditLog struct {
	mu   sync.Mutex
	path string
	f    *os.File
	ring []Decision // newest last
	max  int
}

// maxAuditLine bounds one record when reading the file back.
const maxAuditLine = 4 << 20

// OpenAuditLog opens (creating) the file at path and loads its newest max
// records; path "" keeps decisions in memory only.
func OpenAuditLog(path string, max int) (*AuditLog, error) {
	a := &AuditLog{path: path, max: max}
	if path == "" {
		return a, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("create audit directory: %w", err)
	}
	if err := a.load(); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open audit file: %w", err)
	}
	a.f = f
	return a, nil
}

func (a *AuditLog) load() error {
	f, err := os.Open(a.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open audit file: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), maxAuditLine)
	for sc.Scan() {
		var d Decision
		// A torn last line (a crash mid-write) or a foreign line is skipped,
		// not fatal: the rest of the trail is still worth having.
		if json.Unmarshal(sc.Bytes(), &d) != nil || d.ID == "" {
			continue
		}
		a.push(d)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read audit file: %w", err)
	}
	return nil
}

func (a *AuditLog) push(d Decision) {
	if len(a.ring) >= a.max {
		a.ring = slices.Delete(a.ring, 0, len(a.ring)-a.max+1)
	}
	a.ring = append(a.ring, d)
}

// Record appends d to the file and the memory ring.
func (a *AuditLog) Record(d Decision) error {
	line, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("encode decision: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.push(d)
	if a.f == nil {
		return nil
	}
	if _, err := a.f.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("write audit file: %w", err)
	}
	return nil
}

// List returns up to limit decisions, newest first.
func (a *AuditLog) List(limit int) []Decision {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := min(limit, len(a.ring))
	out := make([]Decision, 0, n)
	for i := len(a.ring) - 1; i >= 0 && len(out) < n; i-- {
		out = append(out, a.ring[i])
	}
	return out
}

// All returns the decisions held, oldest first.
func (a *AuditLog) All() []Decision {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.ring)
}

// Close closes the file.
func (a *AuditLog) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f == nil {
		return nil
	}
	err := a.f.Close()
	a.f = nil
	return err
}
