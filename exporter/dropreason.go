package exporter

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf/btf"
)

const dropReasonPrefix = "SKB_DROP_REASON_"

// DropReasons maps the running kernel's enum skb_drop_reason values to their
// names without the SKB_DROP_REASON_ prefix (NO_SOCKET, NETFILTER_DROP, ...).
// The values differ between kernels, so they come from the kernel's BTF,
// never from a table compiled in.
func DropReasons() (map[uint32]string, error) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, fmt.Errorf("load kernel BTF: %w", err)
	}
	return dropReasonsFrom(spec)
}

func dropReasonsFrom(spec *btf.Spec) (map[uint32]string, error) {
	var enum *btf.Enum
	if err := spec.TypeByName("skb_drop_reason", &enum); err != nil {
		return nil, fmt.Errorf("find enum skb_drop_reason in kernel BTF: %w", err)
	}
	out := make(map[uint32]string, len(enum.Values))
	for _, v := range enum.Values {
		name, ok := strings.CutPrefix(v.Name, dropReasonPrefix)
		// SKB_DROP_REASON_MAX and the subsystem masks are bounds, not reasons.
		if !ok || name == "MAX" || strings.HasPrefix(name, "SUBSYS_") {
			continue
		}
		out[uint32(v.Value)] = name
	}
	if len(out) == 0 {
		return nil, errors.New("enum skb_drop_reason in kernel BTF has no SKB_DROP_REASON_ values")
	}
	return out, nil
}

// dropReasonName names a reason value; values outside the core enum (drop
// reasons of other subsystems carry a subsystem in their high bits) get a
// bounded numeric name.
func dropReasonName(reasons map[uint32]string, v uint32) string {
	if name, ok := reasons[v]; ok {
		return name
	}
	return fmt.Sprintf("UNKNOWN_%d", v)
}
