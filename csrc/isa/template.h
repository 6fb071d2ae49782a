/*
 * template.h -- instantiate the engine for one ISA (whose simd/vec_*.h the including
 * file has pulled in) and both dtypes. Defines, per dtype,
 *   frn_forward_<dt>_<isa>, frn_stream_step_<dt>_<isa>, frn_activation_<dt>_<isa>,
 *   frn_gemm_test_<dt>_<isa>
 * and the ISA's entry table frn_kernels_<isa>.
 */
#include <stdlib.h>
#include <string.h>

#include "../layers/omp.h"
#include "../layers/plan.h"
#include "../dispatch.h"

#define FRN_CAT3_(a, b, c) a##_##b##_##c
#define FRN_CAT3(a, b, c) FRN_CAT3_(a, b, c)
#define FN(name) FRN_CAT3(name, FRN_TS, FRN_ISA_SUFFIX)

/* float */
#define FRN_T float
#define FRN_TS f32
#define VT vf_t
#define VL VF_LANES
#define V(op) vf_##op
#define FRN_ACT_DOUBLE 0
#include "../layers/engine.h"
#undef FRN_T
#undef FRN_TS
#undef VT
#undef VL
#undef V
#undef FRN_ACT_DOUBLE

/* double */
#define FRN_T double
#define FRN_TS f64
#define VT vd_t
#define VL VD_LANES
#define V(op) vd_##op
#define FRN_ACT_DOUBLE 1
#include "../layers/engine.h"
#undef FRN_T
#undef FRN_TS
#undef VT
#undef VL
#undef V
#undef FRN_ACT_DOUBLE

#define FRN_KT(name, dt) FRN_CAT3(name, dt, FRN_ISA_SUFFIX)

static int FRN_KT(forward, any)(const frn_plan *p, const frn_seq *q, int nt)
{
    return p->d.dtype == FRN_F64 ? FRN_KT(forward, f64)(p, q, nt) : FRN_KT(forward, f32)(p, q, nt);
}
static int FRN_KT(stream_step, any)(frn_stream *s, const void *x, void *out, int nt)
{
    return s->p->d.dtype == FRN_F64 ? FRN_KT(stream_step, f64)(s, x, out, nt)
                                    : FRN_KT(stream_step, f32)(s, x, out, nt);
}
static int FRN_KT(stream_sync, any)(frn_stream *s)
{
    return s->p->d.dtype == FRN_F64 ? FRN_KT(stream_sync, f64)(s) : FRN_KT(stream_sync, f32)(s);
}
static int FRN_KT(activation, any)(int dtype, int kind, const void *x, void *y, size_t n)
{
    if (dtype == FRN_F64)
        FRN_KT(activation, f64)(kind, (const double *)x, (double *)y, n);
    else
        FRN_KT(activation, f32)(kind, (const float *)x, (float *)y, n);
    return FRN_OK;
}
static int FRN_KT(gemm_test, any)(int dtype, int M, int N, int K, const void *a, const void *b,
                                  const void *bias, void *c, int nt)
{
    return dtype == FRN_F64
               ? FRN_KT(gemm_test, f64)(M, N, K, (const double *)a, b, (const double *)bias,
                                        (double *)c, nt)
               : FRN_KT(gemm_test, f32)(M, N, K, (const float *)a, b, (const float *)bias,
                                        (float *)c, nt);
}

static int FRN_KT(linear_apply, any)(const frn_linear *l, int M, const void *x, void *y, int nt)
{
    return l->dtype == FRN_F64
               ? FRN_KT(linear_apply, f64)(l, M, (const double *)x, (double *)y, nt)
               : FRN_KT(linear_apply, f32)(l, M, (const float *)x, (float *)y, nt);
}

const frn_kernels FRN_CAT3(frn, kernels, FRN_ISA_SUFFIX) = {
    FRN_KT(forward, any),
    FRN_KT(stream_step, any),
    FRN_KT(stream_sync, any),
    FRN_KT(activation, any),
    FRN_KT(gemm_test, any),
    FRN_KT(linear_apply, any),
};
