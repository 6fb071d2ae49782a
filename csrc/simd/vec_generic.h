/*
 * vec_generic.h -- portable C "vectors" (see vec_avx512.h for the contract).
 *
 * A vector is a small struct of lanes handled by plain loops; the compiler turns
 * them into whatever SIMD the baseline target has (SSE2 on x86-64, NEON on
 * aarch64). No intrinsics, no ISA flags: this path builds everywhere.
 */
#ifndef FRN_VEC_GENERIC_H
#define FRN_VEC_GENERIC_H
#include <math.h>

#define FRN_ISA_SUFFIX generic

#define FRN_GENERIC_VEC(P, T, N)                                                       \
    typedef struct {                                                                   \
        T v[N];                                                                        \
    } P##_t;                                                                           \
    static inline P##_t P##_load(const T *p)                                           \
    {                                                                                  \
        P##_t r;                                                                       \
        for (int i = 0; i < N; i++) r.v[i] = p[i];                                     \
        return r;                                                                      \
    }                                                                                  \
    static inline void P##_store(T *p, P##_t a)                                        \
    {                                                                                  \
        for (int i = 0; i < N; i++) p[i] = a.v[i];                                     \
    }                                                                                  \
    static inline P##_t P##_set1(T a)                                                  \
    {                                                                                  \
        P##_t r;                                                                       \
        for (int i = 0; i < N; i++) r.v[i] = a;                                        \
        return r;                                                                      \
    }                                                                                  \
    static inline P##_t P##_zero(void) { return P##_set1((T)0); }                      \
    static inline P##_t P##_load_reg(const T *p) { return P##_load(p); }                \
    FRN_GENERIC_BIN(P, T, N, add, a.v[i] + b.v[i])                                     \
    FRN_GENERIC_BIN(P, T, N, sub, a.v[i] - b.v[i])                                     \
    FRN_GENERIC_BIN(P, T, N, mul, a.v[i] * b.v[i])                                     \
    FRN_GENERIC_BIN(P, T, N, div, a.v[i] / b.v[i])                                     \
    FRN_GENERIC_BIN(P, T, N, min, a.v[i] < b.v[i] ? a.v[i] : b.v[i])                   \
    FRN_GENERIC_BIN(P, T, N, max, a.v[i] > b.v[i] ? a.v[i] : b.v[i])                   \
    static inline P##_t P##_fma(P##_t a, P##_t b, P##_t c)                             \
    {                                                                                  \
        P##_t r;                                                                       \
        for (int i = 0; i < N; i++) r.v[i] = a.v[i] * b.v[i] + c.v[i];                 \
        return r;                                                                      \
    }                                                                                  \
    static inline P##_t P##_fnma(P##_t a, P##_t b, P##_t c)                            \
    {                                                                                  \
        P##_t r;                                                                       \
        for (int i = 0; i < N; i++) r.v[i] = c.v[i] - a.v[i] * b.v[i];                 \
        return r;                                                                      \
    }                                                                                  \
    static inline P##_t P##_abs(P##_t a)                                               \
    {                                                                                  \
        P##_t r;                                                                       \
        for (int i = 0; i < N; i++) r.v[i] = (T)fabs(a.v[i]);                          \
        return r;                                                                      \
    }                                                                                  \
    static inline P##_t P##_copysign(P##_t a, P##_t s)                                 \
    {                                                                                  \
        P##_t r;                                                                       \
        for (int i = 0; i < N; i++) r.v[i] = (T)copysign(a.v[i], s.v[i]);              \
        return r;                                                                      \
    }                                                                                  \
    static inline P##_t P##_round(P##_t a)                                             \
    {                                                                                  \
        P##_t r;                                                                       \
        for (int i = 0; i < N; i++) r.v[i] = (T)nearbyint(a.v[i]);                     \
        return r;                                                                      \
    }                                                                                  \
    static inline P##_t P##_ldexp(P##_t p, P##_t n)                                    \
    {                                                                                  \
        P##_t r;                                                                       \
        for (int i = 0; i < N; i++)                                                    \
            r.v[i] = n.v[i] == n.v[i] ? (T)ldexp(p.v[i], (int)n.v[i]) : n.v[i];        \
        return r;                                                                      \
    }                                                                                  \
    static inline P##_t P##_select_lt(P##_t x, P##_t t, P##_t a, P##_t b)              \
    {                                                                                  \
        P##_t r;                                                                       \
        for (int i = 0; i < N; i++) r.v[i] = x.v[i] < t.v[i] ? a.v[i] : b.v[i];        \
        return r;                                                                      \
    }                                                                                  \
    static inline P##_t P##_recip(P##_t d) { return P##_div(P##_set1((T)1), d); }      \
    static inline P##_t P##_quot(P##_t a, P##_t d) { return P##_div(a, d); }          \
    static inline P##_t P##_load_n(const T *p, int n)                                  \
    {                                                                                  \
        P##_t r = P##_zero();                                                          \
        for (int i = 0; i < n; i++) r.v[i] = p[i];                                     \
        return r;                                                                      \
    }                                                                                  \
    static inline void P##_store_n(T *p, P##_t a, int n)                               \
    {                                                                                  \
        for (int i = 0; i < n; i++) p[i] = a.v[i];                                     \
    }

#define FRN_GENERIC_BIN(P, T, N, name, expr)                                           \
    static inline P##_t P##_##name(P##_t a, P##_t b)                                   \
    {                                                                                  \
        P##_t r;                                                                       \
        for (int i = 0; i < N; i++) r.v[i] = expr;                                     \
        return r;                                                                      \
    }

#define VF_LANES 8
#define VD_LANES 4
FRN_GENERIC_VEC(vf, float, VF_LANES)
FRN_GENERIC_VEC(vd, double, VD_LANES)

#endif
