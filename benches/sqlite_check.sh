#!/usr/bin/env bash
# What the guard against silent damage costs at capture: a capture of a
# database with `PRAGMA quick_check` on the captured state (the default:
# whole up to 256 MiB, a slice of the tables above), with the check
# sampled (--sqlite-check-limit 64M), whole whatever the size (limit 4G),
# and without it (--sqlite-check off). Each run is `backup --force` of the
# database alone into a repository that already holds it (nothing new is
# stored: the time is the capture, the check and the comparison with the
# parent capture). Local repository, warm page cache,
# hyperfine means.
#
#   cargo build --release
#   benches/sqlite_check.sh [-n RUNS] [DB...]
#
# DB defaults to the two benchmark databases in $HOME/cairn-bench
# (db-0.25: gen_db.py --scale 0.25 --seed 42, 210 MB; db.pristine:
# --scale 1.0, 836 MB). CAIRN defaults to target/release/cairn. Needs
# hyperfine (Debian package).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CAIRN=${CAIRN:-$HERE/../target/release/cairn}
N=5
if [[ ${1:-} == -n ]]; then N=$2; shift 2; fi
if [[ $# -eq 0 ]]; then
    set -- "$HOME/cairn-bench/db-0.25/vault.sqlite3" "$HOME/cairn-bench/db.pristine/vault.sqlite3"
fi
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/cairn-check-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export CAIRN_PASSWORD=bench
for db in "$@"; do
    rm -rf "$WORK/src" "$WORK/repo"
    mkdir -p "$WORK/src"
    cp "$db" "$WORK/src/vault.sqlite3"
    export CAIRN_REPOSITORY=$WORK/repo
    "$CAIRN" init -q
    "$CAIRN" backup -q "$WORK/src"
    size=$(stat -c %s "$WORK/src/vault.sqlite3")
    echo "== $(basename "$(dirname "$db")")/$(basename "$db"): $((size / 1000000)) MB"
    hyperfine -N --warmup 1 --runs "$N" --style basic --export-markdown "$WORK/md" \
        -n "check off" "$CAIRN backup -q --force --sqlite-check off $WORK/src" \
        -n "quick_check (default)" "$CAIRN backup -q --force $WORK/src" \
        -n "sampled (limit 64M)" "$CAIRN backup -q --force --sqlite-check-limit 64M $WORK/src" \
        -n "whole (limit 4G)" "$CAIRN backup -q --force --sqlite-check-limit 4G $WORK/src" \
        > /dev/null
    cat "$WORK/md"
done
