#!/usr/bin/env bash
# Install the local AWS endpoint (moto server) into a venv.
#   venv: $AULA_AWS_VENV (default <repo>/.venv-aws)   python: $PYTHON (default python3)
# Re-runs are fast: nothing is installed when the venv already has the pinned versions.
set -euo pipefail

MOTO_VERSION=5.2.5
BOTO3_VERSION=1.44.8

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
venv="${AULA_AWS_VENV:-$repo/.venv-aws}"
python="${PYTHON:-python3}"

installed_ok() {
  [[ -x "$venv/bin/python" && -x "$venv/bin/moto_server" ]] || return 1
  "$venv/bin/python" - "$MOTO_VERSION" "$BOTO3_VERSION" <<'PY' >/dev/null 2>&1
import sys
from importlib.metadata import version
import flask  # noqa: F401  (moto's [server] extra)
sys.exit(0 if (version("moto"), version("boto3")) == (sys.argv[1], sys.argv[2]) else 1)
PY
}

if installed_ok; then
  echo "install.sh: $venv already has moto $MOTO_VERSION, boto3 $BOTO3_VERSION"
  exit 0
fi

if [[ ! -x "$venv/bin/python" ]]; then
  echo "install.sh: creating venv $venv"
  if ! "$python" -m venv "$venv"; then
    echo "install.sh: '$python -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)" >&2
    exit 1
  fi
fi

echo "install.sh: installing moto[server]==$MOTO_VERSION boto3==$BOTO3_VERSION into $venv"
"$venv/bin/python" -m pip install --disable-pip-version-check --no-input --progress-bar off \
  "moto[server]==$MOTO_VERSION" "boto3==$BOTO3_VERSION"

if ! installed_ok; then
  echo "install.sh: install finished but the pinned versions are not importable from $venv" >&2
  exit 1
fi
echo "install.sh: ok ($venv)"
