/*
 * dispatch.c -- pick the kernels once for this CPU; built without ISA flags.
 *
 * avx512 needs AVX-512 F, DQ, BW and VL; avx2 needs AVX2 and FMA; generic runs
 * anywhere. GCC's __builtin_cpu_supports also checks that the OS saves the wide
 * registers (XCR0). FASTRNN_ISA is read by the Python layer, which may only lower
 * the choice (frn_set_isa refuses anything above frn_cpu_isa()).
 * A plan remembers the ISA it was packed for and always runs that ISA's kernels.
 */
#define _GNU_SOURCE /* sched_getcpu, sched_setaffinity (Linux) */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dispatch.h"
#include "layers/omp.h"
#include "layers/plan.h"

static int frn_isa_current = -1;

static const frn_kernels *frn_table(int isa)
{
#ifdef FRN_HAVE_X86
    if (isa == FRN_ISA_AVX512) return &frn_kernels_avx512;
    if (isa == FRN_ISA_AVX2) return &frn_kernels_avx2;
#endif
    (void)isa;
    return &frn_kernels_generic;
}

int frn_isa_compiled(int isa)
{
#ifdef FRN_HAVE_X86
    return isa >= FRN_ISA_GENERIC && isa <= FRN_ISA_AVX512;
#else
    return isa == FRN_ISA_GENERIC;
#endif
}

int frn_cpu_isa(void)
{
#ifdef FRN_HAVE_X86
    __builtin_cpu_init();
#ifdef FRN_EMULATE_AVX512
    /* a test build (setup.py, simd/emu_avx512.h): the AVX-512 engine runs on
       emulated intrinsics, themselves built for AVX2 and FMA */
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return FRN_ISA_AVX512;
#endif
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
        return FRN_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return FRN_ISA_AVX2;
#endif
    return FRN_ISA_GENERIC;
}

int frn_get_isa(void)
{
    if (frn_isa_current < 0) frn_isa_current = frn_cpu_isa();
    return frn_isa_current;
}

int frn_set_isa(int isa)
{
    if (isa < FRN_ISA_GENERIC || isa > frn_cpu_isa() || !frn_isa_compiled(isa)) return FRN_EISA;
    frn_isa_current = isa;
    return FRN_OK;
}

const char *frn_isa_name(int isa)
{
    switch (isa) {
    case FRN_ISA_AVX512: return "avx512";
    case FRN_ISA_AVX2: return "avx2";
    default: return "generic";
    }
}

/* A child of fork() has none of its parent's threads: libgomp's pool there waits
   for workers that do not exist (a child hung in its first parallel region once its
   parent had run one), and the parent's streams' helpers are gone. Calls in a
   child run on one thread. */
static _Atomic int frn_forked = 0;
static _Atomic unsigned frn_fork_count = 0;

static void frn_mark_child(void)
{
    atomic_store(&frn_forked, 1);
    atomic_fetch_add(&frn_fork_count, 1);
}

int frn_in_child(void) { return atomic_load_explicit(&frn_forked, memory_order_relaxed); }

unsigned frn_forks(void) { return atomic_load_explicit(&frn_fork_count, memory_order_relaxed); }

__attribute__((constructor)) static void frn_watch_fork(void)
{
    pthread_atfork(NULL, NULL, frn_mark_child);
}

/* Threads a call may use: n < 1 asks for the calling thread's OpenMP setting
   (omp_get_max_threads: what set_num_threads set; the per-step stream call asks
   here rather than through a Python call of its own); then at least 1, at most the
   processors OpenMP can run on. More would only oversubscribe the cores (results
   do not depend on the count), and an absurd request (set_num_threads(100000), or
   the same through OMP_NUM_THREADS or threadpoolctl) would make the OpenMP runtime
   fail to start its threads. */
static int frn_procs = 0;

int frn_team_threads(int n)
{
    if (frn_in_child()) return 1;
    if (n < 1) n = omp_get_max_threads();
    /* omp_get_num_procs() asks the kernel for the affinity mask every time:
       read it once (a stream step is ~1 us; the syscall cost a tenth of it) */
    int procs = frn_procs;
    if (procs == 0) procs = frn_procs = omp_get_num_procs();
    if (n > procs) n = procs;
    if (n > 64) n = 64; /* FRN_MAX_TEAM (layers/sched.h) */
    return n < 1 ? 1 : n;
}

int frn_forward(const frn_plan *plan, const frn_seq *seq, int n_threads)
{
    n_threads = frn_team_threads(n_threads);
    return frn_table(plan->isa)->forward(plan, seq, n_threads);
}

int frn_linear_apply(const frn_linear *lin, int M, const void *x, void *y, int n_threads)
{
    if (M <= 0) return FRN_OK;
    return frn_table(lin->isa)->linear_apply(lin, M, x, y, frn_team_threads(n_threads));
}

int frn_activation(int isa, int dtype, int kind, const void *x, void *y, size_t n)
{
    if (isa > frn_cpu_isa() || !frn_isa_compiled(isa)) return FRN_EISA;
    return frn_table(isa)->activation(dtype, kind, x, y, n);
}

int frn_gemm_test(int isa, int dtype, int M, int N, int K, const void *a, const void *b_t,
                  const void *bias, void *c, int n_threads)
{
    if (isa > frn_cpu_isa() || !frn_isa_compiled(isa)) return FRN_EISA;
    return frn_table(isa)->gemm_test(dtype, M, N, K, a, b_t, bias, c, frn_team_threads(n_threads));
}

/* ---- per-thread workspace ----
 * A call's buffers (gathered inputs, input projections, states) come from a block
 * each calling thread keeps between calls: a fresh multi-megabyte allocation per
 * call costs page faults (glibc returns large blocks to the OS), about 1 us per
 * step at batch 1, H=512. Per thread, so many Python threads may call at once;
 * freed when the thread ends. A block past FRN_WS_KEEP is freed when its call
 * ends (frn_workspace_trim): one call on a long batch of a stack (its inner
 * layers' outputs: 500 MB for 3 layers of H=32 over 4000 steps of 512 rows) kept
 * that much for the life of the thread -- the main thread's: for good. Calls that
 * big pay the page faults, as a NumPy or torch call of that size does. */
#ifndef FRN_WS_KEEP
#define FRN_WS_KEEP ((size_t)32 << 20)
#endif
typedef struct {
    void *p;
    size_t n;
} frn_ws;

static pthread_key_t frn_ws_key;
static pthread_once_t frn_ws_once = PTHREAD_ONCE_INIT;

static void frn_ws_free(void *v)
{
    frn_ws *w = v;
    if (w) free(w->p);
    free(w);
}

static void frn_ws_init(void) { pthread_key_create(&frn_ws_key, frn_ws_free); }

void *frn_workspace(size_t bytes)
{
    pthread_once(&frn_ws_once, frn_ws_init);
    frn_ws *w = pthread_getspecific(frn_ws_key);
    if (!w) {
        w = calloc(1, sizeof *w);
        if (!w) return NULL;
        if (pthread_setspecific(frn_ws_key, w) != 0) {
            free(w);
            return NULL;
        }
    }
    if (w->n < bytes) {
        void *p = NULL;
        free(w->p);
        w->p = NULL;
        w->n = 0;
        if (posix_memalign(&p, 64, bytes) != 0) return NULL;
        w->p = p;
        w->n = bytes;
    }
    return w->p;
}

void frn_workspace_trim(void)
{
    pthread_once(&frn_ws_once, frn_ws_init);
    frn_ws *w = pthread_getspecific(frn_ws_key);
    if (w && w->n > FRN_WS_KEEP) {
        free(w->p);
        w->p = NULL;
        w->n = 0;
    }
}

/* ---- streams ---- */

/* ---- a stream's helper threads (see struct frn_stream in layers/plan.h) ---- */

typedef struct {
    frn_stream *S;
    int tid;
} frn_helper_arg;

/* Wait for the next step spinning FRN_HELPER_PAUSE rounds (tens of us), then
   yielding the core for FRN_HELPER_YIELD rounds (~1-2 ms), then asleep: back-to-back
   steps find the helpers awake, other threads the caller runs between steps (an
   OpenMP region, a BLAS call) get the cores, and an idle stream costs no CPU. */
#define FRN_HELPER_PAUSE 2000
#define FRN_HELPER_YIELD 2000

/* The CPU the calling thread runs on, or -1 where that is unknown. */
static int frn_current_cpu(void)
{
#ifdef __linux__
    return sched_getcpu();
#else
    return -1;
#endif
}

/*
 * A helper woken by the caller is often placed on the caller's own CPU (Linux
 * prefers the waker's CPU for the wakee), where it cannot run while the caller
 * steps, so the caller does every step alone and slower than on one thread
 * (measured: LSTM H=128 streams at 5-6.5 instead of 3.8 us a step for several
 * milliseconds after a wake, in half the cases). A helper that finds itself
 * there moves: it excludes that CPU from its affinity for a moment, which
 * migrates it at once, then restores its affinity as it was.
 */
static void frn_leave_cpu(int cpu)
{
#ifdef __linux__
    if (cpu < 0 || cpu >= CPU_SETSIZE || sched_getcpu() != cpu) return;
    cpu_set_t all, other;
    if (sched_getaffinity(0, sizeof all, &all) != 0) return;
    other = all;
    CPU_CLR(cpu, &other);
    if (CPU_COUNT(&other) == 0) return;
    if (sched_setaffinity(0, sizeof other, &other) == 0) sched_setaffinity(0, sizeof all, &all);
#else
    (void)cpu;
#endif
}

/* Tests: up to this many ns of delay before a helper joins one step in four (a
   helper the OS let run late; 0: none). */
static _Atomic int frn_helper_lag_ns = 0;

void frn_set_helper_lag(int ns) { atomic_store(&frn_helper_lag_ns, ns > 0 ? ns : 0); }

static void frn_helper_lag(int max_ns, unsigned *seed)
{
    *seed = *seed * 1103515245u + 12345u;
    if ((*seed >> 16) % 4) return;
    const int64_t t0 = frn_now_ns(), d = (int64_t)((*seed >> 8) % (unsigned)max_ns);
    while (frn_now_ns() - t0 < d)
        ;
}

static void *frn_helper_main(void *varg)
{
    frn_helper_arg *arg = varg;
    frn_stream *S = arg->S;
    const int tid = arg->tid;
    free(arg);
    frn_leave_cpu(atomic_load(&S->caller_cpu)); /* a new thread may start there too */
    uint64_t seen = atomic_load(&S->base);
    unsigned seed = 12345u + (unsigned)tid;
    for (;;) {
        uint64_t base;
        unsigned spin = 0;
        while ((base = atomic_load(&S->base)) == seen && !atomic_load(&S->quit)) {
            if (++spin < FRN_HELPER_PAUSE) {
                frn_cpu_relax();
                continue;
            }
            if (spin < FRN_HELPER_PAUSE + FRN_HELPER_YIELD) {
                sched_yield();
                continue;
            }
            pthread_mutex_lock(S->mu);
            atomic_fetch_add(&S->sleepers, 1);
            while (atomic_load(&S->base) == seen && !atomic_load(&S->quit))
                pthread_cond_wait(S->cv, S->mu);
            atomic_fetch_sub(&S->sleepers, 1);
            pthread_mutex_unlock(S->mu);
            frn_leave_cpu(atomic_load(&S->caller_cpu));
            spin = 0;
        }
        if (atomic_load(&S->quit)) return NULL;
        seen = base;
        const int lag = atomic_load_explicit(&frn_helper_lag_ns, memory_order_relaxed);
        if (lag > 0) frn_helper_lag(lag, &seed);
        /* (the caller publishes base once the step's arguments are out and its
           first phase, base / 2 + 1, is open) */
        if (tid < atomic_load(&S->active)) S->team(S, tid, base / 2 + 1, (int)(base & 1));
    }
}

void frn_stream_wake(frn_stream *S)
{
    atomic_store(&S->caller_cpu, frn_current_cpu());
    pthread_mutex_lock(S->mu);
    pthread_cond_broadcast(S->cv);
    pthread_mutex_unlock(S->mu);
}

/* Tests: the phase a stream's helpers start at, with every counter as phases 0 and
   1 left it -- a stream that has stepped ~10^9 times without touching some of its
   counters (sched.h compares their tags with the phase). */
static _Atomic uint64_t frn_stream_phase0 = 0;

void frn_set_stream_phase0(uint64_t k) { atomic_store(&frn_stream_phase0, k); }

int frn_stream_helpers(frn_stream *S, int n)
{
    if (n > FRN_MAX_TEAM - 1) n = FRN_MAX_TEAM - 1;
    S->sched = NULL;
    if (posix_memalign((void **)&S->sched, 64, sizeof(frn_sched)) != 0) return FRN_ENOMEM;
    frn_sched_init(S->sched, n + 1);
    /* phase 0 is the opening of the first step (tests: a later one) */
    S->k = atomic_load(&frn_stream_phase0);
    atomic_store(&S->sched->phase, S->k);
    atomic_init(&S->base, UINT64_MAX);
    atomic_init(&S->active, 1);
    atomic_init(&S->quit, 0);
    atomic_init(&S->sleepers, 0);
    atomic_init(&S->caller_cpu, frn_current_cpu());
    S->mu = malloc(sizeof(pthread_mutex_t));
    S->cv = malloc(sizeof(pthread_cond_t));
    S->threads = calloc((size_t)n, sizeof(pthread_t));
    if (!S->mu || !S->cv || !S->threads) goto fail;
    pthread_mutex_init(S->mu, NULL);
    pthread_cond_init(S->cv, NULL);
    S->pid = (int)getpid();
    for (int t = 0; t < n; t++) {
        frn_helper_arg *arg = malloc(sizeof *arg);
        if (!arg) break;
        arg->S = S;
        arg->tid = t + 1;
        if (pthread_create(&((pthread_t *)S->threads)[t], NULL, frn_helper_main, arg) != 0) {
            free(arg);
            break;
        }
        S->nhelp = t + 1;
    }
    if (S->nhelp > 0) return FRN_OK;
fail:
    free(S->mu);
    free(S->cv);
    free(S->threads);
    free(S->sched);
    S->mu = S->cv = S->threads = NULL;
    S->sched = NULL;
    S->nhelp = 0;
    return FRN_ENOMEM;
}

static void frn_stream_stop(frn_stream *S)
{
    if (S->nhelp == 0) return;
    /* After a fork the helpers are not in this process: nothing to wake or join, and
       the copy of their mutex may be locked for good (a helper held it at the fork),
       so it is neither taken nor destroyed, only freed. */
    if ((int)getpid() == S->pid) {
        atomic_store(&S->quit, 1);
        frn_stream_wake(S);
        for (int t = 0; t < S->nhelp; t++) pthread_join(((pthread_t *)S->threads)[t], NULL);
        pthread_mutex_destroy(S->mu);
        pthread_cond_destroy(S->cv);
    }
    free(S->mu);
    free(S->cv);
    free(S->threads);
    free(S->sched);
    S->nhelp = 0;
}

void frn_stream_free(frn_stream *s)
{
    if (!s) return;
    frn_stream_stop(s);
    int L = s->p->d.num_layers;
    if (s->h)
        for (int i = 0; i < 2 * L; i++) free(s->h[i]);
    if (s->c)
        for (int i = 0; i < L; i++) free(s->c[i]);
    free(s->h);
    free(s->c);
    free(s->perm);
    free(s->m);
    free(s->z);
    free(s->xp);
    free(s->r);
    free(s->rh);
    free(s);
}

static void *frn_stream_buf(size_t bytes)
{
    void *p = NULL;
    bytes = (bytes + 63) & ~(size_t)63;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) return NULL;
    memset(p, 0, bytes ? bytes : 64);
    return p;
}

int frn_stream_create(const frn_plan *plan, int B, frn_stream **out)
{
    *out = NULL;
    if (B < 1 || plan->d.num_dirs != 1) return FRN_EINVAL;
    frn_stream *s = NULL;
    if (posix_memalign((void **)&s, 64, sizeof *s) != 0) return FRN_ENOMEM;
    memset(s, 0, sizeof *s);
    const int L = plan->d.num_layers;
    const size_t row = (size_t)B * plan->ldh * plan->esz;
    s->p = plan;
    s->B = B;
    for (int l = 0; l < L; l++) {
        const double f =
            (double)B * plan->G * plan->d.hidden_size * (plan->h_out + plan->w[l].k_in);
        s->fma += f;
        if (f > s->fma_layer) s->fma_layer = f;
    }
    s->perm = malloc(sizeof(int) * (size_t)B);
    s->h = calloc((size_t)2 * L, sizeof(void *));
    s->c = calloc((size_t)L, sizeof(void *));
    s->m = frn_stream_buf(row);
    s->z = frn_stream_buf(row);
    s->xp = frn_stream_buf((size_t)B * plan->xw * plan->esz);
    s->r = frn_stream_buf((size_t)L * B * plan->xw * plan->esz);
    s->rh = calloc((size_t)L, sizeof(void *));
    if (!s->perm || !s->h || !s->c || !s->m || !s->z || !s->xp || !s->r || !s->rh)
        goto nomem;
    for (int b = 0; b < B; b++) s->perm[b] = b;
    for (int i = 0; i < 2 * L; i++)
        if (!(s->h[i] = frn_stream_buf(row))) goto nomem;
    for (int i = 0; i < L; i++)
        if (!(s->c[i] = frn_stream_buf(row))) goto nomem;
    *out = s;
    return FRN_OK;
nomem:
    frn_stream_free(s);
    return FRN_ENOMEM;
}

int frn_stream_step(frn_stream *s, const void *x, void *out, int n_threads)
{
    n_threads = frn_team_threads(n_threads);
    return frn_table(s->p->isa)->stream_step(s, x, out, n_threads);
}

int frn_stream_helper_count(const frn_stream *s) { return s->nhelp; }

/* Copy the carried state of every layer and row to (set = 0) or from (set = 1) h
   (L, B, h_out) and, for LSTM, c (L, B, H). NULL leaves that part alone, or when
   `zero` (with set) sets it to zeros. */
static void frn_stream_copy(frn_stream *s, void *h, void *c, int set, int zero)
{
    const frn_plan *p = s->p;
    const int L = p->d.num_layers, B = s->B, es = p->esz;
    const size_t nh = (size_t)p->h_out * es, nc = (size_t)p->d.hidden_size * es;
    const int lstm = p->d.cell == FRN_LSTM;
    if (!lstm) c = NULL;
    for (int l = 0; l < L; l++)
        for (int b = 0; b < B; b++) {
            const size_t r = (size_t)b * p->ldh * es, u = (size_t)l * B + b;
            char *hs = (char *)s->h[2 * l + s->cur] + r;
            char *cs = (char *)s->c[l] + r;
            char *hu = h ? (char *)h + u * nh : NULL, *cu = c ? (char *)c + u * nc : NULL;
            if (h && set)
                memcpy(hs, hu, nh);
            else if (h)
                memcpy(hu, hs, nh);
            else if (set && zero)
                memset(hs, 0, nh);
            if (c && set)
                memcpy(cs, cu, nc);
            else if (c)
                memcpy(cu, cs, nc);
            else if (set && zero && lstm)
                memset(cs, 0, nc);
        }
}

int frn_stream_cell(frn_stream *s, const void *x, const void *h, const void *c, void *out,
                    void *cout, int n_threads)
{
    s->cell = 1;
    frn_table(s->p->isa)->stream_sync(s);
    frn_stream_copy(s, (void *)h, (void *)c, 1, 1);
    const int rc = frn_stream_step(s, x, out, n_threads);
    if (rc == FRN_OK && cout) frn_stream_copy(s, NULL, cout, 0, 0);
    return rc;
}

int frn_stream_state(frn_stream *s, void *h, void *c, int set)
{
    /* the helpers may still be reading the state (eager products, engine.h) */
    if (set) frn_table(s->p->isa)->stream_sync(s);
    frn_stream_copy(s, h, c, set, 0);
    return FRN_OK;
}

/* Reorder the carried state's rows: row b takes row idx[b] (beam search keeps
   the parents' states). idx has B entries, each in [0, B), checked by the caller. */
int frn_stream_reorder(frn_stream *s, const int32_t *idx)
{
    const frn_plan *p = s->p;
    const int L = p->d.num_layers, B = s->B;
    const size_t row = (size_t)p->ldh * p->esz;
    frn_table(p->isa)->stream_sync(s);
    for (int l = 0; l < L; l++) {
        char *h = (char *)s->h[2 * l + s->cur];
        char *tmp = (char *)s->h[2 * l + (s->cur ^ 1)]; /* the other buffer is free */
        for (int b = 0; b < B; b++) memcpy(tmp + b * row, h + (size_t)idx[b] * row, row);
        if (p->d.cell == FRN_LSTM) {
            char *c = (char *)s->c[l];
            char *ctmp = (char *)s->m; /* scratch of the same row size */
            for (int b = 0; b < B; b++) memcpy(ctmp + b * row, c + (size_t)idx[b] * row, row);
            memcpy(c, ctmp, (size_t)B * row);
        }
    }
    s->cur ^= 1;
    return FRN_OK;
}

/* ---- threads and build ---- */

double frn_core_roundtrip_ns(int iters)
{
#ifdef _OPENMP
    if (frn_in_child()) return -1.0;
    /* thread 0 writes odd values, thread 1 answers with the next even one (a line
       of this call's stack, shared by the team) */
    _Atomic long line __attribute__((aligned(64))) = 0;
    double ns = -1.0;
    int team = 0;
#pragma omp parallel num_threads(2)
    {
#pragma omp single
        team = omp_get_num_threads();
        /* (the implicit barrier of single: both threads know the team size) */
        if (team == 2) {
            /* the first thousand round trips are not timed (a thread just woken) */
            const long warm = 1000;
            if (omp_get_thread_num() == 0) {
                int64_t t0 = frn_now_ns();
                for (long i = 0; i < warm + iters; i++) {
                    if (i == warm) t0 = frn_now_ns();
                    atomic_store_explicit(&line, 2 * i + 1, memory_order_release);
                    while (atomic_load_explicit(&line, memory_order_acquire) != 2 * i + 2)
                        ;
                }
                ns = (double)(frn_now_ns() - t0) / iters;
            } else {
                for (long i = 0; i < warm + iters; i++) {
                    while (atomic_load_explicit(&line, memory_order_acquire) != 2 * i + 1)
                        ;
                    atomic_store_explicit(&line, 2 * i + 2, memory_order_release);
                }
            }
        }
    }
    return ns;
#else
    (void)iters;
    return -1.0;
#endif
}

/*
 * Where the two cores are (dispatch.h, frn_useful_threads): the round trip of a
 * line between the calling thread and a second OpenMP thread, the best of 3 batches
 * of 16 after 8 untimed (the first ones wake a sleeping thread). Every wait gives up
 * after 1 ms (the other thread descheduled: another process wants its core), and
 * the probe then says nothing (-1), as it does when OpenMP gives one thread.
 * Not frn_core_roundtrip_ns's loop with a way out: the shape of a spin changes the
 * round trip it measures (the same placement, alternated processes: that loop with
 * this one's give-up check in the spin and batches read 59-94 ns where it reads
 * 114-137); FRN_FAR_NS was checked against this loop's figures (close: 56-103 ns;
 * in the far rounds of the measurements in dispatch.h it judged every one far).
 */
static double frn_probe_roundtrip(void)
{
#ifdef _OPENMP
    if (frn_in_child()) return -1.0;
    _Atomic long line __attribute__((aligned(64))) = 0;
    _Atomic int quit __attribute__((aligned(64))) = 0;
    double best = -1.0;
#pragma omp parallel num_threads(2)
    {
        if (omp_get_num_threads() == 2 && omp_get_thread_num() == 0) {
            enum { WARM = 8, PER = 16, BATCHES = 3 };
            int64_t t0 = 0;
            for (long i = 0; i < WARM + PER * BATCHES; i++) {
                if (i >= WARM && (i - WARM) % PER == 0) t0 = frn_now_ns();
                atomic_store_explicit(&line, 2 * i + 1, memory_order_release);
                const int64_t w0 = frn_now_ns();
                int gave_up = 0;
                for (unsigned spin = 1;
                     atomic_load_explicit(&line, memory_order_acquire) != 2 * i + 2; spin++)
                    if ((spin & 255) == 0 && frn_now_ns() - w0 > 1000000) {
                        gave_up = 1;
                        break;
                    }
                if (gave_up) {
                    best = -1.0;
                    break;
                }
                if (i >= WARM && (i - WARM) % PER == PER - 1) {
                    const double ns = (double)(frn_now_ns() - t0) / PER;
                    if (best < 0 || ns < best) best = ns;
                }
            }
            atomic_store_explicit(&quit, 1, memory_order_release);
        } else if (omp_get_num_threads() == 2) {
            for (long v = 1;; v += 2) {
                long seen;
                while ((seen = atomic_load_explicit(&line, memory_order_acquire)) != v &&
                       !atomic_load_explicit(&quit, memory_order_acquire))
                    ;
                if (seen != v) break;
                atomic_store_explicit(&line, v + 1, memory_order_release);
            }
        }
    }
    return best;
#else
    return -1.0;
#endif
}

static _Atomic int64_t frn_probe_at = 0;  /* when the last probe started (0: never) */
/* Verdicts: FRN_CLOSE, FRN_FAR, FRN_BETWEEN (the values of frn_set_far) */
enum { FRN_CLOSE = 0, FRN_FAR = 1, FRN_BETWEEN = 2 };
static _Atomic int frn_far = FRN_CLOSE;    /* the last probe's verdict */
static _Atomic int frn_far_forced = -1;    /* tests: a verdict instead of probing */

static double frn_probe_now(void)
{
    const double ns = frn_probe_roundtrip();
    if (ns > 0)
        atomic_store(&frn_far, ns > FRN_FAR_NS ? FRN_FAR : ns > FRN_MID_NS ? FRN_BETWEEN
                                                                          : FRN_CLOSE);
    return ns;
}

/* A clock for "is a probe due": the coarse one (a few ms of resolution against a
   0.5 s period) reads ~30 ns faster here than CLOCK_MONOTONIC, which would be 2-3%
   of a 1-2 us stream step that asks every step (one thread, the cores far apart). */
static int64_t frn_coarse_ns(void)
{
#ifdef CLOCK_MONOTONIC_COARSE
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
#else
    return frn_now_ns();
#endif
}

static int frn_cores_apart(int probe)
{
    const int forced = atomic_load(&frn_far_forced);
    if (forced >= 0) return forced;
    if (probe) { /* (no clock read otherwise: every stream step with helpers asks) */
        int64_t at = atomic_load(&frn_probe_at);
        const int64_t now = frn_coarse_ns();
        /* one probe at a time (calls from several Python threads): the others
           decide on the last verdict */
        if ((at == 0 || now - at >= FRN_PROBE_NS) &&
            atomic_compare_exchange_strong(&frn_probe_at, &at, now))
            frn_probe_now();
    }
    return atomic_load(&frn_far);
}

int frn_split_uneven(int B, int groups)
{
    const int most = (B + groups - 1) / groups; /* rows of the largest group */
    return groups > 1 && 5.0 * most * groups >= 6.0 * B && frn_cores_apart(1) != FRN_FAR;
}

int frn_useful_threads(double step_fma, double region_fma, int nt, int probe)
{
    if (nt <= 1 || step_fma < FRN_STEP_FMA || (region_fma > 0 && region_fma < FRN_CALL_FMA))
        return 1;
    const double far_min = region_fma > 0 ? FRN_STEP_FMA_FAR : FRN_HELPER_FMA_FAR;
    if (step_fma >= far_min) return nt;
    const int apart = frn_cores_apart(probe);
    if (apart == FRN_FAR) return 1;
    /* between: streams' helpers as when far apart, other steps from FRN_STEP_FMA_MID */
    if (apart == FRN_BETWEEN && (region_fma <= 0 || step_fma < FRN_STEP_FMA_MID)) return 1;
    return nt;
}

int frn_spread_pays(double fma)
{
    if (fma < FRN_SPREAD_FMA) return 0;
    return fma >= FRN_SPREAD_FMA_APART || frn_cores_apart(1) == FRN_CLOSE;
}

double frn_probe_cores(void)
{
    atomic_store(&frn_probe_at, frn_coarse_ns());
    return frn_probe_now();
}

void frn_set_far(int far)
{
    atomic_store(&frn_far_forced, far < 0 ? -1 : far > FRN_BETWEEN ? FRN_FAR : far);
}

int frn_openmp_enabled(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

/* The calling thread's setting; 1 in a child of fork(), where calls run on one */
int frn_max_threads(void)
{
    return frn_in_child() ? 1 : omp_get_max_threads();
}

void frn_set_procs(int n) { frn_procs = n < 1 ? 0 : n; }

static _Atomic int frn_split_mode = -1;

void frn_set_batch_split(int mode) { atomic_store(&frn_split_mode, mode < 0 ? -1 : mode > 0); }

int frn_batch_split_mode(void)
{
    return atomic_load_explicit(&frn_split_mode, memory_order_relaxed);
}

void frn_set_max_threads(int n) { omp_set_num_threads(n); }

/* Paths measured to pay on one CPU vendor's cores and not (or not yet) on the
   other's, unless a test forces them: batch-1 weaving (layers/engine.h, weaves),
   faster on AMD (Zen 4) and slower on Intel (a Sapphire Rapids-class Xeon); the row
   tiles' next-panel prefetch (engine.h, run_panel_rows), measured on that Xeon. */
static _Atomic int frn_weave_mode = -1, frn_pf_mode = -1;

void frn_set_weave(int mode) { atomic_store(&frn_weave_mode, mode < 0 ? -1 : mode > 0); }

void frn_set_prefetch_next(int mode) { atomic_store(&frn_pf_mode, mode < 0 ? -1 : mode > 0); }

/* The CPU's vendor, asked once (weaves() asks per call, run_items per phase):
   0 not yet known, 1 AMD, 2 Intel, 3 another */
static _Atomic int frn_vendor = 0;

static int frn_by_vendor(_Atomic int *forced, int vendor)
{
    const int mode = atomic_load_explicit(forced, memory_order_relaxed);
    if (mode >= 0) return mode;
    int v = atomic_load_explicit(&frn_vendor, memory_order_relaxed);
    if (v == 0) {
#ifdef FRN_HAVE_X86
        __builtin_cpu_init();
        v = __builtin_cpu_is("amd") ? 1 : __builtin_cpu_is("intel") ? 2 : 3;
#else
        v = 3;
#endif
        atomic_store_explicit(&frn_vendor, v, memory_order_relaxed);
    }
    return v == vendor;
}

int frn_weave_pays(void) { return frn_by_vendor(&frn_weave_mode, 1); } /* AMD */

int frn_prefetch_next_pays(void) { return frn_by_vendor(&frn_pf_mode, 2); } /* Intel */

/* a test build's AVX-512 path runs on emulated intrinsics (setup.py): said here, so
   that fastrnn.config() and every bench or test header show it */
#ifdef FRN_EMULATE_AVX512
#define FRN_BUILD_NOTE ", avx512 emulated (a test build)"
#else
#define FRN_BUILD_NOTE ""
#endif

const char *frn_compiler(void)
{
#if defined(__clang__)
    return "clang " __clang_version__ FRN_BUILD_NOTE;
#elif defined(__GNUC__)
    return "gcc " __VERSION__ FRN_BUILD_NOTE;
#else
    return "unknown" FRN_BUILD_NOTE;
#endif
}
