/*
 * lstm.h -- LSTM gate math on one tile (SPEC §1), optional peepholes; with a
 * projection the tile yields m = o * tanh(c') and projection.h finishes the step.
 * Panel p is unit block j = p, vectors (i, f, g, o).
 */
static inline void FN(epi_lstm)(const FN(ctx) *C, FRN_T *hnext, int s, int r0, int mr, int p0,
                                int npg, const FRN_T *acc)
{
    const frn_plan *P = C->p;
    const int proj = P->d.proj_size > 0;
    const FRN_T *peep = (const FRN_T *)C->w->peep;
    const ptrdiff_t ldp = (ptrdiff_t)P->nbp * VL;
    for (int q = 0; q < npg; q++) {
        const int j = p0 + q;
        /* Two stages over all rows of the tile: each activation is a chain of ~20
           dependent operations, and the cell needs two in a row (gates, then
           tanh(c')); laid out stage by stage, every row's chains are in flight at
           once instead of one row's at a time. */
        VT c[FRN_MR_MAX3], og[FRN_MR_MAX3];
        for (int r = 0; r < mr; r++) {
            const int bp = r0 + r;
            const FRN_T *a = acc + ((ptrdiff_t)r * npg + q) * 4 * VL;
            const FRN_T *x = C->xp + (ptrdiff_t)bp * P->xw + (ptrdiff_t)j * 4 * VL;
            VT gi = V(add)(V(load)(a), V(load)(x));
            VT gf = V(add)(V(load)(a + VL), V(load)(x + VL));
            VT gg = V(add)(V(load)(a + 2 * VL), V(load)(x + 2 * VL));
            og[r] = V(add)(V(load)(a + 3 * VL), V(load)(x + 3 * VL));
            VT cp = V(load)(C->c + (ptrdiff_t)bp * P->ldh + j * VL);
            if (peep) {
                gi = V(fma)(V(load)(peep + j * VL), cp, gi);
                gf = V(fma)(V(load)(peep + ldp + j * VL), cp, gf);
            }
            c[r] = V(fma)(FN(vsigmoid)(gf), cp, V(mul)(FN(vsigmoid)(gi), FN(vtanh)(gg)));
        }
        for (int r = 0; r < mr; r++) {
            const int bp = r0 + r;
            const frn_rowpos rp = FN(rowpos)(C, bp, s);
            VT go = og[r];
            if (peep) go = V(fma)(V(load)(peep + 2 * ldp + j * VL), c[r], go);
            VT h = V(mul)(FN(vsigmoid)(go), FN(vtanh)(c[r]));
            V(store)(C->c + (ptrdiff_t)bp * P->ldh + j * VL, c[r]);
            if (rp.last && C->cn)
                FN(store_units)(C->cn + (ptrdiff_t)rp.b * P->d.hidden_size + j * VL, c[r],
                                P->d.hidden_size - j * VL);
            if (proj)
                V(store)(C->m + (ptrdiff_t)bp * P->ldh + j * VL, h);
            else
                FN(emit_h)(C, hnext, bp, rp, j, h);
        }
    }
}

/* LSTM projection: h = W_hr m; panel p holds projected unit blocks 4p .. 4p+3. */
static inline void FN(epi_proj)(const FN(ctx) *C, FRN_T *hnext, int s, int r0, int mr, int p0,
                                int npg, const FRN_T *acc)
{
    for (int r = 0; r < mr; r++) {
        const int bp = r0 + r;
        const frn_rowpos rp = FN(rowpos)(C, bp, s);
        for (int q = 0; q < npg; q++)
            for (int u = 0; u < 4; u++) {
                const int j = (p0 + q) * 4 + u;
                if (j * VL >= C->p->h_out) break;
                FN(emit_h)(C, hnext, bp, rp, j, V(load)(acc + (((ptrdiff_t)r * npg + q) * 4 + u) * VL));
            }
    }
}
