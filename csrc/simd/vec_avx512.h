/*
 * vec_avx512.h -- AVX-512 (F, DQ, BW, VL) vector primitives for the kernels.
 *
 * Every ISA header offers the same small vocabulary, for float (vf_*) and double
 * (vd_*), so that the micro-kernels, activations and cell epilogues are written
 * once (kernels/, cells/) and compiled per ISA by isa/step_*.c. Only isa/ files
 * include this header, and they are the only files built with -mavx512*.
 *
 * min/max follow the x86 rule: when either operand is NaN the SECOND one is
 * returned, so callers put the value that must propagate NaN second.
 */
#ifndef FRN_VEC_AVX512_H
#define FRN_VEC_AVX512_H
#ifdef FRN_EMULATE_AVX512
#include "emu_avx512.h" /* test builds on CPUs without AVX-512 (setup.py) */
#else
#include <immintrin.h>
#endif

#define FRN_ISA_SUFFIX avx512

/* ---- float ---- */
typedef __m512 vf_t;
#define VF_LANES 16
static inline vf_t vf_load(const float *p) { return _mm512_loadu_ps(p); }
/* a load kept in a register: the compiler may otherwise fold it into each
   instruction that uses the value, loading it once per use */
static inline vf_t vf_load_reg(const float *p)
{
    vf_t v = _mm512_loadu_ps(p);
#ifndef FRN_EMULATE_AVX512
    __asm__("" : "+v"(v));
#endif
    return v;
}
static inline void vf_store(float *p, vf_t v) { _mm512_storeu_ps(p, v); }
static inline vf_t vf_set1(float a) { return _mm512_set1_ps(a); }
static inline vf_t vf_zero(void) { return _mm512_setzero_ps(); }
static inline vf_t vf_add(vf_t a, vf_t b) { return _mm512_add_ps(a, b); }
static inline vf_t vf_sub(vf_t a, vf_t b) { return _mm512_sub_ps(a, b); }
static inline vf_t vf_mul(vf_t a, vf_t b) { return _mm512_mul_ps(a, b); }
static inline vf_t vf_div(vf_t a, vf_t b) { return _mm512_div_ps(a, b); }
static inline vf_t vf_fma(vf_t a, vf_t b, vf_t c) { return _mm512_fmadd_ps(a, b, c); }
static inline vf_t vf_fnma(vf_t a, vf_t b, vf_t c) { return _mm512_fnmadd_ps(a, b, c); }
static inline vf_t vf_min(vf_t a, vf_t b) { return _mm512_min_ps(a, b); }
static inline vf_t vf_max(vf_t a, vf_t b) { return _mm512_max_ps(a, b); }
static inline vf_t vf_abs(vf_t a) { return _mm512_abs_ps(a); }
/* |mag| with the sign of s */
static inline vf_t vf_copysign(vf_t mag, vf_t s)
{
    const __m512i m = _mm512_set1_epi32(0x80000000);
    return _mm512_castsi512_ps(_mm512_ternarylogic_epi32(_mm512_castps_si512(mag),
                                                         _mm512_castps_si512(s), m, 0xD8));
}
static inline vf_t vf_round(vf_t a)
{
    return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
/* p * 2**n for integer-valued n; overflow gives inf, underflow 0 or a subnormal */
static inline vf_t vf_ldexp(vf_t p, vf_t n) { return _mm512_scalef_ps(p, n); }
/* x < t ? a : b (false for NaN x) */
static inline vf_t vf_select_lt(vf_t x, vf_t t, vf_t a, vf_t b)
{
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, t, _CMP_LT_OQ), b, a);
}
/* 1/d to float rounding: a 14-bit estimate and one Newton step */
static inline vf_t vf_recip(vf_t d)
{
    vf_t y = _mm512_rcp14_ps(d);
    vf_t e = _mm512_fnmadd_ps(d, y, _mm512_set1_ps(1.0f));
    return _mm512_fmadd_ps(y, e, y);
}
/* a / d to the precision of recip: a times the reciprocal */
static inline vf_t vf_quot(vf_t a, vf_t d) { return _mm512_mul_ps(a, vf_recip(d)); }
static inline vf_t vf_load_n(const float *p, int n)
{
    return _mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1u), p);
}
static inline void vf_store_n(float *p, vf_t v, int n)
{
    _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1u), v);
}

/* ---- double ---- */
typedef __m512d vd_t;
#define VD_LANES 8
static inline vd_t vd_load(const double *p) { return _mm512_loadu_pd(p); }
static inline vd_t vd_load_reg(const double *p)
{
    vd_t v = _mm512_loadu_pd(p);
#ifndef FRN_EMULATE_AVX512
    __asm__("" : "+v"(v));
#endif
    return v;
}
static inline void vd_store(double *p, vd_t v) { _mm512_storeu_pd(p, v); }
static inline vd_t vd_set1(double a) { return _mm512_set1_pd(a); }
static inline vd_t vd_zero(void) { return _mm512_setzero_pd(); }
static inline vd_t vd_add(vd_t a, vd_t b) { return _mm512_add_pd(a, b); }
static inline vd_t vd_sub(vd_t a, vd_t b) { return _mm512_sub_pd(a, b); }
static inline vd_t vd_mul(vd_t a, vd_t b) { return _mm512_mul_pd(a, b); }
static inline vd_t vd_div(vd_t a, vd_t b) { return _mm512_div_pd(a, b); }
static inline vd_t vd_fma(vd_t a, vd_t b, vd_t c) { return _mm512_fmadd_pd(a, b, c); }
static inline vd_t vd_fnma(vd_t a, vd_t b, vd_t c) { return _mm512_fnmadd_pd(a, b, c); }
static inline vd_t vd_min(vd_t a, vd_t b) { return _mm512_min_pd(a, b); }
static inline vd_t vd_max(vd_t a, vd_t b) { return _mm512_max_pd(a, b); }
static inline vd_t vd_abs(vd_t a) { return _mm512_abs_pd(a); }
static inline vd_t vd_copysign(vd_t mag, vd_t s)
{
    const __m512i m = _mm512_set1_epi64((long long)0x8000000000000000ULL);
    return _mm512_castsi512_pd(_mm512_ternarylogic_epi64(_mm512_castpd_si512(mag),
                                                         _mm512_castpd_si512(s), m, 0xD8));
}
static inline vd_t vd_round(vd_t a)
{
    return _mm512_roundscale_pd(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
static inline vd_t vd_ldexp(vd_t p, vd_t n) { return _mm512_scalef_pd(p, n); }
static inline vd_t vd_select_lt(vd_t x, vd_t t, vd_t a, vd_t b)
{
    return _mm512_mask_blend_pd(_mm512_cmp_pd_mask(x, t, _CMP_LT_OQ), b, a);
}
static inline vd_t vd_recip(vd_t d) { return _mm512_div_pd(_mm512_set1_pd(1.0), d); }
static inline vd_t vd_quot(vd_t a, vd_t d) { return _mm512_div_pd(a, d); }
static inline vd_t vd_load_n(const double *p, int n)
{
    return _mm512_maskz_loadu_pd((__mmask8)((1u << n) - 1u), p);
}
static inline void vd_store_n(double *p, vd_t v, int n)
{
    _mm512_mask_storeu_pd(p, (__mmask8)((1u << n) - 1u), v);
}

#endif
