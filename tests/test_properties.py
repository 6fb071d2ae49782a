"""Property-based tests (hypothesis): random configurations against the oracle.

Each example draws a whole configuration -- cell variant (every one of SPEC §1),
sizes around the tile widths, layers, directions, batch_first, bias, batch
(including 0) and steps, unbatched input, lengths, initial states, dtype, ISA path
and thread count -- and holds the C kernels to ``fastrnn.reference`` in float64:
within 1e-12 for float64 layers and ``f32_tolerance`` for float32 ones. Streams
must equal the whole-sequence call, cells the reference cell, and every result
must be bitwise the same for one thread and for the drawn count. Generation
(Seq2Seq and LanguageModel, the decoding loop in C) keeps its invariants on random
models: ids in range, log-probabilities <= 0, eos padding, thread invariance.

The runs are reproducible and bounded: ``derandomize=True`` (a fixed sequence of
examples for each test, no example database) and a fixed ``max_examples``; about
30 s in all on 2 cores. ``FASTRNN_HYPOTHESIS_EXAMPLES=N`` scales every test's count
for a longer local search.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest
from _util import VARIANTS, assert_close, need

import fastrnn
from fastrnn import _kernels, reference

hypothesis = need("hypothesis")
st = hypothesis.strategies
HealthCheck = hypothesis.HealthCheck

ISAS = ("generic", "avx2", "avx512")
AVAILABLE = tuple(fastrnn.config()["isa_available"])

CELLS = {"rnn_tanh": (fastrnn.RNNCell, dict(nonlinearity="tanh")),
         "rnn_relu": (fastrnn.RNNCell, dict(nonlinearity="relu")),
         "lstm": (fastrnn.LSTMCell, {}), "gru": (fastrnn.GRUCell, {})}

# Sizes: every small value, and the tile tails around 16/32/64 lanes.
SIZES = st.one_of(st.integers(1, 20), st.sampled_from([31, 32, 33, 47, 63, 64, 65]))


def settings(n: int):
    scale = float(os.environ.get("FASTRNN_HYPOTHESIS_EXAMPLES", "1"))
    return hypothesis.settings(
        max_examples=max(1, int(n * scale)), deadline=None, derandomize=True, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.function_scoped_fixture],
        print_blob=True,
    )


@contextlib.contextmanager
def engine(isa: str, threads: int):
    """Run on this ISA path with this many OpenMP threads, restoring both."""
    before_isa, before_threads = _kernels.get_isa(), fastrnn.get_num_threads()
    _kernels._set_isa(ISAS.index(isa))
    fastrnn.set_num_threads(threads)
    try:
        yield
    finally:
        _kernels._set_isa(before_isa)
        fastrnn.set_num_threads(before_threads)


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """The oracle's matmuls on one BLAS thread (the engine's threads are drawn)."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        yield


@st.composite
def configs(draw, unidirectional=False):
    variant = draw(st.sampled_from(sorted(VARIANTS)))
    cls, kw = VARIANTS[variant]
    kw = dict(kw)
    hidden = draw(SIZES)
    if kw.pop("proj", False):
        hidden = max(hidden, 2)
        kw["proj_size"] = draw(st.integers(1, hidden - 1))
    cfg = dict(
        variant=variant, cls=cls, kw=kw, hidden=hidden, input=draw(SIZES),
        num_layers=draw(st.integers(1, 3)),
        bidirectional=False if unidirectional else draw(st.booleans()),
        batch_first=draw(st.booleans()), bias=draw(st.booleans()),
        dtype=draw(st.sampled_from(["float32", "float64"])),
        isa=draw(st.sampled_from(AVAILABLE)), threads=draw(st.integers(1, 3)),
        T=draw(st.integers(1, 12)), B=draw(st.integers(0, 9)),
        init_state=draw(st.booleans()), seed=draw(st.integers(0, 2**32 - 1)),
    )
    cfg["unbatched"] = cfg["B"] == 1 and draw(st.booleans())
    cfg["lengths"] = None
    if not cfg["unbatched"] and cfg["B"] and draw(st.booleans()):  # (the oracle wants B > 0)
        cfg["lengths"] = draw(st.lists(st.integers(1, cfg["T"]), min_size=cfg["B"],
                                       max_size=cfg["B"]))
    return cfg


def build(cfg):
    return cfg["cls"](cfg["input"], cfg["hidden"], cfg["num_layers"], bias=cfg["bias"],
                      batch_first=cfg["batch_first"], bidirectional=cfg["bidirectional"],
                      dtype=cfg["dtype"], seed=cfg["seed"] % 2**31, **cfg["kw"])


def inputs(layer, cfg):
    """x, hx and lengths in the layer dtype (so the oracle sees the same numbers)."""
    rng = np.random.default_rng(cfg["seed"])
    T, B, dt = cfg["T"], cfg["B"], layer.dtype
    if cfg["unbatched"]:
        shape = (T, layer.input_size)
    else:
        shape = (B, T, layer.input_size) if layer.batch_first else (T, B, layer.input_size)
    x = rng.standard_normal(shape).astype(dt)
    hx = None
    if cfg["init_state"]:
        n = layer.num_layers * layer.num_directions
        lead = (n,) if cfg["unbatched"] else (n, B)
        h0 = (0.5 * rng.standard_normal(lead + (layer.proj_size or layer.hidden_size,)))
        h0 = h0.astype(dt)
        if layer.mode == "LSTM":
            hx = (h0, (0.5 * rng.standard_normal(lead + (layer.hidden_size,))).astype(dt))
        else:
            hx = h0
    return x, hx, cfg["lengths"]


def reduction(layer) -> int:
    h_out = layer.proj_size or layer.hidden_size
    k = max(layer.input_size, layer.hidden_size, h_out)
    return max(k, layer.num_directions * h_out) if layer.num_layers > 1 else k


def split(layer, result):
    out, st_ = result
    return (out, *st_) if layer.mode == "LSTM" else (out, st_, None)


def describe(cfg) -> str:
    keep = ("variant", "hidden", "input", "num_layers", "bidirectional", "batch_first", "bias",
            "dtype", "isa", "threads", "T", "B", "unbatched", "lengths", "init_state")
    return ", ".join(f"{k}={cfg[k]!r}" for k in keep) + f", kw={cfg['kw']}"


# --------------------------------------------------------------------------------------
# Layers against the oracle
# --------------------------------------------------------------------------------------


@settings(3000)
@hypothesis.given(cfg=configs())
def test_layers_match_the_reference(cfg):
    layer = build(cfg)
    x, hx, lengths = inputs(layer, cfg)
    with engine(cfg["isa"], cfg["threads"]):
        got = split(layer, layer(x, hx, lengths=lengths))
    with engine(cfg["isa"], 1):
        one = split(layer, layer(x, hx, lengths=lengths))
    want = split(layer, reference.forward(layer, x, hx, lengths=lengths, dtype=np.float64))
    what = describe(cfg)
    k = reduction(layer)
    for name, a, e, o in zip(("out", "h_n", "c_n"), got, want, one):
        if e is None:
            assert a is None, what
            continue
        assert a.dtype == layer.dtype and a.flags.c_contiguous, f"{name}: {what}"
        assert_close(a, e, layer.dtype, k, f"{name} ({what})")
        assert np.array_equal(a, o), f"{name} differs between 1 and {cfg['threads']} threads"
    if lengths is not None and cfg["B"]:
        out = got[0] if not layer.batch_first else got[0].transpose(1, 0, 2)
        pad = np.arange(cfg["T"])[:, None] >= np.asarray(lengths)[None, :]
        assert np.all(out[pad] == 0), f"output past a length is not 0 ({what})"


# --------------------------------------------------------------------------------------
# Streams equal the whole-sequence call; cells equal the reference cell
# --------------------------------------------------------------------------------------


@settings(1000)
@hypothesis.given(cfg=configs(unidirectional=True), data=st.data())
def test_streams_equal_the_sequence_call(cfg, data):
    cfg = dict(cfg, B=max(cfg["B"], 1), lengths=None, batch_first=False)
    layer = build(cfg)
    x, hx, _ = inputs(layer, cfg)
    use_out = data.draw(st.booleans(), label="out=")
    with engine(cfg["isa"], cfg["threads"]):
        want = split(layer, layer(x, hx))
        state = None
        if hx is not None:
            state = tuple(a.reshape(layer.num_layers, cfg["B"], -1) for a in hx) \
                if isinstance(hx, tuple) else hx.reshape(layer.num_layers, cfg["B"], -1)
        stream = layer.stream(cfg["B"], state=state)
        ys = []
        for t in range(cfg["T"]):
            if use_out:
                buf = np.empty(want[0][t].shape, layer.dtype)
                assert stream.step(x[t], out=buf) is buf
                ys.append(buf)
            else:
                ys.append(stream.step(x[t]))
        got_state = stream.state
    what = describe(cfg)
    got_h = got_state[0] if isinstance(got_state, tuple) else got_state
    exact = np.dtype(cfg["dtype"]) == np.float32  # float32 streams are bitwise the call
    for name, a, e in (("out", np.stack(ys), want[0]),
                       ("h", got_h.reshape(want[1].shape), want[1])):
        if exact:
            assert np.array_equal(a, e), f"stream {name} differs from the call ({what})"
        else:
            np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-12, err_msg=what)
    if isinstance(got_state, tuple):
        c = got_state[1].reshape(want[2].shape)
        assert np.array_equal(c, want[2]) if exact else np.allclose(c, want[2], 1e-12, 1e-12)


@settings(1200)
@hypothesis.given(
    kind=st.sampled_from(sorted(CELLS)), hidden=SIZES, n_in=SIZES, B=st.integers(0, 9),
    unbatched=st.booleans(), bias=st.booleans(), with_state=st.booleans(),
    dtype=st.sampled_from(["float32", "float64"]), isa=st.sampled_from(AVAILABLE),
    threads=st.integers(1, 3), seed=st.integers(0, 2**31 - 1))
def test_cells_match_the_reference(kind, hidden, n_in, B, unbatched, bias, with_state, dtype,
                                   isa, threads, seed):
    cls, kw = CELLS[kind]
    cell = cls(n_in, hidden, bias=bias, dtype=dtype, seed=seed, **kw)
    rng = np.random.default_rng(seed)
    lead = () if unbatched else (B,)
    x = rng.standard_normal(lead + (n_in,)).astype(dtype)
    state = None
    if with_state:
        h = (0.5 * rng.standard_normal(lead + (hidden,))).astype(dtype)
        state = (h, (0.5 * rng.standard_normal(lead + (hidden,))).astype(dtype)) \
            if cls is fastrnn.LSTMCell else h
    with engine(isa, threads):
        got = cell(x, state)
    want = reference.forward(cell, x, state, dtype=np.float64)
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    for a, e in zip(got, want):
        assert a.shape == lead + (hidden,) and a.dtype == np.dtype(dtype)
        assert_close(a, e, dtype, max(n_in, hidden),
                     f"{kind} H={hidden} I={n_in} B={B} unbatched={unbatched} {dtype} {isa}")


# --------------------------------------------------------------------------------------
# Linear (the engine's packed GEMM) against NumPy
# --------------------------------------------------------------------------------------


@settings(1000)
@hypothesis.given(
    n_in=SIZES, n_out=SIZES, lead=st.lists(st.integers(0, 6), min_size=0, max_size=3),
    bias=st.booleans(), dtype=st.sampled_from(["float32", "float64"]),
    isa=st.sampled_from(AVAILABLE), threads=st.integers(1, 3), seed=st.integers(0, 2**31 - 1))
def test_linear_matches_numpy(n_in, n_out, lead, bias, dtype, isa, threads, seed):
    if not hasattr(fastrnn, "Linear"):
        pytest.skip("fastrnn.Linear is not there")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(tuple(lead) + (n_in,)).astype(dtype)
    with engine(isa, threads):
        lin = fastrnn.Linear(n_in, n_out, bias=bias, dtype=dtype, seed=seed)
        got = lin(x)
    sd = {k: v.astype(np.float64) for k, v in lin.state_dict().items()}
    want = x.astype(np.float64) @ sd["weight"].T + (sd["bias"] if bias else 0.0)
    assert got.shape == tuple(lead) + (n_out,) and got.dtype == np.dtype(dtype)
    assert_close(got, want, dtype, n_in, f"Linear({n_in}, {n_out}) {lead} {dtype} {isa}")


# --------------------------------------------------------------------------------------
# Generation (the decoding loop in C): invariants on random models
# --------------------------------------------------------------------------------------


@st.composite
def seq2seqs(draw):
    dtype = draw(st.sampled_from(["float32", "float64"]))
    cls = draw(st.sampled_from([fastrnn.LSTM, fastrnn.GRU]))
    V, E, He = draw(st.integers(2, 12)), draw(st.integers(1, 9)), draw(st.integers(1, 9))
    L, bidir = draw(st.integers(1, 2)), draw(st.booleans())
    seed = draw(st.integers(0, 2**31 - 1))
    Hd = He * (2 if bidir else 1)
    enc = fastrnn.Sequential(fastrnn.Embedding(V, E, dtype=dtype, seed=seed),
                             cls(E, He, L, batch_first=True, bidirectional=bidir, dtype=dtype,
                                 seed=seed + 1))
    parts = [fastrnn.Embedding(V, E, dtype=dtype, seed=seed + 2),
             cls(E, Hd, L, batch_first=True, dtype=dtype, seed=seed + 3)]
    attn = draw(st.sampled_from([None, "dot", "additive"]))
    feat = Hd
    if attn == "dot":
        parts.append(fastrnn.Attention("dot"))
        feat = 2 * Hd
    elif attn == "additive":
        parts.append(fastrnn.Attention("additive", Hd, Hd, draw(st.integers(1, 6)),
                                       dtype=dtype, seed=seed + 4))
        feat = 2 * Hd
    parts.append(fastrnn.Linear(feat, V, dtype=dtype, seed=seed + 5))
    model = fastrnn.Seq2Seq(enc, fastrnn.Sequential(*parts))
    if draw(st.booleans()):  # sharper distributions: ties and saturated log-probabilities
        model.load_state_dict({k: v * draw(st.sampled_from([0.0, 8.0, 50.0]))
                               for k, v in model.state_dict().items()})
    if draw(st.integers(0, 9)) == 0:  # a non-finite output weight: NaN/Inf logits
        sd = model.state_dict()
        key = [k for k in sd if k.endswith("weight")][-1]
        sd[key] = sd[key].copy()
        sd[key].flat[0] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        model.load_state_dict(sd)
    return model, V, dtype


def check_generated(tokens, logp, B, V, max_len, eos, dtype, what):
    assert tokens.dtype == np.int64 and logp.dtype == np.dtype(dtype), what
    assert tokens.shape == logp.shape and tokens.shape[0] == B and tokens.shape[1] <= max_len
    assert np.all((tokens >= 0) & (tokens < V)), f"token ids out of [0, {V}): {what}"
    assert not np.any(logp > 1e-6), f"a log-probability above 0: {what}"
    if eos is not None:
        for b in range(B):
            ends = np.flatnonzero(tokens[b] == eos)
            if ends.size:
                assert np.all(tokens[b, ends[0]:] == eos) and np.all(logp[b, ends[0] + 1:] == 0)


@settings(1500)
@hypothesis.given(model=seq2seqs(), data=st.data())
def test_seq2seq_generation_invariants(model, data):
    model, V, dtype = model
    draw = data.draw
    B, S = draw(st.integers(0, 4), label="B"), draw(st.integers(1, 6), label="S")
    src = np.asarray(draw(st.lists(st.lists(st.integers(0, V - 1), min_size=S, max_size=S),
                                   min_size=B, max_size=B), label="src"),
                     dtype=np.int64).reshape(B, S)
    lengths = draw(st.one_of(st.none(), st.lists(st.integers(1, S), min_size=B, max_size=B)),
                   label="lengths") if B else None
    max_len = draw(st.integers(1, 8), label="max_len")
    bos, eos = draw(st.integers(0, V - 1), label="bos"), draw(st.integers(0, V - 1), label="eos")
    beam = draw(st.integers(1, V + 3), label="beam_width")
    temp = draw(st.sampled_from([0.0, 0.0, 0.5, 2.0]), label="temperature") if beam == 1 else 0.0
    kw = dict(max_len=max_len, bos=bos, eos=eos, beam_width=beam, temperature=temp, seed=7,
              length_penalty=draw(st.sampled_from([0.0, 0.6, 1.0]), label="length_penalty"),
              lengths=lengths)
    isa, threads = draw(st.sampled_from(AVAILABLE), label="isa"), draw(st.integers(1, 3))
    with engine(isa, threads):
        tokens, logp = model.generate(src, **kw)
    with engine(isa, 1):
        again = model.generate(src, **kw)
    what = f"B={B} S={S} V={V} {kw} {dtype} {isa}"
    check_generated(tokens, logp, B, V, max_len, eos, dtype, what)
    assert np.array_equal(tokens, again[0]), f"tokens depend on the thread count: {what}"
    assert np.array_equal(logp, again[1], equal_nan=True), f"logp differ: {what}"


@settings(1000)
@hypothesis.given(data=st.data())
def test_language_model_generation_invariants(data):
    draw = data.draw
    dtype = draw(st.sampled_from(["float32", "float64"]), label="dtype")
    cls = draw(st.sampled_from([fastrnn.RNN, fastrnn.LSTM, fastrnn.GRU]), label="cell")
    V, E, Hh = draw(st.integers(2, 12)), draw(st.integers(1, 9)), draw(st.integers(1, 9))
    seed = draw(st.integers(0, 2**31 - 1))
    lm = fastrnn.LanguageModel(fastrnn.Sequential(
        fastrnn.Embedding(V, E, dtype=dtype, seed=seed),
        cls(E, Hh, draw(st.integers(1, 2)), batch_first=draw(st.booleans()), dtype=dtype,
            seed=seed + 1),
        fastrnn.Linear(Hh, V, dtype=dtype, seed=seed + 2)))
    B, P = draw(st.integers(0, 4), label="B"), draw(st.integers(1, 5), label="P")
    prompt = np.asarray(draw(st.lists(st.lists(st.integers(0, V - 1), min_size=P, max_size=P),
                                      min_size=B, max_size=B)), dtype=np.int64).reshape(B, P)
    lengths = draw(st.one_of(st.none(), st.lists(st.integers(1, P), min_size=B, max_size=B))) \
        if B else None
    eos = draw(st.one_of(st.none(), st.integers(0, V - 1)), label="eos")
    beam = draw(st.integers(1, V + 2), label="beam_width")
    temp = draw(st.sampled_from([0.0, 1.0]), label="temperature") if beam == 1 else 0.0
    max_len = draw(st.integers(1, 8), label="max_len")
    isa, threads = draw(st.sampled_from(AVAILABLE), label="isa"), draw(st.integers(1, 3))
    kw = dict(max_len=max_len, eos=eos, beam_width=beam, temperature=temp, seed=3,
              lengths=lengths)
    with engine(isa, threads):
        tokens, logp = lm.generate(prompt, **kw)
    what = f"{cls.__name__} B={B} P={P} V={V} {kw} {dtype} {isa}"
    check_generated(tokens, logp, B, V, max_len, eos, dtype, what)
    if eos is None:
        assert tokens.shape == (B, max_len if B else 0), what
