/* dispatch.h -- the per-ISA entry table (filled by isa/template.h). */
#ifndef FRN_DISPATCH_H
#define FRN_DISPATCH_H
#include "fastrnn.h"

typedef struct {
    int (*forward)(const frn_plan *p, const frn_seq *q, int n_threads);
    int (*stream_step)(frn_stream *s, const void *x, void *out, int n_threads);
    int (*stream_sync)(frn_stream *s); /* the state is the caller's to change */
    int (*activation)(int dtype, int kind, const void *x, void *y, size_t n);
    int (*gemm_test)(int dtype, int M, int N, int K, const void *a, const void *b_t,
                     const void *bias, void *c, int n_threads);
    int (*linear_apply)(const frn_linear *lin, int M, const void *x, void *y, int n_threads);
} frn_kernels;

extern const frn_kernels frn_kernels_generic;
#ifdef FRN_HAVE_X86
extern const frn_kernels frn_kernels_avx2;
extern const frn_kernels frn_kernels_avx512;
#endif
#endif
