/*
 * vec_avx2.h -- AVX2 + FMA vector primitives (see vec_avx512.h for the contract).
 */
#ifndef FRN_VEC_AVX2_H
#define FRN_VEC_AVX2_H
#include <immintrin.h>

#define FRN_ISA_SUFFIX avx2

/* ---- float ---- */
typedef __m256 vf_t;
#define VF_LANES 8
static inline vf_t vf_load(const float *p) { return _mm256_loadu_ps(p); }
/* a load kept in a register: the compiler may otherwise fold it into each
   instruction that uses the value, loading it once per use */
static inline vf_t vf_load_reg(const float *p)
{
    vf_t v = _mm256_loadu_ps(p);
    __asm__("" : "+x"(v));
    return v;
}
static inline void vf_store(float *p, vf_t v) { _mm256_storeu_ps(p, v); }
static inline vf_t vf_set1(float a) { return _mm256_set1_ps(a); }
static inline vf_t vf_zero(void) { return _mm256_setzero_ps(); }
static inline vf_t vf_add(vf_t a, vf_t b) { return _mm256_add_ps(a, b); }
static inline vf_t vf_sub(vf_t a, vf_t b) { return _mm256_sub_ps(a, b); }
static inline vf_t vf_mul(vf_t a, vf_t b) { return _mm256_mul_ps(a, b); }
static inline vf_t vf_div(vf_t a, vf_t b) { return _mm256_div_ps(a, b); }
static inline vf_t vf_fma(vf_t a, vf_t b, vf_t c) { return _mm256_fmadd_ps(a, b, c); }
static inline vf_t vf_fnma(vf_t a, vf_t b, vf_t c) { return _mm256_fnmadd_ps(a, b, c); }
static inline vf_t vf_min(vf_t a, vf_t b) { return _mm256_min_ps(a, b); }
static inline vf_t vf_max(vf_t a, vf_t b) { return _mm256_max_ps(a, b); }
static inline vf_t vf_abs(vf_t a)
{
    return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a);
}
static inline vf_t vf_copysign(vf_t mag, vf_t s)
{
    const vf_t m = _mm256_set1_ps(-0.0f);
    return _mm256_or_ps(_mm256_andnot_ps(m, mag), _mm256_and_ps(m, s));
}
static inline vf_t vf_round(vf_t a)
{
    return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
/* p * 2**n in two halves so each factor stays a normal number */
static inline vf_t vf_ldexp(vf_t p, vf_t n)
{
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i n1 = _mm256_srai_epi32(ni, 1);
    __m256i n2 = _mm256_sub_epi32(ni, n1);
    const __m256i bias = _mm256_set1_epi32(127);
    vf_t f1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    vf_t f2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, f1), f2);
}
static inline vf_t vf_select_lt(vf_t x, vf_t t, vf_t a, vf_t b)
{
    return _mm256_blendv_ps(b, a, _mm256_cmp_ps(x, t, _CMP_LT_OQ));
}
/* 1/d by division: on Zen 3 the divider runs beside the FMA pipes, where rcp and two
   Newton steps took five of their slots and twice the latency -- sigmoid 7.9 -> 5.8
   ns a vector over an array, 23.4 -> 20.8 ns a dependent call (1 thread, best of
   1000), with the same results on the tests' dense grid (the Newton steps already
   rounded correctly there); layers 1.00-1.03x faster (batch 1 and 64, streams) */
static inline vf_t vf_recip(vf_t d) { return _mm256_div_ps(_mm256_set1_ps(1.0f), d); }
/* a / d to the precision of recip: here a division */
static inline vf_t vf_quot(vf_t a, vf_t d) { return _mm256_div_ps(a, d); }
static inline __m256i frn_avx2_mask32(int n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline vf_t vf_load_n(const float *p, int n)
{
    return _mm256_maskload_ps(p, frn_avx2_mask32(n));
}
static inline void vf_store_n(float *p, vf_t v, int n)
{
    _mm256_maskstore_ps(p, frn_avx2_mask32(n), v);
}

/* ---- double ---- */
typedef __m256d vd_t;
#define VD_LANES 4
static inline vd_t vd_load(const double *p) { return _mm256_loadu_pd(p); }
static inline vd_t vd_load_reg(const double *p)
{
    vd_t v = _mm256_loadu_pd(p);
    __asm__("" : "+x"(v));
    return v;
}
static inline void vd_store(double *p, vd_t v) { _mm256_storeu_pd(p, v); }
static inline vd_t vd_set1(double a) { return _mm256_set1_pd(a); }
static inline vd_t vd_zero(void) { return _mm256_setzero_pd(); }
static inline vd_t vd_add(vd_t a, vd_t b) { return _mm256_add_pd(a, b); }
static inline vd_t vd_sub(vd_t a, vd_t b) { return _mm256_sub_pd(a, b); }
static inline vd_t vd_mul(vd_t a, vd_t b) { return _mm256_mul_pd(a, b); }
static inline vd_t vd_div(vd_t a, vd_t b) { return _mm256_div_pd(a, b); }
static inline vd_t vd_fma(vd_t a, vd_t b, vd_t c) { return _mm256_fmadd_pd(a, b, c); }
static inline vd_t vd_fnma(vd_t a, vd_t b, vd_t c) { return _mm256_fnmadd_pd(a, b, c); }
static inline vd_t vd_min(vd_t a, vd_t b) { return _mm256_min_pd(a, b); }
static inline vd_t vd_max(vd_t a, vd_t b) { return _mm256_max_pd(a, b); }
static inline vd_t vd_abs(vd_t a) { return _mm256_andnot_pd(_mm256_set1_pd(-0.0), a); }
static inline vd_t vd_copysign(vd_t mag, vd_t s)
{
    const vd_t m = _mm256_set1_pd(-0.0);
    return _mm256_or_pd(_mm256_andnot_pd(m, mag), _mm256_and_pd(m, s));
}
static inline vd_t vd_round(vd_t a)
{
    return _mm256_round_pd(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
static inline vd_t vd_ldexp(vd_t p, vd_t n)
{
    __m256i ni = _mm256_cvtepi32_epi64(_mm256_cvtpd_epi32(n));
    /* arithmetic shift of 64-bit lanes is AVX-512; n1 = n/2 rounded toward -inf via
       the 32-bit values instead */
    __m128i n32 = _mm256_cvtpd_epi32(n);
    __m256i n1 = _mm256_cvtepi32_epi64(_mm_srai_epi32(n32, 1));
    __m256i n2 = _mm256_sub_epi64(ni, n1);
    const __m256i bias = _mm256_set1_epi64x(1023);
    vd_t f1 = _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_add_epi64(n1, bias), 52));
    vd_t f2 = _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_add_epi64(n2, bias), 52));
    return _mm256_mul_pd(_mm256_mul_pd(p, f1), f2);
}
static inline vd_t vd_select_lt(vd_t x, vd_t t, vd_t a, vd_t b)
{
    return _mm256_blendv_pd(b, a, _mm256_cmp_pd(x, t, _CMP_LT_OQ));
}
static inline vd_t vd_recip(vd_t d) { return _mm256_div_pd(_mm256_set1_pd(1.0), d); }
static inline vd_t vd_quot(vd_t a, vd_t d) { return _mm256_div_pd(a, d); }
static inline __m256i frn_avx2_mask64(int n)
{
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
}
static inline vd_t vd_load_n(const double *p, int n)
{
    return _mm256_maskload_pd(p, frn_avx2_mask64(n));
}
static inline void vd_store_n(double *p, vd_t v, int n)
{
    _mm256_maskstore_pd(p, frn_avx2_mask64(n), v);
}

#endif
