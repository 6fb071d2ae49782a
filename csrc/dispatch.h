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

/*
 * Threads worth using for work of `step_fma` multiply-adds between two hand-overs
 * (from FRN_STEP_FMA) in an OpenMP region of `region_fma` (from FRN_CALL_FMA; 0: no
 * region of its own, a stream on its helper threads). Handing a phase to a second
 * thread costs about 0.5 us on this machine (two cores, spinning). A recurrent step
 * on two threads pays from 16k multiply-adds (LSTM H=64 at batch 1): medians of 5
 * alternated runs on 2 threads against 1, T=100, I=H -- batch 1, LSTM H=64 0.93 ->
 * 0.75 us a step, GRU H=128 2.51 -> 1.75, GRU H=80 (19k) 1.10 -> 0.96; batch 2,
 * GRU H=64 (25k) 1.32 -> 1.17; streams, LSTM H=64 1.80 -> 1.45 us a step, LSTM H=48
 * (18k) the same; but GRU H=64 at batch 1 (12k) 0.69 -> 0.74. A whole call of one
 * GEMM (fastrnn.Linear) also opens an OpenMP region: there 16k multiply-adds on 2
 * threads were 13% slower (5.6 -> 6.3 us for a 128 x 128 Linear on one row) and
 * 64k the same as 1 thread; so were short sequences, whose region a direction's
 * whole call must pay for (2 threads, batch 1, medians of 5 alternated runs: LSTM
 * H=64 T=1 (16k) 6.8 -> 5.7 us a call on one thread, T=2 7.6 -> 6.5; GRU H=128 T=1
 * (49k) 8.2 -> 8.8).
 *
 * Those figures hold while the two cores sit close (a cache line's round trip
 * between them ~120 ns here). A virtual machine's host may put them far apart
 * (~320 ns, another core complex) and move them back, minutes later; then every
 * hand-over costs more than twice as much, and small steps run faster on one
 * thread. Measured in the far placement, 2 threads against 1, batch 1, T=100,
 * I=H, medians of 11 rounds (us a step): LSTM H=64 (16k a step) 1.74 against 0.91,
 * GRU H=128 (49k) 3.59 / 2.49, LSTM H=128 (65k) 4.34 / 3.27, GRU H=192 (110k)
 * 5.89 / 5.60, LSTM H=192 (147k) 7.26 / 7.38, GRU H=256 (196k) 8.22 / 10.2.
 * Streams on their helper threads (no region; W_ih and W_hh a step) break even
 * sooner: LSTM H=64 (33k) 2.41 / 1.81 and 2.61 / 1.81 (8 alternated runs), GRU
 * H=96 (55k) 2.95 / 2.63, GRU H=128 (98k) 3.94 / 4.14 and 3.95 / 4.19, LSTM H=128
 * (131k) 4.61 / 5.45. So while the cores are far apart (a round trip over
 * FRN_FAR_NS, probed at most every FRN_PROBE_NS), steps under FRN_STEP_FMA_FAR
 * (FRN_HELPER_FMA_FAR for streams) run on one thread. `probe` 0: decide on the
 * last probe, start none (a stream's helpers are spinning on the other cores).
 *
 * Between the two: a round trip over FRN_MID_NS but not past FRN_FAR_NS, as on an
 * Intel Xeon VM (Sapphire Rapids class; its probe reads 135-155 ns where the Zen 4
 * VM's close cores read 56-103). There, 2 threads against 1 (medians of 5
 * alternated runs, batch 1, T=100, us a step): LSTM H=64 (16k) 1.08-1.16 / 0.90-0.94,
 * H=80 (26k) 1.45-1.49 / 1.39, GRU H=96 (28k) 1.55-1.59 / 1.41-1.43, but LSTM H=96
 * (37k) 1.82-1.91 / 2.03-2.05 and GRU H=112 (38k) 1.71-1.75 / 1.89-1.92: steps
 * pay from FRN_STEP_FMA_MID. Streams on their helpers as when far apart: GRU H=96
 * (55k) 2.45-2.52 / 2.28, LSTM H=96 (74k) 2.86-3.06 / 2.94, GRU H=128 (98k)
 * 3.33-3.39 / 3.67.
 */
#define FRN_STEP_FMA 16384.0
#define FRN_CALL_FMA 65536.0
#define FRN_STEP_FMA_FAR 131072.0
#define FRN_HELPER_FMA_FAR 65536.0
#define FRN_STEP_FMA_MID 32768.0
#define FRN_FAR_NS 220.0
#define FRN_MID_NS 115.0
#define FRN_PROBE_NS 500000000LL

/*
 * A chunk's input projection goes to more threads than its layer steps on
 * (engine.h, project_chunk) from FRN_SPREAD_FMA multiply-adds while the cores are
 * close: LSTM I=40 H=32, T=100 (512k) gained nothing. Further apart, from
 * FRN_SPREAD_FMA_APART: the XP rows the other core writes come back to this one
 * across the cores, for every K multiply-adds it took over. On the Intel Xeon VM
 * (between, above), batch 1, T=100, medians of 5 alternated runs, us a step, 2
 * threads against 1: GRU I=64 H=64 (1.2M) 0.74-0.75 / 0.61-0.64, I=128 H=64 (2.5M) 0.83-0.85
 * / 0.77-0.79, GRU I=128 H=32 (1.2M) 0.49-0.50 / 0.36-0.38, but I=256 H=64 (4.9M)
 * 1.10-1.12 / 1.14-1.18, I=512 H=64 (9.8M) 1.52-1.59 / 1.80-1.83, LSTM I=512 H=32
 * (6.5M) 1.08-1.09 / 1.16-1.21.
 */
#define FRN_SPREAD_FMA (1024.0 * 1024.0)
#define FRN_SPREAD_FMA_APART (4.0 * 1024.0 * 1024.0)
/* frn_spread_pays: fastrnn.h */
/* frn_useful_threads: fastrnn.h */

/* Whether this process is a child of fork() (dispatch.c): its calls run on one
   thread, and a stream's helpers are its parent's. */
int frn_in_child(void);

extern const frn_kernels frn_kernels_generic;
#ifdef FRN_HAVE_X86
extern const frn_kernels frn_kernels_avx2;
extern const frn_kernels frn_kernels_avx512;
#endif
#endif
