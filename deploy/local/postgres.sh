#!/usr/bin/env bash
# A throwaway PostgreSQL (Debian's packages) for the tests and the local stack.
#   deploy/local/postgres.sh start|stop|status|url
# Data in .run/postgres; port PG_PORT (55432, away from a system cluster on 5432);
# trust auth on 127.0.0.1 only. Runs as the `postgres` user when started by root.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RUN_DIR="${RUN_DIR:-$ROOT/.run}"
PGDATA="$RUN_DIR/postgres"
PORT="${PG_PORT:-55432}"
DB="${PG_DB:-sensors}"
LOG="$RUN_DIR/logs/postgres.log"

say() { printf '[postgres] %s\n' "$*"; }
die() { printf '[postgres] error: %s\n' "$*" >&2; exit 1; }

BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$BIN" ] || die "PostgreSQL server not found; install it with: apt-get install postgresql"

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

url() { echo "postgresql://postgres@127.0.0.1:$PORT/$DB"; }

running() { as_pg "$BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; }

start() {
  mkdir -p "$RUN_DIR/logs"
  if [ ! -f "$PGDATA/PG_VERSION" ]; then
    say "initialising ${PGDATA#$ROOT/}"
    mkdir -p "$PGDATA"
    [ "$(id -u)" = 0 ] && chown postgres: "$PGDATA" && chmod 700 "$PGDATA"
    as_pg "$BIN/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 >/dev/null
  fi
  touch "$LOG"; [ "$(id -u)" = 0 ] && chown postgres: "$LOG"
  if running; then
    say "already running on 127.0.0.1:$PORT"
  else
    say "starting on 127.0.0.1:$PORT (log: ${LOG#$ROOT/})"
    as_pg "$BIN/pg_ctl" -D "$PGDATA" -l "$LOG" -w -t 60 \
      -o "-p $PORT -k $PGDATA -c listen_addresses=127.0.0.1" start >/dev/null \
      || die "PostgreSQL did not start, see ${LOG#$ROOT/}"
  fi
  as_pg "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$DB'" postgres | grep -q 1 \
    || as_pg "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres "$DB"
  say "ready: $(url)"
}

stop() {
  if running; then say "stopping"; as_pg "$BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null; else say "not running"; fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) running && say "running on 127.0.0.1:$PORT" || { say "not running"; exit 1; } ;;
  url) url ;;
  *) echo "usage: $0 start|stop|status|url" >&2; exit 2 ;;
esac
