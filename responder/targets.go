package responder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v2"
)

// The agents the responder talks to come only from its configuration:
// --agent.url and a targets file in Prometheus' file_sd format, which any
// service discovery can write. An alert's instance label selects among them
// and is never dialed: an alert is text anyone who reaches Alertmanager (or
// the webhook) can write, and the responder sends its agent credential to
// whatever it dials.

// maxTargets bounds the agents a targets file may list.
const maxTargets = 4096

// maxTargetsFile bounds the targets file read.
const maxTargetsFile = 4 << 20

// targetGroup is one entry of a file_sd file.
type targetGroup struct {
	Targets []string          `yaml:"targets"`
	Labels  map[string]string `yaml:"labels"`
}

// AgentTargets is the set of configured agents, by the host:port an alert's
// instance label names them with. It is safe for concurrent use.
type AgentTargets struct {
	logger *slog.Logger
	static map[string]string // key → base URL, from --agent.url
	file   string

	mu       sync.RWMutex
	fromFile map[string]string
	lastData []byte
}

// NewAgentTargets checks the configured agent URLs and reads the targets
// file once; a file that cannot be read at start is an error (a typo in a
// flag should not look like an empty fleet).
func NewAgentTargets(logger *slog.Logger, urls []string, file string) (*AgentTargets, error) {
	t := &AgentTargets{logger: logger, static: map[string]string{}, file: file}
	for _, raw := range urls {
		u, err := url.Parse(strings.TrimRight(raw, "/"))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("parse agent url %q: want http(s)://host:port", raw)
		}
		key, ok := agentKey(u.Host)
		if !ok {
			return nil, fmt.Errorf("parse agent url %q: want http(s)://host:port with a port", raw)
		}
		t.static[key] = u.Scheme + "://" + u.Host + u.Path
	}
	if file != "" {
		err := t.Reload()
		switch {
		case errors.Is(err, fs.ErrNotExist):
			// A sidecar that writes the file may start after the responder.
			if logger != nil {
				logger.Warn("agent targets file does not exist yet; no agent from it until it does", "file", file)
			}
		case err != nil:
			return nil, err
		}
	}
	return t, nil
}

// ParseTargets reads a file_sd document (YAML or JSON: a list of
// {targets: [host:port], labels: {...}}) into key → base URL. The label
// __scheme__ (http or https) sets the scheme; other labels are ignored.
func ParseTargets(data []byte) (map[string]string, error) {
	var groups []targetGroup
	if err := yaml.UnmarshalStrict(data, &groups); err != nil {
		return nil, fmt.Errorf("parse targets: %w", err)
	}
	out := map[string]string{}
	for i, g := range groups {
		scheme := "http"
		if s, ok := g.Labels["__scheme__"]; ok {
			if s != "http" && s != "https" {
				return nil, fmt.Errorf("parse targets: group %d: __scheme__ %q is not http or https", i, s)
			}
			scheme = s
		}
		for _, tg := range g.Targets {
			key, ok := agentKey(tg)
			if !ok {
				return nil, fmt.Errorf("parse targets: group %d: target %q is not host:port", i, tg)
			}
			out[key] = scheme + "://" + key
			if len(out) > maxTargets {
				return nil, fmt.Errorf("parse targets: more than %d targets", maxTargets)
			}
		}
	}
	return out, nil
}

// Reload reads the targets file again. On an error the previous set stays
// in force: a half-written file must not empty the fleet.
func (t *AgentTargets) Reload() error {
	if t.file == "" {
		return nil
	}
	data, err := readBounded(t.file, maxTargetsFile)
	if err != nil {
		return fmt.Errorf("read agent targets file: %w", err)
	}
	t.mu.RLock()
	same := t.lastData != nil && bytes.Equal(data, t.lastData)
	t.mu.RUnlock()
	if same {
		return nil
	}
	set, err := ParseTargets(data)
	if err != nil {
		return fmt.Errorf("agent targets file %s: %w", t.file, err)
	}
	t.mu.Lock()
	t.fromFile, t.lastData = set, data
	t.mu.Unlock()
	if t.logger != nil {
		t.logger.Info("agent targets loaded", "file", t.file, "agents", len(set))
	}
	return nil
}

// Watch re-reads the targets file every interval until ctx is done. Polling
// the content, not watching inotify events, also sees a Kubernetes ConfigMap
// update (a symlink swap of the directory the file lives in).
func (t *AgentTargets) Watch(ctx context.Context, every time.Duration) {
	if t.file == "" {
		return
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	var lastErr string
	for {
		select {
		case <-tick.C:
			// Logged when the trouble changes, not on every poll.
			err := t.Reload()
			if msg := fmt.Sprint(err); err != nil && msg != lastErr && t.logger != nil {
				t.logger.Warn("agent targets not reloaded; keeping the previous set", "err", err)
			}
			lastErr = fmt.Sprint(err)
		case <-ctx.Done():
			return
		}
	}
}

// Select returns the base URL of the configured agent an alert's labels
// name. With one --agent.url and no targets file every alert is that
// agent's (the single-host setup, where the instance label may name the
// agent by another address); otherwise the instance label must be the
// host:port of a configured agent.
func (t *AgentTargets) Select(labels map[string]string) (string, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.file == "" && len(t.static) == 1 {
		for _, u := range t.static {
			return u, nil
		}
	}
	inst := labels["instance"]
	if inst == "" {
		return "", errors.New("the alert has no instance label to select a configured agent by")
	}
	key, ok := agentKey(inst)
	if ok {
		if u, ok := t.static[key]; ok {
			return u, nil
		}
		if u, ok := t.fromFile[key]; ok {
			return u, nil
		}
	}
	return "", fmt.Errorf("instance %q is not a configured agent", SanitizeText(inst, 80))
}

// URLs returns every configured agent's base URL, sorted.
func (t *AgentTargets) URLs() []string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var out []string
	for _, u := range t.static {
		out = append(out, u)
	}
	for k, u := range t.fromFile {
		if _, dup := t.static[k]; !dup {
			out = append(out, u)
		}
	}
	slices.Sort(out)
	return out
}

// Has reports whether baseURL is a configured agent's, now.
func (t *AgentTargets) Has(baseURL string) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, set := range []map[string]string{t.static, t.fromFile} {
		for _, u := range set {
			if u == baseURL {
				return true
			}
		}
	}
	return false
}

// Len is the number of configured agents.
func (t *AgentTargets) Len() int { return len(t.URLs()) }

// readBounded reads at most limit bytes of a file; a larger file is an error.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return data, nil
}
