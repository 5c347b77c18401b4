#!/usr/bin/env bash
# A day of 15-minute captures of a live app database, Cairn against restic
# (issue 13, item 3): the 210 MB Vaultwarden-like database
# (gen_db.py --scale 0.25) is backed up once, then N times (default 96, a
# day at one capture every 15 minutes), each after a quarter hour of app
# activity (mutate_db.py at 1/20 of a night's rates: ~0.6% of the pages).
# Both tools back up the same file after each step. Reports, per tool, the
# first backup, the mean time of a frequent capture and the repository's
# growth over the day, against the raw bytes of the pages that changed
# (db_change_profile.py); checks Cairn's growth against the target (at most
# 0.75 × the changed pages' raw bytes + 64 KB a capture). Then one `cairn
# run` of a job set up for 15-minute captures (keep_within, keep_hourly,
# check_every_hours) with nothing changed: its time and what it stored.
#
#   benches/sqlite_day.sh [-n CAPTURES] [-t "cairn restic"]
#
# The database is generated once into $DATA/db-0.25 (DATA defaults to
# $HOME/cairn-bench; shared with chunklist_growth.sh). Needs python3,
# restic and a release build of Cairn (CAIRN_BIN); CAIRN_ARGS adds options
# to Cairn's backups (e.g. "--sqlite-check off"). BENCH_DIR points at the
# corpus scripts (default ../shared/bench next to this repository). Exit
# status 1 if the growth target is missed.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=96
TOOLS="cairn restic"
while getopts "n:t:h" opt; do
    case $opt in
        n) N=$OPTARG ;;
        t) TOOLS=$OPTARG ;;
        *) sed -n '2,21p' "$0"; exit 2 ;;
    esac
done
DATA=${DATA:-$HOME/cairn-bench}
BENCH_DIR=${BENCH_DIR:-$HERE/../shared/bench}
CAIRN_BIN=${CAIRN_BIN:-$HERE/target/release/cairn}
CAIRN_ARGS=${CAIRN_ARGS:-}
WORK=$(mktemp -d /tmp/cairn-day.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export CAIRN_PASSWORD=bench RESTIC_PASSWORD=bench
export RESTIC_CACHE_DIR=$WORK/restic-cache

db=$DATA/db-0.25/vault.sqlite3
if [ ! -f "$db" ]; then
    mkdir -p "$(dirname "$db")"
    python3 "$BENCH_DIR/gen_db.py" "$db" --scale 0.25 --seed 42 >&2
fi
mkdir -p "$WORK/app"
cp "$db" "$WORK/app/vault.sqlite3"

size() { du -sb "$1" | cut -f1; }
now() { date +%s.%N; }
backup() { # backup TOOL
    case $1 in
        cairn)  "$CAIRN_BIN" -r "$WORK/repo-cairn" backup -q $CAIRN_ARGS "$WORK/app" ;;
        restic) restic -r "$WORK/repo-restic" backup -q "$WORK/app" > /dev/null ;;
    esac
}

declare -A first_s first_size spent
for tool in $TOOLS; do
    case $tool in
        cairn)  "$CAIRN_BIN" -r "$WORK/repo-cairn" init -q ;;
        restic) restic -r "$WORK/repo-restic" init --repository-version 2 -q ;;
    esac
    t0=$(now); backup "$tool"; t1=$(now)
    first_s[$tool]=$(echo "$t1 - $t0" | bc)
    first_size[$tool]=$(size "$WORK/repo-$tool")
    spent[$tool]=0
done

raw_total=0
for i in $(seq 1 "$N"); do
    cp "$WORK/app/vault.sqlite3" "$WORK/before.sqlite3"
    python3 "$BENCH_DIR/mutate_db.py" "$WORK/app/vault.sqlite3" --night "$i" \
        --update 0.0005 --insert 0.00025 --delete 0.0001 2> /dev/null > /dev/null
    pages=$(python3 "$BENCH_DIR/db_change_profile.py" "$WORK/before.sqlite3" "$WORK/app/vault.sqlite3" \
        | sed -n 's/.*changed or new pages: \([0-9]*\) .*/\1/p')
    raw_total=$((raw_total + pages * 4096))
    for tool in $TOOLS; do
        t0=$(now); backup "$tool"; t1=$(now)
        spent[$tool]=$(echo "${spent[$tool]} + $t1 - $t0" | bc)
    done
done

fail=0
printf "%-7s %9s %10s %13s %15s %18s\n" tool "first s" "first MB" "capture s" "day growth MB" "growth / capture"
for tool in $TOOLS; do
    grown=$(( $(size "$WORK/repo-$tool") - ${first_size[$tool]} ))
    printf "%-7s %9.2f %10d %13.3f %15.2f %15d KB\n" "$tool" "${first_s[$tool]}" \
        $((first_size[$tool] / 1000000)) "$(echo "${spent[$tool]} / $N" | bc -l)" \
        "$(echo "$grown / 1000000" | bc -l)" $((grown / N / 1000))
    if [ "$tool" = cairn ]; then
        limit=$((raw_total * 3 / 4 + N * 65536))
        verdict=ok; [ "$grown" -le "$limit" ] || { verdict=MISSED; fail=1; }
        echo "  changed pages over the day: $((raw_total / 1000)) KB raw; Cairn grew $((grown / 1000)) KB;" \
             "target <= $((limit / 1000)) KB (0.75 x raw + 64 KB a capture): $verdict"
    fi
done

# A `cairn run` of a 15-minute job with nothing changed since the last
# capture.
if [[ " $TOOLS " == *" cairn "* ]]; then
    printf '%s\n' "$CAIRN_PASSWORD" > "$WORK/pass"
    cat > "$WORK/cairn.toml" <<EOF
[repository.main]
url = "$WORK/repo-cairn"
password_file = "$WORK/pass"

[job.app]
repository = "main"
paths = ["$WORK/app"]
keep_within = "2d"
keep_hourly = 48
keep_daily = 14
check_every_hours = 24
EOF
    chmod 600 "$WORK/cairn.toml" "$WORK/pass"
    export CAIRN_STATE_DIR=$WORK/state
    "$CAIRN_BIN" --config "$WORK/cairn.toml" run app > /dev/null
    before=$(size "$WORK/repo-cairn")
    snaps=$(ls "$WORK/repo-cairn/snapshots" | wc -l)
    t0=$(now); "$CAIRN_BIN" --config "$WORK/cairn.toml" run app > /dev/null; t1=$(now)
    printf "cairn run with nothing changed: %.2f s, stored %d bytes, %d new snapshot record(s)\n" \
        "$(echo "$t1 - $t0" | bc)" $(( $(size "$WORK/repo-cairn") - before )) \
        $(( $(ls "$WORK/repo-cairn/snapshots" | wc -l) - snaps ))
fi
exit $fail
