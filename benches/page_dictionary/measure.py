#!/usr/bin/env python3
"""Per-page zstd (with / without a trained dictionary) cost model for Cairn.

Cairn model (src/repo/save.rs with_compressed): a blob is stored zstd-compressed
iff compressed_len < raw_len, else raw; +40 bytes seal overhead per blob.
Identical pages are stored once (dedup by content).  Frames: content size on,
checksum off (as zstd::bulk::Compressor defaults); dict frames written without
dictID (repository has one dictionary) unless --dict-id.

  python3 measure.py base  DB                 # pages, zero pages, distinct, L3/L19 totals
  python3 measure.py dicts DB [--out DIR]     # train dicts (sizes x sample %), totals at L3/L9
  python3 measure.py speed DB DICT            # single-thread comp/decomp throughput
  python3 measure.py apply DB DICT            # total size of DB's distinct pages with DICT vs none
  python3 measure.py delta OLD NEW DICT       # pages of NEW not in OLD, with DICT vs none
MB = 10^6 bytes.
"""
import argparse
import hashlib
import os
import random
import sys
import time

import zstandard as zstd

SEAL = 40


def pages_of(path):
    data = open(path, "rb").read()
    ps = int.from_bytes(data[16:18], "big")
    ps = 65536 if ps == 1 else ps
    n = len(data) // ps
    pages = [data[i * ps:(i + 1) * ps] for i in range(n)]
    return ps, pages


def distinct(pages):
    seen = {}
    for p in pages:
        seen.setdefault(p, None)
    return list(seen.keys())


def cctx(level, d=None, dict_id=False):
    return zstd.ZstdCompressor(level=level, dict_data=d, write_checksum=False,
                               write_content_size=True, write_dict_id=dict_id)


def stored_total(pages, c):
    """sum over pages of min(compressed, raw) + SEAL; also #raw-stored."""
    tot = 0
    nraw = 0
    comp = c.compress
    for p in pages:
        n = len(comp(p))
        if n < len(p):
            tot += n
        else:
            tot += len(p)
            nraw += 1
    return tot + SEAL * len(pages), nraw


def mb(x):
    return f"{x / 1e6:8.2f}"


def cmd_base(a):
    ps, pages = pages_of(a.db)
    zero = bytes(ps)
    nz = sum(1 for p in pages if p == zero)
    dp = distinct(pages)
    print(f"page_size={ps} pages={len(pages)} zero_pages={nz} distinct={len(dp)} "
          f"raw={mb(len(pages) * ps)}MB distinct_raw={mb(len(dp) * ps)}MB")
    for lvl in a.levels:
        t = time.perf_counter()
        tot, nraw = stored_total(dp, cctx(lvl))
        dt = time.perf_counter() - t
        print(f"nodict L{lvl}: total={mb(tot)}MB (incl {mb(SEAL * len(dp))}MB seal) "
              f"stored_raw={nraw} time={dt:.1f}s")
    sys.stdout.flush()


def train(dp, frac, size, seed, level):
    rng = random.Random(seed)
    nonzero = [p for p in dp if any(p)]
    k = max(1, int(round(frac * len(nonzero))))
    sample = rng.sample(nonzero, k)
    t = time.perf_counter()
    d = zstd.train_dictionary(size, sample, level=level, threads=0)
    return d, time.perf_counter() - t, k


def cmd_dicts(a):
    ps, pages = pages_of(a.db)
    dp = distinct(pages)
    os.makedirs(a.out, exist_ok=True)
    for frac in a.fracs:
        for size in a.sizes:
            d, tt, k = train(dp, frac, size, a.seed, 3)
            raw = d.as_bytes()
            fn = os.path.join(a.out, f"dict_{int(frac * 100)}pct_{size // 1024}k.zdict")
            open(fn, "wb").write(raw)
            row = [f"sample={frac * 100:.0f}% ({k} pages) dict={size // 1024}KB train={tt:.0f}s"]
            for lvl in a.levels:
                d2 = zstd.ZstdCompressionDict(raw)
                d2.precompute_compress(level=lvl)
                tot, nraw = stored_total(dp, cctx(lvl, d2))
                row.append(f"L{lvl}={mb(tot + len(raw))}MB(raw{nraw})")
            print(" ".join(row))
            sys.stdout.flush()


def bench(pages, c, dctx, reps):
    comp = [c.compress(p) for p in pages]
    raw = sum(len(p) for p in pages)
    best_c = best_d = 1e9
    for _ in range(reps):
        t = time.perf_counter()
        for p in pages:
            c.compress(p)
        best_c = min(best_c, time.perf_counter() - t)
        t = time.perf_counter()
        for f in comp:
            dctx.decompress(f)
        best_d = min(best_d, time.perf_counter() - t)
    # python call overhead floor: a no-op C call per page
    t = time.perf_counter()
    for f in comp:
        len(f)
    return raw / best_c / 1e6, raw / best_d / 1e6, best_d / len(pages) * 1e6


def cmd_speed(a):
    ps, pages = pages_of(a.db)
    dp = [p for p in distinct(pages) if any(p)]
    raw = open(a.dict, "rb").read()
    for lvl in a.levels:
        r = bench(dp, cctx(lvl), zstd.ZstdDecompressor(), a.reps)
        print(f"L{lvl} nodict: comp {r[0]:7.1f} MB/s  decomp {r[1]:7.1f} MB/s  ({r[2]:.2f} us/page)")
        d = zstd.ZstdCompressionDict(raw)
        d.precompute_compress(level=lvl)
        dd = zstd.ZstdCompressionDict(raw)
        r = bench(dp, cctx(lvl, d), zstd.ZstdDecompressor(dict_data=dd), a.reps)
        print(f"L{lvl} dict  : comp {r[0]:7.1f} MB/s  decomp {r[1]:7.1f} MB/s  ({r[2]:.2f} us/page)")
        sys.stdout.flush()


def cmd_apply(a):
    ps, pages = pages_of(a.db)
    dp = distinct(pages)
    raw = open(a.dict, "rb").read()
    print(f"{a.db}: pages={len(pages)} distinct={len(dp)}")
    for lvl in a.levels:
        tot, nraw = stored_total(dp, cctx(lvl))
        print(f"L{lvl} nodict: {mb(tot)}MB raw-stored={nraw}")
        d = zstd.ZstdCompressionDict(raw)
        d.precompute_compress(level=lvl)
        tot, nraw = stored_total(dp, cctx(lvl, d))
        print(f"L{lvl} dict  : {mb(tot + len(raw))}MB raw-stored={nraw} (dict {len(raw)} B)")
        sys.stdout.flush()


def cmd_delta(a):
    _, old = pages_of(a.old)
    _, new = pages_of(a.new)
    oldset = set(old)
    changed = distinct([p for p in new if p not in oldset])
    same_pos = sum(1 for i, p in enumerate(new) if i < len(old) and old[i] == p)
    print(f"old pages={len(old)} new pages={len(new)} unchanged-in-place={same_pos} "
          f"new distinct blobs={len(changed)} raw={mb(len(changed) * len(new[0]))}MB")
    raw = open(a.dict, "rb").read()
    for lvl in a.levels:
        tot, _ = stored_total(changed, cctx(lvl))
        d = zstd.ZstdCompressionDict(raw)
        d.precompute_compress(level=lvl)
        totd, _ = stored_total(changed, cctx(lvl, d))
        print(f"L{lvl}: nodict {mb(tot)}MB  old-dict {mb(totd)}MB (dict already stored)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sp = ap.add_subparsers(dest="cmd", required=True)
    p = sp.add_parser("base"); p.add_argument("db"); p.add_argument("--levels", type=int, nargs="+", default=[3, 19])
    p = sp.add_parser("dicts"); p.add_argument("db"); p.add_argument("--out", default="/tmp/dictexp/dicts")
    p.add_argument("--fracs", type=float, nargs="+", default=[0.01, 0.05, 0.10])
    p.add_argument("--sizes", type=int, nargs="+", default=[16384, 65536, 112640, 262144])
    p.add_argument("--levels", type=int, nargs="+", default=[3, 9]); p.add_argument("--seed", type=int, default=1)
    p = sp.add_parser("speed"); p.add_argument("db"); p.add_argument("dict")
    p.add_argument("--levels", type=int, nargs="+", default=[3]); p.add_argument("--reps", type=int, default=3)
    p = sp.add_parser("apply"); p.add_argument("db"); p.add_argument("dict")
    p.add_argument("--levels", type=int, nargs="+", default=[3])
    p = sp.add_parser("delta"); p.add_argument("old"); p.add_argument("new"); p.add_argument("dict")
    p.add_argument("--levels", type=int, nargs="+", default=[3])
    a = ap.parse_args()
    globals()["cmd_" + a.cmd](a)


if __name__ == "__main__":
    main()
