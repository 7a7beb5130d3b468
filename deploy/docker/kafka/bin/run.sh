#!/bin/bash
# The official apache/kafka image's configuration convention, the part the compose file uses:
# every KAFKA_* variable (but the JVM ones) is a broker property, KAFKA_ stripped, lower-cased,
# `___` -> `-`, `__` -> `_`, `_` -> `.`; CLUSTER_ID formats empty storage (KRaft).
set -euo pipefail
CONF=/opt/kafka/config/server.properties
: > "$CONF"
while IFS='=' read -r name value; do
  case "$name" in
    KAFKA_HEAP_OPTS|KAFKA_OPTS|KAFKA_JVM_PERFORMANCE_OPTS|KAFKA_LOG4J_OPTS|KAFKA_JMX_OPTS|KAFKA_GC_LOG_OPTS) continue ;;
    KAFKA_*) ;;
    *) continue ;;
  esac
  key=${name#KAFKA_}
  key=$(printf '%s' "$key" | sed -e 's/___/-/g' -e 's/__/@/g' -e 's/_/./g' -e 's/@/_/g' | tr '[:upper:]' '[:lower:]')
  printf '%s=%s\n' "$key" "${!name}" >> "$CONF"
done < <(env | grep -o '^KAFKA_[A-Za-z0-9_]*=' | sort -u)
: "${CLUSTER_ID:?CLUSTER_ID must be set (any base64 UUID)}"
data=$(sed -n 's/^log\.dirs=//p' "$CONF" | cut -d, -f1)
if [ ! -f "${data:-/tmp/kraft-combined-logs}/meta.properties" ]; then
  KAFKA_HEAP_OPTS="-Xmx256m" /opt/kafka/bin/kafka-run-class.sh kafka.tools.StorageTool format \
    --ignore-formatted -t "$CLUSTER_ID" -c "$CONF"
fi
exec /opt/kafka/bin/kafka-run-class.sh kafka.Kafka "$CONF"
