#!/usr/bin/env bash
# Installs what the browser tests need, and nothing when it is there already:
#   - Debian's chromium (apt-get), if /usr/bin/chromium is missing;
#   - Debian's nftables (apt-get), if `nft` is missing: a test cuts the media node's UDP, and
#     netns.mjs drops packets inside a pupil's network namespace;
#   - Debian's iproute2 (apt-get), if `ip` or `tc` is missing: netns.mjs makes the
#     namespaces, veth pairs and bandwidth caps with them;
#   - Debian's coturn (apt-get), if `turnserver` is missing: the TURN server the firewall
#     tests relay through (netns.mjs starts it on the test network's own address; the
#     package's own service is not used);
#   - playwright-core and axe-core, pinned in package-lock.json (npm ci), if node_modules does
#     not match the lock file. playwright-core downloads no browser; the tests drive Debian's.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

log() { printf '== %s\n' "$*" >&2; }

missing=()
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
command -v nft >/dev/null || [[ -x /usr/sbin/nft ]] || missing+=(nftables)
{ command -v ip && command -v tc; } >/dev/null || [[ -x /usr/sbin/ip && -x /usr/sbin/tc ]] || missing+=(iproute2)
command -v turnserver >/dev/null || [[ -x /usr/bin/turnserver ]] || missing+=(coturn)
if ((${#missing[@]})); then
  log "installing Debian's ${missing[*]} (apt-get)"
  sudo=()
  if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq -o Dpkg::Use-Pty=0 "${missing[@]}" >/dev/null
fi

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "install.sh: node and npm are needed (Node 20 or newer)" >&2
  exit 1
fi

# npm ci only when the lock file changed since the last install (or node_modules is gone).
stamp="$here/node_modules/.aula-installed"
want="$(sha256sum "$here/package-lock.json" | cut -d' ' -f1) $(node --version)"
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  log "installing the browser tests' npm packages (npm ci in tests/browser)"
  (
    cd "$here"
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null
  )
  printf '%s' "$want" >"$stamp"
fi

# Say what runs (the wrapper script's own warnings on stderr are not ours).
log "$(/usr/bin/chromium --version 2>/dev/null), playwright-core $(node -p "require('$here/node_modules/playwright-core/package.json').version")"
