#!/usr/bin/env bash
# snapgate against the local stack: built from this checkout, serving on
# 127.0.0.1 with a self-signed certificate, its webhook configurations registered
# by URL. 'up' returns once the API server really routes guarded changes to it.
#
#   snapgate.sh up     start it, or find it running (idempotent)
#   snapgate.sh down   stop it; it removes its webhook configurations on exit
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
state=${SNAPGATE_CLUSTER_DIR:-$repo/.cluster}
port=${SNAPGATE_WEBHOOK_PORT:-19443}
pidfile=$state/pids/snapgate.pid
# How long one request may wait for its set (the e2e suite uses a short one).
budget=${SNAPGATE_BUDGET:-25s}
# How long a set may be not ready before it is told overdue (the e2e suite
# uses a short one, to see it told).
ready_deadline=${SNAPGATE_READY_DEADLINE:-4h}
k=("$state/bin/kubectl" --kubeconfig "$state/kubeconfig")

log() { printf '%s snapgate: %s\n' "$(date +%T)" "$*" >&2; }
die() { log "$*"; exit 1; }

alive() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

# The probe: a dry-run template change of a guarded StatefulSet without volumes
# comes back with snapgate's warning only when the API server calls snapgate.
probe() {
  "${k[@]}" -n snapgate-probe patch statefulset probe --dry-run=server --type=merge \
    -p "{\"spec\":{\"template\":{\"metadata\":{\"annotations\":{\"probe\":\"$RANDOM\"}}}}}" 2>&1 | grep -q 'snapgate: statefulset probe has no volume claims'
}

up() {
  "$repo/e2e/stack/cluster.sh" status || die "the local cluster is not up: run 'make cluster' first"
  if alive && [ "$(cat "$state/snapgate.budget" 2>/dev/null)" = "$budget" ] &&
    [ "$(cat "$state/snapgate.ready-deadline" 2>/dev/null)" = "$ready_deadline" ] && probe; then
    log "already running"
    return
  fi
  down
  (cd "$repo" && go build -o "$state/bin/snapgate" ./cmd/snapgate)
  # Appended, not truncated: a test or bench that stops and starts snapgate
  # (make bench's pass-through rows do) keeps what the earlier run logged.
  echo "---- snapgate started $(date -u +%FT%TZ) (budget $budget, ready deadline $ready_deadline)" >>"$state/logs/snapgate.log"
  "${k[@]}" create namespace snapgate-system --dry-run=client -o yaml | "${k[@]}" apply -f - >/dev/null
  setsid "$state/bin/snapgate" serve --kubeconfig "$state/kubeconfig" --namespace snapgate-system \
    --webhook-host 127.0.0.1 --webhook-port "$port" --cert-dir "$state/snapgate/certs" --self-signed \
    --register-url "https://127.0.0.1:$port" --metrics-bind-address 127.0.0.1:$((port + 1)) \
    --health-probe-bind-address 127.0.0.1:$((port + 2)) --pprof-bind-address 127.0.0.1:$((port + 3)) \
    --leader-elect=false --budget "$budget" \
    --ready-deadline "$ready_deadline" \
    >>"$state/logs/snapgate.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  echo "$budget" >"$state/snapgate.budget"
  echo "$ready_deadline" >"$state/snapgate.ready-deadline"

  "${k[@]}" apply -f - >/dev/null <<'YAML'
apiVersion: v1
kind: Namespace
metadata:
  name: snapgate-probe
  labels:
    snapgate.io/guard: enabled
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: probe
  namespace: snapgate-probe
spec:
  replicas: 0
  serviceName: probe
  selector:
    matchLabels: {app: probe}
  template:
    metadata:
      labels: {app: probe}
    spec:
      containers:
      - name: probe
        image: probe
YAML
  local i
  for i in $(seq 150); do
    alive || die "snapgate exited: $(tail -5 "$state/logs/snapgate.log")"
    probe && { log "ready on https://127.0.0.1:$port (log: $state/logs/snapgate.log)"; return; }
    sleep 0.2
  done
  die "snapgate did not answer through the API server within 30s: $(tail -5 "$state/logs/snapgate.log")"
}

down() {
  alive || { rm -f "$pidfile"; return 0; }
  local pid i
  pid=$(cat "$pidfile")
  kill "$pid"
  for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
