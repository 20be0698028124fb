// Package jaegere2e checks packet-path traces end to end through a real
// Jaeger (v1.76.0, built from the pinned tools module tools/jaeger): two
// exporters, each scoped to its own namespace, one exporting over OTLP/HTTP
// and one over OTLP/gRPC, configured only by OTEL_* environment variables.
package jaegere2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/packetscope/packetscope/bpf"
	"github.com/packetscope/packetscope/exporter"
	"github.com/packetscope/packetscope/internal/testnet"
)

const (
	addrA = "10.206.2.1"
	addrB = "10.206.2.2"
)

// buildJaeger builds the pinned Jaeger in its own module (cached by the Go
// build cache after the first, ~3 minute, build).
func buildJaeger(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "..", "..", "tools", "jaeger")
	bin := filepath.Join(t.TempDir(), "jaeger")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/jaegertracing/jaeger/cmd/jaeger")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build jaeger in %s: %v\n%s", dir, err, out)
	}
	return bin
}

type jaeger struct {
	grpc, http, query int
}

// startJaeger runs Jaeger with in-memory storage on loopback ports.
func startJaeger(t *testing.T, bin string) jaeger {
	t.Helper()
	j := jaeger{grpc: testnet.FreePort(t), http: testnet.FreePort(t), query: testnet.FreePort(t)}
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
`, j.query, testnet.FreePort(t), j.grpc, j.http)
	path := filepath.Join(t.TempDir(), "jaeger.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var out testnet.SyncBuffer
	cmd := exec.Command(bin, "--config", path)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("jaeger output:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/api/services", j.query)); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return j
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("jaeger did not answer on its query port:\n%s", out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

type jTrace struct {
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

func (j jaeger) traces(t *testing.T, service string) []jTrace {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/api/traces?service=%s&limit=500&lookback=1h", j.query, service))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out struct {
		Data []jTrace `json:"data"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("decode jaeger traces: %v: %.300s", err, body)
	}
	return out.Data
}

// ops lists one service's operations in a trace in start order (roots of
// equal start first).
func ops(tr jTrace, service string) []string {
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

func tag(tr jTrace, op, key string) string {
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

func newExporter(t *testing.T, ns *testnet.NS, service, protocol, endpoint string) {
	t.Helper()
	t.Setenv("OTEL_SERVICE_NAME", service)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
	t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
	exp, err := exporter.New(nil, exporter.Config{Netns: ns.Path(), TraceTrackEvery: 1, TraceKeepEvery: 1})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = exp.Close() })
}

func TestJaeger(t *testing.T) {
	testnet.RequireRoot(t)
	if err := bpf.EnsureFilesystems(); err != nil {
		t.Fatal(err)
	}
	j := startJaeger(t, buildJaeger(t))

	a := testnet.NewNS(t, "ps-trc")
	b := testnet.NewNS(t, "ps-trc")
	testnet.Link(t, a, "eth0", addrA+"/24", b, "eth0", addrB+"/24")
	newExporter(t, a, "ps-trc-a", "http/protobuf", fmt.Sprintf("http://127.0.0.1:%d", j.http))
	newExporter(t, b, "ps-trc-b", "grpc", fmt.Sprintf("http://127.0.0.1:%d", j.grpc))

	var srv *net.UDPConn
	if err := a.Do(func() (err error) {
		srv, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(addrA), Port: 7001})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	var c, closed net.Conn
	if err := b.Do(func() (err error) {
		if c, err = net.Dial("udp", addrA+":7001"); err != nil {
			return err
		}
		closed, err = net.Dial("udp", addrA+":7009")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); closed.Close() })
	buf := make([]byte, 64)
	for range 3 {
		if _, err := c.Write([]byte("to jaeger")); err != nil {
			t.Fatal(err)
		}
		_ = srv.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, _, err := srv.ReadFrom(buf); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := closed.Write([]byte("nobody")); err != nil {
		t.Fatal(err)
	}

	var why string
	deadline := time.Now().Add(20 * time.Second)
	for {
		okCross, okDrop := false, false
		why = ""
		var found []string
		for _, tr := range j.traces(t, "ps-trc-a") {
			rx, tx := ops(tr, "ps-trc-a"), ops(tr, "ps-trc-b")
			if tag(tr, "packet rx", "destination.port") == "7001" && len(tx) > 0 {
				wantRX := []string{"packet rx", "rx backlog", "rx core", "rx ip", "rx socket enqueue"}
				wantTX := []string{"packet tx", "tx ip", "tx neigh", "tx qdisc", "tx driver"}
				if strings.Join(rx, ",") == strings.Join(wantRX, ",") && strings.Join(tx, ",") == strings.Join(wantTX, ",") {
					okCross = true
					found = append(found, fmt.Sprintf("cross-host trace %s: a %v, b %v", tr.TraceID, rx, tx))
				} else {
					why += fmt.Sprintf("cross-host trace %s: a %v, b %v; ", tr.TraceID, rx, tx)
				}
			}
			if tag(tr, "packet rx", "destination.port") == "7009" {
				if rx[len(rx)-1] == "drop" && tag(tr, "packet rx", "otel.status_description") == "NO_SOCKET" &&
					tag(tr, "drop", "packetscope.drop_reason") == "NO_SOCKET" {
					okDrop = true
					found = append(found, fmt.Sprintf("drop trace %s: %v", tr.TraceID, rx))
				} else {
					why += fmt.Sprintf("drop trace %s: %v, status %q; ", tr.TraceID, rx, tag(tr, "packet rx", "otel.status_description"))
				}
			}
		}
		if okCross && okDrop {
			for _, f := range found {
				t.Log(f)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("jaeger has no cross-host UDP trace (a's rx and b's tx) and drop trace ending NO_SOCKET: cross %v, drop %v; %s",
				okCross, okDrop, why)
		}
		time.Sleep(300 * time.Millisecond)
	}
}
