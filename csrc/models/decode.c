/*
 * decode.c -- greedy, beam-search and sampled generation, the whole step loop in C
 * (SPEC §7). Built without ISA flags: the heavy parts (the recurrent step, the
 * output projection, the attention's Wa/Ua projections) go through the engine's
 * frn_stream_step and frn_linear_apply, which run the best ISA's micro-kernels;
 * what is left here (gathers, attention scores and softmax, log_softmax, the
 * candidate selection) is O(rows * (V + S*K)) per step.
 *
 * Beam search, per source sequence (SPEC §7): every live beam is expanded over the
 * whole vocabulary; candidates are ordered by summed log p, ties going to the
 * earlier beam, then to the lower token id. Beams are numbered in the order they
 * were kept at the previous step (beam 0 being the best). Walking that order, an
 * eos candidate among the first `beam` positions finishes with score
 * sum / len**length_penalty (len counting the eos), later eos candidates are
 * dropped, and the first `beam` non-eos candidates live on. A sequence stops when
 * `beam` hypotheses have finished, when nothing lives on, or after step max_len,
 * when its live beams finish too. The result is the best score, the earliest
 * finished on a tie. Only the best `beam + live` candidates can matter in that
 * walk, so each step keeps just those (an insertion list: candidates arrive in
 * (beam, token) order, so a new one goes after every equal key already there).
 * With one live beam, the order is that of its own log p (the same order as the
 * sums, without the sums' rounding): so beam 1 is exactly greedy argmax, the
 * lowest token id on a tie.
 *
 * Scores and sums are kept in double; log p is computed in double from the
 * logits and stored in the model's dtype.
 *
 * A row's work (attention, log_softmax) is done by one thread, so results are
 * identical for any thread count.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../layers/omp.h"
#include "decode.h"

/* ---- shared, dtype-free pieces ------------------------------------------- */

/* xoshiro256** seeded through splitmix64: small, fast, well distributed. */
typedef struct {
    uint64_t s[4];
} frn_rng;

static uint64_t frn_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static void frn_rng_seed(frn_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) r->s[i] = frn_splitmix64(&seed);
}

static inline uint64_t frn_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* uniform in [0, 1) with 53 random bits */
static double frn_rng_uniform(frn_rng *r)
{
    uint64_t *s = r->s;
    const uint64_t out = frn_rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = frn_rotl(s[3], 45);
    return (double)(out >> 11) * 0x1.0p-53;
}

/* A candidate continuation: beam `k` (its slot at the previous step) + token. */
typedef struct {
    double key; /* the ordering key */
    double sum; /* summed log p with this token */
    double lp;  /* log p of this token */
    int k, tok;
} frn_cand;

/* Per source sequence: live beams, finished count, the best finished so far. */
typedef struct {
    int n_live, n_fin, done, has_best;
    double best;  /* score of the best finished hypothesis */
    int best_t;   /* step of its last token */
    int best_tok; /* its last token */
    double best_lp;
    int best_par; /* the slot at step best_t - 1 it extends */
} frn_src;

static void frn_finish(frn_src *st, int t, int tok, double lp, double sum, int par, double lpen)
{
    const double score = lpen == 0.0 ? sum : sum / pow((double)(t + 1), lpen);
    /* strictly better only: the earliest finished wins a tie */
    if (!st->has_best || score > st->best) {
        st->has_best = 1;
        st->best = score;
        st->best_t = t;
        st->best_tok = tok;
        st->best_lp = lp;
        st->best_par = par;
    }
    st->n_fin++;
}

/* Insert c into the list sorted by key, descending, holding at most cap. Ties keep
   the earlier arrival first; NaN keys never move ahead of anything. */
static inline void frn_cand_insert(frn_cand *list, int *cnt, int cap, frn_cand c)
{
    int i;
    if (*cnt == cap) {
        if (!(c.key > list[cap - 1].key)) return;
        i = cap - 1;
    } else {
        i = (*cnt)++;
    }
    while (i > 0 && c.key > list[i - 1].key) {
        list[i] = list[i - 1];
        i--;
    }
    list[i] = c;
}

static int frn_clamp_threads(int n) { return n < 1 ? 1 : frn_team_threads(n); }

/* Below this much work per step a row loop runs on one thread: a parallel region
   costs a few microseconds, about 2^15 multiply-adds on this hardware. */
#define FRN_DECODE_PAR_WORK (1L << 15)

/* ---- the loop, once per dtype -------------------------------------------- */

#define FRN_T float
#define FRN_DEC(name) name##_f32
#include "decode_impl.h"
#undef FRN_T
#undef FRN_DEC

#define FRN_T double
#define FRN_DEC(name) name##_f64
#include "decode_impl.h"
#undef FRN_T
#undef FRN_DEC

int frn_decode(const frn_decode_args *a, int n_threads)
{
    if (a->B < 1 || a->beam < 1 || a->max_len < 1 || a->V < 1 || a->E < 1 || a->L < 1)
        return FRN_EINVAL;
    if (a->temperature > 0 && a->beam != 1) return FRN_EINVAL;
    n_threads = frn_clamp_threads(n_threads);
    return a->dtype == FRN_F64 ? frn_decode_run_f64(a, n_threads)
                               : frn_decode_run_f32(a, n_threads);
}
