#!/bin/bash
# pgbr vs pgBackRest (Debian's `pgbackrest`) -- and pg_basebackup for full backups -- on ONE
# PostgreSQL 15 cluster, in one run, alternating the tools on the same data with the same settings
# (compress-type=zst, compress-level=3, process-max=2, start-fast=y), first without encryption,
# then with AES-256-CBC for both (CIPHERS).
#
# Steps per cipher: stanza-create, full backup (+ pg_basebackup), incr backup after a fixed pgbench
# run, restore to a new directory, delta restore after damaging a few files, archive-push of
# $SEGMENTS WAL segments (sync, one process per segment, as archive_command runs it), archive-get
# of the same segments. Each step: wall seconds, CPU seconds (user+sys), peak RSS (KB) from
# /usr/bin/time, repository bytes where it applies, and the ratio pgbr / pgBackRest.
# Then the same archive-push and archive-get with archive-async=y (ASYNC=0 skips them): the
# segments lie in <pg1-path>/pg_wal of a copy of the data directory's control file, each with its
# archive_status/<segment>.ready (both tools' asynchronous workers push the files marked ready,
# ahead of the calls), and a step is timed until every segment is in the repository (each call
# returns once its own segment is). CPU and peak RSS there are the foreground calls' only (the
# background workers are not children the shell waits for). benches/archive.sh measures pgbr's
# sync and async archiving against each other.
#
# It measures, it does not judge: a failing step is recorded ("unsupported" for a pgbr command
# pgbr does not have; "failed" otherwise) and the run goes on; exit 0
# whatever the numbers. Run it as root on a throwaway machine: it may apt-get install `pgbackrest`,
# `time` and `postgresql-15`, and runs the tools as the `postgres` OS user.
#
# Usage:  SCALE=100 bash benches/compare.sh            -> table on stdout, JSON lines in $W/results.jsonl
# Knobs:  SCALE (pgbench scale, 10)   RANDOM_ROWS (rows of barely compressible data, 200000)
#         MANY_TABLES (extra small tables, 0)   CIPHER (one of none, aes-256-cbc; default: both,
#         i.e. CIPHERS="none aes-256-cbc")   SEGMENTS (64)   PROCS (2)   LEVEL (3)
#         PG_BASEBACKUP (1)   TOOLS ("pgbr pgbackrest")   PGBR (a prebuilt binary; default: build)
#         BENCH_DIR (/tmp/pgbr-compare)   PORT (54331)   PGBIN (/usr/lib/postgresql/15/bin)
#         DROP_CACHES (1: sync and drop the page cache before every timed step; 0: only sync)
#         ASYNC (1: also archive-push and archive-get with archive-async=y; 0: sync only)
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
W=${BENCH_DIR:-/tmp/pgbr-compare}
. "$HERE/common.sh"
SCALE=${SCALE:-10}
RANDOM_ROWS=${RANDOM_ROWS:-200000}
MANY_TABLES=${MANY_TABLES:-0}
CIPHERS=${CIPHER:-${CIPHERS:-none aes-256-cbc}}
SEGMENTS=${SEGMENTS:-64}
PROCS=${PROCS:-2}
LEVEL=${LEVEL:-3}
PORT=${PORT:-54331}
TOOLS=${TOOLS:-"pgbr pgbackrest"}
PASS=bench-passphrase-not-a-secret

die() { echo "compare.sh: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "run as root (the tools run as the postgres OS user)"

# --- prerequisites ---------------------------------------------------------------------------
need_apt=()
[[ -x /usr/bin/time ]] || need_apt+=(time)
[[ -x $PGBIN/initdb ]] || need_apt+=(postgresql-15)
[[ " $TOOLS " == *" pgbackrest "* && ! -x /usr/bin/pgbackrest ]] && need_apt+=(pgbackrest)
if ((${#need_apt[@]})); then
  echo "installing ${need_apt[*]} ..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}") >/dev/null ||
    die "apt-get install ${need_apt[*]} failed"
fi
id postgres >/dev/null 2>&1 || die "no postgres OS user"

if [[ -z ${PGBR:-} ]]; then
  echo "building pgbr (release) ..."
  built=y; (cd "$ROOT" && cargo build --release -q -p pgbr-cli) || built=n
  tdir=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
  PGBR=${tdir:-$ROOT/target}/release/pgbr
  if [[ $built == n ]]; then
    [[ -x $PGBR ]] || die "cargo build --release failed"
    echo "WARNING: cargo build --release failed; using the existing $PGBR ($(date -r "$PGBR" '+%F %T'))"
  fi
fi
[[ -x $PGBR ]] || die "no pgbr binary at $PGBR"

# --- helpers ---------------------------------------------------------------------------------
sql() { as_pg "$PGBIN/psql" -X -q -At -h "$W" -p "$PORT" -d postgres -c "$*"; }
cleanup() { stop_clusters immediate "$W"/src "$W"/dst-*; }
trap cleanup EXIT
cleanup; rm -rf "$W"; mkdir -p "$W/bin" "$W/wal"; chown -R postgres:postgres "$W"
install -m 755 "$PGBR" "$W/bin/pgbr"   # readable by postgres wherever the build lives
RESULTS=$W/results.jsonl; : >"$RESULTS"
echo "pgbr: $("$W/bin/pgbr" version 2>/dev/null || "$W/bin/pgbr" --version 2>/dev/null | head -1)   pgBackRest: $(/usr/bin/pgbackrest version 2>/dev/null)   PostgreSQL: $("$PGBIN/postgres" --version)"

bin() { case $1 in pgbackrest) echo /usr/bin/pgbackrest ;; pgbr) echo "$W/bin/pgbr" ;; esac; }

conf() { # tool repo-dir cipher -> writes $W/<tool>.conf (the archive_command reads it too)
  local tool=$1 repo=$2 cipher=$3 f=$W/$1.conf
  {
    echo "[global]"
    echo "repo1-path=$repo"
    echo "compress-type=zst"
    echo "compress-level=$LEVEL"
    echo "process-max=$PROCS"
    echo "start-fast=y"
    echo "log-level-console=warn"
    if [[ $tool == pgbackrest ]]; then echo "log-level-file=off"; echo "lock-path=$W/lock-pgbackrest"; fi
    if [[ $cipher != none ]]; then echo "repo1-cipher-type=$cipher"; echo "repo1-cipher-pass=$PASS"; fi
    echo "[main]"
    echo "pg1-path=$W/src"
    echo "pg1-port=$PORT"
    echo "pg1-socket-path=$W"
  } >"$f"
  chown postgres:postgres "$f"; chmod 600 "$f"
}

declare -A R         # R[cipher|step|tool|metric]
STEPS=()             # cipher|step in order of first appearance
add_step() { local k="$1|$2"; [[ " ${STEPS[*]-} " == *" $k "* ]] || STEPS+=("$k"); }

record() { # cipher step tool status wall cpu rss bytes [extra-json]
  local c=$1 s=$2 t=$3 st=$4 wall=$5 cpu=$6 rss=$7 bytes=$8 extra=${9:-}
  add_step "$c" "$s"
  R[$c|$s|$t|status]=$st; R[$c|$s|$t|wall]=$wall; R[$c|$s|$t|cpu]=$cpu; R[$c|$s|$t|rss]=$rss; R[$c|$s|$t|bytes]=$bytes
  local js="{\"cipher\":\"$c\",\"step\":\"$s\",\"tool\":\"$t\",\"status\":\"$st\""
  [[ -n $wall ]] && js+=",\"wall_s\":$wall,\"cpu_s\":$cpu,\"max_rss_kb\":$rss"
  [[ -n $bytes ]] && js+=",\"repo_bytes\":$bytes"
  echo "$js$extra}" >>"$RESULTS"
  printf '  %-14s %-20s %-14s %-11s wall %8s s  cpu %8s s  rss %9s KB  repo %12s B\n' \
    "$c" "$s" "$t" "$st" "${wall:--}" "${cpu:--}" "${rss:--}" "${bytes:--}"
}

TIMED_WALL=; TIMED_CPU=; TIMED_RSS=
timed() { # log cmd... : runs as postgres under /usr/bin/time; sets TIMED_*; returns the command's status
  local log=$1; shift
  local tf=$W/time.out u s
  rm -f "$tf"
  as_pg /usr/bin/time -f '%e %U %S %M' -o "$tf" "$@" >>"$log" 2>&1
  local rc=$?
  if [[ -s $tf ]]; then
    read -r TIMED_WALL u s TIMED_RSS < <(tail -1 "$tf")
    TIMED_CPU=$(awk -v u="$u" -v s="$s" 'BEGIN{printf "%.2f", u+s}')
  else
    TIMED_WALL=; TIMED_CPU=; TIMED_RSS=
  fi
  return $rc
}

# Every timed step starts from the same memory state: dirty pages written back and, where the
# kernel lets us (DROP_CACHES=1, the default), the page cache emptied. Otherwise the order of the
# tools decides the figures: the first restore competes with gigabytes of cached backup data for
# page cache, the second starts right after the first's directory was deleted.
# Before every timed step: a checkpoint (so that a backup's own checkpoint does not write what
# earlier steps dirtied, which the first tool to run would pay for), then sync and, with
# DROP_CACHES=1, an empty page cache.
settle() {
  [[ -f $W/src/postmaster.pid ]] && sql "checkpoint" >/dev/null 2>&1
  sync; [[ ${DROP_CACHES:-1} == 1 ]] && { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; true
}

step() { # cipher step tool bytes-fn cmd-args... : one tool command, timed and recorded
  local c=$1 s=$2 t=$3; shift 3
  local log=$W/$t.log
  settle
  echo "### $c $s: $(bin "$t") $*" >>"$log"
  if timed "$log" "$(bin "$t")" --config="$W/$t.conf" --stanza=main "$@"; then
    record "$c" "$s" "$t" ok "$TIMED_WALL" "$TIMED_CPU" "$TIMED_RSS" ""
  else
    local st=failed
    # pgbr lacks some commands/options still (issue list): say so instead of "failed"
    if [[ $t == pgbr ]] && { tail -3 "$log" | grep -qiE 'unsupported|not (yet )?supported|not implemented|unknown option|invalid value'; }; then st=unsupported; fi
    record "$c" "$s" "$t" "$st" "" "" "" ""
    echo "    $t $s $st: $(tail -2 "$log" | tr '\n' ' ' | cut -c1-200)"
    return 1
  fi
}

repo_bytes() { du -sb --exclude=archive "$1" 2>/dev/null | cut -f1; }
arch_bytes() { du -sb "$1/archive" 2>/dev/null | cut -f1; }

drain() { # wait until the archiver has archived everything up to a fresh switch
  # the checkpoint writes a record, so that the switch really ends a segment (a switch with nothing
  # written since the last one names a segment that is never archived)
  sql "checkpoint"
  local want; want=$(sql "select pg_walfile_name(pg_switch_wal())")
  for _ in $(seq 1 600); do
    [[ $(sql "select coalesce(last_archived_wal >= '$want', false) from pg_stat_archiver") == t ]] && return 0
    sleep 0.5
  done
  echo "  archiver did not catch up: $(sql 'select last_failed_wal, last_failed_time from pg_stat_archiver')"
  return 1
}

# --- the cluster: archive_command copies each segment aside (for the archive-push/get steps) and
# pushes it with every tool listed in $W/archive-tools (empty while loading; each cipher phase
# fills it once its stanzas exist), through config files that each phase rewrites ---------------
# (pgBackRest's backup refuses an archive_command that does not contain "pgbackrest": the
# script's name does)
ARCH=$W/archive-push-pgbr-pgbackrest.sh
cat >"$ARCH" <<SH
#!/bin/sh
# archive_command = '$ARCH %p %f'
set -e
[ -f "$W/wal/\$2" ] || { cp "\$1" "$W/wal/\$2.tmp"; mv "$W/wal/\$2.tmp" "$W/wal/\$2"; }
for t in \$(cat "$W/archive-tools"); do
  case \$t in pgbr) b="$W/bin/pgbr" ;; pgbackrest) b=/usr/bin/pgbackrest ;; esac
  "\$b" --config="$W/\$t.conf" --stanza=main archive-push "\$1"
done
SH
chmod 755 "$ARCH"; : >"$W/archive-tools"; chown postgres:postgres "$ARCH" "$W/archive-tools"
cmd="$ARCH %p %f"
init_cluster "$W/src" "$PORT" "$cmd" "max_wal_size = 4GB" "shared_buffers = 256MB" || die "initdb failed"
as_pg "$PGBIN/pg_ctl" -D "$W/src" -l "$W/src.log" -w start >/dev/null || die "the cluster did not start (see $W/src.log)"

echo "loading: pgbench scale $SCALE, $RANDOM_ROWS random rows, $MANY_TABLES small tables ..."
as_pg "$PGBIN/pgbench" -q -i -s "$SCALE" -h "$W" -p "$PORT" postgres >/dev/null 2>&1 || die "pgbench -i failed"
# pgbench rows are mostly blanks (very compressible); RANDOM_ROWS adds barely compressible data
if ((RANDOM_ROWS > 0)); then
  sql "create table noise as select g as id, md5(random()::text) || md5(random()::text) as h, (random()*1e12)::bigint as n, now() - random() * interval '900 days' as at from generate_series(1, $RANDOM_ROWS) g"
fi
# MANY_TABLES: many small relations (tens of thousands of files)
if ((MANY_TABLES > 0)); then
  sql "do \$\$ begin for i in 1..$MANY_TABLES loop execute format('create table small_%s (id int primary key, v text)', i); execute format('insert into small_%s select g, md5(g::text) from generate_series(1, 20) g', i); if i % 500 = 0 then commit; end if; end loop; end \$\$"
fi
# settle hint bits and the visibility map now, or autovacuum rewrites every page between full and incr
sql "vacuum (freeze, analyze)"; sql "checkpoint"
PGDATA_BYTES=$(du -sb --exclude=pg_wal "$W/src" | cut -f1)
echo "{\"step\":\"pgdata\",\"original_bytes\":$PGDATA_BYTES,\"scale\":$SCALE,\"random_rows\":$RANDOM_ROWS,\"many_tables\":$MANY_TABLES}" >>"$RESULTS"
echo "data directory: $PGDATA_BYTES bytes (without pg_wal)"

# WAL for the archive steps: real segments of this cluster, at least $SEGMENTS of them
echo "generating WAL for $SEGMENTS segments ..."
sql "create table walgen (id bigint, h text)"
for _ in $(seq 1 200); do
  (($(ls "$W/wal" | grep -cE '^[0-9A-F]{24}$') > SEGMENTS)) && break
  sql "insert into walgen select g, md5(g::text) || md5(random()::text) from generate_series(1, 100000) g"
  sql "select pg_switch_wal()" >/dev/null
  sleep 0.2
done
sql "drop table walgen"; sql "checkpoint"
drain
mapfile -t SEGS < <(ls "$W/wal" | grep -E '^[0-9A-F]{24}$' | sort | head -"$SEGMENTS")
echo "using ${#SEGS[@]} segments (${SEGS[0]:-none} .. ${SEGS[-1]:-none})"
printf '%s\n' "${SEGS[@]}" >"$W/segments.txt"; chown postgres:postgres "$W/segments.txt"

# A data directory for the asynchronous archive steps: the cluster's control file and version, and
# the segments in pg_wal, each marked ready as PostgreSQL marks the WAL waiting for archive_command.
if [[ ${ASYNC:-1} == 1 ]]; then
  A=$W/apg; mkdir -p "$A/global" "$A/pg_wal/archive_status"
  cp "$W/src/global/pg_control" "$A/global/"; cp "$W/src/PG_VERSION" "$A/"
  for s in "${SEGS[@]}"; do cp "$W/wal/$s" "$A/pg_wal/$s"; : >"$A/pg_wal/archive_status/$s.ready"; done
  chown -R postgres:postgres "$A"; chmod 700 "$A"
fi
# One timed archive step of tool $3, script $5 (a loop over the segments): archive-push into the
# repository $4, or, with $4 empty, archive-get into $W/get-$3, each fetched segment compared with
# the original. Recorded with the wall time per segment.
archive_step() { # cipher step tool repo script
  local c=$1 s=$2 t=$3 repo=$4 script=$5 n=${#SEGS[@]} st=ok bad=0 seg
  echo "### $c $s" >>"$W/$t.log"
  settle
  if ! timed "$W/$t.log" bash -c "$script"; then
    record "$c" "$s" "$t" failed "" "" "" ""
    return
  fi
  if [[ -z $repo ]]; then
    for seg in "${SEGS[@]}"; do cmp -s "$W/wal/$seg" "$W/get-$t/$seg" || bad=$((bad + 1)); done
    ((bad == 0)) || st=mismatch:$bad
  fi
  record "$c" "$s" "$t" "$st" "$TIMED_WALL" "$TIMED_CPU" "$TIMED_RSS" "$([[ -n $repo ]] && arch_bytes "$repo")" \
    ",\"segments\":$n,\"wall_s_per_segment\":$(awk -v w="$TIMED_WALL" -v n="$n" 'BEGIN{printf "%.4f", w/n}')"
}
# Waits (at most 60 s) until no process runs with config file $1: a background archive worker.
wait_workers() { for _ in $(seq 1 600); do pgrep -f -- "$1" >/dev/null || return 0; sleep 0.1; done; echo "  workers of $1 still running"; }

# damage a restored directory the same way for every tool: truncate the largest relation file,
# append a byte to a small one, delete another small one
damage() {
  local d=$1 big small gone
  big=$(cd "$d" && find base -type f -name '[0-9]*' -printf '%s %p\n' | sort -k1,1nr -k2 | awk 'NR==1{print $2}')
  small=$(cd "$d" && find base -type f -name '[0-9]*' -size -64k | sort | sed -n 1p)
  gone=$(cd "$d" && find base -type f -name '[0-9]*' -size -64k | sort | sed -n 2p)
  as_pg truncate -s 0 "$d/$big"; as_pg sh -c "echo x >> '$d/$small'"; rm -f "$d/$gone"
}

# --- an untimed warm-up --------------------------------------------------------------------------
# One untimed full read of the cluster (pg_basebackup, discarded) before the first timed step of
# each cipher phase. Without it the first full backup of a phase was measured on another machine
# state than the second: pgbr took 4.8-4.9 s (6.0 s CPU) when it ran first and 3.4 s (3.9 s CPU)
# when it ran second on the same data, and pgBackRest 7.2 s first against 8.3-8.7 s second. Run
# by hand twice, pgbr's AES-256-CBC full backup took 1.1 s more CPU the first time, all of it in
# the kernel copying source pages (the AES-256-CBC phase had no warm-up before).
# WARMUP=0 skips it.
warm_up() {
  [[ ${WARMUP:-1} == 1 ]] || return 0
  echo "warm-up: an untimed pg_basebackup ..."
  settle
  as_pg "$PGBIN/pg_basebackup" -h "$W" -p "$PORT" -D "$W/warmup" -Ft -X none -c fast >/dev/null 2>&1 ||
    echo "  (warm-up pg_basebackup failed; going on)"
  rm -rf "$W/warmup"
}

# --- one phase per cipher ----------------------------------------------------------------------
RESTORED=()
for cipher in $CIPHERS; do
  echo
  echo "== cipher $cipher: zst level $LEVEL, process-max $PROCS =="
  : >"$W/archive-tools"   # copy only, until this phase's stanzas exist
  for t in $TOOLS; do
    r=$W/repo-$t-$cipher; mkdir -p "$r"; chown postgres:postgres "$r"; conf "$t" "$r" "$cipher"
  done
  for t in $TOOLS; do step "$cipher" stanza-create "$t" stanza-create; done
  echo "$TOOLS" >"$W/archive-tools"
  drain
  warm_up

  for t in $TOOLS; do
    step "$cipher" full "$t" backup --type=full && R[$cipher|full|$t|bytes]=$(repo_bytes "$W/repo-$t-$cipher") &&
      sed -i "\$s/}\$/,\"repo_bytes\":${R[$cipher|full|$t|bytes]}}/" "$RESULTS"
  done
  # the built-in peer: pg_basebackup, tar format, client-side zstd at the same level, WAL fetched
  # (full backups only, no encryption: measured in the first phase only)
  if [[ ${PG_BASEBACKUP:-1} == 1 && $cipher == "${CIPHERS%% *}" ]]; then
    echo "### $cipher full: pg_basebackup" >>"$W/pg_basebackup.log"
    settle
    if timed "$W/pg_basebackup.log" "$PGBIN/pg_basebackup" -h "$W" -p "$PORT" -D "$W/pbb" -Ft \
      --compress="client-zstd:$LEVEL" -X fetch -c fast; then
      record "$cipher" full pg_basebackup ok "$TIMED_WALL" "$TIMED_CPU" "$TIMED_RSS" "$(du -sb "$W/pbb" | cut -f1)"
    else
      record "$cipher" full pg_basebackup failed "" "" "" ""
    fi
    rm -rf "$W/pbb"
  fi

  # a fixed pgbench run, then incr
  as_pg "$PGBIN/pgbench" -n -t 2000 -c 4 -h "$W" -p "$PORT" postgres >/dev/null 2>&1
  sql "checkpoint"; drain
  for t in $TOOLS; do
    before=$(repo_bytes "$W/repo-$t-$cipher")
    step "$cipher" incr "$t" backup --type=incr && R[$cipher|incr|$t|bytes]=$(($(repo_bytes "$W/repo-$t-$cipher") - before)) &&
      sed -i "\$s/}\$/,\"repo_bytes\":${R[$cipher|incr|$t|bytes]}}/" "$RESULTS"
  done
  sql "select pg_switch_wal()" >/dev/null; drain

  # restore into a new directory, then damage it and delta-restore. The restored directories
  # stay until the run ends: this machine's ext4 has no journal, and without one, creating a file
  # looks at the inodes freed in the last minutes one by one, and skips them (ext4's
  # recently_deleted check). A restore run right after the previous tool's restored directory
  # was deleted paid for that tool's files: pgbr restored 121k files in 8.1-8.4 s (11.5-12.4 s
  # of system CPU) after deleting 121k, and in 3.7 s when nothing had been deleted.
  for t in $TOOLS; do
    d=$W/dst-$t-$cipher; as_pg mkdir -m 700 "$d"; RESTORED+=("$d")
    if step "$cipher" restore "$t" restore --pg1-path="$d"; then
      damage "$d"
      step "$cipher" restore-delta "$t" restore --delta --pg1-path="$d"
    else
      record "$cipher" restore-delta "$t" skipped "" "" "" ""
    fi
  done

  # archive-push: the same segments into a fresh repository per tool, one process per segment
  # (as archive_command runs it); then archive-get of each into an empty directory
  for t in $TOOLS; do
    a=$W/arch-$t-$cipher; mkdir -p "$a" "$W/get-$t"; chown postgres:postgres "$a" "$W/get-$t"
    sed "s#^repo1-path=.*#repo1-path=$a#" "$W/$t.conf" >"$W/$t-arch.conf"; chown postgres:postgres "$W/$t-arch.conf"
    as_pg "$(bin "$t")" --config="$W/$t-arch.conf" --stanza=main stanza-create >>"$W/$t.log" 2>&1
    push="for s in \$(cat $W/segments.txt); do $(bin "$t") --config=$W/$t-arch.conf --stanza=main archive-push $W/wal/\$s || exit 1; done"
    get="for s in \$(cat $W/segments.txt); do $(bin "$t") --config=$W/$t-arch.conf --stanza=main archive-get \$s $W/get-$t/\$s || exit 1; done"
    n=${#SEGS[@]}
    archive_step "$cipher" "archive-push x$n" "$t" "$a" "$push"
    archive_step "$cipher" "archive-get x$n" "$t" "" "$get"
    rm -rf "$W/get-$t"

    [[ ${ASYNC:-1} == 1 ]] || continue
    # asynchronous push of the same segments from $A/pg_wal into a fresh repository, one call
    # each, timed until all of them are in the repository; then asynchronous get of them from the
    # synchronous step's repository (prefetching into the spool)
    aa=$W/arch-async-$t-$cipher; mkdir -p "$aa" "$W/spool-$t-$cipher"/{push,get} "$W/get-$t"
    chown -R postgres:postgres "$aa" "$W/spool-$t-$cipher" "$W/get-$t"
    sed "s#^repo1-path=.*#repo1-path=$aa#" "$W/$t.conf" >"$W/$t-async-create.conf"
    async_conf() { # repo spool -> the asynchronous configuration on stdout
      sed "s#^repo1-path=.*#repo1-path=$1\narchive-async=y\nspool-path=$2#; s#^pg1-path=.*#pg1-path=$A#" "$W/$t.conf"
    }
    async_conf "$aa" "$W/spool-$t-$cipher/push" >"$W/$t-async-push.conf"
    async_conf "$a" "$W/spool-$t-$cipher/get" >"$W/$t-async-get.conf"
    chown postgres:postgres "$W/$t-async-"*.conf
    as_pg "$(bin "$t")" --config="$W/$t-async-create.conf" --stanza=main stanza-create >>"$W/$t.log" 2>&1
    push="for s in \$(cat $W/segments.txt); do $(bin "$t") --config=$W/$t-async-push.conf --stanza=main archive-push $A/pg_wal/\$s || exit 1; done
      for i in \$(seq 1 6000); do [ \$(find $aa/archive -type f -name '0000*' | wc -l) -ge $n ] && exit 0; sleep 0.01; done; exit 1"
    get="for s in \$(cat $W/segments.txt); do $(bin "$t") --config=$W/$t-async-get.conf --stanza=main archive-get \$s $W/get-$t/\$s || exit 1; done"
    archive_step "$cipher" "push async x$n" "$t" "$aa" "$push"
    wait_workers "$W/$t-async-push.conf"
    archive_step "$cipher" "get async x$n" "$t" "" "$get"
    wait_workers "$W/$t-async-get.conf"
    rm -rf "$W/get-$t"
  done
done

rm -rf "${RESTORED[@]}"

# --- the table: every step, both tools, and pgbr / pgBackRest ----------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a == "" || b == "" || b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }
echo
echo "pgbr vs pgBackRest: SCALE=$SCALE RANDOM_ROWS=$RANDOM_ROWS MANY_TABLES=$MANY_TABLES, zst $LEVEL, process-max $PROCS, data directory $PGDATA_BYTES bytes"
printf '%-12s %-17s %-14s %-11s %9s %9s %10s %13s\n' cipher step tool status wall_s cpu_s rss_kb repo_bytes
for k in "${STEPS[@]}"; do
  c=${k%%|*}; s=${k#*|}
  for t in $TOOLS pg_basebackup; do
    [[ -n ${R[$c|$s|$t|status]+x} ]] || continue
    printf '%-12s %-17s %-14s %-11s %9s %9s %10s %13s\n' "$c" "$s" "$t" "${R[$c|$s|$t|status]}" \
      "${R[$c|$s|$t|wall]:--}" "${R[$c|$s|$t|cpu]:--}" "${R[$c|$s|$t|rss]:--}" "${R[$c|$s|$t|bytes]:--}"
  done
  if [[ " $TOOLS " == *" pgbr "* && " $TOOLS " == *" pgbackrest "* ]]; then
    a="$c|$s|pgbr"; b="$c|$s|pgbackrest"
    rw=$(ratio "${R[$a|wall]-}" "${R[$b|wall]-}"); rc=$(ratio "${R[$a|cpu]-}" "${R[$b|cpu]-}")
    rr=$(ratio "${R[$a|rss]-}" "${R[$b|rss]-}"); rb=$(ratio "${R[$a|bytes]-}" "${R[$b|bytes]-}")
    printf '%-12s %-17s %-14s %-11s %9s %9s %10s %13s\n' "$c" "$s" "pgbr/pgbackrest" "" "$rw" "$rc" "$rr" "$rb"
    js="{\"cipher\":\"$c\",\"step\":\"$s\",\"tool\":\"pgbr/pgbackrest\""
    for m in wall:$rw cpu:$rc rss:$rr repo_bytes:$rb; do
      [[ ${m#*:} == - ]] && js+=",\"${m%%:*}_ratio\":null" || js+=",\"${m%%:*}_ratio\":${m#*:}"
    done
    echo "$js}" >>"$RESULTS"
  fi
done
echo
echo "results: $RESULTS   logs: $W/*.log"
exit 0
