#!/usr/bin/env bash
# Checks the README's promise on a bare Debian 12: bootstraps a minimal root
# (debootstrap --variant=minbase bookworm) from this machine's Debian mirror,
# copies the repository's HEAD into it (git archive), and runs
# scripts/test.sh there as root with CI=true, the way a new user would.
# Measures what `deps.sh --test` installs and how long it takes first.
# See docs/RELIABILITY.md, "Fresh machine check".
#
#   sudo bash scripts/fresh-check.sh DIR [MIRROR]
#
# DIR must not exist (or be empty); it is left in place for inspection
# (remove it with `rm -rf --one-file-system DIR`), with DIR.debootstrap.log
# and DIR.deps.log beside it; the tests' output goes to stdout. The chroot shares the
# network with the host: every test server listens on a free loopback port.
# What it mounts is unmounted on exit, and what is still running inside the
# root then is stopped by PID.
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: fresh-check.sh DIR [MIRROR]" >&2
  exit 2
fi
[ "$(id -u)" -eq 0 ] || { echo "fresh-check.sh: run as root" >&2; exit 1; }
command -v debootstrap >/dev/null || {
  echo "fresh-check.sh: apt-get install debootstrap" >&2
  exit 1
}
repo=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$1"
dir=$(cd "$1" && pwd)
if [ -n "$(ls -A "$dir")" ]; then
  echo "fresh-check.sh: $dir is not empty" >&2
  exit 1
fi

# debian_sources: "URI SUITE" for each Debian suite this machine's apt uses,
# from one-line (sources.list) and deb822 (*.sources) files alike.
debian_sources() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] && awk '$1 == "deb" { sub(/\[[^]]*\]/, ""); $0 = $0; print $2, $3 }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && awk '
      function flush() { if (deb) for (u in uris) for (s in suites) print u, s
                         deb = 0; delete uris; delete suites }
      /^[ \t]*$/ { flush(); next }
      tolower($1) == "types:" { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
      tolower($1) == "uris:" { for (i = 2; i <= NF; i++) uris[$i] = 1 }
      tolower($1) == "suites:" { for (i = 2; i <= NF; i++) suites[$i] = 1 }
      END { flush() }' "$f"
  done
}
sources=$(debian_sources)
mirror=${2:-$(awk '$2 == "bookworm" { print $1; exit }' <<<"$sources")}
mirror=${mirror:-http://deb.debian.org/debian}
security=$(awk '$2 == "bookworm-security" { print $1; exit }' <<<"$sources")
security=${security:-http://security.debian.org/debian-security}

log() { echo "fresh-check: $(date -u +%H:%M:%S) $*"; }

mounted=()
cleanup() {
  local rc=$? pid root i left=()
  # Whatever still runs inside the root (a test's broker, chromium), by PID.
  for pid in $(ls /proc | grep -E '^[0-9]+$'); do
    root=$(readlink "/proc/$pid/root" 2>/dev/null) || continue
    if [ "$root" = "$dir" ]; then
      log "stopping leftover pid $pid ($(cat "/proc/$pid/comm" 2>/dev/null))"
      kill -TERM "$pid" 2>/dev/null && left+=("$pid")
    fi
  done
  for ((i = 0; i < 50 && ${#left[@]} > 0; i++)); do
    sleep 0.1
    for pid in "${!left[@]}"; do
      kill -0 "${left[pid]}" 2>/dev/null || unset "left[pid]"
    done
  done
  for pid in "${left[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
    umount "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}" || true
  done
  log "unmounted; the root stays in $dir"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mnt() { # mnt TARGET MOUNT-ARGS...: mounts, and remembers to unmount
  local target=$1
  shift
  mount "$@" "$target"
  mounted+=("$target")
}

log "debootstrap --variant=minbase bookworm $dir $mirror"
start=$SECONDS
debootstrap --variant=minbase bookworm "$dir" "$mirror" >"$dir.debootstrap.log" 2>&1 || {
  tail -20 "$dir.debootstrap.log" >&2
  exit 1
}
log "debootstrap took $((SECONDS - start)) s"

# What a Debian 12 installation has: the release, its updates and security
# suites, a hosts file and the resolver.
cat >"$dir/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $security bookworm-security main
EOF
[ -e "$dir/etc/hosts" ] || printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$dir/etc/hosts"
cp /etc/resolv.conf "$dir/etc/resolv.conf"
# This machine's own trust anchors, if its network needs them (a proxy that
# inspects TLS): ca-certificates adds them to the root's store when deps.sh
# installs it, so curl and npm trust what they trust on the host.
if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
  mkdir -p "$dir/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$dir/usr/local/share/ca-certificates/"
fi

mkdir -p "$dir/project"
git -C "$repo" archive HEAD | tar -x -C "$dir/project"
log "copied $(git -C "$repo" rev-parse --short HEAD) into $dir/project"

mnt "$dir/proc" -t proc proc
mnt "$dir/sys" -t sysfs sysfs
mnt "$dir/dev" --bind /dev
mount --make-private "$dir/dev"
mnt "$dir/dev/pts" --bind /dev/pts
mnt "$dir/dev/shm" -t tmpfs -o mode=1777,nosuid,nodev shm

# in_root CMD: a login shell in the root with a clean environment, as root.
in_root() {
  chroot "$dir" /usr/bin/env -i HOME=/root TERM="${TERM:-dumb}" CI=true \
    LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    bash -lc "$1" &
  local pid=$!
  wait "$pid"
}
count_packages() {
  chroot "$dir" dpkg-query -W -f='${db:Status-Abbrev}\n' | grep -c '^ii'
}

before=$(count_packages)
start=$SECONDS
log "bash scripts/deps.sh --test ($before packages installed)"
in_root 'cd /project && bash scripts/deps.sh --test' >"$dir.deps.log" 2>&1 || {
  tail -20 "$dir.deps.log" >&2
  exit 1
}
deps_time=$((SECONDS - start))
after=$(count_packages)
log "deps.sh --test: $((after - before)) packages installed in ${deps_time} s" \
    "($before -> $after), plus .tools/node: $(du -sh "$dir/project/.tools" | cut -f1)"

start=$SECONDS
log "bash scripts/test.sh"
rc=0
in_root 'cd /project && bash scripts/test.sh' || rc=$?
log "test.sh exited $rc after $((SECONDS - start)) s"
exit "$rc"
