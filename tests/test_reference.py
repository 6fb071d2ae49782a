"""The NumPy oracle (fastrnn.reference) against PyTorch, and against scalar loops.

Everything torch has (nn.RNN/LSTM/GRU and their cells, PackedSequence for
``lengths``) is compared in float64 at rtol = atol = 1e-12. The two variants torch
lacks — GRU with ``linear_before_reset=False`` and LSTM peepholes — are compared with
per-element scalar-loop implementations written below straight from SPEC §1 (their
torch-twinned forms are checked against torch first, so the scalar code is itself
proven), run through an independent per-sequence network driver.
"""

from __future__ import annotations

import ast
import itertools
import math
import os
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from fastrnn import reference as ref


def _import_torch():
    """torch, or skip the module; with CI set, a missing torch is a failure."""
    if "CI" in os.environ:
        try:
            import torch
        except ImportError as exc:  # pragma: no cover - environment problem
            pytest.fail(f"torch is required when CI is set: {exc}", pytrace=False)
        return torch
    return pytest.importorskip("torch")


torch = _import_torch()
pack_padded_sequence = torch.nn.utils.rnn.pack_padded_sequence
pad_packed_sequence = torch.nn.utils.rnn.pad_packed_sequence

RTOL = ATOL = 1e-12
KINDS = ["rnn_tanh", "rnn_relu", "lstm", "lstm_proj", "gru"]


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def assert_close(actual, expected, rtol=RTOL, atol=ATOL):
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def np_(t):
    return t.detach().numpy()


def state_dict(module):
    return {k: np_(v).copy() for k, v in module.state_dict().items()}


def sizes_for(kind):
    """(I, H, proj_size) triples hitting odd sizes; proj_size must be < H in torch."""
    if kind == "lstm_proj":
        return [(5, 33, 3), (1, 2, 1), (4, 3, 2)]
    return [(5, 33, 0), (1, 1, 0), (4, 3, 0)]


def make_module(kind, I, H, *, proj=0, num_layers=1, bidirectional=False, bias=True,
                batch_first=False, seed=0):  # fmt: skip
    torch.manual_seed(seed)
    common = dict(num_layers=num_layers, bias=bias, batch_first=batch_first,
                  bidirectional=bidirectional)  # fmt: skip
    if kind.startswith("rnn"):
        m = torch.nn.RNN(I, H, nonlinearity=kind[4:], **common)
    elif kind.startswith("lstm"):
        m = torch.nn.LSTM(I, H, proj_size=proj, **common)
    else:
        m = torch.nn.GRU(I, H, **common)
    return m.double().eval()


def run_ref(kind, x, sd, *, num_layers, bidirectional, batch_first, proj=0, h0=None,
            c0=None, lengths=None, **kw):  # fmt: skip
    """Reference result in torch's return structure: (out, h_n) or (out, (h_n, c_n))."""
    common = dict(num_layers=num_layers, bidirectional=bidirectional,
                  batch_first=batch_first, h0=h0, lengths=lengths, **kw)  # fmt: skip
    if kind.startswith("rnn"):
        return ref.rnn(x, sd, nonlinearity=kind[4:], **common)
    if kind.startswith("lstm"):
        return ref.lstm(x, sd, proj_size=proj, c0=c0, **common)
    return ref.gru(x, sd, **common)


def run_torch(module, x, h0=None, c0=None):
    hx = None
    if h0 is not None:
        hx = torch.from_numpy(h0)
        if c0 is not None:
            hx = (hx, torch.from_numpy(c0))
    with torch.no_grad():
        out, hn = module(torch.from_numpy(x) if isinstance(x, np.ndarray) else x, hx)
    if not isinstance(out, torch.nn.utils.rnn.PackedSequence):  # else the caller unpacks
        out = np_(out)
    hn = tuple(np_(s) for s in hn) if isinstance(hn, tuple) else np_(hn)
    return out, hn


def assert_same_result(mine, theirs):
    out, hn = mine
    t_out, t_hn = theirs
    assert_close(out, t_out)
    if isinstance(t_hn, tuple):
        assert_close(hn[0], t_hn[0])
        assert_close(hn[1], t_hn[1])
    else:
        assert_close(hn, t_hn)


def initial_states(rng, kind, n_states, B, H, h_out, unbatched=False):
    batch = () if unbatched else (B,)
    h0 = rng.standard_normal((n_states, *batch, h_out))
    c0 = rng.standard_normal((n_states, *batch, H)) if kind.startswith("lstm") else None
    return h0, c0


# --------------------------------------------------------------------------------------
# Whole networks vs torch.nn.RNN / LSTM / GRU
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("kind", KINDS)
def test_network_matches_torch(kind, num_layers, bidirectional, bias):
    """Every (batch_first, B, T, h0) combination; sizes cycle through odd ones."""
    rng = np.random.default_rng([KINDS.index(kind), num_layers, bidirectional, bias])
    D = 2 if bidirectional else 1
    sizes = sizes_for(kind)
    combos = itertools.product([False, True], [0, 1, 3], [1, 7], [False, True])
    for i, (batch_first, B, T, with_h0) in enumerate(combos):
        I, H, proj = sizes[i % len(sizes)]
        h_out = proj or H
        m = make_module(kind, I, H, proj=proj, num_layers=num_layers, bias=bias,
                        bidirectional=bidirectional, batch_first=batch_first, seed=i)  # fmt: skip
        sd = state_dict(m)
        assert any(k.startswith("bias") for k in sd) == bias
        x = rng.standard_normal((B, T, I) if batch_first else (T, B, I))
        h0, c0 = (initial_states(rng, kind, D * num_layers, B, H, h_out)
                  if with_h0 else (None, None))  # fmt: skip
        mine = run_ref(kind, x, sd, num_layers=num_layers, bidirectional=bidirectional,
                       batch_first=batch_first, proj=proj, h0=h0, c0=c0)  # fmt: skip
        assert_same_result(mine, run_torch(m, x, h0, c0))
        out = mine[0]
        assert out.dtype == np.float64 and out.flags.c_contiguous
        assert out.shape == ((B, T, D * h_out) if batch_first else (T, B, D * h_out))


@pytest.mark.parametrize("with_h0", [False, True], ids=["no_h0", "h0"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("kind", KINDS)
def test_unbatched_matches_torch(kind, bidirectional, with_h0):
    rng = np.random.default_rng(7)
    I, H, proj = sizes_for(kind)[2]
    h_out = proj or H
    D, L = (2 if bidirectional else 1), 2
    for T, batch_first in [(1, False), (7, False), (7, True)]:  # batch_first is moot
        m = make_module(kind, I, H, proj=proj, num_layers=L, bidirectional=bidirectional,
                        batch_first=batch_first)  # fmt: skip
        sd = state_dict(m)
        x = rng.standard_normal((T, I))
        h0, c0 = (initial_states(rng, kind, D * L, None, H, h_out, unbatched=True)
                  if with_h0 else (None, None))  # fmt: skip
        mine = run_ref(kind, x, sd, num_layers=L, bidirectional=bidirectional,
                       batch_first=batch_first, proj=proj, h0=h0, c0=c0)  # fmt: skip
        assert_same_result(mine, run_torch(m, x, h0, c0))
        assert mine[0].shape == (T, D * h_out)


# --------------------------------------------------------------------------------------
# lengths vs PackedSequence
# --------------------------------------------------------------------------------------

LENGTHS_CASES = [  # (T, lengths): unsorted, with 1 and T; a single one; all equal < T
    (7, [7, 2, 5, 1]),
    (7, [3]),
    (4, [2, 2, 2]),
]


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("kind", KINDS)
def test_lengths_match_packed_sequence(kind, bidirectional, num_layers):
    rng = np.random.default_rng(11)
    I, H, proj = sizes_for(kind)[2]
    h_out = proj or H
    D = 2 if bidirectional else 1
    combos = itertools.product(LENGTHS_CASES, [False, True], [False, True])
    for i, ((T, lengths), batch_first, with_h0) in enumerate(combos):
        B = len(lengths)
        m = make_module(kind, I, H, proj=proj, num_layers=num_layers, seed=i,
                        bidirectional=bidirectional, batch_first=batch_first)  # fmt: skip
        sd = state_dict(m)
        x = rng.standard_normal((B, T, I) if batch_first else (T, B, I))
        h0, c0 = (initial_states(rng, kind, D * num_layers, B, H, h_out)
                  if with_h0 else (None, None))  # fmt: skip

        packed = pack_padded_sequence(torch.from_numpy(x), torch.tensor(lengths),
                                      batch_first=batch_first, enforce_sorted=False)  # fmt: skip
        t_packed, t_hn = run_torch(m, packed, h0, c0)
        t_out, t_lens = pad_packed_sequence(t_packed, batch_first=batch_first, total_length=T)
        assert t_lens.tolist() == lengths

        out, hn = run_ref(kind, x, sd, num_layers=num_layers, bidirectional=bidirectional,
                          batch_first=batch_first, proj=proj, h0=h0, c0=c0,
                          lengths=np.array(lengths))  # fmt: skip
        assert_same_result((out, hn), (np_(t_out), t_hn))
        # Exactly zero past each length.
        out_tb = out.swapaxes(0, 1) if batch_first else out
        for b, n in enumerate(lengths):
            assert not out_tb[n:, b].any()


@pytest.mark.parametrize("kind", KINDS)
def test_lengths_padding_is_never_read(kind):
    """Garbage (NaN, inf) past each length changes nothing; lengths == T is a no-op."""
    rng = np.random.default_rng(3)
    I, H, proj = sizes_for(kind)[0]
    sd = state_dict(make_module(kind, I, H, proj=proj, num_layers=2, bidirectional=True))
    kw = dict(num_layers=2, bidirectional=True, batch_first=False, proj=proj)
    T, lengths = 6, np.array([6, 3, 1, 4])
    x = rng.standard_normal((T, 4, I))
    dirty = x.copy()
    for b, n in enumerate(lengths):
        dirty[n:, b] = np.nan
    dirty[5, 1] = np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clean_res = run_ref(kind, x, sd, lengths=lengths, **kw)
        dirty_res = run_ref(kind, dirty, sd, lengths=lengths, **kw)
    for a, b in zip(_flat(clean_res), _flat(dirty_res)):
        assert np.array_equal(a, b)
    full = run_ref(kind, x, sd, lengths=np.full(4, T), **kw)
    plain = run_ref(kind, x, sd, **kw)
    for a, b in zip(_flat(full), _flat(plain)):
        assert np.array_equal(a, b)


def _flat(result):
    out, hn = result
    return [out, *hn] if isinstance(hn, tuple) else [out, hn]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("batch_first", [False, True])
def test_empty_batch_shapes(kind, batch_first):
    I, H, proj = sizes_for(kind)[2]
    h_out = proj or H
    sd = state_dict(make_module(kind, I, H, proj=proj, num_layers=2, bidirectional=True))
    x = np.zeros((0, 5, I) if batch_first else (5, 0, I))
    for lengths in (None, np.zeros(0, dtype=np.int64)):
        out, hn = run_ref(kind, x, sd, num_layers=2, bidirectional=True,
                          batch_first=batch_first, proj=proj, lengths=lengths)  # fmt: skip
        assert out.shape == ((0, 5, 2 * h_out) if batch_first else (5, 0, 2 * h_out))
        if kind.startswith("lstm"):
            assert hn[0].shape == (4, 0, h_out) and hn[1].shape == (4, 0, H)
        else:
            assert hn.shape == (4, 0, H)


# --------------------------------------------------------------------------------------
# Cells vs torch.nn.RNNCell / LSTMCell / GRUCell
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("kind", ["rnn_tanh", "rnn_relu", "lstm", "gru"])
def test_cells_match_torch(kind, bias):
    rng = np.random.default_rng(5)
    for (I, H), batch_shape, with_h in itertools.product(
        [(5, 33), (1, 1)], [(3,), (1,), (0,), ()], [True, False]
    ):
        torch.manual_seed(I * H)
        if kind.startswith("rnn"):
            m = torch.nn.RNNCell(I, H, bias=bias, nonlinearity=kind[4:])
        elif kind == "lstm":
            m = torch.nn.LSTMCell(I, H, bias=bias)
        else:
            m = torch.nn.GRUCell(I, H, bias=bias)
        m = m.double()
        sd = state_dict(m)
        w = (sd["weight_ih"], sd["weight_hh"], sd.get("bias_ih"), sd.get("bias_hh"))
        x = rng.standard_normal((*batch_shape, I))
        h = rng.standard_normal((*batch_shape, H)) if with_h else None
        c = rng.standard_normal((*batch_shape, H)) if with_h else None
        tx = torch.from_numpy(x)
        with torch.no_grad():
            if kind == "lstm":
                t_h, t_c = m(tx, None if h is None else (torch.from_numpy(h), torch.from_numpy(c)))
                r_h, r_c = ref.lstm_cell(x, h, c, *w)
                assert_close(r_c, np_(t_c))
            else:
                t_h = m(tx, None if h is None else torch.from_numpy(h))
                if kind == "gru":
                    r_h = ref.gru_cell(x, h, *w)
                else:
                    r_h = ref.rnn_cell(x, h, *w, nonlinearity=kind[4:])
        assert_close(r_h, np_(t_h))


# --------------------------------------------------------------------------------------
# Scalar-loop implementations from SPEC §1, for what torch lacks
# --------------------------------------------------------------------------------------


def _sig(v):
    return 1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v))


def _dot(row, vec):
    return math.fsum(a * b for a, b in zip(row, vec))


def _pre(w_ih, w_hh, b_ih, b_hh, x, h, row):
    """W_i· x + b_i· + W_h· h + b_h· for one row of the stacked gate weights."""
    s = _dot(w_ih[row], x) + _dot(w_hh[row], h)
    if b_ih is not None:
        s += b_ih[row] + b_hh[row]
    return s


def scalar_lstm_cell(x, state, w):
    """One LSTM step, one unit at a time; peepholes and projection optional."""
    h, c = state
    w_ih, w_hh, b_ih, b_hh = w["w_ih"], w["w_hh"], w.get("b_ih"), w.get("b_hh")
    p, w_hr = w.get("peephole"), w.get("w_hr")
    H = len(c)
    c_new, m = [0.0] * H, [0.0] * H
    for j in range(H):
        a_i, a_f, a_g, a_o = (_pre(w_ih, w_hh, b_ih, b_hh, x, h, k * H + j) for k in range(4))
        if p is not None:
            a_i += p[0][j] * c[j]
            a_f += p[1][j] * c[j]
        i, f, g = _sig(a_i), _sig(a_f), math.tanh(a_g)
        c_new[j] = f * c[j] + i * g
        if p is not None:
            a_o += p[2][j] * c_new[j]
        m[j] = _sig(a_o) * math.tanh(c_new[j])
    h_new = m if w_hr is None else [_dot(w_hr[q], m) for q in range(len(w_hr))]
    return [h_new, c_new]


def scalar_gru_cell(x, state, w, linear_before_reset):
    """One GRU step, one unit at a time, either variant."""
    (h,) = state
    w_ih, w_hh, b_ih, b_hh = w["w_ih"], w["w_hh"], w.get("b_ih"), w.get("b_hh")
    H = len(h)
    r = [_sig(_pre(w_ih, w_hh, b_ih, b_hh, x, h, j)) for j in range(H)]
    z = [_sig(_pre(w_ih, w_hh, b_ih, b_hh, x, h, H + j)) for j in range(H)]
    rh = [r[k] * h[k] for k in range(H)]
    h_new = [0.0] * H
    for j in range(H):
        row = 2 * H + j
        a = _dot(w_ih[row], x) + (0.0 if b_ih is None else b_ih[row])
        b_hn = 0.0 if b_hh is None else b_hh[row]
        if linear_before_reset:
            a += r[j] * (_dot(w_hh[row], h) + b_hn)
        else:
            a += _dot(w_hh[row], rh) + b_hn
        n = math.tanh(a)
        h_new[j] = (1.0 - z[j]) * n + z[j] * h[j]
    return [h_new]


def scalar_network(cell, x, params, *, num_layers, bidirectional, lengths, states0):
    """Independent driver: one sequence at a time, each cut to its own length.

    x (T, B, I); states0 a list of (D*L, B, n) arrays; returns (out (T, B, D*H_out),
    [final states]).
    """
    T, B, _ = x.shape
    D = 2 if bidirectional else 1
    finals = [np.zeros_like(s) for s in states0]
    outs = []
    for b in range(B):
        n = T if lengths is None else int(lengths[b])
        seq = [list(x[t, b]) for t in range(n)]
        for layer in range(num_layers):
            per_dir = []
            for d in range(D):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                w = {
                    "w_ih": params["weight_ih" + sfx], "w_hh": params["weight_hh" + sfx],
                    "b_ih": params.get("bias_ih" + sfx), "b_hh": params.get("bias_hh" + sfx),
                    "w_hr": params.get("weight_hr" + sfx),
                    "peephole": params.get("weight_peephole" + sfx),
                }  # fmt: skip
                w = {k: (None if v is None else np.asarray(v).tolist()) for k, v in w.items()}
                state = [list(s[layer * D + d, b]) for s in states0]
                ys = [None] * n
                for t in range(n) if d == 0 else reversed(range(n)):
                    state = cell(seq[t], state, w)
                    ys[t] = state[0]
                for f, s in zip(finals, state):
                    f[layer * D + d, b] = s
                per_dir.append(ys)
            seq = [sum((ys[t] for ys in per_dir), []) for t in range(n)]
        outs.append(seq)
    width = len(outs[0][0]) if B else 0
    out = np.zeros((T, B, width))
    for b, seq in enumerate(outs):
        for t, y in enumerate(seq):
            out[t, b] = y
    return out, finals


def _random_params(rng, kind, I, H, *, num_layers, bidirectional, proj=0, peephole=False,
                   bias=True, scale=0.6):  # fmt: skip
    """PyTorch-named params, gates G*H, with peephole rows when asked."""
    G = {"lstm": 4, "gru": 3}[kind]
    D = 2 if bidirectional else 1
    h_out = proj or H
    p = {}
    for layer in range(num_layers):
        n_in = I if layer == 0 else D * h_out
        for d in range(D):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            p["weight_ih" + sfx] = scale * rng.standard_normal((G * H, n_in))
            p["weight_hh" + sfx] = scale * rng.standard_normal((G * H, h_out))
            if bias:
                p["bias_ih" + sfx] = scale * rng.standard_normal(G * H)
                p["bias_hh" + sfx] = scale * rng.standard_normal(G * H)
            if proj:
                p["weight_hr" + sfx] = scale * rng.standard_normal((proj, H))
            if peephole:
                p["weight_peephole" + sfx] = scale * rng.standard_normal((3, H))
    return p


def test_scalar_implementations_match_torch_cells():
    """The scalar code is right where torch can tell: plain LSTM (with projection, via
    nn.LSTM) and GRU with linear_before_reset=True."""
    rng = np.random.default_rng(17)
    x = rng.standard_normal((5, 3, 4))
    for proj in (0, 2):
        m = make_module("lstm", 4, 3, proj=proj, num_layers=2, bidirectional=True)
        h0, c0 = initial_states(rng, "lstm", 4, 3, 3, proj or 3)
        expect = run_torch(m, x, h0, c0)
        got = scalar_network(scalar_lstm_cell, x, state_dict(m), num_layers=2,
                             bidirectional=True, lengths=None, states0=[h0, c0])  # fmt: skip
        assert_same_result((got[0], tuple(got[1])), expect)
    m = make_module("gru", 4, 3, num_layers=2, bidirectional=True)
    h0 = rng.standard_normal((4, 3, 3))
    expect = run_torch(m, x, h0)
    got = scalar_network(lambda x, s, w: scalar_gru_cell(x, s, w, True), x, state_dict(m),
                         num_layers=2, bidirectional=True, lengths=None, states0=[h0])  # fmt: skip
    assert_same_result((got[0], got[1][0]), expect)


@pytest.mark.parametrize("lengths", [None, [5, 1, 3]], ids=["full", "lengths"])
@pytest.mark.parametrize("proj", [0, 2], ids=["noproj", "proj"])
@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, True)])
def test_lstm_peephole_matches_scalar(num_layers, bidirectional, proj, lengths):
    rng = np.random.default_rng(23)
    I, H, T, B = 3, 4, 5, 3
    D = 2 if bidirectional else 1
    p = _random_params(rng, "lstm", I, H, num_layers=num_layers, bidirectional=bidirectional,
                       proj=proj, peephole=True)  # fmt: skip
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((D * num_layers, B, proj or H))
    c0 = rng.standard_normal((D * num_layers, B, H))
    out, (hn, cn) = ref.lstm(x, p, num_layers=num_layers, bidirectional=bidirectional,
                             proj_size=proj, peephole=True, h0=h0, c0=c0,
                             lengths=lengths)  # fmt: skip
    e_out, (e_hn, e_cn) = scalar_network(
        scalar_lstm_cell, x, p, num_layers=num_layers, bidirectional=bidirectional,
        lengths=lengths, states0=[h0, c0],
    )  # fmt: skip
    assert_close(out, e_out)
    assert_close(hn, e_hn)
    assert_close(cn, e_cn)
    # The peepholes matter: without them the answer differs.
    plain = {k: v for k, v in p.items() if "peephole" not in k}
    out_plain, _ = ref.lstm(x, plain, num_layers=num_layers, bidirectional=bidirectional,
                            proj_size=proj, h0=h0, c0=c0, lengths=lengths)  # fmt: skip
    assert not np.allclose(out, out_plain)


@pytest.mark.parametrize("lengths", [None, [5, 1, 3]], ids=["full", "lengths"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, True)])
def test_gru_linear_before_reset_false_matches_scalar(num_layers, bidirectional, bias, lengths):
    rng = np.random.default_rng(29)
    I, H, T, B = 3, 4, 5, 3
    D = 2 if bidirectional else 1
    p = _random_params(rng, "gru", I, H, num_layers=num_layers, bidirectional=bidirectional,
                       bias=bias)  # fmt: skip
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((D * num_layers, B, H))
    out, hn = ref.gru(x, p, num_layers=num_layers, bidirectional=bidirectional,
                      linear_before_reset=False, h0=h0, lengths=lengths)  # fmt: skip
    e_out, (e_hn,) = scalar_network(
        lambda x, s, w: scalar_gru_cell(x, s, w, False), x, p, num_layers=num_layers,
        bidirectional=bidirectional, lengths=lengths, states0=[h0],
    )  # fmt: skip
    assert_close(out, e_out)
    assert_close(hn, e_hn)
    out_lbr, _ = ref.gru(x, p, num_layers=num_layers, bidirectional=bidirectional, h0=h0,
                         lengths=lengths)  # fmt: skip
    assert not np.allclose(out, out_lbr)


@pytest.mark.parametrize("batch_shape", [(3,), ()], ids=["batched", "unbatched"])
def test_untwinned_cells_match_scalar(batch_shape):
    rng = np.random.default_rng(31)
    I, H, P = 3, 4, 2
    x = rng.standard_normal((*batch_shape, I))
    rows = x.reshape(-1, I)
    # LSTM cell with peepholes, with and without projection.
    for proj in (0, P):
        p = _random_params(rng, "lstm", I, H, num_layers=1, bidirectional=False, proj=proj,
                           peephole=True)  # fmt: skip
        w = {"w_ih": p["weight_ih_l0"], "w_hh": p["weight_hh_l0"], "b_ih": p["bias_ih_l0"],
             "b_hh": p["bias_hh_l0"], "w_hr": p.get("weight_hr_l0"),
             "peephole": p["weight_peephole_l0"]}  # fmt: skip
        h = rng.standard_normal((*batch_shape, proj or H))
        c = rng.standard_normal((*batch_shape, H))
        r_h, r_c = ref.lstm_cell(x, h, c, **w)
        lw = {k: (None if v is None else v.tolist()) for k, v in w.items()}
        h_rows, c_rows = h.reshape(len(rows), -1), c.reshape(len(rows), -1)
        expect = [scalar_lstm_cell(list(xr), [list(hr), list(cr)], lw)
                  for xr, hr, cr in zip(rows, h_rows, c_rows)]  # fmt: skip
        assert_close(r_h, np.reshape([e[0] for e in expect], r_h.shape))
        assert_close(r_c, np.reshape([e[1] for e in expect], r_c.shape))
    # GRU cell, original (Cho et al.) form.
    p = _random_params(rng, "gru", I, H, num_layers=1, bidirectional=False)
    w = {"w_ih": p["weight_ih_l0"], "w_hh": p["weight_hh_l0"], "b_ih": p["bias_ih_l0"],
         "b_hh": p["bias_hh_l0"]}  # fmt: skip
    h = rng.standard_normal((*batch_shape, H))
    r_h = ref.gru_cell(x, h, **w, linear_before_reset=False)
    lw = {k: v.tolist() for k, v in w.items()}
    expect = [scalar_gru_cell(list(xr), [list(hr)], lw, False)[0]
              for xr, hr in zip(rows, h.reshape(len(rows), -1))]  # fmt: skip
    assert_close(r_h, np.reshape(expect, r_h.shape))


@pytest.mark.parametrize("proj", [0, 3])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_zero_peepholes_equal_plain_lstm(bidirectional, proj):
    rng = np.random.default_rng(37)
    I, H, L, T, B = 5, 7, 2, 6, 3
    m = make_module("lstm", I, H, proj=proj, num_layers=L, bidirectional=bidirectional)
    sd = state_dict(m)
    with_zero_pp = dict(sd)
    for k in sd:
        if k.startswith("weight_hh"):
            with_zero_pp[k.replace("weight_hh", "weight_peephole")] = np.zeros((3, H))
    x = rng.standard_normal((T, B, I))
    lengths = [6, 2, 4]
    kw = dict(num_layers=L, bidirectional=bidirectional, proj_size=proj, lengths=lengths)
    out_pp, (hn_pp, cn_pp) = ref.lstm(x, with_zero_pp, peephole=True, **kw)
    out, (hn, cn) = ref.lstm(x, sd, **kw)
    assert np.array_equal(out_pp, out) and np.array_equal(hn_pp, hn) and np.array_equal(cn_pp, cn)
    packed = pack_padded_sequence(torch.from_numpy(x), torch.tensor(lengths), enforce_sorted=False)
    t_packed, t_hn = run_torch(m, packed)
    t_out = np_(pad_packed_sequence(t_packed, total_length=T)[0])
    assert_same_result((out_pp, (hn_pp, cn_pp)), (t_out, t_hn))


# --------------------------------------------------------------------------------------
# float32, dtype handling, forward(), sigmoid, hygiene
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_float32_runs_and_is_close_to_float64(kind):
    rng = np.random.default_rng(41)
    I, H, proj = sizes_for(kind)[0]
    h_out = proj or H
    sd64 = state_dict(make_module(kind, I, H, proj=proj, num_layers=2, bidirectional=True))
    sd32 = {k: v.astype(np.float32) for k, v in sd64.items()}
    x64 = rng.standard_normal((7, 3, I))
    h0, c0 = initial_states(rng, kind, 4, 3, H, h_out)
    lengths = [7, 3, 5]
    kw = dict(num_layers=2, bidirectional=True, batch_first=False, proj=proj, lengths=lengths)
    f32 = lambda a: None if a is None else a.astype(np.float32)  # noqa: E731
    res64 = _flat(run_ref(kind, x64, sd64, h0=h0, c0=c0, **kw))
    res32 = _flat(run_ref(kind, f32(x64), sd32, h0=f32(h0), c0=f32(c0), **kw))
    # Explicit dtype= wins over the inputs' dtype.
    res32b = _flat(run_ref(kind, x64, sd64, h0=h0, c0=c0, dtype=np.float32, **kw))
    for a64, a32, b32 in zip(res64, res32, res32b):
        assert a32.dtype == np.float32 and b32.dtype == np.float32
        np.testing.assert_allclose(a32, a64, rtol=1e-5, atol=2e-6)
        np.testing.assert_allclose(b32, a64, rtol=1e-5, atol=2e-6)
    # Mixed inputs compute in their result dtype.
    assert run_ref(kind, f32(x64), sd64, **kw)[0].dtype == np.float64


def test_float32_cells():
    rng = np.random.default_rng(43)
    x, h = rng.standard_normal((3, 5)).astype(np.float32), rng.standard_normal((3, 6))
    w_ih, w_hh = rng.standard_normal((24, 5)) * 0.3, rng.standard_normal((24, 6)) * 0.3
    h32, c32 = ref.lstm_cell(x, h, h, w_ih, w_hh, dtype=np.float32)
    h64, c64 = ref.lstm_cell(x, h, h, w_ih, w_hh)
    assert h32.dtype == c32.dtype == np.float32 and h64.dtype == np.float64
    np.testing.assert_allclose(h32, h64, rtol=1e-5, atol=1e-6)
    g = ref.gru_cell(x, h.astype(np.float32), w_ih[:18].astype(np.float32),
                     w_hh[:18].astype(np.float32))  # fmt: skip
    assert g.dtype == np.float32
    r = ref.rnn_cell(x, None, w_ih[:6].astype(np.float32), w_hh[:6].astype(np.float32))
    assert r.dtype == np.float32 and r.shape == (3, 6)


def _fake_layer(kind, module, *, proj=0, peephole=False, linear_before_reset=True, sd=None):
    mode = {"rnn_tanh": "RNN_TANH", "rnn_relu": "RNN_RELU", "lstm": "LSTM",
            "lstm_proj": "LSTM", "gru": "GRU"}[kind]  # fmt: skip
    sd = state_dict(module) if sd is None else sd
    return SimpleNamespace(
        mode=mode, num_layers=module.num_layers, bidirectional=module.bidirectional,
        batch_first=module.batch_first, proj_size=proj, peephole=peephole,
        linear_before_reset=linear_before_reset, state_dict=lambda: dict(sd),
    )  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
def test_forward_runs_a_duck_typed_layer(kind):
    rng = np.random.default_rng(47)
    I, H, proj = sizes_for(kind)[2]
    m = make_module(kind, I, H, proj=proj, num_layers=2, bidirectional=True, batch_first=True)
    layer = _fake_layer(kind, m, proj=proj)
    x = rng.standard_normal((3, 6, I))
    h0, c0 = initial_states(rng, kind, 4, 3, H, proj or H)
    hx = (h0, c0) if kind.startswith("lstm") else h0
    assert_same_result(ref.forward(layer, x, hx), run_torch(m, x, h0, c0))
    assert_same_result(ref.forward(layer, x), run_torch(m, x))
    lengths = [6, 1, 4]
    packed = pack_padded_sequence(torch.from_numpy(x), torch.tensor(lengths), batch_first=True,
                                  enforce_sorted=False)  # fmt: skip
    t_packed, t_hn = run_torch(m, packed, h0, c0)
    t_out = pad_packed_sequence(t_packed, batch_first=True, total_length=6)[0]
    assert_same_result(ref.forward(layer, x, hx, lengths=lengths), (np_(t_out), t_hn))
    out32 = ref.forward(layer, x.tolist(), hx, dtype=np.float32)
    assert all(a.dtype == np.float32 for a in _flat(out32))


def test_forward_peephole_and_gru_variant_and_cells():
    rng = np.random.default_rng(53)
    x = rng.standard_normal((5, 2, 3))
    p = _random_params(rng, "lstm", 3, 4, num_layers=2, bidirectional=True, proj=2, peephole=True)
    layer = SimpleNamespace(mode="LSTM", num_layers=2, bidirectional=True, batch_first=False,
                            proj_size=2, peephole=True, state_dict=lambda: p)  # fmt: skip
    got = ref.forward(layer, x)
    expect = ref.lstm(x, p, num_layers=2, bidirectional=True, proj_size=2, peephole=True)
    assert all(np.array_equal(a, b) for a, b in zip(_flat(got), _flat(expect)))

    p = _random_params(rng, "gru", 3, 4, num_layers=1, bidirectional=False)
    layer = SimpleNamespace(mode="GRU", num_layers=1, bidirectional=False, batch_first=False,
                            linear_before_reset=False, state_dict=lambda: p)  # fmt: skip
    got = ref.forward(layer, x)
    expect = ref.gru(x, p, linear_before_reset=False)
    assert all(np.array_equal(a, b) for a, b in zip(_flat(got), _flat(expect)))

    # Cells: kind from mode, or from the weight shapes.
    cells = [(torch.nn.RNNCell(3, 4, nonlinearity="relu"), "RNN_RELU"),
             (torch.nn.LSTMCell(3, 4), "LSTM"), (torch.nn.GRUCell(3, 4), "GRU")]  # fmt: skip
    for torch_cell, mode in cells:
        torch_cell = torch_cell.double()
        sd = state_dict(torch_cell)
        with torch.no_grad():
            expect = torch_cell(torch.from_numpy(x[0]))
        expect = tuple(np_(e) for e in expect) if isinstance(expect, tuple) else np_(expect)
        by_mode = SimpleNamespace(mode=mode, state_dict=lambda sd=sd: sd)
        by_shape = SimpleNamespace(nonlinearity="relu", state_dict=lambda sd=sd: sd)
        for cell in (by_mode, by_shape):
            got = ref.forward(cell, x[0])
            if isinstance(expect, tuple):
                assert_close(got[0], expect[0])
                assert_close(got[1], expect[1])
            else:
                assert_close(got, expect)


def test_sigmoid():
    x = np.array([-np.inf, -1e308, -800.0, -50.0, -1.0, -0.0, 0.0, 1e-300, 1.0, 50.0,
                  800.0, 1e308, np.inf])  # fmt: skip
    with np.errstate(over="ignore"):
        x32 = x.astype(np.float32)  # ±1e308 -> ±inf
    with np.errstate(all="raise"), warnings.catch_warnings():
        warnings.simplefilter("error")
        y = ref.sigmoid(x)
        y32 = ref.sigmoid(x32)
        assert np.isnan(ref.sigmoid(np.nan))
    assert y.dtype == np.float64 and y32.dtype == np.float32
    assert y[0] == 0.0 and y[-1] == 1.0 and y[6] == 0.5 and y[5] == 0.5
    assert np.all(np.diff(y) >= 0) and np.all((0 <= y) & (y <= 1))
    grid = np.linspace(-40, 40, 2001)
    np.testing.assert_allclose(ref.sigmoid(grid), 1 / (1 + np.exp(-grid)), rtol=1e-15, atol=0)
    np.testing.assert_allclose(ref.sigmoid(-grid), 1 - ref.sigmoid(grid), rtol=0, atol=3e-16)
    g32 = grid.astype(np.float32)
    np.testing.assert_allclose(ref.sigmoid(g32), ref.sigmoid(g32.astype(np.float64)), rtol=5e-7)
    assert ref.sigmoid(3).dtype == np.float64
    assert ref.tanh is np.tanh


def test_inputs_untouched_and_outputs_fresh():
    rng = np.random.default_rng(59)
    m = make_module("lstm", 4, 5, num_layers=2, bidirectional=True, batch_first=True)
    sd = state_dict(m)
    sd_copy = {k: v.copy() for k, v in sd.items()}
    x = np.asfortranarray(rng.standard_normal((3, 6, 4)))
    h0, c0 = initial_states(rng, "lstm", 4, 3, 5, 5)
    saved = [a.copy() for a in (x, h0, c0)]
    out, (hn, cn) = ref.lstm(x, sd, num_layers=2, bidirectional=True, batch_first=True,
                             h0=h0, c0=c0, lengths=[6, 2, 3])  # fmt: skip
    for a, b in zip((x, h0, c0), saved):
        assert np.array_equal(a, b)
    assert all(np.array_equal(sd[k], sd_copy[k]) for k in sd)
    for a in (out, hn, cn):
        assert a.flags.c_contiguous and not np.shares_memory(a, h0) and not np.shares_memory(a, c0)
    # Lists and tensors are accepted as array-likes.
    out_l, _ = ref.lstm(x.tolist(), {k: torch.from_numpy(v) for k, v in sd.items()},
                        num_layers=2, bidirectional=True, batch_first=True)  # fmt: skip
    out_a, _ = ref.lstm(x, sd, num_layers=2, bidirectional=True, batch_first=True)
    assert np.array_equal(out_l, out_a)


def test_inconsistent_shapes_raise_value_error():
    rng = np.random.default_rng(61)
    sd = state_dict(make_module("gru", 4, 5, num_layers=2))
    x = rng.standard_normal((6, 3, 4))
    with pytest.raises(ValueError, match="initial state"):
        ref.gru(x, sd, num_layers=2, h0=np.zeros((1, 3, 5)))
    with pytest.raises(ValueError, match="length"):
        ref.gru(x, sd, num_layers=2, lengths=[0, 2, 3])
    with pytest.raises(ValueError, match="length"):
        ref.gru(x, sd, num_layers=2, lengths=[7, 2, 3])
    with pytest.raises(ValueError, match="lengths"):
        ref.gru(x, sd, num_layers=2, lengths=[1, 2])
    with pytest.raises(ValueError, match="weight_ih_l2"):
        ref.gru(x, sd, num_layers=3)
    with pytest.raises(ValueError, match="features|inputs"):
        ref.gru(rng.standard_normal((6, 3, 2)), sd, num_layers=2)
    with pytest.raises(ValueError, match="x must be"):
        ref.gru(np.zeros(4), sd)
    with pytest.raises(ValueError, match="weight_hr"):
        ref.lstm(x, state_dict(make_module("lstm", 4, 5)), proj_size=2)
    with pytest.raises(ValueError, match="weight_peephole"):
        ref.lstm(x, state_dict(make_module("lstm", 4, 5)), peephole=True)
    with pytest.raises(ValueError, match="nonlinearity"):
        ref.rnn(x, state_dict(make_module("rnn_tanh", 4, 5)), nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="state"):
        ref.gru_cell(np.zeros(4), np.zeros((1, 5)), sd["weight_ih_l0"], sd["weight_hh_l0"])


def test_reference_imports_only_numpy_and_stdlib():
    path = Path(ref.__file__)
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports in the reference"
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            assert top == "numpy" or top in sys.stdlib_module_names, name
