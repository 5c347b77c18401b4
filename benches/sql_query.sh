#!/usr/bin/env bash
# A point query on a captured database with `cairn sql`, against restoring
# that database with `cairn restore` (what one had to do before to look
# inside it). Local repository, warm page cache, medians of N runs.
#
#   cargo build --release
#   benches/sql_query.sh [-n 3] [DB]
#
# DB defaults to $HOME/cairn-bench/db/vault.sqlite3 (gen_db.py --scale 0.25,
# 210 MB); CAIRN to target/release/cairn. Prints one line per step:
# the median wall seconds and peak RSS (MB).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CAIRN=${CAIRN:-$HERE/../target/release/cairn}
N=3
if [[ ${1:-} == -n ]]; then N=$2; shift 2; fi
DB=${1:-$HOME/cairn-bench/db/vault.sqlite3}
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/cairn-sql-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export CAIRN_REPOSITORY=$WORK/repo CAIRN_PASSWORD=bench
mkdir -p "$WORK/src"
cp "$DB" "$WORK/src/vault.sqlite3"
"$CAIRN" init -q
"$CAIRN" backup -q "$WORK/src"
SIZE=$(stat -c %s "$WORK/src/vault.sqlite3")
UUID=$(sqlite3 "$WORK/src/vault.sqlite3" "SELECT uuid FROM ciphers ORDER BY uuid LIMIT 1 OFFSET (SELECT count(*) / 2 FROM ciphers)")
Q="SELECT uuid, atype, updated_at FROM ciphers WHERE uuid = '$UUID'"
EXPECT=$(sqlite3 "$WORK/src/vault.sqlite3" "$Q")

# median of the runs' "seconds MB" lines
median() { sort -n | awk '{a[NR]=$0} END {print a[int((NR+1)/2)]}'; }

run() { # name, command...
    local name=$1; shift
    for _ in $(seq "$N"); do
        rm -rf "$WORK/target"
        /usr/bin/time -f "%e %M" -o "$WORK/t" "$@" > "$WORK/out" 2>/dev/null
        awk '{printf "%.2f %.0f\n", $1, $2 / 1024}' "$WORK/t"
    done | median | awk -v n="$name" '{printf "%-28s %6.2f s %5d MB\n", n, $1, $2}'
}

echo "database: $DB ($SIZE bytes), $N runs, medians"
run "cairn sql (point query)" "$CAIRN" -q sql "latest:$WORK/src/vault.sqlite3" "$Q"
[[ $(cat "$WORK/out") == "$EXPECT" ]] || { echo "wrong answer: $(cat "$WORK/out")" >&2; exit 1; }
run "cairn sql (count(*) event)" "$CAIRN" -q sql "latest:$WORK/src/vault.sqlite3" "SELECT count(*) FROM event"
run "cairn restore (database)" "$CAIRN" -q restore "latest:$WORK/src/vault.sqlite3" --target "$WORK/target"
run "cairn snapshots (open only)" "$CAIRN" -q snapshots
