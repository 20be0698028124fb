package responder

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/packetscope/packetscope/agentapi"
	"github.com/packetscope/packetscope/rule"
)

// Decision is one audit record: an alert and everything done about it, or a
// later event (repeat, resolve, expiry) of the same alert.
type Decision struct {
	ID          string    `json:"id"`
	Time        time.Time `json:"time"`
	Kind        string    `json:"kind"` // alert, repeat, resolved, expired, withdrawn
	Outcome     string    `json:"outcome"`
	Analyst     string    `json:"analyst,omitempty"`
	Alert       AlertInfo `json:"alert"`
	Agent       string    `json:"agent,omitempty"`
	Error       string    `json:"error,omitempty"`
	Notes       []string  `json:"notes,omitempty"` // what the responder did beyond the outcome (resolved meanwhile, ...)
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
	Reactions       int                              `json:"reactions,omitempty"` // the stack's reactions in the attack window
	SampleEvery     uint32                           `json:"sample_every"`
	Estimated       uint64                           `json:"attack_packets_estimated"`
	Top             map[string][]agentapi.ValueCount `json:"top,omitempty"` // top 3 per field
	Protected       []string                         `json:"protected,omitempty"`
	Candidates      []Candidate                      `json:"candidates,omitempty"`
	ActiveRules     int                              `json:"active_rules"`
	// SlowConnections is the agent's slow-connection report, sanitized
	// (the evidence of a slow_connections alert).
	SlowConnections *agentapi.SlowConnReport `json:"slow_connections,omitempty"`
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
// responder's memory of which alerts have rules) survives restarts. The file
// rotates by size (lumberjack), keeping a bounded number of old files.
type AuditLog struct {
	mu      sync.Mutex
	path    string
	w       *lumberjack.Logger
	ring    []Decision // newest last
	max     int
	skipped int // unreadable lines skipped when the trail was loaded
}

// AuditConfig configures an AuditLog.
type AuditConfig struct {
	Path         string // "" keeps decisions in memory only
	MaxDecisions int    // kept in memory (and read back on start)
	MaxSizeMB    int    // the file rotates when it would grow past this (default 100)
	MaxFiles     int    // rotated files kept beside the current one (default 5)
}

// maxAuditLine bounds one record, written or read back. A decision is
// bounded well below it (alerts are sanitized and truncated on arrival);
// a longer one is written without its evidence and analyst answers.
const maxAuditLine = 1 << 20

// OpenAuditLog opens (creating) the file and loads the newest decisions
// from it and from the newest rotated file. Lines it cannot read (a torn
// last line, a foreign or oversized line) are skipped, counted and logged:
// a damaged trail must not keep the responder from starting.
func OpenAuditLog(logger *slog.Logger, cfg AuditConfig) (*AuditLog, error) {
	if cfg.MaxDecisions <= 0 {
		cfg.MaxDecisions = 1000
	}
	a := &AuditLog{path: cfg.Path, max: cfg.MaxDecisions}
	if cfg.Path == "" {
		return a, nil
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o750); err != nil {
		return nil, fmt.Errorf("create audit directory: %w", err)
	}
	files := rotatedAuditFiles(cfg.Path)
	if n := len(files); n > 0 {
		files = files[n-1:]
	}
	for _, f := range append(files, cfg.Path) {
		if err := a.load(f); err != nil {
			return nil, err
		}
	}
	if a.skipped > 0 && logger != nil {
		logger.Warn("skipped unreadable audit lines", "file", cfg.Path, "lines", a.skipped)
	}
	// Created like lumberjack would, but now: a directory the responder
	// cannot write to is an error at start, not at the first decision.
	f, err := os.OpenFile(cfg.Path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open audit file: %w", err)
	}
	f.Close()
	if cfg.MaxSizeMB <= 0 {
		cfg.MaxSizeMB = 100
	}
	if cfg.MaxFiles <= 0 {
		cfg.MaxFiles = 5
	}
	a.w = &lumberjack.Logger{Filename: cfg.Path, MaxSize: cfg.MaxSizeMB, MaxBackups: cfg.MaxFiles}
	return a, nil
}

// rotatedAuditFiles lists lumberjack's rotated copies of path (NAME-TIME.EXT),
// oldest first: the time stamp sorts.
func rotatedAuditFiles(path string) []string {
	ext := filepath.Ext(path)
	base := strings.TrimSuffix(path, ext)
	files, _ := filepath.Glob(base + "-*" + ext)
	slices.Sort(files)
	return files
}

// Skipped is the number of unreadable lines skipped when the trail was loaded.
func (a *AuditLog) Skipped() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.skipped
}

func (a *AuditLog) load(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open audit file: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	var line []byte
	for {
		chunk, isPrefix, err := br.ReadLine()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read audit file %s: %w", path, err)
		}
		if len(line)+len(chunk) <= maxAuditLine {
			line = append(line, chunk...)
		} else {
			line = append(line[:0], 0) // over the bound: make it unreadable
		}
		if isPrefix {
			continue
		}
		var d Decision
		if len(line) > 0 {
			// A torn last line (a crash mid-write), a foreign or oversized
			// line is skipped, not fatal.
			if json.Unmarshal(line, &d) != nil || d.ID == "" {
				a.skipped++
			} else {
				a.push(d)
			}
		}
		line = line[:0]
	}
	return nil
}

func (a *AuditLog) push(d Decision) {
	if len(a.ring) >= a.max {
		a.ring = slices.Delete(a.ring, 0, len(a.ring)-a.max+1)
	}
	a.ring = append(a.ring, d)
}

// encodeDecision writes d as one JSON line without HTML escaping (which
// sextuples every '<' an alert carries). A line over maxAuditLine is written
// without the evidence and the analysts' answers, with a note saying so.
func encodeDecision(d Decision) ([]byte, error) {
	enc := func(d Decision) ([]byte, error) {
		var b bytes.Buffer
		e := json.NewEncoder(&b)
		e.SetEscapeHTML(false)
		if err := e.Encode(d); err != nil {
			return nil, fmt.Errorf("encode decision: %w", err)
		}
		return b.Bytes(), nil
	}
	line, err := enc(d)
	if err != nil || len(line) <= maxAuditLine {
		return line, err
	}
	d.Evidence, d.Answer, d.Fallback, d.Validations = nil, nil, nil, nil
	d.Notes = append(slices.Clone(d.Notes), "record over the size bound: evidence and answers left out")
	d.Alert.Annotations = nil
	return enc(d)
}

// Record appends d to the file and the memory ring.
func (a *AuditLog) Record(d Decision) error {
	line, err := encodeDecision(d)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.push(d)
	if a.w == nil {
		return nil
	}
	if _, err := a.w.Write(line); err != nil {
		return fmt.Errorf("write audit file: %w", err)
	}
	return nil
}

// List returns up to limit decisions, newest first, starting after the
// decision with id before ("" starts at the newest).
func (a *AuditLog) List(limit int, before string) []Decision {
	a.mu.Lock()
	defer a.mu.Unlock()
	i := len(a.ring) - 1
	if before != "" {
		i = -1
		for k := len(a.ring) - 1; k >= 0; k-- {
			if a.ring[k].ID == before {
				i = k - 1
				break
			}
		}
	}
	out := make([]Decision, 0, max(0, min(limit, i+1)))
	for ; i >= 0 && len(out) < limit; i-- {
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
	if a.w == nil {
		return nil
	}
	err := a.w.Close()
	a.w = nil
	return err
}
