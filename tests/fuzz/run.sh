#!/usr/bin/env bash
# The schema-driven API fuzz run: schemathesis generates requests from the portal's own
# OpenAPI document and sends them to a running `aula serve` (own data directory, free port)
# as a moderator, as the admin and anonymously; any 5xx, undocumented status, wrong content
# type or answer outside its schema fails (tests/fuzz/fuzz.py). Called by scripts/test after
# `cargo test` built the binary; on its own:
#   tests/fuzz/run.sh [AULA_BIN]
#
# venv: $AULA_FUZZ_VENV (default <repo>/.venv-fuzz), pinned by tests/fuzz/requirements.txt;
# reinstalled only when that file changes. Bounds: AULA_FUZZ_EXAMPLES test cases per operation
# and phase (default 40), AULA_FUZZ_MAX_TIME seconds per role (default 40); AULA_FUZZ_SEED
# (default 14) makes a run repeatable; AULA_FUZZ_CHECKS replaces the list of checks, e.g.
# not_a_server_error,negative_data_rejection,positive_data_acceptance to hold the document's
# input schemas against what the server accepts (not in the default: names are trimmed, and
# a schema cannot say every character a name refuses). Reports (HAR, logs) go to target/fuzz/.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${AULA_FUZZ_VENV:-$repo/.venv-fuzz}"
python="${PYTHON:-python3}"
reqs="$here/requirements.txt"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$reqs" | cut -d' ' -f1)"

if [[ $# -gt 0 ]]; then
  export AULA_BIN="$1"
fi
bin="${AULA_BIN:-$repo/target/debug/aula}"
if [[ ! -x $bin ]]; then
  echo "run.sh: the portal binary $bin is missing: build it first (cargo build --bin aula) or pass its path" >&2
  exit 2
fi
export AULA_BIN
AULA_BIN="$(realpath "$bin")"

if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  echo "run.sh: installing the pinned fuzzing tools into $venv (first time: ~20 s)" >&2
  [[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --progress-bar off -r "$reqs"
  echo "$want" >"$stamp"
fi

export PYTHONDONTWRITEBYTECODE=1
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}" no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}"
exec timeout "${AULA_FUZZ_TIMEOUT:-600}" "$venv/bin/python" "$here/fuzz.py"
