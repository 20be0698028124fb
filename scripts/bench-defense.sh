#!/usr/bin/env bash
# Time from the first attack packet to >= 99 % of the attack dropped at XDP, for
# each attack and analyst, with the shipped Prometheus/Alertmanager configs
# (deploy/: scrape and evaluation every 2 s, Alertmanager group_wait 0 s, alert
# for: 4 s). Runs the end-to-end defense test and prints its measurements.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! CI=true go test -count=1 -run 'TestDefenseLoop' -v ./e2e/ >"$log" 2>&1; then
	grep -E -- '--- FAIL|defense_test.go' "$log" >&2 || true
	echo "bench-defense: the defense loop test failed" >&2
	exit 1
fi
echo "== defense loop: first attack packet → 99 % dropped at XDP =="
grep -E 'dropped at XDP in|legitimate client:|decision .*outcome' "$log" | sed 's/^ *defense_test.go:[0-9]*: /  /'
