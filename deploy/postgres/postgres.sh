#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests: trust auth, 127.0.0.1 only, durability off for speed.
#   postgres.sh start PORT DATA_DIR   initdb DATA_DIR if new, start on PORT, wait until it answers
#   postgres.sh stop DATA_DIR         stop the cluster on DATA_DIR (fast shutdown)
# Uses the newest server in /usr/lib/postgresql/*/bin (Debian's `postgresql` package) or the one
# on PATH. initdb refuses to run as root, so as root the cluster runs as the `postgres` system
# user (created if missing) and DATA_DIR is handed to it; DATA_DIR's parents must let it through.
set -euo pipefail

die() { echo "postgres.sh: $*" >&2; exit 1; }

bindir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; return 0; fi
  d=$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")
  [ -x "$d/initdb" ] || die "no PostgreSQL server found (on Debian: apt-get install postgresql)"
  echo "$d"
}

as_owner=()
owner() {  # as root: run the cluster as an unprivileged user
  [ "$(id -u)" -eq 0 ] || return 0
  id -u postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql \
    --shell /usr/sbin/nologin postgres
  as_owner=(runuser -u postgres --)
}

start() {
  local port=${1:?PORT} data=${2:?DATA_DIR} bin
  bin=$(bindir)
  owner
  mkdir -p "$data"
  data="$(cd "$data" && pwd)"
  [ "${#as_owner[@]}" -eq 0 ] || chown postgres: "$data"
  chmod 700 "$data"
  "${as_owner[@]}" test -w "$data" || die "$data is not writable by the cluster's user (check the parents' modes)"
  if "${as_owner[@]}" "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    echo "postgres.sh: cluster already running on $data" >&2; return 0
  fi
  if [ ! -f "$data/PG_VERSION" ]; then
    local out
    out=$("${as_owner[@]}" "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 \
      --locale=C.UTF-8 --no-sync 2>&1) || { echo "$out" >&2; die "initdb failed"; }
  fi
  # Unix socket in the data dir (not /var/run/postgresql, which may not exist); fsync off: the
  # data is thrown away with the cluster.
  "${as_owner[@]}" "$bin/pg_ctl" -D "$data" -l "$data/postgres.log" -w -t 60 start -o \
    "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories='$data' \
     -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
    >/dev/null || { tail -30 "$data/postgres.log" >&2; die "the cluster on port $port did not start"; }
  echo "postgres.sh: PostgreSQL up on 127.0.0.1:$port (data $data)" >&2
}

stop() {
  local data=${1:?DATA_DIR} bin
  [ -f "$data/postmaster.pid" ] || return 0
  bin=$(bindir)
  owner
  "${as_owner[@]}" "$bin/pg_ctl" -D "$data" -m fast -w -t 30 stop >/dev/null
}

case "${1:-}" in
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  *) die "usage: postgres.sh start PORT DATA_DIR | stop DATA_DIR" ;;
esac
