package bpf

import (
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Directions, protocols, stages and event indexes as stack.bpf.c numbers
// them. They stay untyped constants (callers use them as uint8 keys, array
// indexes and ints); stack_enums.go fails the build when one differs from
// the enum bpf2go generated from the object's BTF.
const (
	DirectionRX = 0
	DirectionTX = 1

	ProtocolOther  = 0
	ProtocolTCP    = 1
	ProtocolUDP    = 2
	ProtocolICMP   = 3
	ProtocolICMPv6 = 4
	ProtocolARP    = 5

	StageRXBacklog = 0
	StageRXCore    = 1
	StageRXIP      = 2
	StageRXSocket  = 3
	StageTXIP      = 4
	StageTXNeigh   = 5
	StageTXQdisc   = 6
	StageTXDriver  = 7
	StageCount     = 8

	tcpEventRetransmit  = 0
	tcpEventResetTX     = 1
	tcpEventResetRX     = 2
	tcpEventPassiveOpen = 3

	// enum udp_connected_counter
	udpConnectedPackets = 0
	udpConnectedBytes   = 1

	lostMapFull = 0

	// HistBuckets is the number of log2 buckets: bucket i counts values
	// (in nanoseconds) in (2^(i-1), 2^i]; bucket 0 holds values <= 1 and the
	// last bucket everything above 2^(HistBuckets-2).
	HistBuckets = 32
)

// StackConfig selects what the stack programs observe.
type StackConfig struct {
	// Netns is the network namespace to observe, owned by the caller (it
	// must outlive the Stack).
	Netns *Netns
	// SampleEvery starts a latency sample on one skb in SampleEvery (per CPU);
	// 1 samples every skb.
	SampleEvery uint32
	// XDPPass is the XDP guard's map of the last frame it passed per CPU
	// (guard.Guard.XDPPass): traces then start at the guard. Nil: they
	// start at the device's hand-over.
	XDPPass *ebpf.Map
	// Trace turns on packet-path records (see TraceConfig); nil leaves the
	// tracing code paths off in the kernel.
	Trace *TraceConfig
	// ReactionBudget caps the reaction records (see Reaction) each CPU
	// emits per second; zero means DefaultReactionBudget.
	ReactionBudget uint32
}

// Stack holds the loaded stack observation programs and their links.
//
// The counting programs stay attached: traffic on the TCX hooks of the
// observed namespace's devices (AttachDevice), drops and TCP events on
// tracepoints that fire per event, not per packet. The path programs mark
// the stage boundaries and time the RTT; each of them costs every packet a
// dispatch (tens of nanoseconds) whatever its namespace, so they are
// attached only for windows (AttachPath, DetachPath).
type Stack struct {
	objs       stackObjects
	coll       *ebpf.Collection    // what objs does not hold (the global data maps)
	links      []link.Link         // drop and TCP event counters
	devLinks   map[int][]io.Closer // traffic counters, by ifindex
	pathLinks  []link.Link         // stage boundaries and RTT, while a window is open
	ns         *Netns
	trace      bool
	features   []Feature
	NetnsInode uint64
}

// LoadStack loads stack.bpf.c's programs scoped to one network namespace
// and attaches the counting programs. It uses what the running kernel has
// (see Features) and leaves out what it lacks. On failure nothing stays
// attached or loaded, and the error is one sentence fit for a user.
func LoadStack(cfg StackConfig) (_ *Stack, err error) {
	if cfg.SampleEvery == 0 {
		return nil, errors.New("latency sample rate must be at least 1 (one skb in N)")
	}
	if cfg.Netns == nil {
		return nil, errors.New("load stack programs: no network namespace to observe")
	}
	s := &Stack{ns: cfg.Netns, trace: cfg.Trace != nil}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if cfg.Netns.Inode > math.MaxUint32 {
		return nil, fmt.Errorf("network namespace inode %d does not fit 32 bits", cfg.Netns.Inode)
	}
	s.NetnsInode = cfg.Netns.Inode

	s.features, err = KernelFeatures()
	if err != nil {
		return nil, err
	}
	for i := range s.features {
		if featuresOffForTest[s.features[i].Name] {
			s.features[i].Enabled = false
		}
	}
	spec, err := loadStack()
	if err != nil {
		return nil, fmt.Errorf("parse stack programs: %w", err)
	}
	for _, v := range []struct {
		name    string
		feature string
	}{{"have_kfuncs", FeatureKfuncReads}, {"have_netfilter", FeatureNetfilterStages}, {"have_rx_sk", FeatureDropReasonSocket}} {
		on := uint32(0)
		if featureOn(s.features, v.feature) {
			on = 1
		}
		if err := spec.Variables[v.name].Set(on); err != nil {
			return nil, fmt.Errorf("set %s: %w", v.name, err)
		}
	}
	for prog, feature := range optionalPrograms {
		if !featureOn(s.features, feature) {
			delete(spec.Programs, prog)
		}
	}
	for prog, feature := range fallbackPrograms {
		if featureOn(s.features, feature) {
			delete(spec.Programs, prog)
		}
	}
	if err := spec.Variables["target_netns"].Set(uint32(s.NetnsInode)); err != nil {
		return nil, fmt.Errorf("set target_netns: %w", err)
	}
	if err := spec.Variables["sample_every"].Set(cfg.SampleEvery); err != nil {
		return nil, fmt.Errorf("set sample_every: %w", err)
	}
	if cfg.ReactionBudget == 0 {
		cfg.ReactionBudget = DefaultReactionBudget
	}
	if err := spec.Variables["reaction_budget"].Set(cfg.ReactionBudget); err != nil {
		return nil, fmt.Errorf("set reaction_budget: %w", err)
	}
	if err := setTraceVariables(spec, cfg.Trace); err != nil {
		return nil, err
	}
	var opts ebpf.CollectionOptions
	if cfg.XDPPass != nil {
		opts.MapReplacements = map[string]*ebpf.Map{"xdp_pass": cfg.XDPPass}
	}
	// A whole collection rather than LoadAndAssign, which would insist on
	// every program of stackPrograms, including those just left out.
	s.coll, err = ebpf.NewCollectionWithOptions(spec, opts)
	if err != nil {
		return nil, loadError(err)
	}
	if err := s.coll.Assign(&s.objs.stackMaps); err != nil {
		return nil, fmt.Errorf("assign stack maps: %w", err)
	}
	if err := s.coll.Assign(&s.objs.stackVariables); err != nil {
		return nil, fmt.Errorf("assign stack variables: %w", err)
	}
	assignPrograms(&s.objs.stackPrograms, s.coll.Programs)
	p := s.objs.stackPrograms
	s.devLinks = map[int][]io.Closer{}
	counters := []*ebpf.Program{p.KfreeSkb, p.TcpRetransmitSkb, p.TcpSendReset, p.TcpReceiveReset, p.InetSockSetState}
	if p.TcpProbeRst != nil {
		counters = append(counters, p.TcpProbeRst)
	}
	s.links, err = attachTracepoints(nil, counters...)
	return s, err
}

// AttachDevice attaches the traffic counters to a device of the observed
// namespace (TCX ingress, first, and egress, last; a tc clsact filter pair
// on kernels before 6.6); a device already counted is left alone.
func (s *Stack) AttachDevice(ifindex int) error {
	if _, ok := s.devLinks[ifindex]; ok {
		return nil
	}
	var links []io.Closer
	err := s.ns.Do(func() (err error) {
		links, err = s.attachTraffic(ifindex)
		return err
	})
	if err != nil {
		return fmt.Errorf("attach traffic counters to ifindex %d: %w", ifindex, err)
	}
	s.devLinks[ifindex] = links
	return nil
}

// DetachDevice detaches the traffic counters from a device (the kernel
// already did when the device is gone).
func (s *Stack) DetachDevice(ifindex int) error {
	err := closeAll(s.devLinks[ifindex])
	delete(s.devLinks, ifindex)
	return err
}

// AttachPath opens a sampling window: it attaches the stage boundaries and
// turns the counting programs' boundaries on. Samples left over from the
// previous window are forgotten.
func (s *Stack) AttachPath() (err error) {
	if s.pathLinks != nil {
		return nil
	}
	defer func() {
		if err != nil {
			s.DetachPath()
		}
	}()
	var free slotBitmap
	if err := s.objs.SampleSlotsUsed.Put(uint32(0), &free); err != nil {
		return fmt.Errorf("reset sample slots: %w", err)
	}
	p := s.objs.stackPrograms
	progs := []*ebpf.Program{p.NetifRx, p.NapiGroReceiveEntry, p.NapiGroFragsEntry, p.NetifReceiveSkbEntry,
		p.NetifReceiveSkbListEntry, p.NetifReceiveSkb, p.NetDevQueue, p.NetDevStartXmit, p.NetDevXmit,
		p.SkbCopyDatagramIovec, p.ConsumeSkb, p.TcpProbe}
	// sk_data_ready fires for every socket wake-up and serves only traces.
	if s.trace && p.SkDataReady != nil {
		progs = append(progs, p.SkDataReady)
	}
	s.pathLinks, err = attachTracepoints([]link.Link{}, progs...)
	if err != nil {
		return err
	}
	if p.NfBoundary != nil {
		if err := s.ns.Do(s.linkNetfilter); err != nil {
			return err
		}
	}
	if err := s.objs.PathOn.Set(uint32(1)); err != nil {
		return fmt.Errorf("turn stage boundaries on: %w", err)
	}
	return nil
}

// DetachPath closes a sampling window.
func (s *Stack) DetachPath() error {
	var errs []error
	if s.objs.PathOn != nil {
		if err := s.objs.PathOn.Set(uint32(0)); err != nil {
			errs = append(errs, fmt.Errorf("turn stage boundaries off: %w", err))
		}
	}
	errs = append(errs, closeLinks(s.pathLinks))
	s.pathLinks = nil
	return errors.Join(errs...)
}

// PathAttached reports whether a sampling window is open.
func (s *Stack) PathAttached() bool { return s.pathLinks != nil }

// slotBitmap mirrors struct slot_bitmap.
type slotBitmap [sampleSlots / 64]uint64

const sampleSlots = 4096 // SAMPLE_SLOTS

// attachTracepoints attaches each program to its tp_btf tracepoint,
// appending the links to links; on failure it closes what it attached.
func attachTracepoints(links []link.Link, progs ...*ebpf.Program) ([]link.Link, error) {
	for _, p := range progs {
		l, err := link.AttachTracing(link.TracingOptions{Program: p, AttachType: ebpf.AttachTraceRawTp})
		if err != nil {
			_ = closeLinks(links)
			return nil, fmt.Errorf("attach tracepoint program %s: %w", p.String(), err)
		}
		links = append(links, l)
	}
	return links, nil
}

func closeLinks(links []link.Link) error {
	var errs []error
	for _, l := range links {
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Netfilter priorities of the boundaries: the first hook to see a packet in
// PRE_ROUTING/LOCAL_OUT and the last in LOCAL_IN/POST_ROUTING, so that the
// IP stages include conntrack, NAT and filtering. INT_MIN and INT_MAX are
// reserved by the kernel.
const (
	nfFirst = math.MinInt32 + 1
	nfLast  = math.MaxInt32 - 1
)

// linkNetfilter links nf_boundary to the IPv4 and IPv6 hooks of the
// observed namespace; it runs in that namespace, because a netfilter link
// belongs to the namespace of the thread that creates it.
func (s *Stack) linkNetfilter() error {
	hooks := []struct {
		hook link.NetfilterInetHook
		prio int32
	}{
		{link.NetfilterInetPreRouting, nfFirst},
		{link.NetfilterInetLocalIn, nfLast},
		{link.NetfilterInetLocalOut, nfFirst},
		{link.NetfilterInetPostRouting, nfLast},
	}
	for _, pf := range []link.NetfilterProtocolFamily{link.NetfilterProtoIPv4, link.NetfilterProtoIPv6} {
		for _, h := range hooks {
			l, err := link.AttachNetfilter(link.NetfilterOptions{
				Program:        s.objs.NfBoundary,
				ProtocolFamily: pf,
				Hook:           h.hook,
				Priority:       h.prio,
			})
			if err != nil {
				return fmt.Errorf("attach netfilter boundary (family %d, hook %d): %w", pf, h.hook, err)
			}
			s.pathLinks = append(s.pathLinks, l)
		}
	}
	return nil
}

// Close detaches every program and frees the maps. It may be called more
// than once.
func (s *Stack) Close() error {
	errs := []error{s.DetachPath(), closeLinks(s.links)}
	s.links = nil
	for ifindex := range s.devLinks {
		errs = append(errs, s.DetachDevice(ifindex))
	}
	if err := s.objs.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close stack objects: %w", err))
	}
	s.objs = stackObjects{}
	if s.coll != nil {
		s.coll.Close()
		s.coll = nil
	}
	return errors.Join(errs...)
}

// Features reports what the running kernel allows the stack programs, in a
// fixed order.
func (s *Stack) Features() []Feature { return s.features }

// assignPrograms sets each field of progs to the loaded program its ebpf
// tag names, taking it out of loaded (so the collection no longer closes
// it); a program left out for a missing feature stays nil.
func assignPrograms(progs *stackPrograms, loaded map[string]*ebpf.Program) {
	v := reflect.ValueOf(progs).Elem()
	for i := range v.NumField() {
		name := v.Type().Field(i).Tag.Get("ebpf")
		if p, ok := loaded[name]; ok {
			v.Field(i).Set(reflect.ValueOf(p))
			delete(loaded, name)
		}
	}
}

// Programs returns the loaded programs by name (the C function name), for
// run-time statistics; programs the kernel could not have are left out.
func (s *Stack) Programs() map[string]*ebpf.Program {
	out := map[string]*ebpf.Program{}
	for name, p := range s.programs() {
		if p != nil {
			out[name] = p
		}
	}
	return out
}

func (s *Stack) programs() map[string]*ebpf.Program {
	p := s.objs.stackPrograms
	return map[string]*ebpf.Program{
		"netif_rx":                     p.NetifRx,
		"napi_gro_receive_entry":       p.NapiGroReceiveEntry,
		"napi_gro_frags_entry":         p.NapiGroFragsEntry,
		"netif_receive_skb_entry":      p.NetifReceiveSkbEntry,
		"netif_receive_skb_list_entry": p.NetifReceiveSkbListEntry,
		"netif_receive_skb":            p.NetifReceiveSkb,
		"net_dev_queue":                p.NetDevQueue,
		"net_dev_start_xmit":           p.NetDevStartXmit,
		"net_dev_xmit":                 p.NetDevXmit,
		"skb_copy_datagram_iovec":      p.SkbCopyDatagramIovec,
		"consume_skb":                  p.ConsumeSkb,
		"kfree_skb":                    p.KfreeSkb,
		"tcp_probe":                    p.TcpProbe,
		"tcp_probe_rst":                p.TcpProbeRst,
		"tcp_retransmit_skb":           p.TcpRetransmitSkb,
		"tcp_send_reset":               p.TcpSendReset,
		"tcp_receive_reset":            p.TcpReceiveReset,
		"inet_sock_set_state":          p.InetSockSetState,
		"nf_boundary":                  p.NfBoundary,
		"tcx_ingress":                  p.TcxIngress,
		"tcx_egress":                   p.TcxEgress,
		"sk_data_ready":                p.SkDataReady,
	}
}
