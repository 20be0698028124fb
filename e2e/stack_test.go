package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/packetscope/packetscope/internal/testnet"
)

// service is a real Prometheus or Alertmanager started by a test.
type service struct {
	URL string
	out *testnet.SyncBuffer
}

// startService runs bin with args on a loopback port, waits for its ready
// endpoint and kills it at cleanup.
func startService(tb testing.TB, name, bin, readyPath string, port int, args ...string) *service {
	tb.Helper()
	if _, err := exec.LookPath(bin); err != nil {
		tb.Fatalf("%s is not installed (scripts/install-deps.sh installs it): %v", bin, err)
	}
	s := &service{URL: fmt.Sprintf("http://127.0.0.1:%d", port), out: &testnet.SyncBuffer{}}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = s.out, s.out
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if tb.Failed() {
			tb.Logf("%s output:\n%s", name, s.out.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			tb.Fatalf("%s exited early:\n%s", name, s.out.String())
		default:
		}
		if resp, err := http.Get(s.URL + readyPath); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	tb.Fatalf("%s not ready within 30s:\n%s", name, s.out.String())
	return nil
}

// startPrometheus runs Prometheus with the given configuration file content.
func startPrometheus(tb testing.TB, config string) *service {
	tb.Helper()
	dir := tb.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		tb.Fatal(err)
	}
	port := testnet.FreePort(tb)
	return startService(tb, "prometheus", "prometheus", "/-/ready", port,
		"--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port), "--web.enable-lifecycle")
}

// startAlertmanager runs Alertmanager with the given configuration file content.
func startAlertmanager(tb testing.TB, config string) *service {
	tb.Helper()
	dir := tb.TempDir()
	cfg := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		tb.Fatal(err)
	}
	port := testnet.FreePort(tb)
	return startService(tb, "alertmanager", "prometheus-alertmanager", "/-/ready", port,
		"--config.file="+cfg, "--storage.path="+filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port), "--cluster.listen-address=")
}

// promQuery runs an instant query and returns the result vector's samples
// as label sets with values.
func promQuery(tb testing.TB, prom *service, query string) []promSample {
	tb.Helper()
	return promQueryAt(tb, prom, query, time.Time{})
}

// promQueryAt is promQuery evaluated at a past moment (zero: now).
func promQueryAt(tb testing.TB, prom *service, query string, at time.Time) []promSample {
	tb.Helper()
	u := prom.URL + "/api/v1/query?query=" + url.QueryEscape(query)
	if !at.IsZero() {
		u += fmt.Sprintf("&time=%.3f", float64(at.UnixMilli())/1000)
	}
	resp, err := http.Get(u)
	if err != nil {
		tb.Fatalf("query %q: %v", query, err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		tb.Fatalf("query %q: decode: %v", query, err)
	}
	if body.Status != "success" {
		tb.Fatalf("query %q: %s", query, body.Error)
	}
	out := make([]promSample, 0, len(body.Data.Result))
	for _, r := range body.Data.Result {
		var v float64
		if s, ok := r.Value[1].(string); ok {
			fmt.Sscan(s, &v)
		}
		out = append(out, promSample{Labels: r.Metric, Value: v})
	}
	return out
}

type promSample struct {
	Labels map[string]string
	Value  float64
}

type promSeries struct {
	Labels map[string]string
	Points []promPoint
}

type promPoint struct {
	T float64 // Unix seconds
	V float64
}

// promRange runs an instant query of a range selector and returns the raw
// samples of each series, with Prometheus' own timestamps.
func promRange(tb testing.TB, prom *service, query string) []promSeries {
	tb.Helper()
	resp, err := http.Get(prom.URL + "/api/v1/query?query=" + url.QueryEscape(query))
	if err != nil {
		tb.Fatalf("query %q: %v", query, err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Values [][2]any          `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		tb.Fatalf("query %q: decode: %v", query, err)
	}
	if body.Status != "success" {
		tb.Fatalf("query %q: %s", query, body.Error)
	}
	var out []promSeries
	for _, r := range body.Data.Result {
		s := promSeries{Labels: r.Metric}
		for _, v := range r.Values {
			var p promPoint
			p.T, _ = v[0].(float64)
			if str, ok := v[1].(string); ok {
				fmt.Sscan(str, &p.V)
			}
			s.Points = append(s.Points, p)
		}
		out = append(out, s)
	}
	return out
}
