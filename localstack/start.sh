#!/usr/bin/env bash
# Start the local AWS endpoint (moto server) on 127.0.0.1:$AULA_AWS_PORT (default 4566) and
# create Aula's resources from localstack/resources.json.
#
# Progress goes to stderr; stdout is only the export lines, so this works:
#   eval "$(localstack/start.sh)"
# An endpoint that already answers on the port (moto, or LocalStack from docker-compose.yml)
# is reused. Pid file and log: $AULA_AWS_STATE_DIR (default <repo>/target/localstack).
# Stop with localstack/stop.sh.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
venv="${AULA_AWS_VENV:-$repo/.venv-aws}"
port="${AULA_AWS_PORT:-4566}"
state="${AULA_AWS_STATE_DIR:-$repo/target/localstack}"
timeout="${AULA_AWS_START_TIMEOUT:-30}"
pidfile="$state/moto-$port.pid"
logfile="$state/moto-$port.log"
endpoint="http://127.0.0.1:$port"
py="$venv/bin/python"

log() { echo "start.sh: $*" >&2; }

# Never route requests for the local endpoint through a proxy.
export NO_PROXY="127.0.0.1${NO_PROXY:+,$NO_PROXY}" no_proxy="127.0.0.1${no_proxy:+,$no_proxy}"

"$here/install.sh" >&2

# Prints closed | moto | localstack | other for 127.0.0.1:$port.
probe() {
  "$py" - "$port" <<'PY'
import socket, sys, urllib.request
port = int(sys.argv[1])
try:
    socket.create_connection(("127.0.0.1", port), timeout=1).close()
except OSError:
    print("closed"); sys.exit(0)
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
def ok(path, needle):
    try:
        with opener.open(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status == 200 and needle in r.read(65536)
    except Exception:
        return False
# The dashboard page is small and constant; data.json grows with every stored item.
if ok("/moto-api/", b"<title>Moto</title>"):
    print("moto")
elif ok("/_localstack/health", b"services"):
    print("localstack")
else:
    print("other")
PY
}

mkdir -p "$state"
status="$(probe)"
case "$status" in
  moto | localstack)
    log "reusing the $status endpoint already answering on $endpoint"
    ;;
  other)
    log "127.0.0.1:$port is in use by something that is not moto/LocalStack; set AULA_AWS_PORT"
    exit 1
    ;;
  closed)
    if [[ -f "$pidfile" ]]; then
      log "removing stale pid file $pidfile"
      rm -f "$pidfile"
    fi
    log "starting moto_server on $endpoint (log: $logfile)"
    # setsid: own session, so the server outlives the shell/CI step that started it.
    # moto_serial.py: moto one request at a time, see the comment in that file.
    setsid "$py" "$here/moto_serial.py" 127.0.0.1 "$port" >"$logfile" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$pidfile"
    deadline=$((SECONDS + timeout))
    until [[ "$(probe)" == moto ]]; do
      if ! kill -0 "$pid" 2>/dev/null; then
        log "moto_server (pid $pid) exited; last log lines:"
        tail -n 20 "$logfile" >&2 || true
        rm -f "$pidfile"
        exit 1
      fi
      if ((SECONDS >= deadline)); then
        log "moto_server (pid $pid) did not answer on $endpoint within ${timeout}s; stopping it. Log: $logfile"
        kill "$pid" 2>/dev/null || true
        rm -f "$pidfile"
        exit 1
      fi
      sleep 0.2
    done
    log "moto_server is up (pid $pid)"
    ;;
esac

AWS_ENDPOINT_URL="$endpoint" AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
  "$py" "$here/create_resources.py" >&2

AWS_ENDPOINT_URL="$endpoint" "$py" "$here/create_resources.py" --print-env
