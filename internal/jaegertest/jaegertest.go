// Package jaegertest runs a real Jaeger (v1.76.0, built from the pinned
// tools module tools/jaeger) for end-to-end trace tests: in-memory storage,
// OTLP and query ports on free loopback ports, and helpers that read traces
// back through Jaeger's query API.
package jaegertest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"testing"
	"time"

	"github.com/packetscope/packetscope/internal/testnet"
)

// Build builds the pinned Jaeger in its own module (cached by the Go build
// cache after the first, ~3 minute, build) and returns the binary's path.
func Build(tb testing.TB) string {
	tb.Helper()
	// The tools module sits at the repository root; find it from this file,
	// since tests run with their own package directory as working directory.
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "..", "tools", "jaeger")
	bin := filepath.Join(tb.TempDir(), "jaeger")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/jaegertracing/jaeger/cmd/jaeger")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("build jaeger in %s: %v\n%s", dir, err, out)
	}
	return bin
}

// Jaeger is a running Jaeger's loopback ports.
type Jaeger struct {
	GRPC  int // OTLP over gRPC
	HTTP  int // OTLP over HTTP
	Query int // query API (/api/traces)
}

// GRPCEndpoint and HTTPEndpoint are OTEL_EXPORTER_OTLP_ENDPOINT values.
func (j *Jaeger) GRPCEndpoint() string { return fmt.Sprintf("http://127.0.0.1:%d", j.GRPC) }
func (j *Jaeger) HTTPEndpoint() string { return fmt.Sprintf("http://127.0.0.1:%d", j.HTTP) }

// Start runs the Jaeger binary with in-memory storage on free loopback
// ports, waits until its query API answers and kills it at cleanup (its
// output is logged when the test failed).
func Start(tb testing.TB, bin string) *Jaeger {
	tb.Helper()
	ports := testnet.FreePorts(tb, 4) // distinct: two of them once collided
	j := &Jaeger{GRPC: ports[0], HTTP: ports[1], Query: ports[2]}
	cfg := fmt.Sprintf(`service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
extensions:
  jaeger_query:
    storage:
      traces: mem
    http:
      endpoint: 127.0.0.1:%d
    grpc:
      endpoint: 127.0.0.1:%d
  jaeger_storage:
    backends:
      mem:
        memory:
          max_traces: 10000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:%d
      http:
        endpoint: 127.0.0.1:%d
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: mem
`, j.Query, ports[3], j.GRPC, j.HTTP)
	path := filepath.Join(tb.TempDir(), "jaeger.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		tb.Fatal(err)
	}
	var out testnet.SyncBuffer
	cmd := exec.Command(bin, "--config", path)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start jaeger: %v", err)
	}
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if tb.Failed() {
			tb.Logf("jaeger output:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/api/services", j.Query)); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return j
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("jaeger did not answer on its query port:\n%s", out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Trace is one trace as Jaeger's query API returns it.
type Trace struct {
	TraceID string `json:"traceID"`
	Spans   []struct {
		SpanID        string `json:"spanID"`
		OperationName string `json:"operationName"`
		ProcessID     string `json:"processID"`
		StartTime     int64  `json:"startTime"`
		Duration      int64  `json:"duration"`
		References    []struct {
			SpanID string `json:"spanID"`
		} `json:"references"`
		Tags []struct {
			Key   string `json:"key"`
			Value any    `json:"value"`
		} `json:"tags"`
	} `json:"spans"`
	Processes map[string]struct {
		ServiceName string `json:"serviceName"`
	} `json:"processes"`
}

// Traces returns up to 500 traces of the last hour that hold a span of
// service (each with every span, whatever its service).
func (j *Jaeger) Traces(tb testing.TB, service string) []Trace {
	tb.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/api/traces?service=%s&limit=500&lookback=1h",
		j.Query, url.QueryEscape(service)))
	if err != nil {
		tb.Fatalf("query jaeger traces: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out struct {
		Data []Trace `json:"data"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		tb.Fatalf("decode jaeger traces: %v: %.300s", err, body)
	}
	return out.Data
}

// Ops lists one service's operations in a trace in start order (roots of
// equal start first).
func Ops(tr Trace, service string) []string {
	type op struct {
		name  string
		start int64
		root  bool
	}
	var l []op
	for _, s := range tr.Spans {
		if tr.Processes[s.ProcessID].ServiceName == service {
			l = append(l, op{s.OperationName, s.StartTime, len(s.References) == 0})
		}
	}
	sort.SliceStable(l, func(i, k int) bool {
		if l[i].start != l[k].start {
			return l[i].start < l[k].start
		}
		return l[i].root && !l[k].root
	})
	var out []string
	for _, o := range l {
		out = append(out, o.name)
	}
	return out
}

// Tag returns the value of key on the first span named op, or "".
func Tag(tr Trace, op, key string) string {
	for _, s := range tr.Spans {
		if s.OperationName != op {
			continue
		}
		for _, kv := range s.Tags {
			if kv.Key == key {
				return fmt.Sprint(kv.Value)
			}
		}
	}
	return ""
}

// InOrder reports whether service's spans in tr are exactly the spans named
// in want, the first of them a root and parent of the rest, with start times
// that never decrease along want. Jaeger keeps microseconds, so stages
// shorter than that start at the same time and Ops may list them either way;
// InOrder accepts such ties rather than reading an order into them.
func InOrder(tr Trace, service string, want []string) bool {
	type span struct {
		id, parent string
		start      int64
		refs       int
	}
	byName := map[string]span{}
	n := 0
	for _, s := range tr.Spans {
		if tr.Processes[s.ProcessID].ServiceName != service {
			continue
		}
		n++
		if _, dup := byName[s.OperationName]; dup {
			return false
		}
		sp := span{id: s.SpanID, start: s.StartTime, refs: len(s.References)}
		if len(s.References) > 0 {
			sp.parent = s.References[0].SpanID
		}
		byName[s.OperationName] = sp
	}
	if n != len(want) || n == 0 {
		return false
	}
	root, ok := byName[want[0]]
	if !ok || root.refs != 0 {
		return false
	}
	prev := root.start
	for _, name := range want[1:] {
		s, ok := byName[name]
		if !ok || s.refs != 1 || s.parent != root.id || s.start < prev {
			return false
		}
		prev = s.start
	}
	return true
}
