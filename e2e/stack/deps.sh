#!/usr/bin/env bash
# Installs what the e2e tests need beyond Go, from Debian's packages, where the
# machine lacks it: a real PostgreSQL server (initdb, pg_ctl, postgres, psql)
# and its postgres user, and a real MariaDB server (mariadbd, mariadb-install-db,
# the mysql client) and its mysql user, and the tools that give the fsfreeze test
# real filesystems to freeze (mkfs.ext4, fsfreeze, losetup). Idempotent; prints
# nothing when all is there.
set -euo pipefail

have_postgres() {
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null && command -v psql >/dev/null && id postgres >/dev/null 2>&1
}

if ! have_postgres; then
  echo "deps: installing PostgreSQL from Debian's packages" >&2
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq postgresql >/dev/null
  # The package may start a cluster of its own; the tests run their own servers.
  $sudo service postgresql stop >/dev/null 2>&1 || true
  have_postgres || { echo "deps: PostgreSQL is still missing after apt-get install" >&2; exit 1; }
fi

have_mariadb() {
  command -v mariadb-install-db >/dev/null && command -v mysql >/dev/null && id mysql >/dev/null 2>&1 &&
    { command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ]; }
}

if ! have_mariadb; then
  echo "deps: installing MariaDB from Debian's packages" >&2
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq mariadb-server mariadb-client >/dev/null
  # The package starts a server of its own; the tests run their own servers.
  $sudo service mariadb stop >/dev/null 2>&1 || true
  have_mariadb || { echo "deps: MariaDB is still missing after apt-get install" >&2; exit 1; }
fi

have_fstools() { command -v mkfs.ext4 >/dev/null && command -v fsfreeze >/dev/null && command -v losetup >/dev/null; }

if ! have_fstools; then
  echo "deps: installing e2fsprogs and util-linux from Debian's packages" >&2
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq e2fsprogs util-linux mount >/dev/null
  have_fstools || { echo "deps: mkfs.ext4, fsfreeze or losetup is still missing after apt-get install" >&2; exit 1; }
fi
