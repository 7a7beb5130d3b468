#!/usr/bin/env bash
# `make up` / `make down`: the whole stack, with Docker Compose when an engine answers,
# otherwise as local background processes (real Kafka from Maven Central, the API, the pool).
# `down` stops exactly what `up` started (recorded in .run/up.started).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
RUN_DIR="${RUN_DIR:-$ROOT/.run}"
LOGS="$RUN_DIR/logs"
STARTED="$RUN_DIR/up.started"
PY="$ROOT/.venv/bin/python"
mkdir -p "$LOGS"

# Load .env for the ports we print (the processes read it themselves).
if [ -f .env ]; then set -a; . ./.env; set +a; fi
API_PORT="${API_PORT:-5000}"
CONSUMER_METRICS_PORT="${CONSUMER_METRICS_PORT:-9108}"

say() { printf '[stack] %s\n' "$*"; }
. "$ROOT/deploy/local/pidfile.sh"
alive() { pid_alive "$RUN_DIR/$1.pid"; }
docker_engine() { command -v docker >/dev/null && docker info >/dev/null 2>&1; }

start_proc() {  # name, command...
  local name=$1; shift
  if alive "$name"; then say "$name already running (pid $(cat "$RUN_DIR/$name.pid"))"; return 0; fi
  say "starting $name (log: ${LOGS#$ROOT/}/$name.log)"
  setsid "$@" >>"$LOGS/$name.log" 2>&1 < /dev/null &
  echo $! > "$RUN_DIR/$name.pid"
  echo "$name" >> "$STARTED"
}

stop_proc() { stop_pidfile "$1" "$RUN_DIR/$1.pid" 40; }  # name

wait_http() {  # url, seconds
  local deadline=$((SECONDS + $2))
  until curl -fsS -o /dev/null "$1" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || { say "$1 did not answer within $2 s; see ${LOGS#$ROOT/}/"; return 1; }
    sleep 0.5
  done
}

up() {
  if docker_engine; then
    say "Docker engine found: docker compose up -d"
    docker compose up -d --wait
    echo docker > "$STARTED"
  else
    say "no Docker engine: running locally"
    if deploy/local/kafka.sh status >/dev/null 2>&1; then
      say "kafka already running"
    else
      deploy/local/kafka.sh start
      echo kafka >> "$STARTED"
    fi
    # KAFKA_NODES=3: the API and the pool bootstrap from all three nodes.
    if [ "${KAFKA_NODES:-1}" != 1 ] && [ -z "${KAFKA_BROKER:-}" ]; then
      KAFKA_BROKER=$(deploy/local/kafka.sh bootstrap)
      export KAFKA_BROKER
      say "KAFKA_BROKER=$KAFKA_BROKER"
    fi
    start_proc api "$PY" -m service
    # The seed's consumer prints every reading ("Message received: {...}"); CONSUMER_ECHO=false to quieten.
    CONSUMER_ECHO="${CONSUMER_ECHO:-true}" start_proc consumer-pool "$PY" -m consumer_pool
    wait_http "http://127.0.0.1:$API_PORT/readyz" 60
    wait_http "http://127.0.0.1:$CONSUMER_METRICS_PORT/metrics" 60
  fi
  cat <<MSG

  API          http://127.0.0.1:$API_PORT   (POST /sensor, /sensor/batch; GET /readyz, /openapi.json)
  Dashboard    http://127.0.0.1:$API_PORT/dashboard
  API metrics  http://127.0.0.1:$API_PORT/metrics
  Pool metrics http://127.0.0.1:$CONSUMER_METRICS_PORT/metrics
  Logs         ${LOGS#$ROOT/}/   (docker: docker compose logs -f)
  Try it       curl -X POST http://127.0.0.1:$API_PORT/sensor -H 'Content-Type: application/json' \\
                 -d '{"sensor_id":"sensor01","timestamp":"2025-11-17T14:20:00Z","type":"temperature","value":25.3,"unit":"C","location":"lab"}'
  Stop         make down
MSG
}

down() {
  [ -f "$STARTED" ] || { say "nothing started by make up"; return 0; }
  if grep -qx docker "$STARTED"; then docker compose down; fi
  # Reverse order: stop producers of work before the broker they need to flush to.
  for name in api consumer-pool; do grep -qx "$name" "$STARTED" && stop_proc "$name"; done
  grep -qx kafka "$STARTED" && deploy/local/kafka.sh stop
  rm -f "$STARTED"
  say "stopped"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
