#!/usr/bin/env bash
# Cairn against restic on S3 (SeaweedFS on loopback): backup, then a cold
# restore (page cache dropped, empty local caches: a new machine after a
# disaster), both tools in the same loop, interleaved, REPS rounds. Prints
# medians and the ratio of each tool to restic.
#
#   benches/remote.sh [-c CORPUS_DIR] [-n REPS]
#
# CORPUS_DIR defaults to $HOME/cairn-bench/src-small (the fs, kernel and net
# directories of Debian's linux-source-6.1: 94 MB, 4.5k files). The S3 server is the test
# server of scripts/test-servers.sh, started here in its own directory and
# on its own ports (CAIRN_TEST_SERVERS_DIR, CAIRN_TEST_S3_PORT,
# CAIRN_TEST_SSH_PORT; defaults below) and stopped at the end. Dropping the
# page cache needs root. CAIRN_BEFORE=/path/to/another/cairn adds a third
# tool, "before", run the same way (to measure a change against the build
# it replaces). Needs free space for REPS x tools restores, restic
# (Debian package) and a release build of Cairn (`cargo build --release`;
# override with CAIRN_BIN).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CORPUS=$HOME/cairn-bench/src-small
REPS=3
while getopts "c:n:h" opt; do
    case $opt in
        c) CORPUS=$OPTARG ;;
        n) REPS=$OPTARG ;;
        *) sed -n '2,18p' "$0"; exit 2 ;;
    esac
done
CAIRN_BIN=${CAIRN_BIN:-$HERE/target/release/cairn}
CORPUS=$(cd "$CORPUS" && pwd)
WORK=${WORK:-$(mktemp -d /tmp/cairn-remote.XXXXXX)}
export CAIRN_TEST_SERVERS_DIR=${CAIRN_TEST_SERVERS_DIR:-/tmp/cairn-bench-servers}
export CAIRN_TEST_S3_PORT=${CAIRN_TEST_S3_PORT:-18533}
export CAIRN_TEST_SSH_PORT=${CAIRN_TEST_SSH_PORT:-22522}
TARGETS=$WORK/targets
cleanup() {
    "$HERE/scripts/test-servers.sh" stop || true
    mountpoint -q "$TARGETS" && umount "$TARGETS"
    rm -rf "$WORK" "$CAIRN_TEST_SERVERS_DIR/s3-data"
}
trap cleanup EXIT
eval "$("$HERE/scripts/test-servers.sh" start)"
[ -n "${CAIRN_TEST_S3_URL:-}" ] || { echo "the S3 test server did not start" >&2; exit 1; }
echo "S3: $CAIRN_TEST_S3_URL (AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY)"
S3_BASE=${CAIRN_TEST_S3_URL#s3:}
export CAIRN_PASSWORD=bench RESTIC_PASSWORD=bench

TOOLS="cairn restic"
[ -n "${CAIRN_BEFORE:-}" ] && TOOLS="before cairn restic"

# Restores and local caches go to a new ext4 filesystem (a loop-mounted
# image), as on a new machine: on a filesystem where many files were
# deleted not long ago, ext4's inode allocator steps over the freed inodes
# one by one and file creation costs several times more, for every tool
# alike (perf: most of the time in recently_deleted and
# find_get_block_common), which says nothing about the tools. Needs root
# (as dropping the page cache does).
mkdir -p "$TARGETS"
if [ "$(id -u)" = 0 ] && command -v mkfs.ext4 > /dev/null; then
    ntools=$(echo $TOOLS | wc -w)
    files=$(find "$CORPUS" | wc -l)
    bytes=$(du -sb "$CORPUS" | cut -f1)
    truncate -s $(( bytes * REPS * ntools * 2 + (512 << 20) )) "$WORK/targets.img"
    mkfs.ext4 -q -F -N $(( files * REPS * ntools * 2 + 10000 )) "$WORK/targets.img"
    mount -o loop "$WORK/targets.img" "$TARGETS"
    echo "restore targets: a new ext4 filesystem on $TARGETS"
else
    echo "restore targets: $TARGETS (not root: not a new filesystem)" >&2
fi
bin() { if [ "$1" = before ]; then echo "$CAIRN_BEFORE"; else echo "$CAIRN_BIN"; fi; }

warm() { find "$CORPUS" -type f -print0 | xargs -0 cat > /dev/null 2>&1 || true; }
cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }

# timed LABEL CMD...: runs CMD, appends "tool step wall_s rss_mb" to $WORK/raw
timed() {
    local label=$1; shift
    /usr/bin/time -f "%e %M" -o "$WORK/time.out" "$@" > "$WORK/cmd.log" 2>&1 || {
        echo "FAILED: $*" >&2; cat "$WORK/cmd.log" >&2; exit 1; }
    read -r wall rss < "$WORK/time.out"
    echo "$label $wall $((rss / 1024))" >> "$WORK/raw"
    echo "  $label: ${wall}s, $((rss / 1024)) MB" >&2
}

run_tool() {
    local tool=$1 rep=$2 repo="s3:$S3_BASE/$1-$2" out=$TARGETS/restore-$1-$2
    mkdir -p "$out"
    export CAIRN_CACHE_DIR=$TARGETS/cache-$tool-$rep-backup RESTIC_CACHE_DIR=$TARGETS/cache-$tool-$rep-backup
    case $tool in
        restic) restic -r "$repo" init --repository-version 2 -q ;;
        *) "$(bin "$tool")" -r "$repo" init -q ;;
    esac
    warm
    case $tool in
        restic) timed "$tool backup" restic -r "$repo" backup -q "$CORPUS" ;;
        *) timed "$tool backup" "$(bin "$tool")" -r "$repo" backup -q "$CORPUS" ;;
    esac
    # Cold: nothing cached locally, nothing in the page cache.
    export CAIRN_CACHE_DIR=$TARGETS/cache-$tool-$rep-restore RESTIC_CACHE_DIR=$TARGETS/cache-$tool-$rep-restore
    cold
    case $tool in
        restic) timed "$tool restore" restic -r "$repo" restore latest --target "$out" -q ;;
        *) timed "$tool restore" "$(bin "$tool")" -r "$repo" restore latest --target "$out" -q ;;
    esac
    # The restore must be complete and identical before its time counts.
    diff -rq --no-dereference "$CORPUS" "$out$CORPUS" > /dev/null || {
        echo "$tool: restored tree differs from $CORPUS" >&2; exit 1; }
    # Restored trees and caches stay until the end: deleting thousands of
    # files slows down the file creation of whichever restore comes next
    # (ext4's inode allocator steps over recently deleted inodes one by
    # one), which is not what a restore on a new machine meets.
}

echo "corpus: $CORPUS ($(du -sh "$CORPUS" | cut -f1), $(find "$CORPUS" -type f | wc -l) files)"
echo "machine: $(nproc) cores; $(restic version | head -1); cairn $("$CAIRN_BIN" --version)"
: > "$WORK/raw"
for rep in $(seq "$REPS"); do
    echo "round $rep" >&2
    for tool in $TOOLS; do run_tool "$tool" "$rep"; done
done

python3 - "$WORK/raw" "$TOOLS" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
tools = sys.argv[2].split()
runs = {}
for tool, step, wall, rss in rows:
    runs.setdefault((tool, step), []).append((float(wall), float(rss)))
def med(tool, step, i):
    return statistics.median(x[i] for x in runs[(tool, step)])
print(f"\n{'step':<8} {'tool':<7} {'wall s (each round)':<22} {'median':>7} {'peak MB':>8} {'x restic':>9}")
for step in ["backup", "restore"]:
    base = med("restic", step, 0)
    for t in tools:
        each = " ".join(f"{w:.2f}" for w, _ in runs[(t, step)])
        w = med(t, step, 0)
        print(f"{step:<8} {t:<7} {each:<22} {w:>7.2f} {med(t, step, 1):>8.0f} {w / base:>9.2f}")
# Ratios round by round (the machine is shared: a round's tools ran together).
for step in ["backup", "restore"]:
    r = [c[0] / r_[0] for c, r_ in zip(runs[("cairn", step)], runs[("restic", step)])]
    print(f"cairn/restic {step} by round: " + " ".join(f"{x:.2f}" for x in r))
PY
