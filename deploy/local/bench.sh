#!/usr/bin/env bash
# `make bench`: every benchmark in turn against real Kafka (and PostgreSQL), one at a time
# (flock), results printed and appended to BENCHMARKS.md by each bench module.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
export RUN_DIR="${RUN_DIR:-$ROOT/.run}"
mkdir -p "$RUN_DIR/logs"
deploy/local/kafka.sh start
deploy/local/postgres.sh start
export BENCH_KAFKA_BROKER="127.0.0.1:${KAFKA_PORT:-9092}"
export BENCH_DATABASE_URL="$(deploy/local/postgres.sh url)"
parts=("${@:-service pool pipeline}")
for part in ${parts[@]}; do
  if [ -f "bench/$part.py" ]; then
    echo "[bench] $part"
    flock /tmp/sensor-pipeline-bench.lock .venv/bin/python -m "bench.$part"
  fi
done
