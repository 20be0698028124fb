package main

import (
	"fmt"

	"github.com/vishvananda/netns"

	"github.com/packetscope/packetscope/bpf"
)

// inNetns runs f inside the network namespace at path (e.g.
// /var/run/netns/NAME), so interface lookups and XDP attachment happen
// there; an empty path runs f where the agent is. Only the network namespace
// changes: bpffs and the HTTP listeners stay the host's.
func inNetns(path string, f func() error) error {
	if path == "" {
		return f()
	}
	target, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("network namespace %s cannot be opened (%v): check --netns", path, err)
	}
	defer target.Close()
	return bpf.InNetns(target, f)
}
