#!/bin/sh
# What a per-repository zstd dictionary would do for page blobs (issue 13,
# item 4): per-page compression of the benchmark databases with and
# without trained dictionaries, sizes as Cairn would store them (each page
# compressed alone, kept raw if that is not smaller, +40 bytes of seal),
# and single-thread compress/decompress speed with prepared dictionaries.
# One core, about 25 minutes. Needs python3 with `pip install zstandard`,
# gcc and libzstd (Debian libzstd-dev or the runtime .so.1), and the zstd
# command. Results go to the current directory; figures in
# docs/BENCHMARKS.md, "A first capture no larger than restic's".
set -e
HERE=$(cd "$(dirname "$0")" && pwd)
M="python3 $HERE/measure.py"
MUTATE=${MUTATE:-$HERE/../../../shared/bench/mutate_db.py}
S=${S:-$HOME/cairn-bench/db-0.25/vault.sqlite3}
B=${B:-$HOME/cairn-bench/db.pristine/vault.sqlite3}
gcc -O2 -o bench "$HERE/bench.c" /usr/lib/x86_64-linux-gnu/libzstd.so.1
$M base  "$S" --levels 3 19                                      # 210 MB, no dictionary
$M dicts "$S" --fracs 0.01 0.05 0.10 0.25                       # 16/64/110/256 KB -> dicts/
$M dicts "$S" --fracs 0.10 0.25 --sizes 524288 1048576 2097152
zstd -q -3 -c "$S" | wc -c; zstd -b3 -B1048576 -i1 "$S"        # whole file, 1 MiB chunks
for d in - dicts/dict_10pct_16k.zdict dicts/dict_10pct_256k.zdict dicts/dict_25pct_1024k.zdict; do ./bench "$S" 3 $d 5; done
$M speed "$S" dicts/dict_10pct_256k.zdict --levels 3 9
$M base  "$B" --levels 3                                         # 836 MB
$M apply "$B" dicts/dict_10pct_256k.zdict --levels 3 9          # the 210 MB one's dictionary
$M dicts "$B" --out dicts_pristine --fracs 0.01 0.05 0.10 --sizes 112640 262144 1048576
for d in - dicts_pristine/dict_10pct_256k.zdict dicts_pristine/dict_10pct_1024k.zdict; do ./bench "$B" 3 $d 3; done
cp "$S" mut025.sqlite3; python3 "$MUTATE" mut025.sqlite3 --night 1
$M delta "$S" mut025.sqlite3 dicts/dict_10pct_256k.zdict --levels 3 9
cp "$B" mutP.sqlite3;   python3 "$MUTATE" mutP.sqlite3 --night 1
$M delta "$B" mutP.sqlite3 dicts_pristine/dict_10pct_1024k.zdict --levels 3 9
