#!/usr/bin/env bash
# Repository growth of database captures (issue 11, item 5: chunk-list
# trees, FORMAT.md §5.8). Two figures, each checked against its target:
#
#  1. a 210 MB database (gen_db.py --scale 0.25) captured again after ~0.6%
#     of its pages changed (mutate_db.py at 1/20 of a night's rates): the
#     repository may grow by at most 0.75 × the changed pages' raw bytes
#     (db_change_profile.py) + 64 KB;
#  2. the 836 MiB database (--scale 1.0) backed up again unchanged: under
#     100 KB.
#
#   benches/chunklist_growth.sh [-s SMALL_SCALE] [-l LARGE_SCALE]
#
# Databases are generated once into $DATA (default $HOME/cairn-bench:
# db-0.25/ and db.pristine/, the latter shared with sqlite_night.sh) and
# copied for each run. Needs python3 and a release build of Cairn
# (CAIRN_BIN). BENCH_DIR points at the corpus scripts (default
# ../shared/bench next to this repository). Exit status 1 if a target is
# missed.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SMALL=0.25
LARGE=1.0
while getopts "s:l:h" opt; do
    case $opt in
        s) SMALL=$OPTARG ;;
        l) LARGE=$OPTARG ;;
        *) sed -n '2,20p' "$0"; exit 2 ;;
    esac
done
DATA=${DATA:-$HOME/cairn-bench}
BENCH_DIR=${BENCH_DIR:-$HERE/../shared/bench}
CAIRN_BIN=${CAIRN_BIN:-$HERE/target/release/cairn}
WORK=$(mktemp -d /tmp/cairn-chunklist.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export CAIRN_PASSWORD=bench

db_at() { # db_at SCALE -> path of the pristine database, generated if missing
    local dir=$DATA/db-$1
    [ "$1" = 1.0 ] && dir=$DATA/db.pristine
    if [ ! -f "$dir/vault.sqlite3" ]; then
        mkdir -p "$dir"
        python3 "$BENCH_DIR/gen_db.py" "$dir/vault.sqlite3" --scale "$1" --seed 42 >&2
    fi
    echo "$dir/vault.sqlite3"
}
size() { du -sb "$1/data" "$1/index" "$1/snapshots" | awk '{ s += $1 } END { print s }'; }
backup() { "$CAIRN_BIN" -r "$1" backup -q "$WORK/app"; }
fail=0

# 1. 0.6% of the pages of a 210 MB database.
db=$(db_at "$SMALL")
rm -rf "$WORK/app" "$WORK/repo"; mkdir -p "$WORK/app"
cp "$db" "$WORK/app/vault.sqlite3"
"$CAIRN_BIN" -r "$WORK/repo" init -q
backup "$WORK/repo"
s1=$(size "$WORK/repo")
cp "$WORK/app/vault.sqlite3" "$WORK/before.sqlite3"
python3 "$BENCH_DIR/mutate_db.py" "$WORK/app/vault.sqlite3" --night 1 \
    --update 0.0005 --insert 0.00025 --delete 0.0001 2> /dev/null
profile=$(python3 "$BENCH_DIR/db_change_profile.py" "$WORK/before.sqlite3" "$WORK/app/vault.sqlite3")
pages=$(sed -n 's/.*changed or new pages: \([0-9]*\) .*/\1/p' <<< "$profile")
pct=$(sed -n 's/.*changed or new pages: [0-9]* (\([0-9.]*%\)).*/\1/p' <<< "$profile")
raw=$((pages * 4096))
backup "$WORK/repo"
s2=$(size "$WORK/repo")
grown=$((s2 - s1))
limit=$((raw * 3 / 4 + 65536))
verdict=ok; [ "$grown" -le "$limit" ] || { verdict=MISSED; fail=1; }
printf "%s MB database, %s pages changed (%s, %d raw bytes): repository grew %d bytes; target <= %d (0.75 x raw + 64 KB): %s\n" \
    "$(($(stat -c %s "$db") / 1000000))" "$pages" "$pct" "$raw" "$grown" "$limit" "$verdict"

# 2. An unchanged 836 MiB database backed up again.
db=$(db_at "$LARGE")
rm -rf "$WORK/app" "$WORK/repo" "$WORK/before.sqlite3"; mkdir -p "$WORK/app"
cp "$db" "$WORK/app/vault.sqlite3"
"$CAIRN_BIN" -r "$WORK/repo" init -q
backup "$WORK/repo"
s1=$(size "$WORK/repo")
t0=$(date +%s.%N)
backup "$WORK/repo"
t1=$(date +%s.%N)
s2=$(size "$WORK/repo")
grown=$((s2 - s1))
verdict=ok; [ "$grown" -lt 100000 ] || { verdict=MISSED; fail=1; }
printf "%s MB database unchanged: repository grew %d bytes in %.2f s; target < 100000: %s\n" \
    "$(($(stat -c %s "$db") / 1000000))" "$grown" "$(echo "$t1 - $t0" | bc)" "$verdict"
exit $fail
