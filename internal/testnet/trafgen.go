package testnet

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// trafgen (netsniff-ng, PACKET_MMAP) floods for the line-rate and flood
// benchmarks: 1-2.6 Mpps here, where hping3 sends 0.16-0.46.

// MAC is the hardware address of ifname in ns.
func MAC(tb testing.TB, ns *NS, ifname string) net.HardwareAddr {
	tb.Helper()
	out := ns.MustRun("cat", "/sys/class/net/"+ifname+"/address")
	m, err := net.ParseMAC(strings.TrimSpace(out))
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// TrafgenConfig writes a trafgen packet: frame with its Ethernet addresses
// replaced and the last rnd bytes of its IPv4 source random per packet.
func TrafgenConfig(tb testing.TB, dst, src net.HardwareAddr, frame []byte, rnd int) string {
	tb.Helper()
	f := append([]byte(nil), frame...)
	copy(f[0:6], dst)
	copy(f[6:12], src)
	var parts []string
	for i, c := range f {
		if i >= 30-rnd && i < 30 { // IPv4 source: bytes 26..29
			if i == 30-rnd {
				parts = append(parts, fmt.Sprintf("drnd(%d)", rnd))
			}
			continue
		}
		parts = append(parts, fmt.Sprintf("0x%02x", c))
	}
	path := filepath.Join(tb.TempDir(), "flood.cfg")
	if err := os.WriteFile(path, []byte("{ "+strings.Join(parts, ", ")+" }\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// StartTrafgen floods ifname from ns, one sender per CPU, until stop.
func StartTrafgen(tb testing.TB, ns *NS, ifname, cfg string) (stop func()) {
	tb.Helper()
	cmd := ns.Cmd("trafgen", "--dev", ifname, "--conf", cfg, "--cpus", "2", "--no-sock-mem", "--notouch-irq", "--no-cpu-stats")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start trafgen: %v", err)
	}
	done := false
	stop = func() {
		if done {
			return
		}
		done = true
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	}
	tb.Cleanup(stop)
	time.Sleep(300 * time.Millisecond)
	if cmd.ProcessState != nil {
		tb.Fatalf("trafgen exited: %s", out)
	}
	return stop
}
