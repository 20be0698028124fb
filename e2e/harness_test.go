// Package e2e runs the real packetscope binary against real traffic between
// network namespaces (and, for the defense loop, real Prometheus and
// Alertmanager).
package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/packetscope/packetscope/internal/testnet"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testnet.RemovePacketscopeBinary()
	os.Exit(code)
}

// agentProc is a running `packetscope agent` or `packetscope run`.
type agentProc = testnet.Packetscope

// startAgent starts the binary with args plus a fresh loopback listen
// address, waits until /readyz answers 200 and stops it at cleanup.
func startAgent(tb testing.TB, args ...string) *agentProc {
	tb.Helper()
	return startAgentEnv(tb, nil, args...)
}

// startAgentEnv is startAgent with env ("KEY=value") added to the test's
// own environment, e.g. the OTEL_* variables that turn tracing on.
func startAgentEnv(tb testing.TB, env []string, args ...string) *agentProc {
	tb.Helper()
	return testnet.StartPacketscope(tb, testnet.ProcessConfig{Binary: testnet.PacketscopeBinary(tb), Env: env,
		ReadyTimeout: 30 * time.Second, StopTimeout: 15 * time.Second}, args...)
}

func httpGet(tb testing.TB, url string) (int, string) {
	tb.Helper()
	resp, err := http.Get(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func httpDo(tb testing.TB, method, url, token, body string) (int, string) {
	tb.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, url, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// pinDir returns a fresh bpffs directory for one test's pins, removed at cleanup.
func pinDir(tb testing.TB) string {
	tb.Helper()
	testnet.RequireRoot(tb)
	dir := fmt.Sprintf("/sys/fs/bpf/ps-e2e-%d", time.Now().UnixNano())
	tb.Cleanup(func() {
		_ = exec.Command(testnet.PacketscopeBinary(tb), "cleanup", "--bpf.pin-path="+dir).Run()
		_ = os.RemoveAll(dir)
	})
	return dir
}

// writeToken writes a bearer token file and returns its path.
func writeToken(tb testing.TB, token string) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "token")
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// metricValue sums the samples of family whose label set contains every
// given label=value pair, from a text exposition.
func metricValue(exposition, family string, labels ...string) float64 {
	var sum float64
	for _, line := range strings.Split(exposition, "\n") {
		if !strings.HasPrefix(line, family) || strings.HasPrefix(line, "#") {
			continue
		}
		rest := line[len(family):]
		if rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		ok := true
		for _, l := range labels {
			k, v, _ := strings.Cut(l, "=")
			if !strings.Contains(rest, k+`="`+v+`"`) {
				ok = false
			}
		}
		if !ok {
			continue
		}
		fields := strings.Fields(rest[strings.LastIndex(rest, "}")+1:])
		if len(fields) == 0 {
			continue
		}
		var v float64
		fmt.Sscan(fields[0], &v)
		sum += v
	}
	return sum
}
