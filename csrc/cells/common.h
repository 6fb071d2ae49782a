/*
 * common.h -- what every cell epilogue needs (no include guard: compiled per ISA and
 * dtype through layers/engine.h).
 *
 * An epilogue turns one micro-kernel tile (mr rows x npg panels of recurrent
 * products, in an L1 scratch) into new states for those rows and units, writes
 * the layer output and, at each sequence's last valid step, h_n / c_n. Rows are
 * in length-sorted order (bp); perm maps them back to batch indices.
 */

typedef struct {
    const frn_plan *p;
    const frn_dir_w *w;
    int T, dir;
    const int *perm;      /* sorted row -> batch index */
    const int64_t *len;   /* per batch index, NULL: every sequence has T steps */
    /* where this (layer, direction) writes; out may be NULL (streams, inner layers) */
    FRN_T *out;
    ptrdiff_t out_st, out_sb;
    FRN_T *hn, *cn;       /* (B, h_out) / (B, H) of this (layer, direction), or NULL */
    /* state and per-row scratch, rows in sorted order, row stride p->ldh */
    FRN_T *h[2];
    FRN_T *c;
    FRN_T *m;             /* LSTM projection input, GRU (lbr=False) r*h */
    FRN_T *z;             /* GRU (lbr=False) update gate */
    /* input projections of the current chunk, row stride p->xw */
    FRN_T *xp;
} FN(ctx);

/* Where row bp stands at iteration s: its batch index, time step, and whether
   this is its last valid step. */
#ifndef FRN_ROWPOS_DEFINED
#define FRN_ROWPOS_DEFINED
/* unit blocks x rows an epilogue call may cover (layers/engine.h, run_row) */
#define FRN_EPI_MAX 64
typedef struct {
    int b, t, last;
} frn_rowpos;
#endif

static inline frn_rowpos FN(rowpos)(const FN(ctx) *C, int bp, int s)
{
    frn_rowpos r;
    r.b = C->perm[bp];
    int n = C->len ? (int)C->len[r.b] : C->T;
    r.t = C->dir == 0 ? s : n - 1 - s;
    r.last = s == n - 1;
    return r;
}

/* Store n (<= VL, may be <= 0) leading lanes of v at dst. */
static inline void FN(store_units)(FRN_T *dst, VT v, int n)
{
    if (n >= VL)
        V(store)(dst, v);
    else if (n > 0)
        V(store_n)(dst, v, n);
}

/* The new h of unit block j of row bp: into the next state, the output, and h_n. */
static inline __attribute__((always_inline)) void FN(emit_h)(const FN(ctx) *C, FRN_T *hnext, int bp,
                                                            frn_rowpos rp, int j, VT h)
{
    const int n = C->p->h_out - j * VL;
    V(store)(hnext + (ptrdiff_t)bp * C->p->ldh + j * VL, h);
    if (C->out)
        FN(store_units)(C->out + rp.t * C->out_st + rp.b * C->out_sb + j * VL, h, n);
    if (rp.last && C->hn)
        FN(store_units)(C->hn + (ptrdiff_t)rp.b * C->p->h_out + j * VL, h, n);
}
