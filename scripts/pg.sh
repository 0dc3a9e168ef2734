#!/usr/bin/env bash
# Throwaway PostgreSQL for `make run` and `make test`.
#   scripts/pg.sh start DIR   start (initdb first if needed); prints the URL
#   scripts/pg.sh stop DIR    stop the server in DIR
# initdb refuses to run as root, so as root the server runs as the
# `postgres` user (or a `meshd-pg` system user created on the spot).
# Installs Debian's postgresql package when no server binaries are found.
set -euo pipefail

cmd=${1:?usage: pg.sh start|stop DIR}
dir=$(mkdir -p "${2:?usage: pg.sh start|stop DIR}" && cd "$2" && pwd)

find_bin() {
  if command -v "$1" >/dev/null 2>&1; then command -v "$1"; return; fi
  local b
  b=$(ls -d /usr/lib/postgresql/*/bin/"$1" 2>/dev/null | sort -V | tail -n1 || true)
  [ -n "$b" ] && echo "$b"
}

ensure_binaries() {
  if [ -z "$(find_bin initdb)" ]; then
    echo "pg.sh: PostgreSQL server binaries not found; installing Debian's postgresql" >&2
    if [ "$(id -u)" = 0 ]; then
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) >&2
    else
      echo "pg.sh: run as root or install postgresql (initdb/pg_ctl) yourself" >&2; exit 1
    fi
  fi
}

run_as=""
if [ "$(id -u)" = 0 ]; then
  if id postgres >/dev/null 2>&1; then run_as=postgres
  else id meshd-pg >/dev/null 2>&1 || useradd --system --no-create-home meshd-pg; run_as=meshd-pg; fi
fi
pgrun() {
  if [ -n "$run_as" ]; then runuser -u "$run_as" -- "$@"; else "$@"; fi
}

case "$cmd" in
start)
  ensure_binaries
  initdb=$(find_bin initdb); pg_ctl=$(find_bin pg_ctl)
  [ -n "$run_as" ] && chown -R "$run_as" "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    pgrun "$initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
  fi
  if [ -f "$dir/port" ] && pgrun "$pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    port=$(cat "$dir/port")
  else
    port=${PGPORT_WANTED:-$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])' 2>/dev/null || echo 55432)}
    echo "$port" >"$dir/port"
    pgrun "$pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=400 -c timezone=UTC ${PG_EXTRA_OPTS:-}" start >/dev/null \
      || { cat "$dir/log" >&2; exit 1; }
  fi
  url="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
  echo "$url" >"$dir/url"
  echo "$url"
  ;;
stop)
  pg_ctl=$(find_bin pg_ctl)
  [ -n "$pg_ctl" ] && pgrun "$pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -f "$dir/url"
  ;;
*) echo "usage: pg.sh start|stop DIR" >&2; exit 2 ;;
esac
