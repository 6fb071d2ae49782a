"""SPEC §4 hardening: what the other test files leave out.

test_errors.py, test_cells.py, test_stream.py and test_kernels.py hold the bulk of
the error matrix and of the input forms of layers. This file adds:

* the engine boundary itself: a spy stands in for the packed plan and checks
  every array the Python side hands to the C engine (dtype, aligned, C-contiguous,
  writeable outputs, and sizes that cover every index the engine will touch for
  the T, B, strides and lengths it is given), for every input form a caller may
  pass -- unaligned, byte-swapped, Fortran, strided, broadcast, read-only,
  memory-mapped, subclasses, float16/longdouble/integers, lists;
* the same input forms for cells, streams and the whole-model modules, with the
  caller's arrays never modified;
* sizes beyond what the engine counts in (C ints), huge Python ints as lengths;
* NaN and Inf in inputs, initial states and weights against torch on the same
  weights (layers, streams);
* ``fastrnn.load`` overrides and paths (``dtype=None`` included), ``fastrnn run``
  with hostile .npy inputs, the private kernel test hooks' argument checks.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import pytest
from _util import assert_close, need

import fastrnn
from fastrnn import _cli_run, _kernels

pytestmark = pytest.mark.filterwarnings(
    "ignore:the matrix subclass:PendingDeprecationWarning")  # np.matrix is one input form

DTYPES = ["float32", "float64"]
I, H, P = 3, 5, 2  # noqa: E741 (SPEC's names)

# id -> (class, constructor keywords)
VARIANTS = {
    "rnn_relu": (fastrnn.RNN, dict(nonlinearity="relu")),
    "lstm": (fastrnn.LSTM, {}),
    "lstm_proj_peephole": (fastrnn.LSTM, dict(proj_size=P, peephole=True)),
    "gru_lbr_false": (fastrnn.GRU, dict(linear_before_reset=False)),
}


def make(variant, dtype="float32", **kw):
    cls, extra = VARIANTS[variant]
    return cls(I, H, **{**dict(num_layers=2, bidirectional=True, seed=0, dtype=dtype),
                        **extra, **kw})


def h_out(layer):
    return layer.proj_size or layer.hidden_size


def states(layer, B, rng, unbatched=False):
    n = layer.num_layers * layer.num_directions
    shape_h = (n, h_out(layer)) if unbatched else (n, B, h_out(layer))
    shape_c = (n, layer.hidden_size) if unbatched else (n, B, layer.hidden_size)
    h0 = rng.standard_normal(shape_h).astype(layer.dtype)
    if layer.mode == "LSTM":
        return h0, rng.standard_normal(shape_c).astype(layer.dtype)
    return h0


def call(layer, x, hx=None, lengths=None):
    """(out, h_n, c_n or None)."""
    out, st = layer(x, hx, lengths=lengths)
    return (out, *st) if layer.mode == "LSTM" else (out, st, None)


def assert_same(got, want, what):
    for g, w in zip(got, want):
        if w is None:
            assert g is None, what
        else:
            assert g.dtype == w.dtype and g.shape == w.shape, what
            assert np.array_equal(g, w, equal_nan=True), f"{what}: results differ"


# --------------------------------------------------------------------------------------
# Input forms: every way a caller may hold the same numbers
# --------------------------------------------------------------------------------------


def unaligned(a):
    """A copy of a at an odd byte address (C-contiguous, not aligned)."""
    a = np.asarray(a)
    raw = np.zeros(a.nbytes + 1, np.uint8)
    out = raw[1:].view(a.dtype).reshape(a.shape)
    out[...] = a
    assert out.size == 0 or not out.flags.aligned
    return out


def readonly(a):
    a = np.array(a, copy=True)
    a.flags.writeable = False
    return a


def forms(a, tmp_path=None):
    """(name, array-like) pairs holding exactly the numbers of a (a float array):
    the conversion to the layer dtype gives the same values for each."""
    a = np.asarray(a)
    out = [
        ("list", a.tolist()),
        ("fortran", np.asfortranarray(a)),
        ("unaligned", unaligned(a)),
        ("byteswapped", a.astype(a.dtype.newbyteorder())),
        ("unaligned byteswapped", unaligned(a.astype(a.dtype.newbyteorder()))),
        ("read-only", readonly(a)),
        ("negative strides", np.ascontiguousarray(a[::-1])[::-1]),
        ("longdouble", a.astype(np.longdouble)),
        ("masked", np.ma.masked_array(a, mask=np.zeros(a.shape, bool))),
    ]
    if a.ndim >= 1 and a.shape[-1] > 0:
        wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        wide[..., ::2] = a
        out.append(("strided", wide[..., ::2]))
    if a.ndim == 2:
        out.append(("matrix", np.matrix(a)))
    if tmp_path is not None and a.size:
        mm = np.memmap(tmp_path / f"mm{len(os.listdir(tmp_path))}.bin", dtype=a.dtype,
                       mode="w+", shape=a.shape)
        mm[...] = a
        out.append(("memmap", mm))
    return out


def snapshot(value):
    """What a caller's argument holds now: values and flags (a list by value)."""
    if isinstance(value, np.ndarray):
        return (np.array(value, copy=True), value.flags.writeable, value.dtype, value.strides)
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], np.ndarray):
        return tuple(snapshot(v) for v in value)
    return repr(value)


def assert_untouched(before, value, what):
    after = snapshot(value)
    if isinstance(before, tuple) and before and isinstance(before[0], tuple):
        for b, a in zip(before, after):
            assert_untouched_one(b, a, what)
    else:
        assert_untouched_one(before, after, what)


def assert_untouched_one(before, after, what):
    if isinstance(before, str):
        assert before == after, f"{what} was modified"
        return
    nan = before[0].dtype.kind in "fc"
    assert np.array_equal(before[0], after[0], equal_nan=nan), f"{what}: values modified"
    assert before[1:] == after[1:], f"{what}: flags, dtype or strides changed"


# --------------------------------------------------------------------------------------
# The engine boundary: a spy in place of the packed plan
# --------------------------------------------------------------------------------------


class PlanSpy:
    """Stands in for a layer's `_kernels.Plan`: checks what `run` receives against
    what the engine will index (and what it hands back: outputs of the right size,
    none aliasing an input), then runs the real plan. The layer's first try with
    the caller's own x must be handed back (None) unless that x is exactly what the
    engine reads."""

    def __init__(self, layer):
        self.layer = layer
        self.plan = type(layer)._packed(layer)
        self.calls = 0

    def __getattr__(self, name):
        return getattr(self.plan, name)

    def _array(self, name, a, dtype, count, write=False):
        assert type(a) is np.ndarray, f"{name}: {type(a).__name__} handed to the engine"
        assert a.dtype == dtype and a.dtype.isnative, f"{name}: dtype {a.dtype}"
        assert a.flags.c_contiguous and a.flags.aligned, f"{name}: not aligned C-contiguous"
        assert not write or a.flags.writeable, f"{name}: not writeable"
        assert a.size >= count, f"{name}: {a.size} elements, the engine touches {count}"

    def _ready(self, x):
        lay = self.layer
        return (type(x) is np.ndarray and x.dtype == lay.dtype and x.flags.c_contiguous
                and x.flags.aligned and x.ndim in (2, 3) and x.shape[-1] == lay.input_size
                and min(x.shape[:-1]) >= 1)

    def run(self, x, batch_first, h0=None, c0=None, lengths=None):
        lay = self.layer
        if not self._ready(x):
            assert h0 is None and c0 is None and lengths is None, "states with an unready x"
            assert self.plan.run(x, batch_first) is None, "an unready x reached the engine"
            return None
        dt = lay.dtype
        D, L, HH, HO = lay.num_directions, lay.num_layers, lay.hidden_size, h_out(lay)
        if x.ndim == 2:
            (T, _), B = x.shape, 1
            x_st, x_sb, out_st, out_sb = lay.input_size, 0, D * HO, 0
        elif batch_first:
            B, T, _ = x.shape
            x_st, x_sb, out_st, out_sb = lay.input_size, T * lay.input_size, D * HO, T * D * HO
        else:
            T, B, _ = x.shape
            x_st, x_sb, out_st, out_sb = B * lay.input_size, lay.input_size, B * D * HO, D * HO
        assert T >= 1 and B >= 1
        self._array("x", x, dt, (T - 1) * x_st + (B - 1) * x_sb + lay.input_size)
        if lengths is not None:
            self._array("lengths", lengths, np.dtype(np.int64), B)
            assert lengths.shape == (B,) and lengths.min() >= 1 and lengths.max() <= T
        if h0 is not None:
            self._array("h0", h0, dt, D * L * B * HO)
        if c0 is not None:
            assert lay.mode == "LSTM"
            self._array("c0", c0, dt, D * L * B * HH)
        self.calls += 1
        out, hn, cn = self.plan.run(x, batch_first, h0, c0, lengths)
        self._array("out", out, dt, (T - 1) * out_st + (B - 1) * out_sb + D * HO, True)
        self._array("hn", hn, dt, D * L * B * HO, True)
        if lay.mode == "LSTM":
            self._array("cn", cn, dt, D * L * B * HH, True)
        else:
            assert cn is None
        # distinct outputs: the engine writes them while it reads the inputs
        for o in (out, hn) + ((cn,) if cn is not None else ()):
            for i in (x, h0, c0, lengths):
                assert i is None or not np.shares_memory(o, i), "an output aliases an input"
        return out, hn, cn


@pytest.fixture
def spied(monkeypatch):
    """spied(layer) routes the layer's engine calls through a PlanSpy."""

    def install(layer):
        spy = PlanSpy(layer)
        monkeypatch.setattr(layer, "_packed", lambda: spy)
        return spy

    return install


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_engine_gets_checked_arrays_for_every_input_form(variant, dtype, batch_first, spied,
                                                         tmp_path):
    """Every form of x, initial state and lengths reaches the engine as aligned,
    C-contiguous, native arrays of the layer dtype, big enough for every index the
    engine touches; the result equals the plain call's; the caller's arrays are left
    exactly as they were."""
    layer = make(variant, dtype, batch_first=batch_first)
    spy = spied(layer)
    rng = np.random.default_rng(1)
    T, B = 4, 3
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I)).astype(dtype)
    hx = states(layer, B, rng)
    lengths = np.array([4, 1, 3])
    want = call(layer, x, hx, lengths)
    for name, xf in forms(x, tmp_path):
        before = snapshot(xf)
        assert_same(call(layer, xf, hx, lengths), want, f"x as {name}")
        assert_untouched(before, xf, f"x as {name}")
    h_forms = [forms(a, tmp_path) for a in (hx if isinstance(hx, tuple) else (hx,))]
    for k, (name, _) in enumerate(h_forms[0]):
        hf = tuple(f[k][1] for f in h_forms)
        hf = hf if isinstance(hx, tuple) else hf[0]
        before = snapshot(hf) if not isinstance(hf, tuple) else tuple(snapshot(a) for a in hf)
        assert_same(call(layer, x, hf, lengths), want, f"state as {name}")
        for b, a in zip(before if isinstance(hf, tuple) else (before,),
                        hf if isinstance(hf, tuple) else (hf,)):
            assert_untouched(b, a, f"state as {name}")
    for name, lf in [("unaligned int64", unaligned(lengths)),
                     ("byteswapped", lengths.astype(">i8")),
                     ("uint8", lengths.astype(np.uint8)), ("float16", lengths.astype(np.float16)),
                     ("object ints", np.array(lengths.tolist(), dtype=object)),
                     ("read-only", readonly(lengths)), ("tuple", tuple(lengths.tolist()))]:
        before = snapshot(lf)
        assert_same(call(layer, x, hx, lf), want, f"lengths as {name}")
        assert_untouched(before, lf, f"lengths as {name}")
    assert spy.calls >= 20


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_engine_gets_checked_arrays_unbatched_and_odd_dtypes(variant, spied):
    layer = make(variant, "float32")
    spy = spied(layer)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((6, I))
    hx = states(layer, 1, rng, unbatched=True)
    for xf in (x, x.astype(np.float16), (x * 4).astype(np.int64), (x * 4).astype(np.uint64),
               np.broadcast_to(x[:1], x.shape), x.astype(np.longdouble), x.T.copy().T):
        for lengths in (None, 4, [5], np.array([6])):
            out, hn, cn = call(layer, xf, hx, lengths)
            assert out.shape == (6, 2 * h_out(layer)) and hn.shape == (4, h_out(layer))
    # a batch of one and the unbatched call are the same computation
    got = call(layer, x, hx, 4)
    hx1 = tuple(a[:, None] for a in hx) if isinstance(hx, tuple) else hx[:, None]
    want = call(layer, x[:, None], hx1, [4])
    assert np.array_equal(got[0], want[0][:, 0])
    assert spy.calls > 0


class CellStreamSpy:
    """Stands in for the `_kernels.Stream` a cell steps on (cells.py): whenever its
    `cell` steps (does not hand the call back with None), every array it was given
    must have been exactly what the engine reads."""

    made = []
    real_class = _kernels.Stream

    def __init__(self, plan, B, input_size, hidden_size, double):
        self.real = self.real_class(plan, B, input_size, hidden_size, double)
        self.B, self.dims = B, (input_size, hidden_size)
        self.dtype = np.dtype(np.float64 if double else np.float32)
        self.calls = 0
        CellStreamSpy.made.append(self)

    def __getattr__(self, name):
        return getattr(self.real, name)

    def cell(self, x, h, c):
        y = self.real.cell(x, h, c)
        if y is None:
            return None
        self.calls += 1
        lead = (self.B,) if np.ndim(x) == 2 else ()
        for name, a, n in (("x", x, self.dims[0]), ("h", h, self.dims[1]), ("c", c, self.dims[1])):
            if a is None:  # (RNN and GRU cells pass c as None)
                continue
            assert isinstance(a, np.ndarray), f"{name}: {type(a).__name__} handed to the engine"
            assert a.dtype == self.dtype and a.dtype.isnative, f"{name}: dtype {a.dtype}"
            assert a.flags.c_contiguous and a.flags.aligned, f"{name}: not aligned C-contiguous"
            assert a.shape == lead + (n,), f"{name}: shape {a.shape}"
        return y


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_cells_hand_the_engine_checked_arrays(variant, monkeypatch, tmp_path):
    """Cells step through the engine's stream boundary (_kernels.Stream.cell): every
    form of x and of the state is checked, gives the plain result, and is left
    untouched."""
    cls = {"rnn_relu": fastrnn.RNNCell, "lstm": fastrnn.LSTMCell,
           "lstm_proj_peephole": fastrnn.LSTMCell, "gru_lbr_false": fastrnn.GRUCell}[variant]
    monkeypatch.setattr(CellStreamSpy, "made", [])
    monkeypatch.setattr(_kernels, "Stream", CellStreamSpy)
    cell = cls(I, H, seed=0)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, I)).astype(np.float32)
    h = rng.standard_normal((4, H)).astype(np.float32)
    state = (h, (h * 0.5).astype(np.float32)) if cls is fastrnn.LSTMCell else h
    want = cell(x, state)
    want = want if isinstance(want, tuple) else (want,)
    for name, xf in forms(x, tmp_path):
        before = snapshot(xf)
        got = cell(xf, state)
        assert_same(got if isinstance(got, tuple) else (got,), want, f"cell x as {name}")
        assert_untouched(before, xf, f"cell x as {name}")
    for name, hf in forms(h, tmp_path):
        st = (hf, state[1]) if isinstance(state, tuple) else hf
        before = snapshot(hf)
        got = cell(x, st)
        assert_same(got if isinstance(got, tuple) else (got,), want, f"cell h as {name}")
        assert_untouched(before, hf, f"cell h as {name}")
    assert sum(spy.calls for spy in CellStreamSpy.made) > 0


# --------------------------------------------------------------------------------------
# Streams
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", ["lstm", "gru_lbr_false"])
def test_stream_step_and_state_forms(variant, dtype, tmp_path):
    """Steps and states in every form give the plain results; the caller's x, state
    and (for forms the stream refuses) out are never modified; unaligned and
    memory-mapped out buffers are filled."""
    layer = make(variant, dtype, bidirectional=False)
    rng = np.random.default_rng(4)
    B, T = 2, 5
    x = rng.standard_normal((T, B, I)).astype(dtype)
    s0 = states(layer, B, rng)
    want_out, *_ = call(layer, x, s0)
    for name, sf in forms(s0[0] if isinstance(s0, tuple) else s0, tmp_path):
        st = (sf, s0[1]) if isinstance(s0, tuple) else sf
        before = snapshot(sf)
        stream = layer.stream(B, state=st)
        for t in range(T):
            xs = dict(forms(x[t], tmp_path)).get(name, x[t])
            before_x = snapshot(xs)
            y = stream.step(xs)
            assert y.dtype == layer.dtype and y.flags.c_contiguous
            assert np.array_equal(y, want_out[t]), f"step {t}, x and state as {name}"
            assert_untouched(before_x, xs, f"step x as {name}")
        assert_untouched(before, sf, f"stream state as {name}")
    # out buffers the stream writes into: plain, unaligned, memory-mapped
    stream = layer.stream(B, state=s0)
    for t in range(T):
        o = [np.empty((B, h_out(layer)), dtype), unaligned(np.zeros((B, h_out(layer)), dtype)),
             np.memmap(tmp_path / f"out{t}.bin", dtype=dtype, mode="w+",
                       shape=(B, h_out(layer)))][t % 3]
        assert stream.step(x[t], out=o) is o
        assert np.array_equal(o, want_out[t]), f"step {t} into {type(o).__name__}"


@pytest.mark.parametrize("bad, exc, match", [
    (np.zeros((1, 2, H), complex), TypeError, r"h must hold real numbers.*complex"),
    (np.zeros((1, 2, H), bool), TypeError, r"h must hold real numbers.*bool"),
    (np.full((1, 2, H), "1"), TypeError, r"h must hold real numbers.*string"),
    (np.zeros((1, 2, H), object), TypeError, r"h must hold real numbers.*object"),
    ("abc", TypeError, "h must hold real numbers"),
    (np.zeros((1, 2, H + 1)), ValueError, r"h has shape \(1, 2, 6\); expected \(1, 2, 5\)"),
    (np.zeros((2, H)), ValueError, r"h has shape \(2, 5\); expected \(1, 2, 5\)"),
])
def test_stream_state_non_numeric_and_wrong_shape(bad, exc, match):
    layer = fastrnn.GRU(I, H, seed=0)
    stream = layer.stream(2)
    stream.step(np.ones((2, I)))
    before = stream.state
    with pytest.raises(exc, match=match):
        stream.state = bad
    with pytest.raises(exc, match=match):
        layer.stream(2, state=bad)
    assert np.array_equal(stream.state, before), "a refused state changed the stream"


def test_stream_batch_size_beyond_a_c_int():
    layer = fastrnn.GRU(I, H)
    for b in (2**31, 2**40, 10**30):
        with pytest.raises(ValueError, match=rf"batch_size is {b}; it must be in \[1, "):
            layer.stream(b)


# --------------------------------------------------------------------------------------
# Sizes beyond the engine's C ints; huge lengths
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("make_it, name", [
    (lambda n: fastrnn.LSTM(n, 4), "input_size"),
    (lambda n: fastrnn.GRU(4, n), "hidden_size"),
    (lambda n: fastrnn.RNN(4, 4, n), "num_layers"),
    (lambda n: fastrnn.LSTMCell(4, n), "hidden_size"),
    (lambda n: fastrnn.GRUCell(n, 4), "input_size"),
])
@pytest.mark.parametrize("n", [2**31, 2**40, 2**70])
def test_sizes_beyond_a_c_int_are_value_errors(make_it, name, n):
    """Refused by name before anything is allocated (num_layers=2**31 used to build
    arrays until the process was killed)."""
    with pytest.raises(ValueError, match=rf"{name} is {n}; it must be <= {2**31 - 1}"):
        make_it(n)


def _huge(shape, dtype=np.float32):
    """A read-only array of any shape over one element (all strides 0)."""
    return np.lib.stride_tricks.as_strided(np.zeros(1, dtype), shape, (0,) * len(shape),
                                           writeable=False)


@pytest.mark.parametrize("call, shape, match", [
    (lambda x: fastrnn.GRU(1, 2)(x), (2**31, 1, 1), r"x has shape \(2147483648, 1, 1\)"),
    (lambda x: fastrnn.GRU(1, 2)(x), (3, 2**31, 1), "more than 2147483647"),
    (lambda x: fastrnn.LSTM(1, 2)(x), (2**31, 1), "time steps or sequences"),
    (lambda x: fastrnn.GRUCell(1, 2)(x), (2**31, 1), "more than 2147483647 sequences"),
], ids=["T", "B", "unbatched-T", "cell-B"])
def test_steps_and_sequences_beyond_a_c_int_are_value_errors(call, shape, match):
    """More steps or sequences than the engine counts: a ValueError naming x's shape
    (was an OverflowError, which fastrnn run reported as an internal error)."""
    with pytest.raises(ValueError, match=match):
        call(_huge(shape))


@pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""),
                    reason="AddressSanitizer maps terabytes of shadow memory: no address-space "
                           "limit fits it (the normal test job runs this)")
def test_wrong_shapes_are_refused_before_a_copy():
    """A broadcast view (np.broadcast_to, torch's expand) of the wrong shape is refused
    by its shape, not after materializing it: under a 1 GB address-space limit, views
    of 6 GB and more (x, h0, a weight, the input of Linear, LayerNorm and Attention;
    converted to the layer dtype, or not) give ValueErrors."""
    from _io_helpers import run_python

    code = """
import resource
resource.setrlimit(resource.RLIMIT_AS, (1000 << 20, resource.RLIM_INFINITY))
import numpy as np, fastrnn
big = lambda shape, dt: np.broadcast_to(np.zeros((), dt), shape)
L, cell = fastrnn.LSTM(3, 4), fastrnn.GRUCell(3, 4)
x = np.ones((5, 2, 3), np.float32)
cases = [lambda: L(big((40000, 40000, 1), np.float64)),
         lambda: L(x, (big((1, 40000, 40000), np.float32), np.zeros((1, 2, 4)))),
         lambda: L.load_state_dict({**L.state_dict(), "weight_ih_l0": big((16, 10**8), np.float64)}),
         lambda: cell(big((10**9, 2), np.float32)),
         lambda: cell(np.ones((2, 3)), big((10**9, 4), np.float64)),
         lambda: fastrnn.Linear(3, 4)(big((10**9, 4), np.float64)),
         lambda: fastrnn.LayerNorm(3)(big((10**9, 4), np.float64)),
         lambda: fastrnn.Attention("dot")(big((2, 10**8, 3), np.float64),
                                          big((2, 10**8, 4), np.float64))]
for case in cases:
    try:
        case()
        print("ran")
    except ValueError:
        print("ValueError")
"""
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["ValueError"] * 8


@pytest.mark.parametrize("call", [
    lambda x: fastrnn.Linear(1, 3)(x), lambda x: fastrnn.GRU(1, 2).stream().step(x),
    lambda x: fastrnn.RNNCell(1, 2)(x), lambda x: fastrnn.LSTM(1, 2)(x),
], ids=["linear", "stream", "cell", "layer"])
@pytest.mark.parametrize("scalar", [0.5, np.float32(0.5), np.float64(0.5), np.array(0.5), 1],
                         ids=["float", "float32", "float64", "0-d", "int"])
def test_scalars_are_refused_whatever_their_type(call, scalar):
    """A 0-d input is not a vector of one feature: refused by its shape for every
    type (a Python float used to become shape (1,) in the conversion and run)."""
    with pytest.raises(ValueError, match=r"shape \(\)"):
        call(scalar)


def test_torch_tensors_numpy_cannot_take_are_type_errors():
    torch = need("torch")
    L = fastrnn.GRU(3, 4)
    for bad in (torch.zeros(2, 1, 3, device="meta"), torch.zeros(2, 1, 3).to_sparse()):
        with pytest.raises(TypeError, match="x must be a numeric array; converting it failed"):
            L(bad)


def test_linear_out_features_leave_room_for_the_padding():
    """The engine pads a Linear's outputs to a multiple of up to 64 in a C int: past
    2**31 - 64 that wrapped and the call reported "out of memory" instead."""
    with pytest.raises(ValueError, match=rf"out_features is {2**31 - 63}; it must be in "
                                         rf"\[1, {2**31 - 64}\]"):
        fastrnn.Linear(1, 2**31 - 63)


def test_proj_size_beyond_a_c_int():
    with pytest.raises(ValueError, match="proj_size"):
        fastrnn.LSTM(3, 4, proj_size=2**31)


@pytest.mark.parametrize("lengths, match", [
    ([2**64, 3], rf"lengths\[0\] is {2**64}; each length must be in \[1, T=5\]"),
    ([3, -(2**70)], rf"lengths\[1\] is {-(2**70)}; each length must be in"),
    ([2**2000], r"lengths has shape \(1,\); expected \(2,\)"),
    (np.array([3, 2**65], dtype=object), rf"lengths\[1\] is {2**65};"),
])
def test_lengths_beyond_int64_are_value_errors(lengths, match):
    layer = fastrnn.GRU(I, H)
    with pytest.raises(ValueError, match=match):
        layer(np.zeros((5, 2, I)), lengths=lengths)


def test_the_engine_reads_its_own_copy_of_lengths(monkeypatch):
    """The engine reads the lengths again and again with the GIL released; another
    thread may change the caller's array meanwhile. So it gets a private copy, even
    of an int64 array it could take as it is (and of a torch tensor's memory)."""
    torch = need("torch")
    layer = fastrnn.GRU(I, H, bidirectional=True)
    plan = layer._packed()
    seen = []

    class Spy:
        def run(self, x, batch_first, h0, c0, lengths):
            seen.append(lengths)
            return plan.run(x, batch_first, h0, c0, lengths)

    monkeypatch.setattr(layer, "_packed", lambda: Spy())
    x = np.ones((5, 3, I), np.float32)
    given = np.array([5, 2, 4], np.int64)
    tensor = torch.tensor([5, 2, 4])
    for lengths, memory in ((given, given), (tensor, tensor.numpy())):
        out, _ = layer(x, lengths=lengths)
        assert seen[-1] is not None and not np.shares_memory(seen[-1], memory)
        np.testing.assert_array_equal(seen[-1], [5, 2, 4])
    assert out[2:, 1].max() == 0 and out[:2, 1].min() != 0


def test_lengths_changed_by_another_thread_during_a_call():
    """A thread flips the caller's lengths between a valid value and 10**9 while
    another calls a bidirectional layer with them: every call runs on the value it
    was checked with or is refused (it crashed with SIGSEGV: the reverse direction
    addressed time 10**9 - 1 - s)."""
    from _io_helpers import run_python

    code = """
import threading, numpy as np, fastrnn
T, B = 400, 4
gru = fastrnn.GRU(8, 64, bidirectional=True, seed=0)
x = np.ones((T, B, 8), np.float32)
lens = np.array([T - 1, T, T, T], np.int64)
ref = gru(x, lengths=lens)[0]
stop = False
def flip():
    while not stop:
        lens[0] = 10**9
        lens[0] = T - 1
th = threading.Thread(target=flip)
th.start()
ran = refused = 0
try:
    for i in range(200):
        try:
            out = gru(x, lengths=lens)[0]
        except ValueError:
            refused += 1
        else:
            ran += 1
            assert np.array_equal(out, ref)
finally:
    stop = True
    th.join()
print(ran + refused)
"""
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["200"]


class _Converts:
    """An argument whose conversion runs the caller's code (numpy calls __array__),
    as another thread could run it at that moment: `act` changes something the
    call has already checked."""

    def __init__(self, value, act):
        self.value, self.act = value, act

    def __array__(self, dtype=None, copy=None):
        self.act()
        return np.asarray(self.value)


@pytest.mark.parametrize("state", [False, True])
def test_batch_first_changed_while_a_call_converts_its_arguments(state):
    """The call runs on the layout it checked x, h0 and lengths against (batch_first
    is read once): turned True while lengths converted, x (64, 2, I) was taken as
    64 sequences against 2 lengths and h0's 2 rows, and the engine read past both
    (SIGSEGV)."""
    layer = fastrnn.LSTM(I, H, seed=0)
    x = np.random.default_rng(0).standard_normal((64, 2, I)).astype(np.float32)
    h0 = np.ones((1, 2, H), np.float32) if state else None
    hx = (h0, np.zeros_like(h0)) if state else None
    want = layer(x, hx, lengths=[64, 3])

    def flip():
        layer.batch_first = True

    got = layer(x, hx, lengths=_Converts([64, 3], flip))
    assert layer.batch_first  # it did change, during the call
    for g, w in zip((got[0], *got[1]), (want[0], *want[1])):
        np.testing.assert_array_equal(g, w)


def test_the_engine_checks_state_and_lengths_against_the_call():
    """The last check before the engine: h0, c0 and lengths the size of the call's
    batch (and lengths in [1, T]), whatever the layer checked them against."""
    layer = fastrnn.LSTM(I, H)
    plan = layer._packed()
    x = np.zeros((4, 3, I), np.float32)
    h = np.zeros((1, 3, H), np.float32)
    good = np.array([4, 2, 1], np.int64)
    assert plan.run(x, False, h, h, good) is not None
    for h0, c0, lengths, match in (
            (h[:, :2].copy(), h, good, "h0"), (h, h[:, :2].copy(), good, "c0"),
            (h, h, good[:2].copy(), "lengths"), (h, h, good.astype(np.int32), "lengths"),
            (h, h.astype(np.float64), good, "c0"), (h, h, np.array([4, 5, 1]), r"lengths\[1\]"),
            (h, h, np.array([4, 0, 1]), r"lengths\[1\] is 0")):
        with pytest.raises(ValueError, match=match):
            plan.run(x, False, h0, c0, lengths)
    with pytest.raises(ValueError, match="lengths"):  # (3, 4, I) batch first: B = 3
        plan.run(x, True, None, None, good)


def test_prompt_changed_while_generate_converts_its_arguments():
    """generate decodes from the prompt ids it checked (a private copy): an id made
    out of range in the caller's array afterwards reached the C decoding loop, which
    read an embedding row far outside the table (SIGSEGV)."""
    emb = fastrnn.Embedding(10, 4, seed=0)
    lm = fastrnn.LanguageModel(fastrnn.Sequential(
        emb, fastrnn.GRU(4, 8, batch_first=True, seed=0), fastrnn.Linear(8, 10, seed=0)))
    prompt = np.array([[1, 2, 3]])
    want = lm.generate(prompt.copy(), max_len=3, lengths=[3])

    def spoil():
        prompt[0, 2] = 10**12

    got = lm.generate(prompt, max_len=3, lengths=_Converts([3], spoil))
    assert prompt[0, 2] == 10**12
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def _flip(layer):
    def act():
        layer.batch_first = not layer.batch_first
    return act


def test_whole_models_run_their_layers_in_the_layout_they_checked():
    """Seq2Seq, LanguageModel and Sequential pass their recurrent layers the layout
    they checked, not the flag read again: the encoder's batch_first turned False
    while src converted made its h_n (S rows, not B) the C decoder's h0 (SIGSEGV);
    a language model's prompt ran over the batch axis (wrong tokens); a Sequential's
    pool read the other layout."""
    V, E, Hd = 6, 4, 8
    rng = np.random.default_rng(0)

    def seq2seq():
        enc = fastrnn.Sequential(fastrnn.Embedding(V, E, seed=0),
                                 fastrnn.GRU(E, Hd, num_layers=2, batch_first=True, seed=1))
        dec = fastrnn.Sequential(fastrnn.Embedding(V, E, seed=2),
                                 fastrnn.GRU(E, Hd, num_layers=2, batch_first=True, seed=3),
                                 fastrnn.Linear(Hd, V, seed=4))
        return fastrnn.Seq2Seq(enc, dec)

    m = seq2seq()
    src = rng.integers(0, V, (5, 3))
    want = m.generate(src, max_len=4, bos=0, eos=1)
    got = m.generate(_Converts(src, _flip(m.enc_rnn)), max_len=4, bos=0, eos=1)
    assert not m.enc_rnn.batch_first
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    m = seq2seq()
    want = m(src, src)
    got = m(src, _Converts(src, _flip(m.dec_rnn)))
    np.testing.assert_array_equal(got, want)

    lm = fastrnn.LanguageModel(fastrnn.Sequential(
        fastrnn.Embedding(V, E, seed=0), fastrnn.LSTM(E, Hd, seed=1),
        fastrnn.Linear(Hd, V, seed=2)))
    prompt = rng.integers(0, V, (6, 7))  # B = P - 1: the other layout also fits
    want = lm.generate(prompt, max_len=4)
    packed = lm.rnn._packed

    def flip_then_pack():  # as another thread may, once generate laid out the prompt
        _flip(lm.rnn)()
        return packed()

    lm.rnn._packed = flip_then_pack
    got = lm.generate(prompt, max_len=4)
    del lm.rnn._packed
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)

    gru = fastrnn.GRU(E, Hd, seed=0)
    net = fastrnn.Sequential(gru, fastrnn.Pool("last"))
    x = rng.standard_normal((5, 3, E)).astype(np.float32)
    want = net(x)
    got = net(_Converts(x, _flip(gru)))
    np.testing.assert_array_equal(got, want)


def test_the_decoder_checks_its_arguments_against_the_model():
    """The last check before the C decoding loop: sizes, dtypes and indices."""
    from fastrnn.models import _seq2seq

    lm = fastrnn.LanguageModel(fastrnn.Sequential(
        fastrnn.Embedding(6, 4, seed=0), fastrnn.LSTM(4, 8, seed=1),
        fastrnn.Linear(8, 6, seed=2)))
    h = np.zeros((1, 2, 8), np.float32)
    first = np.array([1, 2], np.int64)
    kw = dict(beam=1, max_len=3, eos=None, length_penalty=0.0, temperature=0.0, seed=0)
    _seq2seq._decode(lm.rnn, lm.embedding, lm.out, h0=h, c0=h, first=first, **kw)
    for h0, c0, f, match in (
            (h[:, :1].copy(), h, first, "h0"), (h, np.zeros((1, 3, 8), np.float32), first, "c0"),
            (h.astype(np.float64), h, first, "h0"), (h, h, np.array([1, 6]), r"first\[1\] is 6"),
            (h, h, np.array([-1, 0]), r"first\[0\] is -1"),
            (h, h, first.astype(np.int32), "first")):
        with pytest.raises(ValueError, match=match):
            _seq2seq._decode(lm.rnn, lm.embedding, lm.out, h0=h0, c0=c0, first=f, **kw)
    other = fastrnn.LSTM(4, 8, num_layers=2)
    with pytest.raises(ValueError, match="plan does not match"):
        _kernels.decode(other._packed(), 1, 4, 8, 8, True, h, h, first,
                        lm.embedding._params["weight"], lm.out._kernel(), 6, None, None, None,
                        None, None, None, 0.0, 1, 3, -1, 0.0, 0.0, 0,
                        np.empty((2, 3), np.int64), np.empty((2, 3), np.float32),
                        np.empty(2, np.int64), 1)


def _pack_then_load(module, name, new_sd):
    """Have the next packing of module's weights see new_sd loaded meanwhile (as a
    load on another thread does while the packing runs with the GIL released)."""
    make = getattr(module, name)

    def pack(*args, **kwargs):
        packed = make(*args, **kwargs)
        module.load_state_dict(new_sd)
        return packed

    return pack


def test_weights_loaded_while_they_are_packed(monkeypatch):
    """A load while a call packs the old weights: that call may use them, but the
    packing is not kept. It was, and every later call, stream and cell computed
    with the old weights while state_dict() said the new ones (a hot reload while
    serving)."""
    from fastrnn.models import _basic

    old, new = fastrnn.LSTM(I, H, seed=1), fastrnn.LSTM(I, H, seed=2)
    layer = fastrnn.LSTM(I, H, seed=1)
    x = np.random.default_rng(0).standard_normal((6, 2, I)).astype(np.float32)
    monkeypatch.setattr(layer, "_make_plan",
                        _pack_then_load(layer, "_make_plan", new.state_dict()))
    np.testing.assert_array_equal(layer(x)[0], old(x)[0])  # packed before the load
    monkeypatch.undo()
    np.testing.assert_array_equal(layer(x)[0], new(x)[0])
    np.testing.assert_array_equal(layer.stream(2).step(x[0]), new.stream(2).step(x[0]))

    lin, lin_new = fastrnn.Linear(I, H, seed=1), fastrnn.Linear(I, H, seed=2)
    want_old = fastrnn.Linear(I, H, seed=1)(x)
    real = _basic._kernels.Linear

    def pack(w, b):
        packed = real(w, b)
        lin.load_state_dict(lin_new.state_dict())
        return packed

    monkeypatch.setattr(_basic._kernels, "Linear", pack)
    np.testing.assert_array_equal(lin(x), want_old)
    monkeypatch.undo()
    np.testing.assert_array_equal(lin(x), lin_new(x))


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_engine_ready_x_with_the_wrong_features_is_refused(variant, dtype, batch_first):
    """An x the engine could take as it is (a C-contiguous array of the layer's
    dtype) skips the Python checks up to Cython's own; its last axis must still be
    input_size. The error cases elsewhere pass lists and other dtypes, which are
    checked in Python first: only the command-line tests noticed when Cython's
    feature check was gone, and the layer then read past x."""
    layer = make(variant, dtype, batch_first=batch_first)
    for shape in ((5, 2, I - 1), (5, 2, I + 1), (5, I + 1), (5, 1)):
        x = np.ones(shape, dtype)
        with pytest.raises(ValueError, match=rf"x has {shape[-1]} features"):
            layer(x)


@pytest.mark.parametrize("n_rows", [1, 130, 2 * 130 + 57])
def test_linear_over_several_chunks_of_rows(isa, n_threads, n_rows):
    """The engine applies a Linear in chunks of rows (2^18 values of its padded
    output a chunk: 130 rows for 2000 outputs) and takes only what is left of x in
    the last one: taken whole, it read past x and wrote past y (under ASan, a report;
    here rows past y in one buffer must stay as they were)."""
    lin = fastrnn.Linear(8, 2000, seed=0)
    x = np.random.default_rng(n_rows).standard_normal((n_rows, 8)).astype(np.float32)
    ref = x.astype(np.float64) @ lin.weight.T.astype(np.float64) + lin.bias
    assert_close(lin(x), ref, "float32", k=8)
    buf = np.full((n_rows + 130, 2000), 7.0, np.float32)
    lin._kernel().apply(x, buf[:n_rows], n_threads)
    assert np.array_equal(buf[:n_rows], lin(x)) and np.all(buf[n_rows:] == 7.0)


def test_empty_batches_everywhere():
    """B = 0 with states and lengths of matching (empty) shapes: empty results of
    the right shapes; a state of another batch size is still a ValueError."""
    for variant in VARIANTS:
        for batch_first in (False, True):
            layer = make(variant, batch_first=batch_first)
            n, ho = 4, h_out(layer)
            x = np.zeros((0, 6, I) if batch_first else (6, 0, I), np.float32)
            hx = states(layer, 0, np.random.default_rng(0))
            out, hn, cn = call(layer, x, hx, lengths=np.zeros(0, np.int64))
            assert out.shape == ((0, 6, 2 * ho) if batch_first else (6, 0, 2 * ho))
            assert hn.shape == (n, 0, ho)
            assert cn is None or cn.shape == (n, 0, H)
            bad = (np.zeros((n, 1, ho)), np.zeros((n, 1, H))) if cn is not None \
                else np.zeros((n, 1, ho))
            with pytest.raises(ValueError, match=r"h0 has shape \(4, 1, \d\); expected \(4, 0,"):
                layer(x, bad)
    for cls in (fastrnn.RNNCell, fastrnn.LSTMCell, fastrnn.GRUCell):
        cell = cls(I, H)
        h = np.zeros((0, H))
        got = cell(np.zeros((0, I)), (h, h) if cls is fastrnn.LSTMCell else h)
        for a in got if isinstance(got, tuple) else (got,):
            assert a.shape == (0, H)


# --------------------------------------------------------------------------------------
# NaN and Inf against torch on the same weights
# --------------------------------------------------------------------------------------

TORCH_KINDS = {
    "rnn_tanh": ("RNN", dict(nonlinearity="tanh")),
    "rnn_relu": ("RNN", dict(nonlinearity="relu")),
    "lstm": ("LSTM", {}),
    "lstm_proj": ("LSTM", dict(proj_size=P)),
    "gru": ("GRU", {}),
}


def _torch_pair(kind, dtype, torch, **kw):
    name, extra = TORCH_KINDS[kind]
    torch.manual_seed(0)
    module = getattr(torch.nn, name)(I, H, **{**dict(num_layers=2, bidirectional=True),
                                              **extra, **kw})
    module = module.to(torch.float64 if dtype == "float64" else torch.float32).eval()
    return module, getattr(fastrnn, name).from_torch(module)


def _torch_call(torch, module, x, hx):
    tdt = next(module.parameters()).dtype
    with torch.no_grad():
        if hx is None:
            out, st = module(torch.as_tensor(x, dtype=tdt))
        elif isinstance(hx, tuple):
            out, st = module(torch.as_tensor(x, dtype=tdt),
                             tuple(torch.as_tensor(a, dtype=tdt) for a in hx))
        else:
            out, st = module(torch.as_tensor(x, dtype=tdt), torch.as_tensor(hx, dtype=tdt))
    st = tuple(s.numpy() for s in st) if isinstance(st, tuple) else (st.numpy(), None)
    return (out.numpy(), *st)


def assert_nonfinite_like(got, want, dtype, what):
    """The same NaN, +Inf and -Inf positions; the finite values within tolerance."""
    for name, g, w in zip(("out", "h_n", "c_n"), got, want):
        if w is None:
            continue
        for test in (np.isnan, np.isposinf, np.isneginf):
            assert np.array_equal(test(g), test(w)), (
                f"{what} {name}: {test.__name__} pattern differs from torch "
                f"({int(test(g).sum())} vs {int(test(w).sum())})")
        finite = np.isfinite(w)
        assert_close(np.where(finite, g, 0), np.where(finite, w, 0), dtype, H + 2 * H,
                     f"{what} {name}")


def _nonfinite_x(dtype, rng, T=6, B=5):
    x = rng.standard_normal((T, B, I)).astype(dtype)
    x[1, 0, 0] = np.inf  # sequence 0: +Inf at step 1
    x[3, 1, 2] = -np.inf  # sequence 1: -Inf at step 3
    x[2, 2, 1] = np.nan  # sequence 2: NaN at step 2
    x[4, 3, :] = np.inf  # sequence 3: every feature +Inf at step 4
    return x  # sequence 4 stays finite


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", list(TORCH_KINDS))
def test_nan_and_inf_in_inputs_and_weights_like_torch(kind, dtype):
    torch = need("torch")
    module, layer = _torch_pair(kind, dtype, torch)
    rng = np.random.default_rng(5)
    x = _nonfinite_x(dtype, rng)
    hx = states(layer, x.shape[1], rng)
    for h in (None, hx):
        assert_nonfinite_like(call(layer, x, h), _torch_call(torch, module, x, h), dtype,
                              f"{kind} {dtype} non-finite x")
    # with lengths: a NaN in the padding is never read
    lengths = np.array([6, 6, 2, 6, 6])
    got = call(layer, x, hx, lengths)
    assert np.all(np.isfinite(got[0][:, 2])), "the padding's NaN was read"
    # a non-finite weight: every output that depends on it
    for value in (np.nan, np.inf):
        module2, layer2 = _torch_pair(kind, dtype, torch)
        with torch.no_grad():
            module2.weight_hh_l0[0, 0] = float(value)
            module2.bias_ih_l1_reverse[1] = -float(value)
        layer2.load_state_dict(module2.state_dict())
        xs = np.where(np.isfinite(x), x, 0.25).astype(dtype)
        assert_nonfinite_like(call(layer2, xs), _torch_call(torch, module2, xs, None), dtype,
                              f"{kind} {dtype} weight {value}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", list(TORCH_KINDS))
def test_nan_and_inf_in_initial_states_like_torch(kind, dtype):
    torch = need("torch")
    module, layer = _torch_pair(kind, dtype, torch)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 5, I)).astype(dtype)
    hx = states(layer, 5, rng)
    h = hx[0] if isinstance(hx, tuple) else hx
    h[0, 4, 0] = np.inf  # sequence 4, layer 0 forward
    h[3, 4, 1] = -np.inf  # sequence 4, layer 1 reverse
    h[1, 2, 1] = np.nan  # sequence 2, layer 0 reverse
    if isinstance(hx, tuple):
        hx[1][2, 1, 0] = np.inf  # c0 of sequence 1, layer 1 forward
        hx[1][0, 0, 1] = np.nan  # c0 of sequence 0
    assert_nonfinite_like(call(layer, x, hx), _torch_call(torch, module, x, hx), dtype,
                          f"{kind} {dtype} non-finite initial state")


# sigmoid(-inf) must be exactly 0, as in torch (1 / (1 + e^inf)): the gates then give
# 0 * inf = NaN where torch does (csrc/kernels/activ.h computes it from exp(-|x|)).


def _isa_dtype_params():
    available = fastrnn.config()["isa_available"]
    params = []
    for isa in ("generic", "avx2", "avx512"):
        for dtype in DTYPES:
            marks = []
            if isa not in available:
                marks.append(pytest.mark.skip(reason=f"{isa} not available here"))
            params.append(pytest.param(isa, dtype, marks=marks, id=f"{isa}-{dtype}"))
    return params


@pytest.fixture
def on_isa():
    before = _kernels.get_isa()

    def switch(name):
        _kernels._set_isa(("generic", "avx2", "avx512").index(name))

    yield switch
    _kernels._set_isa(before)


@pytest.mark.parametrize("isa_name, dtype", _isa_dtype_params())
def test_sigmoid_of_minus_inf_is_zero(isa_name, dtype):
    """Minimal reproducer of the bug above: the engine's own sigmoid at -inf."""
    x = np.array([-np.inf, np.inf, 0.0], dtype)
    y = np.empty_like(x)
    _kernels.activation(("generic", "avx2", "avx512").index(isa_name), 0, x, y)
    assert y[1] == 1.0 and y[2] == 0.5
    assert y[0] == 0.0, f"sigmoid(-inf) = {y[0]!r}; torch gives 0"


@pytest.mark.parametrize("isa_name, dtype", _isa_dtype_params())
def test_gru_infinite_initial_state_like_torch(isa_name, dtype, on_isa):
    """The user-visible effect: one +Inf in h0 of a 1-layer GRU, against torch and the
    float64 reference (both NaN in units 0, 2, 4 after one step)."""
    torch = need("torch")
    from fastrnn import reference

    on_isa(isa_name)
    torch.manual_seed(0)
    module = torch.nn.GRU(I, H).to(torch.float64 if dtype == "float64" else torch.float32)
    layer = fastrnn.GRU.from_torch(module.eval())
    x = np.random.default_rng(0).standard_normal((2, 1, I)).astype(dtype)
    h0 = np.zeros((1, 1, H), dtype)
    h0[0, 0, 0] = np.inf
    want = _torch_call(torch, module, x, h0)
    with np.errstate(invalid="ignore"):
        ref_out, _ = reference.forward(layer, x, h0, dtype=np.float64)
    assert np.array_equal(np.isnan(ref_out), np.isnan(want[0]))  # the oracle agrees with torch
    assert_nonfinite_like(call(layer, x, h0), want, dtype, f"GRU {isa_name} {dtype} h0=inf")


@pytest.mark.parametrize("kind", ["rnn_relu", "lstm_proj", "gru"])
def test_nan_and_inf_through_a_stream_like_torch(kind):
    torch = need("torch")
    module, layer = _torch_pair(kind, "float32", torch, bidirectional=False)
    rng = np.random.default_rng(6)
    x = _nonfinite_x("float32", rng)
    want = _torch_call(torch, module, x, None)
    stream = layer.stream(x.shape[1])
    ys = np.stack([stream.step(x[t]) for t in range(x.shape[0])])
    st = stream.state
    got = (ys, *(st if isinstance(st, tuple) else (st, None)))
    assert_nonfinite_like(got, want, "float32", f"{kind} stream")


# --------------------------------------------------------------------------------------
# Whole-model modules: input forms, non-numeric input
# --------------------------------------------------------------------------------------


def test_linear_and_layernorm_input_forms(tmp_path):
    """Linear (the packed engine kernels) and LayerNorm take every form of x, give
    the plain result and leave the caller's array alone."""
    rng = np.random.default_rng(7)
    for dtype in DTYPES:
        for module in (fastrnn.Linear(I, 7, dtype=dtype, seed=0),
                       fastrnn.Linear(I, 1, bias=False, dtype=dtype, seed=1),
                       fastrnn.LayerNorm(I, dtype=dtype)):
            x = rng.standard_normal((4, I)).astype(dtype)
            want = module(x)
            for name, xf in forms(x, tmp_path):
                before = snapshot(xf)
                got = module(xf)
                assert got.dtype == want.dtype and np.array_equal(got, want), (module, name)
                assert_untouched(before, xf, f"{module!r} x as {name}")
            for shape in ((0, I), (2, 0, I), (I,), (2, 1, 3, I)):
                assert module(np.zeros(shape, dtype)).shape[:-1] == shape[:-1]


@pytest.mark.parametrize("bad, what", [
    (np.full((2, I), "1"), "string"), (np.zeros((2, I), complex), "complex"),
    (np.zeros((2, I), bool), "bool"), (np.zeros((2, I), object), "object"),
    ("abc", "string"), (np.zeros((2, I), "M8[s]"), "datetime"),
])
def test_linear_and_layernorm_non_numeric(bad, what):
    for module in (fastrnn.Linear(I, 4), fastrnn.LayerNorm(I)):
        with pytest.raises(TypeError, match=rf"^x must hold real numbers.*{what}"):
            module(bad)
    with pytest.raises(ValueError, match=r"x has shape \(2, 4\)"):
        fastrnn.Linear(I, 4)(np.zeros((2, I + 1)))


def test_embedding_id_forms_and_refusals():
    emb = fastrnn.Embedding(10, 4, seed=0)
    ids = np.array([[1, 9], [0, 5]])
    want = emb(ids)
    for form in (ids.tolist(), ids.astype(np.uint8), ids.astype(">i8"), unaligned(ids),
                 np.asfortranarray(ids), readonly(ids), ids.astype(np.int16)):
        before = snapshot(form)
        assert np.array_equal(emb(form), want)
        assert_untouched(before, form, "ids")
    for bad, exc in (([1.0], TypeError), ([True], TypeError), (["1"], TypeError),
                     ([10], ValueError), ([-1], ValueError), (None, TypeError),
                     (np.array([2**63 - 1]), ValueError)):
        with pytest.raises(exc, match="ids"):
            emb(bad)


# --------------------------------------------------------------------------------------
# fastrnn.load: overrides and paths
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    d = tmp_path_factory.mktemp("saved")
    fastrnn.LSTM(I, H, 2, seed=0).save(d / "lstm.npz")
    fastrnn.GRU(I, H, seed=0).save(d / "gru.npz")
    fastrnn.RNN(I, H, seed=0).save(d / "rnn.npz")
    fastrnn.GRUCell(I, H, seed=0).save(d / "cell.npz")
    np.savez(d / "plain.npz", **fastrnn.GRU(I, H, seed=0).state_dict())
    return d


@pytest.mark.parametrize("file", ["lstm.npz", "plain.npz", "cell.npz"])
def test_load_dtype_none_is_a_value_error(saved, file):
    """numpy reads dtype=None as float64; load must refuse it as the layers do."""
    with pytest.raises(ValueError, match=r"override dtype=None; expected 'float32' or "
                                         r"'float64'") as info:
        fastrnn.load(saved / file, dtype=None)
    assert not isinstance(info.value, fastrnn.ModelFileError)  # the caller's mistake


def test_file_metadata_dtype_null_is_a_model_file_error(saved, tmp_path):
    with np.load(saved / "gru.npz") as z:
        arrays = dict(z)
    meta = json.loads(arrays.pop("__fastrnn__").tobytes())
    meta["hyperparameters"]["dtype"] = None
    arrays["__fastrnn__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(tmp_path / "m.npz", **arrays)
    with pytest.raises(fastrnn.ModelFileError, match=r"the file says dtype=None"):
        fastrnn.load(tmp_path / "m.npz")
    assert fastrnn.load(tmp_path / "m.npz", dtype="float64").dtype == np.float64


@pytest.mark.parametrize("file, overrides, match", [
    ("lstm.npz", dict(dtype="float16"), r"override dtype='float16'; expected"),
    ("lstm.npz", dict(dtype=np.int32), r"override dtype=.*int32.*; expected"),
    ("lstm.npz", dict(dtype="bogus"), r"override dtype='bogus'"),
    ("lstm.npz", dict(batch_first="yes"), r"override batch_first='yes'; expected True or False"),
    ("lstm.npz", dict(batch_first=1), r"override batch_first=1; expected True or False"),
    ("lstm.npz", dict(batch_first=None), r"override batch_first=None"),
    ("rnn.npz", dict(nonlinearity="sigmoid"), r"override nonlinearity='sigmoid'; expected 'tanh'"),
    ("rnn.npz", dict(nonlinearity=None), r"override nonlinearity=None"),
    ("gru.npz", dict(linear_before_reset=0), r"override linear_before_reset=0; expected True"),
    ("lstm.npz", dict(hidden_size=6), r"override hidden_size=6 contradicts the weights.*"
                                      r"hidden_size=5"),
    ("lstm.npz", dict(hidden_size=5.0), r"override hidden_size=5.0 contradicts"),
    ("lstm.npz", dict(hidden_size=True), r"override hidden_size=True contradicts"),
    ("lstm.npz", dict(num_layers=3), r"override num_layers=3 contradicts"),
    ("lstm.npz", dict(bidirectional=True), r"override bidirectional=True contradicts"),
    ("lstm.npz", dict(peephole="no"), r"override peephole='no' contradicts"),
    ("lstm.npz", dict(nonlinearity="relu"), r"override 'nonlinearity' does not apply to the LSTM"),
    ("cell.npz", dict(batch_first=True), r"override 'batch_first' does not apply to the GRUCell"),
    ("cell.npz", dict(num_layers=1), r"override 'num_layers' does not apply"),
    ("gru.npz", dict(seed=0), r"unknown override\(s\) 'seed' for fastrnn.load"),
    ("gru.npz", dict(hiden_size=5), r"unknown override\(s\) 'hiden_size'"),
])
def test_load_bad_overrides(saved, file, overrides, match):
    with pytest.raises(ValueError, match=match):
        fastrnn.load(saved / file, **overrides)


def test_load_paths(saved, tmp_path):
    want = fastrnn.load(saved / "gru.npz").state_dict()
    for path in (str(saved / "gru.npz"), os.fsencode(saved / "gru.npz")):
        got = fastrnn.load(path).state_dict()
        assert all(np.array_equal(got[k], want[k]) for k in want)
    for bad in (None, 3, 2.5, ["a.npz"]):
        with pytest.raises(TypeError):
            fastrnn.load(bad)
    (tmp_path / "dir.npz").mkdir()
    for missing in (tmp_path / "nope.npz", tmp_path / "dir.npz"):
        with pytest.raises(FileNotFoundError, match="does not exist or is not a file"):
            fastrnn.load(missing)
    for suffix in (".npy", ".pkl", ".h5", ""):
        p = tmp_path / f"model{suffix}"
        p.write_bytes(b"x")
        with pytest.raises(fastrnn.ModelFileError, match=r"fastrnn.load reads \.pt, \.pth"):
            fastrnn.load(p)


# --------------------------------------------------------------------------------------
# fastrnn run: hostile --input / --lengths files
# --------------------------------------------------------------------------------------


def _npy_with_header(path, header_from, header_to):
    raw = bytearray(open(path, "rb").read())
    assert header_from in raw
    raw = raw.replace(header_from, header_to.ljust(len(header_from)))
    return bytes(raw)


def test_cli_run_hostile_inputs(saved, tmp_path, capsys):
    """Every bad --input / --lengths file: exit status 1, one line on stderr naming
    the argument and what is wrong, no output file, nothing executed."""
    x = np.zeros((5, 2, I), np.float32)
    good = tmp_path / "x.npy"
    np.save(good, x)
    marker = tmp_path / "PWNED"
    files = {}

    def save(name, a, **kw):
        np.save(tmp_path / name, a, **kw)
        files[name] = tmp_path / name

    save("complex.npy", x.astype(complex))
    save("bool.npy", x.astype(bool))
    save("structured.npy", np.zeros((5, 2, I), [("a", "f4")]))
    save("datetime.npy", np.zeros((5, 2, I), "M8[s]"))
    save("unicode.npy", np.array(["abc"]))
    save("scalar.npy", np.float32(1))
    save("4d.npy", np.zeros((1, 5, 2, I)))
    save("no_steps.npy", np.zeros((0, 2, I)))
    save("features.npy", np.zeros((5, 2, I + 1)))
    save("object.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    head = open(good, "rb").read()
    hostile = {
        "truncated.npy": head[:100],
        "truncated_data.npy": head[:-7],
        "huge_shape.npy": _npy_with_header(good, b"(5, 2, 3)", b"(99999999999, 99999999, 3)"),
        "negative_shape.npy": _npy_with_header(good, b"(5, 2, 3)", b"(-5, 2, 3)"),
        "object_header.npy": _npy_with_header(good, b"'<f4'", b"'|O'"),
        "code_header.npy": _npy_with_header(
            good, b"'descr': '<f4', 'fortran_order': False",
            b"'descr': __import__('os').system('touch " + str(marker).encode() + b"')"),
        "not_npy.npy": b"hello world" * 10,
        "empty.npy": b"",
    }
    for name, data in hostile.items():
        (tmp_path / name).write_bytes(data)
        files[name] = tmp_path / name
    np.savez(tmp_path / "archive.npz", x=x)
    files["archive.npz"] = tmp_path / "archive.npz"
    (tmp_path / "dir.npy").mkdir()
    files["dir.npy"] = tmp_path / "dir.npy"
    out = tmp_path / "y.npy"

    def run(model, inp, lengths=None):
        args = argparse.Namespace(model=str(model), input=str(inp), output=str(out),
                                  lengths=None if lengths is None else str(lengths),
                                  batch_first=False, state_out=None)
        code = _cli_run.main(args)
        cap = capsys.readouterr()
        return code, cap.out, cap.err

    for name, path in files.items():
        code, stdout, stderr = run(saved / "lstm.npz", path)
        assert code == 1, (name, stderr)
        assert stdout == "" and stderr.count("\n") == 1, (name, stderr)
        assert stderr.startswith("fastrnn run: error:") and "Traceback" not in stderr, name
        assert "--input" in stderr or "x " in stderr or "x must" in stderr, (name, stderr)
        assert not out.exists(), name
    assert not marker.exists(), "a crafted .npy header ran code"
    for name, lengths in [("fraction", np.array([1.5, 2])), ("shape", np.array([[5, 5]])),
                          ("zero", np.array([0, 5])), ("too long", np.array([6, 5])),
                          ("strings", np.array(["5", "5"])), ("complex", np.array([5j, 5])),
                          ("objects", np.array([5, None], dtype=object))]:
        path = tmp_path / "lengths.npy"
        np.save(path, lengths, allow_pickle=True)
        code, stdout, stderr = run(saved / "lstm.npz", good, path)
        assert code == 1 and stderr.count("\n") == 1 and "lengths" in stderr, (name, stderr)
        assert not out.exists()
    # and the good input runs (float16 and big-endian files convert)
    for a in (x, x.astype(np.float16), x.astype(">f8"), np.asfortranarray(x)):
        np.save(good, a)
        code, _, stderr = run(saved / "lstm.npz", good)
        assert code == 0, stderr
        assert np.load(out).shape == (5, 2, H)


# --------------------------------------------------------------------------------------
# The private kernel test hooks check their arguments
# --------------------------------------------------------------------------------------


def _isa():
    return _kernels.get_isa()


@pytest.mark.parametrize("args, exc, match", [
    (lambda x, y: (_isa(), 0, x, y[:-1]), ValueError, r"y has shape \(9,\); it must be x's"),
    (lambda x, y: (_isa(), 0, x[:-1], y), ValueError, "y has shape"),
    (lambda x, y: (_isa(), 0, x.reshape(2, 5), y), ValueError, "y has shape"),
    (lambda x, y: (_isa(), 0, x.astype(np.float16), y.astype(np.float16)), TypeError,
     "x has dtype float16"),
    (lambda x, y: (_isa(), 0, x, y.astype(np.float64)), TypeError, "y has dtype float64"),
    (lambda x, y: (_isa(), 0, x.astype(">f4"), y), TypeError, "x has dtype >f4"),
    (lambda x, y: (_isa(), 0, x.astype(np.int32), y.astype(np.int32)), TypeError, "int32"),
    (lambda x, y: (_isa(), 0, x, y.tolist()), TypeError, "y must be a NumPy array"),
    (lambda x, y: (_isa(), 0, None, y), TypeError, "x must be a NumPy array"),
    (lambda x, y: (_isa(), 0, np.zeros(20, np.float32)[::2], y), ValueError, "C-contiguous"),
    (lambda x, y: (_isa(), 0, x, unaligned(y)), ValueError, "aligned"),
    (lambda x, y: (_isa(), 0, x, readonly(y)), ValueError, "writeable"),
    (lambda x, y: (_isa(), 3, x, y), ValueError, "kind is 3"),
    (lambda x, y: (_isa(), -1, x, y), ValueError, "kind is -1"),
    (lambda x, y: (-1, 0, x, y), ValueError, "isa is -1"),
    (lambda x, y: (9, 0, x, y), ValueError, "isa is 9"),
], ids=lambda a: None)
def test_activation_hook_refuses_bad_arguments(args, exc, match):
    x = np.linspace(-3, 3, 10).astype(np.float32)
    buf = np.full(14, 7.0, np.float32)
    y = buf[:10]
    a = args(x, y)
    with pytest.raises(exc, match=match):
        _kernels.activation(*a)
    assert np.all(buf == 7.0), "a refused call wrote into y"


@pytest.mark.parametrize("change, exc, match", [
    (dict(c=lambda c: np.zeros((3, 4), np.float32)), ValueError,
     r"c has shape \(3, 4\); it must be \(M, N\) = \(3, 5\)"),
    (dict(c=lambda c: c[:-1]), ValueError, r"c has shape \(2, 5\)"),
    (dict(c=lambda c: c[:, :-1]), ValueError, r"c must be an aligned C-contiguous array"),
    (dict(b_t=lambda b: b[:, :-1].copy()), ValueError, r"b_t has shape \(5, 3\); it must be"),
    (dict(bias=lambda b: b[:-1]), ValueError, r"bias has shape \(4,\)"),
    (dict(bias=lambda b: b.reshape(1, 5)), ValueError, r"bias has shape \(1, 5\)"),
    (dict(a=lambda a: a.astype(np.float16)), TypeError, "a has dtype float16"),
    (dict(c=lambda c: c.astype(np.float64)), TypeError, "c has dtype float64"),
    (dict(a=lambda a: a.ravel()), ValueError, "a has shape .*2-D"),
    (dict(a=lambda a: np.asfortranarray(np.zeros((3, 4), np.float32))), ValueError,
     "C-contiguous"),
    (dict(c=lambda c: readonly(c)), ValueError, "c must be writeable"),
    (dict(c=lambda c: c.tolist()), TypeError, "c must be a NumPy array"),
    (dict(a=lambda a: np.zeros((0, 4), np.float32), c=lambda c: np.zeros((0, 5), np.float32)),
     ValueError, "M, N, K must be in"),
    (dict(n_threads=0), ValueError, "n_threads is 0"),
    (dict(isa=-1), ValueError, "isa is -1"),
], ids=lambda a: None)
def test_gemm_hook_refuses_bad_arguments(change, exc, match):
    rng = np.random.default_rng(0)
    args = dict(isa=_isa(), a=rng.standard_normal((3, 4)).astype(np.float32),
                b_t=rng.standard_normal((5, 4)).astype(np.float32),
                bias=rng.standard_normal(5).astype(np.float32),
                c=np.full((3, 5), 7.0, np.float32), n_threads=1)
    guard = args["c"]
    for k, f in change.items():
        args[k] = f(args[k]) if callable(f) else f
    with pytest.raises(exc, match=match):
        _kernels.gemm_test(args["isa"], args["a"], args["b_t"], args["bias"], args["c"],
                           args["n_threads"])
    assert np.all(guard == 7.0), "a refused call wrote into c"
    # and the well-formed call still works
    c = np.empty((3, 5), np.float32)
    a, b_t, bias = (rng.standard_normal(s).astype(np.float32) for s in ((3, 4), (5, 4), (5,)))
    _kernels.gemm_test(_isa(), a, b_t, None, c, 1)
    np.testing.assert_allclose(c, a @ b_t.T, rtol=1e-5, atol=1e-5)


# ---- what a module is built for stays as built --------------------------------

def _fixed_cases():
    """(id, make, attribute, a new value, call) for every size, kind and dtype the
    weights, the packed engine or buffers are made for."""
    x3 = np.ones((2, 1, 3), np.float32)
    layer_call = lambda m: m(x3)  # noqa: E731
    cases = []
    for name, make in (("RNN", lambda: fastrnn.RNN(3, 4, 2, seed=0)),
                       ("GRU", lambda: fastrnn.GRU(3, 4, 2, seed=0)),
                       ("LSTM", lambda: fastrnn.LSTM(3, 4, 2, proj_size=2, seed=0))):
        for attr, value in (("input_size", 100), ("hidden_size", 4096), ("num_layers", 1),
                            ("num_layers", 8), ("proj_size", 3), ("peephole", True),
                            ("bias", False), ("bidirectional", True),
                            ("linear_before_reset", False), ("dtype", np.dtype(np.float64)),
                            ("mode", "LSTM")):
            cases.append((f"{name}.{attr}={value}", make, attr, value, layer_call))
    cases.append(("RNN.nonlinearity", lambda: fastrnn.RNN(3, 4, seed=0), "nonlinearity", "relu",
                  layer_call))
    x1 = np.ones((2, 3), np.float32)
    for name in ("RNNCell", "GRUCell", "LSTMCell"):
        make = (lambda n: lambda: getattr(fastrnn, n)(3, 4, seed=0))(name)
        for attr, value in (("input_size", 100), ("hidden_size", 400), ("bias", False),
                            ("dtype", np.dtype(np.float64))):
            cases.append((f"{name}.{attr}", make, attr, value, lambda m: m(x1)))
    lin_x = np.ones((5, 64), np.float32)
    for attr, value in (("in_features", 4000), ("out_features", 1), ("has_bias", False),
                        ("dtype", np.dtype(np.float64))):
        cases.append((f"Linear.{attr}", lambda: fastrnn.Linear(64, 4096, seed=0), attr, value,
                      lambda m: m(lin_x)))
    ids = np.array([[1, 2]])
    for attr, value in (("num_embeddings", 10**6), ("embedding_dim", 9), ("padding_idx", 3)):
        cases.append((f"Embedding.{attr}", lambda: fastrnn.Embedding(10, 3, seed=0), attr, value,
                      lambda m: m(ids)))
    cases.append(("LayerNorm.normalized_shape", lambda: fastrnn.LayerNorm(4),
                  "normalized_shape", (2, 2), lambda m: m(np.ones((3, 4)))))
    cases.append(("AttentionPool.features", lambda: fastrnn.AttentionPool(4, seed=0),
                  "features", 40, lambda m: m(np.ones((2, 5, 4), np.float32))))
    return cases


FIXED = _fixed_cases()


@pytest.mark.parametrize("make, attr, value, call", [c[1:] for c in FIXED],
                         ids=[c[0] for c in FIXED])
def test_sizes_and_kinds_are_fixed_once_built(make, attr, value, call):
    """Assigning (or deleting) what the weights and the packed engine were made for
    is an AttributeError, before and after the first call, and the module still
    computes what it did. Such assignments once ran the engine built for the old
    sizes with the new ones: LSTM proj_size or hidden_size, GRU input_size, a
    stream's batch_size, Linear out_features crashed the process; dtype read float32
    weights as float64."""
    def outputs(m):
        r = call(m)
        r = r if isinstance(r, tuple) else (r,)
        return [a for part in r for a in (part if isinstance(part, tuple) else (part,))
                if a is not None]

    used, fresh = make(), make()
    before = outputs(used)
    for m in (used, fresh):  # after its first call and before it
        with pytest.raises(AttributeError, match=f"{type(m).__name__}.{attr} cannot be "
                                                 "changed: it is fixed when"):
            setattr(m, attr, value)
        with pytest.raises(AttributeError, match=f"{attr} cannot be changed"):
            delattr(m, attr)
        for a, b in zip(before, outputs(m), strict=True):
            np.testing.assert_array_equal(a, b)


def test_whole_models_keep_their_parts():
    """A Seq2Seq's or LanguageModel's parts were checked against each other when it was
    built (sizes, dtypes); swapping one later could hand the decoder a Linear of
    another size, so the parts are fixed as the sizes are."""
    enc = fastrnn.Sequential(fastrnn.Embedding(10, 4), fastrnn.GRU(4, 6, batch_first=True))
    dec = fastrnn.Sequential(fastrnn.Embedding(10, 4), fastrnn.GRU(4, 6, batch_first=True),
                             fastrnn.Linear(6, 10))
    s2s = fastrnn.Seq2Seq(enc, dec)
    for attr in ("encoder", "decoder", "out", "dec_rnn", "enc_embedding", "attention", "dtype"):
        with pytest.raises(AttributeError, match=f"Seq2Seq.{attr} cannot be changed"):
            setattr(s2s, attr, fastrnn.Linear(6, 100000))
    with pytest.raises(AttributeError, match="Linear.out_features cannot be changed"):
        s2s.out.out_features = 100000
    lm = fastrnn.LanguageModel(fastrnn.Sequential(fastrnn.Embedding(10, 4),
                                                  fastrnn.LSTM(4, 6, batch_first=True),
                                                  fastrnn.Linear(6, 10)))
    for attr in ("model", "embedding", "rnn", "out"):
        with pytest.raises(AttributeError, match=f"LanguageModel.{attr} cannot be changed"):
            setattr(lm, attr, fastrnn.Linear(6, 100000))
    tokens, _ = s2s.generate(np.array([[1, 2, 3]]), bos=1, eos=0, max_len=3)
    assert tokens.shape[0] == 1 and 1 <= tokens.shape[1] <= 3


def test_what_may_change_is_checked():
    """batch_first and dropout change nothing that is built, as in torch: they may be
    assigned, through the constructor's checks; attributes of parameterless modules
    (Dropout.p, Softmax.dim, Pool's mode) stay plain."""
    layer = fastrnn.GRU(3, 4, seed=0)
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    out, _ = layer(x)
    layer.batch_first = True
    np.testing.assert_array_equal(layer(x.transpose(1, 0, 2))[0], out.transpose(1, 0, 2))
    layer.batch_first = np.bool_(False)
    assert layer.batch_first is False
    with pytest.raises(TypeError, match="batch_first must be True or False, got str"):
        layer.batch_first = "yes"
    layer.dropout = 0.5
    with pytest.raises(ValueError, match="dropout is 1.5; it must be a probability"):
        layer.dropout = 1.5
    np.testing.assert_array_equal(layer(x)[0], out)  # dropout acts only in training
    fastrnn.Dropout(0.1).p = 0.2
    fastrnn.Softmax(dim=-1).dim = 0


def test_stream_batch_size_is_fixed():
    """stream.batch_size = n once made the state buffers of n rows for a stream of
    another batch: a segfault reading the state."""
    s = fastrnn.GRU(4, 64).stream(batch_size=256)
    with pytest.raises(AttributeError, match="Stream.batch_size cannot be changed"):
        s.batch_size = 1
    assert s.state.shape == (1, 256, 64)


@pytest.mark.parametrize("make", [
    lambda: fastrnn.LSTM(3, 4, 2, proj_size=2, seed=0),
    lambda: fastrnn.GRU(3, 4, bidirectional=True, seed=0),
    lambda: fastrnn.LSTMCell(3, 4, seed=0),
    lambda: fastrnn.Linear(3, 4, seed=0),
    lambda: fastrnn.Sequential(fastrnn.Linear(3, 3, seed=1), fastrnn.GRU(3, 4, seed=2)),
], ids=["LSTM", "GRU", "LSTMCell", "Linear", "Sequential"])
def test_copies_and_pickles_of_used_modules(make):
    """copy, deepcopy and pickle work after a module's first call (they once failed
    on the packed engine it keeps: "no default __reduce__"), give the same results,
    and a shallow copy of a layer has its own weights: loading into it leaves the
    original as it was (they once shared the dict, and the original kept computing with its
    old packed weights while state_dict showed the new ones). A shallow copy of a
    cell or a Sequential shares its parts, as torch's does, and stays consistent."""
    import copy
    import pickle

    x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
    if isinstance(make(), fastrnn.LSTMCell):
        x = x[0]
    m = make()
    ref = m(x)
    first = lambda r: r[0] if isinstance(r, tuple) else r  # noqa: E731
    for twin in (copy.copy(m), copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        np.testing.assert_array_equal(first(twin(x)), first(ref))
    twin = copy.copy(m)
    twin.load_state_dict({k: np.zeros_like(a) for k, a in m.state_dict().items()})
    for a in (m, twin):  # each computes with the weights its state_dict shows
        fresh = make()
        fresh.load_state_dict(a.state_dict())
        np.testing.assert_array_equal(first(a(x)), first(fresh(x)))


def test_weight_views_cannot_be_made_writeable():
    """Linear/Embedding/LayerNorm/AttentionPool expose their weights as read-only views;
    one could be made writeable again (flags.writeable = True) and written, which
    changed state_dict() but not the packed weights the engine ran."""
    mods = [fastrnn.Linear(3, 4), fastrnn.Embedding(5, 3), fastrnn.LayerNorm(3)]
    for arr in [m.weight for m in mods] + [mods[0].bias, mods[2].bias]:
        assert not arr.flags.writeable
        with pytest.raises(ValueError, match="cannot set WRITEABLE flag"):
            arr.flags.writeable = True


@pytest.mark.parametrize("cls", ["RNN", "GRU"])
def test_layers_take_torchs_hx_keyword(cls):
    """torch names the initial state hx; h0 (SPEC) and hx= are the same argument,
    and giving both is a TypeError."""
    layer = getattr(fastrnn, cls)(3, 4, seed=0)
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    h = np.full((1, 2, 4), 0.5, np.float32)
    for a, b in zip(layer(x, hx=h), layer(x, h)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="give the initial state once: h0 or hx"):
        layer(x, h, hx=h)


@pytest.mark.parametrize("bad, exc, match", [
    (-0.1, ValueError, "dropout is -0.1; it must be a probability in"),
    (float("nan"), ValueError, "dropout is nan"),
    (True, TypeError, "dropout must be a number in"),
    ("0.1", TypeError, "dropout must be a number in"),
])
def test_dropout_is_accepted_as_torch_takes_it(bad, exc, match):
    """dropout ports from torch (an inert probability: it acts only in training)."""
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    plain, dropped = fastrnn.LSTM(3, 4, 2, seed=0), fastrnn.LSTM(3, 4, 2, dropout=0.5, seed=0)
    np.testing.assert_array_equal(plain(x)[0], dropped(x)[0])
    assert repr(dropped) == "LSTM(3, 4, num_layers=2, dropout=0.5)"
    with pytest.raises(exc, match=match):
        fastrnn.GRU(3, 4, dropout=bad)


def test_seq2seq_checks_batch_first_when_used():
    """A Seq2Seq's layers must be batch_first; that may be assigned on a layer after the
    model is built (torch allows it), which once made generate run the encoder on the
    wrong axis (wrong tokens, no error) and save_model write a file load_model refused.
    Calls and saves now check it again, and the model works once it is set back."""
    enc = fastrnn.Sequential(fastrnn.Embedding(10, 6, seed=0),
                             fastrnn.GRU(6, 8, batch_first=True, seed=1))
    dec = fastrnn.Sequential(fastrnn.Embedding(10, 6, seed=2),
                             fastrnn.GRU(6, 8, batch_first=True, seed=3),
                             fastrnn.Attention("additive", 8, 8, 8, seed=4),
                             fastrnn.Linear(16, 10, seed=5))
    s2s = fastrnn.Seq2Seq(enc, dec)
    src, tgt = np.array([[1, 2, 3, 4, 5], [5, 4, 3, 2, 1]]), np.array([[1, 2], [1, 3]])
    want = s2s.generate(src, max_len=4, bos=1, eos=2)
    for layer, what in ((s2s.enc_rnn, "encoder"), (s2s.dec_rnn, "decoder")):
        layer.batch_first = False
        match = f"the {what}'s GRU must be batch_first=True"
        with pytest.raises(ValueError, match=match):
            s2s.generate(src, max_len=4, bos=1, eos=2)
        with pytest.raises(ValueError, match=match):
            s2s(src, tgt)
        with pytest.raises(ValueError, match=match):
            fastrnn.save_model(s2s, "never-written.npz")
        layer.batch_first = True
    for a, b in zip(s2s.generate(src, max_len=4, bos=1, eos=2), want):
        np.testing.assert_array_equal(a, b)


def test_changeable_attributes_cannot_be_deleted():
    """batch_first and dropout may change but not go: deleting one left every later
    call (and repr, save) failing."""
    layer = fastrnn.LSTM(3, 4)
    for name in ("batch_first", "dropout"):
        with pytest.raises(AttributeError, match=f"LSTM.{name} cannot be deleted"):
            delattr(layer, name)
    layer(np.ones((2, 1, 3), np.float32))


def test_layers_pickled_before_dropout_existed_still_work(tmp_path):
    """A layer pickled by a version without dropout unpickles without that attribute;
    its repr and save failed on it."""
    import pickle

    old = fastrnn.GRU(3, 4, seed=0).__getstate__()
    del old["dropout"]
    layer = pickle.loads(pickle.dumps(fastrnn.GRU(3, 4, seed=0)))
    layer.__dict__.clear()
    layer.__dict__.update(old)
    assert repr(layer) == "GRU(3, 4)" and layer.dropout == 0.0
    layer.save(tmp_path / "g.npz")
    assert fastrnn.load(tmp_path / "g.npz").dropout == 0.0


def test_files_leave_out_the_default_dropout():
    """A layer's description carries dropout only when it is not 0, so whole-model
    files of models without dropout load in versions that do not know it (their
    rebuild passes the description to the constructor)."""
    from fastrnn.io._save import describe

    assert "dropout" not in describe(fastrnn.LSTM(3, 4))[1]
    assert describe(fastrnn.LSTM(3, 4, 2, dropout=0.3))[1]["dropout"] == 0.3
