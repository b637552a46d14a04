#!/usr/bin/env bash
# A real backup and restore of a throwaway local PostgreSQL 15 cluster with pgbr.
# Installs PostgreSQL 15 (Debian) if absent, builds pgbr, then: initdb, archive_command = pgbr
# archive-push, pgbench data, stanza-create, full backup, restore into a new directory, start it,
# and compare the data. Run as root or as a user who may run `runuser -u postgres` (root).
set -euo pipefail
cd "$(dirname "$0")/.."
PGBIN=/usr/lib/postgresql/15/bin
W=${QUICKSTART_DIR:-/tmp/pgbr-quickstart}
PORT=${PORT:-54399}
if [[ ! -x $PGBIN/initdb ]]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15
fi
cargo build --release -p pgbr-cli
as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
stop_all() { for d in "$W/src" "$W/restored"; do [[ -f $d/postmaster.pid ]] && as_pg "$PGBIN/pg_ctl" -D "$d" -m fast stop >/dev/null 2>&1; done; true; }
trap stop_all EXIT
stop_all; rm -rf "$W"; mkdir -p "$W/repo"
install -m 755 target/release/pgbr "$W/pgbr"
cat >"$W/pgbr.conf" <<CONF
[global]
repo1-path=$W/repo
repo1-cipher-type=aes-256-gcm
repo1-cipher-pass=quickstart-passphrase
compress-type=zst
process-max=2
start-fast=y
log-level-console=info

[demo]
pg1-path=$W/src
pg1-port=$PORT
pg1-socket-path=$W
CONF
[[ $(id -u) == 0 ]] && chown -R postgres:postgres "$W"
pgbr() { as_pg "$W/pgbr" --config="$W/pgbr.conf" --stanza=demo "$@"; }
psql() { as_pg "$PGBIN/psql" -X -At -h "$W" -p "$1" -d postgres -c "$2"; }

echo "== initdb and start a cluster archiving with pgbr"
as_pg "$PGBIN/initdb" -k -A trust -D "$W/src" >/dev/null
cat >>"$W/src/postgresql.conf" <<CONF
port = $PORT
listen_addresses = ''
unix_socket_directories = '$W'
wal_level = replica
archive_mode = on
archive_command = '$W/pgbr --config=$W/pgbr.conf --stanza=demo archive-push %p'
CONF
as_pg "$PGBIN/pg_ctl" -D "$W/src" -l "$W/src.log" -w start >/dev/null
as_pg "$PGBIN/pgbench" -q -i -s 5 -h "$W" -p "$PORT" postgres >/dev/null 2>&1

echo "== stanza-create, backup"
pgbr stanza-create
pgbr backup --type=full
pgbr info
before=$(psql "$PORT" "select sum(abalance), count(*) from pgbench_accounts")
psql "$PORT" "select pg_switch_wal()" >/dev/null
sleep 2
as_pg "$PGBIN/pg_ctl" -D "$W/src" -m fast -w stop >/dev/null

echo "== restore into $W/restored and start it"
pgbr restore --pg1-path="$W/restored"
sed -i "s/^port = .*/port = $((PORT + 1))/" "$W/restored/postgresql.conf"
as_pg "$PGBIN/pg_ctl" -D "$W/restored" -l "$W/restored.log" -w start >/dev/null
after=$(psql $((PORT + 1)) "select sum(abalance), count(*) from pgbench_accounts")
echo "source:   $before"
echo "restored: $after"
[[ $before == "$after" ]] && echo "OK: the restored cluster holds the same data" || { echo "MISMATCH"; exit 1; }
