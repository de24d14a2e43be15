#!/usr/bin/env bash
# The demo: a guarded PostgreSQL StatefulSet on the local stack (one real
# PostgreSQL server per pod, on that pod's volume) gets an upgrade through
# `kubectl apply`; snapgate runs CHECKPOINT in every replica and snapshots all of
# them before the upgrade is admitted; a volume restored from the snapshot holds
# the data. Run it with `make demo` (which starts the stack and snapgate).
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
state=${SNAPGATE_CLUSTER_DIR:-$repo/.cluster}
export KUBECONFIG=$state/kubeconfig
kubectl=$state/bin/kubectl
ns=snapgate-demo
pgbin=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")
uid=$(id -u postgres)
gid=$(id -g postgres)

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*" | sed "s|$kubectl|kubectl|g"; "$@"; }
psql_in() { "$kubectl" -n "$ns" exec "$1" -- psql -XAtq -v ON_ERROR_STOP=1 -c "$2"; }

# A database pod: psql in it reaches its own server (PGHOST is its volume).
podspec() { # podspec IMAGE INDENT
  sed "s/^/$2/" <<YAML
securityContext: {runAsUser: $uid, runAsGroup: $gid}
containers:
- name: postgres
  image: $1
  env:
  - {name: PGHOST, value: \$(VOLUME_DIR)}
  - {name: PGUSER, value: postgres}
  - {name: PGDATABASE, value: postgres}
YAML
}

manifest() { # manifest IMAGE
  cat <<YAML
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: postgres
  namespace: $ns
  labels:
    snapgate.io/guard: enabled
  annotations:
    snapgate.io/hook-preset: postgres
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
$(podspec "$1" "      ")
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

# start_postgres POD: a real PostgreSQL server on the pod's volume. A volume
# restored from a snapshot carries the lock files of the server it was copied
# from, meaningless on this "host"; they go, as on another node.
start_postgres() {
  "$kubectl" -n "$ns" exec "$1" -- sh -c "set -e
[ -f pgdata/PG_VERSION ] || $pgbin/initdb -D \"\$VOLUME_DIR/pgdata\" -U postgres -A trust --no-sync >init.log
rm -f pgdata/postmaster.pid .s.PGSQL.*.lock
$pgbin/pg_ctl -D \"\$VOLUME_DIR/pgdata\" -w -l pg.log -o \"-c listen_addresses='' -c unix_socket_directories=\$VOLUME_DIR\" start >/dev/null"
}

step "A fresh namespace"
# A previous run's servers go first: their volumes go with the namespace.
for pod in $("$kubectl" -n "$ns" get pods -o name 2>/dev/null); do
  "$kubectl" -n "$ns" exec "${pod#pod/}" -- "$pgbin/pg_ctl" -D pgdata -m fast stop >/dev/null 2>&1 || true
done
"$kubectl" delete namespace "$ns" --ignore-not-found --wait=true >/dev/null
run "$kubectl" create namespace "$ns"

step "A guarded PostgreSQL StatefulSet (label snapgate.io/guard=enabled, preset postgres), 3 replicas"
manifest postgres:16 | run "$kubectl" apply -f -
run "$kubectl" -n "$ns" rollout status statefulset/postgres --timeout=120s
for i in 0 1 2; do start_postgres "postgres-$i"; done

step "10,000 orders in postgres-0"
run "$kubectl" -n "$ns" exec postgres-0 -- psql -XAtq -c "CREATE TABLE orders (id int PRIMARY KEY, note text); INSERT INTO orders SELECT g, 'order ' || g FROM generate_series(1, 10000) g"
run "$kubectl" -n "$ns" exec postgres-0 -- psql -XAt -c "SELECT count(*) FROM orders"

step "The upgrade: kubectl apply with postgres:17 (snapgate checkpoints and snapshots every replica first)"
manifest postgres:17 | run "$kubectl" apply -f -
run "$kubectl" -n "$ns" rollout status statefulset/postgres --timeout=120s

step "The snapshot set, all readyToUse before the new template was stored"
run "$kubectl" -n "$ns" get volumesnapshots -l snapgate.io/statefulset=postgres \
  -o custom-columns=NAME:.metadata.name,PVC:.spec.source.persistentVolumeClaimName,SET:.metadata.labels.snapgate\\.io/set,READY:.status.readyToUse

step "PostgreSQL's own log: the CHECKPOINT snapgate requested"
run "$kubectl" -n "$ns" exec postgres-0 -- grep -m1 "checkpoint starting: immediate force wait" pg.log

step "The record on the StatefulSet, and the Event"
run "$kubectl" -n "$ns" get statefulset postgres -o jsonpath='last-set: {.metadata.annotations.snapgate\.io/last-set}{"\n"}last-reason: {.metadata.annotations.snapgate\.io/last-reason}{"\n"}last-snapshots: {.metadata.annotations.snapgate\.io/last-snapshots}{"\n"}image: {.spec.template.spec.containers[0].image}{"\n"}'
run "$kubectl" -n "$ns" get events --field-selector reason=SnapshotSetTaken -o custom-columns=REASON:.reason,MESSAGE:.message

step "After the upgrade, a mistake: the orders table is dropped"
run "$kubectl" -n "$ns" exec postgres-0 -- psql -XAtq -c "DROP TABLE orders"

set=$("$kubectl" -n "$ns" get statefulset postgres -o jsonpath='{.metadata.annotations.snapgate\.io/last-set}')
snap=$("$kubectl" -n "$ns" get volumesnapshots -l "snapgate.io/set=$set,snapgate.io/ordinal=0" -o jsonpath='{.items[0].metadata.name}')
step "The data is in the snapshot: a volume restored from $snap, and PostgreSQL on it"
cat <<YAML | run "$kubectl" -n "$ns" apply -f -
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: restored
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
  dataSource: {apiGroup: snapshot.storage.k8s.io, kind: VolumeSnapshot, name: $snap}
---
apiVersion: v1
kind: Pod
metadata:
  name: restored
spec:
$(podspec postgres:16 "  ")
  volumes: [{name: data, persistentVolumeClaim: {claimName: restored}}]
YAML
run "$kubectl" -n "$ns" wait --for=condition=Ready pod/restored --timeout=60s
start_postgres restored
run "$kubectl" -n "$ns" exec restored -- psql -XAt -c "SELECT count(*) FROM orders"

printf '\nDone. Snapshot set %s holds every replica as it was just before the upgrade.\n' "$set"
printf 'Rolling the StatefulSet itself back (snapgate.io/rollback-to) comes with the rollback controller.\n'
printf 'export KUBECONFIG=%s   # to look around; make cluster-down stops it all\n' "$KUBECONFIG"
