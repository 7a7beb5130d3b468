#!/usr/bin/env bash
# The fault suite (tests/chaos) beside an ordinary Docker engine, the one a user runs: dockerd
# WITH its iptables rules (FORWARD policy DROP; bridged frames go through FORWARD when
# br_netfilter is on). Checks that harness/netns.py's own FORWARD rule keeps the three-node
# cluster working whichever starts first (docs/docker.md):
#   deploy/docker/chaos-with-dockerd.sh before   dockerd first, then the suite
#   deploy/docker/chaos-with-dockerd.sh after    the suite first; dockerd once its namespaces exist
# Extra arguments go to pytest (default: the chaos_ci scenarios that `make test` runs).
# Restores the iptables rules and policies dockerd changed, and removes its bridge, afterwards.
# Run it under the fault suite's lock on a shared machine: flock /tmp/chaos.lock ...
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
D="${RUN_DIR:-$ROOT/.run}/docker-iptables"
DOCKER=/usr/bin/docker
PREFIX="${CHAOS_NET_PREFIX:-s13}"
ORDER="${1:-}"
shift || true
[ "$ORDER" = before ] || [ "$ORDER" = after ] || { echo "usage: $0 before|after [pytest args]" >&2; exit 2; }
[ -x /usr/sbin/dockerd ] || { echo "dockerd is needed (apt-get install docker.io)" >&2; exit 2; }
export DOCKER_HOST="unix://$D/docker.sock"

say() { printf '[chaos-with-dockerd] %s\n' "$*"; }
rules() { iptables-save 2>/dev/null | awk '/^\*/ {t=substr($0, 2)} /^(-A|:)/ {print t "\t" $0}' | sed 's/ \[[0-9]*:[0-9]*\]$//'; }

start_dockerd() {
  mkdir -p "$D/exec" "$D/data"
  say "starting dockerd with iptables (socket ${D#$ROOT/}/docker.sock)"
  setsid /usr/sbin/dockerd --host "$DOCKER_HOST" --data-root "$D/data" --exec-root "$D/exec" \
    --pidfile "$D/dockerd.pid" >"$D/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 1 120); do "$DOCKER" version >/dev/null 2>&1 && break; sleep 0.5; done
  "$DOCKER" version >/dev/null 2>&1 || { tail "$D/dockerd.log"; say "dockerd did not start"; exit 1; }
  say "FORWARD policy now: $(iptables -S FORWARD | head -1)"
}

stop_dockerd() {
  local pid table line chain policy
  pid=$(cat "$D/dockerd.pid" 2>/dev/null) || return 0
  say "stopping dockerd (pid $pid)"
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  awk -v d="$D/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | xargs -r -n1 umount 2>/dev/null
  # Undo only what dockerd added (its DOCKER* chains and the rules naming them) and its policies.
  rules > "$D/iptables.after"
  comm -13 <(sort "$D/iptables.before") <(sort "$D/iptables.after") | grep -P '\t-A .*(DOCKER|docker0)' \
    | while IFS=$'\t' read -r table line; do eval "iptables -t $table -D ${line#-A }" || true; done
  comm -13 <(sort "$D/iptables.before") <(sort "$D/iptables.after") | grep -P '\t:DOCKER' \
    | while IFS=$'\t' read -r table line; do
        chain=${line%% *}; chain=${chain#:}
        iptables -t "$table" -F "$chain"; iptables -t "$table" -X "$chain"
      done
  for chain in INPUT FORWARD OUTPUT; do
    policy=$(grep -P "^filter\t:$chain " "$D/iptables.before" | awk '{print $3}')
    iptables -P "$chain" "${policy:-ACCEPT}"
  done
  sysctl -q -w net.ipv4.ip_forward="$(cat "$D/ip_forward.before")"
  [ -s "$D/docker0.before" ] || ip link del docker0 2>/dev/null
  rm -rf "$D"
}

mkdir -p "$D"
rules > "$D/iptables.before"
sysctl -n net.ipv4.ip_forward > "$D/ip_forward.before"
ip -o link show docker0 > "$D/docker0.before" 2>/dev/null
trap stop_dockerd EXIT

args=("$@")
[ ${#args[@]} -gt 0 ] || args=(tests/chaos -q -p no:cacheprovider)
if [ "$ORDER" = before ]; then
  start_dockerd
  .venv/bin/python -m pytest "${args[@]}"
  code=$?
else
  .venv/bin/python -m pytest "${args[@]}" &
  suite=$!
  for _ in $(seq 1 600); do ip netns list | grep -q "^$PREFIX-n3" && break; sleep 0.2; done
  ip netns list | grep -q "^$PREFIX-n3" || say "the suite's namespaces did not appear"
  start_dockerd
  wait $suite
  code=$?
fi
say "tests/chaos with dockerd started $ORDER the namespaces: exit code $code"
exit $code
