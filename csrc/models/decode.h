/*
 * decode.h -- the per-step generation loop of encoder-decoder models and of
 * decoder-only language models (SPEC §7), in plain C on the engine's C API.
 *
 * One call generates up to max_len tokens for B sequences: every step gathers the
 * embeddings of the previous tokens, steps the decoder's recurrent layers as a
 * stream over B*beam rows (frn_stream_step), optionally attends over the encoder
 * outputs, applies the output projection (frn_linear_apply), takes log_softmax and
 * picks the next tokens -- greedy, beam search, or sampling with a temperature.
 * The encoder has already run (the ordinary layer call from Python); its final
 * states arrive as h0/c0 and its outputs as keys.
 *
 * As everywhere in the engine, Python has checked every shape, size and index
 * first (fastrnn/models/): the C code trusts its arguments.
 */
#ifndef FRN_DECODE_H
#define FRN_DECODE_H

#include <stdint.h>

#include "../fastrnn.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { FRN_ATTN_NONE = 0, FRN_ATTN_DOT = 1, FRN_ATTN_ADDITIVE = 2 };

typedef struct {
    int dtype;             /* FRN_F32 or FRN_F64: every float array below */
    int B;                 /* sequences, >= 1 */
    int beam;              /* beam width >= 1 (1: greedy, or sampling) */
    int max_len;           /* tokens generated at most, >= 1 */
    int eos;               /* in [0, V), or -1: no end token (max_len tokens) */
    double length_penalty; /* beam score = sum log p / len**length_penalty */
    double temperature;    /* > 0: sample from softmax(logits / temperature), beam 1 */
    uint64_t seed;         /* of the sampler */

    /* the decoder: embedding -> recurrent layers -> [attention] -> output linear */
    const frn_plan *rnn;   /* unidirectional plan, L layers, input E, h_out HO, hidden H */
    int L, E, HO, H;
    int lstm;              /* 1: the plan carries a cell state */
    const void *h0;        /* (L, B, HO) initial state, or NULL (zeros) */
    const void *c0;        /* (L, B, H) (LSTM), or NULL (zeros) */
    const int64_t *first;  /* (B,) the token fed at step 0 (bos), each in [0, V_in) */
    const void *emb;       /* (V_in, E) embedding table, V_in >= V */
    const frn_linear *out; /* V outputs from HO (+ K with attention) features */
    int V;

    /* attention over the encoder outputs (attn != FRN_ATTN_NONE) */
    int attn;
    int S, K;              /* encoder steps and features */
    const void *keys;      /* (B, S, K) */
    const int64_t *key_len; /* (B,) valid steps, each in [1, S] */
    const frn_linear *wa;  /* additive: HO -> A (query) */
    const frn_linear *ua;  /* additive: K -> A (keys) */
    const void *va;        /* additive: (A,) */
    double va_bias;
    int A;

    /* results: each row its tokens then padding (eos, or 0 without eos; logp 0) up to
       the longest row; the columns after that are not written */
    int64_t *tokens;       /* (B, max_len) */
    void *logp;            /* (B, max_len) log p of each token under the model */
    int64_t *lengths;      /* (B,) tokens in each result (eos included) */
} frn_decode_args;

/* Generate; n_threads (>= 1) for the stream, the linear layers and the row loops.
   Results are identical for any thread count. */
int frn_decode(const frn_decode_args *a, int n_threads);

#ifdef __cplusplus
}
#endif
#endif /* FRN_DECODE_H */
