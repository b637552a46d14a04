#!/usr/bin/env bash
# Full backup and restore time and repository size per compress-type (zst gz lz4 none) of one
# PostgreSQL 15 cluster loaded with `pgbench -i -s $SCALE`.
#
# For each codec and each of $RUNS runs: a fresh repository (stanza-create), `pgbr backup
# --type=full` (process-max=2, start-fast=y) timed with /usr/bin/time, `du -sb` of the backup
# directory (the archive is not counted), then `pgbr restore` into a fresh directory, timed.
# Prints one table; exits 0 when every step worked.
#
# Run as root (PostgreSQL and pgbr run as the postgres OS user). Environment:
#   PGBR=/path/to/pgbr   binary to measure (default: target/release/pgbr, copied into $W)
#   W=dir                work directory (default /tmp/pgbr-bench-codecs, wiped)
#   SCALE=20 RUNS=2 CODECS="zst gz lz4 none" CIPHER=none PROCESS_MAX=2
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
W=${W:-/tmp/pgbr-bench-codecs}
SCALE=${SCALE:-20}
RUNS=${RUNS:-2}
CODECS=${CODECS:-zst gz lz4 none}
CIPHER=${CIPHER:-none}
PROCESS_MAX=${PROCESS_MAX:-2}
STANZA=bench
require_root
[[ -x /usr/bin/time ]] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null

stop_all() { stop_clusters fast "$W/src"; }
trap stop_all EXIT

stop_all
fresh_workdir "${PGBR:-target/release/pgbr}"
PORT=$(free_port)

write_conf() { # repo-dir compress-type
  cat >"$W/pgbr.conf.tmp" <<CONF
[global]
repo1-path=$1
repo1-cipher-type=$CIPHER
$([[ $CIPHER != none ]] && echo "repo1-cipher-pass=bench-passphrase")
compress-type=$2
process-max=$PROCESS_MAX
start-fast=y
lock-path=$W/lock
log-level-console=warn

[$STANZA]
pg1-path=$W/src
pg1-port=$PORT
pg1-socket-path=$W
CONF
  chown postgres:postgres "$W/pgbr.conf.tmp"
  mv "$W/pgbr.conf.tmp" "$W/pgbr.conf" # atomic: the archiver may read it at any time
}
pgbr() { as_pg "$W/pgbr" --config="$W/pgbr.conf" --stanza=$STANZA "$@"; }
# timed OUT-FILE CMD...: runs CMD as postgres under /usr/bin/time, "%e %U %S %M" into OUT-FILE.
timed() {
  local out=$1
  shift
  as_pg /usr/bin/time -o "$out" -f '%e %U %S %M' "$@"
}

echo "== initdb (port $PORT, work dir $W), pgbench -i -s $SCALE" >&2
write_conf "$W/repo-init" zst
init_cluster "$W/src" "$PORT" "$W/pgbr --config=$W/pgbr.conf --stanza=$STANZA archive-push %p"
as_pg "$PGBIN/pg_ctl" -D "$W/src" -l "$W/src.log" -w start >/dev/null
pgbr stanza-create
as_pg "$PGBIN/pgbench" -q -i -s "$SCALE" -h "$W" -p "$PORT" postgres >/dev/null 2>&1
as_pg "$PGBIN/psql" -X -At -h "$W" -p "$PORT" -d postgres -c checkpoint >/dev/null
db_bytes=$(du -sb --exclude=pg_wal "$W/src" | cut -f1)
echo "== data directory without pg_wal: $db_bytes bytes" >&2

rows=()
failed=0
for codec in $CODECS; do
  for run in $(seq 1 "$RUNS"); do
    repo=$W/repo-$codec-$run
    dest=$W/restore-$codec-$run
    write_conf "$repo" "$codec"
    pgbr stanza-create
    lb=$(load1)
    if ! timed "$W/t-backup" "$W/pgbr" --config="$W/pgbr.conf" --stanza=$STANZA backup --type=full 2>"$W/err-backup-$codec-$run"; then
      echo "backup $codec run $run FAILED: $(cat "$W/err-backup-$codec-$run")" >&2
      failed=1
      continue
    fi
    read -r b_wall b_user b_sys b_rss <"$W/t-backup"
    size=$(du -sb "$repo/backup" | cut -f1)
    lr=$(load1)
    if ! timed "$W/t-restore" "$W/pgbr" --config="$W/pgbr.conf" --stanza=$STANZA restore --pg1-path="$dest" 2>"$W/err-restore-$codec-$run"; then
      echo "restore $codec run $run FAILED: $(cat "$W/err-restore-$codec-$run")" >&2
      failed=1
      r_wall=- r_user=- r_sys=- r_rss=0
    else
      read -r r_wall r_user r_sys r_rss <"$W/t-restore"
    fi
    restored=$(du -sb --exclude=pg_wal "$dest" 2>/dev/null | cut -f1 || echo 0)
    rows+=("$(printf '%-5s %3s %8s %7s %6s %6d %10.1f %6.3f %6s %9s %7s %6s %6d %6s %10.1f' \
      "$codec" "$run" "$b_wall" "$b_user" "$b_sys" $((b_rss / 1024)) \
      "$(echo "$size / 1048576" | bc -l)" "$(echo "$size / $db_bytes" | bc -l)" "$lb" \
      "$r_wall" "$r_user" "$r_sys" $((r_rss / 1024)) "$lr" "$(echo "${restored:-0} / 1048576" | bc -l)")")
    rm -rf "$dest"
  done
done
stop_all

echo
echo "pgbr full backup / restore by compress-type: pgbench -i -s $SCALE, data directory (without pg_wal) $(echo "$db_bytes / 1048576" | bc) MiB,"
echo "process-max=$PROCESS_MAX, start-fast=y, cipher $CIPHER, $(nproc) cores; times in s (wall, user, sys), RSS in MiB (max of one process), load = 1-min load average at start"
printf '%-5s %3s %8s %7s %6s %6s %10s %6s %6s %9s %7s %6s %6s %6s %10s\n' \
  codec run bk_wall bk_user bk_sys bk_rss repo_MiB ratio load rs_wall rs_user rs_sys rs_rss load restored_MiB
for r in "${rows[@]}"; do echo "$r"; done
exit $failed
