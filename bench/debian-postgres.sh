#!/usr/bin/env bash
# PostgreSQL from a newer Debian release, beside the system's, without touching
# it: the platform deploys 17, this machine image's Debian 12 ships 15, and
# only Debian's apt is reachable here. Debian 13 (trixie) has 17.
#
#   sudo bash bench/debian-postgres.sh [DIR]      # default /opt/debian-trixie
#   BENCH_PG_BINDIR=$(bash bench/debian-postgres.sh --bindir) npm run bench:backup
#   PATH=<that bindir>:$PATH npm test             # the real tests against 17
#
# How: debootstrap a minimal trixie tree with postgresql-17, then point its
# binaries at that tree's dynamic loader and libraries (patchelf), so they run
# on this host with host paths: no chroot, and relative paths (share/, lib/)
# resolve inside the tree. Needs root, ~250 MB and a few minutes.
set -euo pipefail
SUITE=trixie
MAJOR=17
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if [[ "${1:-}" == --bindir ]]; then
  echo "${2:-/opt/debian-$SUITE}/usr/lib/postgresql/$MAJOR/bin"
  exit 0
fi
DIR=${1:-/opt/debian-$SUITE}
BIN="$DIR/usr/lib/postgresql/$MAJOR/bin"

if [[ -x "$BIN/postgres" ]] && "$BIN/postgres" --version >/dev/null 2>&1; then
  echo "$BIN"
  exit 0
fi
((EUID == 0)) || { echo "debian-postgres: needs root (debootstrap)" >&2; exit 1; }
# The loader and library paths below are x86_64's.
[[ "$(dpkg --print-architecture)" == amd64 ]] || { echo "debian-postgres: only amd64 hosts are supported" >&2; exit 1; }
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v patchelf >/dev/null || need+=(patchelf)
if ((${#need[@]})); then
  apt-get install -y -qq "${need[@]}" >/dev/null || { apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; }
fi

echo "debian-postgres: debootstrap $SUITE with postgresql-$MAJOR into $DIR" >&2
debootstrap --variant=minbase --include="postgresql-$MAJOR,postgresql-client-$MAJOR" "$SUITE" "$DIR" "$MIRROR" >&2

loader="$DIR/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
# DT_RPATH (not RUNPATH) so libraries loaded by libraries, and extensions the
# server dlopen()s, are found in the tree too.
rpath="$DIR/usr/lib/x86_64-linux-gnu:$DIR/lib/x86_64-linux-gnu:$DIR/usr/lib/postgresql/$MAJOR/lib"
for f in "$BIN"/*; do
  if [[ -f "$f" ]] && head -c 4 "$f" | grep -q ELF; then
    patchelf --set-interpreter "$loader" --force-rpath --set-rpath "$rpath" "$f"
  fi
done
"$BIN/postgres" --version >&2
echo "$BIN"
