/*
 * rnn.h -- vanilla RNN: h' = act(x_proj + W_hh h), act tanh or relu (SPEC §1).
 * Panel p holds unit blocks 4p .. 4p+3.
 */
static inline void FN(epi_rnn)(const FN(ctx) *C, FRN_T *hnext, int s, int r0, int mr, int p0,
                               int npg, const FRN_T *acc)
{
    const frn_plan *P = C->p;
    const int relu = P->d.cell == FRN_RNN_RELU;
    for (int r = 0; r < mr; r++) {
        const int bp = r0 + r;
        const frn_rowpos rp = FN(rowpos)(C, bp, s);
        const FRN_T *xp = C->xp + (ptrdiff_t)bp * P->xw;
        for (int q = 0; q < npg; q++)
            for (int u = 0; u < 4; u++) {
                const int j = (p0 + q) * 4 + u;
                VT g = V(add)(V(load)(acc + (((ptrdiff_t)r * npg + q) * 4 + u) * VL),
                              V(load)(xp + (ptrdiff_t)j * VL));
                FN(emit_h)(C, hnext, bp, rp, j, relu ? FN(vrelu)(g) : FN(vtanh)(g));
            }
    }
}
