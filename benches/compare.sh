#!/usr/bin/env bash
# End-to-end comparison of Cairn with restic and borg on the same corpus, in
# one run, on the same machine: initial backup, unchanged second backup, and
# restore, each under /usr/bin/time -v. Prints medians and ratios.
#
#   benches/compare.sh [--cold] [-c CORPUS_DIR] [-n REPS] [-t "cairn restic borg"]
#
# CORPUS_DIR defaults to $HOME/cairn-bench/src (the kernel tree built by
# ../shared/bench/corpus.sh, or any directory). The page cache is warm: the
# corpus is read once before each timed backup. With --cold (or -C) the
# page cache is dropped before every timed step instead (`sync; echo 3 >
# /proc/sys/vm/drop_caches`, as root), as a nightly job meets it, and the
# device's limit is timed too: every file of the corpus read by `cat` with
# 32 and with 2 readers in flight (xargs -P), cold. Without root the run
# says it cannot drop the cache and times warm. Repositories and restores
# live under $WORK (default: a fresh directory in /tmp) and are all kept
# until the end: deleting a restored tree during the run would slow down
# the next restore's file creation (ext4 skips inodes deleted in the last
# 5-35 s when allocating), whichever tool came next. Needs free space for
# REPS x tools restores of the corpus.
# Needs: restic, borgbackup (Debian packages), a release build of Cairn
# (`cargo build --release`; override with CAIRN_BIN).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CORPUS=$HOME/cairn-bench/src
REPS=3
TOOLS="cairn restic borg"
COLD=0
args=()
for a in "$@"; do [ "$a" = --cold ] && args+=(-C) || args+=("$a"); done
set -- ${args[@]+"${args[@]}"}
while getopts "Cc:n:t:h" opt; do
    case $opt in
        C) COLD=1 ;;
        c) CORPUS=$OPTARG ;;
        n) REPS=$OPTARG ;;
        t) TOOLS=$OPTARG ;;
        *) sed -n '2,21p' "$0"; exit 2 ;;
    esac
done
CAIRN_BIN=${CAIRN_BIN:-$HERE/target/release/cairn}
CORPUS=$(cd "$CORPUS" && pwd)
WORK=${WORK:-$(mktemp -d /tmp/cairn-compare.XXXXXX)}
trap 'rm -rf "$WORK"' EXIT
export CAIRN_PASSWORD=bench RESTIC_PASSWORD=bench BORG_PASSPHRASE=bench
export RESTIC_CACHE_DIR=$WORK/restic-cache BORG_BASE_DIR=$WORK/borg-base
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=no BORG_RELOCATED_REPO_ACCESS_IS_OK=yes

warm() { find "$CORPUS" -type f -print0 | xargs -0 cat > /dev/null 2>&1 || true; }
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
if [ "$COLD" = 1 ] && ! { [ "$(id -u)" = 0 ] && drop 2> /dev/null; }; then
    echo "cannot drop the page cache (needs root and a writable /proc/sys/vm/drop_caches): timing with a warm cache" >&2
    COLD=0
fi
# prepare: before a timed backup, the cache as the run asks for it.
prepare() { if [ "$COLD" = 1 ]; then drop; else warm; fi; }

# timed LABEL CMD...: runs CMD, appends "tool step wall_s rss_mb" to $WORK/raw
timed() {
    local label=$1; shift
    /usr/bin/time -f "%e %M" -o "$WORK/time.out" "$@" > "$WORK/cmd.log" 2>&1 || {
        echo "FAILED: $*" >&2; cat "$WORK/cmd.log" >&2; exit 1; }
    read -r wall rss < "$WORK/time.out"
    echo "$label $wall $((rss / 1024))" >> "$WORK/raw"
}

run_tool() {
    local tool=$1 rep=$2 repo=$WORK/repo-$1-$2 out=$WORK/restore-$1-$2
    rm -rf "$RESTIC_CACHE_DIR" "$BORG_BASE_DIR"; mkdir -p "$out"
    case $tool in
        cairn)  "$CAIRN_BIN" -r "$repo" init -q ;;
        restic) restic -r "$repo" init --repository-version 2 -q ;;
        borg)   borg init --encryption=repokey-blake2 "$repo" > /dev/null 2>&1 ;;
    esac
    for step in initial unchanged; do
        prepare
        case $tool in
            cairn)  timed "$tool $step" "$CAIRN_BIN" -r "$repo" backup -q "$CORPUS" ;;
            restic) timed "$tool $step" restic -r "$repo" backup -q "$CORPUS" ;;
            borg)   timed "$tool $step" borg create "$repo::s-$step" "$CORPUS" ;;
        esac
        [ "$step" = initial ] && echo "$tool size 0 $(( $(du -sb "$repo" | cut -f1) / 1000000 ))" >> "$WORK/raw"
    done
    sync
    [ "$COLD" = 1 ] && drop
    case $tool in
        cairn)  timed "$tool restore" "$CAIRN_BIN" -r "$repo" restore latest --target "$out" -q ;;
        restic) timed "$tool restore" restic -r "$repo" restore latest --target "$out" -q ;;
        borg)   (cd "$out" && timed "$tool restore" borg extract "$repo::s-unchanged") ;;
    esac
    # The restore must be complete and identical before its time counts.
    diff -rq --no-dereference "$CORPUS" "$out$CORPUS" > /dev/null || {
        echo "$tool: restored tree differs from $CORPUS" >&2; exit 1; }
}

echo "corpus: $CORPUS ($(du -sh "$CORPUS" | cut -f1), $(find "$CORPUS" -type f | wc -l) files)"
echo "machine: $(nproc) cores; $(restic version | head -1); $(borg --version); cairn $("$CAIRN_BIN" --version)"
echo "page cache: $([ "$COLD" = 1 ] && echo "dropped before every timed step" || echo warm)"
: > "$WORK/raw"
for rep in $(seq "$REPS"); do
    if [ "$COLD" = 1 ]; then
        # The device's limit: the same files read by cat, 32 and 2 at a time.
        for p in 32 2; do
            drop
            timed "cat-P$p read" sh -c 'find "$1" -type f -print0 | xargs -0 -P "$2" -n 64 cat > /dev/null' sh "$CORPUS" "$p"
        done
    fi
    for tool in $TOOLS; do run_tool "$tool" "$rep"; done
done

python3 - "$WORK/raw" "$TOOLS" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
tools = sys.argv[2].split()
med = {}
for tool, step, wall, rss in rows:
    med.setdefault((tool, step), []).append((float(wall), float(rss)))
def m(tool, step, i):
    v = med.get((tool, step))
    return statistics.median(x[i] for x in v) if v else float("nan")
print(f"\n{'step':<10} {'tool':<7} {'wall s':>8} {'peak MB':>8} {'x cairn (time)':>15}")
for step in ["initial", "unchanged", "restore"]:
    base = m("cairn", step, 0)
    for t in tools:
        w = m(t, step, 0)
        print(f"{step:<10} {t:<7} {w:>8.2f} {m(t, step, 1):>8.0f} {w / base:>15.2f}")
for p in ("32", "2"):
    if ("cat-P" + p, "read") in med:
        w = m("cat-P" + p, "read", 0)
        print(f"{'read':<10} {'cat x' + p:<7} {w:>8.2f} {'':>8} {w / m('cairn', 'initial', 0):>15.2f}")
print(f"\n{'repository size after the initial backup (MB)':<48}")
for t in tools:
    print(f"  {t:<7} {m(t, 'size', 1):>8.0f}")
PY
