/*
 * sched.h -- how the threads of a call share a sequence of phases (a phase: one
 * GEMM of tiles, e.g. the input projection of a chunk or one recurrent step).
 *
 * Each phase's n work items are split into one contiguous share per thread, so a
 * thread keeps the same weight panels step after step (they stay in its L2). A
 * thread first takes the items of its own share, then takes what is left of the
 * others' shares. A phase is complete when all its items are done -- not when all
 * threads have arrived -- so a thread that the OS has descheduled (another process
 * wants the core) does not stall the others for its time slice: the threads that
 * run do its share. With a plain barrier per step, two threads on a loaded
 * two-core machine ran 100-300x slower than one; here they degrade to about one
 * thread's speed.
 *
 * Work is split on outputs and every item computes the same numbers whoever runs
 * it, so results stay bitwise identical for any thread count and any interleaving.
 *
 * Phases are numbered 0, 1, 2, ... identically by every thread. Two slots of
 * counters alternate between phases; every counter carries its phase number in its
 * upper 32 bits, so a thread that wakes up late cannot claim from a slot that has
 * been reused for a later phase (its compare-and-swap fails and it catches up).
 * The thread that completes phase k publishes k + 1 as the phase that may run,
 * then resets its slot for phase k + 2: the resets stay off the path from the
 * last item of a phase to the threads waiting for the next (each reset takes a
 * cache line from another core: with them before the publication, a stream step
 * on two threads spent about 0.3 us more in each of its two hand-overs). A thread
 * that reaches a slot still tagged for phase k - 2 waits for that reset.
 */
#ifndef FRN_SCHED_H
#define FRN_SCHED_H

#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define frn_cpu_relax() _mm_pause()
#elif defined(__aarch64__)
#define frn_cpu_relax() __asm__ __volatile__("yield")
#else
#define frn_cpu_relax() ((void)0)
#endif

#define FRN_MAX_TEAM 64 /* dispatch.c caps a call's threads at this */

/* one counter per cache line: threads claim from their own share without
   bouncing a line shared with the others */
typedef struct {
    _Atomic uint64_t v;
    char pad[64 - sizeof(uint64_t)];
} frn_counter;

typedef struct {
    frn_counter next[FRN_MAX_TEAM]; /* (phase << 32) | chunks taken from share t */
    frn_counter done;               /* (phase << 32) | items done */
} frn_slot;

typedef struct {
    frn_slot slot[2];
    _Atomic uint64_t phase; /* the phase that may run; all earlier ones are complete */
    char pad[64 - sizeof(uint64_t)];
    int nt;
} frn_sched;

static inline uint64_t frn_tag(uint64_t k) { return k << 32; }

/* Whether counter value w belongs to a phase before k (its slot not yet reset). */
static inline int frn_stale(uint64_t w, uint64_t k)
{
    return (int32_t)((uint32_t)(w >> 32) - (uint32_t)k) < 0;
}

/* Load a counter of phase k's slot, waiting out the reset from phase k - 2. */
static inline uint64_t frn_counter_load(frn_counter *c, uint64_t k)
{
    uint64_t w;
    for (unsigned spin = 0; frn_stale(w = atomic_load_explicit(&c->v, memory_order_acquire), k);
         spin++) {
        if (spin < 4096)
            frn_cpu_relax();
        else
            sched_yield();
    }
    return w;
}

static inline void frn_sched_init(frn_sched *S, int nt)
{
    S->nt = nt;
    for (int s = 0; s < 2; s++) {
        for (int t = 0; t < nt; t++) atomic_init(&S->slot[s].next[t].v, frn_tag((uint64_t)s));
        atomic_init(&S->slot[s].done.v, frn_tag((uint64_t)s));
    }
    atomic_init(&S->phase, 0);
}

/* Wait until phase k may run. Spins briefly, then yields the core, so a peer
   thread sharing this core with other work gets to run. */
static inline void frn_sched_wait(frn_sched *S, uint64_t k)
{
    for (unsigned spin = 0; atomic_load_explicit(&S->phase, memory_order_acquire) < k; spin++) {
        if (spin < 4096)
            frn_cpu_relax();
        else
            sched_yield();
    }
}

/* Share t of n items among nt threads: [lo, hi). */
static inline void frn_share(long n, int t, int nt, long *lo, long *hi)
{
    *lo = n * t / nt;
    *hi = n * (t + 1) / nt;
}

/*
 * Claim the next chunk (up to `chunk` items) of phase k for thread t: its own
 * share first, then the others'. Items of a share are taken from its front, or
 * from its back when rev. Returns 0 when nothing is left to claim.
 */
static inline int frn_sched_claim(frn_sched *S, uint64_t k, int t, long n, int chunk, int rev,
                                  long *lo, long *hi)
{
    frn_slot *sl = &S->slot[k & 1];
    const int nt = S->nt;
    for (int step = 0; step < nt; step++) {
        const int o = (t + step) % nt;
        long a, b;
        frn_share(n, o, nt, &a, &b);
        const long nchunks = (b - a + chunk - 1) / chunk;
        uint64_t w = frn_counter_load(&sl->next[o], k);
        for (;;) {
            if ((w >> 32) != (k & 0xffffffffu)) return 0; /* phase over, slot reused */
            const long q = (long)(w & 0xffffffffu);
            if (q >= nchunks) break;
            if (atomic_compare_exchange_weak_explicit(&sl->next[o].v, &w, w + 1,
                                                      memory_order_relaxed,
                                                      memory_order_relaxed)) {
                if (!rev) {
                    *lo = a + q * chunk;
                    *hi = *lo + chunk < b ? *lo + chunk : b;
                } else {
                    *hi = b - q * chunk;
                    *lo = *hi - chunk > a ? *hi - chunk : a;
                }
                return 1;
            }
        }
    }
    return 0;
}

/* Record `count` finished items of phase k (of n >= 1); the thread that finishes
   the last one opens phase k + 1, then resets the slot for phase k + 2. Release: the
   items' results are visible to whoever sees the next phase open. */
static inline void frn_sched_done(frn_sched *S, uint64_t k, long count, long n)
{
    frn_slot *sl = &S->slot[k & 1];
    /* the slot's reset for phase k is complete (see below) */
    frn_counter_load(&sl->done, k);
    uint64_t d = atomic_fetch_add_explicit(&sl->done.v, (uint64_t)count, memory_order_acq_rel) +
                 (uint64_t)count;
    if ((long)(d & 0xffffffffu) == n) {
        atomic_store_explicit(&S->phase, k + 1, memory_order_release);
        /* Every item of phase k is counted: nobody adds to this slot's done for
           phase k any more, and late claims see a tag past k and give up. done
           last, and phase k + 2 completes only once its done is reset (above): so
           no store of this reset can land after phase k + 2 is over and overwrite
           the reset for phase k + 4 (the one-item opening phase of a stream step
           claims nothing, so it only has done to wait on). */
        for (int t = 0; t < S->nt; t++)
            atomic_store_explicit(&sl->next[t].v, frn_tag(k + 2), memory_order_relaxed);
        atomic_store_explicit(&sl->done.v, frn_tag(k + 2), memory_order_release);
    }
}

#endif
