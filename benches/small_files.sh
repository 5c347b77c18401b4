#!/usr/bin/env bash
# How backup cost grows with the number of files: backs up a generated
# tree of N small files (default one million: 1000 directories of 1000
# files, 64 bytes to 4 KiB each, all distinct) and reports time and peak
# memory per file, for Cairn and (with -r) restic on the same tree.
#
#   benches/small_files.sh [-n FILES] [-r]
#
# The tree is built once under $DATA (default $HOME/cairn-bench/small-N).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=1000000
WITH_RESTIC=0
while getopts "n:rh" opt; do
    case $opt in
        n) N=$OPTARG ;;
        r) WITH_RESTIC=1 ;;
        *) sed -n '2,10p' "$0"; exit 2 ;;
    esac
done
CAIRN_BIN=${CAIRN_BIN:-$HERE/target/release/cairn}
DATA=${DATA:-$HOME/cairn-bench/small-$N}
WORK=$(mktemp -d /tmp/cairn-small.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

if [ ! -f "$DATA/.complete" ]; then
    echo "generating $N files under $DATA ..."
    rm -rf "$DATA"; mkdir -p "$DATA"
    python3 - "$DATA" "$N" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
per_dir = 1000
x = 0x9E3779B97F4A7C15
for i in range(n):
    if i % per_dir == 0:
        d = os.path.join(root, f"d{i // per_dir:05d}")
        os.mkdir(d)
    x ^= (x << 13) & 0xFFFFFFFFFFFFFFFF; x ^= x >> 7; x ^= (x << 17) & 0xFFFFFFFFFFFFFFFF
    size = 64 + x % 4033
    body = (f"file {i} {x:x}\n" * (size // 20 + 1))[:size]
    with open(os.path.join(d, f"f{i:07d}.txt"), "w") as f:
        f.write(body)
PY
    touch "$DATA/.complete"
fi
find "$DATA" -type f -print0 | xargs -0 cat > /dev/null

measure() {
    local label=$1; shift
    /usr/bin/time -f "%e %M" -o "$WORK/t" "$@" > /dev/null 2> "$WORK/err" || { cat "$WORK/err"; exit 1; }
    read -r wall rss < "$WORK/t"
    python3 -c "
n=$N; wall=$wall; rss=$rss*1024
print(f'{\"$label\":<8} {n} files: {wall:.1f} s, {wall/n*1e6:.1f} us/file, peak {rss/1e6:.0f} MB, {rss/n:.0f} B/file')"
}

export CAIRN_PASSWORD=bench RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$WORK/rcache
"$CAIRN_BIN" -r "$WORK/cairn" init -q
measure cairn "$CAIRN_BIN" -r "$WORK/cairn" backup -q "$DATA"
if [ "$WITH_RESTIC" = 1 ]; then
    restic -r "$WORK/restic" init -q
    measure restic restic -r "$WORK/restic" backup -q "$DATA"
fi
