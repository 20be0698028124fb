package bpf

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// InNetns runs f on an OS thread inside the network namespace h: netfilter
// links, netlink sockets and /proc/thread-self/net belong to the namespace
// of the thread that opens them. When h is the namespace the thread is in
// already, f runs as is: entering a namespace needs CAP_SYS_ADMIN, which an
// agent observing its own namespace should not need.
func InNetns(h netns.NsHandle, f func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("get current network namespace: %w", err)
	}
	defer orig.Close()
	if orig.Equal(h) {
		defer runtime.UnlockOSThread()
		return f()
	}
	if err := netns.Set(h); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter network namespace: %w", err)
	}
	defer func() {
		// A thread that cannot return stays locked, so the runtime
		// retires it with the goroutine instead of reusing it.
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
	}()
	return f()
}

// Netns is the network namespace an agent observes and guards, opened once
// at start and handed to everything that acts inside it (the stack
// programs' netfilter links, netlink sockets, /proc readers, the XDP
// guard's attachment), so they all see the same namespace even if its path
// is replaced while the agent runs.
type Netns struct {
	Path  string // as configured (--netns); "" for the agent's own
	Inode uint64 // the namespace's inode: what the kernel programs compare
	h     netns.NsHandle
	own   bool // the namespace the agent was started in
}

// OpenNetns opens the namespace at path, or the calling thread's when path
// is empty. Its error is one sentence naming the flag to check.
func OpenNetns(path string) (*Netns, error) {
	var h netns.NsHandle
	var err error
	if path == "" {
		h, err = netns.Get()
	} else {
		h, err = netns.GetFromPath(path)
	}
	if err != nil {
		if path == "" {
			return nil, fmt.Errorf("open the agent's network namespace: %w", err)
		}
		return nil, fmt.Errorf("network namespace %s cannot be opened (%v): check --netns", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(h), &st); err != nil {
		h.Close()
		return nil, fmt.Errorf("stat network namespace %q: %w", path, err)
	}
	n := &Netns{Path: path, Inode: st.Ino, h: h, own: path == ""}
	if !n.own {
		if cur, err := netns.Get(); err == nil {
			n.own = cur.Equal(h)
			cur.Close()
		}
	}
	return n, nil
}

// Do runs f inside the namespace (see InNetns).
func (n *Netns) Do(f func() error) error { return InNetns(n.h, f) }

// Handle is the namespace's file descriptor, owned by n.
func (n *Netns) Handle() netns.NsHandle { return n.h }

// ForNetlink is the handle to give vishvananda/netlink's *At functions:
// netns.None() when this is the agent's own namespace, because they setns
// even into the namespace a thread is already in, and setns needs
// CAP_SYS_ADMIN, which an agent guarding its own namespace does not have.
func (n *Netns) ForNetlink() netns.NsHandle {
	if n.own {
		return netns.None()
	}
	return n.h
}

// Close releases the namespace; call it after everything that uses it.
func (n *Netns) Close() error {
	if n == nil || n.h < 0 {
		return nil
	}
	err := n.h.Close()
	n.h = -1
	return err
}
