#!/usr/bin/env bash
# `make bench`: every benchmark in turn against real Kafka (and PostgreSQL), one at a time
# (flock), results printed and appended to BENCHMARKS.md by each bench module.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
export RUN_DIR="${RUN_DIR:-$ROOT/.run}"
mkdir -p "$RUN_DIR/logs"
if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[bench] installing wrk (Debian) for the HTTP load"
    apt-get install -y -qq wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
  else
    echo "[bench] wrk is needed for the HTTP benchmarks: sudo apt-get install wrk" >&2; exit 1
  fi
fi
VEGETA="$ROOT/.cache/bin/vegeta"
if [ ! -x "$VEGETA" ] && ! command -v vegeta >/dev/null; then
  command -v go >/dev/null || { echo "[bench] Go is needed once to install vegeta (open-loop load): apt-get install golang" >&2; exit 1; }
  echo "[bench] installing vegeta v12.13.0 (open-loop load generator) into .cache/bin"
  GOBIN="$ROOT/.cache/bin" go install github.com/tsenart/vegeta/v12@v12.13.0
fi
deploy/local/kafka.sh start
deploy/local/postgres.sh start
export BENCH_KAFKA_BROKER="127.0.0.1:${KAFKA_PORT:-9092}"
export BENCH_DATABASE_URL="$(deploy/local/postgres.sh url)"
parts=("${@:-service pool pipeline read_side completeness fleet rollups ray_pool}")
for part in ${parts[@]}; do
  if [ -f "bench/$part.py" ]; then
    echo "[bench] $part"
    flock /tmp/sensor-pipeline-bench.lock .venv/bin/python -m "bench.$part"
  fi
done
