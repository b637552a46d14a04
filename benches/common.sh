# Helpers shared by the benchmark scripts (sourced, not run). They expect $W (the work directory)
# and run PostgreSQL and pgbr as the postgres OS user.
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}

as_pg() { runuser -u postgres -- "$@"; }
load1() { cut -d' ' -f1 /proc/loadavg; }
now() { date +%s.%N; }
calc() { echo "$*" | bc -l; }
require_root() { [[ $(id -u) == 0 ]] || { echo "run as root" >&2; exit 2; }; }

# A loopback TCP port nobody listens on ($1 when none of 50 random tries is free).
free_port() {
  local p
  for p in $(shuf -i 20000-60000 -n 50); do
    ss -Hltn "sport = :$p" | grep -q . || { echo "$p"; return; }
  done
  echo "${1:-54321}"
}

# stop_clusters MODE DIR...: stops the PostgreSQL running in each DIR that has a postmaster.pid.
stop_clusters() {
  local mode=$1 d
  shift
  for d in "$@"; do
    if [[ -f $d/postmaster.pid ]]; then
      as_pg "$PGBIN/pg_ctl" -D "$d" -m "$mode" -w stop >/dev/null 2>&1 || true
    fi
  done
}

# fresh_workdir BINARY [SUBDIR...]: wipes $W, makes it (and $W/SUBDIR...) postgres's, and installs
# BINARY as $W/pgbr, readable by postgres wherever the build lives.
fresh_workdir() {
  local bin=$1 d
  shift
  rm -rf "$W"
  mkdir -p "$W"
  for d in "$@"; do mkdir -p "$W/$d"; done
  install -m 755 "$bin" "$W/pgbr"
  chown -R postgres:postgres "$W"
}

# init_cluster DIR PORT ARCHIVE_COMMAND [postgresql.conf line...]: initdb -k into DIR, a cluster
# that listens only on a socket in $W and archives with ARCHIVE_COMMAND. Not started.
init_cluster() {
  local dir=$1 port=$2 cmd=$3
  shift 3
  as_pg "$PGBIN/initdb" -k -A trust -U postgres -D "$dir" >/dev/null || return 1
  printf '%s\n' "port = $port" "listen_addresses = ''" "unix_socket_directories = '$W'" \
    "wal_level = replica" "archive_mode = on" "archive_command = '$cmd'" "$@" >>"$dir/postgresql.conf"
}
