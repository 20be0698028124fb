// Package testnet builds test hosts for live tests: network namespaces joined
// by veth pairs, created by the test and removed when it ends, even when it
// fails. Traffic between them never leaves the machine.
package testnet

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// RequireRoot fails the test when not root. In CI (CI=true) a missing
// privilege is a failure; on a developer's machine the test is skipped with
// the reason.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		tb.Fatal("this test needs root (network namespaces, eBPF): run `sudo make test`")
	}
	tb.Skip("skipped: needs root for network namespaces and eBPF")
}

// NS is a network namespace made for one test.
type NS struct {
	tb   testing.TB
	Name string
}

// uniq returns a short random suffix so parallel test binaries never collide.
func uniq() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// NewNS creates a network namespace named prefix-XXXXXX with loopback up,
// and deletes it (and every veth end inside it) at cleanup.
func NewNS(tb testing.TB, prefix string) *NS {
	tb.Helper()
	RequireRoot(tb)
	name := prefix + "-" + uniq()
	MustRun(tb, "ip", "netns", "add", name)
	ns := &NS{tb: tb, Name: name}
	tb.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "pids", name).Output(); err == nil {
			for _, pid := range strings.Fields(string(out)) {
				_ = exec.Command("kill", "-9", pid).Run()
			}
		}
		_ = exec.Command("ip", "netns", "del", name).Run()
	})
	ns.MustRun("ip", "link", "set", "lo", "up")
	return ns
}

// Link joins a and b with a veth pair; aIf gets aAddr and bIf gets bAddr
// (CIDR notation, e.g. "10.200.1.1/24"; IPv6 addresses are added nodad).
// Interface names must be at most 15 bytes.
func Link(tb testing.TB, a *NS, aIf, aAddr string, b *NS, bIf, bAddr string) {
	tb.Helper()
	tmp := "vt" + uniq()
	MustRun(tb, "ip", "link", "add", tmp, "type", "veth", "peer", "name", tmp+"p")
	MustRun(tb, "ip", "link", "set", tmp, "netns", a.Name, "name", aIf)
	MustRun(tb, "ip", "link", "set", tmp+"p", "netns", b.Name, "name", bIf)
	for _, end := range []struct {
		ns         *NS
		ifname, ip string
	}{{a, aIf, aAddr}, {b, bIf, bAddr}} {
		for _, addr := range strings.Split(end.ip, ",") {
			if addr == "" {
				continue
			}
			args := []string{"ip", "addr", "add", addr, "dev", end.ifname}
			if strings.Contains(addr, ":") {
				args = append(args, "nodad")
			}
			end.ns.MustRun(args...)
		}
		end.ns.MustRun("ip", "link", "set", end.ifname, "up")
	}
}

// Cmd returns a command that runs inside the namespace.
func (ns *NS) Cmd(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Run runs a command in the namespace and returns its combined output.
func (ns *NS) Run(name string, args ...string) (string, error) {
	out, err := ns.Cmd(name, args...).CombinedOutput()
	return string(out), err
}

// MustRun runs a command in the namespace and fails the test if it fails.
func (ns *NS) MustRun(args ...string) string {
	ns.tb.Helper()
	out, err := ns.Run(args[0], args[1:]...)
	if err != nil {
		ns.tb.Fatalf("in netns %s: %s: %v\n%s", ns.Name, strings.Join(args, " "), err, out)
	}
	return out
}

// Start starts a long-running command in the namespace, in a process group
// of its own; the whole group (e.g. `timeout` and the hping3 under it) is
// killed at cleanup. Its output is kept in the returned buffer.
func (ns *NS) Start(args ...string) (*exec.Cmd, *SyncBuffer) {
	ns.tb.Helper()
	cmd := ns.Cmd(args[0], args[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	buf := &SyncBuffer{}
	cmd.Stdout, cmd.Stderr = buf, buf
	if err := cmd.Start(); err != nil {
		ns.tb.Fatalf("in netns %s: start %s: %v", ns.Name, strings.Join(args, " "), err)
	}
	ns.tb.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	return cmd, buf
}

// SyncBuffer is a bytes.Buffer safe for a process writing while a test reads.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Do runs f with the calling goroutine's OS thread inside the namespace,
// e.g. to attach XDP to an interface there or open a socket there.
func (ns *NS) Do(f func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return fmt.Errorf("get current netns: %w", err)
	}
	defer orig.Close()
	h, err := netns.GetFromName(ns.Name)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", ns.Name, err)
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		return fmt.Errorf("enter netns %s: %w", ns.Name, err)
	}
	defer func() { _ = netns.Set(orig) }()
	return f()
}

// Path is the namespace's bind-mount path, usable with setns(2).
func (ns *NS) Path() string { return "/var/run/netns/" + ns.Name }

// MustRun runs a command in the current namespace and fails the test if it fails.
func MustRun(tb testing.TB, args ...string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		tb.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// FreePort returns a loopback TCP port nobody listens on right now.
func FreePort(tb testing.TB) int {
	tb.Helper()
	return FreePorts(tb, 1)[0]
}

// FreePorts returns n distinct loopback TCP ports nobody listens on right
// now. Separate FreePort calls may return the same port twice: each
// listener is closed before the next bind picks a port.
func FreePorts(tb testing.TB, n int) []int {
	tb.Helper()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}
