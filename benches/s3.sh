#!/usr/bin/env bash
# Full backup, restore and verify of pgbr against an S3 emulator (moto server on loopback),
# without and with `repo1-bundle=y`: wall time, MB/s, HTTP requests moto received, objects in the bucket.
#
# One PostgreSQL 15 cluster with $TABLES small tables (id primary key, a text column, $ROWS rows:
# heap, index, toast and toast index files of a few KiB each) plus `pgbench -i -s $SCALE`. The
# load runs with archive_command=true; then every bucket is stanza-created and archive_command
# becomes a pgbr archive-push into each bucket (the backups' WAL; archive-check waits for it).
# For each mode, in a fresh bucket:
#   backup   `backup --type=full`, timed; MB/s = the backup's size (info: size_original) / time;
#            requests = the lines moto logged for that bucket meanwhile (moto_server logs one line
#            per request; this includes the archive-push of the backup's WAL segments)
#   objects  objects under <bucket>/pgbr/backup/ and their total size (listed after the count)
#   restore  `restore` into an empty directory, timed, with its request count; the restored
#            cluster is then started (not timed) and must reach the end of recovery with all
#            $TABLES tables
#   verify   `verify` of the bucket, timed, with its request count; it must find nothing wrong
# Prints one table; exits 0 when everything succeeded.
#
# Run as root. Environment: PGBR (binary; default: `cargo build --release -p pgbr-cli`, then
# target/release/pgbr), W (work dir, default /tmp/pgbr-bench-s3, wiped), TABLES=3000, ROWS=20,
# SCALE=5, PROCESS_MAX=4, COMPRESS=zst, CIPHER=none.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
W=${W:-/tmp/pgbr-bench-s3}
TABLES=${TABLES:-3000}
ROWS=${ROWS:-20}
SCALE=${SCALE:-5}
PROCESS_MAX=${PROCESS_MAX:-4}
COMPRESS=${COMPRESS:-zst}
CIPHER=${CIPHER:-none}
STANZA=bench
MODES=(plain bundle)
require_root

MOTO_PID=
stop_all() {
  stop_clusters immediate "$W/src" "$W"/restore-*
  if [[ -n $MOTO_PID ]]; then
    kill "$MOTO_PID" 2>/dev/null || true
    wait "$MOTO_PID" 2>/dev/null || true
  fi
}
trap stop_all EXIT

if [[ -z ${PGBR:-} ]]; then
  echo "== cargo build --release -p pgbr-cli" >&2
  cargo build --release -q -p pgbr-cli
  PGBR=target/release/pgbr
fi
MOTO=$(command -v moto_server || true)
[[ -n $MOTO ]] || MOTO=$(python3 -c "import sysconfig; print(sysconfig.get_path('scripts'))")/moto_server
[[ -x $MOTO ]] || { echo "moto_server is not installed (pip install 'moto[server]')" >&2; exit 2; }

stop_all
fresh_workdir "$PGBR"
PORT=$(free_port 54323)
MPORT=$(free_port 54324)
ENDPOINT=http://127.0.0.1:$MPORT

echo "== moto_server on $ENDPOINT (log $W/moto.log)" >&2
"$MOTO" -H 127.0.0.1 -p "$MPORT" >"$W/moto.log" 2>&1 &
MOTO_PID=$!
for _ in $(seq 1 300); do
  curl -s -o /dev/null "$ENDPOINT/" && break
  sleep 0.1
done
for m in "${MODES[@]}"; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT "$ENDPOINT/pgbr-bench-$m")
  [[ $code == 200 ]] || { echo "cannot create bucket pgbr-bench-$m: HTTP $code" >&2; exit 1; }
done
# Requests moto logged for a bucket (path-style: `"PUT /<bucket>/... HTTP/1.1" 200 -`).
requests() { grep -cE "\"[A-Z]+ /$1([/?][^ ]*)? HTTP" "$W/moto.log" || true; }
# `<objects> <bytes>` under <bucket>/pgbr/backup/.
objects() {
  python3 - "$ENDPOINT" "$1" <<'PY'
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                  aws_access_key_id="bench", aws_secret_access_key="bench")
n = size = 0
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=sys.argv[2], Prefix="pgbr/backup/"):
    for o in page.get("Contents", []):
        n += 1
        size += o["Size"]
print(n, size)
PY
}

conf() { # mode
  local m=$1
  {
    echo "[global]"
    echo "repo1-type=s3"
    echo "repo1-path=/pgbr"
    echo "repo1-s3-bucket=pgbr-bench-$m"
    echo "repo1-s3-endpoint=$ENDPOINT"
    echo "repo1-s3-region=us-east-1"
    echo "repo1-s3-uri-style=path"
    echo "repo1-s3-key=bench"
    echo "repo1-s3-key-secret=bench"
    echo "repo1-cipher-type=$CIPHER"
    [[ $CIPHER != none ]] && echo "repo1-cipher-pass=bench-passphrase"
    if [[ $m == bundle ]]; then echo "repo1-bundle=y"; else echo "repo1-bundle=n"; fi
    echo "compress-type=$COMPRESS"
    echo "process-max=$PROCESS_MAX"
    echo "start-fast=y"
    echo "lock-path=$W/lock-$m"
    echo "log-level-console=warn"
    echo
    echo "[$STANZA]"
    echo "pg1-path=$W/src"
    echo "pg1-port=$PORT"
    echo "pg1-socket-path=$W"
  } >"$W/$m.conf"
  chown postgres:postgres "$W/$m.conf"
}
pgbr() { local m=$1; shift; as_pg "$W/pgbr" --config="$W/$m.conf" --stanza=$STANZA "$@"; }
psql_at() { # port sql
  as_pg "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$W" -p "$1" -d postgres -c "$2"
}

echo "== initdb (port $PORT, work dir $W); $TABLES tables of $ROWS rows, pgbench -i -s $SCALE" >&2
init_cluster "$W/src" "$PORT" true "max_locks_per_transaction = 256"
as_pg "$PGBIN/pg_ctl" -D "$W/src" -l "$W/src.log" -w start >/dev/null
as_pg "$PGBIN/pgbench" -q -i -s "$SCALE" -h "$W" -p "$PORT" postgres >/dev/null 2>&1
psql_at "$PORT" "do \$\$ begin for i in 1..$TABLES loop
  execute format('create table small_%s (id int primary key, v text)', i);
  execute format('insert into small_%s select g, md5(g::text) from generate_series(1, $ROWS) g', i);
end loop; end \$\$"
psql_at "$PORT" "checkpoint" >/dev/null
ARCHIVE=""
for m in "${MODES[@]}"; do
  conf "$m"
  pgbr "$m" stanza-create
  ARCHIVE+="$W/pgbr --config=$W/$m.conf --stanza=$STANZA archive-push %p && "
done
psql_at "$PORT" "alter system set archive_command = '${ARCHIVE% && }'" >/dev/null
psql_at "$PORT" "select pg_reload_conf()" >/dev/null
FILES=$(find "$W/src" -type f | wc -l)
DBSIZE=$(psql_at "$PORT" "select sum(pg_database_size(oid)) from pg_database")
echo "== $FILES files in the data directory, databases $(calc "$DBSIZE / 1048576" | xargs printf '%.1f') MB" >&2

rows=()
failed=0
for m in "${MODES[@]}"; do
  echo "== $m: backup" >&2
  r0=$(requests "pgbr-bench-$m")
  sync
  t0=$(now)
  if ! pgbr "$m" backup --type=full 2>"$W/err-backup-$m"; then
    echo "backup ($m) failed: $(cat "$W/err-backup-$m")" >&2
    failed=1
    continue
  fi
  t1=$(now)
  r1=$(requests "pgbr-bench-$m")
  size=$(pgbr "$m" info --output=json | jq '.[0].backups[-1].size_original')
  [[ $size =~ ^[0-9]+$ ]] || { echo "no backup size in info ($m): $size" >&2; failed=1; size=$DBSIZE; }
  read -r nobj objbytes < <(objects "pgbr-bench-$m")

  echo "== $m: restore" >&2
  dest=$W/restore-$m
  as_pg mkdir -m 700 "$dest"
  r2=$(requests "pgbr-bench-$m")
  sync
  t2=$(now)
  if ! pgbr "$m" restore --pg1-path="$dest" 2>"$W/err-restore-$m"; then
    echo "restore ($m) failed: $(cat "$W/err-restore-$m")" >&2
    failed=1
    continue
  fi
  t3=$(now)
  r3=$(requests "pgbr-bench-$m")

  echo "== $m: verify" >&2
  r4=$(requests "pgbr-bench-$m")
  t4=$(now)
  verified=ok
  if ! pgbr "$m" verify >"$W/verify-$m.out" 2>&1; then
    echo "verify ($m) failed: $(tail -5 "$W/verify-$m.out")" >&2
    verified=fail
    failed=1
  fi
  t5=$(now)
  r5=$(requests "pgbr-bench-$m")

  # Check (not timed): the restored cluster recovers and holds every table.
  rport=$(free_port)
  printf "port = %s\narchive_mode = off\n" "$rport" | as_pg tee -a "$dest/postgresql.auto.conf" >/dev/null
  check=fail
  if as_pg "$PGBIN/pg_ctl" -D "$dest" -l "$W/restore-$m.log" -w -t 300 start >/dev/null; then
    for _ in $(seq 1 600); do
      [[ $(psql_at "$rport" "select pg_is_in_recovery()") == f ]] && break
      sleep 0.1
    done
    n=$(psql_at "$rport" "select count(*) from pg_class where relname like 'small\_%' and relkind = 'r'")
    accounts=$(psql_at "$rport" "select count(*) from pgbench_accounts")
    [[ $n == "$TABLES" && $accounts == $((SCALE * 100000)) ]] && check=ok
    as_pg "$PGBIN/pg_ctl" -D "$dest" -m fast -w stop >/dev/null
  fi
  [[ $check == ok ]] || { echo "restored cluster ($m) check failed (see $W/restore-$m.log)" >&2; failed=1; }
  [[ $verified == ok ]] || check=fail

  bt=$(calc "$t1 - $t0")
  rt=$(calc "$t3 - $t2")
  vt=$(calc "$t5 - $t4")
  rows+=("$(printf '%-18s %9.2f %8.1f %10s %9s %10.1f %10.2f %8.1f %10s %9.2f %10s %6s' \
    "$m" "$bt" "$(calc "$size / 1048576 / $bt")" "$((r1 - r0))" "$nobj" \
    "$(calc "$objbytes / 1048576")" "$rt" "$(calc "$size / 1048576 / $rt")" "$((r3 - r2))" \
    "$vt" "$((r5 - r4))" "$check")")
done

echo
echo "pgbr full backup/restore/verify to S3 (moto $(python3 -c 'import moto; print(moto.__version__)' 2>/dev/null || echo ?), loopback):" \
  "$FILES files, $(calc "$DBSIZE / 1048576" | xargs printf '%.1f') MB, $TABLES small tables + pgbench -s $SCALE," \
  "process-max=$PROCESS_MAX, compress-type=$COMPRESS, cipher=$CIPHER, $(nproc) CPUs"
printf '%-18s %9s %8s %10s %9s %10s %10s %8s %10s %9s %10s %6s\n' \
  "mode" "backup s" "MB/s" "requests" "objects" "stored MB" "restore s" "MB/s" "requests" \
  "verify s" "requests" "check"
printf '%-18s %9s %8s %10s %9s %10s %10s %8s %10s %9s %10s %6s\n' \
  "" "" "" "(backup)" "(backup/)" "" "" "" "(restore)" "" "(verify)" ""
for r in "${rows[@]}"; do echo "$r"; done
echo "(plain: repo1-bundle=n; bundle: repo1-bundle=y. MB/s over the backup's size_original.)"
exit "$failed"
