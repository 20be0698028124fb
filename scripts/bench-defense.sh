#!/usr/bin/env bash
# The defense against attacks, measured three ways:
#  1. offline class matrix: every internal/attackgen class (held-out ones
#     marked) through the offline analysis path (responder.AnalyzeOffline,
#     what `packetscope analyze` runs): coverage of the attack as it goes on,
#     collateral on ordinary traffic from another window, and on the
#     established connections the node serves, counted apart;
#  2. live class matrix (BENCH_DEFENSE_LIVE=0 skips it, ~30 min per analyst;
#     BENCH_ANALYSTS=builtin,llm by default): each attack
#     class replayed at 20 kpps into an isolated victim running `packetscope
#     run`, with real Prometheus and Alertmanager: time from the first attack
#     packet to >= 99 % dropped at XDP, the share dropped while the rules
#     hold, and the legitimate client's requests served;
#  3. the end-to-end defense test (hping3 floods, the real captures, the
#     fragmented DNS amplification; both analysts);
#  4. attacks below the flood floors (#15: nmap scans, SYN-queue exhaustion,
#     slowloris, reset injection; both analysts): a table of attack ×
#     analyst × first packet → alert × first packet → dropped at XDP ×
#     the legitimate client's requests served since the attack began;
#  5. no alert on ordinary traffic: TestNoAlertOnOrdinaryTraffic for 10
#     minutes (BENCH_ORDINARY_TRAFFIC=0 skips it) with the shipped alerts.
# The live runs print where the time went for each attack: seconds from the
# first attack packet to the first scrape that saw it, the alert firing (no
# `for:` since #14: pending and firing are one), the webhook, the rule in the
# guard's maps, and >= 99 % dropped at XDP.
# Prints markdown tables for README's defense figures.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# timeline_table LOG: the timeline lines e2e/defense_test.go logs, as a table.
timeline_table() {
	echo "| attack | analyst | alert | scrape saw it | alert fired | webhook | rule pushed | 99 % dropped |"
	echo "|---|---|---|---|---|---|---|---|"
	sed -nE 's/^ *defense_test.go:[0-9]+: (.*), ([a-z]+) analyst: timeline ([A-Za-z]+): scrape saw it ([^,]+), pending [^,]+, fired ([^,]+), webhook ([^,]+), rule pushed ([^,]+), 99% dropped (.*)$/| \1 | \2 | \3 | \4 | \5 | \6 | \7 | \8 |/p' "$1"
}

echo "== offline class matrix (go test ./responder -run TestUnseenClassMatrix) =="
if ! go test -count=1 -run 'TestUnseenClassMatrix' -v ./responder/ >"$log" 2>&1; then
	grep -E -- '--- FAIL|unseen_test.go' "$log" >&2 || true
	echo "bench-defense: the offline class matrix failed" >&2
	exit 1
fi
echo "| class | alert | coverage | collateral | served connections' packets hit | rules accepted |"
echo "|---|---|---|---|---|---|"
grep -E 'unseen_test.go:[0-9]+: [a-z0-9_/]+ \(alert' "$log" | sed -E 's/^ *unseen_test.go:[0-9]+: //' |
	awk '{
		name=$1; sub(/^heldout\//, "", name); mark=($1 ~ /^heldout\//) ? " (held out)" : ""
		alert=$3; sub(/\):$/, "", alert)
		cov=$5; sub(/,$/, "", cov); col=$7; sub(/,$/, "", col); served=$9; sub(/,$/, "", served); rules=$11; sub(/,$/, "", rules)
		if ($NF == "legit") { printf "| %s (legitimate) | %s | — | — | %s | %s |\n", name, alert, served, rules; next }
		printf "| %s%s | %s | %.2f %% | %.2f %% | %s | %s |\n", name, mark, alert, 100*cov, 100*col, served, rules
	}'

if [ "${BENCH_DEFENSE_LIVE:-1}" != "0" ]; then
	echo
	echo "== live class matrix (go test ./e2e -bench BenchmarkDefenseClasses -benchtime=1x) =="
	if ! CI=true go test -count=1 -run '^$' -bench 'BenchmarkDefenseClasses' -benchtime=1x -timeout 80m -v ./e2e/ >"$log" 2>&1; then
		grep -E -- '--- FAIL|defense_test.go' "$log" >&2 || true
		# A failure's message runs over several lines (probes, decisions):
		# keep the whole log, the lines above are only its first.
		keep=${TMPDIR:-/tmp}/bench-defense-live.$(date +%s).log
		cp "$log" "$keep"
		echo "bench-defense: a class was not mitigated live (above; whole log: $keep)" >&2
	fi
	echo "| class | analyst | first packet → 99 % dropped | dropped while rules hold | legitimate requests served |"
	echo "|---|---|---|---|---|"
	sed -E 's/^ *defense_test.go:[0-9]+: //' "$log" | awk '
		/ analyst: first attack packet/ { cls=$1; sub(/,$/, "", cls); key=cls " | " $2; t[key]=$NF; order[++n]=key }
		/ analyst: .* of the attack dropped/ { cls=$1; sub(/,$/, "", cls); d[cls " | " $2]=$4 }
		/^legitimate client:/ { if (n) { s[order[n]]=$3 " of " ($3+$5) } }
		END { for (i=1; i<=n; i++) { c=order[i]; printf "| %s | %s | %s | %s |\n", c, t[c], d[c], s[c] } }'
	echo
	echo "Where the time went (seconds after the first attack packet):"
	echo
	timeline_table "$log"
fi

echo
echo "== end-to-end defense loop (go test ./e2e -run TestDefenseLoop) =="
if ! CI=true go test -count=1 -run 'TestDefenseLoop' -v ./e2e/ >"$log" 2>&1; then
	grep -E -- '--- FAIL|defense_test.go' "$log" >&2 || true
	echo "bench-defense: the defense loop test failed" >&2
	exit 1
fi
grep -E 'dropped at XDP|legitimate client:|decision .*outcome' "$log" | sed 's/^ *defense_test.go:[0-9]*: /  /'
echo
echo "Where the time went (seconds after the first attack packet):"
echo
timeline_table "$log"

echo
echo "== attacks below the flood floors (go test ./e2e -run 'TestPortScanDefense|TestSYNQueueExhaustionDefense|TestSlowlorisDefense|TestResetInjectionDefense') =="
if ! CI=true go test -count=1 -run 'TestPortScanDefense|TestSYNQueueExhaustionDefense|TestSlowlorisDefense|TestResetInjectionDefense' -timeout 25m -v ./e2e/ >"$log" 2>&1; then
	grep -E -- '--- FAIL|(scan|slow|reset)_test.go' "$log" >&2 || true
	echo "bench-defense: a probe, slow-connection or reset-injection attack was not stopped (above)" >&2
	exit 1
fi
grep -E '(scan|slow|reset)_test.go:[0-9]+: .*(dropped at XDP|→ rule|served again|legitimate client|fired)' "$log" | sed -E 's/^ *(scan|slow|reset)_test.go:[0-9]*: /  /'
echo
echo "| attack | analyst | alert | first packet → alert fired | first packet → dropped at XDP | legitimate requests served |"
echo "|---|---|---|---|---|---|"
# logFigures is a test helper: the line names its caller's file.
sed -nE 's/^ *[a-z_]+_test.go:[0-9]+: figures: (.*)$/| \1 |/p' "$log"

if [ "${BENCH_ORDINARY_TRAFFIC:-1}" != "0" ]; then
	echo
	echo "== no alert on 10 minutes of ordinary traffic (PACKETSCOPE_ORDINARY_TRAFFIC=10m go test ./e2e -run TestNoAlertOnOrdinaryTraffic) =="
	if ! CI=true PACKETSCOPE_ORDINARY_TRAFFIC=10m go test -count=1 -run 'TestNoAlertOnOrdinaryTraffic' -timeout 20m -v ./e2e/ >"$log" 2>&1; then
		grep -E -- '--- FAIL|ordinary_test.go' "$log" >&2 || true
		echo "bench-defense: ordinary traffic raised an alert or got a rule (above)" >&2
		exit 1
	fi
	grep -E 'ordinary_test.go' "$log" | sed 's/^ *ordinary_test.go:[0-9]*: /  /'
fi
