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
    /* Two stages over every (unit block, row) of the tile: each activation is a
       chain of ~20 dependent operations, and the cell needs two in a row (gates,
       then tanh(c')); laid out stage by stage, all the chains are in flight at
       once instead of one block's at a time. */
    VT c[FRN_EPI_MAX], og[FRN_EPI_MAX];
    for (int q = 0; q < npg; q++)
        for (int r = 0; r < mr; r++) {
            const int j = p0 + q, bp = r0 + r, e = q * mr + r;
            const FRN_T *a = acc + ((ptrdiff_t)r * npg + q) * 4 * VL;
            const FRN_T *x = C->xp + (ptrdiff_t)bp * P->xw + (ptrdiff_t)j * 4 * VL;
            VT gi = V(add)(V(load)(a), V(load)(x));
            VT gf = V(add)(V(load)(a + VL), V(load)(x + VL));
            VT gg = V(add)(V(load)(a + 2 * VL), V(load)(x + 2 * VL));
            og[e] = V(add)(V(load)(a + 3 * VL), V(load)(x + 3 * VL));
            VT cp = V(load)(C->c + (ptrdiff_t)bp * P->ldh + j * VL);
            if (peep) {
                gi = V(fma)(V(load)(peep + j * VL), cp, gi);
                gf = V(fma)(V(load)(peep + ldp + j * VL), cp, gf);
            }
            c[e] = V(fma)(FN(vsigmoid)(gf), cp, V(mul)(FN(vsigmoid)(gi), FN(vtanh)(gg)));
        }
    for (int q = 0; q < npg; q++)
        for (int r = 0; r < mr; r++) {
            const int j = p0 + q, bp = r0 + r, e = q * mr + r;
            const frn_rowpos rp = FN(rowpos)(C, bp, s);
            VT go = og[e];
            if (peep) go = V(fma)(V(load)(peep + 2 * ldp + j * VL), c[e], go);
            VT h = V(mul)(FN(vsigmoid)(go), FN(vtanh)(c[e]));
            V(store)(C->c + (ptrdiff_t)bp * P->ldh + j * VL, c[e]);
            if (rp.last && C->cn)
                FN(store_units)(C->cn + (ptrdiff_t)rp.b * P->d.hidden_size + j * VL, c[e],
                                P->d.hidden_size - j * VL);
            if (proj)
                V(store)(C->m + (ptrdiff_t)bp * P->ldh + j * VL, h);
            else
                FN(emit_h)(C, hnext, bp, rp, j, h);
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
