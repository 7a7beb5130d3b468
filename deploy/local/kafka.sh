#!/usr/bin/env bash
# Real Apache Kafka without Docker: jars from Maven Central, KRaft, one node or three.
#   deploy/local/kafka.sh fetch|start|stop|status|wait|reset|logs|bootstrap|pid N
# Env: KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093), KAFKA_HEAP (512m), RUN_DIR (.run),
#      KAFKA_OVERRIDES (extra server.properties lines, space-separated key=value),
#      KAFKA_NODES (1 or 3): three nodes, each broker and controller, replication factor 3
#        and min.insync.replicas=2 (kafka/cluster.properties). On 127.0.0.1 node N listens
#        on KAFKA_PORT+2(N-1) and KAFKA_CONTROLLER_PORT+2(N-1);
#      KAFKA_NETNS (a name prefix, with KAFKA_SUBNET, e.g. 10.213.0): node N runs in the
#        network namespace PREFIX-nN made by harness/netns.py, clients reach it on
#        SUBNET.(10+N):KAFKA_PORT and its peers on SUBNET.(138+N):KAFKA_PORT+2 (the fault suite).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$ROOT/deploy/local/kafka"
VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$HERE/pom.xml")
CACHE="$ROOT/.cache/kafka/$VERSION"
RUN_DIR="${RUN_DIR:-$ROOT/.run}"
PORT="${KAFKA_PORT:-9092}"
CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
NODES="${KAFKA_NODES:-1}"
NETNS="${KAFKA_NETNS:-}"
SUBNET="${KAFKA_SUBNET:-}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"

say() { printf '[kafka] %s\n' "$*"; }
die() { printf '[kafka] error: %s\n' "$*" >&2; exit 1; }

case "$NODES" in 1|3) ;; *) die "KAFKA_NODES must be 1 or 3, got '$NODES'" ;; esac
[ -z "$NETNS" ] || [ "$NODES" = 3 ] || die "KAFKA_NETNS needs KAFKA_NODES=3"
[ -z "$NETNS" ] || [ -n "$SUBNET" ] || die "KAFKA_NETNS needs KAFKA_SUBNET (e.g. 10.213.0)"

# Per node: one node keeps the paths it always had (.run/kafka.pid, .run/kafka/data).
pidfile() { if [ "$NODES" = 1 ]; then echo "$RUN_DIR/kafka.pid"; else echo "$RUN_DIR/kafka-$1.pid"; fi; }
datadir() { if [ "$NODES" = 1 ]; then echo "$RUN_DIR/kafka/data"; else echo "$RUN_DIR/kafka/node$1"; fi; }
conffile() { if [ "$NODES" = 1 ]; then echo "$RUN_DIR/kafka/server.properties"; else echo "$RUN_DIR/kafka/node$1.properties"; fi; }
logfile() { if [ "$NODES" = 1 ]; then echo "$RUN_DIR/logs/kafka.log"; else echo "$RUN_DIR/logs/kafka-$1.log"; fi; }
client_host() { if [ -n "$NETNS" ]; then echo "$SUBNET.$((10 + $1))"; else echo 127.0.0.1; fi; }
peer_host() { if [ -n "$NETNS" ]; then echo "$SUBNET.$((138 + $1))"; else echo 127.0.0.1; fi; }
client_port() { if [ -n "$NETNS" ]; then echo "$PORT"; else echo $((PORT + 2 * ($1 - 1))); fi; }
controller_port() { if [ -n "$NETNS" ]; then echo "$CONTROLLER_PORT"; else echo $((CONTROLLER_PORT + 2 * ($1 - 1))); fi; }

bootstrap() {
  local n out=""
  for n in $(seq 1 "$NODES"); do out="$out${out:+,}$(client_host "$n"):$(client_port "$n")"; done
  echo "$out"
}

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
running() { pid_alive "$(pidfile "$1")"; }
any_running() { local n; for n in $(seq 1 "$NODES"); do running "$n" && return 0; done; return 1; }

java_run() { java -Dlog4j2.configurationFile="$HERE/log4j2.yaml" -cp "$CACHE/libs/*" "$@"; }
# NOTE: exec all the way down (ip netns exec and setsid exec too), so the pid we record is java's.
in_netns() { if [ -n "$NETNS" ]; then exec ip netns exec "$NETNS-n$1" "${@:2}"; else exec "${@:2}"; fi; }

write_conf() {  # node
  local n=$1 conf voters="" m
  conf=$(conffile "$n")
  if [ "$NODES" = 1 ]; then
    sed -e "s#@DATA_DIR@#$(datadir 1)#" -e "s#@PORT@#$PORT#" -e "s#@CONTROLLER_PORT@#$CONTROLLER_PORT#" \
      "$HERE/server.properties" > "$conf"
  else
    for m in $(seq 1 "$NODES"); do voters="$voters${voters:+,}$m@$(peer_host "$m"):$(controller_port "$m")"; done
    {
      cat "$HERE/cluster.properties"
      echo "node.id=$n"
      echo "controller.quorum.voters=$voters"
      echo "log.dirs=$(datadir "$n")"
      if [ -n "$NETNS" ]; then
        # Clients on the client link, replication and the controller quorum on the peer link,
        # so cutting the peer link isolates a node from its peers but not from clients.
        # (Kafka wants a port per listener, even on two addresses: replication uses KAFKA_PORT+2.)
        echo "listeners=PLAINTEXT://$(client_host "$n"):$PORT,INTERNAL://$(peer_host "$n"):$((PORT + 2)),CONTROLLER://$(peer_host "$n"):$CONTROLLER_PORT"
        echo "advertised.listeners=PLAINTEXT://$(client_host "$n"):$PORT,INTERNAL://$(peer_host "$n"):$((PORT + 2))"
        echo "inter.broker.listener.name=INTERNAL"
      else
        echo "listeners=PLAINTEXT://127.0.0.1:$(client_port "$n"),CONTROLLER://127.0.0.1:$(controller_port "$n")"
        echo "advertised.listeners=PLAINTEXT://127.0.0.1:$(client_port "$n")"
        echo "inter.broker.listener.name=PLAINTEXT"
      fi
    } > "$conf"
  fi
  # KAFKA_OVERRIDES="num.io.threads=8 num.network.threads=3": broker properties for a bigger machine.
  for kv in ${KAFKA_OVERRIDES:-}; do echo "$kv" >> "$conf"; done
}

start_node() {  # node
  local n=$1 data log conf cluster_id
  data=$(datadir "$n"); log=$(logfile "$n"); conf=$(conffile "$n")
  if running "$n"; then say "node $n already running (pid $(cat "$(pidfile "$n")"))"; return 0; fi
  mkdir -p "$data" "$(dirname "$log")"
  write_conf "$n"
  if [ ! -f "$data/meta.properties" ]; then
    # NOTE: the nodes of a cluster share one cluster id, kept beside their folders.
    [ -f "$RUN_DIR/kafka/cluster.id" ] || java_run kafka.tools.StorageTool random-uuid > "$RUN_DIR/kafka/cluster.id"
    cluster_id=$(cat "$RUN_DIR/kafka/cluster.id")
    say "formatting storage in ${data#$ROOT/}"
    java_run kafka.tools.StorageTool format -t "$cluster_id" -c "$conf" >>"$log" 2>&1 \
      || die "storage format failed, see ${log#$ROOT/}"
  fi
  say "starting Kafka $VERSION node $n on $(client_host "$n"):$(client_port "$n") (log: ${log#$ROOT/})"
  # NOTE: setsid so the broker survives the shell that started it and gets no terminal signals.
  # GC pauses are logged (uptime-stamped) beside the broker log, to read beside the latency stages.
  (in_netns "$n" setsid java -Xms256m -Xmx"${KAFKA_HEAP:-512m}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Xlog:gc:file="${log%.log}-gc.log":uptime,level:filecount=2,filesize=10m \
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$HERE/log4j2.yaml" \
    -cp "$CACHE/libs/*" kafka.Kafka "$conf") >>"$log" 2>&1 < /dev/null &
  echo $! > "$(pidfile "$n")"
}

start() {
  fetch
  mkdir -p "$RUN_DIR/kafka"
  # Nodes that are down are started (all of them at once: a quorum needs two), running ones kept.
  local n
  for n in $(seq 1 "$NODES"); do start_node "$n"; done
  wait_ready
}

wait_ready() {
  local deadline=$((SECONDS + ${KAFKA_WAIT_SECONDS:-90})) n
  until "$PYTHON" - "$(bootstrap)" "$NODES" <<'PY' 2>/dev/null
import sys
from confluent_kafka.admin import AdminClient
md = AdminClient({"bootstrap.servers": sys.argv[1], "log_level": 0}).list_topics(timeout=2)
sys.exit(0 if len(md.brokers) >= int(sys.argv[2]) else 1)
PY
  do
    for n in $(seq 1 "$NODES"); do
      if [ -f "$(pidfile "$n")" ] && ! running "$n"; then
        tail -n 30 "$(logfile "$n")" >&2; die "Kafka node $n exited during start-up (log above)"
      fi
    done
    [ $SECONDS -lt $deadline ] || die "Kafka did not answer a metadata request with $NODES broker(s) in time, see ${RUN_DIR#$ROOT/}/logs/"
    sleep 1
  done
  say "ready: $(bootstrap)"
}

stop() {
  # Every node this RUN_DIR recorded, whatever KAFKA_NODES says now (`make down` after
  # `KAFKA_NODES=3 make up` stops all three).
  local f found=0
  for f in "$RUN_DIR/kafka.pid" "$RUN_DIR"/kafka-[0-9].pid; do
    [ -f "$f" ] || continue
    found=1
    stop_pidfile "kafka $(basename "$f" .pid)" "$f" 30 &
  done
  wait
  [ "$found" = 1 ] || say "not running"
}

status() {
  local n up=0
  for n in $(seq 1 "$NODES"); do
    if running "$n"; then say "node $n running (pid $(cat "$(pidfile "$n")")) on $(client_host "$n"):$(client_port "$n")"; up=$((up + 1))
    else say "node $n not running"; fi
  done
  [ "$up" = "$NODES" ]
}

case "${1:-}" in
  fetch) fetch ;;
  start) start ;;
  start-node) fetch; start_node "${2:?node number}" ;;
  stop) stop ;;
  wait) wait_ready ;;
  status) status ;;
  bootstrap) bootstrap ;;
  pid) cat "$(pidfile "${2:?node number}")" ;;
  reset) stop; rm -rf "$RUN_DIR/kafka"; say "data removed" ;;
  logs) tail -n 100 -f "$(logfile "${2:-1}")" ;;
  *) echo "usage: $0 fetch|start|start-node N|stop|status|wait|reset|logs [N]|bootstrap|pid N" >&2; exit 2 ;;
esac
