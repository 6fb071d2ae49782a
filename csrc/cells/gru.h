/*
 * gru.h -- GRU gate math (SPEC §1), gate order (r, z, n); h' = n + z (h - n).
 *
 * linear_before_reset=True: one phase; panel p is unit block j = p, vectors
 * (r, z, n) of W_h* h; n = tanh(x_n + r (W_hn h + b_hn)).
 * linear_before_reset=False: r must be known for every unit before W_hn (r h), so
 * phase 1 (panels of 2 unit blocks x (r, z)) stores z and r*h, and after a barrier
 * phase 2 (panels of 4 unit blocks of n) finishes; b_hn is folded into x_n.
 */
static inline void FN(epi_gru)(const FN(ctx) *C, FRN_T *hnext, int s, int r0, int mr, int p0,
                               int npg, const FRN_T *acc)
{
    const frn_plan *P = C->p;
    const FRN_T *bhn = (const FRN_T *)C->w->bias_hn;
    const FRN_T *hprev = C->h[0] == hnext ? C->h[1] : C->h[0];
    /* in two stages over every (unit block, row), as in lstm.h: r and z, then n
       and h' */
    VT rg[FRN_EPI_MAX], zg[FRN_EPI_MAX];
    for (int q = 0; q < npg; q++)
        for (int r = 0; r < mr; r++) {
            const int j = p0 + q, e = q * mr + r;
            const FRN_T *a = acc + ((ptrdiff_t)r * npg + q) * 3 * VL;
            const FRN_T *x = C->xp + (ptrdiff_t)(r0 + r) * P->xw + (ptrdiff_t)j * 3 * VL;
            rg[e] = FN(vsigmoid)(V(add)(V(load)(a), V(load)(x)));
            zg[e] = FN(vsigmoid)(V(add)(V(load)(a + VL), V(load)(x + VL)));
        }
    for (int q = 0; q < npg; q++)
        for (int r = 0; r < mr; r++) {
            const int j = p0 + q, bp = r0 + r, e = q * mr + r;
            const frn_rowpos rp = FN(rowpos)(C, bp, s);
            const FRN_T *a = acc + ((ptrdiff_t)r * npg + q) * 3 * VL;
            const FRN_T *x = C->xp + (ptrdiff_t)bp * P->xw + (ptrdiff_t)j * 3 * VL;
            VT hn = V(add)(V(load)(a + 2 * VL), V(load)(bhn + j * VL));
            VT n = FN(vtanh)(V(fma)(rg[e], hn, V(load)(x + 2 * VL)));
            VT h = V(load)(hprev + (ptrdiff_t)bp * P->ldh + j * VL);
            FN(emit_h)(C, hnext, bp, rp, j, V(fma)(zg[e], V(sub)(h, n), n));
        }
}

static inline void FN(epi_gru_rz)(const FN(ctx) *C, FRN_T *hnext, int s, int r0, int mr, int p0,
                                  int npg, const FRN_T *acc)
{
    const frn_plan *P = C->p;
    const FRN_T *hprev = C->h[0] == hnext ? C->h[1] : C->h[0];
    (void)s;
    for (int r = 0; r < mr; r++) {
        const int bp = r0 + r;
        const FRN_T *xp = C->xp + (ptrdiff_t)bp * P->xw;
        const ptrdiff_t row = (ptrdiff_t)bp * P->ldh;
        for (int q = 0; q < npg; q++)
            for (int u = 0; u < 2; u++) {
                const int j = (p0 + q) * 2 + u;
                const FRN_T *a = acc + (((ptrdiff_t)r * npg + q) * 4 + 2 * u) * VL;
                const FRN_T *x = xp + (ptrdiff_t)j * 3 * VL;
                VT rg = FN(vsigmoid)(V(add)(V(load)(a), V(load)(x)));
                VT zg = FN(vsigmoid)(V(add)(V(load)(a + VL), V(load)(x + VL)));
                V(store)(C->z + row + j * VL, zg);
                V(store)(C->m + row + j * VL, V(mul)(rg, V(load)(hprev + row + j * VL)));
            }
    }
}

static inline void FN(epi_gru_n)(const FN(ctx) *C, FRN_T *hnext, int s, int r0, int mr, int p0,
                                 int npg, const FRN_T *acc)
{
    const frn_plan *P = C->p;
    const FRN_T *hprev = C->h[0] == hnext ? C->h[1] : C->h[0];
    for (int r = 0; r < mr; r++) {
        const int bp = r0 + r;
        const frn_rowpos rp = FN(rowpos)(C, bp, s);
        const FRN_T *xp = C->xp + (ptrdiff_t)bp * P->xw;
        const ptrdiff_t row = (ptrdiff_t)bp * P->ldh;
        for (int q = 0; q < npg; q++)
            for (int u = 0; u < 4; u++) {
                const int j = (p0 + q) * 4 + u;
                VT n = FN(vtanh)(V(add)(V(load)(acc + (((ptrdiff_t)r * npg + q) * 4 + u) * VL),
                                        V(load)(xp + ((ptrdiff_t)j * 3 + 2) * VL)));
                VT h = V(load)(hprev + row + j * VL);
                FN(emit_h)(C, hnext, bp, rp, j, V(fma)(V(load)(C->z + row + j * VL), V(sub)(h, n), n));
            }
    }
}
