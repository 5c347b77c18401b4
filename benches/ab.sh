#!/usr/bin/env bash
# Two Cairn binaries (say, before and after a change) timed interleaved on
# one corpus — A, B, B, A, A, B, … — so that a machine whose speed drifts
# during the run affects both alike. Each round makes a fresh repository,
# takes an initial and an unchanged backup, and records wall time, user and
# system time and peak memory under /usr/bin/time. Prints the median and
# range of each.
#
#   benches/ab.sh -a BIN_A -b BIN_B [-c CORPUS_DIR] [-n ROUNDS]
#
# BIN_A and BIN_B are release builds, e.g. of a worktree at the old commit:
#   git worktree add ../before <commit> && (cd ../before && cargo build --release)
#   benches/ab.sh -a ../before/target/release/cairn -b target/release/cairn
# CORPUS_DIR defaults to $HOME/cairn-bench/src; ROUNDS to 8. Warm cache.
set -euo pipefail
CORPUS=$HOME/cairn-bench/src
ROUNDS=8
A= B=
while getopts "a:b:c:n:h" opt; do
    case $opt in
        a) A=$OPTARG ;;
        b) B=$OPTARG ;;
        c) CORPUS=$OPTARG ;;
        n) ROUNDS=$OPTARG ;;
        *) sed -n '2,14p' "$0"; exit 2 ;;
    esac
done
[ -x "$A" ] && [ -x "$B" ] || { sed -n '2,14p' "$0"; exit 2; }
WORK=$(mktemp -d /tmp/cairn-ab.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export CAIRN_PASSWORD=bench
find "$CORPUS" -type f -print0 | xargs -0 cat > /dev/null 2>&1 || true
for i in $(seq 1 "$ROUNDS"); do
    order="a b"; [ $((i % 2)) = 0 ] && order="b a"
    for side in $order; do
        bin=$A; [ "$side" = b ] && bin=$B
        rm -rf "$WORK/repo"
        "$bin" -r "$WORK/repo" init -q > /dev/null
        sync
        for step in initial unchanged; do
            /usr/bin/time -o "$WORK/t" -f "%e %U %S %M" "$bin" -r "$WORK/repo" backup -q "$CORPUS"
            echo "$side $step $(cat "$WORK/t")" >> "$WORK/times"
        done
    done
done
python3 - "$WORK/times" "$A" "$B" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
print(f"A = {sys.argv[2]}\nB = {sys.argv[3]}")
print(f"{'step':10} {'side':4} {'wall s (range)':>20} {'user s':>7} {'sys s':>7} {'peak MB':>8}")
for step in ("initial", "unchanged"):
    for side in ("a", "b"):
        r = [list(map(float, x[2:])) for x in rows if x[0] == side and x[1] == step]
        col = lambda k: statistics.median(v[k] for v in r)
        walls = [v[0] for v in r]
        rng = f"{col(0):.2f} ({min(walls):.2f}-{max(walls):.2f})"
        print(f"{step:10} {side.upper():4} {rng:>20} {col(1):7.2f} {col(2):7.2f} {col(3)/1024:8.0f}")
PY
