#!/usr/bin/env bash
# Runs the single-host PacketScope stack with the shipped configuration, in the
# foreground, until Ctrl-C: `packetscope run` (agent and responder, :9436),
# Prometheus (127.0.0.1:9090) with alerts/packetscope.rules.yml, and
# Alertmanager (127.0.0.1:9093) posting flood alerts to the responder. This is
# what `make run` starts.
#
#   deploy/run-stack.sh [extra `packetscope run` flags, e.g. --interfaces=eth0]
#
# Environment:
#   PACKETSCOPE   the binary (default: bin/packetscope in the repository)
#   STATE_DIR     tokens, audit trail, TSDB, copies of the configs
#                 (default: /var/lib/packetscope/stack)
#   PROMETHEUS    Prometheus binary (default: prometheus, Debian's package)
#   ALERTMANAGER  Alertmanager binary (default: prometheus-alertmanager, Debian's
#                 package, or alertmanager)
#
# Stopping leaves the XDP guard and its rules pinned, in force until their
# TTL; `packetscope cleanup` removes them.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
packetscope=${PACKETSCOPE:-$repo/bin/packetscope}
state=${STATE_DIR:-/var/lib/packetscope/stack}
prometheus=${PROMETHEUS:-prometheus}
alertmanager=${ALERTMANAGER:-$(command -v prometheus-alertmanager || command -v alertmanager || echo alertmanager)}

die() { echo "run-stack: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root: the agent loads eBPF programs"
[ -x "$packetscope" ] || die "no packetscope binary at $packetscope: run 'make build' or set PACKETSCOPE"
command -v "$prometheus" >/dev/null || die "$prometheus not found: apt-get install -y prometheus, or set PROMETHEUS"
command -v "$alertmanager" >/dev/null || die "$alertmanager not found: apt-get install -y prometheus-alertmanager, or set ALERTMANAGER"

# The configs resolve their paths relative to themselves (rule_files,
# credentials_file): copy deploy/ and alerts/ side by side into the state
# directory and keep the token next to alertmanager.yml.
mkdir -p "$state"
chmod 0700 "$state"
rm -rf "$state/deploy" "$state/alerts"
mkdir -p "$state/deploy"
cp "$repo/deploy/prometheus.yml" "$repo/deploy/alertmanager.yml" "$state/deploy/"
cp -r "$repo/alerts" "$state/alerts"
for token in api.token webhook.token; do
	[ -s "$state/$token" ] || (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$state/$token")
done
cp "$state/webhook.token" "$state/deploy/webhook.token"

pids=()
stop() {
	trap - INT TERM EXIT
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap stop EXIT
trap 'exit 0' INT TERM

"$packetscope" run \
	--api.token-file="$state/api.token" \
	--webhook.token-file="$state/webhook.token" \
	--responder.audit-file="$state/decisions.jsonl" \
	"$@" >"$state/packetscope.log" 2>&1 &
pids+=($!)
"$prometheus" --config.file="$state/deploy/prometheus.yml" --enable-feature=exemplar-storage \
	--web.listen-address=127.0.0.1:9090 --storage.tsdb.path="$state/prometheus" \
	>"$state/prometheus.log" 2>&1 &
pids+=($!)
"$alertmanager" --config.file="$state/deploy/alertmanager.yml" --web.listen-address=127.0.0.1:9093 \
	--cluster.listen-address= --storage.path="$state/alertmanager" \
	>"$state/alertmanager.log" 2>&1 &
pids+=($!)

# Ready when each answers its readiness endpoint; say which one did not.
ready() { curl -fs -o /dev/null --max-time 1 "$1"; }
for name_url in "packetscope=http://127.0.0.1:9436/readyz" \
	"prometheus=http://127.0.0.1:9090/-/ready" "alertmanager=http://127.0.0.1:9093/-/ready"; do
	name=${name_url%%=*} url=${name_url#*=}
	for _ in $(seq 120); do
		ready "$url" && continue 2
		for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null || die "a process exited; see $state/*.log: $(tail -n 3 "$state/$name.log" 2>/dev/null)"; done
		sleep 0.5
	done
	die "$name not ready at $url after 60 s; see $state/$name.log"
done

cat <<EOF
PacketScope stack is up (state and logs in $state):
  agent metrics      http://127.0.0.1:9436/metrics
  agent rules        http://127.0.0.1:9436/api/v1/rules      (mutations: bearer token in $state/api.token)
  traffic window     http://127.0.0.1:9436/api/v1/traffic?window=60s   (bearer token in $state/api.token)
  responder          http://127.0.0.1:9436/api/v1/decisions  (same token; audit trail $state/decisions.jsonl)
  Prometheus         http://127.0.0.1:9090/alerts            (agent scraped and flood alerts evaluated every 1s)
  Alertmanager       http://127.0.0.1:9093                   (flood alerts -> responder, group_wait 0s)
  Grafana            dashboards/*.json with dashboards/provisioning/
  rules CLI          $packetscope rules list
Ctrl-C stops them; rules already installed stay in force until their TTL (packetscope cleanup removes them).
EOF
wait -n "${pids[@]}" || true
die "a process exited; see $state/*.log"
