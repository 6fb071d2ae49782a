/*
 * pack.c -- lay a network's weights out once, at load time (see plan.h).
 *
 * Plain C, built without ISA flags: packing only moves numbers. The layout
 * depends on the vector width of the ISA the plan is made for, so a plan is
 * bound to one ISA; the Python layer repacks when the ISA is changed.
 */
#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <sys/mman.h>
#endif

#include "plan.h"

/*
 * Matrices of 8 MB and more start on a 2 MB boundary, and their whole 2 MB pages
 * are offered to Linux as transparent huge pages (MADV_HUGEPAGE: what the default
 * `madvise` mode of THP waits for; a system with THP off ignores it). A batch-1 step
 * at such sizes streams W_hh (and a stream step W_ih too) through more 4 KB pages
 * than the L2 TLB maps (3072 entries, 12 MB, on Zen 4). With huge pages, batch 1,
 * 1 thread, 12 alternated runs: LSTM H=1024 302 -> 289 us a step, GRU H=1024 213 ->
 * 207; a one-thread LSTM H=1024 stream step 750 -> 647 us (8 runs). At 4 MB (LSTM
 * H=512) they changed nothing at batch 1 and moved batch 64 by -2% (2 threads) to
 * +1.5% (1 thread), so smaller matrices keep small pages. The tail past the last
 * whole 2 MB stays in small pages: no memory is taken beyond the matrix.
 */
#define FRN_HUGE_BYTES ((size_t)2 << 20)
#define FRN_HUGE_FROM ((size_t)8 << 20)

static void *frn_zalloc(size_t bytes, size_t *total)
{
    void *p = NULL;
    size_t n = (bytes + 63) & ~(size_t)63;
    if (n == 0) n = 64;
    const size_t align = n >= FRN_HUGE_FROM ? FRN_HUGE_BYTES : 64;
    if (posix_memalign(&p, align, n) != 0) return NULL;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (align == FRN_HUGE_BYTES) (void)madvise(p, n & ~(FRN_HUGE_BYTES - 1), MADV_HUGEPAGE);
#endif
    memset(p, 0, n);
    *total += n;
    return p;
}

static inline double frn_get(const void *src, int dtype, size_t i)
{
    return dtype == FRN_F64 ? ((const double *)src)[i] : (double)((const float *)src)[i];
}

static inline void frn_put(void *dst, int dtype, size_t i, double v)
{
    if (dtype == FRN_F64)
        ((double *)dst)[i] = v;
    else
        ((float *)dst)[i] = (float)v;
}

/*
 * Pack rows of a (rows_total x K) row-major matrix into panels. Panel p, value
 * (k, (ub*ng + g)*vl + u) takes matrix row (g0 + g)*H + (p*U + ub)*vl + u, i.e. unit
 * (p*U + ub)*vl + u of gate g0 + g, or zero past the H real units. With sv > 0 the
 * panel is stored as sub-panels of sv vectors (K x sv*vl each, one after the
 * other; plan.h, "split panels"); sv = 0 stores it whole.
 */
void frn_pack_panels(void *dst, const void *src, int dtype, int K, int H, int vl,
                            int npanels, int U, int g0, int ng, int sv)
{
    const size_t W = (size_t)U * ng * vl, S = sv > 0 ? (size_t)sv * vl : W;
    for (int p = 0; p < npanels; p++)
        for (int ub = 0; ub < U; ub++)
            for (int g = 0; g < ng; g++)
                for (int u = 0; u < vl; u++) {
                    int unit = (p * U + ub) * vl + u;
                    if (unit >= H) continue;
                    size_t row = (size_t)(g0 + g) * H + unit;
                    size_t col = (size_t)(ub * ng + g) * vl + u;
                    const size_t at = (size_t)p * K * W + col / S * K * S + col % S;
                    for (int k = 0; k < K; k++)
                        frn_put(dst, dtype, at + (size_t)k * S, frn_get(src, dtype, row * K + k));
                }
}

void frn_plan_free(frn_plan *plan)
{
    if (!plan) return;
    if (plan->w) {
        int n = plan->d.num_layers * plan->d.num_dirs;
        for (int i = 0; i < n; i++) {
            frn_dir_w *w = &plan->w[i];
            free(w->wih);
            free(w->whh);
            free(w->whn);
            free(w->whr);
            free(w->bias_x);
            free(w->bias_hn);
            free(w->peep);
        }
        free(plan->w);
    }
    free(plan);
}

static int frn_roundup(int a, int m) { return (a + m - 1) / m * m; }

int frn_plan_create(const frn_desc *d, const frn_weights *weights, frn_plan **out)
{
    *out = NULL;
    if (d->num_layers < 1 || (d->num_dirs != 1 && d->num_dirs != 2) || d->input_size < 1 ||
        d->hidden_size < 1 || d->proj_size < 0 || d->cell < FRN_RNN_TANH || d->cell > FRN_GRU)
        return FRN_EINVAL;
    frn_plan *p = calloc(1, sizeof *p);
    if (!p) return FRN_ENOMEM;
    p->d = *d;
    p->isa = frn_get_isa();
    p->vl = frn_lanes(p->isa, d->dtype);
    p->esz = d->dtype == FRN_F64 ? 8 : 4;
    const int H = d->hidden_size, vl = p->vl;
    const int lstm = d->cell == FRN_LSTM, gru = d->cell == FRN_GRU;
    const int lbr = gru && d->linear_before_reset;
    p->G = lstm ? 4 : gru ? 3 : 1;
    p->h_out = lstm && d->proj_size > 0 ? d->proj_size : H;
    p->nb = (H + vl - 1) / vl;
    if (lstm || lbr) {
        p->nbp = p->nb;
        p->u_x = 1;
        p->u_h = 1;
        p->nv_h = p->G;
    } else if (gru) {
        p->nbp = frn_roundup(p->nb, 4);
        p->u_x = 1;
        p->u_h = 2;
        p->nv_h = 4;
        p->np_n = p->nbp / 4;
    } else {
        p->nbp = frn_roundup(p->nb, 4);
        p->u_x = 4;
        p->u_h = 4;
        p->nv_h = 4;
    }
    p->nv_x = p->u_x * p->G;
    /* AVX2 (16 registers) takes 4-vector panels of W_hh half at a time at batches,
       from split panels (plan.h; kernels/tile.h) */
    p->sub_h = p->nv_h == 4 && p->isa == FRN_ISA_AVX2;
    p->np_x = p->nbp / p->u_x;
    p->np_h = p->nbp / p->u_h;
    /* XP rows one cache line longer when their width is a multiple of 512 bytes:
       an epilogue reads one panel's slice of 64 rows, which at a 2 KB (LSTM H=128)
       or 8 KB (H=512) stride fell into 4 or 2 of L1's 64 sets -- 32 or 16 lines for
       128 -- and were read from L2 whatever was prefetched; one line more spreads
       them over every set. Zen 3 (AVX2), alternated calls, 1 thread: LSTM batch 64
       H=512 1.023x / 1.033x, H=128 1.013x / 1.008x; 2 threads 1.051x / 1.016x; GRU
       H=128 and 512 0.99-1.01x, batch 1 level. The state rows (ldh) likewise gained
       nothing more. */
    p->xw = p->nbp * p->G * vl;
    if ((size_t)p->xw * p->esz % 512 == 0) p->xw += 64 / p->esz;
    if (lstm && d->proj_size > 0) {
        p->pbp = frn_roundup((d->proj_size + vl - 1) / vl, 4);
        p->np_p = p->pbp / 4;
    }
    p->ldh = (p->nbp > p->pbp ? p->nbp : p->pbp) * vl;

    const int L = d->num_layers, D = d->num_dirs;
    p->w = calloc((size_t)L * D, sizeof *p->w);
    if (!p->w) {
        frn_plan_free(p);
        return FRN_ENOMEM;
    }
    const int es = p->esz, dt = d->dtype;
    size_t total = 0;
    for (int l = 0; l < L; l++)
        for (int dir = 0; dir < D; dir++) {
            const frn_weights *src = &weights[l * D + dir];
            frn_dir_w *w = &p->w[l * D + dir];
            const int K = l == 0 ? d->input_size : D * p->h_out;
            w->k_in = K;
            size_t Wx = (size_t)p->nv_x * vl, Wh = (size_t)p->nv_h * vl;
            w->wih = frn_zalloc((size_t)p->np_x * K * Wx * es, &total);
            w->whh = frn_zalloc((size_t)p->np_h * p->h_out * Wh * es, &total);
            w->bias_x = frn_zalloc((size_t)p->xw * es, &total);
            if (!w->wih || !w->whh || !w->bias_x) goto nomem;
            frn_pack_panels(w->wih, src->w_ih, dt, K, H, vl, p->np_x, p->u_x, 0, p->G, 0);
            const int sv_h = p->sub_h ? 2 : 0;
            if (lstm || lbr || !gru) {
                frn_pack_panels(w->whh, src->w_hh, dt, p->h_out, H, vl, p->np_h, p->u_h, 0,
                                p->G, sv_h);
            } else {
                /* GRU lbr=False: (r, z) panels, then the n gate's own panels */
                frn_pack_panels(w->whh, src->w_hh, dt, H, H, vl, p->np_h, 2, 0, 2, sv_h);
                w->whn = frn_zalloc((size_t)p->np_n * H * 4 * vl * es, &total);
                if (!w->whn) goto nomem;
                frn_pack_panels(w->whn, src->w_hh, dt, H, H, vl, p->np_n, 4, 2, 1, 0);
            }
            if (src->b_ih && src->b_hh) {
                for (int j = 0; j < p->nbp; j++)
                    for (int g = 0; g < p->G; g++)
                        for (int u = 0; u < vl; u++) {
                            int unit = j * vl + u;
                            if (unit >= H) continue;
                            size_t row = (size_t)g * H + unit;
                            double b = frn_get(src->b_ih, dt, row);
                            /* GRU lbr: b_hn is added inside r * (...) */
                            if (!(lbr && g == 2)) b += frn_get(src->b_hh, dt, row);
                            frn_put(w->bias_x, dt, ((size_t)j * p->G + g) * vl + u, b);
                        }
            }
            if (lbr) {
                w->bias_hn = frn_zalloc((size_t)p->nbp * vl * es, &total);
                if (!w->bias_hn) goto nomem;
                if (src->b_hh)
                    for (int u = 0; u < H; u++)
                        frn_put(w->bias_hn, dt, u, frn_get(src->b_hh, dt, (size_t)2 * H + u));
            }
            if (lstm && d->proj_size > 0) {
                w->whr = frn_zalloc((size_t)p->np_p * H * 4 * vl * es, &total);
                if (!w->whr) goto nomem;
                frn_pack_panels(w->whr, src->w_hr, dt, H, d->proj_size, vl, p->np_p, 4, 0, 1, 0);
            }
            if (lstm && d->peephole) {
                size_t ld = (size_t)p->nbp * vl;
                w->peep = frn_zalloc(3 * ld * es, &total);
                if (!w->peep) goto nomem;
                for (int g = 0; g < 3; g++)
                    for (int u = 0; u < H; u++)
                        frn_put(w->peep, dt, g * ld + u, frn_get(src->peephole, dt, (size_t)g * H + u));
            }
        }
    p->bytes = total;
    *out = p;
    return FRN_OK;
nomem:
    frn_plan_free(p);
    return FRN_ENOMEM;
}

int frn_plan_isa(const frn_plan *plan) { return plan->isa; }
size_t frn_plan_bytes(const frn_plan *plan) { return plan->bytes; }

int frn_linear_create(int dtype, int N, int K, const void *w, const void *bias, frn_linear **out)
{
    *out = NULL;
    if (N < 1 || K < 1) return FRN_EINVAL;
    frn_linear *l = calloc(1, sizeof *l);
    if (!l) return FRN_ENOMEM;
    size_t total = 0;
    l->isa = frn_get_isa();
    l->dtype = dtype;
    l->vl = frn_lanes(l->isa, dtype);
    l->esz = dtype == FRN_F64 ? 8 : 4;
    l->N = N;
    l->K = K;
    l->nbp = frn_roundup((N + l->vl - 1) / l->vl, 4);
    l->np = l->nbp / 4;
    l->xw = l->nbp * l->vl;
    l->w = frn_zalloc((size_t)l->np * K * 4 * l->vl * l->esz, &total);
    l->bias = frn_zalloc((size_t)l->xw * l->esz, &total);
    if (!l->w || !l->bias) {
        frn_linear_free(l);
        return FRN_ENOMEM;
    }
    frn_pack_panels(l->w, w, dtype, K, N, l->vl, l->np, 4, 0, 1, 0);
    if (bias) memcpy(l->bias, bias, (size_t)N * l->esz);
    *out = l;
    return FRN_OK;
}

void frn_linear_free(frn_linear *lin)
{
    if (!lin) return;
    free(lin->w);
    free(lin->bias);
    free(lin);
}
