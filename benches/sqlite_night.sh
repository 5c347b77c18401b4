#!/usr/bin/env bash
# One night of a live app database, Cairn against restic and borg: the first
# backup of a Vaultwarden-like SQLite database (836 MiB, WAL mode), then one
# night of realistic changes (../shared/bench/mutate_db.py: ~1% of rows
# updated, 0.5% inserted, 0.2% deleted, log appended and trimmed), then the
# second backup, then a restore of that night's database into an empty
# directory (Cairn's includes its default `PRAGMA quick_check`). Reports
# times and how much each repository grew, plus the time of a plain
# `sqlite3 .backup` copy for reference.
#
#   benches/sqlite_night.sh [-t "cairn restic borg"]
#
# Needs the pristine database made by ../shared/bench/corpus.sh (or
# gen_db.py) at $DATA/db.pristine/vault.sqlite3 (DATA defaults to
# $HOME/cairn-bench), python3, sqlite3, restic and borgbackup, and a release
# build of Cairn. BENCH_DIR points at the corpus scripts (default
# ../shared/bench next to this repository).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS="cairn restic borg"
while getopts "t:h" opt; do
    case $opt in
        t) TOOLS=$OPTARG ;;
        *) sed -n '2,16p' "$0"; exit 2 ;;
    esac
done
DATA=${DATA:-$HOME/cairn-bench}
BENCH_DIR=${BENCH_DIR:-$HERE/../shared/bench}
PRISTINE=$DATA/db.pristine/vault.sqlite3
CAIRN_BIN=${CAIRN_BIN:-$HERE/target/release/cairn}
WORK=$(mktemp -d /tmp/cairn-sqlite.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export CAIRN_PASSWORD=bench RESTIC_PASSWORD=bench BORG_PASSPHRASE=bench
export RESTIC_CACHE_DIR=$WORK/restic-cache BORG_BASE_DIR=$WORK/borg-base
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=no BORG_RELOCATED_REPO_ACCESS_IS_OK=yes

timed() { # timed CMD... -> prints wall seconds
    /usr/bin/time -f "%e" -o "$WORK/t" "$@" > "$WORK/log" 2>&1 || { cat "$WORK/log" >&2; exit 1; }
    cat "$WORK/t"
}
size() { du -sb "$1" | cut -f1; }

reset_db() {
    rm -rf "$WORK/app"; mkdir -p "$WORK/app"
    cp "$PRISTINE" "$WORK/app/vault.sqlite3"
    cat "$WORK/app/vault.sqlite3" > /dev/null
}

printf "%-7s %10s %12s %10s %12s %10s\n" tool "first s" "first MB" "night s" "growth MB" "restore s"
for tool in $TOOLS; do
    reset_db
    repo=$WORK/repo-$tool
    case $tool in
        cairn)  "$CAIRN_BIN" -r "$repo" init -q ;;
        restic) restic -r "$repo" init --repository-version 2 -q ;;
        borg)   borg init --encryption=repokey-blake2 "$repo" > /dev/null 2>&1 ;;
    esac
    backup() {
        case $tool in
            cairn)  timed "$CAIRN_BIN" -r "$repo" backup -q "$WORK/app" ;;
            restic) timed restic -r "$repo" backup -q "$WORK/app" ;;
            borg)   timed borg create "$repo::night-$1" "$WORK/app" ;;
        esac
    }
    t1=$(backup 0); s1=$(size "$repo")
    python3 "$BENCH_DIR/mutate_db.py" "$WORK/app/vault.sqlite3" --night 1 > /dev/null 2>&1
    cat "$WORK/app/vault.sqlite3" > /dev/null
    t2=$(backup 1); s2=$(size "$repo")
    rm -rf "$WORK/restored"; mkdir -p "$WORK/restored"
    sync  # the backups' dirty pages are not the restore's to write back
    case $tool in
        cairn)  t3=$(timed "$CAIRN_BIN" -r "$repo" restore -q latest --target "$WORK/restored") ;;
        restic) t3=$(timed restic -r "$repo" restore -q latest --target "$WORK/restored") ;;
        borg)   t3=$(cd "$WORK/restored" && timed borg extract "$repo::night-1") ;;
    esac
    cmp "$WORK/app/vault.sqlite3" "$(find "$WORK/restored" -name vault.sqlite3)" \
        || echo "note: $tool's restored database differs byte-wise from the live file" >&2
    rm -rf "$WORK/restored"
    printf "%-7s %10s %12d %10s %12d %10s\n" "$tool" "$t1" $((s1 / 1000000)) "$t2" $(((s2 - s1) / 1000000)) "$t3"
done

reset_db
t=$(timed sqlite3 "$WORK/app/vault.sqlite3" ".backup $WORK/copy.sqlite3")
echo "sqlite3 .backup of the same database (a plain copy, nothing stored): $t s"
