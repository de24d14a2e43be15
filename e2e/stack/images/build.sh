#!/usr/bin/env bash
# Builds the images of the stack's real node, once per machine: no registry can
# be reached here, so each image is made from Debian's packages (mmdebstrap) in
# the shape of the official image it stands for (its user, env, entrypoint,
# socket and auth; CONTRACT.md beside this file says what each follows and
# where that comes from), packed as a one-layer OCI archive (umoci) named as a
# user's manifest names it, ready for `ctr images import`.
#
# Each archive is cached under a key of this directory's files and the image's
# name, so a fresh clone on a machine that built them reuses them.
#
# Usage: build.sh PAUSE_BINARY [image...]   (default: all). Prints the archives'
# paths, one per line. The image `snapgate` (not in all: it changes with the
# code) is snapgate's own, of the static binary SNAPGATE_BINARY.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${SNAPGATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/snapgate}/images
pause_bin=$1
shift
all=(pause postgres-15 postgres-17 bitnami-postgresql-15 mariadb-10.11 mariadb-11 busybox-1.36)
images=("$@")
[ ${#images[@]} -gt 0 ] || images=("${all[@]}")

log() { printf '%s images: %s\n' "$(date +%T)" "$*" >&2; }

# The Debian mirror this machine's apt uses (the stack names no host itself).
mirror() {
  local m
  m=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [ -n "$m" ] || m=$(awk '$1 == "deb" && $2 !~ /^\[/ {print $2; exit} $1 == "deb" && $2 ~ /^\[/ {print $3; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$m" ] || { log "no Debian mirror in /etc/apt/sources.list*"; exit 1; }
  echo "$m"
}

key() { # key IMAGE: what the image is built from (this script, its own files)
  local family=${1%%-[0-9]*}
  {
    cat "$here/build.sh"
    echo "$1"
    [ ! -d "$here/$family" ] || find "$here/$family" -type f ! -name '*.md' -print0 | sort -z | xargs -0 cat
    [ "$1" != pause ] || cat "$pause_bin"
    [ "$1" != snapgate ] || { cat "$SNAPGATE_BINARY"; snapgate_name; }
  } | sha256sum | cut -c1-16
}

# rootfs SUITE VARIANT PACKAGES OUT [mmdebstrap options...]: a root filesystem tar
# without docs, man pages or apt lists (as Debian's slim images).
rootfs() {
  local suite=$1 variant=$2 packages=$3 out=$4
  shift 4
  mmdebstrap --quiet --variant="$variant" --include="$packages" --skip=output/dev \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/*.log' \
    "$@" "$suite" "$out" "deb $(mirror) $suite main" >&2
}

# pack ROOTFS_TAR NAME OUT [umoci config options...]: a one-layer OCI archive whose
# index names the image NAME (normalized: docker.io/library/postgres:15), which
# is how containerd's CRI looks a manifest's `image: postgres:15` up.
pack() {
  local tar=$1 name=$2 out=$3 layout
  shift 3
  layout=$(mktemp -d)
  umoci init --layout "$layout/oci"
  umoci new --image "$layout/oci:build"
  umoci raw add-layer --image "$layout/oci:build" "$tar"
  umoci config --image "$layout/oci:build" --os linux --architecture amd64 "$@"
  umoci gc --layout "$layout/oci"
  sed -i "s|\"org.opencontainers.image.ref.name\":\"build\"|\"io.containerd.image.name\":\"$name\",\"org.opencontainers.image.ref.name\":\"${name##*:}\"|" "$layout/oci/index.json"
  grep -q "\"io.containerd.image.name\":\"$name\"" "$layout/oci/index.json" || { log "could not name $name in its index"; exit 1; }
  tar -C "$layout/oci" -cf "$out" .
  rm -rf "$layout"
}

# snapgate_name: snapgate's image as the chart names it by default, its
# repository and appVersion (charts/snapgate), so that `helm install` of the
# chart as it stands runs this checkout's snapgate.
snapgate_name() {
  local chart=$here/../../../charts/snapgate
  printf '%s:%s\n' "$(awk '$1 == "repository:" {print $2; exit}' "$chart/values.yaml")" \
    "$(awk '$1 == "appVersion:" {gsub(/"/, "", $2); print $2}' "$chart/Chart.yaml")"
}

# snapgate TMP OUT: snapgate's release image, in the shape of a distroless
# static image: the binary as entrypoint, the user nonroot (65532) that the
# chart's securityContext asks for, no shell, no package manager.
snapgate() {
  local tmp=$1 out=$2 root=$1/root
  [ -x "${SNAPGATE_BINARY:-}" ] || { log "SNAPGATE_BINARY must name snapgate's static binary"; exit 1; }
  mkdir -p "$root/etc" "$root/tmp" "$root/home/nonroot"
  cp "$SNAPGATE_BINARY" "$root/snapgate"
  chmod 0755 "$root/snapgate"
  chmod 1777 "$root/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
  chown -R 0:0 "$root"
  chown 65532:65532 "$root/home/nonroot"
  tar -C "$root" --numeric-owner -cf "$tmp/rootfs.tar" .
  pack "$tmp/rootfs.tar" "$(snapgate_name)" "$out" --config.entrypoint /snapgate --config.user 65532:65532 \
    --config.workingdir /home/nonroot
}

debian_path=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# postgres MAJOR SUITE: docker-library/postgres's NN/<suite> image, on Debian's
# own PostgreSQL of that suite.
postgres() {
  local major=$1 suite=$2 tmp=$3 out=$4
  rootfs "$suite" minbase "postgresql-$major,gosu,locales,libnss-wrapper,xz-utils,zstd" "$tmp/rootfs.tar" \
    --essential-hook='echo "postgres:x:999:999:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash" >>"$1/etc/passwd"; echo "postgres:x:999:" >>"$1/etc/group"' \
    --essential-hook='mkdir -p "$1/etc/postgresql-common/createcluster.d"; echo "create_main_cluster = false" >"$1/etc/postgresql-common/createcluster.d/docker.conf"' \
    --customize-hook="chroot \"\$1\" localedef -i en_US -c -f UTF-8 -A /usr/share/locale/locale.alias en_US.UTF-8" \
    --customize-hook="sed -ri \"s!^#?(listen_addresses)\\s*=\\s*\\S+.*!\\1 = '*'!\" \"\$1/usr/share/postgresql/$major/postgresql.conf.sample\"" \
    --customize-hook='install -d -o 999 -g 999 -m 1777 "$1/var/lib/postgresql" "$1/var/lib/postgresql/data"; install -d -o 999 -g 999 -m 3777 "$1/var/run/postgresql"; mkdir -p "$1/docker-entrypoint-initdb.d"' \
    --customize-hook="upload $here/postgres/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh" \
    --customize-hook='chmod 0755 "$1/usr/local/bin/docker-entrypoint.sh"; ln -s usr/local/bin/docker-entrypoint.sh "$1/docker-entrypoint.sh"'
  pack "$tmp/rootfs.tar" "docker.io/library/postgres:$major" "$out" \
    --config.env "$debian_path:/usr/lib/postgresql/$major/bin" --config.env LANG=en_US.utf8 \
    --config.env "PG_MAJOR=$major" --config.env PGDATA=/var/lib/postgresql/data \
    --config.entrypoint docker-entrypoint.sh --config.cmd postgres --config.stopsignal SIGINT \
    --config.volume /var/lib/postgresql/data --config.exposedports 5432/tcp
}

# mariadb VERSION SUITE: MariaDB/mariadb-docker's image of that version, on
# Debian's MariaDB of that suite. The 11.x images have no mysql* commands, only
# mariadb*; Debian 13's packages may still ship the links, so they go.
mariadb() {
  local version=$1 suite=$2 tmp=$3 out=$4 drop_mysql=""
  [ "${version%%.*}" -lt 11 ] || drop_mysql='find "$1/usr/bin" "$1/usr/sbin" -name "mysql*" -lname "mariadb*" -delete'
  rootfs "$suite" minbase "mariadb-server,mariadb-client,gosu,tzdata" "$tmp/rootfs.tar" \
    --essential-hook='echo "mysql:x:999:999:MariaDB Server,,,:/var/lib/mysql:/bin/false" >>"$1/etc/passwd"; echo "mysql:x:999:" >>"$1/etc/group"' \
    --essential-hook='mkdir -p "$1/var/lib/mysql/mysql"; touch "$1/var/lib/mysql/mysql/user.frm"' \
    --customize-hook='rm -rf "$1/var/lib/mysql"; install -d -o 999 -g 999 "$1/var/lib/mysql"; install -d -o 999 -g 999 -m 1777 "$1/run/mysqld"' \
    --customize-hook='sed -Ei "s/^(bind-address|log|user\s)/#&/" "$1"/etc/mysql/mariadb.conf.d/*.cnf; printf "[mariadb]\nhost-cache-size=0\nskip-name-resolve\n" >"$1/etc/mysql/mariadb.conf.d/05-skipcache.cnf"' \
    ${drop_mysql:+--customize-hook="$drop_mysql"} \
    --customize-hook="upload $here/mariadb/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh" \
    --customize-hook='chmod 0755 "$1/usr/local/bin/docker-entrypoint.sh"'
  pack "$tmp/rootfs.tar" "docker.io/library/mariadb:$version" "$out" \
    --config.env "$debian_path" --config.env LANG=C.UTF-8 \
    --config.entrypoint docker-entrypoint.sh --config.cmd mariadbd \
    --config.volume /var/lib/mysql --config.exposedports 3306/tcp
}

# bitnami_postgresql MAJOR SUITE: bitnami/postgresql's image (uid 1001 without a
# passwd entry, data under /bitnami/postgresql, socket in /tmp, md5 locally).
bitnami_postgresql() {
  local major=$1 suite=$2 tmp=$3 out=$4 b=/opt/bitnami
  rootfs "$suite" minbase "postgresql-$major,libnss-wrapper,locales" "$tmp/rootfs.tar" \
    --essential-hook='mkdir -p "$1/etc/postgresql-common/createcluster.d"; echo "create_main_cluster = false" >"$1/etc/postgresql-common/createcluster.d/docker.conf"' \
    --customize-hook="chroot \"\$1\" localedef -i en_US -c -f UTF-8 -A /usr/share/locale/locale.alias en_US.UTF-8" \
    --customize-hook="mkdir -p \"\$1$b/postgresql/bin\" \"\$1$b/scripts/postgresql\" \"\$1$b/postgresql/tmp\" \"\$1/bitnami/postgresql\"" \
    --customize-hook="for f in /usr/lib/postgresql/$major/bin/*; do ln -s \"\$f\" \"\$1$b/postgresql/bin/\"; done; rm \"\$1$b/postgresql/bin/psql\"" \
    --customize-hook="upload $here/bitnami-postgresql/psql $b/postgresql/bin/psql" \
    --customize-hook="upload $here/bitnami-postgresql/entrypoint.sh $b/scripts/postgresql/entrypoint.sh" \
    --customize-hook="upload $here/bitnami-postgresql/run.sh $b/scripts/postgresql/run.sh" \
    --customize-hook="sed -i 's|/usr/lib/postgresql/15/|/usr/lib/postgresql/$major/|' \"\$1$b/postgresql/bin/psql\"; chmod 0755 \"\$1$b/postgresql/bin/psql\" \"\$1$b\"/scripts/postgresql/*.sh" \
    --customize-hook="chown -R 1001:0 \"\$1$b/postgresql/tmp\" \"\$1/bitnami/postgresql\"; chmod 0775 \"\$1$b/postgresql/tmp\" \"\$1/bitnami/postgresql\""
  pack "$tmp/rootfs.tar" "docker.io/bitnami/postgresql:$major" "$out" \
    --config.env "PATH=$b/postgresql/bin:${debian_path#PATH=}" --config.env HOME=/ \
    --config.env LANG=en_US.UTF-8 --config.env LANGUAGE=en_US:en --config.env BITNAMI_APP_NAME=postgresql \
    --config.env NSS_WRAPPER_LIB=/usr/lib/x86_64-linux-gnu/libnss_wrapper.so \
    --config.user 1001 --config.entrypoint "$b/scripts/postgresql/entrypoint.sh" \
    --config.cmd "$b/scripts/postgresql/run.sh" --config.volume /bitnami/postgresql --config.exposedports 5432/tcp
}

# busybox: the official image's shape, from Debian's static busybox: every
# applet linked in /bin, a passwd with root and nobody, CMD sh. Debian's package
# is only unpacked (no dpkg, no libc) and the tree is finished here: the binary
# is static, so it lists its applets on this machine as well.
busybox() {
  local suite=$1 tmp=$2 out=$3 root=$2/root a
  rootfs "$suite" extract busybox-static "$tmp/extract.tar"
  mkdir -p "$root/bin" "$root/etc" "$root/root" "$root/tmp" "$root/home" "$root/usr/bin"
  tar -C "$tmp" -xf "$tmp/extract.tar" ./usr/bin/busybox
  mv "$tmp/usr/bin/busybox" "$root/bin/busybox"
  for a in $("$root/bin/busybox" --list); do
    [ "$a" = busybox ] || ln -s busybox "$root/bin/$a"
  done
  ln -s ../../bin/env "$root/usr/bin/env"
  chmod 1777 "$root/tmp"
  chmod 0700 "$root/root"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' >"$root/etc/group"
  tar -C "$root" --owner=0 --group=0 -cf "$tmp/rootfs.tar" .
  pack "$tmp/rootfs.tar" docker.io/library/busybox:1.36 "$out" --config.env "$debian_path" --config.cmd sh
}

build_one() { # build_one IMAGE: the archive's path, built if not cached
  local image=$1 out tmp start=$SECONDS
  out=$cache/$image-$(key "$image").tar
  if [ -f "$out" ]; then
    echo "$out"
    return
  fi
  mkdir -p "$cache"
  tmp=$(mktemp -d "$cache/.$image-XXXXXX")
  log "building $image"
  case "$image" in
    pause)
      mkdir -p "$tmp/root"
      cp "$pause_bin" "$tmp/root/pause"
      tar -C "$tmp/root" -cf "$tmp/rootfs.tar" .
      pack "$tmp/rootfs.tar" registry.k8s.io/pause:3.10.1 "$tmp/image.tar" --config.entrypoint /pause --config.user 65535:65535
      ;;
    postgres-15) postgres 15 bookworm "$tmp" "$tmp/image.tar" ;;
    postgres-17) postgres 17 trixie "$tmp" "$tmp/image.tar" ;;
    bitnami-postgresql-15) bitnami_postgresql 15 bookworm "$tmp" "$tmp/image.tar" ;;
    mariadb-10.11) mariadb 10.11 bookworm "$tmp" "$tmp/image.tar" ;;
    mariadb-11) mariadb 11 trixie "$tmp" "$tmp/image.tar" ;;
    busybox-1.36) busybox trixie "$tmp" "$tmp/image.tar" ;;
    snapgate) snapgate "$tmp" "$tmp/image.tar" ;;
    *) log "unknown image $image (known: ${all[*]})"; exit 1 ;;
  esac
  # Renamed into place last, so an interrupted build is never taken for a done one.
  mv "$tmp/image.tar" "$out"
  rm -rf "$tmp"
  # Archives of this image built from older recipes are not used again.
  find "$cache" -maxdepth 1 -name "$image-*.tar" ! -path "$out" -delete
  log "built $image in $((SECONDS - start))s"
  echo "$out"
}

for image in "${images[@]}"; do
  build_one "$image"
done
