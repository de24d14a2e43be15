#!/bin/bash
# The entrypoint of the stack's image in the shape of Bitnami's PostgreSQL,
# written here to the contract of bitnami/containers' postgresql scripts (see
# CONTRACT.md beside this file): run as uid 1001, which has no passwd entry (the
# server is given one through nss_wrapper, in its own process tree only); an
# empty data directory is initialised with the postgres superuser's password
# from POSTGRESQL_PASSWORD / POSTGRES_PASSWORD or their *_FILE, and local
# connections (a socket in /tmp, and loopback) ask for it (md5).
set -Eeo pipefail

# first_of NAME...: the value of the first NAME, or of NAME_FILE's file, that is set.
first_of() {
  local n f
  for n in "$@"; do
    f=${n}_FILE
    if [ -n "${!n:-}" ]; then printf '%s' "${!n}"; return; fi
    if [ -n "${!f:-}" ] && [ -r "${!f}" ]; then cat "${!f}"; return; fi
  done
}

export POSTGRESQL_DATA_DIR=${POSTGRESQL_DATA_DIR:-${POSTGRES_DATA_DIR:-${PGDATA:-/bitnami/postgresql/data}}}
export POSTGRESQL_PASSWORD=$(first_of POSTGRESQL_PASSWORD POSTGRES_PASSWORD)
export POSTGRESQL_PORT_NUMBER=${POSTGRESQL_PORT_NUMBER:-5432}

# uid 1001 has no passwd entry: initdb and the server look their user up.
if ! getent passwd "$(id -u)" >/dev/null; then
  export NSS_WRAPPER_PASSWD=/opt/bitnami/postgresql/tmp/nss_passwd NSS_WRAPPER_GROUP=/opt/bitnami/postgresql/tmp/nss_group
  echo "postgres:x:$(id -u):$(id -g):PostgreSQL:/bitnami/postgresql:/bin/false" >"$NSS_WRAPPER_PASSWD"
  echo "postgres:x:$(id -g):" >"$NSS_WRAPPER_GROUP"
  export LD_PRELOAD=$NSS_WRAPPER_LIB
fi

info() { echo "postgresql $(date +%T.%2N) INFO  ==> $*"; }

if [ ! -s "$POSTGRESQL_DATA_DIR/PG_VERSION" ]; then
  if [ -z "$POSTGRESQL_PASSWORD" ] && [ "${ALLOW_EMPTY_PASSWORD:-no}" != yes ]; then
    echo "postgresql ERROR ==> The POSTGRESQL_PASSWORD environment variable is empty or not set. Set the environment variable ALLOW_EMPTY_PASSWORD=yes to allow the container to be started with blank passwords. This is recommended only for development." >&2
    exit 1
  fi
  info "Initializing PostgreSQL database..."
  mkdir -p "$POSTGRESQL_DATA_DIR"
  chmod 0700 "$POSTGRESQL_DATA_DIR"
  initdb -E UTF8 -D "$POSTGRESQL_DATA_DIR" -U postgres >/dev/null
  hba() {
    printf '%s\n' "local all all $1" "host all all 127.0.0.1/32 $1" "host all all ::1/128 $1" \
      "host all all 0.0.0.0/0 $1" "host all all ::/0 $1" >"$POSTGRESQL_DATA_DIR/pg_hba.conf"
  }
  cat >>"$POSTGRESQL_DATA_DIR/postgresql.conf" <<CONF
listen_addresses = '*'
port = $POSTGRESQL_PORT_NUMBER
unix_socket_directories = '/tmp'
CONF
  # Trust while the password is set, then md5 (trust with an empty password).
  hba trust
  if [ -n "$POSTGRESQL_PASSWORD" ]; then
    pg_ctl -D "$POSTGRESQL_DATA_DIR" -o "-c listen_addresses=''" -w start >/dev/null
    psql -h /tmp -p "$POSTGRESQL_PORT_NUMBER" -U postgres -d postgres -v ON_ERROR_STOP=1 -q \
      --set pw="$POSTGRESQL_PASSWORD" <<<"ALTER ROLE postgres WITH PASSWORD :'pw';"
    pg_ctl -D "$POSTGRESQL_DATA_DIR" -m fast -w stop >/dev/null
    hba md5
  fi
  info "PostgreSQL setup finished!"
fi
unset POSTGRESQL_PASSWORD POSTGRES_PASSWORD
info "** Starting PostgreSQL **"
exec "$@"
