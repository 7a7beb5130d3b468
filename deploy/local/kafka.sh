#!/usr/bin/env bash
# Real Apache Kafka without Docker: jars from Maven Central, KRaft single node.
#   deploy/local/kafka.sh fetch|start|stop|status|wait|logs
# Env: KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093), KAFKA_HEAP (512m), RUN_DIR (.run),
#      KAFKA_OVERRIDES (extra server.properties lines, space-separated key=value).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$ROOT/deploy/local/kafka"
VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$HERE/pom.xml")
CACHE="$ROOT/.cache/kafka/$VERSION"
RUN_DIR="${RUN_DIR:-$ROOT/.run}"
PORT="${KAFKA_PORT:-9092}"
CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
DATA="$RUN_DIR/kafka/data"
CONF="$RUN_DIR/kafka/server.properties"
PIDFILE="$RUN_DIR/kafka.pid"
LOG="$RUN_DIR/logs/kafka.log"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"

say() { printf '[kafka] %s\n' "$*"; }
die() { printf '[kafka] error: %s\n' "$*" >&2; exit 1; }

need() {
  command -v java >/dev/null || die "Java 17+ is needed to run Kafka locally (Debian: apt-get install openjdk-17-jre-headless), or use Docker (make up with a Docker engine)."
  command -v mvn >/dev/null || [ -f "$CACHE/.complete" ] || die "Maven is needed once to fetch Kafka $VERSION from Maven Central (Debian: apt-get install maven)."
}

fetch() {
  need
  [ -f "$CACHE/.complete" ] && return 0
  say "fetching Apache Kafka $VERSION from Maven Central into ${CACHE#$ROOT/} (once, about a minute)"
  mkdir -p "$CACHE"
  mvn -B -q -Dstyle.color=never -f "$HERE/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$CACHE/libs" \
    || die "mvn could not fetch Kafka $VERSION (is Maven Central reachable?)"
  touch "$CACHE/.complete"
}

. "$ROOT/deploy/local/pidfile.sh"
running() { pid_alive "$PIDFILE"; }

java_run() { java -Dlog4j2.configurationFile="$HERE/log4j2.yaml" -cp "$CACHE/libs/*" "$@"; }

start() {
  if running; then say "already running (pid $(cat "$PIDFILE")) on 127.0.0.1:$PORT"; return 0; fi
  fetch
  mkdir -p "$DATA" "$(dirname "$LOG")"
  sed -e "s#@DATA_DIR@#$DATA#" -e "s#@PORT@#$PORT#" -e "s#@CONTROLLER_PORT@#$CONTROLLER_PORT#" \
    "$HERE/server.properties" > "$CONF"
  # KAFKA_OVERRIDES="num.io.threads=8 num.network.threads=3": broker properties for a bigger machine.
  for kv in ${KAFKA_OVERRIDES:-}; do echo "$kv" >> "$CONF"; done
  if [ ! -f "$DATA/meta.properties" ]; then
    say "formatting storage in ${DATA#$ROOT/}"
    java_run kafka.tools.StorageTool format -t "$(java_run kafka.tools.StorageTool random-uuid)" -c "$CONF" >>"$LOG" 2>&1 \
      || die "storage format failed, see ${LOG#$ROOT/}"
  fi
  say "starting Kafka $VERSION on 127.0.0.1:$PORT (log: ${LOG#$ROOT/})"
  # NOTE: setsid so the broker survives the shell that started it and gets no terminal signals.
  # GC pauses are logged (uptime-stamped) to .run/logs/kafka-gc.log, to read beside the latency stages.
  setsid java -Xms256m -Xmx"${KAFKA_HEAP:-512m}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Xlog:gc:file="$(dirname "$LOG")/kafka-gc.log":uptime,level:filecount=2,filesize=10m \
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$HERE/log4j2.yaml" \
    -cp "$CACHE/libs/*" kafka.Kafka "$CONF" >>"$LOG" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  wait_ready
}

wait_ready() {
  local deadline=$((SECONDS + ${KAFKA_WAIT_SECONDS:-90}))
  until "$PYTHON" - "$PORT" <<'PY' 2>/dev/null
import sys
from confluent_kafka.admin import AdminClient
md = AdminClient({"bootstrap.servers": f"127.0.0.1:{sys.argv[1]}", "log_level": 0}).list_topics(timeout=2)
sys.exit(0 if md.brokers else 1)
PY
  do
    if [ -f "$PIDFILE" ] && ! running; then tail -n 30 "$LOG" >&2; die "Kafka exited during start-up (log above)"; fi
    [ $SECONDS -lt $deadline ] || die "Kafka did not answer a metadata request in time, see ${LOG#$ROOT/}"
    sleep 1
  done
  say "ready on 127.0.0.1:$PORT"
}

stop() { stop_pidfile kafka "$PIDFILE" 30; }

case "${1:-}" in
  fetch) fetch ;;
  start) start ;;
  stop) stop ;;
  wait) wait_ready ;;
  status) if running; then say "running (pid $(cat "$PIDFILE")) on 127.0.0.1:$PORT"; else say "not running"; exit 1; fi ;;
  reset) stop; rm -rf "$RUN_DIR/kafka"; say "data removed" ;;
  logs) tail -n 100 -f "$LOG" ;;
  *) echo "usage: $0 fetch|start|stop|status|wait|reset|logs" >&2; exit 2 ;;
esac
