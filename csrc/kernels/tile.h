/*
 * tile.h -- the GEMM micro-kernel: one register tile of C = A B^T over the whole
 * reduction, written once and compiled per ISA and dtype (no include guard).
 *
 * B is packed (layers/pack.c): a panel is K rows of W = NV*VL values, contiguous,
 * panels `bs` elements apart. A tile covers MR rows of A (row r at a + r*lda) and
 * NP consecutive panels, and leaves MR x NP*NV vectors in c (row stride ldc): an
 * L1-resident scratch the cell epilogue reads right away or, with a bias, the
 * input projections themselves (acc + bias stored straight from the registers).
 *
 * Every element of every tile shape is the same sequential chain
 *     acc = 0; for k in 0..K-1: acc = fma(a[k], b[k], acc)
 * so results do not depend on the tile shape, on how rows or panels are grouped,
 * or on which thread runs them: outputs are bitwise identical for any thread
 * count and any batch composition.
 *
 * Shapes: MR rows x 1 panel for batches (MR up to FRN_MR_MAX(NV), chosen per ISA so
 * that accumulators, the NV panel vectors and a broadcast fit the register file);
 * 1 row x NP panels for batch 1, where NP panels give enough independent FMA chains
 * to hide the FMA latency.
 *
 * Loads of B: left to itself, GCC folds each panel vector's load into the FMAs of
 * every row (vfmadd231ps mem, ...), so a tile of MR rows loads it MR times. On
 * AVX-512 that made the loads, not the FMAs, the limit of 2- and 3-row tiles (Zen 4
 * loads at most one zmm a cycle): FRN_TILE_LOAD_REG loads each vector once into a
 * register (load_reg) for the rows to share (a single row's loads stay folded: each
 * vector feeds one FMA). Both builds in one process, alternating blocks of calls,
 * medians, us a step, 1 thread: LSTM H=128 batch 3 9.86 -> 8.47, H=256 batch 2
 * 23.1 -> 21.5, batch 3 33.7 -> 30.1; GRU H=256 batch 3 27.9 -> 23.5, H=512 batch 3
 * 111 -> 94.8; 2 threads 7-14% at batches 2-3; batches 1, 8 and 64 level. On AVX2
 * (16 registers, two ymm loads a cycle) the folded loads are as fast or faster:
 * holding the vectors made LSTM 18-50% slower at batches 2-8 (3 rows of 4 vectors
 * and the 4 vectors spill) and GRU 0.87-1.21x, so it stays off there.
 */
#ifndef FRN_TILE_LOAD_REG
#define FRN_TILE_LOAD_REG 0
#endif
/* Row tiles that ask for the next panel ahead (tile_pf; layers/engine.h,
   run_panel_rows): an ISA's step_*.c sets this where it was measured to pay */
#ifndef FRN_TILE_PF_NEXT
#define FRN_TILE_PF_NEXT 0
#endif
/* The k loop unrolled this many times (an ISA's step_*.c may set it) */
#ifndef FRN_TILE_UNROLL_K
#define FRN_TILE_UNROLL_K 1
#endif
#define FRN_PRAGMA_(x) _Pragma(#x)
#define FRN_UNROLL(n) FRN_PRAGMA_(GCC unroll n)

#define FRN_TILE_DEF(MR, NP, NV) FRN_TILE_DEF_S(MR, NP, NV, NV, NV, tile_##MR##_##NP##_##NV)
/* the same tile asking for pfn cache lines from pf on at each reduction step
   (tile_pf): two more parameters and a prefetch a step, in no other tile's code */
#define FRN_TILE_DEF_PF(MR, NV)                                                        \
    FRN_TILE_DEF_X(MR, 1, NV, NV, NV, tile_##MR##_1_##NV##_pf, FRN_PF_PARAMS, FRN_PF_STEP)
#define FRN_PF_PARAMS , const char *pf, int pfn
#define FRN_PF_STEP                                                                    \
    __builtin_prefetch(pf + (ptrdiff_t)k * pfn * 64, 0, 2);                            \
    if (pfn > 1) __builtin_prefetch(pf + ((ptrdiff_t)k * pfn + 1) * 64, 0, 2);
#define FRN_NO_PF
/* Vector v of panel p at reduction step k is read at b + p*bs + (v/SV)*K*SV*VL +
   k*SV*VL + (v%SV)*VL, and its result goes to c + r*ldc + (p*OW + v)*VL: SV = OW =
   NV for plain panels; split ones below. */
#define FRN_TILE_DEF_S(MR, NP, NV, SV, OW, NAME)                                       \
    FRN_TILE_DEF_X(MR, NP, NV, SV, OW, NAME, FRN_NO_PF, FRN_NO_PF)
#define FRN_TILE_DEF_X(MR, NP, NV, SV, OW, NAME, PARAMS, PF_STEP)                      \
    static inline __attribute__((always_inline)) void FN(NAME)(                        \
        int K, const FRN_T *restrict a, ptrdiff_t lda, const FRN_T *restrict b,        \
        ptrdiff_t bs, FRN_T *restrict c, ptrdiff_t ldc,                                \
        const FRN_T *restrict bias PARAMS)                                             \
    {                                                                                  \
        VT acc[MR][NP * NV];                                                           \
        _Pragma("GCC unroll 32") for (int r = 0; r < MR; r++)                          \
            _Pragma("GCC unroll 32") for (int j = 0; j < NP * NV; j++)                 \
                acc[r][j] = V(zero)();                                                 \
        FRN_UNROLL(FRN_TILE_UNROLL_K) for (int k = 0; k < K; k++) {                    \
            PF_STEP                                                                    \
            VT bk[NP * NV];                                                            \
            _Pragma("GCC unroll 32") for (int p = 0; p < NP; p++)                      \
                _Pragma("GCC unroll 32") for (int v = 0; v < NV; v++) {                \
                    const FRN_T *bp = b + p * bs + (ptrdiff_t)(v / SV) * K * (SV * VL) + \
                                      (ptrdiff_t)k * (SV * VL) + (v % SV) * VL;        \
                    bk[p * NV + v] =                                                   \
                        FRN_TILE_LOAD_REG && MR > 1 ? V(load_reg)(bp) : V(load)(bp);   \
                }                                                                      \
            _Pragma("GCC unroll 32") for (int r = 0; r < MR; r++)                      \
            {                                                                          \
                VT ar = V(set1)(a[r * lda + k]);                                       \
                _Pragma("GCC unroll 32") for (int j = 0; j < NP * NV; j++)             \
                    acc[r][j] = V(fma)(ar, bk[j], acc[r][j]);                          \
            }                                                                          \
        }                                                                              \
        if (bias) {                                                                    \
            _Pragma("GCC unroll 32") for (int r = 0; r < MR; r++)                      \
                _Pragma("GCC unroll 32") for (int j = 0; j < NP * NV; j++) {               \
                    const ptrdiff_t o = (j / NV * OW + j % NV) * VL;                           \
                    V(store)(c + r * ldc + o, V(add)(acc[r][j], V(load)(bias + o)));           \
                }                                                                      \
        } else {                                                                       \
            _Pragma("GCC unroll 32") for (int r = 0; r < MR; r++)                      \
                _Pragma("GCC unroll 32") for (int j = 0; j < NP * NV; j++)             \
                    V(store)(c + r * ldc + (j / NV * OW + j % NV) * VL, acc[r][j]);    \
        }                                                                              \
    }

FRN_TILE_DEF(1, 1, 3)
FRN_TILE_DEF(1, 2, 3)
FRN_TILE_DEF(1, 3, 3)
FRN_TILE_DEF(1, 4, 3)
FRN_TILE_DEF(2, 1, 3)
FRN_TILE_DEF(3, 1, 3)
FRN_TILE_DEF(4, 1, 3)
FRN_TILE_DEF(5, 1, 3)
FRN_TILE_DEF(6, 1, 3)
FRN_TILE_DEF(7, 1, 3)
FRN_TILE_DEF(8, 1, 3)
FRN_TILE_DEF(1, 1, 4)
FRN_TILE_DEF(1, 2, 4)
FRN_TILE_DEF(1, 3, 4)
FRN_TILE_DEF(1, 4, 4)
FRN_TILE_DEF(2, 1, 4)
FRN_TILE_DEF(3, 1, 4)
FRN_TILE_DEF(4, 1, 4)
FRN_TILE_DEF(5, 1, 4)
FRN_TILE_DEF(6, 1, 4)

/*
 * Split panels (plan.h, AVX2): a 4-vector W_hh panel stored as two sub-panels of
 * K x 2 vectors. Tiles of 4-6 rows take one sub-panel, then the other
 * (tile_*_h: 8-12 accumulators, each vector loaded once for all rows from one
 * contiguous stream); with 16 ymm a whole panel fits 3 rows only (12
 * accumulators), so 4 rows went 2 + 2 and read each panel twice with 8 chains a
 * tile. One row takes the first sub-panels of its panels, then the second ones
 * (one stream a panel at a time; both at once read 5-7% slower). Tiles of 2-3 rows
 * take both sub-panels at once (tile_*_4s), and so does one row over 1-2 panels
 * (4 accumulators a half would leave the FMAs waiting). Every element is the same
 * chain as with plain panels, so the results are the same. Zen 3, 1 thread, T=100,
 * I=H, 5-6 x 150 alternated calls, us a step: LSTM H=384 batch 4 141.7 -> 118.5,
 * H=128 batch 4 21.2 -> 19.3, H=64 batch 4 4.89 -> 4.23, H=384 batch 16 501 ->
 * 474, H=200 batch 8 65.5 -> 63.5, RNN H=256 batch 4 20.4 -> 17.6; W_hh alone
 * (I=8), H=384 batch 4 90.2 -> 64.0; batch 64 and batch 1 level within 1-3%.
 */
FRN_TILE_DEF_S(1, 1, 4, 2, 4, tile_1_1_4s)
FRN_TILE_DEF_S(1, 2, 4, 2, 4, tile_1_2_4s)
FRN_TILE_DEF_S(1, 3, 2, 2, 4, tile_1_3_h)
FRN_TILE_DEF_S(1, 4, 2, 2, 4, tile_1_4_h)
FRN_TILE_DEF_S(2, 1, 4, 2, 4, tile_2_1_4s)
FRN_TILE_DEF_S(3, 1, 4, 2, 4, tile_3_1_4s)
FRN_TILE_DEF_S(4, 1, 2, 2, 4, tile_4_1_h)
FRN_TILE_DEF_S(5, 1, 2, 2, 4, tile_5_1_h)
FRN_TILE_DEF_S(6, 1, 2, 2, 4, tile_6_1_h)
#define FRN_MR_MAX_SUB 6

/* A tile of split panels: mr rows (1..FRN_MR_MAX_SUB), np panels (1..4) when mr == 1. */
static inline void FN(tile_sub)(int mr, int np, int K, const FRN_T *a, ptrdiff_t lda,
                                const FRN_T *b, ptrdiff_t bs, FRN_T *c, ptrdiff_t ldc,
                                const FRN_T *bias)
{
    const FRN_T *b1 = b + (ptrdiff_t)K * 2 * VL, *bias1 = bias ? bias + 2 * VL : NULL;
#define FRN_TILE_HALVES(MR, NP)                                                        \
    case (MR) * 10 + (NP):                                                             \
        FN(tile_##MR##_##NP##_h)(K, a, lda, b, bs, c, ldc, bias);                      \
        FN(tile_##MR##_##NP##_h)(K, a, lda, b1, bs, c + 2 * VL, ldc, bias1);           \
        return;
    switch (mr * 10 + np) {
    case 11: FN(tile_1_1_4s)(K, a, lda, b, bs, c, ldc, bias); return;
    case 12: FN(tile_1_2_4s)(K, a, lda, b, bs, c, ldc, bias); return;
        FRN_TILE_HALVES(1, 3)
        FRN_TILE_HALVES(1, 4)
    case 21: FN(tile_2_1_4s)(K, a, lda, b, bs, c, ldc, bias); return;
    case 31: FN(tile_3_1_4s)(K, a, lda, b, bs, c, ldc, bias); return;
        FRN_TILE_HALVES(4, 1)
        FRN_TILE_HALVES(5, 1)
        FRN_TILE_HALVES(6, 1)
    default:
        return; /* unreachable: callers pass shapes from phase_items() */
    }
#undef FRN_TILE_HALVES
}

/*
 * Run one tile: mr rows (1..FRN_MR_MAX(nv)) and, for mr == 1, np panels (1..4);
 * np must be 1 when mr > 1.
 */
static inline void FN(tile)(int nv, int mr, int np, int K, const FRN_T *a, ptrdiff_t lda,
                            const FRN_T *b, ptrdiff_t bs, FRN_T *c, ptrdiff_t ldc,
                            const FRN_T *bias)
{
#define FRN_TILE_CASE(MR, NP, NV)                                                      \
    case (MR) * 100 + (NP) * 10 + (NV):                                                \
        FN(tile_##MR##_##NP##_##NV)(K, a, lda, b, bs, c, ldc, bias);                   \
        return;
    switch (mr * 100 + np * 10 + nv) {
        FRN_TILE_CASE(1, 1, 3)
        FRN_TILE_CASE(1, 2, 3)
        FRN_TILE_CASE(1, 3, 3)
        FRN_TILE_CASE(1, 4, 3)
        FRN_TILE_CASE(2, 1, 3)
        FRN_TILE_CASE(3, 1, 3)
        FRN_TILE_CASE(4, 1, 3)
#if FRN_MR_MAX3 >= 5
        FRN_TILE_CASE(5, 1, 3)
        FRN_TILE_CASE(6, 1, 3)
        FRN_TILE_CASE(7, 1, 3)
        FRN_TILE_CASE(8, 1, 3)
#endif
        FRN_TILE_CASE(1, 1, 4)
        FRN_TILE_CASE(1, 2, 4)
        FRN_TILE_CASE(1, 3, 4)
        FRN_TILE_CASE(1, 4, 4)
        FRN_TILE_CASE(2, 1, 4)
        FRN_TILE_CASE(3, 1, 4)
#if FRN_MR_MAX4 >= 4
        FRN_TILE_CASE(4, 1, 4)
        FRN_TILE_CASE(5, 1, 4)
        FRN_TILE_CASE(6, 1, 4)
#endif
    default:
        return; /* unreachable: callers pass shapes from frn_mr_max() */
    }
#undef FRN_TILE_CASE
}

/*
 * Row tiles that also ask for pfn (1 or 2) cache lines of a later panel into L2 at
 * each reduction step, from pf on (layers/engine.h, run_panel_rows): mr 2..FRN_MR_MAX.
 */
#if FRN_TILE_PF_NEXT
FRN_TILE_DEF_PF(2, 3)
FRN_TILE_DEF_PF(3, 3)
FRN_TILE_DEF_PF(4, 3)
FRN_TILE_DEF_PF(5, 3)
FRN_TILE_DEF_PF(6, 3)
FRN_TILE_DEF_PF(7, 3)
FRN_TILE_DEF_PF(8, 3)
FRN_TILE_DEF_PF(2, 4)
FRN_TILE_DEF_PF(3, 4)
FRN_TILE_DEF_PF(4, 4)
FRN_TILE_DEF_PF(5, 4)
FRN_TILE_DEF_PF(6, 4)
static inline void FN(tile_pf)(int nv, int mr, int K, const FRN_T *a, ptrdiff_t lda,
                               const FRN_T *b, FRN_T *c, ptrdiff_t ldc, const char *pf, int pfn)
{
#define FRN_TILE_CASE_PF(MR, NV)                                                       \
    case (MR) * 10 + (NV):                                                             \
        FN(tile_##MR##_1_##NV##_pf)(K, a, lda, b, 0, c, ldc, NULL, pf, pfn);           \
        return;
    switch (mr * 10 + nv) {
        FRN_TILE_CASE_PF(2, 3)
        FRN_TILE_CASE_PF(3, 3)
        FRN_TILE_CASE_PF(4, 3)
        FRN_TILE_CASE_PF(5, 3)
        FRN_TILE_CASE_PF(6, 3)
        FRN_TILE_CASE_PF(7, 3)
        FRN_TILE_CASE_PF(8, 3)
        FRN_TILE_CASE_PF(2, 4)
        FRN_TILE_CASE_PF(3, 4)
        FRN_TILE_CASE_PF(4, 4)
        FRN_TILE_CASE_PF(5, 4)
        FRN_TILE_CASE_PF(6, 4)
    default:
        return; /* unreachable: run_panel_rows passes row tiles of 2..FRN_MR_MAX rows */
    }
#undef FRN_TILE_CASE_PF
}
#endif

/*
 * Projection ahead (batch 1; layers/engine.h, run_dir_ahead). One panel of the
 * recurrent product h W_hh^T, with a slice of a LATER chunk's input projection
 * woven into its k loop. At batch 1 the recurrent product reads each weight once
 * per step (one FMA per vector loaded: bound by the cache that holds W_hh), while
 * the input projection is a GEMM (bound by the FMA units): run one after the
 * other, each leaves the other's resource idle. Here both advance in the same
 * loop, so the core streams W_hh and does the projection's arithmetic at once.
 *
 * The projection's work is cut in segments: one pair of rows g (rows 2g and 2g+1
 * of the chunk, or row 2g alone when it is the last), one W_ih panel p and one
 * block kb of FRN_AHEAD_KB reduction steps, numbered with g fastest:
 *     seg = (kb * np + p) * ng + g,
 * so consecutive segments reuse one W_ih block (KB x NV*VL values, in L1) for the
 * whole chunk. Each W_ih vector loaded feeds both rows of the pair, and each
 * reduction step of the pair goes with two of W_hh's: per two k of W_hh the loop
 * loads 2*NV vectors of W_hh and NV of W_ih for 4*NV FMAs, where one row at a time
 * loaded 2*NV of each (load_reg keeps the compiler from loading W_ih again for
 * the second row). Batch 1, 1 thread, medians of 8 alternated runs on Zen 4:
 * 5-9% faster a step for LSTM, GRU and RNN up to H=256 (LSTM H=128 3.56 -> 3.31
 * us, GRU H=128 2.77 -> 2.52), 2-4% at H=512. A segment continues its
 * elements' chains from their partial sums in XP (kb > 0) and adds the bias after
 * the last block, so every element is the same chain as the plain tile's (bitwise
 * equal results). Two segments of the same (p, g) are np*ng segments apart; the
 * driver runs them in different steps (ng >= segments per panel and step), so
 * items run in any order or on any thread never race.
 * Pairs, not more: groups of 4 rows for 3-vector panels (GRU; 12 accumulators still
 * fit in 32 zmm, and each W_ih vector then feeds 4 FMAs) made GRU steps 2-7%
 * slower at H=64..512 (5 alternated runs); groups of 3 or 4 made LSTM 2-10% slower.
 */
#ifndef FRN_AHEAD_KB
#define FRN_AHEAD_KB 32
#endif

typedef struct {
    int np, nkb, kx, rows; /* W_ih panels, k blocks, reduction length, chunk rows */
    int ng;                /* row pairs: ahead_pairs(rows) */
    int per;               /* segments per panel and step (the driver's) */
    const FRN_T *b;        /* W_ih panels, bs elements apart */
    ptrdiff_t bs;
    const FRN_T *bias;     /* folded biases in the XP layout, or NULL */
    FRN_T *xp;             /* the chunk's XP rows, row stride xw */
    int xw;
    const FRN_T *x0;       /* row r's input at x0 + r*xst */
    ptrdiff_t xst;
    long seg0;             /* the calling step's first segment */
} FN(ahead);

/* Segments of rows cover a pair of rows each (the last one alone when rows is odd). */
static inline int FN(ahead_pairs)(int rows) { return (rows + 1) / 2; }

/* acc[0..nv) += a * (the nv vectors at b) */
static inline __attribute__((always_inline)) void FN(ahead_fma)(int nv, VT *acc, FRN_T a,
                                                                 const FRN_T *b)
{
    const VT av = V(set1)(a);
    _Pragma("GCC unroll 4") for (int v = 0; v < nv; v++)
        acc[v] = V(fma)(av, V(load)(b + v * VL), acc[v]);
}

/* One reduction step of a segment's mr rows: g0 += x[0] * b, g1 += x[xst] * b for
   the nv vectors b at wi, each loaded once for both rows. */
static inline __attribute__((always_inline)) void FN(ahead_proj)(int nv, int mr, VT *g0, VT *g1,
                                                                  const FRN_T *x, ptrdiff_t xst,
                                                                  const FRN_T *wi)
{
    const VT a0 = V(set1)(x[0]);
    const VT a1 = mr > 1 ? V(set1)(x[xst]) : a0;
    _Pragma("GCC unroll 4") for (int v = 0; v < nv; v++) {
        const VT b = V(load_reg)(wi + v * VL);
        g0[v] = V(fma)(a0, b, g0[v]);
        if (mr > 1) g1[v] = V(fma)(a1, b, g1[v]);
    }
}

/* Segment (g, p, kb) of mr rows (1 or 2, a constant once inlined), weaving two
   steps of the recurrent chains m (h, w from *kp on) into each of its reduction
   steps. */
static inline __attribute__((always_inline)) void FN(ahead_seg)(
    int nv, int mr, int K, const FRN_T *restrict h, const FRN_T *restrict w, VT *m, int *kp,
    const FN(ahead) *A, int g, int p, int kb)
{
    const ptrdiff_t W = (ptrdiff_t)nv * VL;
    const int k0 = kb * FRN_AHEAD_KB;
    const int kn = A->kx - k0 < FRN_AHEAD_KB ? A->kx - k0 : FRN_AHEAD_KB;
    FRN_T *dst = A->xp + (ptrdiff_t)(2 * g) * A->xw + p * W;
    const FRN_T *x = A->x0 + (ptrdiff_t)(2 * g) * A->xst + k0;
    const FRN_T *wi = A->b + (ptrdiff_t)p * A->bs + k0 * W;
    VT g0[4], g1[4];
    _Pragma("GCC unroll 4") for (int v = 0; v < nv; v++) {
        g0[v] = kb ? V(load)(dst + v * VL) : V(zero)();
        if (mr > 1) g1[v] = kb ? V(load)(dst + A->xw + v * VL) : V(zero)();
    }
    int k = *kp, i = 0;
    /* two steps of W_hh to one of the pair while both last, then what is left */
    const int both = (K - k) / 2 < kn ? (K - k) / 2 : kn;
    for (; i < both; i++, k += 2) {
        FN(ahead_fma)(nv, m, h[k], w + k * W);
        FN(ahead_fma)(nv, m, h[k + 1], w + (k + 1) * W);
        FN(ahead_proj)(nv, mr, g0, g1, x + i, A->xst, wi + i * W);
    }
    if (i < kn && k < K) {
        FN(ahead_fma)(nv, m, h[k], w + k * W);
        k++;
        FN(ahead_proj)(nv, mr, g0, g1, x + i, A->xst, wi + i * W);
        i++;
    }
    for (; i < kn; i++) FN(ahead_proj)(nv, mr, g0, g1, x + i, A->xst, wi + i * W);
    *kp = k;
    if (kb == A->nkb - 1 && A->bias) /* the last block: the chains end, + bias */
        _Pragma("GCC unroll 4") for (int v = 0; v < nv; v++) {
            const VT bv = V(load)(A->bias + p * W + v * VL);
            g0[v] = V(add)(g0[v], bv);
            if (mr > 1) g1[v] = V(add)(g1[v], bv);
        }
    _Pragma("GCC unroll 4") for (int v = 0; v < nv; v++) {
        V(store)(dst + v * VL, g0[v]);
        if (mr > 1) V(store)(dst + A->xw + v * VL, g1[v]);
    }
}

/* The kernel, for nv a constant once inlined (ahead_3, ahead_4 below). */
static inline __attribute__((always_inline)) void FN(ahead_nv)(int nv, int K,
                                                                const FRN_T *restrict h,
                                                                const FRN_T *restrict w,
                                                                FRN_T *restrict c,
                                                                const FN(ahead) *A, long lo,
                                                                long hi)
{
    const ptrdiff_t W = (ptrdiff_t)nv * VL;
    const long total = (long)A->ng * A->np * A->nkb;
    if (hi > total) hi = total;
    VT m[4];
    _Pragma("GCC unroll 4") for (int v = 0; v < nv; v++) m[v] = V(zero)();
    int k = 0;
    for (long sg = lo; sg < hi; sg++) {
        const int g = (int)(sg % A->ng), p = (int)(sg / A->ng % A->np);
        const int kb = (int)(sg / A->ng / A->np);
        if (2 * g + 1 < A->rows)
            FN(ahead_seg)(nv, 2, K, h, w, m, &k, A, g, p, kb);
        else
            FN(ahead_seg)(nv, 1, K, h, w, m, &k, A, g, p, kb);
    }
    for (; k < K; k++) FN(ahead_fma)(nv, m, h[k], w + k * W);
    _Pragma("GCC unroll 4") for (int v = 0; v < nv; v++) V(store)(c + v * VL, m[v]);
}

static void FN(ahead_3)(int K, const FRN_T *h, const FRN_T *w, FRN_T *c, const FN(ahead) *A,
                        long lo, long hi)
{
    FN(ahead_nv)(3, K, h, w, c, A, lo, hi);
}

static void FN(ahead_4)(int K, const FRN_T *h, const FRN_T *w, FRN_T *c, const FN(ahead) *A,
                        long lo, long hi)
{
    FN(ahead_nv)(4, K, h, w, c, A, lo, hi);
}

/* One panel of the recurrent product (nv vectors wide, K long) into c, with
   segments [lo, hi) of A's projection. */
static inline void FN(tile_ahead)(int nv, int K, const FRN_T *h, const FRN_T *w, FRN_T *c,
                                  const FN(ahead) *A, long lo, long hi)
{
    if (nv == 3)
        FN(ahead_3)(K, h, w, c, A, lo, hi);
    else
        FN(ahead_4)(K, h, w, c, A, lo, hi);
}
