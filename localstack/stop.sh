#!/usr/bin/env bash
# Stop the moto server that localstack/start.sh started on $AULA_AWS_PORT (default 4566).
# Only the process recorded in the pid file is stopped; an endpoint start.sh merely reused
# (or LocalStack from docker compose) is left alone.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
port="${AULA_AWS_PORT:-4566}"
state="${AULA_AWS_STATE_DIR:-$repo/target/localstack}"
pidfile="$state/moto-$port.pid"

log() { echo "stop.sh: $*" >&2; }

if [[ ! -f "$pidfile" ]]; then
  log "no pid file $pidfile: nothing started by start.sh on port $port"
  exit 0
fi
pid="$(cat "$pidfile")"
if [[ ! "$pid" =~ ^[0-9]+$ ]] || ! kill -0 "$pid" 2>/dev/null; then
  log "moto_server (pid ${pid:-?}) is not running; removing $pidfile"
  rm -f "$pidfile"
  exit 0
fi
# Guard against a recycled pid: only stop it if it is still our moto_server.
if [[ -r "/proc/$pid/cmdline" ]] && ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qE "moto_server|moto_serial"; then
  log "pid $pid is no longer moto_server; removing stale $pidfile"
  rm -f "$pidfile"
  exit 0
fi

kill -TERM "$pid"
for _ in $(seq 50); do
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$pid" 2>/dev/null; then
  log "moto_server (pid $pid) ignored SIGTERM for 5 s; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
fi
rm -f "$pidfile"
log "stopped moto_server (pid $pid) on 127.0.0.1:$port"
