package testnet

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// Packetscope is a running packetscope binary serving HTTP on loopback.
type Packetscope struct {
	Cmd  *exec.Cmd
	Out  *SyncBuffer
	URL  string // http://127.0.0.1:PORT
	done chan error
	cfg  ProcessConfig
}

// ProcessConfig says how to run one: which binary, with what environment
// added to the test's own, and how long to wait for it.
type ProcessConfig struct {
	Binary       string
	Env          []string // "KEY=value", added to os.Environ()
	ReadyTimeout time.Duration
	StopTimeout  time.Duration // after SIGTERM, before SIGKILL
}

// StartPacketscope starts cfg.Binary with args plus a fresh loopback
// --web.listen-address, waits until /readyz answers 200 (failing the test
// if the process exits first) and stops it at cleanup, logging its output
// when the test failed.
func StartPacketscope(tb testing.TB, cfg ProcessConfig, args ...string) *Packetscope {
	tb.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", FreePort(tb))
	cmd := exec.Command(cfg.Binary, append(args, "--web.listen-address="+addr)...)
	if cfg.Env != nil {
		cmd.Env = append(os.Environ(), cfg.Env...)
	}
	p := &Packetscope{Cmd: cmd, Out: &SyncBuffer{}, URL: "http://" + addr, done: make(chan error, 1), cfg: cfg}
	cmd.Stdout, cmd.Stderr = p.Out, p.Out
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	tb.Cleanup(func() {
		p.Stop(tb)
		if tb.Failed() {
			tb.Logf("packetscope output:\n%s", p.Out.String())
		}
	})
	for deadline := time.Now().Add(cfg.ReadyTimeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		select {
		case err := <-p.done:
			p.done <- err
			tb.Fatalf("packetscope exited early (%v):\n%s", err, p.Out.String())
		default:
		}
		if resp, err := http.Get(p.URL + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
	}
	tb.Fatalf("packetscope not ready within %s:\n%s", cfg.ReadyTimeout, p.Out.String())
	return nil
}

// Stop sends SIGTERM and waits for the exit, killing the process after
// StopTimeout (a test error); it returns the exit error.
func (p *Packetscope) Stop(tb testing.TB) error {
	tb.Helper()
	if p.Cmd.ProcessState != nil {
		return nil
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(p.cfg.StopTimeout):
		_ = p.Cmd.Process.Kill()
		err := <-p.done
		p.done <- err
		tb.Errorf("packetscope did not stop within %s of SIGTERM", p.cfg.StopTimeout)
		return err
	}
}
