# Cython declarations and wrappers for csrc/models/ (whole-model helpers: the
# decoding loop of encoder-decoder generation). Included at the end of
# _kernels.pyx so the C code lives in the one extension module.
#
# As in _kernels.pyx: no math and no checks here. fastrnn/models/ has validated
# every shape, id and size and made every array C-contiguous of the model dtype
# (ids int64); this makes the one C call with the GIL released.


cdef extern from "models/decode.h" nogil:
    enum:
        FRN_ATTN_NONE
        FRN_ATTN_DOT
        FRN_ATTN_ADDITIVE

    ctypedef struct frn_decode_args:
        int dtype
        int B
        int beam
        int max_len
        int eos
        double length_penalty
        double temperature
        uint64_t seed
        const frn_plan *rnn
        int L
        int E
        int HO
        int H
        int lstm
        const void *h0
        const void *c0
        const int64_t *first
        const void *emb
        const frn_linear *out
        int V
        int attn
        int S
        int K
        const void *keys
        const int64_t *key_len
        const frn_linear *wa
        const frn_linear *ua
        const void *va
        double va_bias
        int A
        int64_t *tokens
        void *logp
        int64_t *lengths

    int frn_decode(const frn_decode_args *a, int n_threads)


ATTN_CODES = {None: FRN_ATTN_NONE, "dot": FRN_ATTN_DOT, "additive": FRN_ATTN_ADDITIVE}


def decode(Plan rnn, int L, int E, int HO, int H, bint lstm, h0, c0, first, emb, Linear out,
           int V, attn, keys, key_len, Linear wa, Linear ua, va, double va_bias, int beam,
           int max_len, int eos, double length_penalty, double temperature, uint64_t seed,
           tokens, logp, lengths, int n_threads):
    """Generate with csrc/models/decode.c (see frn_decode_args in decode.h).

    first, key_len, tokens, lengths int64; every float array of the model dtype;
    keys (B, S, K); tokens and logp (B, max_len); h0/c0/keys/key_len/wa/ua/va may
    be None where unused.
    """
    cdef frn_decode_args a
    cdef int rc
    a.dtype = FRN_F64 if emb.dtype.itemsize == 8 else FRN_F32
    a.B = first.shape[0]
    a.beam = beam
    a.max_len = max_len
    a.eos = eos
    a.length_penalty = length_penalty
    a.temperature = temperature
    a.seed = seed
    a.rnn = rnn.ptr
    a.L = L
    a.E = E
    a.HO = HO
    a.H = H
    a.lstm = lstm
    a.h0 = _ptr(h0)
    a.c0 = _ptr(c0)
    a.first = <const int64_t *>_ptr(first)
    a.emb = _ptr(emb)
    a.out = out.ptr
    a.V = V
    a.attn = ATTN_CODES[attn]
    a.S = keys.shape[1] if keys is not None else 0
    a.K = keys.shape[2] if keys is not None else 0
    a.keys = _ptr(keys)
    a.key_len = <const int64_t *>_ptr(key_len)
    a.wa = wa.ptr if wa is not None else NULL
    a.ua = ua.ptr if ua is not None else NULL
    a.va = _ptr(va)
    a.va_bias = va_bias
    a.A = va.shape[0] if va is not None else 0
    a.tokens = <int64_t *>_ptr(tokens)
    a.logp = _ptr(logp)
    a.lengths = <int64_t *>_ptr(lengths)
    with nogil:
        rc = frn_decode(&a, n_threads)
    _check(rc)
