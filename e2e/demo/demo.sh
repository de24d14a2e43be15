#!/usr/bin/env bash
# The demo: a guarded PostgreSQL StatefulSet on the local stack (one real
# PostgreSQL server per pod, on that pod's volume) gets an upgrade through
# `kubectl apply`; snapgate runs CHECKPOINT in every replica and snapshots all of
# them before the upgrade is admitted; after a bad change, `snapgate rollback`
# brings back data, pod template and replicas. Run it with `make demo` (which
# starts the stack and snapgate).
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
run() { printf '$ %s\n' "$*" | sed "s|$kubectl|kubectl|g; s|$state/bin/snapgate|kubectl snapgate|g"; "$@"; }
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
# And the volumes an earlier run's rollback kept (reclaim policy Retain).
for pv in $("$kubectl" get pv -o jsonpath="{range .items[*]}{.metadata.name} {.metadata.annotations.snapgate\.io/replaced-claim}{'\n'}{end}" | awk -v ns="$ns/" 'index($2, ns) == 1 {print $1}'); do
  "$kubectl" delete pv "$pv" --wait=false >/dev/null
done
run "$kubectl" create namespace "$ns"

step "A guarded PostgreSQL StatefulSet (label snapgate.io/guard=enabled, preset postgres), 3 replicas"
manifest postgres:16 | run "$kubectl" apply -f -
run "$kubectl" -n "$ns" rollout status statefulset/postgres --timeout=120s
for i in 0 1 2; do start_postgres "postgres-$i"; done

step "10,000 orders and 2 customers in postgres-0"
run "$kubectl" -n "$ns" exec postgres-0 -- psql -XAtq -c "CREATE TABLE orders (id int PRIMARY KEY, note text); INSERT INTO orders SELECT g, 'order ' || g FROM generate_series(1, 10000) g; CREATE TABLE customers (name text); INSERT INTO customers VALUES ('ada'), ('grace')"
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

step "After the upgrade, mistakes: 5,000 more orders, then the customers table dropped"
run "$kubectl" -n "$ns" exec postgres-0 -- psql -XAtq -c "INSERT INTO orders SELECT g, 'order ' || g FROM generate_series(10001, 15000) g; DROP TABLE customers"
run "$kubectl" -n "$ns" exec postgres-0 -- psql -XAt -c "SELECT count(*) FROM orders"

step "The sets snapgate holds for postgres"
run "$state/bin/snapgate" list sts/postgres -n "$ns"

step "One command rolls data, pod template and replicas back to the set taken before the upgrade"
# A rollback scales the StatefulSet to 0: each server ends with its pod.
for i in 0 1 2; do "$kubectl" -n "$ns" exec "postgres-$i" -- "$pgbin/pg_ctl" -D pgdata -m fast -w stop >/dev/null; done
run "$state/bin/snapgate" rollback sts/postgres -n "$ns" --wait
run "$kubectl" -n "$ns" rollout status statefulset/postgres --timeout=120s
for i in 0 1 2; do start_postgres "postgres-$i"; done

step "PostgreSQL on the restored volumes: 10,000 orders and the customers table, on postgres:16"
run "$kubectl" -n "$ns" exec postgres-0 -- psql -XAt -c "SELECT count(*) FROM orders"
run "$kubectl" -n "$ns" exec postgres-0 -- psql -XAt -c "SELECT count(*) FROM customers"
run "$kubectl" -n "$ns" get statefulset postgres -o jsonpath='image: {.spec.template.spec.containers[0].image}{"\n"}'

step "Nothing was lost: the replaced volumes are kept (Retain), and a safety set holds them too"
run "$kubectl" get pv -o custom-columns=PV:.metadata.name,RECLAIM:.spec.persistentVolumeReclaimPolicy,STATUS:.status.phase,WAS:.metadata.annotations.snapgate\\.io/replaced-claim --sort-by=.metadata.name | grep -E "PV|$ns/"
run "$kubectl" -n "$ns" get events --field-selector reason=RolledBack -o custom-columns=REASON:.reason,MESSAGE:.message

printf '\nDone: the upgrade was snapshotted before it was admitted, and one command rolled the data and the pod template back.\n'
printf 'export KUBECONFIG=%s   # to look around; make cluster-down stops it all\n' "$KUBECONFIG"
