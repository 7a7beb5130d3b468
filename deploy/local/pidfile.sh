# Sourced by the deploy/local scripts: processes we started, tracked by a pid file.

# pid_alive PIDFILE: the recorded process still runs.
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# stop_pidfile NAME PIDFILE SECONDS: SIGTERM the recorded process (and only it), wait up to
# SECONDS for it to exit, then SIGKILL; the pid file is removed either way.
stop_pidfile() {
  local name=$1 pidfile=$2 seconds=$3 pid
  if ! pid_alive "$pidfile"; then rm -f "$pidfile"; printf '[%s] not running\n' "$name"; return 0; fi
  pid=$(cat "$pidfile")
  printf '[%s] stopping pid %s\n' "$name" "$pid"
  kill -TERM "$pid"
  for _ in $(seq 1 $((seconds * 2))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then
    printf '[%s] still up after %s s, killing\n' "$name" "$seconds"
    kill -KILL "$pid"
  fi
  rm -f "$pidfile"
}
