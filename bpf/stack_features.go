package bpf

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"
)

// Feature is a kernel capability the stack programs use where the running
// kernel has it, and do without otherwise.
type Feature struct {
	// Name is the packetscope_feature_enabled label value.
	Name string
	// Since is the first Linux version that has it.
	Since string
	// Enabled says whether the running kernel has it.
	Enabled bool
	// Without says what the agent does, or cannot do, without it.
	Without string
}

// Feature names (the packetscope_feature_enabled{feature} label values).
const (
	FeatureTCX              = "tcx"
	FeatureNetfilterStages  = "netfilter_stages"
	FeatureDropReasonSocket = "drop_reason_socket"
	FeatureKfuncReads       = "kfunc_reads"
	FeatureSocketQueueTrace = "socket_queue_trace"
)

// featureSpecs lists the features in a fixed order, with how to find each
// in the kernel's BTF: a type that the feature's kernel change added (or,
// for drop_reason_socket, a member). BTF rather than trial loads: it
// answers without side effects, and a kernel without BTF is refused by
// Preflight anyway.
var featureSpecs = []struct {
	Feature
	probe func(*btf.Spec) bool
}{
	{Feature{Name: FeatureTCX, Since: "6.6",
		Without: "traffic counters attach as tc clsact BPF filters instead of TCX links (same counts)"},
		hasType[*btf.Struct]("tcx_entry")},
	{Feature{Name: FeatureNetfilterStages, Since: "6.4",
		Without: "no BPF netfilter links: the stages that start or end at the IP layer (rx core, ip, socket; tx ip, neigh) are not observed; rx backlog and tx qdisc and driver are"},
		hasType[*btf.Struct]("bpf_nf_ctx")},
	{Feature{Name: FeatureDropReasonSocket, Since: "6.11",
		Without: "kfree_skb has no rx_sk argument: a drop at a receiving socket of an skb that kept neither its device nor a socket cannot be placed in a namespace and is not counted, except a RST an established connection drops (tcp:tcp_probe notes those, at the cost of a program run per segment such a connection receives)"},
		hasMember("trace_event_raw_kfree_skb", "rx_sk")},
	{Feature{Name: FeatureKfuncReads, Since: "6.2",
		Without: "packet headers are read with bpf_probe_read_kernel (a helper call per read) instead of bpf_rdonly_cast"},
		func(s *btf.Spec) bool {
			return hasType[*btf.Func]("bpf_rdonly_cast")(s) && hasType[*btf.Func]("bpf_cast_to_kern_ctx")(s)
		}},
	{Feature{Name: FeatureSocketQueueTrace, Since: "6.5",
		Without: "no sock:sk_data_ready tracepoint: packet-path traces of UDP and ICMP end at LOCAL_IN or a drop, without the socket enqueue"},
		hasType[*btf.Typedef]("btf_trace_sk_data_ready")},
}

func hasType[T btf.Type](name string) func(*btf.Spec) bool {
	return func(s *btf.Spec) bool {
		var t T
		return s.TypeByName(name, &t) == nil
	}
}

func hasMember(structName, member string) func(*btf.Spec) bool {
	return func(s *btf.Spec) bool {
		var st *btf.Struct
		if s.TypeByName(structName, &st) != nil {
			return false
		}
		for _, m := range st.Members {
			if m.Name == member {
				return true
			}
		}
		return false
	}
}

// KernelFeatures reports which of the optional features the running
// kernel has, from its BTF.
func KernelFeatures() ([]Feature, error) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, fmt.Errorf("read the kernel's BTF: %w", err)
	}
	return probeFeatures(spec), nil
}

func probeFeatures(spec *btf.Spec) []Feature {
	out := make([]Feature, len(featureSpecs))
	for i, fs := range featureSpecs {
		out[i] = fs.Feature
		out[i].Enabled = fs.probe(spec)
	}
	return out
}

func featureOn(fs []Feature, name string) bool {
	for _, f := range fs {
		if f.Name == name {
			return f.Enabled
		}
	}
	return false
}

// KernelRelease returns the running kernel's release (uname -r).
func KernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// featuresOffForTest makes LoadStack behave as on a kernel without these
// features, so the host's tests run the older kernels' variants too.
var featuresOffForTest map[string]bool

// optionalPrograms names the programs a missing feature leaves out, so
// they are neither loaded nor attached.
var optionalPrograms = map[string]string{
	"nf_boundary":   FeatureNetfilterStages,
	"sk_data_ready": FeatureSocketQueueTrace,
}

// fallbackPrograms names the programs that stand in for a missing feature:
// loaded and attached only where the kernel lacks it.
var fallbackPrograms = map[string]string{
	"tcp_probe_rst": FeatureDropReasonSocket,
}

// loadError turns a failure to load the stack programs into one sentence
// naming the program and what to do, instead of the loader's struct path.
func loadError(err error) error {
	prog := "stack programs"
	// The collection loader wraps each program's error as "program NAME: ...".
	if _, rest, ok := strings.Cut(err.Error(), "program "); ok {
		if name, _, ok := strings.Cut(rest, ":"); ok && !strings.ContainsAny(name, " \t") {
			prog = "stack program " + name
		}
	}
	release := KernelRelease()
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return fmt.Errorf("the kernel's verifier (Linux %s) rejected the %s: run a kernel from the table in README.md (Kernels), or report this with `uname -r` and the log that follows: %+v", release, prog, ve)
	}
	if errors.Is(err, ebpf.ErrNotSupported) {
		return fmt.Errorf("the kernel (Linux %s) lacks what the %s needs (%v): run Linux 6.1 or later with BTF, see README.md (Kernels)", release, prog, err)
	}
	return fmt.Errorf("load the %s on Linux %s: %w", prog, release, err)
}
