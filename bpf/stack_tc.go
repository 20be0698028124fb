package bpf

import (
	"errors"
	"fmt"
	"io"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Priorities of the clsact filters: first on ingress, last on egress, as the
// TCX links are anchored (head, tail). They never change a verdict, so the
// order matters only to what other filters see counted.
const (
	tcPrioIngress = 1
	tcPrioEgress  = 0xffff
	tcHandle      = 0x5053 // "PS": tells our filters apart on a shared clsact
)

// attachTraffic attaches the traffic counters to one device: TCX links
// where the kernel has them (6.6), a clsact qdisc with two direct-action BPF
// filters otherwise. Either way the closers detach exactly what was
// attached. It runs in the observed namespace (InNetns).
func (s *Stack) attachTraffic(ifindex int) ([]io.Closer, error) {
	if featureOn(s.features, FeatureTCX) {
		var links []io.Closer
		for _, o := range []link.TCXOptions{
			{Program: s.objs.TcxIngress, Attach: ebpf.AttachTCXIngress, Interface: ifindex, Anchor: link.Head()},
			{Program: s.objs.TcxEgress, Attach: ebpf.AttachTCXEgress, Interface: ifindex, Anchor: link.Tail()},
		} {
			l, err := link.AttachTCX(o)
			if err != nil {
				_ = closeAll(links)
				return nil, err
			}
			links = append(links, l)
		}
		return links, nil
	}
	a, err := attachClsact(ifindex, s.objs.TcxIngress, s.objs.TcxEgress)
	if err != nil {
		return nil, err
	}
	return []io.Closer{a}, nil
}

// clsactAttachment is the traffic counters of one device on a kernel
// without TCX.
type clsactAttachment struct {
	h       *netlink.Handle
	filters []*netlink.BpfFilter
	qdisc   *netlink.GenericQdisc // created by us: removed when our filters were its last
}

func attachClsact(ifindex int, ingress, egress *ebpf.Program) (_ *clsactAttachment, err error) {
	// A handle opened on this thread belongs to the namespace it is in.
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	a := &clsactAttachment{h: h}
	defer func() {
		if err != nil {
			_ = a.Close()
		}
	}()
	qdisc := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{
			LinkIndex: ifindex,
			Handle:    netlink.MakeHandle(0xffff, 0),
			Parent:    netlink.HANDLE_CLSACT,
		},
		QdiscType: "clsact",
	}
	switch err := h.QdiscAdd(qdisc); {
	case err == nil:
		a.qdisc = qdisc
	case errors.Is(err, unix.EEXIST):
		// Someone else's clsact (or ours from before): share it, leave it.
	default:
		return nil, fmt.Errorf("add clsact qdisc (needs the sch_ingress module): %w", err)
	}
	for _, f := range []struct {
		prog   *ebpf.Program
		parent uint32
		prio   uint16
	}{
		{ingress, netlink.HANDLE_MIN_INGRESS, tcPrioIngress},
		{egress, netlink.HANDLE_MIN_EGRESS, tcPrioEgress},
	} {
		info, err := f.prog.Info()
		if err != nil {
			return nil, fmt.Errorf("read program info: %w", err)
		}
		filter := &netlink.BpfFilter{
			FilterAttrs: netlink.FilterAttrs{
				LinkIndex: ifindex,
				Parent:    f.parent,
				Handle:    tcHandle,
				Priority:  f.prio,
				Protocol:  unix.ETH_P_ALL,
			},
			Fd:           f.prog.FD(),
			Name:         "packetscope_" + info.Name,
			DirectAction: true,
		}
		if err := h.FilterReplace(filter); err != nil {
			return nil, fmt.Errorf("add tc bpf filter (needs the cls_bpf module): %w", err)
		}
		a.filters = append(a.filters, filter)
	}
	return a, nil
}

// Close removes the filters, and the clsact qdisc when this attachment
// created it and nothing else hangs on it. A device that is gone took them
// with it.
func (a *clsactAttachment) Close() error {
	var errs []error
	gone := func(err error) bool { return errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT) }
	for _, f := range a.filters {
		if err := a.h.FilterDel(f); err != nil && !gone(err) {
			errs = append(errs, fmt.Errorf("delete tc filter: %w", err))
		}
	}
	a.filters = nil
	if a.qdisc != nil {
		link := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: a.qdisc.LinkIndex}}
		in, err1 := a.h.FilterList(link, netlink.HANDLE_MIN_INGRESS)
		out, err2 := a.h.FilterList(link, netlink.HANDLE_MIN_EGRESS)
		if err1 == nil && err2 == nil && len(in)+len(out) == 0 {
			if err := a.h.QdiscDel(a.qdisc); err != nil && !gone(err) {
				errs = append(errs, fmt.Errorf("delete clsact qdisc: %w", err))
			}
		}
		a.qdisc = nil
	}
	a.h.Close()
	return errors.Join(errs...)
}

func closeAll(cs []io.Closer) error {
	var errs []error
	for _, c := range cs {
		if err := c.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach: %w", err))
		}
	}
	return errors.Join(errs...)
}
