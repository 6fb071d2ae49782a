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
 */

#define FRN_TILE_DEF(MR, NP, NV)                                                       \
    static inline __attribute__((always_inline)) void FN(tile_##MR##_##NP##_##NV)(     \
        int K, const FRN_T *restrict a, ptrdiff_t lda, const FRN_T *restrict b,        \
        ptrdiff_t bs, FRN_T *restrict c, ptrdiff_t ldc, const FRN_T *restrict bias)    \
    {                                                                                  \
        VT acc[MR][NP * NV];                                                           \
        _Pragma("GCC unroll 32") for (int r = 0; r < MR; r++)                          \
            _Pragma("GCC unroll 32") for (int j = 0; j < NP * NV; j++)                 \
                acc[r][j] = V(zero)();                                                 \
        for (int k = 0; k < K; k++) {                                                  \
            _Pragma("GCC unroll 32") for (int r = 0; r < MR; r++)                      \
            {                                                                          \
                VT ar = V(set1)(a[r * lda + k]);                                       \
                _Pragma("GCC unroll 32") for (int p = 0; p < NP; p++)                  \
                    _Pragma("GCC unroll 32") for (int v = 0; v < NV; v++)              \
                        acc[r][p * NV + v] =                                           \
                        V(fma)(ar, V(load)(b + p * bs + (ptrdiff_t)k * (NV * VL) + v * VL), \
                               acc[r][p * NV + v]);                                    \
            }                                                                          \
        }                                                                              \
        if (bias) {                                                                    \
            _Pragma("GCC unroll 32") for (int r = 0; r < MR; r++)                      \
                _Pragma("GCC unroll 32") for (int j = 0; j < NP * NV; j++)             \
                    V(store)(c + r * ldc + j * VL, V(add)(acc[r][j], V(load)(bias + j * VL))); \
        } else {                                                                       \
            _Pragma("GCC unroll 32") for (int r = 0; r < MR; r++)                      \
                _Pragma("GCC unroll 32") for (int j = 0; j < NP * NV; j++)             \
                    V(store)(c + r * ldc + j * VL, acc[r][j]);                         \
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
