#!/usr/bin/env bash
# Installs what the e2e tests need beyond Go, from Debian's packages, where the
# machine lacks it: the tools that give the fsfreeze test real filesystems to
# freeze (mkfs.ext4, fsfreeze, losetup); and what the stack's
# real node runs on and is built with: runc, the CNI plugins, iproute2 and iptables
# for its network namespace, mmdebstrap and umoci for its images. Idempotent;
# prints nothing when all is there.
set -euo pipefail
# mkfs.ext4, fsfreeze and losetup live in sbin, which a user's PATH may lack.
PATH="$PATH:/usr/sbin:/sbin"

sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
updated=""

install() { # install WHAT PACKAGE...
  echo "deps: installing $1 from Debian's packages" >&2
  shift
  export DEBIAN_FRONTEND=noninteractive
  [ -n "$updated" ] || { $sudo apt-get update -qq; updated=1; }
  $sudo apt-get install -y -qq "$@" >/dev/null
}

have_fstools() {
  command -v mkfs.ext4 >/dev/null && command -v fsfreeze >/dev/null && command -v losetup >/dev/null
}

if ! have_fstools; then
  install "e2fsprogs and util-linux" e2fsprogs util-linux mount
  have_fstools || { echo "deps: mkfs.ext4, fsfreeze or losetup is still missing after apt-get install" >&2; exit 1; }
fi

have_node_tools() {
  command -v runc >/dev/null && [ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] &&
    [ -x /usr/lib/cni/loopback ] && command -v ip >/dev/null && command -v iptables >/dev/null &&
    command -v mmdebstrap >/dev/null && command -v umoci >/dev/null && command -v nsenter >/dev/null
}

if ! have_node_tools; then
  install "the real node's runtime and image tools" runc containernetworking-plugins iproute2 iptables \
    mmdebstrap umoci util-linux
  have_node_tools || { echo "deps: runc, the CNI plugins, ip, iptables, mmdebstrap or umoci is still missing after apt-get install" >&2; exit 1; }
fi
