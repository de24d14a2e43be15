#!/usr/bin/env bash
# The demo: a guarded PostgreSQL-like StatefulSet on the local stack gets an
# upgrade through `kubectl apply`, and snapgate snapshots every replica first.
# Run it with `make demo` (which starts the stack and snapgate).
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
state=${SNAPGATE_CLUSTER_DIR:-$repo/.cluster}
export KUBECONFIG=$state/kubeconfig
kubectl=$state/bin/kubectl
ns=snapgate-demo

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*" | sed "s|$kubectl|kubectl|g"; "$@"; }

manifest() { # manifest IMAGE
  cat <<YAML
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: postgres
  namespace: $ns
  labels:
    snapgate.io/guard: enabled
spec:
  serviceName: postgres
  replicas: 3
  podManagementPolicy: Parallel
  selector:
    matchLabels: {app: postgres}
  template:
    metadata:
      labels: {app: postgres}
    spec:
      containers:
      - name: postgres
        image: $1
  volumeClaimTemplates:
  - metadata:
      name: data
    spec:
      accessModes: [ReadWriteOnce]
      resources:
        requests:
          storage: 1Gi
YAML
}

step "A fresh namespace"
"$kubectl" delete namespace "$ns" --ignore-not-found --wait=true >/dev/null
run "$kubectl" create namespace "$ns"

step "A guarded StatefulSet (label snapgate.io/guard=enabled), 3 replicas on postgres:16"
manifest postgres:16 | run "$kubectl" apply -f -
run "$kubectl" -n "$ns" rollout status statefulset/postgres --timeout=120s

step "Each replica writes data into its own volume"
for i in 0 1 2; do
  "$kubectl" -n "$ns" exec "postgres-$i" -- sh -c "echo 'replica $i: 10000 rows' > table.txt"
  run "$kubectl" -n "$ns" exec "postgres-$i" -- cat table.txt
done

step "The upgrade: kubectl apply with postgres:17 (snapgate snapshots every replica before admitting it)"
manifest postgres:17 | run "$kubectl" apply -f -

step "The snapshot set, all readyToUse before the new template was stored"
run "$kubectl" -n "$ns" get volumesnapshots -l snapgate.io/statefulset=postgres \
  -o custom-columns=NAME:.metadata.name,PVC:.spec.source.persistentVolumeClaimName,SET:.metadata.labels.snapgate\\.io/set,READY:.status.readyToUse

step "The record on the StatefulSet"
run "$kubectl" -n "$ns" get statefulset postgres -o jsonpath='last-set: {.metadata.annotations.snapgate\.io/last-set}{"\n"}last-reason: {.metadata.annotations.snapgate\.io/last-reason}{"\n"}last-snapshots: {.metadata.annotations.snapgate\.io/last-snapshots}{"\n"}image: {.spec.template.spec.containers[0].image}{"\n"}'

step "The Event"
run "$kubectl" -n "$ns" get events --field-selector reason=SnapshotSetTaken -o custom-columns=REASON:.reason,MESSAGE:.message

set=$("$kubectl" -n "$ns" get statefulset postgres -o jsonpath='{.metadata.annotations.snapgate\.io/last-set}')
printf '\nDone. The set %s holds every replica as it was before the upgrade.\n' "$set"
printf 'export KUBECONFIG=%s   # to look around; make run-down / make cluster-down when finished\n' "$KUBECONFIG"
