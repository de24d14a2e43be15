#!/usr/bin/env bash
# The local stack: a real Kubernetes control plane (kwokctl, binary runtime), a
# real node (kubelet, containerd, runc: node.sh) where ordinary pods run as
# containers of the images under images/, kwok nodes (tainted; for tests that
# need many cheap pods, whose containers are simulated), the CSI snapshot pipeline and the
# hostpath driver. The control plane listens on 127.0.0.1; the real node lives in
# a network namespace of the stack's own (node.sh says why). State lives under
# $SNAPGATE_CLUSTER_DIR (default: .cluster at the repository root).
#
#   cluster.sh up       start it, or find it running (idempotent)
#   cluster.sh down     stop every process it started and remove its state
#   cluster.sh status   exit 0 if it is up and healthy
#   cluster.sh restart-apiserver
#                       SIGKILL the API server and start it again (tests of faults)
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
stack=$repo/e2e/stack
state=${SNAPGATE_CLUSTER_DIR:-$repo/.cluster}
name=snapgate
driver=hostpath.csi.snapgate.io
export KWOK_WORKDIR=$state/kwok

log() { printf '%s cluster: %s\n' "$(date +%T)" "$*" >&2; }
die() { log "$*"; exit 1; }

# The processes the stack starts itself; kwokctl owns the control plane's.
sidecars=(hostpath-csi snapshot-controller csi-snapshotter csi-provisioner)

alive() { # alive NAME: its pid file names a running process of that binary
  local pidfile=$state/pids/$1.pid pid
  [ -f "$pidfile" ] || return 1
  pid=$(cat "$pidfile")
  [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$1"
}

healthy() {
  [ -f "$state/kubeconfig" ] && [ -x "$state/bin/kubectl" ] || return 1
  local s
  for s in "${sidecars[@]}"; do alive "$s" || return 1; done
  "$stack/node.sh" status || return 1
  "$state/bin/kubectl" --kubeconfig "$state/kubeconfig" --request-timeout=5s get --raw /readyz >/dev/null 2>&1
}

stop_sidecars() {
  local s pid i
  for s in "${sidecars[@]}"; do
    alive "$s" || { rm -f "$state/pids/$s.pid"; continue; }
    pid=$(cat "$state/pids/$s.pid")
    kill "$pid" 2>/dev/null || true
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$state/pids/$s.pid"
  done
}

down() {
  # snapgate first, while the API server is there to remove its configurations.
  "$stack/snapgate.sh" down
  # The real node next: its pods' volumes are the driver's directories.
  "$stack/node.sh" down
  stop_sidecars
  # Filesystems that the fsfreeze tests loop-mounted on volumes: thawed first,
  # since a frozen filesystem would hang whatever writes to it, then unmounted.
  local m
  for m in $(awk -v s="$state/" 'index($2, s) == 1 {print $2}' /proc/mounts 2>/dev/null); do
    fsfreeze --unfreeze "$m" 2>/dev/null || true
    umount -l "$m" 2>/dev/null || log "could not unmount $m"
  done
  if [ -x "$state/bin/kwokctl" ] && [ -d "$KWOK_WORKDIR/clusters/$name" ]; then
    "$state/bin/kwokctl" delete cluster --name "$name" >/dev/null 2>&1 || log "kwokctl delete cluster failed; see $KWOK_WORKDIR"
  fi
  rm -rf "$state"
}

start() { # start NAME BINARY ARGS...: run in its own session, log and pid under $state
  local n=$1; shift
  setsid "$@" >"$state/logs/$n.log" 2>&1 </dev/null &
  echo $! >"$state/pids/$n.pid"
}

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local secs=$1 what=$2 i; shift 2
  for i in $(seq $((secs * 5))); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  die "timed out after ${secs}s waiting for $what"
}

module_dir() { # module_dir TOOLS_MODULE MODULE: where the module cache holds MODULE
  (cd "$stack/tools/$1" && go list -m -f '{{.Dir}}' "$2")
}

# link_tools builds (once per machine) and links the stack's binaries into $state/bin.
link_tools() {
  local dirs line
  dirs=$("$stack/build-tools.sh" etcd kube kubelet containerd kwok snapshotter provisioner helm certmanager promtool)
  while IFS= read -r line; do
    ln -sf "${line#*=}"/* "$state/bin/"
  done <<<"$dirs"
  # etcd's main package is its module root, go.etcd.io/etcd/server/v3: Go names it "server".
  [ -e "$state/bin/server" ] && mv -f "$state/bin/server" "$state/bin/etcd"
  return 0
}

up() {
  if healthy; then
    # A stack started by an older checkout may lack a newer tool.
    link_tools
    log "already running"
    echo "export KUBECONFIG=$state/kubeconfig"
    return
  fi
  # A half-started or stale stack (a killed run, a reboot) is not worth saving.
  [ -d "$state" ] && { log "removing a stack that is not healthy"; down; }
  mkdir -p "$state"/{bin,logs,pids,hostpath}

  link_tools
  # -trimpath: the pause binary goes into a cached image, keyed by its bytes.
  (cd "$repo" && go build -trimpath -o "$state/bin/" ./e2e/stack/cmd/...)
  log "building (or finding cached) the real node's images"
  "$stack/images/build.sh" "$state/bin/pause" >"$state/images.list"

  local b=$state/bin
  cat >"$state/kwokctl.yaml" <<YAML
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  runtime: binary
  bindAddress: 127.0.0.1
  kubeAdmission: true
  # Pods reach the API server at the kubernetes Service's ClusterIP (the first
  # of kwokctl's service range, 10.0.0.0/24), and check its certificate for it.
  kubeApiserverCertSANs: [10.0.0.1]
  kubeAuthorization: true
  etcdBinary: $b/etcd
  kubeApiserverBinary: $b/kube-apiserver
  kubeControllerManagerBinary: $b/kube-controller-manager
  kubeSchedulerBinary: $b/kube-scheduler
  kubectlBinary: $b/kubectl
  kwokControllerBinary: $b/kwok
  kubeSchedulerConfig: $stack/config/scheduler.yaml
  # Stages come from the cluster: the stack applies kwok's own.
  enableCRDs: [Stage]
componentsPatches:
- name: kwok-controller
  extraArgs:
  # The apiserver dials this address for exec; kwokctl leaves it empty.
  - key: node-ip
    value: 127.0.0.1
  # kwok would otherwise take over the real node too.
  - key: manage-all-nodes
    value: "false"
  - key: manage-nodes-with-annotation-selector
    value: kwok.x-k8s.io/node=fake
- name: kube-apiserver
  extraArgs:
  # The real node's address is its InternalIP in the node's namespace; kwok's
  # nodes answer on 127.0.0.1.
  - key: kubelet-preferred-address-types
    value: InternalIP,Hostname
  # The kubelet authenticates the API server by a client certificate of its CA.
  - key: kubelet-client-certificate
    value: $KWOK_WORKDIR/clusters/$name/pki/admin.crt
  - key: kubelet-client-key
    value: $KWOK_WORKDIR/clusters/$name/pki/admin.key
  # A webhook served by a pod (the chart's snapgate) is called at its
  # endpoints: the stack runs no kube-proxy, so its Service's ClusterIP leads
  # nowhere, while pod addresses are routed (node.sh).
  - key: enable-aggregator-routing
    value: "true"
  # The fsfreeze preset's sidecar is privileged, as it must be on any cluster.
  - key: allow-privileged
    value: "true"
  # Tests that still run on kwok's nodes put their namespace there (the
  # namespace's default node selector and tolerations), not their manifests.
  - key: enable-admission-plugins
    value: PodNodeSelector,PodTolerationRestriction
  # ServiceAccounts' requests, for the tests that compare what snapgate did
  # with what its chart grants (config/audit-policy.yaml).
  - key: audit-policy-file
    value: $stack/config/audit-policy.yaml
  - key: audit-log-path
    value: $state/logs/audit.log
  - key: audit-log-format
    value: json
  - key: audit-log-maxsize
    value: "200"
  - key: audit-log-maxbackup
    value: "1"
- name: etcd
  extraArgs:
  - key: unsafe-no-fsync
    value: "true"
YAML
  log "starting control plane"
  "$b/kwokctl" create cluster --name "$name" --config "$state/kwokctl.yaml" --wait 2m >"$state/logs/kwokctl.log" 2>&1 ||
    die "kwokctl create cluster failed: $(tail -5 "$state/logs/kwokctl.log")"
  "$b/kwokctl" get kubeconfig --name "$name" >"$state/kubeconfig"
  export KUBECONFIG=$state/kubeconfig
  local k=("$b/kubectl" --kubeconfig "$state/kubeconfig")

  log "installing CRDs and stages"
  local snapcrd kwokdir
  snapcrd=$(module_dir snapshotter github.com/kubernetes-csi/external-snapshotter/client/v8)/config/crd
  kwokdir=$(module_dir kwok sigs.k8s.io/kwok)/kustomize
  "${k[@]}" apply -k "$snapcrd" >/dev/null
  # kwok installs its own CRDs (enableCRDs); they may take a moment to appear.
  wait_for 30 "kwok's CRDs" "${k[@]}" get crd stages.kwok.x-k8s.io
  "${k[@]}" wait --for condition=established --timeout=60s crd --all >/dev/null
  "${k[@]}" apply -f "$kwokdir/stage/node/fast/node-initialize.yaml" \
    -f "$kwokdir/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml" \
    -f "$kwokdir/stage/pod/fast/pod-ready.yaml" -f "$kwokdir/stage/pod/fast/pod-complete.yaml" \
    -f "$kwokdir/stage/pod/fast/pod-delete.yaml" >/dev/null

  log "starting CSI driver and sidecars"
  local sock=$state/csi.sock
  start hostpath-csi "$b/hostpath-csi" --driver-name "$driver" --root "$state/hostpath" --socket "$sock"
  wait_for 20 "the hostpath CSI socket" test -S "$sock"
  # The sidecars' client default of 5 requests a second made a set of 10
  # snapshots take over 25 s; a real cluster tunes these too. Retries start
  # at 100 ms so that a snapshot that becomes ready is seen within a second.
  local fast=(--kube-api-qps=100 --kube-api-burst=200 --retry-interval-start=100ms --retry-interval-max=1s)
  start snapshot-controller "$b/snapshot-controller" --kubeconfig "$KUBECONFIG" --leader-election=false "${fast[@]}"
  # Under a burst of 150 snapshots csi-snapshotter now and then drops the
  # requeue of a content that was cut but not yet ready, which then waits
  # for the resync (15 min by default) to be checked again: seen in make
  # bench, a set denied for time with one snapshot unready for minutes
  # (kubernetes-csi/external-snapshotter#1284 and #1258 are of this kind).
  start csi-snapshotter "$b/csi-snapshotter" --kubeconfig "$KUBECONFIG" --csi-address "$sock" --leader-election=false \
    --extra-create-metadata --resync-period=20s "${fast[@]}"
  start csi-provisioner "$b/csi-provisioner" --kubeconfig "$KUBECONFIG" --csi-address "$sock" --leader-election=false \
    --extra-create-metadata "${fast[@]}"

  "${k[@]}" apply -f "$stack/config/storage.yaml" >/dev/null
  wait_for 60 "node kwok-node-0 Ready" "${k[@]}" wait --for condition=Ready --timeout=1s node/kwok-node-0

  log "starting the real node"
  local server service
  server=$("${k[@]}" config view --minify -o jsonpath='{.clusters[0].cluster.server}')
  service=$("${k[@]}" -n default get service kubernetes -o jsonpath='{.spec.clusterIP}:{.spec.ports[0].port}')
  [ "${service%:*}" = 10.0.0.1 ] || die "the kubernetes Service's ClusterIP is ${service%:*}, not the 10.0.0.1 the API server's certificate names (kubeApiserverCertSANs above)"
  "$stack/node.sh" up "$b" "$state/images.list" "$KWOK_WORKDIR/clusters/$name/pki" "${server#https://}" "$service"
  wait_for 120 "node snapgate-node Ready" "${k[@]}" wait --for condition=Ready --timeout=1s node/snapgate-node
  local s
  for s in "${sidecars[@]}"; do alive "$s" || die "$s exited: $(tail -5 "$state/logs/$s.log")"; done
  log "ready"
  echo "export KUBECONFIG=$state/kubeconfig"
}

# restart_apiserver kills the API server with SIGKILL, as a crash or the OOM
# killer ends it, and starts it again as kwokctl did (the same command line,
# directory and log), then waits until it is ready. kwokctl itself restarts
# only the whole cluster; the pid file stays kwokctl's, so that `kwokctl
# delete cluster` stops the new process.
restart_apiserver() {
  local pidfile=$KWOK_WORKDIR/clusters/$name/pids/kube-apiserver.pid pid dir port i args=()
  pid=$(cat "$pidfile")
  [ -r "/proc/$pid/cmdline" ] || die "the API server (pid $pid) is not running"
  mapfile -d '' args <"/proc/$pid/cmdline"
  dir=$(readlink "/proc/$pid/cwd")
  port=$(printf '%s\n' "${args[@]}" | sed -n 's/^--secure-port=//p')
  kill -9 "$pid"
  # Its threads end after the main one (which a zombie may show): wait for
  # the port to be closed, which the new process must bind.
  for i in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || break
    sleep 0.1
  done
  (
    cd "$dir"
    setsid "${args[@]}" >>"$dir/logs/kube-apiserver.log" 2>&1 </dev/null &
    # No newline: kwokctl reads the pid with a bare Atoi, and a pid it cannot
    # parse is a component it takes for stopped and leaves running.
    printf '%s' $! >"$pidfile"
  )
  wait_for 120 "the restarted API server ready" \
    "$state/bin/kubectl" --kubeconfig "$state/kubeconfig" --request-timeout=2s get --raw /readyz
  log "API server restarted (pid $(cat "$pidfile"))"
}

case "${1:-}" in
  up) up ;;
  restart-apiserver) restart_apiserver ;;
  down) down ;;
  status) healthy ;;
  *) echo "usage: $0 up|down|status|restart-apiserver" >&2; exit 2 ;;
esac
