#!/usr/bin/env bash
# The demo: a guarded PostgreSQL StatefulSet on the official postgres:15 image
# (the stack's look-alike of it), three replicas running as real containers on
# the stack's real node, gets an upgrade to postgres:17 through `kubectl apply`;
# snapgate runs CHECKPOINT in every replica and snapshots all of them before the
# upgrade is admitted. PostgreSQL 17 refuses a data directory of version 15, so
# the new pods crash, as they would on any cluster; one command rolls data, pod
# template and replicas back, and PostgreSQL 15 counts its 10,000 rows again.
# Run it with `make demo` (which starts the stack and snapgate).
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
state=${SNAPGATE_CLUSTER_DIR:-$repo/.cluster}
export KUBECONFIG=$state/kubeconfig
kubectl=$state/bin/kubectl
ns=snapgate-demo

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*" | sed "s|$kubectl|kubectl|g; s|$state/bin/snapgate|kubectl snapgate|g"; "$@"; }
psql_in() { "$kubectl" -n "$ns" exec "$1" -- psql -U postgres -XAtq -v ON_ERROR_STOP=1 -c "$2"; }
wait_postgres() { # wait_postgres POD: until its server answers, as a user retrying psql
  local i
  for i in $(seq 150); do
    psql_in "$1" "SELECT 1" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "PostgreSQL in $1 did not answer within 30s" >&2
  return 1
}

manifest() { # manifest IMAGE
  cat <<YAML
apiVersion: v1
kind: Secret
metadata:
  name: postgres-secret
  namespace: $ns
stringData:
  password: demo-password
---
apiVersion: v1
kind: Service
metadata:
  name: postgres
  namespace: $ns
spec:
  clusterIP: None
  selector: {app: postgres}
  ports: [{port: 5432}]
---
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
      containers:
      - name: postgres
        image: $1
        ports: [{containerPort: 5432}]
        env:
        - name: POSTGRES_PASSWORD
          valueFrom:
            secretKeyRef: {name: postgres-secret, key: password}
        volumeMounts:
        - {name: data, mountPath: /var/lib/postgresql/data}
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
# And the volumes an earlier run's rollback kept (reclaim policy Retain).
for pv in $("$kubectl" get pv -o jsonpath="{range .items[*]}{.metadata.name} {.metadata.annotations.snapgate\.io/replaced-claim}{'\n'}{end}" | awk -v ns="$ns/" 'index($2, ns) == 1 {print $1}'); do
  "$kubectl" delete pv "$pv" --wait=false >/dev/null
done
run "$kubectl" create namespace "$ns"

step "A guarded PostgreSQL StatefulSet on postgres:15 (label snapgate.io/guard=enabled, preset postgres), 3 replicas"
manifest postgres:15 | run "$kubectl" apply -f -
run "$kubectl" -n "$ns" rollout status statefulset/postgres --timeout=120s
for i in 0 1 2; do wait_postgres "postgres-$i"; done
run "$kubectl" -n "$ns" get pods -o wide

step "10,000 orders and 2 customers in postgres-0"
run "$kubectl" -n "$ns" exec postgres-0 -- psql -U postgres -XAtq -c "CREATE TABLE orders (id int PRIMARY KEY, note text); INSERT INTO orders SELECT g, 'order ' || g FROM generate_series(1, 10000) g; CREATE TABLE customers (name text); INSERT INTO customers VALUES ('ada'), ('grace')"
run "$kubectl" -n "$ns" exec postgres-0 -- psql -U postgres -XAt -c "SELECT count(*) FROM orders"

step "The upgrade: kubectl apply with postgres:17 (snapgate checkpoints and snapshots every replica first)"
# The old server's log, followed until the upgrade stops it: it shows the CHECKPOINT.
"$kubectl" -n "$ns" logs -f postgres-0 -c postgres >"$state/demo-postgres-0.log" 2>&1 &
logs=$!
sleep 0.5
manifest postgres:17 | run "$kubectl" apply -f -
wait "$logs" || true

step "PostgreSQL's own log: the CHECKPOINT snapgate requested, before the server was stopped for the upgrade"
# (From the server the entrypoint started last, after its temporary one.)
printf '$ kubectl -n %s logs -f postgres-0 | grep -E "checkpoint starting|fast shutdown"\n' "$ns"
sed -n '/PostgreSQL init process complete/,$p' "$state/demo-postgres-0.log" |
  grep -E "checkpoint starting: immediate force wait|received fast shutdown request"

step "The snapshot set, all readyToUse before the new template was stored"
run "$kubectl" -n "$ns" get volumesnapshots -l snapgate.io/statefulset=postgres \
  -o custom-columns=NAME:.metadata.name,PVC:.spec.source.persistentVolumeClaimName,SET:.metadata.labels.snapgate\\.io/set,READY:.status.readyToUse

step "The record on the StatefulSet, and the Event"
run "$kubectl" -n "$ns" get statefulset postgres -o jsonpath='last-set: {.metadata.annotations.snapgate\.io/last-set}{"\n"}last-reason: {.metadata.annotations.snapgate\.io/last-reason}{"\n"}last-snapshots: {.metadata.annotations.snapgate\.io/last-snapshots}{"\n"}image: {.spec.template.spec.containers[0].image}{"\n"}'
run "$kubectl" -n "$ns" get events --field-selector reason=SnapshotSetTaken -o custom-columns=REASON:.reason,MESSAGE:.message

step "The upgrade fails, as it would anywhere: PostgreSQL 17 refuses a version 15 data directory"
for i in $(seq 300); do
  "$kubectl" -n "$ns" logs postgres-0 -c postgres 2>/dev/null | grep -q "database files are incompatible" && break
  "$kubectl" -n "$ns" logs postgres-0 -c postgres --previous 2>/dev/null | grep -q "database files are incompatible" && break
  sleep 0.2
done
run "$kubectl" -n "$ns" get pods
{ "$kubectl" -n "$ns" logs postgres-0 -c postgres 2>/dev/null; "$kubectl" -n "$ns" logs postgres-0 -c postgres --previous 2>/dev/null; } |
  grep -m2 -E "FATAL|DETAIL" || true

step "The sets snapgate holds for postgres"
run "$state/bin/snapgate" list sts/postgres -n "$ns"

step "One command rolls data, pod template and replicas back to the set taken before the upgrade"
run "$state/bin/snapgate" rollback sts/postgres -n "$ns" --wait
run "$kubectl" -n "$ns" rollout status statefulset/postgres --timeout=120s
for i in 0 1 2; do wait_postgres "postgres-$i"; done

step "PostgreSQL 15 on the restored volumes: 10,000 orders and the customers table"
run "$kubectl" -n "$ns" exec postgres-0 -- psql -U postgres -XAt -c "SELECT version()"
run "$kubectl" -n "$ns" exec postgres-0 -- psql -U postgres -XAt -c "SELECT count(*) FROM orders"
run "$kubectl" -n "$ns" exec postgres-0 -- psql -U postgres -XAt -c "SELECT count(*) FROM customers"
run "$kubectl" -n "$ns" get statefulset postgres -o jsonpath='image: {.spec.template.spec.containers[0].image}{"\n"}'

step "Nothing was lost: the replaced volumes are kept (Retain), and a safety set holds them too"
run "$kubectl" get pv -o custom-columns=PV:.metadata.name,RECLAIM:.spec.persistentVolumeReclaimPolicy,STATUS:.status.phase,WAS:.metadata.annotations.snapgate\\.io/replaced-claim --sort-by=.metadata.name | grep -E "PV|$ns/"
run "$kubectl" -n "$ns" get events --field-selector reason=RolledBack -o custom-columns=REASON:.reason,MESSAGE:.message

printf '\nDone: the upgrade was checkpointed and snapshotted before it was admitted, and one command rolled the data and the pod template back.\n'
printf 'export KUBECONFIG=%s   # to look around; make cluster-down stops it all\n' "$KUBECONFIG"
