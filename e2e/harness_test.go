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
	"syscall"
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
type agentProc struct {
	cmd  *exec.Cmd
	out  *testnet.SyncBuffer
	URL  string
	done chan error
}

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
	port := testnet.FreePort(tb)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(testnet.PacketscopeBinary(tb), append(args, "--web.listen-address="+addr)...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	p := &agentProc{cmd: cmd, out: &testnet.SyncBuffer{}, URL: "http://" + addr, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	tb.Cleanup(func() {
		p.stop(tb)
		if tb.Failed() {
			tb.Logf("packetscope output:\n%s", p.out.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-p.done:
			p.done <- err
			tb.Fatalf("packetscope exited early (%v):\n%s", err, p.out.String())
		default:
		}
		if resp, err := http.Get(p.URL + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	tb.Fatalf("packetscope not ready within 30s:\n%s", p.out.String())
	return nil
}

// stop sends SIGTERM and waits for a clean exit; it returns the exit error.
func (p *agentProc) stop(tb testing.TB) error {
	tb.Helper()
	if p.cmd.ProcessState != nil {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		err := <-p.done
		p.done <- err
		tb.Errorf("packetscope did not stop within 15s of SIGTERM")
		return err
	}
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
