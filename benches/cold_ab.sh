#!/usr/bin/env bash
# Two Cairn binaries (before and after a change) on the read-bound steps,
# each with the page cache dropped before it, interleaved round after round
# (A then B, then B then A) so that a disk whose speed drifts affects both
# alike: the initial backup, an unchanged second backup (stat only),
# `check --read-data` and a restore, all of a local repository. Prints one
# line per step: round, binary, step, wall seconds, peak RSS (KiB). Run as
# root (dropping the cache needs it):
#
#   benches/cold_ab.sh BIN_A BIN_B [CORPUS] [ROUNDS]
#
# BIN_A, BIN_B: release builds, e.g. of a worktree at the old commit
# (`git worktree add ../before COMMIT && (cd ../before && cargo build
# --release)`). CORPUS defaults to $HOME/cairn-bench/src, ROUNDS to 3.
set -euo pipefail
A=${1:?BIN_A} B=${2:?BIN_B}
SRC=${3:-$HOME/cairn-bench/src}
ROUNDS=${4:-3}
if [ "$(id -u)" != 0 ]; then
    echo "run as root: the page cache must be dropped before each step" >&2
    exit 1
fi
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
WORK=$(mktemp -d /tmp/cairn-cold-ab.XXXX)
trap 'rm -rf "$WORK"' EXIT
export CAIRN_PASSWORD=bench CAIRN_CACHE_DIR=off
step() { # name bin args...
    local name=$1 bin=$2
    shift 2
    drop
    /usr/bin/time -f "%e %M" -o "$WORK/t" "$bin" "$@" > /dev/null 2>&1
    echo "$round $label $name $(cat "$WORK/t")"
}
one() {
    local R=$WORK/repo
    rm -rf "$R" "$WORK/out"
    "$bin" -r "$R" init > /dev/null 2>&1
    step initial "$bin" -r "$R" backup --quiet "$SRC"
    step unchanged "$bin" -r "$R" backup --quiet "$SRC"
    step check-read-data "$bin" -r "$R" check --read-data
    step restore "$bin" -r "$R" restore latest --target "$WORK/out"
    rm -rf "$R" "$WORK/out"
}
for round in $(seq "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then order="A B"; else order="B A"; fi
    for label in $order; do
        if [ "$label" = A ]; then bin=$A; else bin=$B; fi
        one
    done
done
