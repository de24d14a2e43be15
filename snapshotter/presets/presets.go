package presets

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"time"
)

// Preset is one built-in hook: snapgate's own fixed scripts, never a user's
// text.
type Preset struct {
	// Does says in a few words what the preset does, for messages.
	Does string
	// Pre runs before the cut, Post after it.
	Pre, Post []string
	// FreezesMounts: Pre and Post take, as their last arguments, the paths at
	// which the hook container mounts the StatefulSet's volumes.
	FreezesMounts bool
	// Verify checks, in a pod restored from a set, that the application
	// serves the restored data (empty: the preset has no check); Checks says
	// what it checks.
	Verify []string
	Checks string
}

// Names are the presets' names, in the order messages list them: the
// databases first, then the rest by name.
func Names() []string {
	rank := func(name string) int {
		if i := slices.Index([]string{"postgres", "mysql", "mongodb"}, name); i >= 0 {
			return i
		}
		return 3
	}
	names := slices.Collect(maps.Keys(All))
	slices.SortFunc(names, func(a, b string) int { return cmp.Or(cmp.Compare(rank(a), rank(b)), cmp.Compare(a, b)) })
	return names
}

// All are the built-in presets, by the name snapgate.io/hook-preset gives: a
// new preset is one entry here, which the policy's check of the annotation and
// the hooks' runner both read.
var All = map[string]Preset{
	// PostgreSQL's CHECKPOINT writes every dirty buffer and a checkpoint record,
	// so a snapshot cut right after starts with little WAL to replay. It runs as
	// the image's superuser, whatever user exec runs as (root in the official
	// image, where no role "root" exists; uid 1001 without a passwd entry in
	// Bitnami's), with the password the image was given where local
	// connections ask for one (Bitnami's md5).
	// Its check connects to every database that allows connections and reads
	// its catalog: a server that failed recovery accepts none.
	"postgres": {Does: "CHECKPOINT", Pre: []string{"sh", "-c", postgresCheckpoint, "snapgate-postgres"},
		Verify: []string{"sh", "-c", postgresVerify, "snapgate-postgres"}, Checks: "every database accepts a connection and reads its catalog"},
	// A MySQL or MariaDB read lock lasts only while its session does. The
	// pre-hook leaves the session running in the pod, holding the lock, and
	// returns once the lock is held; the post-hook (after the cut) ends the
	// session. If snapgate never gets to the post-hook, the session ends by
	// itself after MySQLLockBound. These are snapgate's own fixed scripts,
	// never a user's text.
	"mysql": {Does: "a read lock held in an open session until the cut", Pre: []string{"sh", "-c", mysqlLock}, Post: []string{"sh", "-c", mysqlUnlock},
		Verify: []string{"sh", "-c", mysqlVerify}, Checks: "the server answers and lists its tables"},
	// MongoDB's fsyncLock flushes to disk and blocks writes until fsyncUnlock,
	// whether or not the session that took it lives on; the pre-hook leaves a
	// watchdog in the pod that unlocks after MongoDBLockBound if snapgate never
	// gets to the post-hook.
	"mongodb": {
		Does:   "fsyncLock until the cut, with a watchdog in the pod",
		Pre:    []string{"sh", "-c", mongoLock, "snapgate-mongodb", fmt.Sprint(int(MongoDBLockBound.Seconds())), mongoWatchdog},
		Post:   []string{"sh", "-c", mongoUnlock},
		Verify: []string{"sh", "-c", mongoVerify}, Checks: "the server answers a ping and lists its databases",
	},
	// fsfreeze freezes the filesystem of each of the StatefulSet's volumes, as
	// the container mounts them: writes wait, and what was written is on disk.
	// The pre-hook leaves a watchdog in the pod that thaws after FreezeBound if
	// snapgate never gets to the post-hook. The container needs CAP_SYS_ADMIN.
	"fsfreeze": {
		Does:          "the volumes' filesystems frozen, with a watchdog in the pod",
		Pre:           []string{"sh", "-c", fsfreezeFreeze, "snapgate-fsfreeze", fmt.Sprint(int(FreezeBound.Seconds()))},
		Post:          []string{"sh", "-c", fsfreezeThaw, "snapgate-fsfreeze"},
		FreezesMounts: true,
	},
}

// shellFirst defines first NAME...: the value of the first NAME that is set, or
// the contents of the file its NAME_FILE names, as the official images and
// Bitnami's read credentials (a Secret mounted as a file).
const shellFirst = `first() {
  for v; do
    eval "x=\${$v:-}; f=\${${v}_FILE:-}"
    if [ -n "$x" ]; then printf '%s' "$x"; return; fi
    if [ -n "$f" ] && [ -r "$f" ]; then cat "$f"; return; fi
  done
}
`

// postgresCheckpoint connects as the superuser of the image: the official
// image's POSTGRES_USER (default postgres; docker-library/postgres
// docker-entrypoint.sh runs initdb --username="$POSTGRES_USER"), or postgres in
// Bitnami's (bitnami/containers postgresql: a POSTGRESQL_USERNAME other than
// postgres is not a superuser, and postgres's password is then
// POSTGRESQL_POSTGRES_PASSWORD). Each value may come from a *_FILE, as both
// images allow. The database is postgres, which exists whatever POSTGRES_DB
// says. The socket is the client's default, which is where both images' servers
// listen.
const postgresCheckpoint = postgresClient + `exec psql -X -q -v ON_ERROR_STOP=1 -U "${user:-postgres}" -d postgres -c CHECKPOINT
`

// postgresVerify reads the catalog of every database that allows
// connections, as the superuser the checkpoint connects as.
const postgresVerify = postgresClient + `q() { psql -X -A -t -q -v ON_ERROR_STOP=1 -U "${user:-postgres}" "$@"; }
dbs=$(q -d postgres -c "SELECT datname FROM pg_database WHERE datallowconn ORDER BY 1") || exit 1
n=0
while IFS= read -r db; do
  [ -n "$db" ] || continue
  q -d "$db" -c "SELECT count(*) FROM pg_catalog.pg_class" >/dev/null || { echo "snapgate postgres: database $db does not answer" >&2; exit 1; }
  n=$((n+1))
done <<DBS
$dbs
DBS
echo "$n databases answer"
`

// postgresClient sets user and PGPASSWORD for psql, as postgresCheckpoint says.
const postgresClient = "set -u\n" + shellFirst + `if [ -n "${BITNAMI_APP_NAME:-}" ]; then
  user=postgres
  custom=$(first POSTGRESQL_USERNAME POSTGRES_USER)
  if [ -n "$custom" ] && [ "$custom" != postgres ]; then pw=$(first POSTGRESQL_POSTGRES_PASSWORD POSTGRES_POSTGRES_PASSWORD)
  else pw=$(first POSTGRESQL_PASSWORD POSTGRES_PASSWORD); fi
else
  user=$(first POSTGRES_USER)
  pw=$(first POSTGRES_PASSWORD)
fi
[ -n "${PGPASSWORD:-}" ] || [ -z "$pw" ] || export PGPASSWORD="$pw"
command -v psql >/dev/null 2>&1 || { echo "snapgate postgres: no psql in this container's PATH" >&2; exit 127; }
`

// MongoDBLockBound is how long the mongodb preset's lock can outlive a
// snapgate that never unlocks: above the longest admission request.
const MongoDBLockBound = 60 * time.Second

// mongoClient runs JavaScript with mongosh (or the legacy mongo shell) as the
// official image's root user, or the Bitnami image's, where the container sets
// one, and with the shell's defaults otherwise. The token file says which lock
// is snapgate's current one, so that an earlier watchdog never unlocks a later
// lock.
const mongoClient = shellFirst + `m=mongosh; command -v mongosh >/dev/null 2>&1 || m=mongo
command -v "$m" >/dev/null 2>&1 || { echo "snapgate mongodb: neither mongosh nor mongo is in this container's PATH" >&2; exit 127; }
mongo_user=$(first MONGO_INITDB_ROOT_USERNAME); mongo_pw=$(first MONGO_INITDB_ROOT_PASSWORD)
bitnami_pw=$(first MONGODB_ROOT_PASSWORD)
mongo_eval() {
  if [ -n "$mongo_user" ]; then
    "$m" --quiet -u "$mongo_user" -p "$mongo_pw" --authenticationDatabase admin --eval "$1"
  elif [ -n "$bitnami_pw" ]; then
    "$m" --quiet -u "${MONGODB_ROOT_USER:-root}" -p "$bitnami_pw" --authenticationDatabase admin --eval "$1"
  else
    "$m" --quiet --eval "$1"
  fi
}
token="${TMPDIR:-/tmp}/snapgate-mongodb-lock"
`

// mongoUnlockBody unlocks only a lock of snapgate's (the token is there), and
// removes the token only once unlocked, so that a retry still unlocks.
const mongoUnlockBody = `[ -e "$token" ] || exit 0
out=$(mongo_eval 'db.fsyncUnlock()' 2>&1) || case "$out" in *"not locked"*) ;; *) echo "$out" >&2; exit 1;; esac
rm -f "$token"
`

// mongoLock runs as: sh -c mongoLock NAME BOUND WATCHDOG.
var mongoLock = "set -u\nbound=$1; wd=$2\n" + mongoClient + `id="$$-$(date +%s)"
echo "$id" >"$token" || exit 1
# The watchdog starts before the lock, so no lock is ever without one.
setsid sh -c "$wd" snapgate-mongodb-watchdog "$bound" "$id" </dev/null >/dev/null 2>&1 &
out=$(mongo_eval 'db.fsyncLock()' 2>&1) || { echo "$out" >&2; rm -f "$token"; exit 1; }
`

var mongoUnlock = "set -u\n" + mongoClient + mongoUnlockBody

// mongoVerify pings the server and counts its databases.
var mongoVerify = "set -u\n" + mongoClient + `mongo_eval 'if (db.adminCommand({ping: 1}).ok !== 1) { quit(1) }; print(db.adminCommand({listDatabases: 1, nameOnly: true}).databases.length + " databases")'
`

// mongoWatchdog runs as: sh -c mongoWatchdog NAME BOUND ID.
var mongoWatchdog = "cd /; sleep \"$1\"; id=$2\n" + mongoClient + `[ "$(cat "$token" 2>/dev/null)" = "$id" ] || exit 0
` + mongoUnlockBody

// FreezeBound is how long the fsfreeze preset's freeze can outlive a snapgate
// that never thaws it: above the longest admission request.
const FreezeBound = 60 * time.Second

// fsfreezeToken makes the paths absolute and physical (the watchdog runs in
// "/", so that it pins no mount) and names the file that says which freeze of
// them is current, so that the watchdog of an earlier freeze never thaws a
// later one. The file is written before the freeze and removed after the thaw,
// so it may even sit on a frozen volume.
const fsfreezeToken = `for p; do
  shift
  a=$(cd "$p" && pwd -P) || { echo "snapgate fsfreeze: cannot reach $p" >&2; exit 1; }
  set -- "$@" "$a"
done
token="${TMPDIR:-/tmp}/snapgate-fsfreeze-$(printf '%s\n' "$@" | cksum | cut -d' ' -f1)"
`

// fsfreezeFreeze runs as: sh -c fsfreezeFreeze NAME BOUND PATH...
var fsfreezeFreeze = `set -u
bound=$1; shift
for tool in fsfreeze setsid; do
  command -v "$tool" >/dev/null 2>&1 || { echo "snapgate fsfreeze: no $tool in this container's PATH (util-linux and busybox have it)" >&2; exit 127; }
done
# CAP_SYS_ADMIN is bit 21 of the effective set.
cap=0
while read -r key val; do [ "$key" = CapEff: ] && cap=$val; done </proc/self/status
if [ $(( 0x$cap >> 21 & 1 )) -ne 1 ]; then
  echo "snapgate fsfreeze: this container lacks CAP_SYS_ADMIN, which freezing a filesystem needs: run the hook container privileged (securityContext.privileged: true) or add the capability SYS_ADMIN" >&2
  exit 1
fi
` + fsfreezeToken + `id="$$-$(date +%s)"
echo "$id" >"$token" || exit 1
# The watchdog starts before the first freeze, so no freeze is ever without one.
setsid sh -c 'cd /; sleep "$1"; t=$2; id=$3; shift 3
[ "$(cat "$t" 2>/dev/null)" = "$id" ] || exit 0
for p; do fsfreeze --unfreeze "$p"; done; rm -f "$t"' snapgate-fsfreeze-watchdog "$bound" "$token" "$id" "$@" </dev/null >/dev/null 2>&1 &
n=0
for p; do
  if ! fsfreeze --freeze "$p"; then
    # Thaw what this hook froze before failing.
    i=0
    for q; do [ "$i" -lt "$n" ] || break; fsfreeze --unfreeze "$q"; i=$((i+1)); done
    rm -f "$token"; exit 1
  fi
  n=$((n+1))
done
`

// fsfreezeThaw runs as: sh -c fsfreezeThaw NAME PATH... A filesystem that is
// not frozen (the watchdog was first) is fine.
var fsfreezeThaw = `set -u
` + fsfreezeToken + `rc=0
for p; do
  out=$(fsfreeze --unfreeze "$p" 2>&1) || case "$out" in *"Invalid argument"*) ;; *) echo "$out" >&2; rc=1;; esac
done
rm -f "$token"
exit $rc
`

// MySQLLockBound is how long the mysql preset's read lock can outlive a
// snapgate that never releases it: above the longest admission request.
const MySQLLockBound = 60 * time.Second

// mysqlClient picks the client (the mariadb 11 images have no mysql command,
// MySQL's have no mariadb) and root's password where the image sets one
// (MARIADB_ROOT_PASSWORD or MYSQL_ROOT_PASSWORD, or the file a *_FILE of
// either names), else the client's own configuration. The record file keeps
// the lock's session id (first line) and, once the lock is held, "locked".
const mysqlClient = shellFirst + `c=mariadb; command -v mariadb >/dev/null 2>&1 || c=mysql
command -v "$c" >/dev/null 2>&1 || { echo "snapgate mysql: neither mariadb nor mysql is in this container's PATH" >&2; exit 127; }
auth=""
if [ -n "${MARIADB_ROOT_PASSWORD+x}${MARIADB_ROOT_PASSWORD_FILE+x}${MYSQL_ROOT_PASSWORD+x}${MYSQL_ROOT_PASSWORD_FILE+x}" ]; then
  MYSQL_PWD=$(first MARIADB_ROOT_PASSWORD MYSQL_ROOT_PASSWORD); export MYSQL_PWD; auth=-uroot
fi
lock="${TMPDIR:-/tmp}/snapgate-mysql-lock"
`

// mysqlLock starts the session in the background (its output goes to files,
// so the exec ends while it runs; no setsid, which MySQL's images lack). The
// session prints its id before it asks for the lock, so that the post-hook can
// end it even when the pre-hook gave up waiting for the lock.
var mysqlLock = "set -u\n" + mysqlClient + `rm -f "$lock" "$lock.err"
"$c" $auth --unbuffered -N -B -e "SELECT CONNECTION_ID(); FLUSH TABLES WITH READ LOCK; SELECT 'locked'; DO SLEEP(` +
	fmt.Sprint(int(MySQLLockBound.Seconds())) + `)" >"$lock" 2>"$lock.err" </dev/null &
pid=$!
while :; do
  id=""; state=""
  { read -r id; read -r state; } 2>/dev/null <"$lock" || :
  [ "$state" = locked ] && exit 0
  if ! kill -0 "$pid" 2>/dev/null; then cat "$lock.err" >&2; rm -f "$lock" "$lock.err"; exit 1; fi
  sleep 0.05
done
`

// mysqlVerify asks the server for its tables, which reads every schema's
// data dictionary.
var mysqlVerify = "set -u\n" + mysqlClient + `n=$("$c" $auth -N -B -e "SELECT COUNT(*) FROM information_schema.TABLES") || exit 1
echo "$n tables"
`

// mysqlUnlock ends the session whose id the pre-hook recorded, locked or still
// waiting for the lock; a session that has ended by itself is fine too.
var mysqlUnlock = "set -u\n" + mysqlClient + `[ -s "$lock" ] || exit 0
id=""
{ read -r id; } <"$lock" || :
rm -f "$lock" "$lock.err"
[ -n "$id" ] || exit 0
out=$("$c" $auth -e "KILL $id" 2>&1) || case "$out" in *"Unknown thread id"*) ;; *) echo "$out" >&2; exit 1;; esac
`
