/* Per-page zstd encode/decode timing, as Cairn does it (reused CCtx/DCtx,
 * one frame per page; dictionary as prepared CDict/DDict).
 * Build: gcc -O2 -o bench bench.c /usr/lib/x86_64-linux-gnu/libzstd.so.1
 * Run:   ./bench DB LEVEL [DICT] [REPS]
 * (system libzstd 1.5.4; no zstd.h installed, so prototypes are declared here) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct ZSTD_CCtx_s ZSTD_CCtx; typedef struct ZSTD_DCtx_s ZSTD_DCtx;
typedef struct ZSTD_CDict_s ZSTD_CDict; typedef struct ZSTD_DDict_s ZSTD_DDict;
ZSTD_CCtx *ZSTD_createCCtx(void); ZSTD_DCtx *ZSTD_createDCtx(void);
size_t ZSTD_compressCCtx(ZSTD_CCtx *, void *, size_t, const void *, size_t, int);
size_t ZSTD_decompressDCtx(ZSTD_DCtx *, void *, size_t, const void *, size_t);
ZSTD_CDict *ZSTD_createCDict(const void *, size_t, int);
ZSTD_DDict *ZSTD_createDDict(const void *, size_t);
size_t ZSTD_compress_usingCDict(ZSTD_CCtx *, void *, size_t, const void *, size_t, const ZSTD_CDict *);
size_t ZSTD_decompress_usingDDict(ZSTD_DCtx *, void *, size_t, const void *, size_t, const ZSTD_DDict *);
unsigned ZSTD_isError(size_t); size_t ZSTD_compressBound(size_t);

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static unsigned char *slurp(const char *p, size_t *n) {
    FILE *f = fopen(p, "rb"); if (!f) { perror(p); exit(1); }
    fseek(f, 0, SEEK_END); *n = ftell(f); fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*n); if (fread(b, 1, *n, f) != *n) exit(1); fclose(f); return b;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: bench DB LEVEL [DICT|-] [REPS]\n"); return 2; }
    size_t n; unsigned char *db = slurp(argv[1], &n);
    int level = atoi(argv[2]);
    size_t ps = (db[16] << 8) | db[17]; if (ps == 1) ps = 65536;
    size_t np = n / ps, bound = ZSTD_compressBound(ps);
    int reps = argc > 4 ? atoi(argv[4]) : 5;
    ZSTD_CDict *cd = NULL; ZSTD_DDict *dd = NULL; size_t dn = 0;
    if (argc > 3 && strcmp(argv[3], "-")) {
        unsigned char *d = slurp(argv[3], &dn);
        cd = ZSTD_createCDict(d, dn, level); dd = ZSTD_createDDict(d, dn);
    }
    ZSTD_CCtx *cc = ZSTD_createCCtx(); ZSTD_DCtx *dc = ZSTD_createDCtx();
    unsigned char *out = malloc(np * bound); size_t *len = malloc(np * sizeof *len);
    unsigned char *page = malloc(ps);
    double bc = 1e9, bd = 1e9, total = 0;
    for (int r = 0; r < reps; r++) {
        double t = now(); total = 0;
        for (size_t i = 0; i < np; i++) {
            size_t k = cd ? ZSTD_compress_usingCDict(cc, out + i * bound, bound, db + i * ps, ps, cd)
                          : ZSTD_compressCCtx(cc, out + i * bound, bound, db + i * ps, ps, level);
            if (ZSTD_isError(k)) { fprintf(stderr, "cerr\n"); return 1; }
            len[i] = k; total += k < ps ? k : ps;
        }
        t = now() - t; if (t < bc) bc = t;
        t = now();
        for (size_t i = 0; i < np; i++) {
            size_t k = dd ? ZSTD_decompress_usingDDict(dc, page, ps, out + i * bound, len[i], dd)
                          : ZSTD_decompressDCtx(dc, page, ps, out + i * bound, len[i]);
            if (k != ps || memcmp(page, db + i * ps, 64)) { fprintf(stderr, "derr\n"); return 1; }
        }
        t = now() - t; if (t < bd) bd = t;
    }
    printf("%s L%d dict=%zuB pages=%zu frames=%.2fMB comp %.1f MB/s decomp %.1f MB/s (%.2f us/page)\n",
           argv[1], level, dn, np, total / 1e6, n / bc / 1e6, n / bd / 1e6, bd / np * 1e6);
    return 0;
}
