package exporter

import (
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// startDevices attaches the traffic counters to every device of the
// observed namespace, then follows devices as they come and go.
func (e *Exporter) startDevices() error {
	updates := make(chan netlink.LinkUpdate, 64)
	e.stopDevices = make(chan struct{})
	stop := e.stopDevices
	// The socket belongs to the namespace it is opened in; InNetns enters
	// it only when it is not the agent's own (setns needs CAP_SYS_ADMIN).
	err := e.ns.Do(func() error {
		return netlink.LinkSubscribeWithOptions(updates, e.stopDevices, netlink.LinkSubscribeOptions{
			ErrorCallback: func(err error) {
				select {
				case <-stop: // closing the subscription fails its pending receive: no news
					return
				default:
				}
				e.logger.Warn("watch network devices: new devices are not counted", "err", err)
			},
		})
	})
	if err != nil {
		close(e.stopDevices)
		e.stopDevices = nil
		return fmt.Errorf("watch network devices: %w", err)
	}
	e.devicesDone = make(chan struct{})
	go func() {
		defer close(e.devicesDone)
		for u := range updates {
			e.deviceChanged(u)
		}
	}()
	// Subscribed first, listed second: a device created in between is seen
	// twice, which AttachDevice ignores.
	links, err := e.nl.LinkList()
	if err != nil {
		return fmt.Errorf("list network devices: %w", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, l := range links {
		if err := e.stack.AttachDevice(l.Attrs().Index); err != nil {
			return err
		}
	}
	return nil
}

func (e *Exporter) deviceChanged(u netlink.LinkUpdate) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stack == nil {
		return
	}
	idx := int(u.Index)
	switch u.Header.Type {
	case unix.RTM_NEWLINK:
		if err := e.stack.AttachDevice(idx); err != nil {
			e.logger.Warn("a new network device is not counted", "ifindex", idx, "err", err)
		}
	case unix.RTM_DELLINK:
		if err := e.stack.DetachDevice(idx); err != nil {
			e.logger.Debug("detach traffic counters of a removed device", "ifindex", idx, "err", err)
		}
	}
}

// closeDevices stops following devices; Stack.Close detaches the counters.
func (e *Exporter) closeDevices() {
	if e.stopDevices == nil {
		return
	}
	close(e.stopDevices)
	<-e.devicesDone
	e.stopDevices = nil
}

// interfaceNames maps ifindex to name in the namespace.
func interfaceNames(h *netlink.Handle) (map[uint32]string, error) {
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	out := make(map[uint32]string, len(links))
	for _, l := range links {
		a := l.Attrs()
		out[uint32(a.Index)] = a.Name
	}
	return out, nil
}
