"""Generation: encoder-decoder models (Seq2Seq, with optional attention) and
decoder-only language models, decoded step by step in C (csrc/models/decode.c)."""

from __future__ import annotations

import numpy as np

from .. import _kernels
from .. import _validate as v
from ..layers import GRU, LSTM, RNN
from ._base import Module, ids, input_dtype, is_torch, torch_dtype
from ._basic import Dropout, Embedding, Linear
from ._sequential import Sequential, save_model

__all__ = ["Attention", "Seq2Seq", "LanguageModel"]

_INT_MAX = 2**31 - 1


class Attention(Module):
    """Attention of decoder outputs (queries) over encoder outputs (keys).

    ``Attention("dot")`` scores q . k (no weights; query and key sizes must agree).
    ``Attention("additive", query_size, key_size, attn_size)`` scores
    Va(tanh(Wa q + Ua k)) (Bahdanau), with torch Linear modules ``Wa``
    (query_size -> attn_size), ``Ua`` (key_size -> attn_size) and ``Va``
    (attn_size -> 1): state_dict ``Wa.weight``, ``Wa.bias``, ``Ua.weight``, ...
    (``bias=False``: no biases at all).

    Call ``context, weights = attn(query, keys, lengths=None)``: query (B, T, Q)
    or (B, Q), keys (B, S, K), lengths (B,) the valid encoder steps (scores past
    them are excluded from the softmax); context (B, T, K) or (B, K), weights
    (B, T, S) or (B, S). Scores and softmax run in float64.
    """

    _fixed = frozenset({"dtype", "kind", "query_size", "key_size", "attn_size", "has_bias",
                        "Wa", "Ua", "Va"})

    def __init__(self, kind, query_size=None, key_size=None, attn_size=None, *, bias=True,
                 dtype="float32", seed=None):
        super().__init__()
        self.kind = v.choice("kind", kind, ("dot", "additive"))
        self.has_bias = v.flag("bias", bias)
        rng = self._init_dtype(dtype, seed)
        if self.kind == "dot":
            given = [n for n, s in (("query_size", query_size), ("key_size", key_size),
                                    ("attn_size", attn_size)) if s is not None]
            if given:
                raise ValueError(f"dot attention has no weights; {', '.join(given)} must not be "
                                 "given")
            self.query_size = self.key_size = self.attn_size = None
            return
        for name, size in (("query_size", query_size), ("key_size", key_size),
                           ("attn_size", attn_size)):
            if size is None:
                raise ValueError(f"additive attention needs {name}: Attention('additive', "
                                 "query_size, key_size, attn_size)")
        self.query_size = v.integer("query_size", query_size, minimum=1)
        self.key_size = v.integer("key_size", key_size, minimum=1)
        self.attn_size = v.integer("attn_size", attn_size, minimum=1)
        seeds = rng.integers(0, 2**62, size=3)
        kw = dict(bias=self.has_bias, dtype=self.dtype)
        self.Wa = Linear(self.query_size, self.attn_size, seed=int(seeds[0]), **kw)
        self.Ua = Linear(self.key_size, self.attn_size, seed=int(seeds[1]), **kw)
        self.Va = Linear(self.attn_size, 1, seed=int(seeds[2]), **kw)

    def _children(self):
        if self.kind == "dot":
            return ()
        return [("Wa", self.Wa), ("Ua", self.Ua), ("Va", self.Va)]

    def __call__(self, query, keys, lengths=None):
        dt = self.dtype if self.kind == "additive" else input_dtype(keys)
        k = v.numeric("keys", keys)  # both converted once their shapes are known right
        if k.ndim != 3:
            raise ValueError(f"keys must be 3-D (B, S, key_size); got shape {k.shape}")
        B, S, K = k.shape
        q = v.numeric("query", query)
        single = q.ndim == 2
        if single:
            q = q[:, None, :]
        if q.ndim != 3 or q.shape[0] != B:
            raise ValueError(f"query has shape {np.shape(query)}; expected (B={B}, T, Q) or "
                             f"(B={B}, Q)")
        if S < 1:
            raise ValueError(f"keys has {S} steps (shape {k.shape}); S must be >= 1")
        self._check_sizes(q.shape[2], K)
        lens = v.lengths(lengths, B, S)
        k, q = v.convert(k, dt), v.convert(q, dt)
        valid = (np.arange(S)[None, :] < (lens if lens is not None else np.full(B, S))[:, None])
        if self.kind == "dot":
            scores = np.einsum("btq,bsq->bts", q.astype(np.float64), k.astype(np.float64))
        else:
            wq = self.Wa(q).astype(np.float64)  # (B, T, A)
            uk = self.Ua(k).astype(np.float64)  # (B, S, A)
            va = self.Va._params["weight"][0].astype(np.float64)
            e = np.tanh(wq[:, :, None, :] + uk[:, None, :, :])
            scores = e @ va
            if self.has_bias:
                scores = scores + float(self.Va._params["bias"][0])
        scores = np.where(valid[:, None, :], scores, -np.inf)
        with np.errstate(invalid="ignore"):
            m = scores.max(axis=2, keepdims=True) if scores.size else 0.0
            w = np.where(valid[:, None, :], np.exp(scores - m), 0.0)
            w = w / w.sum(axis=2, keepdims=True)
        ctx = w @ np.where(valid[:, :, None], k.astype(np.float64), 0.0)
        ctx = np.ascontiguousarray(ctx, dtype=dt)
        w = np.ascontiguousarray(w, dtype=dt)
        return (ctx[:, 0], w[:, 0]) if single else (ctx, w)

    def _check_sizes(self, Q, K):
        if self.kind == "dot":
            if Q != K:
                raise ValueError(f"dot attention needs query and key sizes to agree; got query "
                                 f"size {Q}, key size {K}")
            return
        if Q != self.query_size:
            raise ValueError(f"query has {Q} features; this attention has query_size="
                             f"{self.query_size}")
        if K != self.key_size:
            raise ValueError(f"keys have {K} features; this attention has key_size="
                             f"{self.key_size}")

    @classmethod
    def from_torch(cls, module) -> Attention:
        """Additive attention from a torch module holding ``Linear`` modules named ``Wa``
        (query -> attn), ``Ua`` (key -> attn) and ``Va`` (attn -> 1) and no other
        parameters -- the Bahdanau form ``Va(tanh(Wa(q) + Ua(k)))`` (its forward is
        not read). Dot attention has no weights: build ``Attention("dot")``."""
        name = type(module).__name__
        if not hasattr(module, "state_dict"):
            raise TypeError(f"Attention.from_torch expects a torch module, got {name}")
        parts = {}
        for part in ("Wa", "Ua", "Va"):
            lin = getattr(module, part, None)
            if lin is None or not is_torch(lin, ("Linear",)):
                raise TypeError(
                    f"Attention.from_torch needs a torch module with Linear modules named Wa, Ua "
                    f"and Va (additive attention); {name} has "
                    + (f"no {part!r}" if lin is None else f"{part!r} of type "
                       f"{type(lin).__name__}")
                    + "; for dot attention (no weights) use Attention('dot')"
                )
            parts[part] = lin
        others = [k for k in module.state_dict() if k.split(".")[0] not in parts]
        if others:
            raise ValueError(f"{name} has parameters besides Wa, Ua and Va ({', '.join(others)})"
                             "; Attention holds only those three")
        biases = {p: parts[p].bias is not None for p in parts}
        if len(set(biases.values())) != 1:
            raise ValueError(f"{name}: Wa, Ua and Va must all have a bias or all have none; "
                             f"got {biases}")
        wa, ua, va = parts["Wa"], parts["Ua"], parts["Va"]
        if va.out_features != 1:
            raise ValueError(f"{name}.Va is Linear({va.in_features}, {va.out_features}); "
                             "it must give one score (out_features=1)")
        if not (wa.out_features == ua.out_features == va.in_features):
            raise ValueError(f"{name}: Wa gives {wa.out_features}, Ua {ua.out_features} and Va "
                             f"takes {va.in_features} features; they must agree")
        attn = cls("additive", wa.in_features, ua.in_features, wa.out_features,
                   bias=biases["Wa"], dtype=torch_dtype(module))
        attn.load_state_dict({k: t for k, t in module.state_dict().items()})
        return attn

    def _config(self):
        return {"kind": self.kind, "query_size": self.query_size, "key_size": self.key_size,
                "attn_size": self.attn_size, "bias": self.has_bias, "dtype": self.dtype.name}

    def __repr__(self):
        if self.kind == "dot":
            return "Attention('dot')"
        extra = "" if self.has_bias else ", bias=False"
        if self.dtype != np.float32:
            extra += f", dtype='{self.dtype.name}'"
        return (f"Attention('additive', {self.query_size}, {self.key_size}, "
                f"{self.attn_size}{extra})")


# -- shared by Seq2Seq and LanguageModel -------------------------------------------

def _members(seq, what, pattern):
    if not isinstance(seq, Sequential):
        raise TypeError(f"{what} must be a fastrnn.Sequential({pattern}), got "
                        f"{type(seq).__name__}")
    return [m for m in seq if not isinstance(m, Dropout)]


def _shape_of(seq):
    return "Sequential(" + ", ".join(type(m).__name__ for m in seq) + ")"


def _gen_options(max_len, beam_width, length_penalty, temperature, seed, B):
    max_len = v.integer("max_len", max_len, minimum=1, maximum=_INT_MAX)
    beam = v.integer("beam_width", beam_width, minimum=1, maximum=_INT_MAX)
    if B * beam > _INT_MAX:
        raise ValueError(f"{B} sequences x beam_width {beam} is too many rows (at most "
                         f"{_INT_MAX})")
    lp = v.real("length_penalty", length_penalty)
    temp = v.real("temperature", 0.0 if temperature is None else temperature)
    if temp < 0:
        raise ValueError(f"temperature is {temp}; it must be >= 0 (0: greedy or beam search, "
                         "> 0: sampling)")
    if temp > 0 and beam != 1:
        raise ValueError(f"temperature={temp} samples, which needs beam_width=1 (got "
                         f"{beam}); use temperature=0 for beam search")
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1, np.uint64)[0])
    else:
        seed = v.integer("seed", seed, minimum=0, maximum=2**64 - 1)
    return max_len, beam, lp, temp, seed


def _decode(rnn, emb, out, *, h0, c0, first, attn=None, keys=None, key_len=None, beam,
            max_len, eos, length_penalty, temperature, seed):
    """One C call (csrc/models/decode.c); returns (tokens, logp) trimmed to the
    longest result."""
    B = first.shape[0]
    dt = rnn.dtype
    tokens = np.empty((B, max_len), np.int64)
    logp = np.empty((B, max_len), dt)
    lens = np.empty(B, np.int64)
    kind = wa = ua = va = None
    vb = 0.0
    if attn is not None:
        kind = attn.kind
        if kind == "additive":
            wa, ua = attn.Wa._kernel(), attn.Ua._kernel()
            va = np.ascontiguousarray(attn.Va._params["weight"][0])
            vb = float(attn.Va._params["bias"][0]) if attn.has_bias else 0.0
    lstm = rnn.mode == "LSTM"
    _kernels.decode(
        rnn._packed(), rnn.num_layers, rnn.input_size, rnn._h_out, rnn.hidden_size, lstm,
        h0, c0 if lstm else None, first, emb._params["weight"], out._kernel(), out.out_features,
        kind, keys, key_len, wa, ua, va, vb, beam, max_len, -1 if eos is None else eos,
        length_penalty, temperature, seed, tokens, logp, lens, _kernels.max_threads(),
    )
    n = int(lens.max()) if B else 0
    return np.ascontiguousarray(tokens[:, :n]), np.ascontiguousarray(logp[:, :n])


def _check_head(out, features, source, emb, emb_name):
    """The output Linear of a generator: it reads `features` (what `source` gives)
    and scores tokens that are fed back through `emb`."""
    if out.in_features != features:
        raise ValueError(f"the output Linear takes {out.in_features} features but the "
                         f"{source} {features}")
    if out.out_features > emb.num_embeddings:
        raise ValueError(f"the output Linear gives {out.out_features} token scores but the "
                         f"{emb_name} has only {emb.num_embeddings} rows; every generated id "
                         "is fed back, so out_features <= num_embeddings")


def _same_dtype(what, modules):
    dts = {(type(m).__name__, np.dtype(m.dtype).name) for m in modules if m.dtype is not None}
    if len({d for _, d in dts}) > 1:
        raise ValueError(f"{what} mixes dtypes ({', '.join(sorted(f'{n}: {d}' for n, d in dts))})"
                         "; build every module with the same dtype")
    return next(iter(dts))[1] if dts else "float32"


# -- Seq2Seq --------------------------------------------------------------------------

class Seq2Seq(Module):
    """An encoder-decoder model generating token sequences, decoded in C.

    ``encoder = Sequential(Embedding, LSTM | GRU)`` and
    ``decoder = Sequential(Embedding, LSTM | GRU[, Attention], Linear)`` (Dropout may
    sit anywhere; it is the identity). Recurrent layers are batch_first; the
    decoder's is unidirectional and of the encoder's kind.

    The decoder starts from the encoder's final state (each sequence's last valid
    step), layer by layer: encoder and decoder need the same num_layers.
    A bidirectional encoder's forward and reverse final states are concatenated,
    [forward, reverse], per layer (for an LSTM, h and c alike), so the decoder's
    sizes are twice the encoder's. Anything else (different depths, a GRU encoder
    with an LSTM decoder, ...) is refused with a ValueError saying what disagrees;
    so are sizes that do not chain (embedding -> layer input, decoder output
    [+ attention context] -> Linear input, key and query sizes of the attention,
    generated ids -> decoder Embedding, dtypes).

    Attention scores each new decoder output against the encoder outputs' valid
    steps; the context is concatenated after the output, [output, context], before
    the output Linear.

    state_dict: ``encoder.0.weight``, ``encoder.1.weight_ih_l0``, ...,
    ``decoder.2.Wa.weight``, ... Call ``logits = model(src, tgt_in, lengths=None)``
    for a teacher-forced pass (B, T, V); :meth:`generate` decodes.
    """

    _fixed = frozenset({"dtype", "encoder", "decoder", "enc_embedding", "enc_rnn",
                        "dec_embedding", "dec_rnn", "attention", "out"})

    def __init__(self, encoder, decoder):
        super().__init__()
        enc = _members(encoder, "encoder", "Embedding, LSTM | GRU")
        dec = _members(decoder, "decoder", "Embedding, LSTM | GRU[, Attention], Linear")
        ok_enc = (len(enc) == 2 and isinstance(enc[0], Embedding)
                  and isinstance(enc[1], (LSTM, GRU)))
        if not ok_enc:
            raise ValueError(f"encoder must be Sequential(Embedding, LSTM | GRU); got "
                             f"{_shape_of(enc)}")
        ok_dec = (len(dec) in (3, 4) and isinstance(dec[0], Embedding)
                  and isinstance(dec[1], (LSTM, GRU)) and isinstance(dec[-1], Linear)
                  and (len(dec) == 3 or isinstance(dec[2], Attention)))
        if not ok_dec:
            raise ValueError(f"decoder must be Sequential(Embedding, LSTM | GRU[, Attention], "
                             f"Linear); got {_shape_of(dec)}")
        self.encoder, self.decoder = encoder, decoder
        self.enc_embedding, self.enc_rnn = enc
        self.dec_embedding, self.dec_rnn = dec[0], dec[1]
        self.attention = dec[2] if len(dec) == 4 else None
        self.out = dec[-1]
        self._check()

    def _children(self):
        return [("encoder", self.encoder), ("decoder", self.decoder)]

    def _check(self):
        er, dr, ee, de = self.enc_rnn, self.dec_rnn, self.enc_embedding, self.dec_embedding
        attn, out = self.attention, self.out
        if type(er) is not type(dr):
            raise ValueError(f"the encoder is a {type(er).__name__} and the decoder a "
                             f"{type(dr).__name__}; the decoder starts from the encoder's final "
                             "state, so they must be the same kind")
        self._check_batch_first()
        if dr.bidirectional:
            raise ValueError("the decoder's layer is bidirectional; it generates one token at a "
                             "time, so it must be unidirectional")
        for what, emb, layer in (("encoder", ee, er), ("decoder", de, dr)):
            if emb.embedding_dim != layer.input_size:
                raise ValueError(f"the {what}'s Embedding gives {emb.embedding_dim} features but "
                                 f"its {type(layer).__name__} takes input_size="
                                 f"{layer.input_size}")
        if er.num_layers != dr.num_layers:
            raise ValueError(f"the encoder has {er.num_layers} layers and the decoder "
                             f"{dr.num_layers}; the decoder's layer k starts from the encoder's "
                             "layer k, so they must agree")
        D = er.num_directions
        how = " (a bidirectional encoder's [forward, reverse] states are concatenated)" \
            if D == 2 else ""
        if dr._h_out != D * er._h_out:
            raise ValueError(f"the decoder's state has {dr._h_out} features but the encoder's "
                             f"final state gives {D * er._h_out}{how}")
        if isinstance(dr, LSTM) and dr.hidden_size != D * er.hidden_size:
            raise ValueError(f"the decoder's cell state has {dr.hidden_size} features but the "
                             f"encoder's gives {D * er.hidden_size}{how}")
        K = D * er._h_out  # encoder output features
        feat = dr._h_out
        if attn is not None:
            if attn.kind == "dot":
                if dr._h_out != K:
                    raise ValueError(f"dot attention needs the decoder output ({dr._h_out} "
                                     f"features) and the encoder outputs ({K}) to agree")
            else:
                if attn.query_size != dr._h_out:
                    raise ValueError(f"the attention's query_size is {attn.query_size} but the "
                                     f"decoder gives {dr._h_out} features")
                if attn.key_size != K:
                    raise ValueError(f"the attention's key_size is {attn.key_size} but the "
                                     f"encoder gives {K} features")
            feat += K
        what = "decoder output + attention context" if attn is not None else "decoder output"
        _check_head(out, feat, f"{what} has", de, "decoder's Embedding")
        mods = [ee, er, de, dr, out] + ([attn] if attn is not None and attn.kind != "dot" else [])
        self.dtype = np.dtype(_same_dtype("the model", mods))

    def _check_batch_first(self):
        """The recurrent layers are batch_first: checked when built, and again when
        called or saved, as a layer's batch_first may change (its parts may not)."""
        for what, layer in (("encoder", self.enc_rnn), ("decoder", self.dec_rnn)):
            if not layer.batch_first:
                raise ValueError(f"the {what}'s {type(layer).__name__} must be batch_first=True")

    @property
    def vocab_size(self) -> int:
        """V: the output Linear's out_features (ids the decoder can generate)."""
        return self.out.out_features

    def _encode(self, src, lengths):
        """(keys (B, S, K), key_len int64 (B,), h0, c0 for the decoder, unbatched)."""
        self._check_batch_first()
        src = ids("src", src, self.enc_embedding.num_embeddings)
        unbatched = src.ndim == 1
        if unbatched:
            src = src[None, :]
            if lengths is not None and np.ndim(lengths) == 0:
                lengths = [lengths]
        if src.ndim != 2:
            raise ValueError(f"src must be 2-D (B, S) token ids (or 1-D (S,)); got shape "
                             f"{src.shape}")
        B, S = src.shape
        if S < 1:
            raise ValueError(f"src has {S} steps (shape {src.shape}); S must be >= 1")
        lens = v.lengths(lengths, B, S)
        key_len = np.full(B, S, np.int64) if lens is None else lens
        if B == 0:
            return None, key_len, None, None, unbatched
        # batch-first as checked above, whatever the layer's flag is by now
        keys, hn, cn = self.enc_rnn._run(self.enc_embedding(src), None, None, lens, True)
        if self.enc_rnn.bidirectional:
            hn = np.concatenate([hn[0::2], hn[1::2]], axis=-1)
            cn = None if cn is None else np.concatenate([cn[0::2], cn[1::2]], axis=-1)
        hn = np.ascontiguousarray(hn)
        cn = None if cn is None else np.ascontiguousarray(cn)
        return keys, key_len, hn, cn, unbatched

    def __call__(self, src, tgt, *, lengths=None):
        """Teacher-forced logits (B, T, V): the decoder fed ``tgt`` (B, T) ids (its
        first column is usually bos) from the encoder's final state."""
        keys, key_len, h0, c0, unbatched = self._encode(src, lengths)
        tgt = ids("tgt", tgt, self.dec_embedding.num_embeddings)
        if unbatched and tgt.ndim == 1:
            tgt = tgt[None, :]
        B = key_len.shape[0]
        if tgt.ndim != 2 or tgt.shape[0] != B or tgt.shape[1] < 1:
            raise ValueError(f"tgt has shape {tgt.shape}; expected (B={B}, T) with T >= 1")
        if B == 0:
            return np.zeros((0, tgt.shape[1], self.vocab_size), self.dtype)
        x = self.dec_embedding(tgt)
        y, _, _ = self.dec_rnn._run(x, h0, c0 if isinstance(self.dec_rnn, LSTM) else None,
                                    None, True)
        if self.attention is not None:
            ctx, _ = self.attention(y, keys, key_len)
            y = np.concatenate([y, ctx], axis=-1)
        logits = self.out(y)
        return logits[0] if unbatched else logits

    def generate(self, src, *, max_len, bos, eos, beam_width=1, length_penalty=0.0,
                 lengths=None, temperature=0.0, seed=None):
        """Decode each source sequence (SPEC §7); the per-step loop runs in C.

        Parameters
        ----------
        src : int array (B, S) (or (S,) for one sequence)
        max_len : int >= 1
            Tokens generated at most (eos included).
        bos : int in [0, decoder num_embeddings)
            Fed at the first step.
        eos : int in [0, V)
            Ends a hypothesis (included in it).
        beam_width : int >= 1
            1 is greedy decoding (argmax, the lower id on a tie), exactly.
        length_penalty : float
            Beam scores are sum log p / len**length_penalty (len counts eos).
        lengths : ints (B,), optional
            Valid steps of each source, in [1, S].
        temperature, seed :
            An extension for sampling: temperature > 0 draws each token from
            softmax(logits / temperature) (beam_width must be 1), with a seeded
            generator (results depend on the seed and on B).

        Returns
        -------
        tokens : int64 (B, L), L the longest result (<= max_len), padded with eos
        logp : (B, L) of the model dtype, each token's log p under the model
            (log_softmax of the logits), 0 at padding.

        Beam search follows SPEC §7: live beams are expanded over the whole
        vocabulary, candidates ordered by summed log p (ties: earlier beam -- beams
        are numbered in the order they were kept -- then lower token id); an eos
        among the first beam_width candidates finishes, later eos candidates are
        dropped, the first beam_width others live on; it stops when beam_width
        hypotheses have finished or after max_len steps (live beams then finish);
        the best score wins, the earliest finished on a tie.
        """
        V = self.vocab_size
        bos = v.integer("bos", bos, minimum=0, maximum=self.dec_embedding.num_embeddings - 1)
        eos = v.integer("eos", eos, minimum=0, maximum=V - 1)
        keys, key_len, h0, c0, unbatched = self._encode(src, lengths)
        B = key_len.shape[0]
        max_len, beam, lp, temp, seed = _gen_options(max_len, beam_width, length_penalty,
                                                     temperature, seed, B)
        if B == 0:
            return np.zeros((0, 0), np.int64), np.zeros((0, 0), self.dtype)
        first = np.full(B, bos, np.int64)
        tokens, logp = _decode(
            self.dec_rnn, self.dec_embedding, self.out, h0=h0, c0=c0, first=first,
            attn=self.attention, keys=None if self.attention is None else keys,
            key_len=None if self.attention is None else key_len, beam=beam, max_len=max_len,
            eos=eos, length_penalty=lp, temperature=temp, seed=seed)
        return (tokens[0], logp[0]) if unbatched else (tokens, logp)

    def save(self, path, *, meta=None) -> None:
        """Write to ``.npz`` (see :func:`fastrnn.save_model`)."""
        save_model(self, path, meta=meta)

    def __repr__(self):
        enc = repr(self.encoder).replace("\n", "\n  ")
        dec = repr(self.decoder).replace("\n", "\n  ")
        return f"Seq2Seq(\n  encoder={enc},\n  decoder={dec}\n)"


# -- LanguageModel -----------------------------------------------------------------------

class LanguageModel(Module):
    """A decoder-only language model ``Sequential(Embedding, RNN | LSTM | GRU, Linear)``
    (Dropout may sit anywhere) that generates continuations of a prompt, the
    per-step loop in C (the machinery of :meth:`Seq2Seq.generate`, without encoder).

    ``lm(ids, lengths=None)`` gives the logits of the Sequential.
    :meth:`generate` continues a prompt greedily, by beam search, or by sampling
    with a temperature. state_dict names are the Sequential's ("0.weight", ...).
    """

    _fixed = frozenset({"dtype", "model", "embedding", "rnn", "out"})

    def __init__(self, model):
        super().__init__()
        parts = _members(model, "model", "Embedding, RNN | LSTM | GRU, Linear")
        ok = (len(parts) == 3 and isinstance(parts[0], Embedding)
              and isinstance(parts[1], (RNN, LSTM, GRU)) and isinstance(parts[2], Linear))
        if not ok:
            raise ValueError(f"model must be Sequential(Embedding, RNN | LSTM | GRU, Linear); "
                             f"got {_shape_of(parts)}")
        self.model = model
        self.embedding, self.rnn, self.out = parts
        self.meta = {}
        self._check()

    def _children(self):
        return [(name, m) for name, m in self.model._children()]

    def _check(self):
        emb, rnn, out = self.embedding, self.rnn, self.out
        if rnn.bidirectional:
            raise ValueError("a bidirectional layer cannot generate: its reverse direction "
                             "needs the whole sequence")
        if emb.embedding_dim != rnn.input_size:
            raise ValueError(f"the Embedding gives {emb.embedding_dim} features but the "
                             f"{type(rnn).__name__} takes input_size={rnn.input_size}")
        _check_head(out, rnn._h_out, f"{type(rnn).__name__} gives", emb, "Embedding")
        self.dtype = np.dtype(_same_dtype("the model", [emb, rnn, out]))

    @property
    def vocab_size(self) -> int:
        return self.out.out_features

    def __call__(self, input, lengths=None):
        return self.model(input, lengths=lengths)

    def generate(self, prompt, *, max_len, eos=None, beam_width=1, length_penalty=0.0,
                 temperature=0.0, seed=None, lengths=None):
        """Continue each prompt by up to ``max_len`` tokens.

        Parameters
        ----------
        prompt : int array (B, P) (batch-major whatever the layer's batch_first), or
            (P,) for one prompt; P >= 1.
        lengths : ints (B,), optional
            Valid prompt tokens of each row, in [1, P]; each continuation follows
            its row's last valid token.
        eos : int in [0, V), optional
            Ends a continuation (included). None: always max_len tokens.
        beam_width, length_penalty : as :meth:`Seq2Seq.generate` (1: greedy).
        temperature : float >= 0
            > 0 samples from softmax(logits / temperature) (beam_width 1).
        seed : int, optional
            The sampler's seed (None: fresh entropy).

        Returns (tokens int64 (B, L), logp (B, L)) as :meth:`Seq2Seq.generate`, the
        continuation only; padding (only with eos) is eos, logp 0.
        """
        emb, rnn = self.embedding, self.rnn
        V = self.vocab_size
        if eos is not None:
            eos = v.integer("eos", eos, minimum=0, maximum=V - 1)
        p = ids("prompt", prompt, emb.num_embeddings)
        unbatched = p.ndim == 1
        if unbatched:
            p = p[None, :]
            if lengths is not None and np.ndim(lengths) == 0:
                lengths = [lengths]
        if p.ndim != 2 or p.shape[1] < 1:
            raise ValueError(f"prompt must be (B, P) or (P,) token ids with P >= 1; got shape "
                             f"{np.shape(prompt)}")
        B, P = p.shape
        lens = v.lengths(lengths, B, P)
        lens = np.full(B, P, np.int64) if lens is None else lens
        max_len, beam, lp, temp, seed = _gen_options(max_len, beam_width, length_penalty,
                                                     temperature, seed, B)
        if B == 0:
            return np.zeros((0, 0), np.int64), np.zeros((0, 0), self.dtype)
        first = np.ascontiguousarray(p[np.arange(B), lens - 1])
        h0 = c0 = None
        if P > 1:  # the state after each prompt but its last token
            run = np.maximum(lens - 1, 1)
            # batch-first here, whatever the layer's flag (which may change meanwhile)
            _, h0, c0 = rnn._run(emb(p[:, : P - 1]), None, None, run, True)
            empty = lens == 1  # nothing before the last token: zero state
            if empty.any():
                h0[:, empty] = 0
                if c0 is not None:
                    c0[:, empty] = 0
        tokens, logp = _decode(rnn, emb, self.out, h0=h0, c0=c0, first=first, beam=beam,
                               max_len=max_len, eos=eos, length_penalty=lp, temperature=temp,
                               seed=seed)
        return (tokens[0], logp[0]) if unbatched else (tokens, logp)

    def save(self, path, *, meta=None) -> None:
        """Write to ``.npz`` (see :func:`fastrnn.save_model`); ``meta`` defaults to
        this model's ``meta`` (e.g. a vocabulary)."""
        save_model(self, path, meta=self.meta if meta is None else meta)

    @classmethod
    def from_torch(cls, module) -> LanguageModel:
        """From a torch ``nn.Sequential(Embedding, RNN | LSTM | GRU, Linear)``."""
        from ._sequential import from_torch

        if not is_torch(module, ("Sequential",)):
            raise TypeError(f"LanguageModel.from_torch expects a torch.nn.Sequential("
                            f"Embedding, LSTM, Linear), got {type(module).__name__}")
        return cls(from_torch(module))

    def __repr__(self):
        return "LanguageModel(" + repr(self.model).replace("\n", "\n  ") + ")"
