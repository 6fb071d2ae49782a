"""Property-based tests (hypothesis): random configurations against the oracle.

Each example draws a whole configuration -- cell variant (every one of SPEC §1),
sizes around the tile widths, layers, directions, batch_first, bias, batch
(including 0) and steps, unbatched input, lengths, initial states, dtype, ISA path
and thread count -- and holds the C kernels to ``fastrnn.reference`` in float64:
within 1e-12 for float64 layers and ``f32_tolerance`` for float32 ones. Streams
must equal the whole-sequence call, cells the reference cell, and every result
must be bitwise the same for one thread and for the drawn count.

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
from _util import assert_close, need

import fastrnn
from fastrnn import _kernels, reference

hypothesis = need("hypothesis")
st = hypothesis.strategies
HealthCheck = hypothesis.HealthCheck

ISAS = ("generic", "avx2", "avx512")
AVAILABLE = tuple(fastrnn.config()["isa_available"])

VARIANTS = {
    "rnn_tanh": (fastrnn.RNN, dict(nonlinearity="tanh")),
    "rnn_relu": (fastrnn.RNN, dict(nonlinearity="relu")),
    "lstm": (fastrnn.LSTM, {}),
    "lstm_proj": (fastrnn.LSTM, dict(proj=True)),
    "lstm_peephole": (fastrnn.LSTM, dict(peephole=True)),
    "lstm_peephole_proj": (fastrnn.LSTM, dict(peephole=True, proj=True)),
    "gru": (fastrnn.GRU, dict(linear_before_reset=True)),
    "gru_lbr_false": (fastrnn.GRU, dict(linear_before_reset=False)),
}
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
