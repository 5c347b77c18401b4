#!/usr/bin/env bash
# Reading one big file through `cairn mount` and `restic mount`: a file of
# SIZE_MIB MiB of incompressible data is backed up into a local repository
# of each, then read with `cat` through a fresh mount, with the
# repository's files evicted from the page cache first (cold) and then
# again through another fresh mount with them cached (warm). Eviction is
# per file (posix_fadvise DONTNEED on the repository's files), so it does
# not disturb other work on the machine. Run as root (FUSE), after
# `cargo build --release`:
#
#   benches/mount.sh [SIZE_MIB] [ROUNDS]
#
# Prints one line per read: round, tool, cold|warm, seconds, MiB/s.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SIZE=${1:-1024}
ROUNDS=${2:-2}
BIN=$(realpath "${CAIRN:-target/release/cairn}")
[ "$(id -u)" = 0 ] || { echo "run as root (FUSE mounts)" >&2; exit 1; }
W=$(mktemp -d /var/tmp/cairn-mount-bench.XXXX)
cleanup() {
    for m in "$W"/mnt-*; do
        mountpoint -q "$m" 2>/dev/null && { fusermount -u "$m" 2>/dev/null || umount -l "$m"; }
    done
    rm -rf "$W"
}
trap cleanup EXIT
export CAIRN_PASSWORD=bench RESTIC_PASSWORD=bench
mkdir -p "$W/src"
head -c "$((SIZE << 20))" /dev/urandom > "$W/src/big.bin"
"$BIN" -r "$W/cairn" init >/dev/null
"$BIN" -r "$W/cairn" backup -q "$W/src"
have_restic=0
if command -v restic >/dev/null; then
    have_restic=1
    restic -r "$W/restic" init >/dev/null 2>&1
    restic -r "$W/restic" backup -q "$W/src" >/dev/null
fi
evict() {
    find "$1" -type f -print0 | python3 -c '
import os, sys
for p in sys.stdin.buffer.read().split(b"\0"):
    if p:
        fd = os.open(p, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)'
}
# Mount with TOOL on a new directory, read the file, unmount; print seconds.
read_once() {
    local tool=$1 mnt pid s e
    mnt=$(mktemp -d "$W/mnt-XXXX")
    case $tool in
        cairn) "$BIN" -r "$W/cairn" mount -q "$mnt" & ;;
        restic) restic -r "$W/restic" mount "$mnt" >/dev/null 2>&1 & ;;
    esac
    pid=$!
    for _ in $(seq 600); do
        [ -e "$mnt/snapshots/latest" ] && break
        sleep 0.05
    done
    s=$(date +%s.%N)
    cat "$mnt/snapshots/latest$W/src/big.bin" > /dev/null
    e=$(date +%s.%N)
    kill -INT "$pid"
    wait "$pid" || true
    echo "$e - $s" | bc
}
tools="cairn"
[ "$have_restic" = 1 ] && tools="cairn restic"
for round in $(seq "$ROUNDS"); do
    for tool in $tools; do
        evict "$W/$tool"
        t=$(read_once "$tool")
        echo "$round $tool cold $t $(echo "$SIZE / $t" | bc)"
        t=$(read_once "$tool")
        echo "$round $tool warm $t $(echo "$SIZE / $t" | bc)"
    done
done
