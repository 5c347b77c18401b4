#!/usr/bin/env bash
# Repository maintenance, Cairn against restic on the same history: 30
# snapshots of the kernel tree with changes between them (each round
# rewrites 300 files and adds 100), then `check`, `check --read-data`,
# forgetting the older half, and `prune`, each timed.
#
#   benches/lifecycle.sh [-c CORPUS_DIR] [-n SNAPSHOTS]
#
# CORPUS_DIR defaults to $HOME/cairn-bench/src; it is copied to a work
# directory first (the copy is changed, never the corpus).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CORPUS=$HOME/cairn-bench/src
N=30
while getopts "c:n:h" opt; do
    case $opt in
        c) CORPUS=$OPTARG ;;
        n) N=$OPTARG ;;
        *) sed -n '2,10p' "$0"; exit 2 ;;
    esac
done
CAIRN_BIN=${CAIRN_BIN:-$HERE/target/release/cairn}
WORK=$(mktemp -d /tmp/cairn-lifecycle.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export CAIRN_PASSWORD=bench RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$WORK/restic-cache
TREE=$WORK/tree
cp -a "$CORPUS" "$TREE"
mapfile -t FILES < <(find "$TREE" -type f -name '*.c' | sort)

timed() { # label cmd... -> appends "label wall" to $WORK/times
    local label=$1; shift
    /usr/bin/time -f "%e" -o "$WORK/t" "$@" > "$WORK/log" 2>&1 || { cat "$WORK/log" >&2; exit 1; }
    echo "$label $(cat "$WORK/t")" >> "$WORK/times"
}

"$CAIRN_BIN" -r "$WORK/cairn" init -q
restic -r "$WORK/restic" init --repository-version 2 -q
echo "building $N snapshots of $TREE with both tools ..."
for round in $(seq 1 "$N"); do
    if [ "$round" -gt 1 ]; then
        for k in $(seq 0 299); do
            f=${FILES[$(( (round * 7919 + k * 104729) % ${#FILES[@]} ))]}
            head -c 20000 /dev/urandom | base64 > "$f"
        done
        mkdir -p "$TREE/added-$round"
        for k in $(seq 1 100); do head -c 8000 /dev/urandom | base64 > "$TREE/added-$round/n$k.txt"; done
    fi
    "$CAIRN_BIN" -r "$WORK/cairn" backup -q "$TREE"
    restic -r "$WORK/restic" backup -q "$TREE" > /dev/null
done
sync
for tool in cairn restic; do
    case $tool in
        cairn)  cmd=("$CAIRN_BIN" -r "$WORK/cairn") ;;
        restic) cmd=(restic -r "$WORK/restic") ;;
    esac
    before=$(du -sb "$WORK/$tool" | cut -f1)
    timed "$tool check" "${cmd[@]}" check
    timed "$tool check--read-data" "${cmd[@]}" check --read-data
    "${cmd[@]}" forget --keep-last $(( N / 2 )) > /dev/null
    timed "$tool prune" "${cmd[@]}" prune
    after=$(du -sb "$WORK/$tool" | cut -f1)
    echo "$tool size $((before / 1000000)) $((after / 1000000))" >> "$WORK/sizes"
done

python3 - "$WORK/times" "$WORK/sizes" <<'PY'
import sys
t = {}
for line in open(sys.argv[1]):
    tool, step, wall = line.split()
    t[(tool, step)] = float(wall)
print(f"{'step':<20} {'cairn s':>9} {'restic s':>9} {'restic/cairn':>13}")
for step in ["check", "check--read-data", "prune"]:
    c, r = t[("cairn", step)], t[("restic", step)]
    print(f"{step:<20} {c:>9.2f} {r:>9.2f} {r / c:>13.2f}")
for line in open(sys.argv[2]):
    tool, _, before, after = line.split()
    print(f"{tool} repository: {before} MB before prune, {after} MB after")
PY
