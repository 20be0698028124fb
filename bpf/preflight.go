package bpf

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Filesystem mount points the agent needs.
const (
	BPFFSPath   = "/sys/fs/bpf"
	TraceFSPath = "/sys/kernel/tracing"
	BTFPath     = "/sys/kernel/btf/vmlinux"
)

// MinKernel is the oldest Linux the agent runs on (major, minor): 6.1 LTS,
// Debian 12's kernel, proven under qemu by make test-kernels.
var MinKernel = [2]int{6, 1}

// releaseAtLeast reports whether a release such as "6.1.0-57-cloud-amd64"
// is at least version; a release it cannot parse passes (the loader then
// says what is missing).
func releaseAtLeast(release string, version [2]int) bool {
	var major, minor int
	if _, err := fmt.Sscanf(release, "%d.%d", &major, &minor); err != nil {
		return true
	}
	return major > version[0] || major == version[0] && minor >= version[1]
}

// Preflight checks what loading PacketScope's programs needs and mounts bpffs
// and tracefs when they are missing. Each error is one sentence saying what is
// wrong and what to do, fit to print to a user as is.
func Preflight() error {
	if os.Geteuid() != 0 && !hasCaps() {
		return errors.New("packetscope needs root or CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN and CAP_SYS_RESOURCE: run it with sudo or grant those capabilities")
	}
	if release := KernelRelease(); !releaseAtLeast(release, MinKernel) {
		return fmt.Errorf("packetscope needs Linux %d.%d or later and this is Linux %s: run it on a newer kernel (see README.md, Kernels)", MinKernel[0], MinKernel[1], release)
	}
	if _, err := os.Stat(BTFPath); err != nil {
		return fmt.Errorf("the kernel exposes no BTF at %s: use a kernel built with CONFIG_DEBUG_INFO_BTF=y (most distribution kernels are)", BTFPath)
	}
	if err := EnsureFilesystems(); err != nil {
		return err
	}
	return nil
}

// EnsureFilesystems mounts bpffs at /sys/fs/bpf and tracefs at
// /sys/kernel/tracing when they are not mounted yet.
func EnsureFilesystems() error {
	mounts, err := mountedTypes()
	if err != nil {
		return fmt.Errorf("read /proc/mounts: %w", err)
	}
	if mounts[BPFFSPath] != "bpf" {
		if err := unix.Mount("bpf", BPFFSPath, "bpf", 0, "mode=0700"); err != nil {
			return fmt.Errorf("bpffs is not mounted at %s and mounting it failed (%v): run `mount -t bpf bpf %s`", BPFFSPath, err, BPFFSPath)
		}
	}
	if mounts[TraceFSPath] != "tracefs" && mounts["/sys/kernel/debug/tracing"] != "tracefs" {
		if err := unix.Mount("tracefs", TraceFSPath, "tracefs", 0, ""); err != nil {
			return fmt.Errorf("tracefs is not mounted at %s and mounting it failed (%v): run `mount -t tracefs tracefs %s`", TraceFSPath, err, TraceFSPath)
		}
	}
	return nil
}

// mountedTypes maps mount points to filesystem types, from /proc/mounts.
func mountedTypes() (map[string]string, error) {
	f, err := os.Open("/proc/mounts")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := make(map[string]string)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 3 {
			out[fields[1]] = fields[2]
		}
	}
	return out, sc.Err()
}

// hasCaps reports whether the effective capability set holds what loading
// and attaching the programs needs.
func hasCaps() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	has := func(c uint) bool { return data[c/32].Effective&(1<<(c%32)) != 0 }
	return has(unix.CAP_BPF) && has(unix.CAP_PERFMON) && has(unix.CAP_NET_ADMIN) && has(unix.CAP_SYS_RESOURCE)
}
