package main

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// inNetns runs f on an OS thread that has entered the network namespace at
// path (e.g. /var/run/netns/NAME), so interface lookups and XDP attachment
// happen there; an empty path runs f where the agent is. Only the network
// namespace changes: bpffs and the HTTP listeners stay the host's.
func inNetns(path string, f func() error) error {
	if path == "" {
		return f()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return fmt.Errorf("get current network namespace: %w", err)
	}
	defer orig.Close()
	target, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("network namespace %s cannot be opened (%v): check --netns", path, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		return fmt.Errorf("enter network namespace %s: %w", path, err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			// A thread stuck in another namespace must not serve other goroutines.
			panic(fmt.Sprintf("return to the original network namespace: %v", err))
		}
	}()
	return f()
}
