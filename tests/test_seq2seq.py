"""Seq2Seq and LanguageModel generation (SPEC §7) against a torch implementation of
the same decoding, written here with plain loops from the SPEC's rules."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

import fastrnn
from _util import assert_close, need, one_engine_thread  # noqa: F401 (autouse)

torch = need("torch")
nn = torch.nn

V_SRC, V_TGT, BOS, EOS = 11, 13, 1, 2
DT = {"float32": torch.float32, "float64": torch.float64}


class Bahdanau(nn.Module):
    def __init__(self, q, k, a):
        super().__init__()
        self.Wa = nn.Linear(q, a)
        self.Ua = nn.Linear(k, a)
        self.Va = nn.Linear(a, 1)

    def forward(self, query, keys):  # (R, Q), (R, S, K) -> scores (R, S)
        return self.Va(torch.tanh(self.Wa(query)[:, None, :] + self.Ua(keys))).squeeze(-1)


class TorchSeq2Seq(nn.Module):
    """The reference model: encoder, decoder, attention as SPEC §7 describes."""

    def __init__(self, cell="lstm", attn=None, E=6, H=8, layers=1, bidir=False, seed=0,
                 dtype="float64", peaky=2.0, eos_shift=0.0):
        super().__init__()
        torch.manual_seed(seed)
        Cell = nn.LSTM if cell == "lstm" else nn.GRU
        D = 2 if bidir else 1
        self.cell, self.attn_kind, self.D, self.layers = cell, attn, D, layers
        self.enc_emb = nn.Embedding(V_SRC, E)
        self.enc = Cell(E, H, layers, batch_first=True, bidirectional=bidir)
        self.dec_emb = nn.Embedding(V_TGT, E)
        self.dec = Cell(E, D * H, layers, batch_first=True)
        K = D * H
        self.attn = Bahdanau(D * H, K, 7) if attn == "additive" else None
        self.out = nn.Linear(D * H + (K if attn else 0), V_TGT)
        with torch.no_grad():  # decisive distributions, and an eos whose rank varies
            self.out.weight.mul_(peaky)
            self.out.weight[EOS] *= 3.0
            self.out.bias[EOS] += eos_shift
        self.to(DT[dtype])

    def encode(self, src, lengths):
        src = torch.as_tensor(src)
        S = src.shape[1]
        x = self.enc_emb(src)
        packed = nn.utils.rnn.pack_padded_sequence(x, torch.as_tensor(lengths), batch_first=True,
                                                   enforce_sorted=False)
        out, state = self.enc(packed)
        keys, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=S)
        if self.cell == "lstm":
            h, c = state
        else:
            h, c = state, None
        if self.D == 2:
            h = torch.cat([h[0::2], h[1::2]], -1)
            c = None if c is None else torch.cat([c[0::2], c[1::2]], -1)
        return keys, (h, c)

    def step(self, tok, state, keys, key_len):
        """log p (R, V) and the new state, for R rows; keys (R, S, K), key_len (R,)."""
        x = self.dec_emb(torch.as_tensor(tok))[:, None, :]
        h, c = state
        y, st = self.dec(x, (h, c) if self.cell == "lstm" else h)
        y = y[:, 0]
        if self.attn_kind:
            if self.attn_kind == "dot":
                scores = torch.einsum("rk,rsk->rs", y, keys)
            else:
                scores = self.attn(y, keys)
            S = keys.shape[1]
            mask = torch.arange(S)[None, :] < torch.as_tensor(key_len)[:, None]
            scores = scores.masked_fill(~mask, float("-inf"))
            w = torch.softmax(scores, -1)
            ctx = torch.einsum("rs,rsk->rk", w, keys)
            y = torch.cat([y, ctx], -1)
        logp = torch.log_softmax(self.out(y), -1)
        st = st if self.cell == "lstm" else (st, None)
        return logp, st

    def to_fastrnn(self):
        E, L = fastrnn.Embedding, fastrnn.Linear
        Layer = fastrnn.LSTM if self.cell == "lstm" else fastrnn.GRU
        enc = fastrnn.Sequential(E.from_torch(self.enc_emb), Layer.from_torch(self.enc))
        parts = [E.from_torch(self.dec_emb), Layer.from_torch(self.dec)]
        if self.attn_kind == "dot":
            parts.append(fastrnn.Attention("dot"))
        elif self.attn_kind == "additive":
            parts.append(fastrnn.Attention.from_torch(self.attn))
        parts.append(L.from_torch(self.out))
        return fastrnn.Seq2Seq(enc, fastrnn.Sequential(*parts))


def _rows(state, idx):
    h, c = state
    return (h[:, idx], None if c is None else c[:, idx])


@torch.no_grad()
def ref_generate(model, src, lengths, max_len, beam=1, length_penalty=0.0, events=None):
    """SPEC §7 decoding, one source sequence at a time, in plain Python loops.
    `events` (a Counter) tallies which of the rules fired."""
    events = Counter() if events is None else events
    src = np.asarray(src)
    B, S = src.shape
    lengths = np.full(B, S) if lengths is None else np.asarray(lengths)
    keys_all, state_all = model.encode(src, lengths)
    results = []
    for b in range(B):
        keys = keys_all[b:b + 1]
        st0 = _rows(state_all, [b])
        # a hypothesis: (tokens, logps, sum, state)
        live = [([], [], 0.0, st0)]
        finished = []  # (score, tokens, logps), in the order they finished
        for t in range(max_len):
            cands = []
            for k, (toks, _, total, st) in enumerate(live):
                prev = toks[-1] if toks else BOS
                logp, new_st = model.step([prev], st, keys, [lengths[b]])
                logp = logp[0].tolist()
                for tok, lp in enumerate(logp):
                    key = lp if len(live) == 1 else total + lp
                    cands.append((key, k, tok, total + lp, lp, new_st))
            cands.sort(key=lambda c: (-c[0], c[1], c[2]))
            new_live = []
            for i, (_, k, tok, total, lp, st) in enumerate(cands):
                if len(new_live) == beam:
                    break
                toks, lps = live[k][0] + [tok], live[k][1] + [lp]
                if tok == EOS:
                    if i < beam:
                        finished.append((total / (len(toks) ** length_penalty), toks, lps))
                        events["eos finishes"] += 1
                    else:
                        events["eos dropped"] += 1
                    continue
                new_live.append((toks, lps, total, st))
            live = new_live
            if len(finished) >= beam or not live:
                events["stop: beam_width finished"] += 1
                break
            if t == max_len - 1:
                events["stop: max_len"] += 1
                for toks, lps, total, _ in live:
                    finished.append((total / (len(toks) ** length_penalty), toks, lps))
        best = None
        for f in finished:
            if best is None or f[0] > best[0]:
                best = f
        events["best ends with eos" if best[1][-1] == EOS else "best ran to max_len"] += 1
        if len(finished) > 1 and best is not finished[0]:
            events["best is not the first finished"] += 1
        results.append(best)
    L = max(len(r[1]) for r in results)
    tokens = np.full((B, L), EOS, np.int64)
    logp = np.zeros((B, L))
    for b, (_, toks, lps) in enumerate(results):
        tokens[b, :len(toks)] = toks
        logp[b, :len(lps)] = lps
    return tokens, logp


@torch.no_grad()
def ref_greedy_batched(model, src, lengths, max_len):
    """Greedy decoding as it is usually written: batched, argmax, stop at eos."""
    src = np.asarray(src)
    B, S = src.shape
    lengths = np.full(B, S) if lengths is None else np.asarray(lengths)
    keys, state = model.encode(src, lengths)
    tok = torch.full((B,), BOS)
    done = torch.zeros(B, dtype=torch.bool)
    toks, lps = [], []
    for _ in range(max_len):
        logp, state = model.step(tok, state, keys, lengths)
        tok = torch.argmax(logp, -1)
        lp = logp.gather(1, tok[:, None])[:, 0]
        toks.append(torch.where(done, EOS, tok))
        lps.append(torch.where(done, torch.zeros_like(lp), lp))
        done = done | (tok == EOS)
        if done.all():
            break
    return torch.stack(toks, 1).numpy(), torch.stack(lps, 1).numpy()


def _data(B, S, seed, ragged=True):
    rng = np.random.default_rng(seed)
    src = rng.integers(0, V_SRC, (B, S))
    lengths = rng.integers(1, S + 1, B) if ragged else None
    if ragged:
        lengths[0] = S
    return src, lengths


def _check(tokens, logp, ref_tokens, ref_logp, dtype):
    np.testing.assert_array_equal(tokens, ref_tokens)
    assert logp.dtype == np.dtype(dtype)
    assert_close(logp, ref_logp, dtype, k=16, what="logp")


CONFIGS = [
    ("lstm", None), ("gru", None), ("lstm", "dot"), ("gru", "dot"), ("lstm", "additive"),
    ("gru", "additive"),
]


@pytest.mark.parametrize("cell,attn", CONFIGS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_greedy_matches_torch(cell, attn, dtype):
    tm = TorchSeq2Seq(cell, attn, dtype=dtype, seed=3)
    m = tm.to_fastrnn()
    src, lengths = _data(5, 7, seed=1)
    tokens, logp = m.generate(src, max_len=9, bos=BOS, eos=EOS, lengths=lengths)
    rt, rl = ref_greedy_batched(tm, src, lengths, 9)
    _check(tokens, logp, rt, rl, dtype)
    # the same through the beam-search reference with one beam, and beam_width=1
    rt2, rl2 = ref_generate(tm, src, lengths, 9, beam=1)
    _check(tokens, logp, rt2, rl2, dtype)
    t1, l1 = m.generate(src, max_len=9, bos=BOS, eos=EOS, lengths=lengths, beam_width=1)
    assert np.array_equal(t1, tokens) and np.array_equal(l1, logp)


@pytest.mark.parametrize("cell,attn", CONFIGS)
@pytest.mark.parametrize("beam", [2, 4])
@pytest.mark.parametrize("eos_shift", [-2.0, 0.0])
def test_beam_matches_torch(cell, attn, beam, eos_shift):
    tm = TorchSeq2Seq(cell, attn, seed=5, eos_shift=eos_shift)
    m = tm.to_fastrnn()
    src, lengths = _data(6, 6, seed=2)
    tokens, logp = m.generate(src, max_len=8, bos=BOS, eos=EOS, lengths=lengths, beam_width=beam)
    rt, rl = ref_generate(tm, src, lengths, 8, beam=beam)
    _check(tokens, logp, rt, rl, "float64")


def test_every_beam_rule_is_exercised():
    """The models above are chosen so that every rule of SPEC §7's beam search fires
    (checked on the reference), and fastrnn agrees on all of them."""
    events, differs = Counter(), 0
    for cell, attn in CONFIGS:
        tm = TorchSeq2Seq(cell, attn, seed=5)
        m = tm.to_fastrnn()
        src, lengths = _data(8, 6, seed=2)
        greedy = m.generate(src, max_len=8, bos=BOS, eos=EOS, lengths=lengths)[0]
        for lp in (0.0, 1.0):
            tokens, logp = m.generate(src, max_len=8, bos=BOS, eos=EOS, lengths=lengths,
                                      beam_width=3, length_penalty=lp)
            rt, rl = ref_generate(tm, src, lengths, 8, beam=3, length_penalty=lp, events=events)
            _check(tokens, logp, rt, rl, "float64")
            differs += sum(greedy[b].tolist() != rt[b, :greedy.shape[1]].tolist()
                           for b in range(len(src)))
    for rule in ("eos finishes", "eos dropped", "stop: beam_width finished", "stop: max_len",
                 "best ends with eos", "best ran to max_len", "best is not the first finished"):
        assert events[rule] > 0, rule
    assert differs > 0  # beam search finds other results than greedy


@pytest.mark.parametrize("cell,attn", [("gru", None), ("lstm", "dot"), ("lstm", "additive")])
@pytest.mark.parametrize("length_penalty", [0.0, 1.0, 2.0, -0.5])
def test_length_penalty(cell, attn, length_penalty):
    tm = TorchSeq2Seq(cell, attn, seed=0)
    m = tm.to_fastrnn()
    src, lengths = _data(8, 6, seed=0)
    tokens, logp = m.generate(src, max_len=8, bos=BOS, eos=EOS, lengths=lengths, beam_width=3,
                              length_penalty=length_penalty)
    rt, rl = ref_generate(tm, src, lengths, 8, beam=3, length_penalty=length_penalty)
    _check(tokens, logp, rt, rl, "float64")


def test_length_penalty_changes_the_choice():
    tm = TorchSeq2Seq("gru", "additive", seed=1)
    m = tm.to_fastrnn()
    src, lengths = _data(6, 5, seed=3)
    outs = {lp: m.generate(src, max_len=10, bos=BOS, eos=EOS, lengths=lengths, beam_width=3,
                           length_penalty=lp)[0].tolist() for lp in (0.0, 2.5)}
    assert outs[0.0] != outs[2.5]  # the test model is chosen so that the penalty matters


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("attn", [None, "additive"])
def test_bidirectional_multilayer_encoder(cell, attn):
    tm = TorchSeq2Seq(cell, attn, layers=2, bidir=True, seed=7)
    m = tm.to_fastrnn()
    src, lengths = _data(3, 6, seed=4)
    for beam in (1, 3):
        tokens, logp = m.generate(src, max_len=7, bos=BOS, eos=EOS, lengths=lengths,
                                  beam_width=beam)
        rt, rl = ref_generate(tm, src, lengths, 7, beam=beam)
        _check(tokens, logp, rt, rl, "float64")


def test_float32_beam_and_every_isa(isa):
    tm = TorchSeq2Seq("lstm", "additive", dtype="float32", seed=21)
    m = tm.to_fastrnn()
    src, lengths = _data(4, 6, seed=5)
    for beam in (1, 3):
        tokens, logp = m.generate(src, max_len=8, bos=BOS, eos=EOS, lengths=lengths,
                                  beam_width=beam)
        rt, rl = ref_generate(tm, src, lengths, 8, beam=beam)
        _check(tokens, logp, rt, rl, "float32")


def test_teacher_forced_logits_match_torch():
    tm = TorchSeq2Seq("lstm", "dot", seed=2)
    m = tm.to_fastrnn()
    src, lengths = _data(3, 5, seed=6)
    tgt = np.random.default_rng(0).integers(0, V_TGT, (3, 4))
    keys, state = tm.encode(src, lengths)
    with torch.no_grad():
        ref = []
        for t in range(4):
            logp, state = tm.step(tgt[:, t], state, keys, lengths)
            ref.append(logp)
        ref = torch.stack(ref, 1).numpy()
    logits = m(src, tgt, lengths=lengths)
    lp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - logits.max(-1, keepdims=True)
    assert_close(lp, ref, "float64", k=16)


def test_eos_padding_and_lengths():
    tm = TorchSeq2Seq("gru", None, seed=3, eos_shift=1.0)
    m = tm.to_fastrnn()
    src, lengths = _data(8, 5, seed=9)
    tokens, logp = m.generate(src, max_len=12, bos=BOS, eos=EOS, lengths=lengths)
    assert tokens.dtype == np.int64 and tokens.shape == logp.shape
    assert tokens.shape[1] <= 12
    for row, lrow in zip(tokens, logp):
        ends = np.flatnonzero(row == EOS)
        if ends.size:  # everything after the first eos is padding: eos, logp 0
            e = ends[0]
            assert np.all(row[e:] == EOS) and np.all(lrow[e + 1:] == 0) and lrow[e] < 0
        else:
            assert row.size == 12 and np.all(lrow < 0)
    # some rows ended early and some ran to max_len, in this model
    ended = (tokens == EOS).any(axis=1)
    assert ended.any() and not ended.all()


def test_ties_go_to_the_lower_id_and_the_earlier_beam():
    """Tokens 3 and 4 are exact twins (same embedding, same output row) and on top:
    greedy takes 3; beam search keeps [3] and [4], then every candidate of beam 1
    ties with its twin from beam 0, and the earlier beam wins each tie; the live
    beams finishing at max_len tie too, and the earliest finished wins."""
    tm = TorchSeq2Seq("gru", None, seed=4)
    with torch.no_grad():
        tm.out.weight[4] = tm.out.weight[3]
        tm.out.bias[3] = tm.out.bias[4] = 8.0  # twins always on top
        tm.out.bias[EOS] = 5.5
        tm.dec_emb.weight[4] = tm.dec_emb.weight[3]
    m = tm.to_fastrnn()
    src, lengths = _data(3, 4, seed=1)
    for beam in (1, 2, 3):
        tokens, logp = m.generate(src, max_len=5, bos=BOS, eos=EOS, lengths=lengths,
                                  beam_width=beam)
        rt, rl = ref_generate(tm, src, lengths, 5, beam=beam)
        _check(tokens, logp, rt, rl, "float64")
        assert not (tokens == 4).any()
        if beam < 3:
            assert (tokens == 3).all()


def test_max_len_one_and_unbatched():
    tm = TorchSeq2Seq("lstm", "dot", seed=8)
    m = tm.to_fastrnn()
    src, _ = _data(3, 5, seed=2, ragged=False)
    for beam in (1, 3):
        tokens, logp = m.generate(src, max_len=1, bos=BOS, eos=EOS, beam_width=beam)
        rt, rl = ref_generate(tm, src, None, 1, beam=beam)
        _check(tokens, logp, rt, rl, "float64")
    t1, l1 = m.generate(src[1], max_len=6, bos=BOS, eos=EOS)
    tb, lb = m.generate(src, max_len=6, bos=BOS, eos=EOS)
    assert t1.ndim == 1 and np.array_equal(t1, tb[1, :t1.size])


def test_batch_independence_and_threads(n_threads):
    tm = TorchSeq2Seq("lstm", "additive", seed=9, dtype="float32")
    m = tm.to_fastrnn()
    src, lengths = _data(6, 7, seed=7)
    tokens, logp = m.generate(src, max_len=8, bos=BOS, eos=EOS, lengths=lengths, beam_width=3)
    for b in range(6):
        t1, l1 = m.generate(src[b:b + 1], max_len=8, bos=BOS, eos=EOS, lengths=lengths[b:b + 1],
                            beam_width=3)
        n = t1.shape[1]
        assert np.array_equal(t1[0], tokens[b, :n])
        assert np.array_equal(l1[0], logp[b, :n])


def test_empty_batch():
    m = TorchSeq2Seq("gru", "dot", seed=1).to_fastrnn()
    tokens, logp = m.generate(np.zeros((0, 4), np.int64), max_len=5, bos=BOS, eos=EOS)
    assert tokens.shape == (0, 0) and logp.shape == (0, 0)


# -- sampling (an extension: temperature > 0) ------------------------------------------

def test_sampling_is_seeded_and_follows_the_distribution():
    tm = TorchSeq2Seq("gru", None, seed=2, peaky=1.0)
    m = tm.to_fastrnn()
    src = np.tile(_data(1, 5, seed=1, ragged=False)[0], (4000, 1))
    a = m.generate(src, max_len=1, bos=BOS, eos=EOS, temperature=1.0, seed=123)
    b = m.generate(src, max_len=1, bos=BOS, eos=EOS, temperature=1.0, seed=123)
    c = m.generate(src, max_len=1, bos=BOS, eos=EOS, temperature=1.0, seed=124)
    assert np.array_equal(a[0], b[0]) and not np.array_equal(a[0], c[0])
    rt, rl = ref_generate(tm, src[:1], None, 1, beam=1)
    with torch.no_grad():
        keys, st = tm.encode(src[:1], [5])
        p = np.exp(tm.step([BOS], st, keys, [5])[0][0].numpy())
    freq = np.bincount(a[0][:, 0], minlength=V_TGT) / len(src)
    assert np.abs(freq - p).max() < 4 * math.sqrt(0.25 / len(src))
    # the logp returned is the model's log p of the drawn token
    assert np.allclose(a[1][:, 0], np.log(p)[a[0][:, 0]], atol=1e-12)
    # a tiny temperature is greedy
    g = m.generate(src[:3], max_len=6, bos=BOS, eos=EOS)
    s = m.generate(src[:3], max_len=6, bos=BOS, eos=EOS, temperature=1e-6, seed=1)
    assert np.array_equal(g[0], s[0])


# -- errors ----------------------------------------------------------------------------

def test_generate_argument_errors():
    m = TorchSeq2Seq("gru", "dot", seed=1).to_fastrnn()
    src = np.zeros((2, 4), np.int64)
    ok = dict(max_len=3, bos=BOS, eos=EOS)
    with pytest.raises(ValueError, match="max_len"):
        m.generate(src, **{**ok, "max_len": 0})
    with pytest.raises(TypeError, match="max_len"):
        m.generate(src, **{**ok, "max_len": 2.5})
    with pytest.raises(ValueError, match="bos"):
        m.generate(src, **{**ok, "bos": V_TGT})
    with pytest.raises(ValueError, match="eos"):
        m.generate(src, **{**ok, "eos": -1})
    with pytest.raises(ValueError, match="beam_width"):
        m.generate(src, **ok, beam_width=0)
    with pytest.raises(ValueError, match="length_penalty"):
        m.generate(src, **ok, length_penalty=float("nan"))
    with pytest.raises(ValueError, match=r"src\[\(1, 2\)\] is 11"):
        m.generate(np.array([[0, 1, 2, 3], [0, 1, 11, 3]]), **ok)
    with pytest.raises(TypeError, match="src"):
        m.generate(src.astype(float), **ok)
    with pytest.raises(ValueError, match="lengths"):
        m.generate(src, **ok, lengths=[4, 5])
    with pytest.raises(ValueError, match="beam_width=1"):
        m.generate(src, **ok, beam_width=2, temperature=0.5)
    with pytest.raises(ValueError, match="temperature"):
        m.generate(src, **ok, temperature=-1.0)
    for name, bad in (("temperature", "1"), ("length_penalty", "0.5"), ("temperature", True)):
        with pytest.raises(TypeError, match=f"{name} must be a number"):
            m.generate(src, **ok, **{name: bad})
    with pytest.raises(ValueError, match="src"):
        m.generate(np.zeros((2, 3, 4), np.int64), **ok)


def _parts(enc_cls=fastrnn.GRU, dec_cls=fastrnn.GRU, H=8, dec_H=8, layers=1, dec_layers=1,
           bidir=False, attn=None, out_in=None, V=V_TGT, batch_first=True, dtype="float32"):
    E = 4
    enc = fastrnn.Sequential(fastrnn.Embedding(V_SRC, E, dtype=dtype),
                             enc_cls(E, H, layers, batch_first=batch_first, bidirectional=bidir,
                                     dtype=dtype))
    parts = [fastrnn.Embedding(V_TGT, E, dtype=dtype),
             dec_cls(E, dec_H, dec_layers, batch_first=True, dtype=dtype)]
    if attn is not None:
        parts.append(attn)
    parts.append(fastrnn.Linear(out_in or dec_H, V, dtype=dtype))
    return enc, fastrnn.Sequential(*parts)


@pytest.mark.parametrize("kwargs,match", [
    (dict(enc_cls=fastrnn.LSTM), "same kind"),
    (dict(dec_layers=2), "layers"),
    (dict(dec_H=6), "state has 6 features"),
    (dict(bidir=True), r"\[forward, reverse\]"),
    (dict(batch_first=False), "batch_first"),
    (dict(out_in=9), "Linear takes 9"),
    (dict(V=V_TGT + 1), "num_embeddings"),
    (dict(attn=fastrnn.Attention("additive", 8, 6, 5), out_in=16), "key_size"),
    (dict(attn=fastrnn.Attention("additive", 7, 8, 5), out_in=16), "query_size"),
    (dict(dec_H=16, bidir=True, attn=fastrnn.Attention("dot"), out_in=32), None),
    (dict(dtype="float64", attn=fastrnn.Attention("additive", 8, 8, 5), out_in=16), "dtypes"),
])
def test_seq2seq_structure_errors(kwargs, match):
    enc, dec = _parts(**kwargs)
    if match is None:
        fastrnn.Seq2Seq(enc, dec)  # a bidirectional encoder with a twice-as-wide decoder
        return
    with pytest.raises(ValueError, match=match):
        fastrnn.Seq2Seq(enc, dec)


def test_seq2seq_shape_errors():
    enc, dec = _parts()
    with pytest.raises(ValueError, match="encoder must be"):
        fastrnn.Seq2Seq(fastrnn.Sequential(enc[1]), dec)
    with pytest.raises(ValueError, match="decoder must be"):
        fastrnn.Seq2Seq(enc, fastrnn.Sequential(dec[0], dec[1]))
    with pytest.raises(TypeError, match="Sequential"):
        fastrnn.Seq2Seq([enc[0], enc[1]], dec)
    with pytest.raises(ValueError, match="unidirectional"):
        fastrnn.Seq2Seq(enc, fastrnn.Sequential(
            dec[0], fastrnn.GRU(4, 4, batch_first=True, bidirectional=True), fastrnn.Linear(8, 5)))
    with pytest.raises(ValueError, match="RNN"):  # a vanilla RNN is not an LSTM or GRU
        fastrnn.Seq2Seq(fastrnn.Sequential(enc[0], fastrnn.RNN(4, 8, batch_first=True)), dec)


def test_seq2seq_state_dict_and_save(tmp_path):
    tm = TorchSeq2Seq("lstm", "additive", seed=1)
    m = tm.to_fastrnn()
    sd = m.state_dict()
    assert "encoder.0.weight" in sd and "decoder.2.Wa.weight" in sd and "decoder.3.bias" in sd
    assert sd["decoder.1.weight_hh_l0"].shape == (32, 8)
    path = tmp_path / "s2s.npz"
    m.save(path)
    m2 = fastrnn.load_model(path)
    src, lengths = _data(3, 5, seed=3)
    a = m.generate(src, max_len=6, bos=BOS, eos=EOS, beam_width=2, lengths=lengths)
    b = m2.generate(src, max_len=6, bos=BOS, eos=EOS, beam_width=2, lengths=lengths)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    # a failed load changes nothing
    bad = dict(sd)
    bad["decoder.3.weight"] = np.zeros((3, 3))
    bad["extra"] = np.zeros(1)
    with pytest.raises(ValueError, match=r"decoder\.3\.weight.*\n.*unexpected keys: extra"):
        m2.load_state_dict(bad)
    c = m2.generate(src, max_len=6, bos=BOS, eos=EOS, beam_width=2, lengths=lengths)
    assert np.array_equal(a[0], c[0])


# -- LanguageModel -------------------------------------------------------------------------

class TorchLM(nn.Module):
    def __init__(self, cell="lstm", V=9, E=5, H=12, layers=2, seed=0, dtype="float64"):
        super().__init__()
        torch.manual_seed(seed)
        Cell = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell]
        self.net = nn.Sequential(nn.Embedding(V, E), Cell(E, H, layers, batch_first=True),
                                 nn.Linear(H, V))
        with torch.no_grad():
            self.net[2].weight.mul_(4)
        self.to(DT[dtype])

    @torch.no_grad()
    def greedy(self, prompt, max_len, eos=None):
        """Plain greedy continuation of one prompt (list of ids)."""
        emb, rnn, out = self.net
        y, st = rnn(emb(torch.as_tensor(prompt)[None]))
        toks, lps = [], []
        logp = torch.log_softmax(out(y[0, -1]), -1)
        for _ in range(max_len):
            tok = int(torch.argmax(logp))
            toks.append(tok)
            lps.append(float(logp[tok]))
            if tok == eos:
                break
            y, st = rnn(emb(torch.as_tensor([[tok]])), st)
            logp = torch.log_softmax(out(y[0, -1]), -1)
        return toks, lps


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_language_model_greedy_matches_torch(cell):
    tm = TorchLM(cell, seed=1)
    lm = fastrnn.LanguageModel.from_torch(tm.net)
    rng = np.random.default_rng(0)
    prompts = rng.integers(0, 9, (4, 6))
    lengths = np.array([6, 1, 3, 2])
    tokens, logp = lm.generate(prompts, max_len=10, eos=3, lengths=lengths)
    for b in range(4):
        rt, rl = tm.greedy(prompts[b, :lengths[b]].tolist(), 10, eos=3)
        assert tokens[b, :len(rt)].tolist() == rt
        np.testing.assert_allclose(logp[b, :len(rl)], rl, rtol=1e-12, atol=1e-12)
        assert np.all(tokens[b, len(rt):] == 3)


def test_language_model_beam_sampling_save(tmp_path):
    tm = TorchLM("lstm", seed=2, dtype="float32")
    lm = fastrnn.LanguageModel.from_torch(tm.net)
    prompt = [1, 2, 3]
    g = lm.generate(prompt, max_len=12)
    b1 = lm.generate(prompt, max_len=12, beam_width=1)
    assert np.array_equal(g[0], b1[0]) and g[0].shape == (12,)
    b4 = lm.generate(prompt, max_len=12, beam_width=4)
    assert b4[1].sum() >= g[1].sum() - 1e-5  # without eos, beam search's sum is at least greedy's
    s1 = lm.generate(prompt, max_len=50, temperature=0.8, seed=5)
    s2 = lm.generate(prompt, max_len=50, temperature=0.8, seed=5)
    assert np.array_equal(s1[0], s2[0])
    lm.meta = {"vocab": "abcdefghi"}
    lm.save(tmp_path / "lm.npz")
    lm2 = fastrnn.load_model(tmp_path / "lm.npz")
    assert isinstance(lm2, fastrnn.LanguageModel) and lm2.meta == {"vocab": "abcdefghi"}
    assert np.array_equal(lm2.generate(prompt, max_len=50, temperature=0.8, seed=5)[0], s1[0])
    with pytest.raises(ValueError, match="bidirectional"):
        fastrnn.LanguageModel(fastrnn.Sequential(
            fastrnn.Embedding(9, 5), fastrnn.LSTM(5, 4, bidirectional=True), fastrnn.Linear(8, 9)))
    with pytest.raises(ValueError, match="prompt"):
        lm.generate(np.zeros((2, 0), np.int64), max_len=3)
    with pytest.raises(ValueError, match="prompt"):
        lm.generate([1, 9], max_len=3)


def test_generate_takes_python_int_ids_in_object_arrays():
    """src and prompt as object arrays of Python ints decode as int64 ids do (they
    used to raise a bare StopIteration)."""
    m = TorchSeq2Seq("gru", "dot", seed=3).to_fastrnn()
    src, lengths = _data(3, 5, seed=4)
    want = m.generate(src, max_len=4, bos=BOS, eos=EOS, lengths=lengths)
    got = m.generate(src.astype(object), max_len=4, bos=BOS, eos=EOS, lengths=lengths)
    assert all(np.array_equal(a, b) for a, b in zip(got, want))
    with pytest.raises(ValueError, match=r"src\[\(0, 1\)\] is 1180591620717411303424"):
        m.generate([[1, 2**70]], max_len=4, bos=BOS, eos=EOS)
    lm = fastrnn.LanguageModel.from_torch(TorchLM("lstm", seed=1).net)
    want = lm.generate([[1, 2, 3]], max_len=5)
    got = lm.generate(np.array([[1, 2, 3]], dtype=object), max_len=5)
    assert all(np.array_equal(a, b) for a, b in zip(got, want))
    with pytest.raises(TypeError, match="prompt must hold integer token ids"):
        lm.generate(np.array([1, "a"], dtype=object), max_len=5)


@pytest.mark.parametrize("variant", ["proj", "peephole", "gru_lbr_false", "three_layers"])
def test_greedy_agrees_with_teacher_forcing_for_every_layer_variant(variant):
    """For layer variants torch has no twin for (or that the torch model above does
    not build), greedy decoding must pick the argmax of the teacher-forced logits
    at every step, with the same log p."""
    E, H, V = 5, 12, V_TGT
    if variant in ("proj", "peephole"):
        kw = dict(proj_size=6) if variant == "proj" else dict(peephole=True)
        enc_l = fastrnn.LSTM(E, H, 2, batch_first=True, dtype="float64", seed=1, **kw)
        dec_l = fastrnn.LSTM(E, H, 2, batch_first=True, dtype="float64", seed=2, **kw)
    else:
        L = 3 if variant == "three_layers" else 1
        lbr = variant != "gru_lbr_false"
        enc_l = fastrnn.GRU(E, H, L, batch_first=True, linear_before_reset=lbr, dtype="float64",
                            seed=1)
        dec_l = fastrnn.GRU(E, H, L, batch_first=True, linear_before_reset=lbr, dtype="float64",
                            seed=2)
    HO = dec_l._h_out
    enc = fastrnn.Sequential(fastrnn.Embedding(V_SRC, E, dtype="float64", seed=3), enc_l)
    dec = fastrnn.Sequential(fastrnn.Embedding(V, E, dtype="float64", seed=4), dec_l,
                             fastrnn.Attention("additive", HO, HO, 5, dtype="float64", seed=5),
                             fastrnn.Linear(2 * HO, V, dtype="float64", seed=6))
    m = fastrnn.Seq2Seq(enc, dec)
    src, lengths = _data(5, 6, seed=8)
    tokens, logp = m.generate(src, max_len=7, bos=BOS, eos=EOS, lengths=lengths)
    tgt = np.concatenate([np.full((5, 1), BOS), tokens[:, :-1]], axis=1)
    logits = m(src, tgt, lengths=lengths)
    lsm = logits - logits.max(-1, keepdims=True)
    lsm = lsm - np.log(np.exp(lsm).sum(-1, keepdims=True))
    for b in range(5):
        n = tokens.shape[1]
        ends = np.flatnonzero(tokens[b] == EOS)
        n = ends[0] + 1 if ends.size else n
        assert np.array_equal(lsm[b, :n].argmax(-1), tokens[b, :n])
        np.testing.assert_allclose(logp[b, :n], lsm[b, np.arange(n), tokens[b, :n]],
                                   rtol=1e-12, atol=1e-12)


def test_nan_weights_do_not_crash_and_threads_share_a_model():
    import threading

    tm = TorchSeq2Seq("lstm", "additive", seed=3)
    m = tm.to_fastrnn()
    src, lengths = _data(4, 6, seed=1)
    want = m.generate(src, max_len=8, bos=BOS, eos=EOS, lengths=lengths, beam_width=3)
    results = [None] * 4

    def work(i):
        results[i] = m.generate(src, max_len=8, bos=BOS, eos=EOS, lengths=lengths, beam_width=3)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        assert np.array_equal(r[0], want[0]) and np.array_equal(r[1], want[1])
    sd = m.state_dict()
    sd["decoder.3.weight"] = np.full_like(sd["decoder.3.weight"], np.nan)
    m.load_state_dict(sd)
    for beam in (1, 3):
        tokens, logp = m.generate(src, max_len=5, bos=BOS, eos=EOS, beam_width=beam)
        assert tokens.shape[0] == 4 and 1 <= tokens.shape[1] <= 5
        assert ((tokens >= 0) & (tokens < V_TGT)).all() and np.isnan(logp[:, 0]).all()
    tokens, _ = m.generate(src, max_len=5, bos=BOS, eos=EOS, temperature=1.0, seed=0)
    assert ((tokens >= 0) & (tokens < V_TGT)).all()


def test_greedy_is_the_argmax_of_log_p_not_of_the_running_sum():
    """With one live beam, candidates are ordered by their own log p, so greedy is
    exactly the argmax at every step. Ordered by the running sum plus log p, two
    candidates 1e-15 apart merge once the sum is large enough (from step 12 here),
    and the tie went to the lower id."""
    V = 4
    lm = fastrnn.LanguageModel(fastrnn.Sequential(
        fastrnn.Embedding(V, 3, dtype="float64", seed=0),
        fastrnn.GRU(3, 5, batch_first=True, dtype="float64", seed=0),
        fastrnn.Linear(5, V, dtype="float64", seed=0)))
    sd = lm.state_dict()
    sd["2.weight"] = np.zeros((V, 5))
    sd["2.bias"] = np.array([0.0, 1e-15, -5.0, -5.0])  # token 1 by a hair, every step
    lm.load_state_dict(sd)
    tokens, _ = lm.generate([1, 2], max_len=60)
    assert tokens.tolist() == [1] * 60
