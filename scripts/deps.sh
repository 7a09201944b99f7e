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
# Installed without their Recommends.
LEAN_PACKAGES=()
if [ "${1:-}" = "--test" ]; then
  PACKAGES+=(sqlite3)
  # test_tcp_congestion reads accepted sockets' congestion control (ss).
  PACKAGES+=(iproute2)
  # The package test: systemd-analyze verify, man --warnings, completion;
  # cpack's DEB generator needs `file` (for dpkg-shlibdeps).
  PACKAGES+=(systemd man-db bash-completion file)
  # Cluster tests: a real Redis, and nginx as the load balancer.
  PACKAGES+=(redis-server nginx-light)
  # The browser client's tests: a real browser, and curl for the project's
  # own Node (scripts/node.sh, below; Debian's nodejs 18 is too old).
  # Chromium's recommends (avahi, cups, polkit, udev...) are not needed
  # headless; fonts-liberation, one of them, renders the pages' text.
  PACKAGES+=(ca-certificates)
  LEAN_PACKAGES+=(chromium fonts-liberation)
fi

# not_installed PKG...: those of the packages that are not installed.
not_installed() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
      echo "$p"
  done
}
mapfile -t missing < <(not_installed "${PACKAGES[@]}")
mapfile -t lean_missing < <(not_installed "${LEAN_PACKAGES[@]}")
if [ $((${#missing[@]} + ${#lean_missing[@]})) -gt 0 ]; then
  echo "deps: installing ${missing[*]} ${lean_missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  apt_get() { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get "$@"; }
  apt_get update -qq
  [ ${#missing[@]} -eq 0 ] || apt_get install -y -qq "${missing[@]}"
  [ ${#lean_missing[@]} -eq 0 ] ||
    apt_get install -y -qq --no-install-recommends "${lean_missing[@]}"
fi

if [ "${1:-}" = "--test" ]; then
  bash "$(dirname "$0")/node.sh"
fi
