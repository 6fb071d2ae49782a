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


cdef int _decode_checks(Plan rnn, int L, int E, int HO, int H, bint lstm, h0, c0, first, emb,
                        Linear out, int V, attn, keys, key_len, Linear wa, Linear ua, va,
                        int beam, int max_len, int eos, tokens, logp, lengths) except -1:
    """The last check before the C loop, which trusts its arguments: every array the
    size its role and the model's sizes say, every index in range. The models check
    all of this first; this catches what changed meanwhile (another thread, or the
    caller's code run while an argument converted)."""
    if emb is None or not cnp.PyArray_Check(emb) or cnp.PyArray_NDIM(<cnp.ndarray>emb) != 2:
        raise ValueError("emb must be a 2-D array")
    cdef int ft = cnp.NPY_FLOAT64 if emb.dtype.itemsize == 8 else cnp.NPY_FLOAT32
    cdef cnp.npy_intp n_emb = emb.shape[0]
    if first is None or not cnp.PyArray_Check(first):
        raise ValueError("first must be an array")
    cdef cnp.npy_intp B = cnp.PyArray_SIZE(<cnp.ndarray>first)
    if (rnn.num_dirs != 1 or rnn.num_layers != L or rnn.in_size != E or rnn.h_out != HO
            or rnn.hidden != H or rnn.lstm != lstm or rnn.typenum != ft):
        raise ValueError("the decoder's plan does not match the sizes given")
    if (emb.shape[1] != E or V < 1 or V > n_emb or out.N != V or out.typenum != ft
            or beam < 1 or max_len < 1 or eos < -1 or eos >= V or B < 1):
        raise ValueError("the decoder's sizes do not agree")
    _arg(emb, "emb", ft, n_emb * E)
    _arg(first, "first", cnp.NPY_INT64, B)
    _in_range(first, "first", 0, n_emb)
    _arg(h0, "h0", ft, <cnp.npy_intp>L * B * HO)
    _arg(c0, "c0", ft, <cnp.npy_intp>L * B * H)
    if c0 is not None and not lstm:
        raise ValueError("c0 is for an LSTM decoder only")
    cdef cnp.npy_intp S = 0, K = 0
    if attn is not None:
        if keys is None or not cnp.PyArray_Check(keys) or keys.ndim != 3 \
                or keys.shape[0] != B or keys.shape[1] < 1:
            raise ValueError("keys must be (B, S, K) with S >= 1")
        S, K = keys.shape[1], keys.shape[2]
        _arg(keys, "keys", ft, B * S * K)
        _arg(key_len, "key_len", cnp.NPY_INT64, B)
        _in_range(key_len, "key_len", 1, S + 1)
        if attn == "dot" and K != HO:
            raise ValueError(f"dot attention needs keys of {HO} features, not {K}")
        if attn == "additive":
            if wa is None or ua is None or va is None:
                raise ValueError("additive attention needs wa, ua and va")
            _arg(va, "va", ft, va.shape[0] if cnp.PyArray_Check(va) else -1)
            if wa.K != HO or ua.K != K or wa.N != va.shape[0] or ua.N != va.shape[0] \
                    or wa.typenum != ft or ua.typenum != ft:
                raise ValueError("the attention's sizes do not agree")
    if out.K != HO + K:
        raise ValueError(f"the output layer takes {out.K} features, not {HO + K}")
    _arg(tokens, "tokens", cnp.NPY_INT64, B * max_len)
    _arg(logp, "logp", ft, B * max_len)
    _arg(lengths, "lengths", cnp.NPY_INT64, B)
    for name, res in (("tokens", tokens), ("logp", logp), ("lengths", lengths)):
        if not cnp.PyArray_ISWRITEABLE(<cnp.ndarray>res):
            raise ValueError(f"{name} must be writeable")
    return 0


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
    _decode_checks(rnn, L, E, HO, H, lstm, h0, c0, first, emb, out, V, attn, keys, key_len,
                   wa, ua, va, beam, max_len, eos, tokens, logp, lengths)
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
