#!/usr/bin/env bash
# Tracing overhead of the stack exporter: TCP bulk throughput and 64-byte UDP
# packet rate between two network namespaces over a veth pair, with the agent
# off and on in alternating runs, then each program's ns per event from
# bpf_stats. Needs root, iperf3, jq and Go (or AGENT_BIN, see below).
#
#   ROUNDS=3 SECONDS_PER_RUN=20 SAMPLE_EVERY=64 TRACE=1 FULL=1 bash scripts/bench-overhead.sh
#
# TRACE=1 (the default) adds a third mode, "trace": the agent with packet-path
# tracing on at its default sampling, exporting over OTLP/HTTP (protobuf
# batches, configured by OTEL_* only) to exporter/internal/otlpsink, a
# collector that discards what it gets. FULL=1
# (the default) adds "full": the stage boundaries attached all the time
# instead of in 1 s windows every 20 s, the price of continuous stages.
#
# The agent is exporter/internal/benchagent (the exporter alone, observing the
# receiver's namespace); set AGENT_BIN to a binary taking the same flags.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
# A run spans one stage period (20 s), so it holds one 1 s window.
SECS=${SECONDS_PER_RUN:-20}
SETTLE=${SETTLE:-1.5}
FULL=${FULL:-1}
SAMPLE_EVERY=${SAMPLE_EVERY:-64}
TRACE=${TRACE:-1}
PORT=${PORT:-19436}

[ "$(id -u)" = 0 ] || { echo "bench-overhead: needs root (network namespaces, eBPF): run it with sudo" >&2; exit 1; }
for t in iperf3 jq ip curl; do
	command -v "$t" >/dev/null || { echo "bench-overhead: $t is missing: apt-get install -y $t" >&2; exit 1; }
done

cd "$(dirname "$0")/.."
work=$(mktemp -d)
if [ -z "${AGENT_BIN:-}" ]; then
	go build -o "$work/benchagent" ./exporter/internal/benchagent
	AGENT_BIN=$work/benchagent
fi

suffix=$$
SRV=ps-exp-bsrv-$suffix
CLI=ps-exp-bcli-$suffix
agent_pid=
stats_before=$(cat /proc/sys/kernel/bpf_stats_enabled)

sink_pid=
cleanup() {
	[ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null || true
	[ -n "$sink_pid" ] && kill "$sink_pid" 2>/dev/null || true
	for ns in "$SRV" "$CLI"; do
		for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
		ip netns del "$ns" 2>/dev/null || true
	done
	echo "$stats_before" >/proc/sys/kernel/bpf_stats_enabled
	rm -rf "$work"
}
trap cleanup EXIT

SINK_PORT=$((PORT + 1))
go build -o "$work/otlpsink" ./exporter/internal/otlpsink
"$work/otlpsink" -listen "127.0.0.1:$SINK_PORT" &
sink_pid=$!

ip netns add "$SRV"
ip netns add "$CLI"
ip link add "vb$suffix" type veth peer name "vbp$suffix"
ip link set "vb$suffix" netns "$SRV" name eth0
ip link set "vbp$suffix" netns "$CLI" name eth0
ip -n "$SRV" addr add 10.201.200.1/24 dev eth0
ip -n "$CLI" addr add 10.201.200.2/24 dev eth0
for ns in "$SRV" "$CLI"; do
	ip -n "$ns" link set lo up
	ip -n "$ns" link set eth0 up
done

# start_agent MODE: on (defaults), trace (defaults, tracing on) or full (the
# stage boundaries always attached). The agent opens its first stage window
# when it starts; the runs begin after it, so that each run of a whole
# number of periods holds the steady-state share of windows.
start_agent() {
	local args=(--netns "/var/run/netns/$SRV" --web.listen-address "127.0.0.1:$PORT" --latency.sample-every "$SAMPLE_EVERY")
	case $1 in
	trace) OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$SINK_PORT" OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf \
		"$AGENT_BIN" "${args[@]}" >"$work/agent.log" 2>&1 & ;;
	full) "$AGENT_BIN" "${args[@]}" --stack.stage-window 1s --stack.stage-period 1s >"$work/agent.log" 2>&1 & ;;
	*) "$AGENT_BIN" "${args[@]}" >"$work/agent.log" 2>&1 & ;;
	esac
	agent_pid=$!
	for _ in $(seq 50); do
		if curl -sf "http://127.0.0.1:$PORT/metrics" >/dev/null; then
			sleep "$SETTLE"
			return
		fi
		sleep 0.1
	done
	echo "bench-overhead: the agent did not start:" >&2
	cat "$work/agent.log" >&2
	exit 1
}

stop_agent() {
	kill "$agent_pid"
	wait "$agent_pid" 2>/dev/null || true
	agent_pid=
}

# run_iperf <client args...>: one test against a fresh server; prints JSON.
# The client runs on CPU 0 (with the softirq that receives its packets on
# the veth) and the server on CPU 1: unpinned, the scheduler's placement
# moves a single run by ±10 %.
run_iperf() {
	ip netns exec "$SRV" iperf3 -s -1 -A 1 -B 10.201.200.1 >/dev/null 2>&1 &
	local srv=$!
	for _ in $(seq 50); do
		ip netns exec "$SRV" ss -Hltn 'sport = :5201' | grep -q . && break
		sleep 0.1
	done
	ip netns exec "$CLI" timeout $((SECS + 20)) iperf3 -A 0 -c 10.201.200.1 -t "$SECS" -J "$@" || true
	# A server whose client failed would wait forever.
	sleep 0.5
	kill "$srv" 2>/dev/null || true
	wait "$srv" 2>/dev/null || true
}

# measure <jq expression> <client args...>: the figure, retried once if a run
# fails (a busy machine can make iperf3 miss its control connection).
measure() {
	local expr=$1 v
	shift
	for _ in 1 2; do
		v=$(run_iperf "$@" | jq -r "$expr" 2>/dev/null || true)
		if [[ "$v" =~ ^[0-9.e+-]+$ ]]; then
			echo "$v"
			return
		fi
	done
	echo "bench-overhead: iperf3 $* failed twice" >&2
	exit 1
}

tcp_gbps() { measure '.end.sum_received.bits_per_second / 1e9'; }
# Packets the receiver got per second.
udp_pps() { measure '(.end.sum.packets - .end.sum.lost_packets) / .end.sum.seconds' -u -l 64 -b 0; }

echo 0 >/proc/sys/kernel/bpf_stats_enabled
declare -A res loss
modes=(off on)
[ "$TRACE" = 1 ] && modes+=(trace)
[ "$FULL" = 1 ] && modes+=(full)
for r in $(seq "$ROUNDS"); do
	# Rotate which mode goes first, so drift does not favour one.
	order=()
	for i in "${!modes[@]}"; do order+=("${modes[$(((i + r) % ${#modes[@]}))]}"); done
	for mode in "${order[@]}"; do
		[ "$mode" != off ] && start_agent "$mode"
		t=$(tcp_gbps)
		u=$(udp_pps)
		[ "$mode" != off ] && stop_agent
		res[$mode.tcp]+="$t"$'\n'
		res[$mode.udp]+="$u"$'\n'
		res[$r.$mode]="$t $u"
		printf 'round %d agent %-5s  tcp %6.2f Gbit/s  udp64 %9.0f pps\n' "$r" "$mode" "$t" "$u"
	done
	# Paired per round: the machine's load drifts less within a round.
	read -r toff uoff <<<"${res[$r.off]}"
	for mode in "${modes[@]:1}"; do
		read -r tm um <<<"${res[$r.$mode]}"
		loss[$mode.tcp]+="$(awk -v a="$toff" -v b="$tm" 'BEGIN {print (a-b)/a*100}')"$'\n'
		loss[$mode.udp]+="$(awk -v a="$uoff" -v b="$um" 'BEGIN {print (a-b)/a*100}')"$'\n'
	done
done

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo
echo "over $ROUNDS rounds of ${SECS}s (latency sampling 1 in $SAMPLE_EVERY; stages in 1 s windows every 20 s unless full):"
printf '  off:   TCP bulk %.2f Gbit/s, UDP 64-byte %.0f pps (medians)\n' \
	"$(printf '%s' "${res[off.tcp]}" | median)" "$(printf '%s' "${res[off.udp]}" | median)"
for mode in "${modes[@]:1}"; do
	printf '  %-5s  TCP bulk %.2f Gbit/s, median paired loss %.1f %%; UDP 64-byte %.0f pps, median paired loss %.1f %%\n' \
		"$mode" "$(printf '%s' "${res[$mode.tcp]}" | median)" "$(printf '%s' "${loss[$mode.tcp]}" | median)" \
		"$(printf '%s' "${res[$mode.udp]}" | median)" "$(printf '%s' "${loss[$mode.udp]}" | median)"
done
echo "  goals: on <= 2 % (TCP) and <= 5 % (UDP); trace <= 1 point over on."
echo "  full is the price of following every stage all the time (--stack.stage-window = --stack.stage-period)."
echo "  trace export: $(curl -s "http://127.0.0.1:$SINK_PORT/stats" | tr '\n' ' ')(OTLP requests and bytes the sink received)"
echo "  load average: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine makes single runs noisy)"

# Per-program cost: one more agent-on round with bpf_stats (which itself adds
# a little per run, so it is kept out of the throughput runs above). The CPU
# share the programs took during each run is an upper bound of the loss it
# can cause on a CPU-bound path, and unlike the runs above it hardly depends
# on what else the machine is doing (programs fire for every namespace's
# packets, so other work only makes the bound looser).
scrape() { curl -sf "http://127.0.0.1:$PORT/metrics" >"$work/$1"; }
# bpf_seconds FILE: run time summed over the programs.
bpf_seconds() { awk '/^packetscope_ebpf_program_run_seconds_total\{/ {s += $2} END {printf "%.9f", s}' "$1"; }
smodes="on"
[ "$TRACE" = 1 ] && smodes="on trace"
for smode in $smodes; do
	start_agent "$smode"
	echo 1 >/proc/sys/kernel/bpf_stats_enabled
	scrape m0
	t=$(tcp_gbps)
	scrape m1
	u=$(udp_pps)
	scrape m2
	echo 0 >/proc/sys/kernel/bpf_stats_enabled
	stop_agent
	ncpu=$(nproc)
	echo
	echo "eBPF CPU time while the agent is $smode (bpf_stats; $ncpu CPUs, ${SECS}s runs):"
	awk -v a="$(bpf_seconds "$work/m0")" -v b="$(bpf_seconds "$work/m1")" -v n="$ncpu" -v s="$SECS" -v t="$t" \
		'BEGIN {printf "  TCP bulk (%.2f Gbit/s):    %.3f CPU-s = %.2f %% of the machine\n", t, b-a, (b-a)/(n*s)*100}'
	awk -v a="$(bpf_seconds "$work/m1")" -v b="$(bpf_seconds "$work/m2")" -v n="$ncpu" -v s="$SECS" -v u="$u" \
		'BEGIN {printf "  UDP 64-byte (%.0f pps): %.3f CPU-s = %.2f %% of the machine, %.0f ns per received packet\n", u, b-a, (b-a)/(n*s)*100, (b-a)*1e9/(u*s)}'
	echo
	echo "ns per event (both runs):"
	awk '
		FNR == NR && /^packetscope_ebpf_program_run_seconds_total\{/ { match($0, /program="[^"]+"/); s0[substr($0, RSTART+9, RLENGTH-10)] = $2 }
		FNR == NR && /^packetscope_ebpf_program_runs_total\{/ { match($0, /program="[^"]+"/); r0[substr($0, RSTART+9, RLENGTH-10)] = $2 }
		FNR != NR && /^packetscope_ebpf_program_run_seconds_total\{/ { match($0, /program="[^"]+"/); s1[substr($0, RSTART+9, RLENGTH-10)] = $2 }
		FNR != NR && /^packetscope_ebpf_program_runs_total\{/ { match($0, /program="[^"]+"/); r1[substr($0, RSTART+9, RLENGTH-10)] = $2 }
		END { for (p in r1) { n = r1[p] - r0[p]; if (n > 0) printf "  %-30s %12d runs %8.1f ns/run\n", p, n, (s1[p]-s0[p])*1e9/n } }
	' "$work/m0" "$work/m2" | sort
done
