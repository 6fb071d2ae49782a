/*
 * engine.h -- the drivers: a whole network over a sequence, and one stream step.
 * Included once per (ISA, dtype) by isa/step_*.c with FRN_T, VT, VL, V(), FN() set
 * (see isa/template.h); no include guard.
 *
 * For each layer and direction:
 *   1. the inputs of a chunk of time steps are gathered into contiguous rows (in
 *      iteration order: step s, then the sequences still running, longest first)
 *      and projected in one GEMM, XP = X W_ih^T + folded biases;
 *   2. the time loop runs one recurrent GEMM per step, h W_hh^T, whose tiles go
 *      straight to the cell epilogue (cells/), writing the new state, the output
 *      row and, at each sequence's last step, h_n / c_n.
 * Sequences are sorted by length once per call, so the rows still running at step
 * s are a prefix of nact[s] rows: no work for padding, no per-row branches in the
 * GEMM. The reverse direction walks step s of a sequence of length n at time
 * n-1-s. At batch 1, 1. for the next chunk runs inside 2. of the current one
 * (run_dir_ahead, kernels/tile.h "projection ahead").
 *
 * Threads: one OpenMP team per (layer, direction), or per bidirectional layer two
 * halves, one per direction, running at once (forward, "apart"). A team's threads
 * go through the same sequence of phases (gather, projection, then one or two per
 * step), each a set of work items -- (panel, row tile) pairs in panel-major order
 * -- shared out by layers/sched.h: one contiguous share per thread, so a thread
 * keeps the same weight panels (and their place in its L2) step after step, and a
 * thread that finishes early takes what is left of the others', so a descheduled
 * thread does not hold a step up. Batches with small weights split instead in
 * groups of rows, one per thread, each group run through every layer by its thread
 * alone (split_groups). Splits are on outputs only, and every tile computes each
 * element with the same chain (kernels/tile.h): results are bitwise identical for
 * any thread count.
 */

#include "sched.h"
#include "../kernels/activ.h"
#include "../kernels/tile.h"
#include "../cells/common.h"
#include "../cells/lstm.h"
#include "../cells/gru.h"
#include "../cells/rnn.h"

#ifndef FRN_EPI_DEFINED
#define FRN_EPI_DEFINED
enum { FRN_EPI_XP, FRN_EPI_LSTM, FRN_EPI_PROJ, FRN_EPI_GRU, FRN_EPI_GRU_RZ, FRN_EPI_GRU_N,
       FRN_EPI_RNN };
#endif

/* One GEMM phase: rows x (panels of K x nv*VL), tiles to an epilogue. */
typedef struct {
    int epi, nv, np, K, rows;
    int sub; /* b's panels are split (plan.h sub_h; kernels/tile.h) */
    const FRN_T *a;
    ptrdiff_t lda;
    const FRN_T *b;
    ptrdiff_t bs; /* elements between panels */
    /* FRN_EPI_XP: destination rows and the folded biases */
    FRN_T *xp;
    const FRN_T *bias;
    int xw; /* row stride of xp and racc */
    /* a cell phase whose recurrent products are already computed (a stream's eager
       W_hh h, see stream_recur): rows of stride xw in the XP layout */
    const FRN_T *racc;
    /* batch 1: a later chunk's input projection to weave into this phase's tiles
       (kernels/tile.h, "projection ahead"; run_dir_ahead) */
    const FN(ahead) *ahead;
} FN(phase);

static inline void FN(epilogue)(const FN(phase) *ph, const FN(ctx) *C, FRN_T *hnext, int s,
                                int r0, int mr, int p0, int npg, const FRN_T *acc)
{
    switch (ph->epi) {
    case FRN_EPI_XP: return; /* stored by the tile itself (tile_epi) */
    case FRN_EPI_LSTM: FN(epi_lstm)(C, hnext, s, r0, mr, p0, npg, acc); return;
    case FRN_EPI_PROJ: FN(epi_proj)(C, hnext, s, r0, mr, p0, npg, acc); return;
    case FRN_EPI_GRU: FN(epi_gru)(C, hnext, s, r0, mr, p0, npg, acc); return;
    case FRN_EPI_GRU_RZ: FN(epi_gru_rz)(C, hnext, s, r0, mr, p0, npg, acc); return;
    case FRN_EPI_GRU_N: FN(epi_gru_n)(C, hnext, s, r0, mr, p0, npg, acc); return;
    case FRN_EPI_RNN: FN(epi_rnn)(C, hnext, s, r0, mr, p0, npg, acc); return;
    }
}

/*
 * Items of a phase: (panel, row tile) pairs, panel-major. The rows are cut into as
 * few tiles as the register file allows, of equal size give or take a row (8 rows
 * of LSTM on AVX-512 go 4 + 4, not 6 + 2: a 2-row tile does 2 FMAs per vector of
 * W it loads, and waits on L2). No software prefetch of the next panel: the
 * hardware's keeps up, and a burst of prefetches at each tile's start (a slice of
 * the next panel, as before) filled L1 ahead of the tile's own loads. Batch 8,
 * 1 thread, 6 alternated runs: LSTM H=512 375 -> 333 us a step, H=1024 1738 -> 1374,
 * GRU H=512 at batch 12 390 -> 359; batch 64 LSTM H=512 2768 -> 2595.
 */
static inline long FN(phase_items)(const FN(phase) *ph, int *nrt_out)
{
    const int mrmax = ph->sub ? FRN_MR_MAX_SUB : ph->nv == 3 ? FRN_MR_MAX3 : FRN_MR_MAX4;
    const int nrt = (ph->rows + mrmax - 1) / mrmax;
    *nrt_out = nrt;
    return (long)ph->np * nrt;
}

/*
 * Items per claim. A single row reads each panel once: a tile groups 4 panels, so
 * it has enough independent FMA chains (16 accumulators). When a thread's share
 * is within about four L1s, groups of 2 let the alternating sweep (below) find
 * part of it in L1: at batch 1, LSTM H=64 (64 KB of W_hh) 0.49 -> 0.36 us per
 * step for W_hh alone, GRU H=128 (192 KB) 2.49 -> 2.37 us per step in all; LSTM
 * H=128 (256 KB) gains nothing.
 */
static inline int FN(phase_chunk)(const FN(phase) *ph, const FN(phase) *ph2, long items, int nt)
{
    /* Batches: an eighth of a share per claim (less near a share's end, sched.h).
       A claim is an atomic read-modify-write, which waits for every store in flight
       (the tiles' writes to out and the state): claimed one tile at a time, it cost
       10% of a batch-64, two-thread LSTM H=128 call. */
    if (ph->rows != 1) return nt > 1 && items / nt >= 16 ? (int)(items / nt / 8) : 1;
    /* A fused stream step reads both phases' panels: counting only the input
       projection's (as before) chose groups of 2 for shares far past L1 (LSTM
       H=128 stream, 2 threads: 3.9 -> 3.76 us a step with 4; GRU H=128, 1 thread:
       3.95 -> 3.68). */
    const double share = (double)items / nt * (ph->bs + (ph2 ? ph2->bs : 0)) * sizeof(FRN_T);
    return share <= 200.0 * 1024 ? 2 : 4;
}

/* A tile of the phase's panels from b on: mr rows of a, npg panels when mr == 1. */
static inline void FN(phase_tile)(const FN(phase) *ph, int mr, int npg, const FRN_T *a,
                                  const FRN_T *b, FRN_T *c, ptrdiff_t ldc, const FRN_T *bias)
{
    if (ph->sub)
        FN(tile_sub)(mr, npg, ph->K, a, ph->lda, b, ph->bs, c, ldc, bias);
    else
        FN(tile)(ph->nv, mr, npg, ph->K, a, ph->lda, b, ph->bs, c, ldc, bias);
}

/* One tile and its epilogue; input projections go straight from the registers to
   XP with their bias. */
static inline void FN(tile_epi)(const FN(phase) *ph, const FN(ctx) *C, FRN_T *hnext, int s,
                                int r0, int mr, int p, int npg, FRN_T *acc)
{
    const FRN_T *a = ph->a + (ptrdiff_t)r0 * ph->lda, *b = ph->b + (ptrdiff_t)p * ph->bs;
    if (ph->epi == FRN_EPI_XP) {
        const ptrdiff_t col = (ptrdiff_t)p * ph->nv * VL;
        FN(phase_tile)(ph, mr, npg, a, b, ph->xp + (ptrdiff_t)r0 * ph->xw + col, ph->xw,
                       ph->bias ? ph->bias + col : NULL);
        return;
    }
    FN(phase_tile)(ph, mr, npg, a, b, acc, (ptrdiff_t)npg * ph->nv * VL, NULL);
    FN(epilogue)(ph, C, hnext, s, r0, mr, p, npg, acc);
}

/*
 * Run items [lo, hi) of a phase, backwards when rev. The time loop alternates
 * direction every step, so the panels a thread touched last in one step are the
 * first it needs in the next, while they are still in its L2 (or L1). With
 * LRU-like caches a fixed sweep over weights larger than the cache misses on
 * every line; the alternating sweep keeps about a cache's worth of them resident:
 * measured at batch 1, GRU H=512 (3 MB of W_hh, 2 MB L2), 100 -> 58 us per step.
 * The order of tiles never changes what each element computes.
 */
/*
 * A single row (batch 1): tiles of up to FRN_EPI_MAX panels first, then one cell
 * epilogue over all of them, so the activation chains of every unit block are in
 * flight together (each is ~20 dependent operations; one block at a time left the
 * core waiting: LSTM H=64 at batch 1 spent a quarter of its time there). One
 * epilogue per half or quarter of the panels, so that the first part's gate math
 * could overlap the rest's tiles, made batch-1 steps 5-25% slower (GRU H=128 2.53
 * -> 2.91-2.98 us, LSTM H=64 0.93 -> 1.05-1.16; 4 alternated runs).
 */
static void FN(run_row)(const FN(phase) *ph, const FN(phase) *ph2, const FN(ctx) *C,
                        FRN_T *hnext, int s, long lo, long hi, int chunk, int rev)
{
    const FN(phase) *cell = ph2 ? ph2 : ph, *xp = ph2 ? ph : NULL;
    FRN_T acc[FRN_EPI_MAX * 4 * VL] __attribute__((aligned(64)));
    const ptrdiff_t w = (ptrdiff_t)cell->nv * VL;
    /* The recurrent tiles read all of h, which the other threads have just written
       in part: ask for it before the input projection's tiles, which do not need
       it (LSTM H=128 stream on 2 threads: 3.85 -> 3.65 us a step). */
    if (xp && !cell->racc)
        for (int k = 0; k < cell->K; k += 64 / (int)sizeof(FRN_T))
            __builtin_prefetch(cell->a + k, 0, 3);
    for (long bdone = 0; bdone < hi - lo;) {
        const long bn = hi - lo - bdone < FRN_EPI_MAX ? hi - lo - bdone : FRN_EPI_MAX;
        const long blo = rev ? hi - bdone - bn : lo + bdone;
        for (long done = 0; done < bn;) {
            const long left = bn - done;
            const int npg = left < chunk ? (int)left : chunk;
            const int p = (int)(rev ? blo + bn - done - npg : blo + done);
            if (xp) FN(tile_epi)(xp, C, NULL, s, 0, 1, p, npg, acc);
            if (cell->ahead) {
                /* one panel at a time, each with its own segments of the projection */
                const FN(ahead) *A = cell->ahead;
                for (int q = p; q < p + npg; q++)
                    FN(tile_ahead)(cell->nv, cell->K, cell->a, cell->b + (ptrdiff_t)q * cell->bs,
                                   acc + (q - blo) * w, A, A->seg0 + (long)q * A->per,
                                   A->seg0 + (long)(q + 1) * A->per);
            } else if (!cell->racc) {
                FN(phase_tile)(cell, 1, npg, cell->a, cell->b + (ptrdiff_t)p * cell->bs,
                               acc + (p - blo) * w, w * npg, NULL);
            }
            done += npg;
        }
        /* eager products: one row in the XP layout is the epilogue's layout */
        FN(epilogue)(cell, C, hnext, s, 0, 1, (int)blo, (int)bn,
                     cell->racc ? cell->racc + blo * w : acc);
        bdone += bn;
    }
}

/* The first row of row tile rt: nrt tiles of base or base + 1 rows (the first
   `extra`). */
static inline int FN(tile_row0)(int rt, int base, int extra)
{
    return rt * base + (rt < extra ? rt : extra);
}

/* The epilogue of rows [r0, r0 + mr) of panel p reads their rows of XP (and of c)
   right after the tile -- in these cells panel p's units are XP's columns of input
   panel p: ask for them now, so they arrive while the tile computes (XP of a chunk
   outgrows L2 at large batches: LSTM H=512 at batch 64 reads 512 KB of it a step,
   and its epilogue waited on L3 -- 14% of the time of the step's tiles, 6% with
   this; batch 64, 1 thread: LSTM and GRU H=512 2.5% faster a call, H=128 the
   same). */
static inline void FN(prefetch_epi)(const FN(phase) *ph, const FN(ctx) *C, int r0, int mr, int p)
{
    const ptrdiff_t w = (ptrdiff_t)ph->nv * VL;
    for (int r = 0; r < mr; r++) {
        const char *x = (const char *)(C->xp + (ptrdiff_t)(r0 + r) * ph->xw + (ptrdiff_t)p * w);
        for (ptrdiff_t o = 0; o < w * (ptrdiff_t)sizeof(FRN_T); o += 64)
            __builtin_prefetch(x + o, 0, 3);
        if (ph->epi == FRN_EPI_LSTM)
            __builtin_prefetch(C->c + (ptrdiff_t)(r0 + r) * C->p->ldh + (ptrdiff_t)p * VL, 1, 3);
    }
}

/* Row tiles [t0, t1) of panel p (at most FRN_EPI_MAX rows): every tile, then one
   cell epilogue over all their rows, so that the activation chains of all those rows
   are in flight together, as run_row does for the panels of one row. One epilogue
   per tile (up to 3-4 rows on AVX2) left them waiting on each other's latency:
   bitwise the same results, and on Zen 3 (AVX2), 3 x 150 alternated calls, 1
   thread, LSTM H=128 and 512 at batch 64 1.05-1.06x / 1.04-1.08x faster, GRU H=128
   and 512 1.06x / 1.04x, RNN H=256 1.06x, LSTM H=128 at batch 8 1.07x; 2 threads
   1.03-1.07x at batches 16-64; batches 1-3 level. */
/*
 * Next-panel prefetch (FRN_TILE_PF_NEXT; on Intel CPUs, frn_prefetch_next_pays): the
 * row tiles of panel p ask for the panel that runs next (pnext) into L2, each a
 * share of its lines, ceil(nv / nrt) lines a reduction step. Intel's L2 streamer
 * stops at each 4 KB page, so a panel of W_hh not in L2 (W_hh past L2, or a
 * thread's share of it) otherwise arrives as its first tile asks for it. Only
 * where a panel has 2 row tiles or more (at most 2 lines a step beside the tile's
 * own loads) and the panels are 1 MB or more in all. A Sapphire Rapids class Xeon,
 * both builds in one process, 5 alternated rounds, medians, T=20, us a step, two
 * orders: 1 thread, LSTM H=512 batch 16 569 -> 502 and 638 -> 507, batch 64 1981
 * -> 1891 and 1996 -> 1889, batch 8 359 -> 332, GRU H=512 batch 16 434 -> 408 and
 * 424 -> 386, LSTM H=1024 batch 16 2541 -> 2228; 2 threads, LSTM H=512 batch 16 284
 * -> 263, batch 8 161 -> 149, LSTM H=1024 batch 16 1245 -> 1114; GRU H=512 at batch
 * 64 and every case on 2 threads at batch 64 level. The check in the k loop of
 * every tile instead (a NULL pointer where none is asked for) made the tiles 5-15%
 * slower, so the tiles that ask are a variant of their own (kernels/tile.h).
 */
static void FN(run_panel_rows)(const FN(phase) *ph, const FN(ctx) *C, FRN_T *hnext, int s,
                               int p, int t0, int t1, int base, int extra, int nrt, int pnext)
{
    const ptrdiff_t w = (ptrdiff_t)ph->nv * VL;
    FRN_T acc[FRN_EPI_MAX * 4 * VL] __attribute__((aligned(64)));
    const int R0 = FN(tile_row0)(t0, base, extra), R1 = FN(tile_row0)(t1, base, extra);
    const FRN_T *b = ph->b + (ptrdiff_t)p * ph->bs;
#if FRN_TILE_PF_NEXT
    const long lines = (long)ph->bs * (long)sizeof(FRN_T) / 64; /* of a panel */
    const int pfn = (ph->nv + nrt - 1) / nrt;
#else
    (void)nrt;
    (void)pnext;
#endif
    for (int rt = t0; rt < t1; rt++) {
        const int r0 = FN(tile_row0)(rt, base, extra), mr = base + (rt < extra);
        const FRN_T *a = ph->a + (ptrdiff_t)r0 * ph->lda;
        FN(prefetch_epi)(ph, C, r0, mr, p);
#if FRN_TILE_PF_NEXT
        const long first = (long)rt * pfn * ph->K; /* this tile's share of pnext's lines */
        if (pnext >= 0 && mr > 1 && first < lines) {
            const char *pf = (const char *)(ph->b + (ptrdiff_t)pnext * ph->bs) + first * 64;
            FN(tile_pf)(ph->nv, mr, ph->K, a, ph->lda, b, acc + (r0 - R0) * w, w, pf, pfn);
            continue;
        }
#endif
        FN(phase_tile)(ph, mr, 1, a, b, acc + (r0 - R0) * w, w, NULL);
    }
    FN(epilogue)(ph, C, hnext, s, R0, R1 - R0, p, 1, acc);
}

static void FN(run_items)(const FN(phase) *ph, const FN(phase) *ph2, const FN(ctx) *C,
                          FRN_T *hnext, int s, long lo, long hi, int nrt, int chunk, int rev)
{
    if (ph->rows == 1 && (ph2 || ph->epi != FRN_EPI_XP)) {
        FN(run_row)(ph, ph2, C, hnext, s, lo, hi, chunk, rev);
        return;
    }
    /* nrt row tiles of base or base + 1 rows (the first `extra`) */
    const int base = ph->rows / nrt, extra = ph->rows % nrt;
    if (!ph2 && (ph->epi == FRN_EPI_LSTM || ph->epi == FRN_EPI_GRU || ph->epi == FRN_EPI_RNN)) {
        /* runs of one panel's row tiles, in the phase's order (backwards when rev) */
        const int maxt = FRN_EPI_MAX / (base + (extra > 0));
        const int pf_next = FRN_TILE_PF_NEXT && !ph->sub && (ph->nv == 3 || ph->nv == 4) &&
                            nrt >= 2 && 2 * nrt >= ph->nv &&
                            (double)ph->np * ph->bs * sizeof(FRN_T) >= 1024.0 * 1024 &&
                            frn_prefetch_next_pays();
        for (long done = 0; done < hi - lo;) {
            long a0, a1;
            if (rev) {
                a1 = hi - done;
                a0 = (a1 - 1) / nrt * nrt;
                if (a0 < lo) a0 = lo;
            } else {
                a0 = lo + done;
                a1 = (a0 / nrt + 1) * nrt;
                if (a1 > hi) a1 = hi;
            }
            const int p = (int)(a0 / nrt), t0 = (int)(a0 - (long)p * nrt), n = (int)(a1 - a0);
            const int parts = (n + maxt - 1) / maxt;
            const int pn = rev ? p - 1 : p + 1;
            for (int q = 0; q < parts; q++)
                FN(run_panel_rows)(ph, C, hnext, s, p, t0 + n * q / parts,
                                   t0 + n * (q + 1) / parts, base, extra, nrt,
                                   pf_next && pn >= 0 && pn < ph->np ? pn : -1);
            done += n;
        }
        return;
    }
    FRN_T acc[FRN_MR_MAX3 * 4 * VL * 4] __attribute__((aligned(64)));
    for (long done = 0; done < hi - lo;) {
        const long left = hi - lo - done;
        const int npg = ph->rows == 1 ? (left < chunk ? (int)left : chunk) : 1;
        const long i = rev ? hi - done - npg : lo + done;
        const int p = (int)(i / nrt), rt = (int)(i % nrt);
        const int r0 = FN(tile_row0)(rt, base, extra);
        const int mr = base + (rt < extra);
        FN(tile_epi)(ph, C, hnext, s, r0, mr, p, npg, acc);
        if (ph2 && ph2->racc) { /* eager products: the tile's rows, as a tile leaves them */
            const ptrdiff_t w = (ptrdiff_t)ph2->nv * VL;
            for (int r = 0; r < mr; r++)
                memcpy(acc + r * w, ph2->racc + (ptrdiff_t)(r0 + r) * ph2->xw + p * w,
                       sizeof(FRN_T) * (size_t)w);
            FN(epilogue)(ph2, C, hnext, s, r0, mr, p, 1, acc);
        } else if (ph2) { /* the same units and rows through a second phase (streams) */
            FN(tile_epi)(ph2, C, hnext, s, r0, mr, p, npg, acc);
        }
        done += npg;
    }
}

/* A team's progress through its phases (see sched.h); NULL for one thread. */
typedef struct {
    frn_sched *S;
    int tid;
    uint64_t k;    /* this thread's next phase number */
    uint64_t open; /* phases up to this one are known to be open (no need to look) */
} FN(team);

/* Run one phase: all of it on one thread, or this thread's part in a team. */
static void FN(run_phase2)(const FN(phase) *ph, const FN(phase) *ph2, const FN(ctx) *C,
                           FRN_T *hnext, int s, FN(team) *tm, int rev)
{
    int nrt;
    const long n = FN(phase_items)(ph, &nrt);
    if (!tm) {
        FN(run_items)(ph, ph2, C, hnext, s, 0, n, nrt, FN(phase_chunk)(ph, ph2, n, 1), rev);
        return;
    }
    const uint64_t k = tm->k++;
    const int chunk = FN(phase_chunk)(ph, ph2, n, tm->S->nt);
    long lo, hi;
    long done = 0;
    if (k > tm->open) frn_sched_wait(tm->S, k);
    while (frn_sched_claim(tm->S, k, tm->tid, n, chunk, rev, &lo, &hi)) {
        FN(run_items)(ph, ph2, C, hnext, s, lo, hi, nrt, chunk, rev);
        done += hi - lo;
    }
    /* counted once per thread and phase: a shared counter touched per item bounced
       between the cores and cost 15% of a batch-64, two-thread LSTM H=128 call */
    if (done) frn_sched_done(tm->S, k, done, n);
}

static void FN(run_phase)(const FN(phase) *ph, const FN(ctx) *C, FRN_T *hnext, int s, FN(team) *tm,
                          int rev)
{
    FN(run_phase2)(ph, NULL, C, hnext, s, tm, rev);
}

/* One phase on its own (no cell state): on nt threads, or inline for one. */
static void FN(run_team)(const FN(phase) *ph, int nt)
{
    if (nt <= 1) {
        FN(run_phase)(ph, NULL, NULL, 0, NULL, 0);
        return;
    }
    frn_sched sched;
    frn_sched_init(&sched, nt);
#pragma omp parallel num_threads(nt)
    {
        FN(team) tm = {&sched, omp_get_thread_num(), 0};
        FN(run_phase)(ph, NULL, NULL, 0, &tm, 0);
    }
}

/* A step's first phase, behind the input projection `fused` when given (a stream's
   projection over the same panels: one pass over W_ih and W_hh panel by panel). */
static void FN(run_first)(const FN(phase) *fused, const FN(phase) *ph, const FN(ctx) *C,
                          FRN_T *hnext, int s, FN(team) *tm, int rev)
{
    if (fused)
        FN(run_phase2)(fused, ph, C, hnext, s, tm, rev);
    else
        FN(run_phase)(ph, C, hnext, s, tm, rev);
}

/* The recurrent product h W_hh^T of `rows` rows of h (row stride ldh) as a phase;
   the caller sets what receives its tiles. */
static FN(phase) FN(recur_phase)(const frn_plan *P, const frn_dir_w *w, const FRN_T *h, int rows)
{
    FN(phase) ph = {0};
    ph.rows = rows;
    ph.a = h;
    ph.lda = P->ldh;
    ph.K = P->h_out;
    ph.b = (const FRN_T *)w->whh;
    ph.nv = P->nv_h;
    ph.sub = P->sub_h;
    ph.np = P->np_h;
    ph.bs = (ptrdiff_t)P->h_out * P->nv_h * VL;
    return ph;
}

/*
 * One recurrent step s over the first `rows` sorted rows: C->h[cur] is read,
 * C->h[cur ^ 1] written. Called by every thread of the team.
 */
static void FN(step)(const FN(ctx) *C, int s, int rows, int cur, FN(team) *tm, int rev,
                     const FN(phase) *fused, const FRN_T *racc, const FN(ahead) *ahead)
{
    const frn_plan *P = C->p;
    const frn_dir_w *w = C->w;
    const int H = P->d.hidden_size;
    FRN_T *hnext = C->h[cur ^ 1];
    FN(phase) ph = FN(recur_phase)(P, w, C->h[cur], rows);
    ph.racc = racc;
    ph.ahead = ahead;
    ph.xw = P->xw;
    switch (P->d.cell) {
    case FRN_LSTM:
        ph.epi = FRN_EPI_LSTM;
        FN(run_first)(fused, &ph, C, hnext, s, tm, rev);
        if (P->d.proj_size > 0) {
            FN(phase) pr = {0};
            pr.epi = FRN_EPI_PROJ;
            pr.rows = rows;
            pr.a = C->m;
            pr.lda = P->ldh;
            pr.K = H;
            pr.b = (const FRN_T *)w->whr;
            pr.nv = 4;
            pr.np = P->np_p;
            pr.bs = (ptrdiff_t)H * 4 * VL;
            FN(run_phase)(&pr, C, hnext, s, tm, rev);
        }
        break;
    case FRN_GRU:
        if (P->d.linear_before_reset) {
            ph.epi = FRN_EPI_GRU;
            FN(run_first)(fused, &ph, C, hnext, s, tm, rev);
        } else {
            ph.epi = FRN_EPI_GRU_RZ;
            FN(run_first)(fused, &ph, C, hnext, s, tm, rev);
            FN(phase) pn = {0};
            pn.epi = FRN_EPI_GRU_N;
            pn.rows = rows;
            pn.a = C->m;
            pn.lda = P->ldh;
            pn.K = H;
            pn.b = (const FRN_T *)w->whn;
            pn.nv = 4;
            pn.np = P->np_n;
            pn.bs = (ptrdiff_t)H * 4 * VL;
            FN(run_phase)(&pn, C, hnext, s, tm, rev);
        }
        break;
    default:
        ph.epi = FRN_EPI_RNN;
        FN(run_first)(fused, &ph, C, hnext, s, tm, rev);
        break;
    }
}

/* The input projection of `rows` rows of a (row stride lda) into C->xp. */
static FN(phase) FN(project_phase)(const FN(ctx) *C, const FRN_T *a, ptrdiff_t lda, int rows)
{
    const frn_plan *P = C->p;
    FN(phase) ph = {0};
    ph.epi = FRN_EPI_XP;
    ph.rows = rows;
    ph.a = a;
    ph.lda = lda;
    ph.K = C->w->k_in;
    ph.b = (const FRN_T *)C->w->wih;
    ph.nv = P->nv_x;
    ph.np = P->np_x;
    ph.bs = (ptrdiff_t)C->w->k_in * P->nv_x * VL;
    ph.xp = C->xp;
    ph.bias = (const FRN_T *)C->w->bias_x;
    ph.xw = P->xw;
    return ph;
}

/* Streams step on their own helper threads below this many multiply-adds a step
   (LSTM H=256 at batch 1 is 0.5 M), in an OpenMP region from it on (stream_step). */
#ifndef FRN_STREAM_OMP_FMA
#define FRN_STREAM_OMP_FMA (1024.0 * 1024.0)
#endif

/*
 * Batch-1 calls weave the input projection into the recurrent tiles (run_dir_ahead)
 * when W_hh is between these sizes (never on AVX2: isa/step_avx2.c). Measured
 * against the plain path, 1 thread, T=100, I=H (1-thread AVX-512, 2-core Zen 4 VM,
 * medians of 5 alternated runs): LSTM H=64..512 4-10% faster per step (H=512, 4 MB: 67.1 ->
 * 60.2 us), GRU H=128/512 5% and 4%; past ~6 MB (W_hh streamed from L3: LSTM
 * H=768 and 896, GRU H=896) 3-8% slower, as the woven loop keeps fewer of
 * W_hh's loads in flight. With row pairs (kernels/tile.h) it also pays from
 * 32 KB: GRU H=64 (48 KB) 7% and LSTM H=48 (36 KB) 3% faster than the plain
 * tiles; GRU H=48 (27 KB) the same, GRU H=32 16% slower.
 * On 2 threads each weaves the segments of the panels it runs, against projecting
 * first on both (medians of 3-5 alternated runs): LSTM H=128 3.96 -> 2.30 us a
 * step, LSTM H=256 10.2 -> 9.0, LSTM H=512 35.4 -> 33.1, GRU H=256 7.97 -> 5.68,
 * GRU H=512 26.4 -> 23.2, GRU H=640 (4.7 MB) 40.7 -> 35.2; past 6 MB 14-17% slower
 * (LSTM H=768, GRU and LSTM H=1024), GRU H=896 the same: the same cutoff.
 * On an Intel Xeon (Sapphire Rapids class: two 512-bit FMA units, 48 KB L1d, 2 MB
 * L2) the woven loop was slower at every size (medians of 5 alternated runs, T=100,
 * I=H, us a step, woven against projecting first): 1 thread LSTM H=64 0.95 / 0.91,
 * H=256 16.3 / 13.8, H=512 124 / 115, GRU H=64 0.72 / 0.62, H=256 11.2 / 10.5, H=512
 * 104 / 86.7; 2 threads LSTM H=256 9.86 / 8.38, H=512 60.8 / 40.3, GRU H=256 7.23 /
 * 6.48, H=512 33.5 / 25.5. Its projection FMAs need a load of W_ih each (two rows
 * share it) where the plain GEMM tile shares one across 6, and with W_hh's stream
 * they take both load ports. So only AMD CPUs weave (frn_weave_pays, dispatch.c).
 */
#ifndef FRN_AHEAD_MIN_WHH
#define FRN_AHEAD_MIN_WHH (32.0 * 1024)
#endif
#ifndef FRN_AHEAD_MAX_WHH
#define FRN_AHEAD_MAX_WHH (6.0 * 1024 * 1024)
#endif
/* Steps per chunk (at least the k blocks of the input): the rows that reuse one
   block of W_ih while it is in L1; the first chunk's projection is not hidden. */
#ifndef FRN_AHEAD_ROWS
#define FRN_AHEAD_ROWS 16
#endif
/* Inputs of at most this many k blocks (2048 features): a chunk has at least as
   many steps as the input has k blocks, so its gathered inputs grow with the
   square of the input size (2^19 features asked for 32 GB); wider inputs project
   the usual way. */
#ifndef FRN_AHEAD_MAX_KB
#define FRN_AHEAD_MAX_KB 64
#endif

/* ---- whole sequences ---------------------------------------------------- */

typedef struct {
    const frn_plan *p;
    const frn_seq *q;
    int *perm, *nact;
    ptrdiff_t *row0;    /* T + 1: the first row of step s in iteration order (T * B
                           may pass 2^31) */
    int t_live;         /* steps with a live sequence: the longest length */
    int chunk_rows;     /* rows of a chunk projected first (run_dir) */
    int ahead_rows;     /* steps of a chunk woven ahead (run_dir_ahead), or 0 */
    int rows;           /* sorted rows of this group (from perm on) */
    int ahead[2];       /* one row: the first layer / the later ones weave the
                           projection ahead (run_dir_ahead) */
    int proj_nt;        /* threads to project a chunk on when the layer steps on one
                           (project_chunk), or 1 */
    size_t state, a_bytes, xp_bytes, per_dir; /* group_plan */
    FRN_T *a;           /* chunk_rows x lda_a */
    ptrdiff_t lda_a;
    FRN_T *buf[2];      /* inner layers' outputs, T x B x D*h_out */
    FRN_T *xp, *h0, *h1, *c, *m, *z;
} FN(fwd);


/*
 * Gather the input rows of steps [s0, s1) (iteration order) into contiguous rows
 * and project them into xp; an item of the gather is one step's rows. Without a
 * team, the projection alone may go to F->proj_nt threads (spread): a layer whose
 * recurrent step is too small to hand over each step (it runs on one thread) may
 * still have a large projection, from a wide input. 2 threads, batch 1, T=100,
 * medians of 6 alternated runs, us a step: LSTM I=512 H=32 1.40 -> 1.05, GRU I=512
 * H=64 2.29 -> 1.65, GRU I=512 H=32 1.07 -> 0.86, GRU I=256 H=64 1.40 -> 1.10, GRU
 * I=128 H=32 0.40 -> 0.36 (Zen 3, the cores close; further apart it takes a larger
 * projection: dispatch.h, frn_spread_pays).
 */
static void FN(project_chunk)(const FN(fwd) *F, const FN(ctx) *C0, const FRN_T *src,
                              ptrdiff_t st, ptrdiff_t sb, int K, int s0, int s1, FRN_T *xp,
                              FN(team) *tm, int spread)
{
    const int rows = (int)(F->row0[s1] - F->row0[s0]);
    const long n = s1 - s0;
    long lo = 0, hi = n;
    uint64_t k = 0;
    if (tm) {
        k = tm->k++;
        frn_sched_wait(tm->S, k);
    }
    long done = 0;
    while (tm ? frn_sched_claim(tm->S, k, tm->tid, n, 1, 0, &lo, &hi) : lo < hi) {
        for (long i = lo; i < hi; i++) {
            const int s = s0 + (int)i;
            int row = (int)(F->row0[s] - F->row0[s0]);
            for (int bp = 0; bp < F->nact[s]; bp++, row++) {
                frn_rowpos rp = FN(rowpos)(C0, bp, s);
                memcpy(F->a + (ptrdiff_t)row * F->lda_a, src + rp.t * st + rp.b * sb,
                       (size_t)K * sizeof(FRN_T));
            }
        }
        if (!tm) break;
        done += hi - lo;
    }
    if (done) frn_sched_done(tm->S, k, done, n);
    FN(ctx) Cx = *C0;
    Cx.xp = xp;
    const FN(phase) ph = FN(project_phase)(&Cx, F->a, F->lda_a, rows);
    const double fma = (double)rows * K * ph.np * ph.nv * VL; /* xw may be padded */
    if (!tm && spread && F->proj_nt > 1 && frn_spread_pays(fma))
        FN(run_team)(&ph, F->proj_nt);
    else
        FN(run_phase)(&ph, &Cx, NULL, 0, tm, 0);
}

/* One (layer, direction) over the whole sequence; every thread of the team runs
   this, the phases keep them in step. */
static void FN(run_dir)(const FN(fwd) *F, const FN(ctx) *C0, const FRN_T *src, ptrdiff_t st,
                        ptrdiff_t sb, int K, FN(team) *tm)
{
    const frn_plan *P = F->p;
    int cur = 0;
    for (int s0 = 0; s0 < F->t_live;) {
        int s1 = s0, rows = 0;
        while (s1 < F->t_live && (s1 == s0 || rows + F->nact[s1] <= F->chunk_rows))
            rows += F->nact[s1++];
        FN(project_chunk)(F, C0, src, st, sb, K, s0, s1, C0->xp, tm, 1);
        ptrdiff_t xoff = 0;
        for (int s = s0; s < s1; s++) {
            FN(ctx) Cs = *C0;
            Cs.xp = C0->xp + xoff;
            FN(step)(&Cs, s, F->nact[s], cur, tm, s & 1, NULL, NULL, NULL);
            xoff += (ptrdiff_t)F->nact[s] * P->xw;
            cur ^= 1;
        }
        s0 = s1;
    }
    if (tm) frn_sched_wait(tm->S, tm->k); /* the last phase is complete */
}

/*
 * Batch 1 with the projection ahead (kernels/tile.h): chunks of R = ahead_rows
 * steps; the first chunk is projected as usual, and every chunk's steps weave the
 * NEXT chunk's projection into their recurrent tiles, a step's panel q taking
 * segments [(j*np + q)*per, +per) at its j-th step in the chunk, per = the
 * segments of a full chunk per step and panel. A next chunk of fewer than per row
 * pairs (the end of the sequence) is projected as usual instead, as its segments
 * could then meet within one step.
 */
static void FN(run_dir_ahead)(const FN(fwd) *F, const FN(ctx) *C0, const FRN_T *src,
                              ptrdiff_t st, ptrdiff_t sb, int K, FN(team) *tm)
{
    const frn_plan *P = F->p;
    const int R = F->ahead_rows, n = F->t_live;
    const int nkb = (K + FRN_AHEAD_KB - 1) / FRN_AHEAD_KB;
    const int per = (FN(ahead_pairs)(R) * nkb + R - 1) / R;
    FRN_T *xpb[2] = {C0->xp, C0->xp + (ptrdiff_t)R * P->xw};
    int cur = 0;
    FN(project_chunk)(F, C0, src, st, sb, K, 0, n < R ? n : R, xpb[0], tm, 0);
    for (int s0 = 0, c = 0; s0 < n; s0 += R, c++) {
        const int s1 = s0 + R < n ? s0 + R : n;
        const int rows = (s1 + R < n ? s1 + R : n) - s1; /* of the next chunk */
        FN(ahead) A = {0};
        A.np = P->np_x;
        A.nkb = nkb;
        A.kx = K;
        A.rows = rows;
        A.ng = FN(ahead_pairs)(rows);
        A.per = per;
        A.b = (const FRN_T *)C0->w->wih;
        A.bs = (ptrdiff_t)K * P->nv_x * VL;
        A.bias = (const FRN_T *)C0->w->bias_x;
        A.xp = xpb[(c + 1) & 1];
        A.xw = P->xw;
        if (rows > 0) {
            /* row r is step s1 + r of the one sequence (batch index b) this group
               runs: time t or, in reverse, len - 1 - t */
            const frn_rowpos rp = FN(rowpos)(C0, 0, s1);
            A.x0 = src + rp.t * st + rp.b * sb;
            A.xst = C0->dir ? -st : st;
        }
        const int fuse = A.ng >= per;
        for (int s = s0; s < s1; s++) {
            FN(ctx) Cs = *C0;
            Cs.xp = xpb[c & 1] + (ptrdiff_t)(s - s0) * P->xw;
            A.seg0 = (long)(s - s0) * P->np_x * per;
            FN(step)(&Cs, s, 1, cur, tm, s & 1, NULL, NULL, fuse ? &A : NULL);
            cur ^= 1;
        }
        if (rows > 0 && !fuse) FN(project_chunk)(F, C0, src, st, sb, K, s1, s1 + rows,
                                                 xpb[(c + 1) & 1], tm, 0);
    }
    if (tm) frn_sched_wait(tm->S, tm->k); /* the last phase is complete */
}

/* Bytes of a direction's packed W_hh (for GRU with lbr=False, its r and z part). */
static double FN(whh_bytes)(const frn_plan *P)
{
    return (double)P->np_h * P->nv_h * VL * P->h_out * sizeof(FRN_T);
}

/*
 * Whether a batch-1 layer whose input has K features weaves its projection into
 * the recurrent tiles on nt threads: the input and recurrent panels cover the same
 * units (all cells but GRU with lbr=False), W_hh is in the range where that pays
 * (FRN_AHEAD_MIN_WHH above), and the projection is neither small nor, on one
 * thread, large against the recurrent product. Each gains only while there is
 * about as much of one as of the other to overlap. 1 thread, T=100, 6 alternated
 * runs, us a step woven against projecting first: LSTM I=H=256 13.9 against 15.1,
 * I=H=128 3.31 against 3.81; but with a small input (K <= HO / 2) 1-7% slower
 * (LSTM I=64 H=256 12.2 against 11.7, GRU 9.13 against 8.53, LSTM I=32 H=256 11.6
 * against 11.2), on 2 threads 5-23% (LSTM I=64 H=128 3.27 against 2.65); and on one
 * thread with a wide input (K >= 4 HO) 8-13% slower (LSTM I=512 H=64 3.48 against
 * 3.08, I=1024 6.11 against 5.39, I=512 H=128 7.85 against 7.27, GRU I=512 H=64
 * 2.48 against 2.27), where 2 threads weaving gain (LSTM I=512 H=128 6.07 against
 * 7.19). At K = 3 HO both the same.
 */
static int FN(weaves)(const FN(fwd) *F, int K, int nt)
{
    const frn_plan *P = F->p;
    const double whh = FN(whh_bytes)(P);
    const int HO = P->h_out;
    const int nkb = (K + FRN_AHEAD_KB - 1) / FRN_AHEAD_KB;
    /* the woven kernel reads plain panels (split only on AVX2, which does not weave) */
    return F->rows == 1 && F->q->T > 1 && nkb <= FRN_AHEAD_MAX_KB && frn_weave_pays() &&
           P->np_x == P->np_h &&
           P->nv_x == P->nv_h && !P->sub_h && whh >= FRN_AHEAD_MIN_WHH &&
           whh <= FRN_AHEAD_MAX_WHH &&
           2 * K > HO && (nt > 1 || K < 3 * HO);
}

/*
 * The two directions of a bidirectional layer side by side, each on half of the
 * threads, while W_hh is at most this size; bigger, both directions' weights
 * streamed at once outgrow the cache they share, and the directions run one after
 * the other on all threads. Medians of 3 alternated runs on 2 threads, T=100, I=H,
 * one layer unless stated, against one direction after the other: batch 1, LSTM
 * H=128 4.40 -> 3.34 us a step, GRU H=64 1.36 -> 0.74, GRU H=256 11.1 -> 10.5, LSTM
 * H=512 (4 MB) 66.8 -> 62.3, 2 layers of LSTM H=256 36.0 -> 34.5; batch 64, LSTM
 * H=128 238 -> 176; but GRU H=768 (6.75 MB) 5% slower, LSTM H=768 13% and GRU
 * H=1024 25% at batch 1, LSTM H=1024 19% at batch 4 and 6% at batch 16.
 */
#ifndef FRN_APART_MAX_WHH
#define FRN_APART_MAX_WHH (6.0 * 1024 * 1024)
#endif

/* A (layer, direction)'s initial state in C's buffers (`state` bytes each), for
   the `rows` sorted rows from C->perm on: zeros, or the caller's h0 / c0. */
static void FN(init_state)(const frn_plan *P, const frn_seq *q, const FN(ctx) *C, int rows,
                           int ld, size_t state)
{
    const int B = q->B, HO = P->h_out, H = P->d.hidden_size;
    const size_t es = sizeof(FRN_T);
    memset(C->h[0], 0, state);
    memset(C->h[1], 0, state);
    memset(C->c, 0, state);
    for (int bp = 0; bp < rows; bp++) {
        const int b = C->perm[bp];
        if (q->h0)
            memcpy(C->h[0] + (ptrdiff_t)bp * P->ldh,
                   (const FRN_T *)q->h0 + ((ptrdiff_t)ld * B + b) * HO, HO * es);
        if (P->d.cell == FRN_LSTM && q->c0)
            memcpy(C->c + (ptrdiff_t)bp * P->ldh,
                   (const FRN_T *)q->c0 + ((ptrdiff_t)ld * B + b) * H, H * es);
    }
}

#define FRN_ALIGN64(n) (((size_t)(n) + 63) & ~(size_t)63)

/* A group of F->rows sorted rows (the whole batch, or one thread's part of it,
   below) on nt threads: its chunks, which layers weave the projection ahead (one
   row), and the bytes its buffers take per direction run at once -- a scheduler,
   gathered inputs, projections and five states. */
static void FN(group_plan)(FN(fwd) *F, int nt)
{
    const frn_plan *P = F->p;
    const int T = F->q->T, D = P->d.num_dirs, HO = P->h_out, rows = F->rows;
    const size_t es = sizeof(FRN_T);
    /* chunks: about 1M values of XP and 256k of gathered inputs, at least a step */
    const int kmax = P->d.input_size > D * HO ? P->d.input_size : D * HO;
    F->lda_a = ((ptrdiff_t)kmax + 15) & ~(ptrdiff_t)15;
    /* Rows per chunk: few enough that the chunk's projections (read back by the
       steps) stay in L2 -- 256k values -- but at least 256, so that reading W_ih
       once per chunk stays small against the chunk's arithmetic (about 10/rows of
       it here: L3 at ~30 GB/s against ~150 GFLOP/s). */
    long cap = (1L << 18) / P->xw;
    if (cap < 256) cap = 256;
    long cap_a = (1L << 18) / F->lda_a;
    if (cap_a < cap) cap = cap_a;
    if (cap < rows) cap = rows;
    if (cap > (long)T * rows) cap = (long)T * rows;
    F->chunk_rows = (int)cap;
    /* One row: chunks of FRN_AHEAD_ROWS steps (at least nkb of the widest input
       woven), each projected while the previous one steps (run_dir_ahead). */
    const int L = P->d.num_layers;
    F->ahead[0] = FN(weaves)(F, P->d.input_size, nt);
    F->ahead[1] = L > 1 && FN(weaves)(F, D * HO, nt);
    const int plain = !F->ahead[0] || (L > 1 && !F->ahead[1]);
    int kw = F->ahead[0] ? P->d.input_size : 0; /* the widest input woven */
    if (F->ahead[1] && D * HO > kw) kw = D * HO;
    const int nkb = (kw + FRN_AHEAD_KB - 1) / FRN_AHEAD_KB;
    F->ahead_rows = kw ? (nkb > FRN_AHEAD_ROWS ? nkb : FRN_AHEAD_ROWS) : 0;
    /* gathered inputs and XP rows: a chunk projected first (plain layers), one woven
       chunk gathered and two in XP (run_dir_ahead) */
    const int pr = plain ? F->chunk_rows : 0;
    const int a_rows = pr > F->ahead_rows ? pr : F->ahead_rows;
    const int xp_rows = pr > 2 * F->ahead_rows ? pr : 2 * F->ahead_rows;
    F->state = FRN_ALIGN64((size_t)rows * P->ldh * es);
    F->a_bytes = FRN_ALIGN64((size_t)a_rows * F->lda_a * es);
    F->xp_bytes = FRN_ALIGN64((size_t)xp_rows * P->xw * es);
    F->per_dir = FRN_ALIGN64(sizeof(frn_sched)) + F->a_bytes + F->xp_bytes + 5 * F->state;
}

/* A group's buffers for nws directions at once, from ws on: Fd[i] is *F with
   direction i's buffers, sched[i] its scheduler. */
static void FN(group_place)(const FN(fwd) *F, char *ws, int nws, FN(fwd) Fd[2],
                            frn_sched *sched[2])
{
    const size_t sched_bytes = FRN_ALIGN64(sizeof(frn_sched));
    for (int i = 0; i < nws; i++, ws += F->per_dir) {
        Fd[i] = *F;
        sched[i] = (frn_sched *)ws;
        Fd[i].a = (FRN_T *)(ws + sched_bytes);
        Fd[i].xp = (FRN_T *)(ws + sched_bytes + F->a_bytes);
        char *st0 = ws + sched_bytes + F->a_bytes + F->xp_bytes;
        Fd[i].h0 = (FRN_T *)st0;
        Fd[i].h1 = (FRN_T *)(st0 + F->state);
        Fd[i].c = (FRN_T *)(st0 + 2 * F->state);
        Fd[i].m = (FRN_T *)(st0 + 3 * F->state);
        Fd[i].z = (FRN_T *)(st0 + 4 * F->state);
    }
}

/* Every layer over a group's rows, on a team of nt threads (per direction when
   apart: the two directions side by side, each on nt threads). Inputs, outputs and
   h_n / c_n are addressed by batch index (perm), so groups write disjoint rows of
   the same arrays -- the inner layers' outputs (F->buf) included. */
static void FN(run_group)(const FN(fwd) *F, const FN(fwd) Fd[2], frn_sched *sched[2], int nt,
                          int apart)
{
    const frn_plan *P = F->p;
    const frn_seq *q = F->q;
    const int T = q->T, B = q->B, L = P->d.num_layers, D = P->d.num_dirs;
    const int H = P->d.hidden_size, HO = P->h_out;
    const int lstm = P->d.cell == FRN_LSTM;
    for (int l = 0; l < L; l++) {
        void (*run)(const FN(fwd) *, const FN(ctx) *, const FRN_T *, ptrdiff_t, ptrdiff_t, int,
                    FN(team) *) = F->ahead[l > 0] ? FN(run_dir_ahead) : FN(run_dir);
        const FRN_T *src;
        ptrdiff_t st, sb;
        int K;
        if (l == 0) {
            src = (const FRN_T *)q->x;
            st = q->x_st;
            sb = q->x_sb;
            K = P->d.input_size;
        } else {
            src = F->buf[(l - 1) & 1];
            st = (ptrdiff_t)B * D * HO;
            sb = (ptrdiff_t)D * HO;
            K = D * HO;
        }
        FRN_T *dst;
        ptrdiff_t dt, db;
        if (l == L - 1) {
            dst = (FRN_T *)q->out;
            dt = q->out_st;
            db = q->out_sb;
        } else {
            dst = F->buf[l & 1];
            dt = (ptrdiff_t)B * D * HO;
            db = (ptrdiff_t)D * HO;
        }
        FN(ctx) C[2];
        for (int d = 0; d < D; d++) {
            const int ld = l * D + d;
            const FN(fwd) *Fi = &Fd[apart ? d : 0];
            C[d] = (FN(ctx)){0};
            C[d].p = P;
            C[d].w = &P->w[ld];
            C[d].T = T;
            C[d].dir = d;
            C[d].perm = F->perm;
            C[d].len = q->lengths;
            C[d].out = dst + d * HO;
            C[d].out_st = dt;
            C[d].out_sb = db;
            C[d].hn = (FRN_T *)q->hn + (ptrdiff_t)ld * B * HO;
            C[d].cn = lstm ? (FRN_T *)q->cn + (ptrdiff_t)ld * B * H : NULL;
            C[d].h[0] = Fi->h0;
            C[d].h[1] = Fi->h1;
            C[d].c = Fi->c;
            C[d].m = Fi->m;
            C[d].z = Fi->z;
            C[d].xp = Fi->xp;
        }
        if (apart) {
            for (int i = 0; i < 2; i++) {
                FN(init_state)(P, q, &C[i], F->rows, l * D + i, F->state);
                frn_sched_init(sched[i], nt);
            }
#pragma omp parallel num_threads(2 * nt)
            {
                /* threads [0, nt) run direction 0, [nt, 2 nt) direction 1; given
                   fewer threads, thread 0 runs both on its own */
                const int tid = omp_get_thread_num();
                if (omp_get_num_threads() == 2 * nt) {
                    const int i = tid / nt;
                    FN(team) tm = {sched[i], tid % nt, 0};
                    run(&Fd[i], &C[i], src, st, sb, K, nt > 1 ? &tm : NULL);
                } else if (tid == 0) {
                    for (int i = 0; i < 2; i++) run(&Fd[i], &C[i], src, st, sb, K, NULL);
                }
            }
            continue;
        }
        for (int d = 0; d < D; d++) {
            FN(init_state)(P, q, &C[d], F->rows, l * D + d, F->state);
            if (nt > 1) {
                frn_sched_init(sched[0], nt);
#pragma omp parallel num_threads(nt)
                {
                    FN(team) tm = {sched[0], omp_get_thread_num(), 0};
                    run(&Fd[0], &C[d], src, st, sb, K, &tm);
                }
            } else {
                run(&Fd[0], &C[d], src, st, sb, K, NULL);
            }
        }
    }
}

/*
 * Batches split in groups of rows, one group per thread, each run through every
 * layer and step by its thread alone: no hand-over until the call ends, where
 * splitting the hidden units hands every step over, with its h (half of it written
 * on the other core). But each thread then reads all of W_hh every step, not its
 * half. Medians over rounds of 2 threads, unit split against row groups
 * (T=100, I=H), tagged by where the host had put the two cores (a line's round trip
 * ~100 ns close, ~300 ns far; dispatch.h):
 *   W_hh up to 512 KB -- batch 64: LSTM H=128 1.00x close, 1.25x far (12.0 -> 9.6
 *   ms a call), GRU H=128 1.03x / 1.34x; batch 16: LSTM H=64 1.09x / 1.75x, GRU
 *   H=128 1.12x / 1.52x; batch 8: LSTM H=64 1.30x / 2.19x, GRU H=128 1.09x /
 *   1.57x; batch 4: LSTM H=64 1.18x / 1.55x, LSTM H=128 0.97x / 1.42x, GRU H=128
 *   0.98x / 1.45x; batch 2: 1.04-1.30x / 1.33-1.50x. So from 2 rows on.
 *   W_hh past L2 with room (LSTM H=256: 1 MB) -- batch 64: LSTM H=256 1.00x /
 *   1.10x, GRU H=256 1.00x / 1.14x, GRU H=384 0.99x / 1.07x; but batch 16, LSTM
 *   H=256 0.93x / 1.03x (W_hh from L3 for 8 rows a thread, against half of it in
 *   L2 for 16). So from FRN_SPLIT_ROWS rows a group, up to FRN_SPLIT_MAX_WHH.
 *   Larger: GRU H=512 (3 MB) 1.00x / 1.03x, LSTM H=512 0.99x / 1.00x at batch 64:
 *   the units are split.
 * But with few rows that do not share out evenly, the group of most rows takes as
 * long as that many rows on one thread: batch 3 on 2 threads is a group of 2 rows
 * (and small tiles: 2 rows of LSTM H=128 run at 86% of the rate of 4). While the
 * cores are close, the units are split there instead, when the largest group is
 * 1.2 times its share or more (frn_split_uneven): 2 threads, close, medians of 5
 * alternated runs, us a step, groups against units: batch 3 LSTM H=128 6.12 /
 * 5.36, GRU H=128 4.70 / 3.97; batch 5 LSTM H=128 9.05 / 7.40, GRU H=128 6.88 /
 * 5.61, LSTM H=64 2.49 / 2.34; but batch 7 (1.14 times) LSTM H=128 10.51 / 10.76,
 * batch 3 LSTM H=64 and GRU H=64 the same. Far apart, the groups stay.
 */
#ifndef FRN_SPLIT_SMALL_WHH
#define FRN_SPLIT_SMALL_WHH (512.0 * 1024)
#endif
#ifndef FRN_SPLIT_MAX_WHH
#define FRN_SPLIT_MAX_WHH (2.0 * 1024 * 1024)
#endif
#ifndef FRN_SPLIT_ROWS
#define FRN_SPLIT_ROWS 32
#endif

/* The steps of sorted row r */
static inline double FN(row_len)(const FN(fwd) *F, int r)
{
    return F->q->lengths ? (double)F->q->lengths[F->perm[r]] : (double)F->q->T;
}

/* Groups of a batch split of B rows on n_threads threads, 1 for none (the units are
   split, or the bidirectional layer's directions run apart). */
static int FN(split_groups)(const frn_plan *P, int B, int n_threads, int apart, double call_fma)
{
    if (apart || n_threads < 2 || B < 2) return 1;
    const int mode = frn_batch_split_mode();
    if (mode == 0) return 1;
    if (mode == 1) return B < n_threads ? B : n_threads; /* tests: any split at all */
    const double whh = FN(whh_bytes)(P);
    const int rows = whh <= FRN_SPLIT_SMALL_WHH ? 1 : FRN_SPLIT_ROWS;
    if (whh > FRN_SPLIT_MAX_WHH || B < 2 * rows || call_fma < FRN_CALL_FMA) return 1;
    const int groups = B / rows < n_threads ? B / rows : n_threads;
    return frn_split_uneven(B, groups) ? 1 : groups;
}

static int FN(forward)(const frn_plan *P, const frn_seq *q, int n_threads)
{
    const int T = q->T, B = q->B, L = P->d.num_layers, D = P->d.num_dirs;
    const int H = P->d.hidden_size, HO = P->h_out;
    int status = FRN_OK;
    FN(fwd) F = {0};
    FN(fwd) *G = NULL;
    char *garr = NULL;
    F.p = P;
    F.q = q;

    /* sort sequences by length, longest first (stable), and count the live rows */
    F.perm = malloc(sizeof(int) * (size_t)B);
    /* row0 (T + 1) then nact (T), for the batch and for each group below */
    const size_t counts =
        FRN_ALIGN64(sizeof(ptrdiff_t) * ((size_t)T + 1) + sizeof(int) * (size_t)T);
    F.row0 = malloc(counts);
    if (!F.perm || !F.row0) goto nomem;
    F.nact = (int *)(F.row0 + T + 1);
    F.t_live = T;
    if (q->lengths) {
        int *count = calloc((size_t)T + 1, sizeof(int));
        if (!count) goto nomem;
        for (int b = 0; b < B; b++) count[q->lengths[b]]++;
        int pos = 0;
        for (int n = T; n >= 1; n--) {
            int k = count[n];
            count[n] = pos;
            pos += k;
        }
        for (int b = 0; b < B; b++) F.perm[count[q->lengths[b]]++] = b;
        free(count);
        for (int s = 0, bp = B; s < T; s++) {
            while (bp > 0 && q->lengths[F.perm[bp - 1]] <= s) bp--;
            F.nact[s] = bp;
        }
        F.t_live = (int)q->lengths[F.perm[0]];
    } else {
        for (int b = 0; b < B; b++) F.perm[b] = b;
        for (int s = 0; s < T; s++) F.nact[s] = B;
    }
    F.row0[0] = 0;
    for (int s = 0; s < T; s++) F.row0[s + 1] = F.row0[s] + F.nact[s];
    F.rows = B;

    /* threads: by the multiply-adds of a recurrent step. The two directions of a
       bidirectional layer are independent: on 2 threads or more they run side by
       side (apart), each on its own half of the threads, with no hand-over
       between the halves until the layer ends -- not one after the other on all
       of them, handing work over every step (up to FRN_APART_MAX_WHH). Not for
       calls too small to pay for the OpenMP region: under FRN_STEP_FMA recurrent
       multiply-adds a direction (2 threads, batch 1, medians of 3-5 alternated
       runs: GRU H=16, T=5 (4k) 3.5 -> 3.7-5.8 us a call, GRU H=64, T=1 (12k)
       4.4 -> 4.4-6.2; but GRU H=32, T=6 (18k) 5.0 -> 4.7, GRU H=16, T=24 8.2 ->
       6.3, LSTM H=64, T=4 10.4 -> 7.7). */
    const double step_fma =
        (double)B * HO * P->G * H + (P->d.proj_size ? (double)B * H * HO : 0);
    const double call_fma = (double)T * step_fma; /* a direction's */
    const int apart = D == 2 && n_threads > 1 && FN(whh_bytes)(P) <= FRN_APART_MAX_WHH &&
                      call_fma >= FRN_STEP_FMA;
    const int groups = FN(split_groups)(P, B, n_threads, apart, call_fma);

    /* workspace: the inner layers' outputs, then the groups' buffers */
    const size_t inner = L > 1 ? FRN_ALIGN64((size_t)T * B * D * HO * sizeof(FRN_T)) : 0;
    const size_t inner_all = (L > 2 ? 2 : 1) * inner;
    if (groups == 1) {
        const int nt =
            frn_useful_threads(step_fma, call_fma, apart ? n_threads / 2 : n_threads, 1);
        /* one thread stepping: its projections may still go to all (project_chunk) */
        F.proj_nt = !apart && nt == 1 ? n_threads : 1;
        FN(group_plan)(&F, nt);
        const int nws = apart ? 2 : 1;
        char *ws = frn_workspace(inner_all + (size_t)nws * F.per_dir);
        if (!ws) goto nomem;
        if (L > 1) F.buf[0] = (FRN_T *)ws;
        if (L > 2) F.buf[1] = (FRN_T *)(ws + inner);
        FN(fwd) Fd[2];
        frn_sched *sched[2];
        FN(group_place)(&F, ws + inner_all, nws, Fd, sched);
        FN(run_group)(&F, Fd, sched, nt, apart);
        goto done;
    }

    /* a batch split: group i takes sorted rows [r_i, r_i+1), about a 1/groups share
       of the row-steps each (all rows when the lengths are equal) */
    G = malloc(sizeof(FN(fwd)) * (size_t)groups);
    garr = malloc(counts * (size_t)groups);
    if (!G || !garr) goto nomem;
    {
        const double total = (double)F.row0[T];
        size_t most = 0;
        double cum = 0;
        for (int i = 0, r1 = 0; i < groups; i++) {
            const int r0 = r1;
            if (i == groups - 1) {
                r1 = B; /* the last group takes the rest */
            } else {
                /* rows while they bring the group nearer its share: a row at least,
                   and one left for each later group */
                const double goal = total * (i + 1) / groups;
                const int last = B - (groups - 1 - i);
                do
                    cum += FN(row_len)(&F, r1++);
                while (r1 < last && cum + 0.5 * FN(row_len)(&F, r1) <= goal);
            }
            FN(fwd) *g = &G[i];
            *g = F;
            g->perm = F.perm + r0;
            g->rows = r1 - r0;
            g->row0 = (ptrdiff_t *)(garr + counts * i);
            g->nact = (int *)(g->row0 + T + 1);
            g->row0[0] = 0;
            for (int s = 0; s < T; s++) {
                const int n = F.nact[s] - r0;
                g->nact[s] = n < 0 ? 0 : n > g->rows ? g->rows : n;
                g->row0[s + 1] = g->row0[s] + g->nact[s];
            }
            g->t_live = q->lengths ? (int)q->lengths[g->perm[0]] : T;
            FN(group_plan)(g, 1);
            if (g->per_dir > most) most = g->per_dir;
        }
        /* the calling thread's workspace: the inner outputs and its groups */
        char *ws = frn_workspace(inner_all + most);
        if (!ws) goto nomem;
        for (int i = 0; i < groups; i++) {
            G[i].buf[0] = L > 1 ? (FRN_T *)ws : NULL;
            G[i].buf[1] = L > 2 ? (FRN_T *)(ws + inner) : NULL;
        }
        int failed = 0;
#pragma omp parallel num_threads(groups) reduction(| : failed)
        {
            /* given fewer threads, each takes every nth group in turn */
            const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
            for (int i = tid; i < groups; i += nth) {
                char *w = tid == 0 ? ws + inner_all : frn_workspace(G[i].per_dir);
                if (!w) {
                    failed = 1;
                    continue;
                }
                FN(fwd) Fd[2];
                frn_sched *sched[2];
                FN(group_place)(&G[i], w, 1, Fd, sched);
                FN(run_group)(&G[i], Fd, sched, 1, 0);
            }
            if (tid != 0) frn_workspace_trim();
        }
        if (failed) goto nomem;
    }
    goto done;
nomem:
    status = FRN_ENOMEM;
done:
    frn_workspace_trim();
    free(G);
    free(garr);
    free(F.perm);
    free(F.row0);
    return status;
}

/* ---- streams: one step of every layer, state kept in the stream ---------- */

/*
 * Eager recurrent products. A step on the stream's helper threads of a one-phase
 * cell (LSTM without projection, GRU with linear_before_reset, RNN) whose input and
 * recurrent panels cover the same units splits in two:
 *   R:  W_hh h of every layer, which needs only the state: the helpers run it as
 *       soon as the previous step is complete, while the caller is back in Python
 *       (stream_recur, into S->r in the XP layout);
 *   XE: the step proper projects the input and runs the cell epilogue on those
 *       products (the cell phase with racc set).
 * The products are the tiles' own chains and the epilogue adds them to the
 * projections as always, so steps stay bitwise equal to the sequence call. The
 * phases of a step are [R_1 .. R_L][open][XE_1 .. XE_L]: the helpers go on from
 * XE_L into the next step's R phases, and the caller joins what is left of them
 * when it comes back (stream_join), before it opens the step.
 *
 * It pays only when the caller is away long enough for R to get done: the R
 * phases add a hand-over between threads to the step (~0.4 us here). LSTM H=128
 * on 2 threads, 1 us of other work between steps: 3.7-4.0 us a step with R ahead,
 * 4.2 without; 3 us of other work: 3.0 against 4.0; steps back to back from
 * Python (about 0.6 us between them): 4.1 against 3.65. So R goes ahead once the
 * caller's time between steps (a moving average) reaches FRN_STREAM_EAGER_GAP_NS.
 */
#define FRN_STREAM_EAGER_GAP_NS 1000.0

/* Whether a stream projects and steps panel by panel in one pass: the input and
   recurrent panels cover the same units (all but GRU with lbr=False). */
static int FN(stream_fuses)(const frn_plan *P)
{
    return P->np_x == P->np_h && P->nv_x == P->nv_h;
}

static int FN(stream_eager)(const frn_plan *P)
{
    const int one_phase = P->d.cell == FRN_LSTM ? P->d.proj_size == 0
                          : P->d.cell == FRN_GRU ? P->d.linear_before_reset
                                                 : 1;
    return one_phase && FN(stream_fuses)(P);
}

/* W_hh h of layer l's state h into S->r (layer l's rows, the XP layout), as a phase
   of team tm. */
static void FN(stream_recur_layer)(struct frn_stream *S, int l, const FRN_T *h, FN(team) *tm,
                                   int rev)
{
    const frn_plan *P = S->p;
    FN(phase) ph = FN(recur_phase)(P, &P->w[l], h, S->B);
    ph.epi = FRN_EPI_XP;
    ph.xp = (FRN_T *)S->r + (ptrdiff_t)l * S->B * P->xw;
    ph.xw = P->xw;
    FN(run_phase)(&ph, NULL, NULL, 0, tm, rev);
}

/* R: W_hh h of every layer's state (S->rh) into S->r, as phases of team tm. */
static void FN(stream_recur)(struct frn_stream *S, FN(team) *tm)
{
    /* (a helper that comes late may read the next step's pointer: its claims then
       fail, as the phase is complete before the caller opens that step); forwards
       for every thread: claims in one phase must agree on the direction, and S->rev
       flips once a step's last XE phase is complete, while these still run */
    for (int l = 0; l < S->p->d.num_layers; l++)
        FN(stream_recur_layer)(S, l, (const FRN_T *)__atomic_load_n(&S->rh[l], __ATOMIC_RELAXED),
                               tm, 0);
}

/*
 * Recurrent products first, every other step. A stream step reads every layer's W_ih
 * and W_hh. Past a thread's L2, the sweep that turns around every call (below) finds
 * little of them still there: layer l + 1's input is layer l's new state, so the
 * layers keep their order, and a step that ends on the last layer's weights is
 * followed by one that begins on the first's. But a layer's W_hh h needs only the
 * previous state. So every other step runs them all first, the last layer's first,
 * then the layers' input projections with the cell math on those products
 * (FRN_STEP_R_FIRST), and the steps between run each layer's projection, then its
 * recurrent tiles and cell math (FRN_STEP_SPLIT): the weights read last in one step
 * are among the first read in the next. For one-phase cells (stream_eager's), whose
 * epilogue takes the products from S->r as the eager steps' does: bitwise the same.
 * A Sapphire Rapids class Xeon (2 MB of L2), both builds in one process, 5-7
 * alternated rounds, medians, us a step, 1 thread: LSTM I=40 H=256 2 layers (3.2
 * MB) 134 -> 117 and 130 -> 112, 3 layers 254 -> 229; LSTM I=128 H=192 2 layers
 * (2.1 MB) 58.7 -> 49.4; LSTM I=H=256 2 layers 191 -> 166; GRU I=H=256 2 layers 131
 * -> 109; GRU I=40 H=256 3 layers 190 -> 162; RNN I=H=512 3 layers 287 -> 272; LSTM
 * I=H=512 2 layers (16 MB) 717 -> 681. 2 threads: LSTM I=H=384 2 layers 180 -> 155,
 * I=H=512 325 -> 301; GRU I=H=448 188 -> 157, I=H=512 257 -> 235; RNN I=H=768 189 ->
 * 162; GRU I=H=384 132 -> 138 and 146 -> 137; GRU and LSTM I=H=320 level. Fused
 * steps between the R-first ones: about half the gain. At 2 MB a thread (LSTM
 * I=H=256 2 layers, 2 threads) 52 -> 57, so it starts past that.
 */
#ifndef FRN_STREAM_R_FIRST_BYTES
#define FRN_STREAM_R_FIRST_BYTES (2.0 * 1024 * 1024)
#endif
#ifndef FRN_STEP_ORDER_DEFINED
#define FRN_STEP_ORDER_DEFINED
enum { FRN_STEP_FUSED, FRN_STEP_SPLIT, FRN_STEP_R_FIRST };
#endif
/* `bytes`: a thread's share of a step's weights (W_ih and W_hh of every layer) */
static int FN(stream_r_first)(const frn_plan *P, double bytes)
{
    return P->d.num_layers > 1 && FN(stream_eager)(P) && bytes > FRN_STREAM_R_FIRST_BYTES;
}

/* Join the R phases the helpers went on to after the last step and wait until
   they are complete: the state and S->r are then the caller's again. */
static void FN(stream_join)(struct frn_stream *S)
{
    if (!S->r_pending) return;
    if (frn_in_child()) {
        /* forked while the helpers ran them: they are not in this process, and the
           items they had claimed would never be done. Drop the products; the step
           computes them itself (a child steps on one thread). */
        S->r_pending = S->r_valid = 0;
        return;
    }
    FN(team) tm = {S->sched, 0, S->k};
    FN(stream_recur)(S, &tm);
    frn_sched_wait(S->sched, tm.k);
    S->k = tm.k;
    S->r_pending = 0;
}

/* The layers of one step, in the order `order` (FRN_STEP_*, stream_r_first). */
static void FN(stream_layers)(struct frn_stream *S, FN(ctx) C, const void *x, void *out,
                              FN(team) *tm, int use_r, int order)
{
    const frn_plan *P = S->p;
    const int L = P->d.num_layers, B = S->B;
    const int rev = __atomic_load_n(&S->rev, __ATOMIC_RELAXED);
    /* (helpers that come late read a flipped cur: their claims then fail) */
    const int cur = __atomic_load_n(&S->cur, __ATOMIC_RELAXED);
    if (order == FRN_STEP_R_FIRST) {
        for (int l = L - 1; l >= 0; l--)
            FN(stream_recur_layer)(S, l, (const FRN_T *)S->h[2 * l + cur], tm, rev);
        use_r = 1;
    }
    for (int l = 0; l < L; l++) {
        C.w = &P->w[l];
        C.h[0] = (FRN_T *)S->h[2 * l + cur];
        C.h[1] = (FRN_T *)S->h[2 * l + (cur ^ 1)];
        C.c = (FRN_T *)S->c[l];
        C.out = l == L - 1 ? (FRN_T *)out : NULL;
        C.out_sb = P->h_out;
        /* layer l > 0 reads the new state of layer l - 1 (S->cur flips after the step) */
        const FRN_T *a = l == 0 ? (const FRN_T *)x : (const FRN_T *)S->h[2 * (l - 1) + (cur ^ 1)];
        const ptrdiff_t lda = l == 0 ? P->d.input_size : P->ldh;
        /* Fused (stream_fuses): projected and stepped panel by panel in one pass;
           the sweep turns around every call, so the weights touched last are the
           first needed next (LSTM H=512: 8 MB of W_ih and W_hh, 2 MB of L2). */
        FN(phase) px = FN(project_phase)(&C, a, lda, B);
        const int fuse = FN(stream_fuses)(P) && order != FRN_STEP_SPLIT;
        if (!fuse) FN(run_phase)(&px, &C, NULL, 0, tm, rev);
        const FRN_T *racc = use_r ? (const FRN_T *)S->r + (ptrdiff_t)l * B * P->xw : NULL;
        FN(step)(&C, 0, B, 0, tm, rev, fuse ? &px : NULL, racc, NULL);
    }
    if (tm) frn_sched_wait(tm->S, tm->k);
}

static FN(ctx) FN(stream_ctx)(struct frn_stream *S)
{
    FN(ctx) C = {0};
    C.p = S->p;
    C.T = 1;
    C.perm = S->perm;
    C.m = (FRN_T *)S->m;
    C.z = (FRN_T *)S->z;
    C.xp = (FRN_T *)S->xp;
    return C;
}

/* A helper's share of the step that opened at phase k0 - 1 (dispatch.c runs it),
   then of the next step's R phases. */
static void FN(stream_team)(struct frn_stream *S, int tid, uint64_t k0, int eager)
{
    FN(team) tm = {S->sched, tid, k0, k0}; /* the caller opened k0 before it said so */
    FN(stream_layers)(S, FN(stream_ctx)(S), S->x, S->out, &tm, S->use_r, FRN_STEP_FUSED);
    if (eager) FN(stream_recur)(S, &tm);
    frn_sched_prefetch(tm.S, tm.k + 1, tid); /* the next step's first claim */
}

static int FN(stream_step)(struct frn_stream *S, const void *x, void *out, int n_threads)
{
    const frn_plan *P = S->p;
    const int L = P->d.num_layers, B = S->B;
    /* multiply-adds of a step and of its largest layer (counted once, at the stream's
       creation): each layer's phases are hand-overs of their own, so the threads a
       step takes go by its largest layer, and whether it takes a region by the whole
       step */
    const double fma = S->fma, fma_layer = S->fma_layer;
    /* no region of its own (0): the helper threads keep running between steps, and a
       step big enough for a region (FRN_STREAM_OMP_FMA) is far past FRN_CALL_FMA */
    /* no probe of where the cores are while the helpers spin: an OpenMP team would
       fight them for the cores (they are asleep after a while without steps) */
    const int probe = S->nhelp == 0 || atomic_load(&S->sleepers) == S->nhelp;
    /* A cell's step (frn_stream_cell) is a call of its own, as a layer's would be:
       no helper threads left behind, an OpenMP region when it pays for one */
    int nt = frn_useful_threads(fma_layer, S->cell ? fma : 0, n_threads, probe);
    /* Small steps, where an OpenMP region's ~1 us is much of the step, share it with
       the stream's own helper threads. Big ones run in an OpenMP region, on the same
       threads as every other call: helpers spinning between steps would fight the
       threads of whatever the caller runs between steps (measured, LSTM H=512 with a
       2000-unit fastrnn.Linear head per step on 2 threads: 355 us a step with
       helpers, 230 with a region). */
    const int helpers = nt > 1 && fma < FRN_STREAM_OMP_FMA && !S->cell;
    const int timed = helpers && FN(stream_eager)(P); /* the gap decides eagerness */
    if (timed && S->t_ret) /* the caller's time away (before it joins any R phase) */
        S->gap_ns += 0.25 * ((double)(frn_now_ns() - S->t_ret) - S->gap_ns);
    if (helpers && S->nhelp == 0) {
        S->team = FN(stream_team);
        if (frn_stream_helpers(S, nt - 1) != FRN_OK) nt = 1; /* no threads: step alone */
    }
    FN(stream_join)(S);
    int eager = 0;
    const double bytes = fma / B * sizeof(FRN_T) / nt; /* a thread's share of the weights */
    const int order = helpers || !FN(stream_r_first)(P, bytes) ? FRN_STEP_FUSED
                      : S->rev                                 ? FRN_STEP_R_FIRST
                                                               : FRN_STEP_SPLIT;
    if (nt > 1 && !helpers) {
        frn_sched sched;
        frn_sched_init(&sched, nt);
#pragma omp parallel num_threads(nt)
        {
            FN(team) tm = {&sched, omp_get_thread_num(), 0};
            FN(stream_layers)(S, FN(stream_ctx)(S), x, out, &tm, 0, order);
        }
    } else if (nt > 1) {
        eager = timed && S->gap_ns >= FRN_STREAM_EAGER_GAP_NS;
        /* open the step: arguments first, then the phase that lets helpers in */
        const uint64_t k = S->k;
        frn_sched_prefetch(S->sched, k + 1, 0); /* while the step opens */
        S->x = x;
        S->out = out;
        S->use_r = S->r_valid;
        if (eager) /* the states this step writes: the next R phases read them */
            for (int l = 0; l < L; l++)
                __atomic_store_n(&S->rh[l], S->h[2 * l + (S->cur ^ 1)], __ATOMIC_RELAXED);
        atomic_store_explicit(&S->active, nt < S->nhelp + 1 ? nt : S->nhelp + 1,
                              memory_order_relaxed);
        /* the phase first, so a helper that sees base knows phase k + 1 is open
           without looking at (and waiting for) another cache line */
        frn_sched_done(S->sched, k, 1, 1);
        /* seq_cst: against the sleepers count below */
        atomic_store(&S->base, 2 * k + (uint64_t)eager);
        if (atomic_load(&S->sleepers) > 0) frn_stream_wake(S);
        FN(team) tm = {S->sched, 0, k + 1, k + 1};
        FN(stream_layers)(S, FN(stream_ctx)(S), x, out, &tm, S->use_r, FRN_STEP_FUSED);
        S->k = tm.k;
        S->r_pending = eager; /* the helpers go on to the R phases */
    } else {
        FN(stream_layers)(S, FN(stream_ctx)(S), x, out, NULL, 0, order);
    }
    S->r_valid = eager; /* once the R phases are joined */
    __atomic_store_n(&S->cur, S->cur ^ 1, __ATOMIC_RELAXED);
    __atomic_store_n(&S->rev, S->rev ^ 1, __ATOMIC_RELAXED);
    if (timed) S->t_ret = frn_now_ns();
    return FRN_OK;
}

/* What frn_stream_state and frn_stream_reorder call before they touch the state. */
static int FN(stream_sync)(struct frn_stream *S)
{
    FN(stream_join)(S);
    S->r_valid = 0;
    return FRN_OK;
}

/* ---- dense layers ---------------------------------------------------- */

/* y (M, N) = x (M, K) W^T + b, in chunks of rows through the padded XP layout */
static int FN(linear_apply)(const struct frn_linear *lin, int M, const FRN_T *x, FRN_T *y,
                            int n_threads)
{
    long chunk = (1L << 18) / lin->xw;
    if (chunk < 1) chunk = 1;
    if (chunk > M) chunk = M;
    FRN_T *xp = frn_workspace((size_t)chunk * lin->xw * sizeof(FRN_T) + 64);
    if (!xp) return FRN_ENOMEM;
    /* m0 counts in long: near M = 2^31 - 1 an int counter wrapped past the last
       chunk and the loop started over, forever */
    for (long m0 = 0; m0 < M; m0 += chunk) {
        const int rows = (int)(M - m0 < chunk ? M - m0 : chunk);
        FN(phase) ph = {0};
        ph.epi = FRN_EPI_XP;
        ph.rows = rows;
        ph.a = x + (ptrdiff_t)m0 * lin->K;
        ph.lda = lin->K;
        ph.K = lin->K;
        ph.b = (const FRN_T *)lin->w;
        ph.nv = 4;
        ph.np = lin->np;
        ph.bs = (ptrdiff_t)lin->K * 4 * VL;
        ph.xp = xp;
        ph.bias = (const FRN_T *)lin->bias;
        ph.xw = lin->xw;
        const double fma = (double)rows * lin->K * lin->xw;
        const int nt = frn_useful_threads(fma, fma, n_threads, 1);
        FN(run_team)(&ph, nt);
        for (int i = 0; i < rows; i++)
            memcpy(y + (ptrdiff_t)(m0 + i) * lin->N, xp + (ptrdiff_t)i * lin->xw,
                   sizeof(FRN_T) * lin->N);
    }
    return FRN_OK;
}

/* ---- test hooks -------------------------------------------------------- */

static void FN(activation)(int kind, const FRN_T *x, FRN_T *y, size_t n)
{
    size_t i = 0;
    for (; i + VL <= n; i += VL) {
        VT v = V(load)(x + i);
        V(store)(y + i, kind == 0 ? FN(vsigmoid)(v) : kind == 1 ? FN(vtanh)(v) : FN(vexp)(v));
    }
    if (i < n) {
        VT v = V(load_n)(x + i, (int)(n - i));
        V(store_n)(y + i, kind == 0 ? FN(vsigmoid)(v) : kind == 1 ? FN(vtanh)(v) : FN(vexp)(v),
                   (int)(n - i));
    }
}

/* c (M, N) = a (M, K) b_t(N, K)^T + bias, through the packed panels and tiles */
static int FN(gemm_test)(int M, int N, int K, const FRN_T *a, const void *b_t, const FRN_T *bias,
                         FRN_T *c, int n_threads)
{
    const int nbp = ((N + VL - 1) / VL + 3) / 4 * 4;
    const int xw = nbp * VL;
    FRN_T *bp = calloc((size_t)nbp / 4 * K * 4 * VL + 1, sizeof(FRN_T));
    FRN_T *bb = calloc((size_t)xw, sizeof(FRN_T));
    FRN_T *xp = calloc((size_t)M * xw + 1, sizeof(FRN_T));
    if (!bp || !bb || !xp) {
        free(bp);
        free(bb);
        free(xp);
        return FRN_ENOMEM;
    }
    frn_pack_panels(bp, b_t, sizeof(FRN_T) == 8 ? FRN_F64 : FRN_F32, K, N, VL, nbp / 4, 4, 0, 1,
                    0);
    if (bias) memcpy(bb, bias, sizeof(FRN_T) * (size_t)N);
    FN(phase) ph = {0};
    ph.epi = FRN_EPI_XP;
    ph.rows = M;
    ph.a = a;
    ph.lda = K;
    ph.K = K;
    ph.b = bp;
    ph.nv = 4;
    ph.np = nbp / 4;
    ph.bs = (ptrdiff_t)K * 4 * VL;
    ph.xp = xp;
    ph.bias = bb;
    ph.xw = xw;
    FN(run_team)(&ph, n_threads);
    for (int i = 0; i < M; i++) memcpy(c + (size_t)i * N, xp + (size_t)i * xw, sizeof(FRN_T) * N);
    free(bp);
    free(bb);
    free(xp);
    return FRN_OK;
}
