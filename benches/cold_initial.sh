#!/usr/bin/env bash
# A first backup with a cold page cache: Cairn with and without read-ahead
# (--read-concurrency 16 and 0), restic, and the disk's own limit (all
# files read by `xargs -P 32 cat`), each with the page cache dropped
# before it, in the same loop, round after round. Run as root (dropping
# the cache needs it), after `cargo build --release`:
#
#   benches/cold_initial.sh [CORPUS] [ROUNDS]
#
# CORPUS defaults to $HOME/cairn-bench/src (../shared/bench/corpus.sh
# builds it). Prints one line per step: round, tool, wall seconds.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SRC=${1:-$HOME/cairn-bench/src}
ROUNDS=${2:-2}
BIN=${CAIRN:-target/release/cairn}
if [ "$(id -u)" != 0 ]; then
    echo "run as root: the page cache must be dropped before each step" >&2
    exit 1
fi
command -v restic >/dev/null || { echo "restic is not installed (apt-get install restic)" >&2; exit 1; }
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
timed() {
    local s e
    s=$(date +%s.%N)
    "$@" >/dev/null 2>&1
    e=$(date +%s.%N)
    echo "$e - $s" | bc
}
for round in $(seq "$ROUNDS"); do
    for tool in cat32 cairn16 cairn0 restic; do
        R=$(mktemp -d /tmp/cairn-cold.XXXX)
        case $tool in
            cat32)
                drop
                x=$(timed sh -c "find '$SRC' -type f -print0 | xargs -0 -P 32 -n 64 cat > /dev/null")
                ;;
            cairn16 | cairn0)
                CAIRN_PASSWORD=bench "$BIN" -r "$R/repo" init >/dev/null 2>&1
                drop
                x=$(timed env CAIRN_PASSWORD=bench CAIRN_CACHE_DIR=off "$BIN" -r "$R/repo" \
                    backup --quiet --read-concurrency "${tool#cairn}" "$SRC")
                ;;
            restic)
                RESTIC_PASSWORD=bench restic -r "$R/repo" init >/dev/null 2>&1
                drop
                x=$(timed env RESTIC_PASSWORD=bench RESTIC_CACHE_DIR="$R/cache" restic -r "$R/repo" backup "$SRC")
                ;;
        esac
        echo "round $round $tool $x"
        rm -rf "$R"
    done
done
