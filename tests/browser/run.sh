#!/usr/bin/env bash
# Runs the JavaScript tests with Node's test runner: "js" for the client's
# unit tests (tests/js), "browser" for the headless-chromium tests (here),
# "setup" to only install node_modules. node_modules comes from
# package-lock.json with `npm ci`, again only when the lock file changed.
# Expects CHORUSD and CHORUS_CLI (ctest sets them), else build/.
#
# Node is the project's own (scripts/node.sh installs it in .tools/node), or
# CHORUS_NODE; one older than playwright-core's minimum fails every mode
# with what to run, so a machine without it never passes by skipping.
set -euo pipefail
cd "$(dirname "$0")"

NODE_MIN_MAJOR=20
node=${CHORUS_NODE:-$(cd ../.. && pwd)/.tools/node/bin/node}
version=$("$node" --version 2>/dev/null || true)
major=${version#v}
major=${major%%.*}
case "$major" in ''|*[!0-9]*) major=0 ;; esac
if [ "$major" -lt "$NODE_MIN_MAJOR" ]; then
  echo "run.sh: the browser tests need Node.js $NODE_MIN_MAJOR or newer at" \
       "$node (found: ${version:-nothing that runs});" \
       "run scripts/deps.sh --test (or scripts/node.sh) to install it" >&2
  exit 1
fi
# npm (beside node) and its `#!/usr/bin/env node` use this node.
export PATH="$(dirname "$node"):$PATH"

stamp=node_modules/.chorus-package-lock.json
if ! cmp -s package-lock.json "$stamp" 2>/dev/null; then
  # The registry's certificate is checked against the system's CA store too,
  # as curl and apt check theirs (it holds a proxy's CA if one was added),
  # where this Node can (22.15 and newer).
  ca=""
  "$node" --use-system-ca -e 0 2>/dev/null && ca=--use-system-ca
  NODE_OPTIONS="$ca" npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json "$stamp"
fi

case "${1:-all}" in
  setup) exit 0 ;;
  js) files=(../js/*.test.mjs) ;;
  browser)
    chromium=${CHROMIUM:-/usr/bin/chromium}
    if [ ! -x "$chromium" ]; then
      echo "run.sh: $chromium not found; install it with scripts/deps.sh --test" >&2
      exit 1
    fi
    files=(./*.test.mjs) ;;
  all) files=(../js/*.test.mjs ./*.test.mjs) ;;
  *) echo "usage: run.sh [setup|js|browser|all]" >&2; exit 2 ;;
esac
# EventSource is still behind a flag in Node 24: tests/js inject it into
# the client's SSE transport, as a browser would provide it.
exec "$node" --experimental-eventsource --disable-warning=ExperimentalWarning --test --test-reporter=spec "${files[@]}"
