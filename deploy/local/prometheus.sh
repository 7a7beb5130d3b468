#!/usr/bin/env bash
# A local Prometheus (Debian's binary) for the stack that `make up` runs without Docker:
# the same config and alert rules as docker-compose.yml, with the targets pointed at
# 127.0.0.1:API_PORT and 127.0.0.1:CONSUMER_METRICS_PORT.
#   deploy/local/prometheus.sh start|stop|status|check
# Env (and .env): API_PORT (5000), CONSUMER_METRICS_PORT (9108), PROMETHEUS_PORT (9090),
# RUN_DIR (.run). Data in $RUN_DIR/prometheus/data. Debian's own `prometheus` service is not
# used (stop it if it holds port 9090: service prometheus stop).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
if [ -f .env ]; then set -a; . ./.env; set +a; fi
RUN_DIR="${RUN_DIR:-$ROOT/.run}"
DIR="$RUN_DIR/prometheus"
CONF="$DIR/prometheus.yml"
PIDFILE="$RUN_DIR/prometheus.pid"
LOG="$RUN_DIR/logs/prometheus.log"
PORT="${PROMETHEUS_PORT:-9090}"
API="127.0.0.1:${API_PORT:-5000}"
POOL="127.0.0.1:${CONSUMER_METRICS_PORT:-9108}"
SRC="$ROOT/monitoring/prometheus"

say() { printf '[prometheus] %s\n' "$*"; }
die() { printf '[prometheus] error: %s\n' "$*" >&2; exit 1; }

. "$ROOT/deploy/local/pidfile.sh"
running() { pid_alive "$PIDFILE"; }

need() {
  command -v prometheus >/dev/null || die "prometheus not found (Debian: apt-get install prometheus)"
}

check() {
  command -v promtool >/dev/null || die "promtool not found (Debian: apt-get install prometheus)"
  promtool check config "$SRC/prometheus.yml"
  promtool test rules "$SRC/alerts.test.yml"
}

start() {
  need
  if running; then say "already running (pid $(cat "$PIDFILE")) on http://127.0.0.1:$PORT"; return 0; fi
  mkdir -p "$DIR/data" "$(dirname "$LOG")"
  # The compose targets (api:5000, consumer-pool:9108, localhost:9090) -> the local processes.
  sed -e "s#\"api:5000\"#\"$API\"#" \
      -e "s#\"consumer-pool:9108\"#\"$POOL\"#" \
      -e "s#\"localhost:9090\"#\"127.0.0.1:$PORT\"#" \
      -e "s#^  - alerts.yml#  - $SRC/alerts.yml#" \
      "$SRC/prometheus.yml" > "$CONF"
  grep -q "$API" "$CONF" && grep -q "$POOL" "$CONF" || die "could not rewrite the targets in $CONF"
  say "starting on http://127.0.0.1:$PORT, scraping $API and $POOL (log: ${LOG#$ROOT/})"
  setsid prometheus --config.file="$CONF" --storage.tsdb.path="$DIR/data" \
    --web.listen-address="127.0.0.1:$PORT" --storage.tsdb.retention.time=2d \
    >>"$LOG" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  for _ in $(seq 1 60); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$PORT/-/ready" 2>/dev/null; then say "ready"; return 0; fi
    running || { tail -n 20 "$LOG" >&2; die "prometheus exited during start-up (log above)"; }
    sleep 0.5
  done
  die "prometheus did not become ready in 30 s, see ${LOG#$ROOT/}"
}

stop() { stop_pidfile prometheus "$PIDFILE" 20; }

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if running; then say "running (pid $(cat "$PIDFILE")) on http://127.0.0.1:$PORT"; else say "not running"; exit 1; fi ;;
  check) check ;;
  *) echo "usage: $0 start|stop|status|check" >&2; exit 2 ;;
esac
