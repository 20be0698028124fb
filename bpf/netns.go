package bpf

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
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
