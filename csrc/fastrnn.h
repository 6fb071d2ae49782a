/*
 * fastrnn.h -- the C interface of the fastrnn engine.
 *
 * One entry point per operation. Python (fastrnn/_validate.py) has checked every
 * shape, size and index before anything here runs; the C code trusts its
 * arguments and never touches Python objects. Sizes travel in structs, every
 * entry point returns a status (FRN_OK or an FRN_E* code).
 *
 * A network's weights are packed once, at load time, into a frn_plan for one
 * instruction set and one dtype (see layers/pack.c for the layout); a call only
 * splits its work among threads.
 */
#ifndef FASTRNN_H
#define FASTRNN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes. */
enum { FRN_OK = 0, FRN_ENOMEM = 1, FRN_EINVAL = 2, FRN_EISA = 3 };

/* Instruction sets, lowest first. */
enum { FRN_ISA_GENERIC = 0, FRN_ISA_AVX2 = 1, FRN_ISA_AVX512 = 2, FRN_ISA_COUNT = 3 };

/* Cell kinds. */
enum { FRN_RNN_TANH = 0, FRN_RNN_RELU = 1, FRN_LSTM = 2, FRN_GRU = 3 };

/* Element types. */
enum { FRN_F32 = 0, FRN_F64 = 1 };

/* What a network is: everything needed to pack its weights. */
typedef struct {
    int cell;                /* FRN_RNN_TANH .. FRN_GRU */
    int dtype;               /* FRN_F32 or FRN_F64 */
    int num_layers;          /* >= 1 */
    int num_dirs;            /* 1 or 2 */
    int input_size;          /* I >= 1 */
    int hidden_size;         /* H >= 1 */
    int proj_size;           /* P: 0, or 1 <= P < H (LSTM only) */
    int has_bias;            /* 0 or 1 */
    int peephole;            /* LSTM only */
    int linear_before_reset; /* GRU only */
} frn_desc;

/*
 * The weights of one (layer, direction), in PyTorch's layout, C-contiguous, of
 * the plan's dtype. b_ih/b_hh are NULL without bias; w_hr is NULL unless
 * proj_size > 0; peephole (3, H) rows (i, f, o) is NULL unless peephole.
 */
typedef struct {
    const void *w_ih;     /* (G*H, K_in) */
    const void *w_hh;     /* (G*H, H_out) */
    const void *b_ih;     /* (G*H,) */
    const void *b_hh;     /* (G*H,) */
    const void *w_hr;     /* (P, H) */
    const void *peephole; /* (3, H) */
} frn_weights;

typedef struct frn_plan frn_plan;

/*
 * One call of a whole network on a sequence.
 * x: element (t, b, i) at x[t*x_st + b*x_sb + i]; out likewise with (out_st, out_sb)
 * and D*H_out features per row. h0/c0 may be NULL (zeros); hn/cn are written,
 * (L*D, B, H_out) and (L*D, B, H) C-contiguous. lengths may be NULL (all T);
 * else each in [1, T], and out must be zero-filled by the caller past each length.
 */
typedef struct {
    int T, B;
    const void *x;
    ptrdiff_t x_st, x_sb;
    const int64_t *lengths;
    const void *h0, *c0;
    void *out;
    ptrdiff_t out_st, out_sb;
    void *hn, *cn;
} frn_seq;

/* Dispatch (dispatch.c). */
int frn_cpu_isa(void);                 /* best ISA this CPU and this build support */
int frn_isa_compiled(int isa);         /* 1 if this build has kernels for isa */
int frn_get_isa(void);                 /* the ISA new plans use */
int frn_set_isa(int isa);              /* FRN_EISA if above frn_cpu_isa() */
const char *frn_isa_name(int isa);

/* Plans (layers/pack.c). weights has num_layers*num_dirs entries, index l*D+d. */
int frn_plan_create(const frn_desc *desc, const frn_weights *weights, frn_plan **out);
void frn_plan_free(frn_plan *plan);
int frn_plan_isa(const frn_plan *plan);
size_t frn_plan_bytes(const frn_plan *plan);

/* Whole-sequence inference with n_threads OpenMP threads (>= 1). */
int frn_forward(const frn_plan *plan, const frn_seq *seq, int n_threads);

/*
 * Streams (unidirectional plans): one time step of every layer, the state carried
 * inside the stream. x (B, I) and out (B, H_out) C-contiguous. frn_stream_state
 * copies the state out (set=0) or in (set=1): h (L, B, H_out), c (L, B, H) for LSTM
 * (c may be NULL), C-contiguous.
 */
typedef struct frn_stream frn_stream;
int frn_stream_create(const frn_plan *plan, int B, frn_stream **out);
void frn_stream_free(frn_stream *s);
/* n_threads < 1: the calling thread's OpenMP setting (omp_get_max_threads). */
int frn_stream_step(frn_stream *s, const void *x, void *out, int n_threads);
int frn_stream_state(frn_stream *s, void *h, void *c, int set);
/* One step from the state h (L, B, H_out) and, for LSTM, c (L, B, H) -- NULL for
   zeros -- as a cell call makes: the new h of the last layer goes to out (B,
   H_out), the new c of every layer to cout (L, B, H) unless it is NULL. Each such
   step runs like a layer's call (an OpenMP region when it pays, never the stream's
   helper threads) and nothing is made ahead from the state it leaves. */
int frn_stream_cell(frn_stream *s, const void *x, const void *h, const void *c, void *out,
                    void *cout, int n_threads);
/* Row b of the carried state becomes row idx[b] (each in [0, B)): beam search. */
int frn_stream_reorder(frn_stream *s, const int32_t *idx);
/* How many helper threads the stream keeps (0 until a step runs on more than one
   thread). They wait for the next step spinning on the other cores, so work run
   between steps on more threads (an OpenMP region) would fight them for the cores:
   run it on one thread while this is > 0. */
int frn_stream_helper_count(const frn_stream *s);

/*
 * Dense layers: y (M, N) = x (M, K) W^T + b with W (N, K) packed once into the same
 * panels and micro-kernels as the recurrent layers (output heads, decoders).
 */
typedef struct frn_linear frn_linear;
int frn_linear_create(int dtype, int N, int K, const void *w, const void *bias, frn_linear **out);
void frn_linear_free(frn_linear *lin);
int frn_linear_apply(const frn_linear *lin, int M, const void *x, void *y, int n_threads);

/* Test hooks: the activations and one GEMM through the micro-kernels of an ISA. */
int frn_activation(int isa, int dtype, int kind, const void *x, void *y, size_t n);
int frn_gemm_test(int isa, int dtype, int M, int N, int K, const void *a, const void *b_t,
                  const void *bias, void *c, int n_threads);

/* Bench hook: the round trip of one cache line between the CPUs of two OpenMP
   threads, in ns (average over `iters`), or -1 when two threads cannot run. What a
   hand-over between two threads of a team costs on this machine now. */
double frn_core_roundtrip_ns(int iters);

/* Tests: how many of nt threads a call uses for `step_fma` multiply-adds between
   hand-overs in a region of `region_fma` (dispatch.h); a probe of where the cores
   are, now (its round trip in ns, or -1 when it could not tell: the verdict stays);
   the verdict forced (0 close, 1 far, 2 between) or, far < 0, probed again. */
int frn_useful_threads(double step_fma, double region_fma, int nt, int probe);
/* Whether a batch of B rows in `groups` groups of rows (engine.h, split_groups)
   leaves the largest 1.2 times its share or more while the cores are close: its
   units are split instead. */
int frn_split_uneven(int B, int groups);
/* Whether a batch-1 projection of `fma` multiply-adds, of a layer stepping on one
   thread, pays for more threads (dispatch.h, FRN_SPREAD_FMA). */
int frn_spread_pays(double fma);
double frn_probe_cores(void);
void frn_set_far(int far);
/* Tests and benchmarks: how whole-sequence calls split a batch over threads -- by
   hidden units (0), in groups of rows whenever it can (1), or as measured to pay
   (-1, the default; layers/engine.h, FRN_SPLIT_ROWS). */
void frn_set_batch_split(int mode);
int frn_batch_split_mode(void);
/* Whether batch-1 layers weave their input projection into the recurrent tiles
   where they can (layers/engine.h, weaves): by the CPU's vendor (mode -1, the
   default), never (0) or always (1, tests: every path on every CPU). */
void frn_set_weave(int mode);
int frn_weave_pays(void);
/* Whether row tiles ask for the next panel of large weights ahead (layers/engine.h,
   run_panel_rows; AVX-512): on Intel CPUs (mode -1, the default), never (0) or
   always (1, tests). */
void frn_set_prefetch_next(int mode);
int frn_prefetch_next_pays(void);
/* Tests: helpers join one step in four up to `ns` late (a helper the OS ran late). */
void frn_set_helper_lag(int ns);
/* Tests: streams made from now on start their phase numbers at k (sched.h). */
void frn_set_stream_phase0(uint64_t k);

/* Threads and build (dispatch.c). frn_team_threads: the threads a call asking for
   n may use (n < 1: the calling thread's OpenMP setting), at least 1, at most the
   processors; 1 in a child of fork(). */
int frn_team_threads(int n);
/* How many fork()s this process descends from (0 in the first): a flag set before
   a fork, by a thread the child does not have, can be told from one set in the
   child. */
unsigned frn_forks(void);
int frn_openmp_enabled(void);
int frn_max_threads(void);
void frn_set_max_threads(int n);
/* Tests only: the processors calls count as available (n < 1: ask OpenMP again), so
   that teams of 3 and 4 threads run on a 2-core machine. */
void frn_set_procs(int n);
const char *frn_compiler(void);

#ifdef __cplusplus
}
#endif
#endif /* FASTRNN_H */
