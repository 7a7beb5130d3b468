#!/usr/bin/env bash
# `make test`: everything CI runs. Sets up what is missing (venv, Kafka jars), starts real
# Kafka and PostgreSQL (and Prometheus when installed), runs pytest, then the Locust
# acceptance gate; stops whatever it started, even when a step fails. Last, with the local
# Kafka and PostgreSQL stopped (their ports free), the Docker Compose stack (make compose-test,
# docs/docker.md; COMPOSE_TEST=0 leaves it out).
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
export RUN_DIR="${RUN_DIR:-$ROOT/.run}"
mkdir -p "$RUN_DIR/logs" reports
started=()
t0=$SECONDS

say() { printf '\n[test] %s (%ds)\n' "$*" $((SECONDS - t0)); }
# The time of each phase, printed at the end whatever happens (the summary CI shows last).
phases=() phase_name="" phase_start=$SECONDS
phase() {  # name: ends the current phase, starts the next
  [ -n "$phase_name" ] && phases+=("$(printf '%6ds  %s' $((SECONDS - phase_start)) "$phase_name")")
  phase_name=$1 phase_start=$SECONDS
  if [ -n "$1" ]; then say "$1"; fi
}
summary() {
  phase ""
  printf '\n[test] time by phase\n'
  printf '[test] %s\n' "${phases[@]}"
  printf '[test] %6ds  total\n' $((SECONDS - t0))
}

cleanup() {
  local code=$?
  for ((i=${#started[@]}-1; i>=0; i--)); do
    say "stopping ${started[i]}"
    "deploy/local/${started[i]}.sh" stop || true
  done
  summary
  say "done, exit code $code"
  exit $code
}
trap cleanup EXIT
trap 'exit 130' INT TERM

phase "installing Python dependencies"
make -s install install-ray || exit 1

# vegeta (open-loop load): tests/service/test_overload.py offers twice the API's capacity,
# more than a Python sender can on two cores.
if [ ! -x "$ROOT/.cache/bin/vegeta" ] && ! command -v vegeta >/dev/null; then
  command -v go >/dev/null || { echo "Go is needed once to install vegeta (open-loop load): apt-get install golang" >&2; exit 1; }
  say "installing vegeta v12.13.0 into .cache/bin"
  GOBIN="$ROOT/.cache/bin" go install github.com/tsenart/vegeta/v12@v12.13.0 || exit 1
fi

phase "lint (ruff, mypy, the import-layer contract)"
make -s lint || exit 1

phase "fetching and starting Kafka"
if deploy/local/kafka.sh status >/dev/null 2>&1; then
  say "Kafka already running; using it"
else
  started+=(kafka)
  deploy/local/kafka.sh start || exit 1
fi

phase "starting PostgreSQL"
if deploy/local/postgres.sh status >/dev/null 2>&1; then
  say "PostgreSQL already running; using it"
else
  started+=(postgres)
  deploy/local/postgres.sh start || exit 1
fi
export TEST_DATABASE_URL="$(deploy/local/postgres.sh url)"
export TEST_KAFKA_BROKER="127.0.0.1:${KAFKA_PORT:-9092}"

phase "pytest"
.venv/bin/python -m pytest "$@" || exit 1

if [ -f loadtests/gate.py ]; then
  phase "Locust acceptance gate"
  make -s loadtest-ci || exit 1
fi

if [ "${COMPOSE_TEST:-1}" != 0 ]; then
  # NOTE: the compose stack publishes the default ports (9092, 5432, ...): stop ours first.
  for ((i=${#started[@]}-1; i>=0; i--)); do
    say "stopping ${started[i]} (before the compose stack)"
    "deploy/local/${started[i]}.sh" stop || true
  done
  started=()
  phase "Docker Compose stack (make compose-test)"
  make -s compose-test || exit 1
fi

if [ "${COMPOSE_TEST:-1}" != 0 ]; then
  # The fault suite beside an ordinary Docker engine (iptables on, FORWARD policy DROP), started
  # before and then after the suite's namespaces: one scenario each, on the three-node cluster
  # whose quorum dockerd's rules used to break (harness/netns.py, docs/docker.md).
  phase "the fault suite beside a Docker engine (make chaos-docker)"
  make -s chaos-docker || exit 1
fi
