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
 * counters alternate between phases; every counter carries the number of the phase
 * that last used it (modulo 2^32) in its upper 32 bits, so a thread that wakes up
 * late cannot claim from a slot that a later phase has taken (its compare-and-swap
 * fails and it catches up). Nobody resets a slot: the first claim or count of phase
 * k that finds a counter tagged with another phase -- an earlier one, unless phase
 * k is already complete -- starts it afresh in the same compare-and-swap. So each
 * thread's claim counter stays in its own cache from phase to phase; a reset by the
 * thread that completed a phase took every counter line to that thread's core, and
 * the owners' next claims each waited ~0.2 us for theirs back (a stream step on two
 * threads has two such hand-overs).
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
    frn_counter next[FRN_MAX_TEAM]; /* (phase << 32) | items taken from share t */
    frn_counter done;               /* (phase << 32) | items done */
} frn_slot;

typedef struct {
    frn_slot slot[2];
    _Atomic uint64_t phase; /* the phase that may run; all earlier ones are complete */
    char pad[64 - sizeof(uint64_t)];
    int nt;
} frn_sched;

static inline uint64_t frn_tag(uint64_t k) { return k << 32; }

/* Load a counter to update it: for writing, so the line comes from its last
   writer in one transfer, not one to read it and another to write it. */
static inline uint64_t frn_counter_load(frn_counter *c)
{
    __builtin_prefetch((const void *)&c->v, 1, 3);
    return atomic_load_explicit(&c->v, memory_order_relaxed);
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

/* Ask for thread t's claim counter of phase k ahead of the claim: the other
   threads' claims on what is left of its share, at the end of each phase, take
   the line away (a stream step on two threads waited ~0.25 us for it in each
   thread's first claim). */
static inline void frn_sched_prefetch(frn_sched *S, uint64_t k, int t)
{
    __builtin_prefetch((const void *)&S->slot[k & 1].next[t].v, 1, 3);
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
 * Chunks of FRN_GUIDED_CHUNK items or more shrink as a share runs out (a quarter of
 * what is left, at least one item), so the threads finish a phase together instead
 * of one waiting for the other's last whole chunk (at batch 64 and H=512 a chunk is
 * 64-88 tiles, ~90 us). 2 threads, batch 64, LSTM H=512: time in frn_sched_wait
 * 2.1% -> 0.25% of a call's samples; both builds in one process, alternated calls,
 * medians of 4 A/Bs: LSTM H=512 1.014x / 1.014x / 1.015x / 0.996x, GRU H=512
 * 1.002-1.035x. Smaller chunks (H=128 at batch 64: 16-22 tiles, ~5 us) gained
 * nothing from it (GRU 0.98-1.01x), so they stay whole. Chunks of one phase may
 * differ in size: items, not chunks, are counted.
 */
#ifndef FRN_GUIDED_CHUNK
#define FRN_GUIDED_CHUNK 32
#endif
#ifndef FRN_GUIDED_DIV
#define FRN_GUIDED_DIV 4
#endif
static inline int frn_sched_claim(frn_sched *S, uint64_t k, int t, long n, int chunk, int rev,
                                  long *lo, long *hi)
{
    frn_slot *sl = &S->slot[k & 1];
    const int nt = S->nt;
    for (int step = 0; step < nt; step++) {
        const int o = (t + step) % nt;
        long a, b;
        frn_share(n, o, nt, &a, &b);
        if (a == b) continue; /* (never touched: its tag may lag any number of phases) */
        uint64_t w = frn_counter_load(&sl->next[o]);
        for (;;) {
            long q; /* items of share o taken */
            if ((w >> 32) == (k & 0xffffffffu)) {
                q = (long)(w & 0xffffffffu);
            } else {
                /* Another phase's tag: an earlier one's, however long ago, while
                   phase k is open; a later one's only once phase k is complete
                   (k + 2 took the slot). So ask the phase, not the tag: tags are
                   phases modulo 2^32, and a counter untouched for 2^31 phases (a
                   stream's, after ~10^9 steps) would look later than k. Acquire:
                   a later phase's claim (release) brings the phase it saw. */
                atomic_thread_fence(memory_order_acquire);
                if (atomic_load_explicit(&S->phase, memory_order_relaxed) > k)
                    return 0; /* phase over */
                q = 0;        /* the first claim of phase k on this share */
            }
            const long left = b - a - q;
            if (left <= 0) break;
            long c = chunk;
            if (chunk >= FRN_GUIDED_CHUNK && left / FRN_GUIDED_DIV < c)
                c = left / FRN_GUIDED_DIV > 1 ? left / FRN_GUIDED_DIV : 1;
            if (c > left) c = left;
            if (atomic_compare_exchange_weak_explicit(&sl->next[o].v, &w,
                                                      frn_tag(k) | (uint64_t)(q + c),
                                                      memory_order_release,
                                                      memory_order_relaxed)) {
                if (!rev) {
                    *lo = a + q;
                    *hi = *lo + c;
                } else {
                    *hi = b - q;
                    *lo = *hi - c;
                }
                return 1;
            }
        }
    }
    return 0;
}

/* Record `count` finished items of phase k (of n >= 1); the thread that finishes
   the last one opens phase k + 1. Release: the items' results are visible to
   whoever sees the next phase open (the counts form one chain of read-modify-writes
   ending at the last). The done counter can only carry phase k or an earlier one:
   phase k + 2 cannot open before this count. */
static inline void frn_sched_done(frn_sched *S, uint64_t k, long count, long n)
{
    frn_slot *sl = &S->slot[k & 1];
    uint64_t w = frn_counter_load(&sl->done), d;
    do
        d = ((w >> 32) == (k & 0xffffffffu) ? w : frn_tag(k)) + (uint64_t)count;
    while (!atomic_compare_exchange_weak_explicit(&sl->done.v, &w, d, memory_order_acq_rel,
                                                  memory_order_relaxed));
    if ((long)(d & 0xffffffffu) == n) atomic_store_explicit(&S->phase, k + 1, memory_order_release);
}

#endif
