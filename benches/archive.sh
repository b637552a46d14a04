#!/usr/bin/env bash
# archive-push / archive-get throughput of pgbr, synchronous and asynchronous (spool), over 64 real
# 16 MiB WAL segments of one PostgreSQL 15 cluster.
#
# The cluster (initdb --wal-segsize=16) archives with `cp` into $W/wal while `pgbench -i -s 5`
# runs repeatedly until $NSEG segments exist; every repository is stanza-created while it runs,
# then it is stopped and the measurements run without a server:
#   (a) push sync:    $NSEG `pgbr archive-push` one after another into a fresh repository
#   (b) push async:   archive-async=y, process-max=$PROCESS_MAX, the segments in a pg_wal directory
#                     with their archive_status/<segment>.ready markers (as PostgreSQL leaves them):
#                     the $NSEG foreground calls, each returning once the background worker pushed
#                     its segment (it pushes the ready ones ahead), then until the worker exited
#                     (it idles 5 s before it exits)
#   (c) get sync:     $NSEG `pgbr archive-get` one after another
#   (d) get async:    archive-async=y, archive-get-queue-max=$GET_QUEUE_MAX: the first call starts a
#                     prefetch worker, later ones are served from <spool>/archive/<stanza>/in/
#                     ("spool hits" counts the calls whose segment was already there)
# Every fetched segment is compared with the original. Prints one table; exits 0 when every call
# succeeded.
#
# Run as root. Environment: PGBR (binary, default target/release/pgbr), W (work dir, default
# /tmp/pgbr-bench-archive, wiped), NSEG=64, RUNS=2, COMPRESS=zst, CIPHER=none, PROCESS_MAX=2,
# GET_QUEUE_MAX=256MB.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
W=${W:-/tmp/pgbr-bench-archive}
NSEG=${NSEG:-64}
RUNS=${RUNS:-2}
COMPRESS=${COMPRESS:-zst}
CIPHER=${CIPHER:-none}
PROCESS_MAX=${PROCESS_MAX:-2}
GET_QUEUE_MAX=${GET_QUEUE_MAX:-256MB}
STANZA=bench
require_root
stop_all() { stop_clusters fast "$W/src"; }
trap stop_all EXIT
# Waits until no process started from $W (background pgbr workers) is left, at most $1 seconds.
wait_workers() {
  local deadline=$(($(date +%s) + $1))
  while pgrep -f "$W/pgbr" >/dev/null; do
    (($(date +%s) < deadline)) || { echo "workers still running after $1 s" >&2; return 1; }
    sleep 0.05
  done
}

stop_all
fresh_workdir "${PGBR:-target/release/pgbr}" wal
PORT=$(free_port 54322)

conf() { # name repo [extra lines...]
  local name=$1 repo=$2
  shift 2
  {
    echo "[global]"
    echo "repo1-path=$repo"
    echo "repo1-cipher-type=$CIPHER"
    [[ $CIPHER != none ]] && echo "repo1-cipher-pass=bench-passphrase"
    echo "compress-type=$COMPRESS"
    echo "process-max=$PROCESS_MAX"
    echo "lock-path=$W/lock"
    echo "log-level-console=warn"
    for l in "$@"; do echo "$l"; done
    echo
    echo "[$STANZA]"
    echo "pg1-path=$W/src"
    echo "pg1-port=$PORT"
    echo "pg1-socket-path=$W"
  } >"$W/$name.conf"
  chown postgres:postgres "$W/$name.conf"
}
pgbr() { local c=$1; shift; as_pg "$W/pgbr" --config="$W/$c.conf" --stanza=$STANZA "$@"; }

for run in $(seq 1 "$RUNS"); do
  conf "sync-$run" "$W/repo-sync-$run"
  conf "async-$run" "$W/repo-async-$run" "archive-async=y" "spool-path=$W/spool-push-$run"
  conf "getasync-$run" "$W/repo-sync-$run" "archive-async=y" "spool-path=$W/spool-get-$run" \
    "archive-get-queue-max=$GET_QUEUE_MAX"
done

echo "== initdb --wal-segsize=16 (port $PORT, work dir $W), WAL until $NSEG segments are archived" >&2
init_cluster "$W/src" "$PORT" "test ! -f $W/wal/%f && cp %p $W/wal/%f"
as_pg "$PGBIN/pg_ctl" -D "$W/src" -l "$W/src.log" -w start >/dev/null
for run in $(seq 1 "$RUNS"); do
  pgbr "sync-$run" stanza-create
  pgbr "async-$run" stanza-create
done
nseg() { find "$W/wal" -maxdepth 1 -regextype posix-extended -regex '.*/[0-9A-F]{24}' | wc -l; }
while (($(nseg) < NSEG)); do
  as_pg "$PGBIN/pgbench" -q -i -s 5 -h "$W" -p "$PORT" postgres >/dev/null 2>&1
  as_pg "$PGBIN/psql" -X -At -h "$W" -p "$PORT" -d postgres -c "select pg_switch_wal()" >/dev/null
  for _ in $(seq 1 100); do
    [[ -z $(find "$W/src/pg_wal/archive_status" -name '*.ready') ]] && break
    sleep 0.1
  done
done
stop_all
mapfile -t SEGS < <(find "$W/wal" -maxdepth 1 -regextype posix-extended -regex '.*/[0-9A-F]{24}' -printf '%f\n' | sort | head -n "$NSEG")
echo "== segments ${SEGS[0]} .. ${SEGS[-1]} (${#SEGS[@]})" >&2
# The asynchronous worker pushes what PostgreSQL marked ready in pg_wal/archive_status.
mkdir -p "$W/apg/pg_wal/archive_status"
for s in "${SEGS[@]}"; do
  cp "$W/wal/$s" "$W/apg/pg_wal/$s"; : >"$W/apg/pg_wal/archive_status/$s.ready"
done
chown -R postgres:postgres "$W/apg"

rows=()
failed=0
row() { # test run calls failures seconds [note]
  local sps
  sps=$(echo "$3 / $4" | bc -l)
  rows+=("$(printf '%-26s %3s %5s %5s %8.3f %8.1f %8.1f %6s  %s' "$1" "$2" "$3" "$5" "$4" "$sps" \
    "$(echo "$sps * 16" | bc -l)" "$6" "${7:-}")")
}
repo_count() { find "$1/archive" -type f -regextype posix-extended -regex '.*/[0-9A-F]{24}-[0-9a-f]+(\..*)?' 2>/dev/null | wc -l; }
check_fetched() { # dir: compares every fetched segment with the original
  local bad=0 s
  for s in "${SEGS[@]}"; do cmp -s "$W/wal/$s" "$1/$s" || bad=$((bad + 1)); done
  echo "$bad"
}
push_all() { # config error-file dir: archive-push of every segment in dir, one call each; $fail counts failures
  local s
  fail=0
  for s in "${SEGS[@]}"; do
    pgbr "$1" archive-push "$3/$s" 2>>"$2" || fail=$((fail + 1))
  done
}

for run in $(seq 1 "$RUNS"); do
  # (a) sync push
  sync; l=$(load1); t0=$(now)
  push_all "sync-$run" "$W/err-push-sync-$run" "$W/wal"
  t1=$(now)
  n=$(repo_count "$W/repo-sync-$run")
  row "push sync" "$run" "${#SEGS[@]}" "$(echo "$t1 - $t0" | bc -l)" "$fail" "$l" "$n in repository"
  ((fail == 0 && n == ${#SEGS[@]})) || failed=1

  # (b) async push
  sync; l=$(load1); t0=$(now)
  push_all "async-$run" "$W/err-push-async-$run" "$W/apg/pg_wal"
  t1=$(now)
  wait_workers 120 || failed=1
  t2=$(now)
  n=$(repo_count "$W/repo-async-$run")
  row "push async" "$run" "${#SEGS[@]}" "$(echo "$t1 - $t0" | bc -l)" "$fail" "$l" "$n in repository; worker exited at $(printf '%.2f' "$(echo "$t2 - $t0" | bc -l)") s"
  ((fail == 0 && n == ${#SEGS[@]})) || failed=1
  if [[ -n $(find "$W/spool-push-$run/archive/$STANZA/out" -name '*.error' 2>/dev/null) ]]; then
    echo "async push run $run left errors: $(cat "$W/spool-push-$run/archive/$STANZA/out"/*.error)" >&2
    failed=1
  fi

  # (c) sync get
  dest=$W/get-sync-$run
  as_pg mkdir -p "$dest"
  sync; l=$(load1); fail=0; t0=$(now)
  for s in "${SEGS[@]}"; do
    pgbr "sync-$run" archive-get "$s" "$dest/$s" 2>>"$W/err-get-sync-$run" || fail=$((fail + 1))
  done
  t1=$(now)
  bad=$(check_fetched "$dest")
  row "get sync" "$run" "${#SEGS[@]}" "$(echo "$t1 - $t0" | bc -l)" "$fail" "$l" "$bad differ from the original"
  ((fail == 0 && bad == 0)) || failed=1
  rm -rf "$dest"

  # (d) async get (prefetch)
  dest=$W/get-async-$run
  in=$W/spool-get-$run/archive/$STANZA/in
  as_pg mkdir -p "$dest"
  sync; l=$(load1); fail=0; hits=0; t0=$(now)
  for s in "${SEGS[@]}"; do
    [[ -f $in/$s ]] && hits=$((hits + 1))
    pgbr "getasync-$run" archive-get "$s" "$dest/$s" 2>>"$W/err-get-async-$run" || fail=$((fail + 1))
  done
  t1=$(now)
  wait_workers 120 || failed=1
  t2=$(now)
  bad=$(check_fetched "$dest")
  row "get async (prefetch)" "$run" "${#SEGS[@]}" "$(echo "$t1 - $t0" | bc -l)" "$fail" "$l" "$hits spool hits, $bad differ; workers done at $(printf '%.2f' "$(echo "$t2 - $t0" | bc -l)") s"
  ((fail == 0 && bad == 0)) || failed=1
  rm -rf "$dest"
done

for f in "$W"/err-*; do
  [[ -s $f ]] && { echo "--- $f"; sort "$f" | uniq -c | head -5; } >&2
done

echo
echo "pgbr archive-push / archive-get, ${#SEGS[@]} WAL segments of 16 MiB (pgbench -i -s 5 WAL), compress-type $COMPRESS, cipher $CIPHER,"
echo "process-max=$PROCESS_MAX, archive-get-queue-max=$GET_QUEUE_MAX, $(nproc) cores; calls run one after another; load = 1-min load average at start"
printf '%-26s %3s %5s %5s %8s %8s %8s %6s  %s\n' test run calls fail seconds seg/s MiB/s load note
for r in "${rows[@]}"; do echo "$r"; done
exit $failed
