/*
 * decode_impl.h -- the generation loop for one dtype; included by decode.c with
 * FRN_T (float or double) and FRN_DEC(name) (name_f32, name_f64) defined.
 *
 * Rows: source b's beams are rows b*beam .. b*beam + beam - 1 of every per-row
 * buffer and of the decoder stream; slot k of source b is row b*beam + k.
 */

/* Attention of rows [r0, r1): feat[r] = [hout[r], context(r)]. */
static void FRN_DEC(frn_attend)(const frn_decode_args *a, const FRN_T *hout, const FRN_T *qa,
                                const FRN_T *kp, const unsigned char *live, FRN_T *feat,
                                double *scratch, int r)
{
    const int HO = a->HO, K = a->K, S = a->S, A = a->A, beam = a->beam;
    const int FW = HO + K;
    FRN_T *f = feat + (size_t)r * FW;
    memcpy(f, hout + (size_t)r * HO, sizeof(FRN_T) * HO);
    FRN_T *ctx = f + HO;
    if (!live[r]) { /* its logits are never read; keep the row finite and cheap */
        memset(ctx, 0, sizeof(FRN_T) * K);
        return;
    }
    const int b = r / beam;
    const int n = (int)a->key_len[b];
    const FRN_T *keys = (const FRN_T *)a->keys + (size_t)b * S * K;
    const FRN_T *q = hout + (size_t)r * HO;
    double *sc = scratch;
    if (a->attn == FRN_ATTN_DOT) {
        for (int s = 0; s < n; s++) {
            const FRN_T *k = keys + (size_t)s * K;
            double acc = 0;
            for (int i = 0; i < K; i++) acc += (double)q[i] * (double)k[i];
            sc[s] = acc;
        }
    } else {
        const FRN_T *va = (const FRN_T *)a->va;
        const FRN_T *qr = qa + (size_t)r * A;
        for (int s = 0; s < n; s++) {
            const FRN_T *kr = kp + ((size_t)b * S + s) * A;
            double acc = 0;
            for (int j = 0; j < A; j++) acc += (double)va[j] * tanh((double)qr[j] + (double)kr[j]);
            sc[s] = acc + a->va_bias;
        }
    }
    double m = sc[0];
    for (int s = 1; s < n; s++)
        if (sc[s] > m) m = sc[s];
    double z = 0;
    for (int s = 0; s < n; s++) {
        sc[s] = exp(sc[s] - m);
        z += sc[s];
    }
    double *acc = sc + S; /* K more doubles */
    for (int i = 0; i < K; i++) acc[i] = 0;
    for (int s = 0; s < n; s++) {
        const double w = sc[s] / z;
        const FRN_T *k = keys + (size_t)s * K;
        for (int i = 0; i < K; i++) acc[i] += w * (double)k[i];
    }
    for (int i = 0; i < K; i++) ctx[i] = (FRN_T)acc[i];
}

/* lp[r] = log_softmax(logits[r]) in double, stored as FRN_T. */
static void FRN_DEC(frn_log_softmax)(const FRN_T *x, FRN_T *lp, int V)
{
    double m = x[0];
    for (int v = 1; v < V; v++)
        if (x[v] > m) m = x[v];
    double s = 0;
    for (int v = 0; v < V; v++) s += exp((double)x[v] - m);
    const double lse = m + log(s);
    for (int v = 0; v < V; v++) lp[v] = (FRN_T)((double)x[v] - lse);
}

/* A token drawn from softmax(lp / temperature); argmax when that is not a
   distribution (NaN, or nothing left after rounding). */
static int FRN_DEC(frn_sample)(const FRN_T *lp, int V, double temperature, frn_rng *rng,
                               double *w)
{
    int best = 0;
    for (int v = 1; v < V; v++)
        if (lp[v] > lp[best]) best = v;
    const double m = lp[best];
    double total = 0;
    for (int v = 0; v < V; v++) {
        w[v] = exp(((double)lp[v] - m) / temperature);
        total += w[v];
    }
    const double u = frn_rng_uniform(rng); /* drawn even when unused: one per step */
    if (!(total > 0) || !isfinite(total)) return best;
    const double target = u * total;
    double acc = 0;
    for (int v = 0; v < V; v++) {
        acc += w[v];
        if (acc > target) return v;
    }
    return best;
}

static int FRN_DEC(frn_decode_run)(const frn_decode_args *a, int nt)
{
    const int B = a->B, beam = a->beam, V = a->V, E = a->E, HO = a->HO, H = a->H, L = a->L;
    const int R = B * beam, T = a->max_len, S = a->S, K = a->K, A = a->A;
    const int attn = a->attn, eos = a->eos;
    const int FW = attn ? HO + K : HO;
    const int sampling = a->temperature > 0;
    const FRN_T *emb = (const FRN_T *)a->emb;
    int status = FRN_OK;

    frn_stream *stream = NULL;
    FRN_T *x = NULL, *hout = NULL, *feat = NULL, *logits = NULL, *lp = NULL, *qa = NULL,
          *kp = NULL, *hs = NULL, *cs = NULL;
    double *scratch = NULL, *cum = NULL, *hist_lp = NULL, *new_sum = NULL, *new_lp = NULL;
    int32_t *hist_tok = NULL, *hist_par = NULL, *idx = NULL;
    int *new_k = NULL, *new_tok = NULL;
    int64_t *cur = NULL;
    unsigned char *live = NULL;
    frn_src *src = NULL;
    frn_cand *list = NULL;
    const size_t sc_per = attn ? (size_t)S + K : 0;
    const size_t sc_n = (size_t)nt * sc_per + (sampling ? (size_t)V : 0);

    status = frn_stream_create(a->rnn, R, &stream);
    if (status != FRN_OK) goto out;
#define FRN_ALLOC(p, n) \
    do { \
        if (!((p) = malloc(sizeof(*(p)) * ((size_t)(n) > 0 ? (size_t)(n) : 1)))) goto nomem; \
    } while (0)
    FRN_ALLOC(x, (size_t)R * E);
    FRN_ALLOC(hout, (size_t)R * HO);
    FRN_ALLOC(logits, (size_t)R * V);
    FRN_ALLOC(lp, (size_t)R * V);
    FRN_ALLOC(cum, R);
    FRN_ALLOC(cur, R);
    FRN_ALLOC(live, R);
    FRN_ALLOC(idx, R);
    FRN_ALLOC(hist_tok, (size_t)T * R);
    FRN_ALLOC(hist_par, (size_t)T * R);
    FRN_ALLOC(hist_lp, (size_t)T * R);
    FRN_ALLOC(src, B);
    FRN_ALLOC(list, 2 * beam);
    FRN_ALLOC(new_k, beam);
    FRN_ALLOC(new_tok, beam);
    FRN_ALLOC(new_sum, beam);
    FRN_ALLOC(new_lp, beam);
    FRN_ALLOC(scratch, sc_n);
    if (attn) {
        FRN_ALLOC(feat, (size_t)R * FW);
        if (attn == FRN_ATTN_ADDITIVE) {
            FRN_ALLOC(qa, (size_t)R * A);
            FRN_ALLOC(kp, (size_t)B * S * A);
        }
    }

    /* the initial state: each source's row repeated for its beams */
    if (a->h0 || a->c0) {
        FRN_ALLOC(hs, (size_t)L * R * HO);
        if (a->lstm) FRN_ALLOC(cs, (size_t)L * R * H);
        for (int l = 0; l < L; l++)
            for (int r = 0; r < R; r++) {
                const int b = r / beam;
                FRN_T *hd = hs + ((size_t)l * R + r) * HO;
                if (a->h0)
                    memcpy(hd, (const FRN_T *)a->h0 + ((size_t)l * B + b) * HO, sizeof(FRN_T) * HO);
                else
                    memset(hd, 0, sizeof(FRN_T) * HO);
                if (cs) {
                    FRN_T *cd = cs + ((size_t)l * R + r) * H;
                    if (a->c0)
                        memcpy(cd, (const FRN_T *)a->c0 + ((size_t)l * B + b) * H, sizeof(FRN_T) * H);
                    else
                        memset(cd, 0, sizeof(FRN_T) * H);
                }
            }
        status = frn_stream_state(stream, hs, cs, 1);
        if (status != FRN_OK) goto out;
    }
    if (attn == FRN_ATTN_ADDITIVE) { /* Ua k for every encoder step, once */
        /* the B*S rows in calls of at most 2^30 (frn_linear_apply counts rows in an
           int; B*S in one int wrapped past 2^31 and left kp unwritten) */
        const long total = (long)B * S, most = 1L << 30;
        for (long r0 = 0; r0 < total && status == FRN_OK; r0 += most)
            status = frn_linear_apply(a->ua, (int)(total - r0 < most ? total - r0 : most),
                                      (const FRN_T *)a->keys + r0 * a->K, kp + r0 * A, nt);
        if (status != FRN_OK) goto out;
    }

    frn_rng rng;
    frn_rng_seed(&rng, a->seed);
    for (int b = 0; b < B; b++) {
        memset(&src[b], 0, sizeof src[b]);
        src[b].n_live = 1;
        for (int k = 0; k < beam; k++) {
            cur[b * beam + k] = a->first[b];
            cum[b * beam + k] = 0;
        }
    }

    for (int t = 0; t < T; t++) {
        for (int r = 0; r < R; r++) {
            const frn_src *st = &src[r / beam];
            live[r] = !st->done && r % beam < st->n_live;
            memcpy(x + (size_t)r * E, emb + (size_t)cur[r] * E, sizeof(FRN_T) * E);
        }
        status = frn_stream_step(stream, x, hout, nt);
        if (status != FRN_OK) goto out;
        /* the rest of the step on one thread while the stream's helpers spin on the
           other cores (measured: greedy batch 32 on 2 threads, 1.5x slower than on
           one with OpenMP here too) */
        const int ntw = frn_stream_helper_count(stream) > 0 ? 1 : nt;
        const FRN_T *fin = hout;
        if (attn) {
            if (attn == FRN_ATTN_ADDITIVE) {
                status = frn_linear_apply(a->wa, R, hout, qa, ntw);
                if (status != FRN_OK) goto out;
            }
            const long work = (long)R * S * (attn == FRN_ATTN_DOT ? 2L * K : (long)A + K);
            const int ntr = work >= FRN_DECODE_PAR_WORK ? ntw : 1;
#pragma omp parallel for num_threads(ntr) schedule(static) if (ntr > 1)
            for (int r = 0; r < R; r++)
                FRN_DEC(frn_attend)(a, hout, qa, kp, live, feat,
                                    scratch + (size_t)omp_get_thread_num() * sc_per, r);
            fin = feat;
        }
        status = frn_linear_apply(a->out, R, fin, logits, ntw);
        if (status != FRN_OK) goto out;
        {
            const int ntr = (long)R * V * 8 >= FRN_DECODE_PAR_WORK ? ntw : 1;
#pragma omp parallel for num_threads(ntr) schedule(static) if (ntr > 1)
            for (int r = 0; r < R; r++)
                if (live[r]) FRN_DEC(frn_log_softmax)(logits + (size_t)r * V, lp + (size_t)r * V, V);
        }

        int all_done = 1;
        for (int b = 0; b < B; b++) {
            frn_src *st = &src[b];
            const int row0 = b * beam;
            for (int k = 0; k < beam; k++) idx[row0 + k] = row0 + k;
            if (st->done) continue;
            /* the best candidates, in the SPEC's order */
            int cnt = 0;
            const int n = st->n_live, cap = beam + n;
            if (sampling) {
                const FRN_T *l = lp + (size_t)row0 * V;
                const int tok = FRN_DEC(frn_sample)(l, V, a->temperature, &rng, scratch + (size_t)nt * sc_per);
                const double lpv = l[tok];
                list[0] = (frn_cand){lpv, cum[row0] + lpv, lpv, 0, tok};
                cnt = 1;
            } else {
                for (int k = 0; k < n; k++) {
                    const FRN_T *l = lp + (size_t)(row0 + k) * V;
                    const double base = cum[row0 + k];
                    for (int v = 0; v < V; v++) {
                        const double lpv = l[v];
                        const double key = n == 1 ? lpv : base + lpv;
                        if (cnt == cap && !(key > list[cap - 1].key)) continue;
                        frn_cand c = {key, base + lpv, lpv, k, v};
                        frn_cand_insert(list, &cnt, cap, c);
                    }
                }
            }
            /* walk it: eos among the first `beam` finishes, the first `beam` others live */
            int nl = 0;
            for (int i = 0; i < cnt && nl < beam; i++) {
                const frn_cand *c = &list[i];
                if (c->tok == eos) {
                    if (i < beam) frn_finish(st, t, c->tok, c->lp, c->sum, c->k, a->length_penalty);
                    continue;
                }
                new_k[nl] = c->k;
                new_tok[nl] = c->tok;
                new_sum[nl] = c->sum;
                new_lp[nl] = c->lp;
                nl++;
            }
            for (int j = 0; j < nl; j++) {
                const int r = row0 + j;
                idx[r] = row0 + new_k[j];
                hist_tok[(size_t)t * R + r] = new_tok[j];
                hist_par[(size_t)t * R + r] = new_k[j];
                hist_lp[(size_t)t * R + r] = new_lp[j];
                cum[r] = new_sum[j];
                cur[r] = new_tok[j];
            }
            st->n_live = nl;
            if (st->n_fin >= beam || nl == 0) {
                st->done = 1;
            } else if (t == T - 1) { /* out of steps: the live beams finish, in order */
                for (int j = 0; j < nl; j++)
                    frn_finish(st, t, new_tok[j], new_lp[j], new_sum[j], new_k[j], a->length_penalty);
                st->done = 1;
            }
            all_done &= st->done;
        }
        if (all_done) break;
        if (beam > 1) {
            status = frn_stream_reorder(stream, idx);
            if (status != FRN_OK) goto out;
        }
    }

    /* the best hypothesis of each source, back through the parents, padded up to the
       longest one (the caller keeps that many columns: the rest of max_len is never
       touched, so asking for a large max_len costs nothing until it is used) */
    int longest = 0;
    for (int b = 0; b < B; b++)
        if (src[b].best_t + 1 > longest) longest = src[b].best_t + 1;
    for (int b = 0; b < B; b++) {
        const frn_src *st = &src[b];
        int64_t *tok = a->tokens + (size_t)b * T;
        FRN_T *lpo = (FRN_T *)a->logp + (size_t)b * T;
        const int len = st->best_t + 1;
        tok[len - 1] = st->best_tok;
        lpo[len - 1] = (FRN_T)st->best_lp;
        int slot = st->best_par;
        for (int s = len - 2; s >= 0; s--) {
            const size_t h = (size_t)s * R + (size_t)b * beam + slot;
            tok[s] = hist_tok[h];
            lpo[s] = (FRN_T)hist_lp[h];
            slot = hist_par[h];
        }
        for (int s = len; s < longest; s++) {
            tok[s] = eos >= 0 ? eos : 0;
            lpo[s] = 0;
        }
        a->lengths[b] = len;
    }
    goto out;
#undef FRN_ALLOC
nomem:
    status = FRN_ENOMEM;
out:
    frn_stream_free(stream);
    free(x);
    free(hout);
    free(feat);
    free(logits);
    free(lp);
    free(qa);
    free(kp);
    free(hs);
    free(cs);
    free(scratch);
    free(cum);
    free(hist_lp);
    free(new_sum);
    free(new_lp);
    free(hist_tok);
    free(hist_par);
    free(idx);
    free(new_k);
    free(new_tok);
    free(cur);
    free(live);
    free(src);
    free(list);
    return status;
}
