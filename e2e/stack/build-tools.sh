#!/usr/bin/env bash
# Builds the local stack's binaries from the Go module proxy, once per machine.
#
# Each tools module under e2e/stack/tools/<component> pins one upstream component.
# Its binaries land in the user's cache directory under a key derived from the
# module's go.mod, go.sum and the Go version, so a fresh clone on a machine that
# built them before reuses them, and a version bump builds anew.
#
# Usage: build-tools.sh [component...]   (default: all). Prints the bin directory
# of each component, one per line, as "<component>=<dir>".
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache_root=${SNAPGATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/snapgate}/stack
components=("$@")
[ ${#components[@]} -gt 0 ] || components=(etcd kube kubelet containerd kwok snapshotter provisioner helm certmanager promtool)

bin_dir() {
  local c=$1 key
  key=$( { cat "$here/tools/$c"/go.mod "$here/tools/$c"/go.sum "$here/tools/$c"/ldflags "$here/tools/$c"/tags "$here/tools/$c"/*.go 2>/dev/null; go env GOVERSION; } | sha256sum | cut -c1-16)
  echo "$cache_root/$c-$key"
}

build() {
  local c=$1 dir tmp pkgs ldflags tags=""
  dir=$(bin_dir "$c")
  if [ -f "$dir/.complete" ]; then
    echo "$c=$dir"
    return
  fi
  # Build into a temporary directory and rename, so an interrupted build never
  # leaves a half-filled directory that a later run would trust.
  mkdir -p "$cache_root"
  tmp=$(mktemp -d "$cache_root/.$c-XXXXXX")
  pkgs=$(cd "$here/tools/$c" && go list tool 2>/dev/null)
  # A module may hold a main of its own that wires an upstream library (certmanager).
  ls "$here/tools/$c"/*.go >/dev/null 2>&1 && pkgs="$pkgs ."
  # A component may stamp its version into the binaries (kwokctl and kubectl read it).
  ldflags="-s -w"
  [ -f "$here/tools/$c/ldflags" ] && ldflags="$ldflags $(cat "$here/tools/$c/ldflags")"
  # ... and leave out storage drivers this machine has no use for (containerd).
  [ -f "$here/tools/$c/tags" ] && tags=$(cat "$here/tools/$c/tags")
  echo "building $c: $pkgs" >&2
  local start=$SECONDS
  # shellcheck disable=SC2086 # pkgs is a list of import paths
  (cd "$here/tools/$c" && CGO_ENABLED=0 go build -trimpath -tags="$tags" -ldflags="$ldflags" -o "$tmp/" $pkgs)
  echo "built $c in $((SECONDS - start))s" >&2
  touch "$tmp/.complete"
  rm -rf "$dir"
  mv "$tmp" "$dir"
  echo "$c=$dir"
}

for c in "${components[@]}"; do
  build "$c"
done
