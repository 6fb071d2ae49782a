/*
 * plan.h -- a network's weights, packed once for one ISA and dtype.
 *
 * Units are grouped in blocks of VL (the vector width of the ISA and dtype); the
 * last block is zero-padded. A "panel" is the packed slice of a weight matrix that
 * one micro-kernel tile reads: K rows of W = NV*VL values, gate-interleaved so one
 * tile yields every gate of the same units and the cell epilogue can run on it
 * straight away (DESIGN.md, "Where the time goes"):
 *
 *   matrix          panel covers                     NV   used by
 *   W_ih (x)        U_x unit blocks x all G gates    G*U_x input projection
 *   W_hh LSTM       1 unit block x (i, f, g, o)      4    recurrent step
 *   W_hh GRU        1 unit block x (r, z, n)         3    linear_before_reset=True
 *   W_hh GRU        2 unit blocks x (r, z)           4    phase 1 of lbr=False
 *   W_hn GRU        4 unit blocks of n               4    phase 2 of lbr=False
 *   W_hh RNN        4 unit blocks                    4
 *   W_hr LSTM       4 blocks of projected units      4    projection
 *
 * The input projection of every step lands in XP rows of nbp*G*VL values in the
 * order [unit block][gate][lane] (row stride xw: one cache line more when that
 * width is a multiple of 512 bytes, see pack.c), with every bias that can be
 * folded in (b_ih + b_hh; for GRU with lbr=True, b_hn stays apart because r
 * multiplies it).
 * Reduction (K) dimensions are never padded, so padded units never feed back.
 *
 * Split panels (sub_h, AVX2 only): a 4-vector W_hh panel is stored as two
 * sub-panels of K x 2*VL, one after the other (vectors 0-1, then 2-3), so that a
 * tile of up to 6 rows can take half a panel at a time from one contiguous stream
 * (kernels/tile.h, "split panels").
 */
#ifndef FRN_PLAN_H
#define FRN_PLAN_H

#include <time.h>

#include "../fastrnn.h"
#include "sched.h"

typedef struct {
    int k_in;      /* input features of this layer */
    void *wih;     /* np_x panels of k_in x nv_x*VL */
    void *whh;     /* np_h panels of h_out x nv_h*VL */
    void *whn;     /* GRU lbr=False: np_n panels of H x 4*VL (n gate) */
    void *whr;     /* LSTM projection: np_p panels of H x 4*VL */
    void *bias_x;  /* xw values */
    void *bias_hn; /* GRU lbr=True: nbp*VL values */
    void *peep;    /* LSTM peepholes: 3 rows of nbp*VL (i, f, o) */
} frn_dir_w;

struct frn_plan {
    frn_desc d;
    int isa;
    int vl;        /* lanes per vector */
    int esz;       /* bytes per element */
    int G;         /* gates */
    int h_out;     /* proj_size or hidden_size */
    int nb, nbp;   /* unit blocks, padded to a multiple of every U of the cell */
    int xw;        /* XP row stride (nbp*G*VL values, or one cache line more) */
    int u_x, nv_x, np_x;
    int u_h, nv_h, np_h;
    int sub_h;     /* W_hh's panels split in two sub-panels (above) */
    int np_n;      /* GRU lbr=False */
    int pbp, np_p; /* projection: padded blocks of projected units, panels */
    int ldh;       /* row stride of the h state and of every per-row scratch */
    size_t bytes;  /* packed size */
    frn_dir_w *w;  /* num_layers * num_dirs */
};

/*
 * A stream: the carried state of every layer, padded rows, ping-pong h.
 *
 * A small step (under FRN_STREAM_OMP_FMA multiply-adds, engine.h) stepped on more
 * than one thread runs with the stream's own helper threads (an OpenMP region per
 * step costs ~1 us, as much as the arithmetic of such a step): they wait for the
 * next step spinning, then asleep after a while without steps, and share each
 * step's phases with the calling thread through `sched`. Phase numbers run on from
 * step to step; a step opens with a one-item phase the caller completes once it has
 * published the step's arguments, so a helper never sees a step before its inputs.
 * When the caller spends time between steps, the helpers also compute the next
 * step's recurrent products before it is called (engine.h, "eager").
 */
struct frn_stream {
    /* What the caller writes to open a step and the helpers spin on, in one cache
       line: the caller's stores take it from the helpers' caches once, not once per
       field (allocated 64-byte aligned) */
    /* the opening phase of the latest step, times 2, + 1 when its R phases follow it
       (engine.h, "eager"): in one word, so a helper that comes late walks the
       phases of the step it saw, not those of a later one */
    _Atomic uint64_t base __attribute__((aligned(64)));
    const void *x; /* the current step's arguments */
    void *out;
    _Atomic int active; /* threads allowed on the current step */
    int use_r;          /* the current step's cell phases take their products from r */
    int rev;            /* sweep direction of the next step (alternates) */
    int cur;            /* which of the two h buffers of every layer holds the state */
    _Atomic int quit;
    _Atomic int sleepers;
    /* the rest, written once a step at most */
    const frn_plan *p __attribute__((aligned(64)));
    int B;
    /* multiply-adds of a step (W_ih and W_hh of every layer) and of its largest layer
       (engine.h, stream_step), fixed with the plan and B */
    double fma, fma_layer;
    int *perm;   /* identity: streams have no lengths */
    void **h;    /* 2 per layer, B x ldh */
    void **c;    /* per layer, B x ldh (LSTM) */
    void *m, *z, *xp;
    /* helper threads */
    int nhelp;
    void *threads;          /* pthread_t[nhelp] */
    int pid;                /* the process that started them */
    frn_sched *sched;
    uint64_t k;             /* the caller's next phase */
    _Atomic int caller_cpu; /* the CPU of the caller that last started or woke the helpers */
    void *mu, *cv;          /* pthread mutex and condition variable */
    /* the ISA's share of a step whose first phase is k0 (and of its R phases) */
    void (*team)(struct frn_stream *S, int tid, uint64_t k0, int eager);
    /* eager recurrent products (engine.h, stream_recur): W_hh h of every layer's
       state, L x B x xw in the XP layout, and the states they are made from */
    void *r;
    void **rh;
    int r_pending; /* the helpers run (or ran) R phases the caller has not joined */
    int r_valid;   /* r holds the products of the current state */
    int64_t t_ret; /* when the last step returned (ns) */
    double gap_ns; /* the caller's time between steps, a moving average */
    int cell;      /* stepped by frn_stream_cell: a call of its own each step, with
                      its own state (no helper threads, nothing made ahead) */
};

static inline int64_t frn_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* A packed dense layer: panels of 4 unit blocks of VL outputs (pack.c). */
struct frn_linear {
    int isa, dtype, vl, esz;
    int N, K, nbp, np, xw;
    void *w;    /* np panels of K x 4*VL */
    void *bias; /* xw values */
};

/* Pack rows of a row-major (rows x K) matrix into panels of U unit blocks x ng gates
   starting at gate g0, whole (sv = 0) or as sub-panels of sv vectors (pack.c). */
void frn_pack_panels(void *dst, const void *src, int dtype, int K, int H, int vl, int npanels,
                     int U, int g0, int ng, int sv);

/* Start n helper threads for a stream (dispatch.c); wake sleeping ones. */
int frn_stream_helpers(struct frn_stream *S, int n);
void frn_stream_wake(struct frn_stream *S);

/* The calling thread's scratch block of at least `bytes`, 64-byte aligned, kept
   between calls (dispatch.c); NULL when out of memory. */
void *frn_workspace(size_t bytes);
/* At the end of a call: the calling thread's block is freed if it is a big one. */
void frn_workspace_trim(void);

static inline int frn_lanes(int isa, int dtype)
{
    int f32 = isa == FRN_ISA_AVX512 ? 16 : 8;
    return dtype == FRN_F64 ? f32 / 2 : f32;
}

#endif
