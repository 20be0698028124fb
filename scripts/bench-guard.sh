#!/usr/bin/env bash
# XDP guard benchmarks (guard/xdp_bench_test.go, guard/xdp_flood_bench_test.go):
#  1. ns per packet through BPF_PROG_TEST_RUN on 64-byte frames, pass and drop
#     paths, IPv4 and IPv6, for the guard with 0, 64 and 1,000 fingerprint
#     rules plus 100,000 source-CIDR rules, side by side with xdp-filter
#     (xdp-tools) on the same frames;
#  2. the drop rate on a veth under hping3 --flood, and the sampled-header
#     pipeline under that flood (samples/s, lost, agent memory).
# Needs root, Go, hping3 and xdp-tools.
#
#   PACKETS=2000000 bash scripts/bench-guard.sh
set -euo pipefail

PACKETS=${PACKETS:-2000000}
[ "$(id -u)" = 0 ] || { echo "bench-guard: needs root (eBPF, network namespaces): run it with sudo" >&2; exit 1; }
for t in go hping3; do
	command -v "$t" >/dev/null || { echo "bench-guard: $t is missing (apt-get install -y hping3 xdp-tools)" >&2; exit 1; }
done
ls /usr/lib/*/bpf/xdpfilt_alw_all.o >/dev/null 2>&1 || { echo "bench-guard: xdp-filter's object is missing: apt-get install -y xdp-tools" >&2; exit 1; }

cd "$(dirname "$0")/.."
out=$(mktemp)
trap 'rm -f "$out"' EXIT

echo "== XDP guard: ns/packet (BPF_PROG_TEST_RUN, 64-byte frames, $PACKETS repeats) =="
CI=true go test ./guard/ -run '^$' -bench 'BenchmarkXDP' -benchtime "${PACKETS}x" -timeout 20m 2>/dev/null | grep 'ns/pkt' >"$out"
awk '
{
	name = $1; sub(/^BenchmarkXDP\//, "", name); sub(/-[0-9]+$/, "", name)
	n = split(name, p, "/")          # program/config/family/path
	cfg = p[1] "/" p[2]; col = p[3] "/" p[4]
	for (i = 2; i <= NF; i++) if ($(i) == "ns/pkt") v = $(i-1)
	if (!(cfg in seen)) { seen[cfg] = 1; order[++rows] = cfg }
	val[cfg, col] = v
}
END {
	printf "%-30s %9s %9s %9s %9s %10s %10s\n", "program / rules", "v4 pass", "v4 drop", "v6 pass", "v6 drop", "v4 cidr-dr", "v6 cidr-dr"
	for (r = 1; r <= rows; r++) {
		c = order[r]
		printf "%-30s %9s %9s %9s %9s %10s %10s\n", c, val[c, "ipv4/pass"], val[c, "ipv4/drop"], val[c, "ipv6/pass"], val[c, "ipv6/drop"], \
			((c, "ipv4/cidr-drop") in val) ? val[c, "ipv4/cidr-drop"] : "-", ((c, "ipv6/cidr-drop") in val) ? val[c, "ipv6/cidr-drop"] : "-"
	}
	print "(drop = a fingerprint rule matches, the last one added; cidr-dr = a source-CIDR rule matches; ns per packet)"
}' "$out"

echo
echo "== veth flood (hping3 --flood ICMP, drop rule in force) and the sampled-header pipeline =="
CI=true go test ./guard/ -run '^$' -bench 'BenchmarkVethFlood' -benchtime 1x -timeout 10m 2>/dev/null | grep '^BenchmarkVethFlood' >"$out"
awk '
function metric(name,   i) { for (i = 2; i <= NF; i++) if ($(i) == name) return $(i-1); return "-" }
BEGIN { printf "%-18s %12s %12s %14s %16s %10s %9s\n", "sampling", "dropped pps", "samples/s", "kernel lost/s", "agent dropped/s", "heap MiB", "RSS MiB" }
{
	name = $1; sub(/^BenchmarkVethFlood\//, "", name); sub(/-[0-9]+$/, "", name)
	printf "%-18s %12.0f %12.0f %14s %16s %10.1f %9.1f\n", name, metric("dropped_pps"), metric("samples/s"), metric("kernel_lost/s"), metric("agent_dropped/s"), metric("heap_MiB"), metric("rss_MiB")
}' "$out"
