#!/usr/bin/env bash
# The local stack's real node: a kubelet and containerd (with Debian's runc and
# CNI plugins) joined to the stack's control plane, so that ordinary pods run as
# real containers of the images under e2e/stack/images.
#
# The kubelet refuses a loopback node IP, and this workplace allows traffic only
# on loopback or inside network namespaces the stack makes itself. So the node
# lives in a network namespace of its own (NETNS below), reached from the host at
# its address there (NODE_IP, through a veth pair); the kubelet reaches the API
# server through nsproxy, which listens on the namespace's own 127.0.0.1 and
# dials the host's. Pods reach the API server as on any cluster, at the
# kubernetes Service's ClusterIP: the namespace holds that address (as
# kube-proxy's IPVS mode binds ClusterIPs to a local device) and nsproxy
# listens on it too. The API server reaches pods (webhooks served by a pod) by
# a route to the pod network through the namespace. The kubelet and containerd
# also get a private mount namespace, where /run, /var/lib and /var/log are
# their own and the sysctls the kubelet insists on setting are files of the
# stack's, so the host is left as it was; everything else they make (cgroups under CGROUP, the namespace) is
# recorded and removed by 'down'.
#
#   node.sh up       start the node and wait until it is Ready (cluster.sh calls it)
#   node.sh down     stop it and undo what it did to the host
#   node.sh status   exit 0 if the node's processes are running
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
stack=$repo/e2e/stack
state=${SNAPGATE_CLUSTER_DIR:-$repo/.cluster}
dir=$state/node
NODE=snapgate-node
NETNS=snapgate-node
HOST_IF=sg-host HOST_IP=10.213.0.1
NODE_IF=sg-node NODE_IP=10.213.0.2
POD_CIDR=10.214.0.0/24 POD_GW=10.214.0.1
CGROUP=snapgate-node
driver=hostpath.csi.snapgate.io
# Inside the node's mount namespace only (see 'inside'): short, fixed paths.
kubelet_root=/var/lib/kubelet
csi_socket=$kubelet_root/plugins/$driver/csi.sock
containerd_socket=/run/containerd/containerd.sock
PATH=$PATH:/usr/sbin:/sbin

log() { printf '%s node: %s\n' "$(date +%T)" "$*" >&2; }
die() { log "$*"; exit 1; }

supervisor_alive() {
  local pid
  [ -f "$state/pids/node.pid" ] && pid=$(cat "$state/pids/node.pid") && kill -0 "$pid" 2>/dev/null
}

status() {
  supervisor_alive && [ -e "/run/netns/$NETNS" ] && kill -0 "$(cat "$state/pids/nsproxy.pid" 2>/dev/null || echo 0)" 2>/dev/null
}

# cgroup_dirs: the cgroup v1 hierarchies (each mounted controller), where the
# kubelet and runc make the node's cgroups under CGROUP.
cgroup_dirs() {
  awk '$3 == "cgroup" || $3 == "cgroup2" {print $2}' /proc/mounts
}

# kill_cgroup_tree SIGNAL: every process in the node's cgroups (the containers).
kill_cgroup_tree() {
  local d f pid
  for d in $(cgroup_dirs); do
    [ -d "$d/$CGROUP" ] || continue
    while IFS= read -r f; do
      while read -r pid; do kill "-$1" "$pid" 2>/dev/null || true; done <"$f"
    done < <(find "$d/$CGROUP" -name cgroup.procs 2>/dev/null)
  done
}

cgroup_procs() { # how many processes are left in the node's cgroups
  local d
  for d in $(cgroup_dirs); do
    [ -d "$d/$CGROUP" ] && find "$d/$CGROUP" -name cgroup.procs -exec cat {} + 2>/dev/null
  done | wc -l
}

# mntns_pids: the processes in the node's mount namespace (kubelet, containerd,
# its shims, the CSI node plugin), found by the namespace recorded at start.
mntns_pids() {
  local ns p
  ns=$(cat "$dir/mntns" 2>/dev/null) || return 0
  [ -n "$ns" ] || return 0
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$ns" ] && echo "${p#/proc/}"
  done
  return 0
}

netns_pids() { [ -e "/run/netns/$NETNS" ] && ip netns pids "$NETNS" 2>/dev/null || true; }

# thaw_node_filesystems: a volume's filesystem that a test left frozen would
# hang its unmount (and whatever touches it) when the node goes: thaw each ext4
# loop mount in the node's mount namespace first.
thaw_node_filesystems() {
  local pid m
  supervisor_alive || return 0
  # setsid, nsenter, unshare and env each exec the next: the recorded pid is the
  # supervisor itself, in the node's mount namespace.
  pid=$(cat "$state/pids/node.pid")
  for m in $(nsenter --mount="/proc/$pid/ns/mnt" awk '$1 ~ /^\/dev\/loop/ && $3 == "ext4" {print $2}' /proc/mounts 2>/dev/null); do
    nsenter --mount="/proc/$pid/ns/mnt" fsfreeze --unfreeze "$m" 2>/dev/null || true
  done
}

down() {
  local pid i
  thaw_node_filesystems
  # The kubelet first, so nothing restarts the containers killed next.
  if supervisor_alive; then
    kill -TERM "$(cat "$state/pids/node.pid")" 2>/dev/null || true
    for i in $(seq 100); do supervisor_alive || break; sleep 0.1; done
  fi
  for pid in $(mntns_pids); do
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q kubelet && kill -KILL "$pid" 2>/dev/null
  done
  # The containers, wherever they are: all of them live in the node's cgroups.
  for i in $(seq 50); do
    [ "$(cgroup_procs)" = 0 ] && break
    kill_cgroup_tree KILL
    sleep 0.1
  done
  # Then whatever is left in the node's namespaces (containerd, shims, the CSI plugin).
  for i in $(seq 50); do
    local left
    left=$( { mntns_pids; netns_pids; } | sort -u)
    [ -z "$left" ] && break
    # shellcheck disable=SC2086
    kill -KILL $left 2>/dev/null || true
    sleep 0.1
  done
  if [ -f "$state/pids/nsproxy.pid" ]; then
    kill "$(cat "$state/pids/nsproxy.pid")" 2>/dev/null || true
    rm -f "$state/pids/nsproxy.pid"
  fi
  rm -f "$state/pids/node.pid"
  # Empty cgroups, deepest first.
  local d
  for d in $(cgroup_dirs); do
    [ -d "$d/$CGROUP" ] && find "$d/$CGROUP" -depth -type d -exec rmdir {} \; 2>/dev/null
    [ -d "$d/$CGROUP" ] && log "could not remove cgroup $d/$CGROUP"
  done
  # The namespace takes the veth pair, its routes and its iptables with it.
  if [ -e "/run/netns/$NETNS" ]; then
    ip netns del "$NETNS" || log "could not delete network namespace $NETNS"
  fi
  ip link show "$HOST_IF" >/dev/null 2>&1 && ip link del "$HOST_IF"
  # ip netns made /run/netns a mount point of its own; put it back if we caused it.
  if [ -f "$dir/made-run-netns" ] && [ -d /run/netns ] && [ -z "$(ls -A /run/netns)" ]; then
    umount /run/netns 2>/dev/null || true
    rmdir /run/netns 2>/dev/null || true
  fi
  rm -rf "$dir"
  return 0
}

# kubelet_pki signs the kubelet's client certificate (system:node:NODE, group
# system:nodes) with the control plane's CA, as a cluster's bootstrap would.
kubelet_pki() {
  local pki=$1
  mkdir -p "$dir/pki"
  cp "$pki/ca.crt" "$dir/pki/ca.crt"
  openssl req -new -newkey rsa:2048 -nodes -keyout "$dir/pki/kubelet-client.key" \
    -subj "/O=system:nodes/CN=system:node:$NODE" -out "$dir/pki/kubelet-client.csr" 2>/dev/null
  openssl x509 -req -in "$dir/pki/kubelet-client.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -CAcreateserial -CAserial "$dir/pki/ca.srl" -days 30 -out "$dir/pki/kubelet-client.crt" \
    -extfile <(printf 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n') 2>/dev/null
}

write_configs() {
  cat >"$dir/kubeconfig" <<YAML
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:6443
    certificate-authority: $dir/pki/ca.crt
users:
- name: kubelet
  user:
    client-certificate: $dir/pki/kubelet-client.crt
    client-key: $dir/pki/kubelet-client.key
contexts:
- name: local
  context: {cluster: local, user: kubelet}
current-context: local
YAML
  cat >"$dir/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine has cgroup v1 (hybrid) and no systemd.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP
cgroupsPerQOS: true
containerRuntimeEndpoint: unix://$containerd_socket
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
# The API server presents the control plane's admin certificate; anything else
# is asked about through the API server (TokenReview, SubjectAccessReview).
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $dir/pki/ca.crt}
authorization:
  mode: Webhook
failSwapOn: false
# Lowering its own OOM score needs CAP_SYS_RESOURCE, which root lacks here.
oomScoreAdj: 0
# No cluster DNS in the stack.
resolvConf: ""
# Images cannot be pulled again here (no registry): never collect them, and never
# evict for a disk that a busy machine fills.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
imageMaximumGCAge: 0s
evictionHard: {memory.available: "100Mi", nodefs.available: "0%", nodefs.inodesFree: "0%", imagefs.available: "0%", imagefs.inodesFree: "0%"}
mergeDefaultEvictionSettings: false
localStorageCapacityIsolation: false
protectKernelDefaults: false
podLogsDir: /var/log/pods
serializeImagePulls: false
# A Secret's update reaches a pod's volume at the pod's next sync (every minute
# by default): a renewed serving certificate is in the chart's pods within
# seconds rather than a minute.
syncFrequency: 10s
YAML
  cat >"$dir/containerd.toml" <<TOML
version = 3
root = "$dir/containerd"
state = "/run/containerd"
disabled_plugins = [
  "io.containerd.snapshotter.v1.blockfile", "io.containerd.snapshotter.v1.erofs", "io.containerd.differ.v1.erofs",
  "io.containerd.mount-handler.v1.erofs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing",
  "io.containerd.nri.v1.nri", "io.containerd.internal.v1.opt",
]
[grpc]
  address = "$containerd_socket"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    # Built here (e2e/stack/cmd/pause): no registry can be reached.
    sandbox = "registry.k8s.io/pause:3.10.1"
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = ""

[plugins.'io.containerd.cri.v1.runtime']
  # Root lacks CAP_SYS_RESOURCE here: a sandbox's oom_score_adj of -998 fails.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_cdi = false
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        Root = "/run/containerd/runc"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "$dir/cni"
    max_conf_num = 1

[plugins.'io.containerd.grpc.v1.cri']
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
TOML
  mkdir -p "$dir/cni" "$dir/cni-ipam"
  cat >"$dir/cni/10-pods.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "snapgate-pods",
  "plugins": [
    {"type": "bridge", "bridge": "sgbr0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$POD_GW"}]],
              "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$dir/cni-ipam"}}
  ]
}
JSON
}

# make_cgroups: the kubelet's cgroupRoot must exist in every hierarchy; a cpuset
# needs its CPUs and memory nodes before a task may join it.
make_cgroups() {
  local d
  for d in $(cgroup_dirs); do
    mkdir -p "$d/$CGROUP"
    if [ -f "$d/cpuset.cpus" ]; then
      cat "$d/cpuset.cpus" >"$d/$CGROUP/cpuset.cpus"
      cat "$d/cpuset.mems" >"$d/$CGROUP/cpuset.mems"
    fi
  done
}

make_netns() {
  [ -d /run/netns ] || touch "$dir/made-run-netns"
  ip netns add "$NETNS"
  ip link add "$HOST_IF" type veth peer name "$NODE_IF"
  ip link set "$NODE_IF" netns "$NETNS"
  ip addr add "$HOST_IP/24" dev "$HOST_IF"
  ip link set "$HOST_IF" up
  ip -n "$NETNS" addr add "$NODE_IP/24" dev "$NODE_IF"
  ip -n "$NETNS" link set "$NODE_IF" up
  ip -n "$NETNS" link set lo up
  # The kubernetes Service's ClusterIP, served by nsproxy (see up).
  ip -n "$NETNS" addr add "${SERVICE_ADDR%:*}/32" dev lo
  # Pods, from the host (the API server calling a webhook's endpoints). The
  # route goes with the veth.
  ip route add "$POD_CIDR" via "$NODE_IP" dev "$HOST_IF"
}

up() {
  local bin=$1 images=$2 pki=$3 apiserver=$4
  SERVICE_ADDR=$5
  if status; then
    log "already running"
    return
  fi
  # down also clears what a killed stack left (another checkout's, or this one's
  # before a reboot): it finds the node's processes by their cgroups and network
  # namespace, not by this stack's records.
  down
  if [ -e "/run/netns/$NETNS" ] || [ -n "$(for d in $(cgroup_dirs); do [ -d "$d/$CGROUP" ] && echo x; done)" ]; then
    die "a node left behind could not be removed (network namespace $NETNS or cgroups $CGROUP): see the log above"
  fi
  mkdir -p "$dir"/{logs,sysctl,log}
  cp "$images" "$dir/images.list"
  kubelet_pki "$pki"
  write_configs
  make_cgroups
  make_netns

  setsid "$bin/nsproxy" --netns "/run/netns/$NETNS" --listen 127.0.0.1:6443 --listen "$SERVICE_ADDR" --to "$apiserver" \
    >"$state/logs/nsproxy.log" 2>&1 </dev/null &
  echo $! >"$state/pids/nsproxy.pid"

  # The node's own processes, in its network namespace and a private mount
  # namespace; 'inside' (below) runs there and stays as their supervisor.
  setsid nsenter --net="/run/netns/$NETNS" -- unshare --mount --propagation private -- \
    env SNAPGATE_CLUSTER_DIR="$state" NODE_BIN="$bin" "$0" inside \
    >"$state/logs/node.log" 2>&1 </dev/null &
  echo $! >"$state/pids/node.pid"
  # Importing the images takes most of it: over a minute on a busy machine.
  local i
  for i in $(seq 1800); do
    [ -s "$dir/ready" ] && break
    supervisor_alive || die "the node exited: $(tail -5 "$state/logs/node.log")"
    sleep 0.1
  done
  [ -s "$dir/ready" ] || die "the node did not start within 180s: $(tail -5 "$state/logs/node.log")"
}

# inside runs in the node's namespaces: it makes the private mounts, starts
# containerd, imports the images, starts the CSI node plugin and the kubelet,
# and stops them all when it is told to.
inside() {
  local bin=$NODE_BIN pids=()
  readlink /proc/self/ns/mnt >"$dir/mntns"
  # What the kubelet and containerd keep in /run, /var/lib and /var/log is theirs
  # alone, and goes with this namespace.
  mount -t tmpfs -o mode=0755 snapgate-node-run /run
  mount -t tmpfs -o mode=0755 snapgate-node-var-lib /var/lib
  mount --bind "$dir/log" /var/log
  # The kubelet sets these sysctls on start (they are not per network namespace):
  # here it finds them set already, in files of the stack's, and the host's stay.
  local kv key val
  for kv in vm/overcommit_memory=1 vm/panic_on_oom=0 kernel/panic=10 kernel/panic_on_oops=1 \
    kernel/keys/root_maxkeys=1000000 kernel/keys/root_maxbytes=25000000; do
    key=${kv%%=*} val=${kv#*=}
    echo "$val" >"$dir/sysctl/${key//\//.}"
    mount --bind "$dir/sysctl/${key//\//.}" "/proc/sys/$key"
  done
  mkdir -p "$kubelet_root"

  stop_inside() {
    trap - TERM INT
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait
    exit 0
  }
  trap stop_inside TERM INT

  # The runc shim is looked up on PATH: containerd's own, not Debian's 1.6 one.
  PATH=$bin:$PATH "$bin/containerd" --config "$dir/containerd.toml" >"$state/logs/containerd.log" 2>&1 &
  pids+=($!)
  local i
  for i in $(seq 100); do [ -S "$containerd_socket" ] && break; sleep 0.1; done
  [ -S "$containerd_socket" ] || { echo "containerd did not start: $(tail -5 "$state/logs/containerd.log")"; exit 1; }
  local tar
  while IFS= read -r tar; do
    [ -n "$tar" ] || continue
    "$bin/ctr" -a "$containerd_socket" -n k8s.io images import --label io.cri-containerd.pinned=pinned "$tar" >/dev/null ||
      { echo "import $tar failed"; exit 1; }
  done <"$dir/images.list"
  "$bin/hostpath-csi" --driver-name "$driver" --root "$state/hostpath" --socket "$csi_socket" \
    --node-id "$NODE" --registration-dir "$kubelet_root/plugins_registry" >"$state/logs/hostpath-csi-node.log" 2>&1 &
  pids+=($!)
  "$bin/kubelet" --config "$dir/kubelet.yaml" --kubeconfig "$dir/kubeconfig" --root-dir "$kubelet_root" \
    --cert-dir "$dir/pki" --hostname-override "$NODE" --node-ip "$NODE_IP" \
    --node-labels "type=real" >"$state/logs/kubelet.log" 2>&1 &
  pids+=($!)
  echo started >"$dir/ready"
  wait -n "${pids[@]}" || true
  echo "a node process exited; stopping the node"
  stop_inside
}

# import ARCHIVE...: OCI archives into the running node's containerd, pinned
# (as make cluster imports the stack's images), for images built after the
# node started: snapgate's own.
import_images() {
  local pid tar
  status || die "the node is not running: run 'make cluster' first"
  pid=$(cat "$state/pids/node.pid")
  for tar in "$@"; do
    nsenter --mount="/proc/$pid/ns/mnt" -- "$state/bin/ctr" -a "$containerd_socket" -n k8s.io images import \
      --label io.cri-containerd.pinned=pinned "$tar" >/dev/null || die "import $tar failed"
  done
}

case "${1:-}" in
  up) shift; up "$@" ;;
  down) down ;;
  status) status ;;
  inside) inside ;;
  import) shift; import_images "$@" ;;
  *) echo "usage: $0 up BIN IMAGES_LIST PKI APISERVER_ADDR SERVICE_ADDR | import ARCHIVE... | down | status" >&2; exit 2 ;;
esac
