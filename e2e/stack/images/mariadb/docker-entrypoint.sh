#!/usr/bin/env bash
# The entrypoint of the stack's mariadb images, written here to the contract of
# the official image's (MariaDB/mariadb-docker docker-entrypoint.sh; see
# CONTRACT.md beside this file): started as root, it owns the data and socket
# directories to mysql and runs itself again as mysql; an empty datadir is
# initialised with root@localhost identified by MARIADB_ROOT_PASSWORD (or
# MYSQL_ROOT_PASSWORD, or a *_FILE of either), password only, and mariadbd
# becomes PID 1.
set -Eeo pipefail

log() { printf '%s [%s] [Entrypoint]: %s\n' "$(date --rfc-3339=seconds)" "$1" "$2"; }

# env_or_file NAME: MARIADB_NAME from itself, MYSQL_NAME, or the *_FILE of either.
env_or_file() {
  local m=MARIADB_$1 y=MYSQL_$1 val=""
  local mf=${m}_FILE yf=${y}_FILE
  if [ -n "${!m:-}" ] && [ -n "${!mf:-}" ]; then
    log ERROR "Both $m and $mf are set (but are exclusive)"
    exit 1
  fi
  if [ -n "${!m:-}" ]; then val=${!m}
  elif [ -n "${!mf:-}" ]; then val=$(<"${!mf}")
  elif [ -n "${!y:-}" ]; then val=${!y}
  elif [ -n "${!yf:-}" ]; then val=$(<"${!yf}")
  fi
  export "$m"="$val"
  unset "$mf" "$yf"
}

if [ "${1:0:1}" = '-' ]; then
  set -- mariadbd "$@"
fi
if [ "$1" != mariadbd ] && [ "$1" != mysqld ]; then
  exec "$@"
fi

datadir=/var/lib/mysql
socket=/run/mysqld/mysqld.sock
if [ "$(id -u)" = 0 ]; then
  mkdir -p "$datadir" /run/mysqld
  find "$datadir" /run/mysqld \! -user mysql -exec chown mysql: '{}' +
  exec gosu mysql "${BASH_SOURCE[0]}" "$@"
fi

env_or_file ROOT_PASSWORD
env_or_file DATABASE
env_or_file USER
env_or_file PASSWORD
: "${MARIADB_ALLOW_EMPTY_ROOT_PASSWORD:=${MYSQL_ALLOW_EMPTY_PASSWORD:-}}"
: "${MARIADB_RANDOM_ROOT_PASSWORD:=${MYSQL_RANDOM_ROOT_PASSWORD:-}}"

if [ ! -d "$datadir/mysql" ]; then
  if [ -z "$MARIADB_ROOT_PASSWORD" ] && [ -z "$MARIADB_ALLOW_EMPTY_ROOT_PASSWORD" ] && [ -z "$MARIADB_RANDOM_ROOT_PASSWORD" ]; then
    log ERROR "Database is uninitialized and password option is not specified
	You need to specify one of MARIADB_ROOT_PASSWORD, MARIADB_ROOT_PASSWORD_HASH, MARIADB_ALLOW_EMPTY_ROOT_PASSWORD and MARIADB_RANDOM_ROOT_PASSWORD"
    exit 1
  fi
  if [ -n "$MARIADB_RANDOM_ROOT_PASSWORD" ]; then
    MARIADB_ROOT_PASSWORD=$(tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32)
    log Note "GENERATED ROOT PASSWORD: $MARIADB_ROOT_PASSWORD"
  fi
  log Note "Initializing database files"
  mariadb-install-db --datadir="$datadir" --rpm --auth-root-authentication-method=normal \
    --skip-test-db --skip-log-bin --default-time-zone=SYSTEM >/dev/null
  log Note "Starting temporary server"
  "$@" --skip-networking --socket="$socket" --skip-log-bin &
  pid=$!
  for _ in $(seq 300); do
    mariadb --protocol=socket --socket="$socket" -uroot -e 'SELECT 1' >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { log ERROR "temporary server exited"; exit 1; }
    sleep 0.1
  done
  # Passwords go in as SQL string literals; a quote in one is doubled.
  q() { printf "'%s'" "${1//\'/\'\'}"; }
  {
    echo "SET @@SESSION.SQL_LOG_BIN=0;"
    echo "DROP USER IF EXISTS root@'127.0.0.1', root@'::1';"
    echo "SET PASSWORD FOR 'root'@'localhost' = PASSWORD($(q "$MARIADB_ROOT_PASSWORD"));"
    echo "CREATE USER 'root'@'%' IDENTIFIED BY $(q "$MARIADB_ROOT_PASSWORD");"
    echo "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
    [ -z "$MARIADB_DATABASE" ] || echo "CREATE DATABASE IF NOT EXISTS \`$MARIADB_DATABASE\`;"
    if [ -n "$MARIADB_USER" ]; then
      echo "CREATE USER $(q "$MARIADB_USER")@'%' IDENTIFIED BY $(q "$MARIADB_PASSWORD");"
      [ -z "$MARIADB_DATABASE" ] || echo "GRANT ALL ON \`$MARIADB_DATABASE\`.* TO $(q "$MARIADB_USER")@'%';"
    fi
  } | mariadb --protocol=socket --socket="$socket" -uroot --binary-mode
  kill "$pid"
  wait "$pid" || true
  log Note "MariaDB init process done. Ready for start up."
fi
unset MARIADB_ROOT_PASSWORD MYSQL_ROOT_PASSWORD MARIADB_PASSWORD MYSQL_PASSWORD
exec "$@"
