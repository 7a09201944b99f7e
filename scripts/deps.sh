#!/usr/bin/env bash
# Installs the Debian 12 packages Chorus needs to build, run and test.
# Safe to run again: it only calls apt-get when something is missing.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config
  libevent-dev libssl-dev libjansson-dev libsqlite3-dev zlib1g-dev liburing-dev
  libhiredis-dev
  openssl curl
  python3 python3-websockets python3-pytest
)
if [ "${1:-}" = "--test" ]; then
  PACKAGES+=(sqlite3)
  # The package test: systemd-analyze verify, man --warnings, completion.
  PACKAGES+=(systemd man-db bash-completion)
  # Cluster tests: a real Redis, and nginx as the load balancer.
  PACKAGES+=(redis-server nginx-light)
  # The browser client's tests: Node with npm, and a real browser.
  PACKAGES+=(nodejs chromium)
  # NodeSource's nodejs ships npm and conflicts with Debian's npm package.
  command -v npm >/dev/null 2>&1 || PACKAGES+=(npm)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
    missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
