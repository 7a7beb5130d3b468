#!/usr/bin/env bash
# `make compose-test`: the Docker Compose path, run for real (docs/docker.md).
#
# Installs what is missing (docker.io and debootstrap from Debian, Compose v2 built from the
# Go module proxy into .cache/compose), starts a PRIVATE dockerd (its own socket, data and
# exec roots, pidfile; only this script's commands talk to it through DOCKER_HOST, so a plain
# `docker info` keeps failing and `make up` keeps its local path for every other test), builds
# the test-only stand-in images (deploy/docker/), runs
#   docker compose -f docker-compose.yml -f deploy/docker/compose.test.yml up -d --wait
# with .env.example plus ALERT_RULES as the env file, runs tests/compose (through the
# published ports, as a user would), then `down -v`, stops dockerd and checks that nothing is
# left behind: containers, volumes, processes, bridges, iptables rules.
#
# dockerd runs with --iptables=false --ip-forward=false --bridge none: it changes no firewall
# rule, no FORWARD policy and no sysctl, so the fault suite's network namespaces (tests/chaos)
# keep working while it is up, and it leaves docker0 to any Docker engine of the machine.
# Containers talk over their compose network's bridge; the host reaches the published ports
# through docker-proxy; image builds that fetch packages use the host network.
#
# Env: COMPOSE_TEST_PORT_OFFSET: added to every published host port (5000, 9092, 9108, 5432,
#      9090); unset: 0, or 10000 when a default port is taken (e.g. by a local stack);
#      COMPOSE_TEST_KEEP=1 leaves the
#      stack and dockerd up for debugging (stop with `deploy/docker/compose-test.sh stop`).
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
RUN_DIR="${RUN_DIR:-$ROOT/.run}"
CACHE="$ROOT/.cache"
D="$RUN_DIR/docker"                  # run-time state: socket, pidfile, exec root, logs
DATA_ROOT="$CACHE/docker/data-root"  # images and build cache, kept between runs
COMPOSE_VERSION=v2.29.7
COMPOSE_BIN="$CACHE/compose/$COMPOSE_VERSION/docker-compose"
ROOTFS_TAR="$CACHE/docker/bookworm-minbase.tar"
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' deploy/local/kafka/pom.xml)
TOOLS="$CACHE/kafka-tools/$KAFKA_VERSION/libs"
DOCKER=/usr/bin/docker    # the docker.io client (20.10), matching its daemon's API
DOCKERD=/usr/sbin/dockerd
OFFSET="${COMPOSE_TEST_PORT_OFFSET:-}"
REPORTS="$ROOT/reports/compose"
PY="$ROOT/.venv/bin/python"

export DOCKER_HOST="unix://$D/docker.sock"
export DOCKER_CONFIG="$D/config"
export DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0
export COMPOSE_PROJECT_NAME=sensor-pipeline
COMPOSE=("$DOCKER" compose -f docker-compose.yml -f deploy/docker/compose.test.yml --env-file "$D/test.env")

t0=$SECONDS
step_start=$SECONDS
say() { printf '[compose-test] %s\n' "$*"; }
die() { printf '[compose-test] error: %s\n' "$*" >&2; exit 1; }
step() { step_start=$SECONDS; printf '\n[compose-test] == %s (at %ds)\n' "$*" $((SECONDS - t0)); }
took() { printf '[compose-test] -- %s: %ds\n' "$1" $((SECONDS - step_start)) | tee -a "$REPORTS/timings.txt"; }

# --- installing -----------------------------------------------------------------------

install_packages() {
  local missing=()
  [ -x "$DOCKERD" ] && [ -x "$DOCKER" ] || missing+=(docker.io)
  command -v debootstrap >/dev/null || [ -f "$ROOTFS_TAR" ] || missing+=(debootstrap)
  command -v iptables-save >/dev/null || missing+=(iptables)
  [ ${#missing[@]} = 0 ] && return 0
  say "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >"$D/apt.log" 2>&1 \
    || { apt-get update -q >>"$D/apt.log" 2>&1 \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$D/apt.log" 2>&1; } \
    || { tail -20 "$D/apt.log"; die "apt-get install ${missing[*]} failed (${D#$ROOT/}/apt.log)"; }
}

install_compose() {
  if [ ! -x "$COMPOSE_BIN" ]; then
    command -v go >/dev/null || die "Go 1.21+ is needed once to build Compose $COMPOSE_VERSION (Debian's docker-compose is v1)"
    say "building Compose $COMPOSE_VERSION from the Go module proxy (once, about 2 minutes)"
    local gobin="$CACHE/compose/$COMPOSE_VERSION.tmp"
    rm -rf "$gobin" && mkdir -p "$gobin"
    (cd /tmp && GOBIN="$gobin" go install "github.com/docker/compose/v2/cmd@$COMPOSE_VERSION") >"$D/go.log" 2>&1 \
      || { tail -20 "$D/go.log"; die "go install of Compose $COMPOSE_VERSION failed (${D#$ROOT/}/go.log)"; }
    mkdir -p "$(dirname "$COMPOSE_BIN")"
    mv "$gobin/cmd" "$COMPOSE_BIN" && rm -rf "$gobin"
  fi
  mkdir -p "$DOCKER_CONFIG/cli-plugins"
  ln -sf "$COMPOSE_BIN" "$DOCKER_CONFIG/cli-plugins/docker-compose"
}

fetch_rootfs() {
  [ -f "$ROOTFS_TAR" ] && return 0
  say "debootstrap --variant=minbase bookworm (once, about a minute or three)"
  local dir="$CACHE/docker/rootfs.tmp"
  rm -rf "$dir"
  debootstrap --variant=minbase bookworm "$dir" http://deb.debian.org/debian >"$D/debootstrap.log" 2>&1 \
    || die "debootstrap failed, see ${D#$ROOT/}/debootstrap.log"
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
  tar -C "$dir" -cf "$ROOTFS_TAR.tmp" . && mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
  rm -rf "$dir"
}

fetch_kafka_jars() {
  deploy/local/kafka.sh fetch || die "could not fetch the Kafka jars"
  [ -f "$TOOLS/.complete" ] && return 0
  say "fetching kafka-tools $KAFKA_VERSION from Maven Central"
  mkdir -p "$TOOLS"
  mvn -B -q -Dstyle.color=never -f deploy/docker/kafka/pom.xml dependency:copy-dependencies \
    -DincludeScope=runtime -DexcludeTransitive=true -DoutputDirectory="$TOOLS" \
    || die "mvn could not fetch kafka-tools $KAFKA_VERSION"
  touch "$TOOLS/.complete"
}

# --- the private dockerd ---------------------------------------------------------------

# Docker's own names only (other programs, e.g. the fault suite, make bridges and veths too).
bridges() { ip -o link show type bridge | awk -F': ' '{print $2}' | grep -E '^br-[0-9a-f]{12}$' | sort; }
veths() { ip -o link show type veth | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E '^veth[0-9a-f]{7}$' | sort; }
# iptables, one line per rule / non-default chain / policy, prefixed by its table; empty
# built-in chains with policy ACCEPT are left out (an absent table and an empty one are alike).
rules() {
  iptables-save 2>/dev/null | awk '/^\*/ {t=substr($0, 2)} /^-A / {print t "\t" $0}
    /^:/ {if (!($1 ~ /^:(INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING)$/ && $2 == "ACCEPT")) print t "\t" $1 " " $2}'
}

start_dockerd() {
  mkdir -p "$D/exec" "$DATA_ROOT"
  rules > "$D/iptables.before"
  bridges > "$D/bridges.before"
  veths > "$D/veths.before"
  sysctl -n net.ipv4.ip_forward > "$D/ip_forward.before"
  [ -d /sys/module/br_netfilter ] && echo loaded > "$D/br_netfilter.before" || echo absent > "$D/br_netfilter.before"
  say "starting dockerd (socket ${D#$ROOT/}/docker.sock, data root ${DATA_ROOT#$ROOT/}, log ${D#$ROOT/}/dockerd.log)"
  setsid "$DOCKERD" --host "$DOCKER_HOST" --data-root "$DATA_ROOT" --exec-root "$D/exec" \
    --pidfile "$D/dockerd.pid" --group root --storage-driver overlay2 --iptables=false --ip-forward=false --bridge none \
    >"$D/dockerd.log" 2>&1 </dev/null &
  echo $! > "$D/dockerd.launcher.pid"
  local deadline=$((SECONDS + 60))
  until "$DOCKER" version >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { tail -20 "$D/dockerd.log"; die "dockerd did not answer within 60 s"; }
    sleep 0.5
  done
}

stop_dockerd() {
  local pid
  pid=$(cat "$D/dockerd.pid" 2>/dev/null || cat "$D/dockerd.launcher.pid" 2>/dev/null || true)
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    say "stopping dockerd (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && { say "dockerd still up after 30 s: SIGKILL"; kill -KILL "$pid"; }
  fi
  rm -f "$D/dockerd.pid" "$D/dockerd.launcher.pid"
  # It also leaves its netns bind mount(s) under the exec root.
  awk -v d="$D/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | xargs -r -n1 umount 2>/dev/null || true
}

# --- the images -------------------------------------------------------------------------

image_exists() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

build_stand_in() {  # tag, folder (deploy/docker/<folder>), extra files to stage...
  local tag=$1 folder=$2 ctx="$D/ctx/$2"; shift 2
  if image_exists "$tag" && [ "$(cat "$CACHE/docker/$folder.sha" 2>/dev/null)" = "$(tree_sha "deploy/docker/$folder")" ]; then
    say "$tag: up to date"
    return 0
  fi
  rm -rf "$ctx" && mkdir -p "$ctx" && cp -a "deploy/docker/$folder/." "$ctx/"
  local extra
  for extra in "$@"; do cp -a "$extra" "$ctx/"; done
  say "building $tag"
  "$DOCKER" build --network host -q -t "$tag" "$ctx" >"$D/build-$folder.log" 2>&1 \
    || { tail -30 "$D/build-$folder.log"; die "docker build of $tag failed (${D#$ROOT/}/build-$folder.log)"; }
  tree_sha "deploy/docker/$folder" > "$CACHE/docker/$folder.sha"
}

tree_sha() { find "$1" -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1; }

build_images() {
  if ! image_exists sensor-test/debian:bookworm; then
    say "docker import of the bookworm root filesystem"
    "$DOCKER" import "$ROOTFS_TAR" sensor-test/debian:bookworm >/dev/null || die "docker import failed"
    rm -f "$CACHE"/docker/*.sha
  fi
  mkdir -p "$D/ctx/kafka-libs"
  build_stand_in sensor-test/python:3.11-bookworm python /etc/ssl/certs/ca-certificates.crt
  # The Kafka jars: deploy/local's (the broker) and kafka-tools (the scripts).
  rm -rf "$D/ctx/libs" && mkdir -p "$D/ctx/libs"
  cp "$CACHE/kafka/$KAFKA_VERSION"/libs/*.jar "$TOOLS"/*.jar "$D/ctx/libs/"
  build_stand_in sensor-test/kafka:"$KAFKA_VERSION" kafka "$D/ctx/libs" deploy/local/kafka/log4j2.yaml
  build_stand_in sensor-test/postgres:15 postgres
  build_stand_in sensor-test/prometheus:debian prometheus
  say "docker compose build (the repository's Dockerfile, PYTHON_IMAGE=sensor-test/python:3.11-bookworm)"
  "${COMPOSE[@]}" build >"$D/build-pipeline.log" 2>&1 \
    || { tail -30 "$D/build-pipeline.log"; die "docker compose build failed (${D#$ROOT/}/build-pipeline.log)"; }
}

# --- the stack ------------------------------------------------------------------------

write_env() {  # sink
  # What a user does: copy .env.example to .env and set a rule. Host ports moved by OFFSET.
  {
    cat .env.example
    # The browser test's rule (web/dashboard-test.mjs checks it is shown in full) and one of
    # this test's own (tests/compose: an alert in GET /alerts).
    echo 'ALERT_RULES="lab-*:temperature>40 clear<30,compose-*:temperature>40"'
    echo "SINK=$1"
    for var in API_PORT:5000 KAFKA_HOST_PORT:9092 CONSUMER_METRICS_PORT:9108 POSTGRES_HOST_PORT:5432 PROMETHEUS_PORT:9090; do
      echo "${var%%:*}=$((${var##*:} + OFFSET))"
    done
  } > "$D/test.env"
}

busy_ports() {  # offset
  local port busy=()
  for port in 5000 9092 9108 5432 9090; do
    port=$((port + $1))
    ss -Hltn "sport = :$port" | grep -q . && busy+=("$port")
  done
  echo "${busy[*]}"
}

choose_ports() {
  # The default ports, as a user gets them; when something else holds one (a local stack
  # that this run did not start), the same ports + 10000.
  if [ -z "$OFFSET" ]; then
    OFFSET=0
    local busy
    busy=$(busy_ports 0)
    if [ -n "$busy" ]; then
      say "host ports $busy are taken (a local stack?): publishing on the default ports + 10000"
      OFFSET=10000
    fi
  fi
  local busy
  busy=$(busy_ports "$OFFSET")
  [ -z "$busy" ] || die "host ports $busy are taken: stop what holds them or set COMPOSE_TEST_PORT_OFFSET"
}

leftovers() {  # prints what is left; empty when clean
  local pid
  for pid in $(pgrep -x dockerd; pgrep -x containerd; pgrep -f containerd-shim; pgrep -x docker-proxy); do
    grep -q "$D" "/proc/$pid/cmdline" 2>/dev/null && echo "process $pid: $(tr '\0' ' ' < "/proc/$pid/cmdline")"
    [ "$(basename "$(readlink "/proc/$pid/exe" 2>/dev/null)")" = docker-proxy ] && echo "process $pid: docker-proxy"
  done
  comm -13 "$D/bridges.before" <(bridges) | sed 's/^/bridge /'
  comm -13 "$D/veths.before" <(veths) | sed 's/^/veth /'
  # Rules naming Docker's chains or bridges, and the built-in chains' policies.
  comm -3 <(sort "$D/iptables.before") <(rules | sort) \
    | grep -P 'DOCKER|docker0|br-[0-9a-f]{12}|\t:(INPUT|FORWARD|OUTPUT|PREROUTING|POSTROUTING) ' | sed 's/^/iptables /'
  [ "$(sysctl -n net.ipv4.ip_forward)" = "$(cat "$D/ip_forward.before")" ] || echo "net.ipv4.ip_forward changed"
  [ "$([ -d /sys/module/br_netfilter ] && echo loaded || echo absent)" = "$(cat "$D/br_netfilter.before")" ] \
    || echo "br_netfilter was loaded (bridged traffic now goes through iptables)"
  grep -qs "$D" /proc/mounts && grep "$D" /proc/mounts | sed 's/^/mount /'
  true
}

cleanup() {
  local code=$?
  trap - EXIT INT TERM
  if [ "${COMPOSE_TEST_KEEP:-0}" = 1 ] && [ $code = 0 ]; then
    say "COMPOSE_TEST_KEEP=1: stack and dockerd left up (DOCKER_HOST=$DOCKER_HOST DOCKER_CONFIG=$DOCKER_CONFIG)"
    exit 0
  fi
  if [ -S "$D/docker.sock" ] && "$DOCKER" version >/dev/null 2>&1; then
    step "docker compose down -v"
    "${COMPOSE[@]}" --profile not-on-this-machine down -v --remove-orphans >>"$D/compose.log" 2>&1 || code=1
    local containers volumes
    containers=$("$DOCKER" ps -aq | wc -l)
    volumes=$("$DOCKER" volume ls -q | wc -l)
    say "after down -v: $containers containers, $volumes volumes"
    [ "$containers" = 0 ] && [ "$volumes" = 0 ] || { say "FAIL: down -v left containers or volumes"; code=1; }
    took "down -v"
  fi
  step "stopping dockerd"
  stop_dockerd
  took "stop dockerd"
  if [ -f "$D/iptables.before" ]; then
    local left
    left=$(leftovers)
    if [ -n "$left" ]; then
      say "FAIL: left behind after stopping dockerd:"; printf '%s\n' "$left"; code=1
    else
      say "nothing left behind: no container, volume, dockerd/containerd/docker-proxy process, bridge, veth, mount or iptables change"
    fi
  fi
  say "total $((SECONDS - t0)) s, exit code $code (timings: ${REPORTS#$ROOT/}/timings.txt)"
  exit $code
}

main() {
  mkdir -p "$D" "$REPORTS" "$CACHE/docker"
  : > "$REPORTS/timings.txt"
  [ "$(id -u)" = 0 ] || die "root is needed (dockerd)"
  if [ -f "$D/dockerd.pid" ] && kill -0 "$(cat "$D/dockerd.pid")" 2>/dev/null; then
    die "a dockerd of an earlier run is still up (pid $(cat "$D/dockerd.pid")): deploy/docker/compose-test.sh stop"
  fi

  step "installing what is missing: docker.io, debootstrap (Debian)"
  install_packages
  took "apt-get install"
  step "Compose $COMPOSE_VERSION (go install, once)"
  install_compose
  took "Compose"
  step "base root filesystem and Kafka jars"
  fetch_rootfs
  fetch_kafka_jars
  took "rootfs and jars"
  choose_ports
  write_env postgres

  trap cleanup EXIT
  trap 'exit 130' INT TERM
  step "starting a private dockerd"
  start_dockerd
  took "dockerd"
  step "building the images"
  build_images
  took "images"

  # The store: the timescaledb service (the default), then SINK=sqlite (a file in the volume
  # the api and the pool share) on a fresh stack. COMPOSE_TEST_SINKS=postgres runs one.
  local sink
  for sink in ${COMPOSE_TEST_SINKS:-postgres sqlite}; do
    run_stack "$sink"
  done
}

run_stack() {  # sink
  write_env "$1"
  step "docker compose up -d --wait (SINK=$1)"
  "${COMPOSE[@]}" up -d --wait --wait-timeout 300 2>&1 | tee "$D/compose.log" | grep -v '^\s*$' | tail -20
  local up=${PIPESTATUS[0]}
  took "up -d --wait, SINK=$1 (time to healthy)"
  "${COMPOSE[@]}" ps -a 2>&1 | tee -a "$D/compose.log"
  if [ "$up" != 0 ]; then
    "${COMPOSE[@]}" logs --no-color --tail 50 2>&1 | tail -150
    die "docker compose up -d --wait failed (SINK=$1)"
  fi

  step "checks through the published ports (tests/compose, SINK=$1)"
  COMPOSE_STACK_ENV="$D/test.env" COMPOSE_REPORTS="$REPORTS/$1" \
    "$PY" -m pytest -p no:cacheprovider -v -s tests/compose
  local checks=$?
  took "checks, SINK=$1"
  "${COMPOSE[@]}" logs --no-color > "$REPORTS/compose-$1.log" 2>&1 || true
  [ $checks = 0 ] || die "the compose checks failed with SINK=$1 (logs: ${REPORTS#$ROOT/}/compose-$1.log)"
  step "docker compose down -v (SINK=$1)"
  "${COMPOSE[@]}" down -v --remove-orphans >>"$D/compose.log" 2>&1 || die "docker compose down -v failed"
  took "down -v, SINK=$1"
}

stop() {
  trap cleanup EXIT
  exit 0
}

case "${1:-run}" in
  run) main ;;
  stop) stop ;;
  *) die "usage: $0 [run|stop]" ;;
esac
