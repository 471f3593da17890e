#!/usr/bin/env bash
# Infrastructure-as-code tests (template.yaml, infra/): cfn-lint, `sam validate --lint`, the SAM
# template translated offline and created as a stack on the local AWS endpoint, the IAM policy
# rules and the region guard. Called by scripts/test (which starts moto first); on its own:
#   eval "$(localstack/start.sh)" && tests/infra/run.sh && localstack/stop.sh
#
# venv: $AULA_INFRA_VENV (default <repo>/.venv-infra), pinned by tests/infra/requirements.txt;
# reinstalled only when that file changes. Extra arguments go to pytest.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${AULA_INFRA_VENV:-$repo/.venv-infra}"
python="${PYTHON:-python3}"
reqs="$here/requirements.txt"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$reqs" | cut -d' ' -f1)"

if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  echo "run.sh: installing the pinned IaC test tools into $venv (first time: ~90 s)" >&2
  [[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --progress-bar off -r "$reqs"
  echo "$want" >"$stamp"
fi

export PATH="$venv/bin:$PATH" SAM_CLI_TELEMETRY=0 AWS_SAM_CLI_TELEMETRY=0 PYTHONDONTWRITEBYTECODE=1
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}" no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}"
cd "$repo"
# -p no:cacheprovider: leave no .pytest_cache in the repository.
exec timeout "${AULA_INFRA_TEST_TIMEOUT:-600}" "$venv/bin/python" -m pytest -p no:cacheprovider \
  -q -rfEs "$here" "$@"
