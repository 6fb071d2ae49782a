/*
 * emu_avx512.h -- the AVX-512 intrinsics vec_avx512.h uses, in portable C (GCC vector
 * types and per-lane loops), for test builds on CPUs without AVX-512.
 *
 * setup.py includes it, in step_avx512.c only, when FASTRNN_EMULATE_AVX512=1 (built
 * for AVX2 + FMA); dispatch.c then offers the avx512 path on any CPU with AVX2 and
 * FMA, and the test suite runs it like the others. The AVX-512 engine -- its 16-lane
 * panels, masked tails, tile shapes and woven projection -- is the same code; only
 * the intrinsics under it are replaced, so a machine without AVX-512 (and
 * scripts/sanitize.sh, under ASan and UBSan) still tests that path. It is slow and
 * never a release build.
 *
 * Each function follows the instruction's definition for the inputs the kernels
 * give it: multiply-adds, min/max (NaN rules included) and rounding are the AVX2
 * instructions on each 256-bit half; masked loads and stores touch only their lanes
 * (so ASan sees an unmasked lane past a buffer); scalef scales by 2^floor(n) without
 * forming 2^n; rcp14 keeps only 14 bits of the reciprocal (the hardware's error
 * bound), so the Newton step after it is tested against an estimate as coarse as
 * the real one.
 */
#ifndef FRN_EMU_AVX512_H
#define FRN_EMU_AVX512_H
#include <immintrin.h> /* the vector types and constants; its functions stay unused */
#include <math.h>
#include <stdint.h>
#include <string.h>

#define FRN_EMU_LANES(v) ((int)(sizeof(v) / sizeof((v)[0])))

typedef int32_t frn_emu_i32 __attribute__((vector_size(64)));

/* the two 256-bit halves of a 512-bit vector */
typedef union { __m512 v; __m256 h[2]; } frn_emu_halves_ps;
typedef union { __m512d v; __m256d h[2]; } frn_emu_halves_pd;
static inline __m256 frn_emu_half_ps(__m512 v, int i) { return ((frn_emu_halves_ps){v}).h[i]; }
static inline __m256d frn_emu_half_pd(__m512d v, int i) { return ((frn_emu_halves_pd){v}).h[i]; }
/* returns op applied to each half i of a (A.h[i]; other operands by frn_emu_half) */
#define FRN_EMU_HALVES(SUF, a_, op)                                                                \
    frn_emu_halves_##SUF A = {a_};                                                                 \
    for (int i = 0; i < 2; i++) A.h[i] = op;                                                       \
    return A.v

/* frn_emu_OP_SUF(a, b[, c]): the AVX2 instruction _mm256_OP_SUF on each half */
#define FRN_EMU_HALVES2(SUF, VT, OP)                                                               \
    static inline VT frn_emu_##OP##_##SUF(VT a, VT b)                                              \
    {                                                                                              \
        FRN_EMU_HALVES(SUF, a, _mm256_##OP##_##SUF(A.h[i], frn_emu_half_##SUF(b, i)));             \
    }
#define FRN_EMU_HALVES3(SUF, VT, OP)                                                               \
    static inline VT frn_emu_##OP##_##SUF(VT a, VT b, VT c)                                        \
    {                                                                                              \
        FRN_EMU_HALVES(SUF, a,                                                                     \
                       _mm256_##OP##_##SUF(A.h[i], frn_emu_half_##SUF(b, i),                       \
                                           frn_emu_half_##SUF(c, i)));                             \
    }

/* ---- one body for float (ps, 16 lanes) and double (pd, 8 lanes) ---- */
#define FRN_EMU_DEFINE(SUF, T, VT, MASK, LDEXP)                                                    \
    static inline VT frn_emu_loadu_##SUF(const void *p)                                            \
    {                                                                                              \
        VT v;                                                                                      \
        memcpy(&v, p, sizeof v);                                                                   \
        return v;                                                                                  \
    }                                                                                              \
    static inline void frn_emu_storeu_##SUF(void *p, VT v) { memcpy(p, &v, sizeof v); }            \
    static inline VT frn_emu_set1_##SUF(T a)                                                       \
    {                                                                                              \
        VT v;                                                                                      \
        for (int i = 0; i < FRN_EMU_LANES(v); i++) v[i] = a;                                       \
        return v;                                                                                  \
    }                                                                                              \
    /* the AVX2 instruction on each half: the same rounding and NaN rules */                       \
    FRN_EMU_HALVES3(SUF, VT, fmadd)                                                                \
    FRN_EMU_HALVES3(SUF, VT, fnmadd)                                                               \
    FRN_EMU_HALVES2(SUF, VT, min)                                                                  \
    FRN_EMU_HALVES2(SUF, VT, max)                                                                  \
    static inline VT frn_emu_abs_##SUF(VT a)                                                       \
    {                                                                                              \
        for (int i = 0; i < FRN_EMU_LANES(a); i++) a[i] = (T)__builtin_fabs(a[i]);                 \
        return a;                                                                                  \
    }                                                                                              \
    /* the kernels only round to nearest, ties to even */                                          \
    static inline VT frn_emu_roundscale_##SUF(VT a, int imm)                                       \
    {                                                                                              \
        if (imm != (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)) __builtin_trap();              \
        FRN_EMU_HALVES(SUF, a,                                                                     \
                       _mm256_round_##SUF(A.h[i], _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)); \
    }                                                                                              \
    static inline VT frn_emu_scalef_##SUF(VT a, VT n)                                              \
    {                                                                                              \
        for (int i = 0; i < FRN_EMU_LANES(a); i++) {                                               \
            if (isnan(a[i]) || isnan(n[i]))                                                        \
                a[i] = a[i] + n[i];                                                                \
            else if (isinf(n[i]))                                                                  \
                a[i] = n[i] > 0 ? a[i] * (T)INFINITY : a[i] * (T)0;                                \
            else                                                                                   \
                a[i] = LDEXP(a[i], (int)fmax(-4096.0, fmin(4096.0, floor((double)n[i]))));         \
        }                                                                                          \
        return a;                                                                                  \
    }                                                                                              \
    static inline MASK frn_emu_cmp_##SUF##_mask(VT a, VT b, int imm)                               \
    {                                                                                              \
        if (imm != _CMP_LT_OQ) __builtin_trap();                                                   \
        MASK k = 0;                                                                                \
        for (int i = 0; i < FRN_EMU_LANES(a); i++) k |= (MASK)((a[i] < b[i]) << i);                \
        return k;                                                                                  \
    }                                                                                              \
    static inline VT frn_emu_mask_blend_##SUF(MASK k, VT a, VT b)                                  \
    {                                                                                              \
        for (int i = 0; i < FRN_EMU_LANES(a); i++) a[i] = (k >> i) & 1 ? b[i] : a[i];              \
        return a;                                                                                  \
    }                                                                                              \
    static inline VT frn_emu_maskz_loadu_##SUF(MASK k, const void *p)                              \
    {                                                                                              \
        VT v;                                                                                      \
        for (int i = 0; i < FRN_EMU_LANES(v); i++) v[i] = (k >> i) & 1 ? ((const T *)p)[i] : 0;    \
        return v;                                                                                  \
    }                                                                                              \
    static inline void frn_emu_mask_storeu_##SUF(void *p, MASK k, VT v)                            \
    {                                                                                              \
        for (int i = 0; i < FRN_EMU_LANES(v); i++)                                                 \
            if ((k >> i) & 1) ((T *)p)[i] = v[i];                                                  \
    }

FRN_EMU_DEFINE(ps, float, __m512, __mmask16, ldexpf)
FRN_EMU_DEFINE(pd, double, __m512d, __mmask8, ldexp)
#undef FRN_EMU_DEFINE

/* 1/d with the fraction cut to 14 bits: relative error below 2^-14, as VRCP14PS */
static inline __m512 frn_emu_rcp14_ps(__m512 d)
{
    __m512 r = 1.0f / d;
    frn_emu_i32 bits;
    memcpy(&bits, &r, sizeof r);
    for (int i = 0; i < 16; i++)
        if (!isnan(r[i])) bits[i] &= ~(int32_t)0x1ff;
    memcpy(&r, &bits, sizeof r);
    return r;
}

/* bit i of imm is the result for the bits (a, b, c) = (i >> 2, (i >> 1) & 1, i & 1);
   the operation is bitwise, so one body serves 32- and 64-bit lanes */
static inline __m512i frn_emu_ternarylogic(__m512i a, __m512i b, __m512i c, int imm)
{
    __m512i r = a ^ a;
    for (int i = 0; i < 8; i++)
        if ((imm >> i) & 1) r |= (i & 4 ? a : ~a) & (i & 2 ? b : ~b) & (i & 1 ? c : ~c);
    return r;
}

static inline __m512i frn_emu_set1_epi32(int a)
{
    frn_emu_i32 v;
    for (int i = 0; i < 16; i++) v[i] = a;
    return (__m512i)v;
}
static inline __m512i frn_emu_set1_epi64(long long a)
{
    __m512i v;
    for (int i = 0; i < 8; i++) v[i] = a;
    return v;
}

#define _mm512_loadu_ps frn_emu_loadu_ps
#define _mm512_loadu_pd frn_emu_loadu_pd
#define _mm512_storeu_ps frn_emu_storeu_ps
#define _mm512_storeu_pd frn_emu_storeu_pd
#define _mm512_set1_ps frn_emu_set1_ps
#define _mm512_set1_pd frn_emu_set1_pd
#define _mm512_setzero_ps() frn_emu_set1_ps(0.0f)
#define _mm512_setzero_pd() frn_emu_set1_pd(0.0)
#define _mm512_add_ps(a, b) ((a) + (b))
#define _mm512_add_pd(a, b) ((a) + (b))
#define _mm512_sub_ps(a, b) ((a) - (b))
#define _mm512_sub_pd(a, b) ((a) - (b))
#define _mm512_mul_ps(a, b) ((a) * (b))
#define _mm512_mul_pd(a, b) ((a) * (b))
#define _mm512_div_ps(a, b) ((a) / (b))
#define _mm512_div_pd(a, b) ((a) / (b))
#define _mm512_fmadd_ps frn_emu_fmadd_ps
#define _mm512_fmadd_pd frn_emu_fmadd_pd
#define _mm512_fnmadd_ps frn_emu_fnmadd_ps
#define _mm512_fnmadd_pd frn_emu_fnmadd_pd
#define _mm512_min_ps frn_emu_min_ps
#define _mm512_min_pd frn_emu_min_pd
#define _mm512_max_ps frn_emu_max_ps
#define _mm512_max_pd frn_emu_max_pd
#define _mm512_abs_ps frn_emu_abs_ps
#define _mm512_abs_pd frn_emu_abs_pd
#define _mm512_roundscale_ps frn_emu_roundscale_ps
#define _mm512_roundscale_pd frn_emu_roundscale_pd
#define _mm512_scalef_ps frn_emu_scalef_ps
#define _mm512_scalef_pd frn_emu_scalef_pd
#define _mm512_cmp_ps_mask frn_emu_cmp_ps_mask
#define _mm512_cmp_pd_mask frn_emu_cmp_pd_mask
#define _mm512_mask_blend_ps frn_emu_mask_blend_ps
#define _mm512_mask_blend_pd frn_emu_mask_blend_pd
#define _mm512_maskz_loadu_ps frn_emu_maskz_loadu_ps
#define _mm512_maskz_loadu_pd frn_emu_maskz_loadu_pd
#define _mm512_mask_storeu_ps frn_emu_mask_storeu_ps
#define _mm512_mask_storeu_pd frn_emu_mask_storeu_pd
#define _mm512_rcp14_ps frn_emu_rcp14_ps
#define _mm512_set1_epi32 frn_emu_set1_epi32
#define _mm512_set1_epi64 frn_emu_set1_epi64
#define _mm512_ternarylogic_epi32 frn_emu_ternarylogic
#define _mm512_ternarylogic_epi64 frn_emu_ternarylogic
#define _mm512_castps_si512(a) ((__m512i)(a))
#define _mm512_castpd_si512(a) ((__m512i)(a))
#define _mm512_castsi512_ps(a) ((__m512)(a))
#define _mm512_castsi512_pd(a) ((__m512d)(a))

#endif
