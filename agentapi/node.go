package agentapi

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// NodeAddresses returns what a rule must never block on this node: every
// address of every interface (as a /32 or /128) and the gateway of every
// default route, in all routing tables. It reads them with netlink in the
// network namespace ns; netns.None() means the caller's own namespace, which
// is the agent's.
func NodeAddresses(ns netns.NsHandle) ([]netip.Prefix, error) {
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("open netlink handle: %w", err)
	}
	defer h.Close()

	set := map[netip.Prefix]struct{}{}
	addIP := func(ip net.IP) {
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			return
		}
		a = a.Unmap()
		if a.IsUnspecified() {
			return
		}
		set[netip.PrefixFrom(a, a.BitLen())] = struct{}{}
	}

	addrs, err := h.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if a.IPNet != nil {
			addIP(a.IP)
		}
	}

	// Table 0 with the table filter lists the routes of every table, so a
	// default route installed by policy routing is seen too.
	routes, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: 0}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if !isDefaultRoute(r) {
			continue
		}
		addIP(r.Gw)
		for _, nh := range r.MultiPath {
			addIP(nh.Gw)
		}
		if via, ok := r.Via.(*netlink.Via); ok && via != nil {
			addIP(via.Addr)
		}
	}

	out := make([]netip.Prefix, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	slices.SortFunc(out, comparePrefix)
	return out, nil
}

// isDefaultRoute reports whether r covers every destination of its family.
// netlink returns a default route's Dst as nil or as 0.0.0.0/0 (::/0)
// depending on the library version; both are accepted.
func isDefaultRoute(r netlink.Route) bool {
	if r.Dst == nil {
		return true
	}
	ones, _ := r.Dst.Mask.Size()
	return ones == 0
}

// ProtectedAddresses returns a function for WindowConfig.Protected: it reads
// NodeAddresses in ns at most once per refresh and, when netlink fails, logs
// it and keeps answering with the last list it read; neverBlock (the
// --guard.never-block CIDRs) is always part of the answer. The traffic
// reports carry the list to the responder and the API's last gate refuses
// rules covering it. ns must stay open for as long as the function is used.
func ProtectedAddresses(logger *slog.Logger, ns netns.NsHandle, refresh time.Duration, neverBlock ...netip.Prefix) func() []netip.Prefix {
	read := nodeAddressesEvery(logger, ns, refresh)
	return func() []netip.Prefix { return append(read(), neverBlock...) }
}

// ParseNeverBlock parses --guard.never-block values: CIDRs, or addresses
// meaning a single host.
func ParseNeverBlock(values []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(values))
	for _, v := range values {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			a, aerr := netip.ParseAddr(v)
			if aerr != nil {
				return nil, fmt.Errorf("--guard.never-block %q is not a CIDR or an address", v)
			}
			if a.Zone() != "" {
				return nil, fmt.Errorf("--guard.never-block %q: zones are not allowed", v)
			}
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func nodeAddressesEvery(logger *slog.Logger, ns netns.NsHandle, refresh time.Duration) func() []netip.Prefix {
	var (
		mu   sync.Mutex
		last []netip.Prefix
		read time.Time
	)
	return func() []netip.Prefix {
		mu.Lock()
		defer mu.Unlock()
		if !read.IsZero() && time.Since(read) < refresh {
			return slices.Clone(last)
		}
		addrs, err := NodeAddresses(ns)
		if err != nil {
			logger.Warn("read node addresses failed; using the last list", "err", err, "addresses", len(last))
			return slices.Clone(last)
		}
		last, read = addrs, time.Now()
		return slices.Clone(last)
	}
}
