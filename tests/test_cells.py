"""Cells (SPEC §2): RNNCell, LSTMCell, GRUCell with torch's call signature,
state_dict names and from_torch; errors per SPEC §4."""

from __future__ import annotations

import numpy as np
import pytest

import fastrnn
from _util import assert_close, need

# kind -> (fastrnn class name, torch class name, extra kwargs)
KINDS = {
    "rnn_tanh": ("RNNCell", {"nonlinearity": "tanh"}),
    "rnn_relu": ("RNNCell", {"nonlinearity": "relu"}),
    "lstm": ("LSTMCell", {}),
    "gru": ("GRUCell", {}),
}
GATES = {"RNNCell": 1, "LSTMCell": 4, "GRUCell": 3}


def _torch_cell(torch, kind, I, H, bias=True, dtype="float32", seed=0):
    name, kw = KINDS[kind]
    torch.manual_seed(seed)
    m = getattr(torch.nn, name)(I, H, bias=bias, **kw)
    if dtype == "float64":
        m = m.double()
    # Larger weights than the default init so relu/tanh saturation and sign
    # changes are all exercised.
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(2.0)
    return m


def _torch_run(torch, module, x, state, as_dtype=None):
    """Run a torch cell (optionally a float64 copy) on NumPy inputs; NumPy results."""
    if as_dtype == "float64":
        import copy

        module = copy.deepcopy(module).double()
    tdt = next(module.parameters()).dtype

    def t(a):
        return torch.from_numpy(np.asarray(a)).to(tdt)

    with torch.no_grad():
        if isinstance(module, torch.nn.LSTMCell):
            hc = None if state is None else (t(state[0]), t(state[1]))
            h, c = module(t(x), hc)
            return h.numpy(), c.numpy()
        h = module(t(x), None if state is None else t(state))
        return h.numpy()


def _inputs(kind, I, H, B, dtype, with_state, seed=1):
    rng = np.random.default_rng(seed)
    lead = () if B is None else (B,)
    x = rng.standard_normal(lead + (I,)).astype(dtype)
    if not with_state:
        return x, None
    h = rng.standard_normal(lead + (H,)).astype(dtype)
    if kind == "lstm":
        return x, (h, rng.standard_normal(lead + (H,)).astype(dtype))
    return x, h


def _fastrnn_cell(torch, module, kind, via):
    name, kw = KINDS[kind]
    cls = getattr(fastrnn, name)
    if via == "from_torch":
        return cls.from_torch(module)
    dtype = "float64" if next(module.parameters()).dtype == torch.float64 else "float32"
    cell = cls(module.input_size, module.hidden_size, bias=module.bias, dtype=dtype, seed=123, **kw)
    cell.load_state_dict(module.state_dict())
    return cell


# -- parity with torch ---------------------------------------------------------------


@pytest.mark.parametrize("via", ["from_torch", "load_state_dict"])
@pytest.mark.parametrize("with_state", [False, True], ids=["no_state", "state"])
@pytest.mark.parametrize("B", [None, 1, 4], ids=["unbatched", "B1", "B4"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_parity_with_torch(kind, dtype, bias, B, with_state, via):
    torch = need("torch")
    I, H = 5, 7
    module = _torch_cell(torch, kind, I, H, bias, dtype)
    cell = _fastrnn_cell(torch, module, kind, via)
    assert cell.dtype == np.dtype(dtype) and cell.bias == bias
    x, state = _inputs(kind, I, H, B, dtype, with_state)
    got = cell(x) if state is None else cell(x, state)
    # float32 is held to the float64 computation on the same float32 weights
    expected = _torch_run(torch, module, x, state, as_dtype="float64")
    if kind == "lstm":
        assert isinstance(got, tuple) and len(got) == 2
        for a, e, what in zip(got, expected, ("h'", "c'")):
            assert a.dtype == np.dtype(dtype) and a.flags.c_contiguous
            assert_close(a, e, dtype, max(I, H), what)
    else:
        assert isinstance(got, np.ndarray) and got.dtype == np.dtype(dtype)
        assert_close(got, expected, dtype, max(I, H), "h'")


@pytest.mark.parametrize("kind", list(KINDS))
def test_parity_wide_every_isa(kind, isa, n_threads):
    """Sizes past the tile widths and the one-thread cut-off, on every ISA path."""
    torch = need("torch")
    I, H, B = 33, 130, 17
    module = _torch_cell(torch, kind, I, H, seed=2)
    cell = getattr(fastrnn, KINDS[kind][0]).from_torch(module)
    x, state = _inputs(kind, I, H, B, "float32", True)
    got = cell(x, state)
    expected = _torch_run(torch, module, x, state, as_dtype="float64")
    for a, e in zip(got if kind == "lstm" else (got,), expected if kind == "lstm" else (expected,)):
        assert_close(a, e, "float32", max(I, H))


@pytest.mark.parametrize("kind", list(KINDS))
def test_cell_steps_equal_one_layer(kind):
    """A cell stepped over a sequence is the one-layer network with the same weights."""
    name, kw = KINDS[kind]
    cell = getattr(fastrnn, name)(4, 6, dtype="float64", seed=3, **kw)
    layer_cls = {"RNNCell": fastrnn.RNN, "LSTMCell": fastrnn.LSTM, "GRUCell": fastrnn.GRU}[name]
    layer = layer_cls(4, 6, dtype="float64", **kw)
    layer.load_state_dict({k + "_l0": a for k, a in cell.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((5, 3, 4))
    out, hn = layer(x)
    state = None
    for t in range(5):
        state = cell(x[t], state)
        h = state[0] if kind == "lstm" else state
        np.testing.assert_allclose(h, out[t], rtol=1e-12, atol=1e-12)
    if kind == "lstm":
        np.testing.assert_allclose(state[0], hn[0][0], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(state[1], hn[1][0], rtol=1e-12, atol=1e-12)
    else:
        np.testing.assert_allclose(state, hn[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", list(KINDS))
def test_nan_and_inf_like_torch(kind):
    torch = need("torch")
    module = _torch_cell(torch, kind, 5, 7, dtype="float64")
    cell = getattr(fastrnn, KINDS[kind][0]).from_torch(module)
    x, state = _inputs(kind, 5, 7, 3, "float64", True)
    x[0, 1] = np.nan
    x[1, 2] = np.inf
    x[2, 3] = -np.inf
    got = cell(x, state)
    expected = _torch_run(torch, module, x, state)
    for a, e in zip(got if kind == "lstm" else (got,), expected if kind == "lstm" else (expected,)):
        # relu passes inf through: compare the infinities, then the rest
        assert np.array_equal(np.isposinf(a), np.isposinf(e))
        assert np.array_equal(np.isneginf(a), np.isneginf(e))
        finite = ~np.isinf(e)
        assert_close(np.where(finite, a, 0.0), np.where(finite, e, 0.0), "float64", 7)
        assert np.isnan(a[0]).all()


# -- state_dict ------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", list(KINDS))
def test_state_dict_names_and_shapes_match_torch(kind, bias):
    torch = need("torch")
    module = _torch_cell(torch, kind, 5, 7, bias)
    cell = getattr(fastrnn, KINDS[kind][0])(5, 7, bias=bias, **KINDS[kind][1])
    sd = cell.state_dict()
    tsd = module.state_dict()
    assert list(sd) == list(tsd)
    for k in tsd:
        assert sd[k].shape == tuple(tsd[k].shape), k
        assert isinstance(sd[k], np.ndarray) and sd[k].dtype == np.float32
    # from_torch copies every weight exactly
    got = getattr(fastrnn, KINDS[kind][0]).from_torch(module).state_dict()
    for k in tsd:
        assert np.array_equal(got[k], tsd[k].numpy()), k


@pytest.mark.parametrize("kind", list(KINDS))
def test_state_dict_without_torch(kind):
    name, kw = KINDS[kind]
    G = GATES[name]
    cell = getattr(fastrnn, name)(3, 4, dtype="float64", **kw)
    sd = cell.state_dict()
    assert {k: a.shape for k, a in sd.items()} == {
        "weight_ih": (G * 4, 3), "weight_hh": (G * 4, 4), "bias_ih": (G * 4,), "bias_hh": (G * 4,)}
    assert all(a.dtype == np.float64 for a in sd.values())
    # copies: mutating them does not change the cell
    x = np.ones(3)
    before = cell(x)
    for a in sd.values():
        a[...] = 0.0
    after = cell(x)
    for a, b in zip(before if kind == "lstm" else (before,), after if kind == "lstm" else (after,)):
        assert np.array_equal(a, b)
    # seed makes the initial weights reproducible
    s1 = getattr(fastrnn, name)(3, 4, seed=5, **kw).state_dict()
    s2 = getattr(fastrnn, name)(3, 4, seed=5, **kw).state_dict()
    assert all(np.array_equal(s1[k], s2[k]) for k in s1)


def test_load_state_dict_round_trip_and_numpy():
    a = fastrnn.GRUCell(5, 7, seed=1)
    b = fastrnn.GRUCell(5, 7, seed=2)
    b.load_state_dict(a.state_dict())
    x = np.random.default_rng(0).standard_normal((2, 5))
    assert np.array_equal(a(x), b(x))


def test_load_state_dict_errors():
    cell = fastrnn.LSTMCell(5, 7, seed=0)
    keep = cell.state_dict()
    bad = cell.state_dict()
    bad["weight_ih"] = np.zeros((28, 6), np.float32)
    bad["weight_extra"] = np.zeros(3, np.float32)
    del bad["bias_hh"]
    with pytest.raises(ValueError) as info:
        cell.load_state_dict(bad)
    msg = str(info.value)
    assert "weight_ih: shape (28, 6)" in msg and "(28, 5)" in msg, msg
    assert "missing keys: bias_hh" in msg and "unexpected keys: weight_extra" in msg, msg
    assert "LSTMCell(5, 7)" in msg, msg
    # nothing was loaded (weight_hh, present and right, included)
    bad2 = cell.state_dict()
    bad2["weight_hh"] = np.ones((28, 7), np.float32)
    bad2["bias_ih"] = np.ones(29, np.float32)
    with pytest.raises(ValueError, match="bias_ih: shape"):
        cell.load_state_dict(bad2)
    for k, a in cell.state_dict().items():
        assert np.array_equal(a, keep[k]), f"failed load changed {k}"
    # strict=False ignores missing and unexpected keys but not shapes
    partial = {"weight_hh": np.ones((28, 7)), "other": np.zeros(1)}
    cell.load_state_dict(partial, strict=False)
    assert np.all(cell.state_dict()["weight_hh"] == 1)
    assert np.array_equal(cell.state_dict()["weight_ih"], keep["weight_ih"])
    with pytest.raises(ValueError, match="weight_hh: shape"):
        cell.load_state_dict({"weight_hh": np.ones((28, 8))}, strict=False)
    # non-numeric weights: TypeError naming the key as given
    strings = cell.state_dict()
    strings["weight_ih"] = np.full((28, 5), "a")
    with pytest.raises(TypeError, match=r"state_dict\['weight_ih'\] must hold real numbers"):
        cell.load_state_dict(strings)
    with pytest.raises(TypeError, match="state_dict must be a mapping"):
        cell.load_state_dict([("weight_ih", keep["weight_ih"])])


def test_layer_keys_are_unexpected_for_a_cell():
    """A layer's names (weight_ih_l0, ...) are not a cell's: refused like torch does
    (this used to load silently)."""
    cell = fastrnn.GRUCell(5, 7, seed=0)
    keep = cell.state_dict()
    layer_sd = fastrnn.GRU(5, 7, seed=1).state_dict()
    with pytest.raises(ValueError) as info:
        cell.load_state_dict(layer_sd)
    msg = str(info.value)
    assert "unexpected keys: weight_ih_l0" in msg and "missing keys: weight_ih" in msg, msg
    assert all(np.array_equal(a, keep[k]) for k, a in cell.state_dict().items())
    # both spellings at once: the cell's name is used, the other is unexpected
    mixed = dict(keep)
    mixed["weight_ih_l0"] = np.zeros((21, 5), np.float32)
    with pytest.raises(ValueError, match="unexpected keys: weight_ih_l0"):
        cell.load_state_dict(mixed)
    cell.load_state_dict(mixed, strict=False)
    assert np.array_equal(cell.state_dict()["weight_ih"], keep["weight_ih"])


def test_load_state_dict_converts_dtype():
    torch = need("torch")
    module = _torch_cell(torch, "gru", 5, 7, dtype="float64")
    cell = fastrnn.GRUCell(5, 7)  # float32 cell, float64 tensors
    cell.load_state_dict(module.state_dict())
    sd = cell.state_dict()
    assert all(a.dtype == np.float32 for a in sd.values())
    assert np.array_equal(sd["weight_hh"], module.weight_hh.detach().numpy().astype(np.float32))


# -- from_torch ---------------------------------------------------------------------------


def test_from_torch_hyperparameters():
    torch = need("torch")
    cell = fastrnn.RNNCell.from_torch(torch.nn.RNNCell(3, 4, bias=False, nonlinearity="relu"))
    hp = (cell.input_size, cell.hidden_size, cell.bias, cell.nonlinearity)
    assert hp == (3, 4, False, "relu")
    assert cell.dtype == np.float32
    assert fastrnn.LSTMCell.from_torch(torch.nn.LSTMCell(3, 4).double()).dtype == np.float64
    assert list(fastrnn.GRUCell.from_torch(torch.nn.GRUCell(3, 4, bias=False)).state_dict()) == [
        "weight_ih", "weight_hh"]


def test_from_torch_refuses_other_modules():
    torch = need("torch")
    with pytest.raises(TypeError, match="LSTMCell.from_torch expects a torch.nn.LSTMCell, got GRU"):
        fastrnn.LSTMCell.from_torch(torch.nn.GRUCell(3, 4))
    with pytest.raises(TypeError, match="GRUCell.from_torch expects.*got GRU"):
        fastrnn.GRUCell.from_torch(torch.nn.GRU(3, 4))
    with pytest.raises(TypeError, match="RNNCell.from_torch expects.*got dict"):
        fastrnn.RNNCell.from_torch({})


# -- calls: shapes, conversions, errors -------------------------------------------------


@pytest.mark.parametrize("kind", list(KINDS))
def test_call_shapes_and_conversions(kind):
    name, kw = KINDS[kind]
    cell = getattr(fastrnn, name)(5, 7, seed=0, **kw)
    x = np.random.default_rng(0).standard_normal((3, 5))
    x_copy = x.copy()
    ref = cell(x.astype(np.float32))
    for variant in (x, x.tolist(), np.asfortranarray(x), x.T.copy().T):
        got = cell(variant)
        for a, r in zip(got if kind == "lstm" else (got,), ref if kind == "lstm" else (ref,)):
            assert a.shape == (3, 7) and a.dtype == np.float32 and a.flags.c_contiguous
            np.testing.assert_array_equal(a, r)
    half = cell(x.astype(np.float16))
    ref_half = cell(x.astype(np.float16).astype(np.float32))
    if kind != "lstm":
        half, ref_half = (half,), (ref_half,)
    for a, r in zip(half, ref_half):
        np.testing.assert_array_equal(a, r)
    assert np.array_equal(x, x_copy), "the cell modified its input"
    one = cell(x[0])
    assert (one[0] if kind == "lstm" else one).shape == (7,)
    # zero-size batch
    empty = cell(np.zeros((0, 5)))
    for a in empty if kind == "lstm" else (empty,):
        assert a.shape == (0, 7) and a.dtype == np.float32
    # the state given is not modified
    h = np.ones((3, 7), np.float32)
    state = (h, h.copy()) if kind == "lstm" else h
    cell(x, state)
    assert np.all(h == 1)


@pytest.mark.parametrize("kind", list(KINDS))
def test_bad_x(kind):
    name, kw = KINDS[kind]
    cell = getattr(fastrnn, name)(5, 7, **kw)
    cases = [
        (np.zeros((3, 4)), ValueError, r"x has 4 features.*input_size is 5"),
        (np.zeros(4), ValueError, r"x has 4 features"),
        (np.zeros((2, 3, 5)), ValueError, r"x must be 2-D \(B, input_size\) or 1-D"),
        (np.float32(1.0), ValueError, "x must be 2-D"),
        (np.full((3, 5), "a"), TypeError, "x must hold real numbers.*string"),
        ("hello", TypeError, "x must hold real numbers"),
        (np.zeros((3, 5), complex), TypeError, "x must hold real numbers.*complex"),
        (np.zeros((3, 5), bool), TypeError, "x must hold real numbers.*bool"),
        (np.zeros((3, 5), object), TypeError, "x must hold real numbers.*object"),
        (None, TypeError, "x must be a numeric array"),
        (object(), TypeError, "x must be a numeric array"),
    ]
    for bad, exc, match in cases:
        with pytest.raises(exc, match=match):
            cell(bad)


def _warm(cell, warm):
    """Cells try the engine first once a call made its stream (cells.py); a refused
    call must raise the same error either way. Float32 arrays below, so that the
    first try sees them."""
    if warm:
        cell(np.zeros((3, 5), np.float32))
        cell(np.zeros(5, np.float32))


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
@pytest.mark.parametrize("kind", ["rnn_tanh", "gru"])
def test_bad_h_rnn_gru(kind, warm):
    name, kw = KINDS[kind]
    cell = getattr(fastrnn, name)(5, 7, **kw)
    _warm(cell, warm)
    x = np.zeros((3, 5), np.float32)
    with pytest.raises(ValueError, match=r"hx has shape \(2, 7\); expected \(3, 7\)"):
        cell(x, np.zeros((2, 7), np.float32))
    with pytest.raises(ValueError, match=r"hx has shape \(3, 8\); expected \(3, 7\)"):
        cell(x, np.zeros((3, 8), np.float32))
    with pytest.raises(ValueError, match=r"hx has shape \(1, 7\); expected \(7,\)"):
        cell(x[0], np.zeros((1, 7), np.float32))  # unbatched x takes an unbatched h
    with pytest.raises(ValueError, match=r"hx has shape \(7,\); expected \(3, 7\)"):
        cell(x, np.zeros(7, np.float32))
    with pytest.raises(ValueError, match=r"hx has shape \(1, 3, 7\)"):
        cell(x, np.zeros((1, 3, 7), np.float32))  # a layer's h0 is not a cell's h
    with pytest.raises(TypeError, match=f"hx of an? {name} is one array.*tuple"):
        cell(x, (np.zeros((3, 7)),))
    with pytest.raises(TypeError, match="hx must hold real numbers.*string"):
        cell(x, np.full((3, 7), "a"))
    with pytest.raises(TypeError, match="hx must hold real numbers.*complex"):
        cell(x, np.zeros((3, 7), complex))


@pytest.mark.parametrize("kind", ["rnn_tanh", "gru", "lstm"])
def test_cells_take_torchs_hx_keyword(kind):
    """torch's cells name the state hx (all three): cell(x, hx=...) is the positional call."""
    name, kw = KINDS[kind]
    cell = getattr(fastrnn, name)(5, 7, seed=1, **kw)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5)).astype(np.float32)
    h = rng.standard_normal((3, 7)).astype(np.float32)
    hx = (h, h + 1) if kind == "lstm" else h
    by_keyword, positional = cell(x, hx=hx), cell(x, hx)
    if kind != "lstm":
        by_keyword, positional = (by_keyword,), (positional,)
    for a, b in zip(by_keyword, positional, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="unexpected keyword argument 'h'"):
        cell(x, h=h)


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
def test_bad_hx_lstm(warm):
    cell = fastrnn.LSTMCell(5, 7)
    _warm(cell, warm)
    x = np.zeros((3, 5), np.float32)
    h = np.zeros((3, 7), np.float32)
    with pytest.raises(TypeError, match=r"hx of an LSTMCell must be a tuple \(h, c\).*ndarray"):
        cell(x, h)
    with pytest.raises(TypeError, match=r"hx of an LSTMCell must be a tuple \(h, c\)"):
        cell(x, (h, h, h))
    with pytest.raises(TypeError, match=r"hx of an LSTMCell must be a tuple \(h, c\)"):
        cell(x, (h,))
    with pytest.raises(TypeError, match="hx of an LSTMCell must be .h, c. with both"):
        cell(x, (h, None))
    with pytest.raises(TypeError, match="hx of an LSTMCell must be .h, c. with both"):
        cell(x, (None, h))
    with pytest.raises(ValueError, match=r"h has shape \(3, 6\); expected \(3, 7\)"):
        cell(x, (np.zeros((3, 6), np.float32), h))
    with pytest.raises(ValueError, match=r"c has shape \(2, 7\); expected \(3, 7\)"):
        cell(x, (h, np.zeros((2, 7), np.float32)))
    with pytest.raises(ValueError, match=r"c has shape \(7,\); expected \(3, 7\)"):
        cell(x, (h, np.zeros(7, np.float32)))
    with pytest.raises(TypeError, match="c must hold real numbers"):
        cell(x, (h, np.full((3, 7), "a")))
    got_h, got_c = cell(x, [h, h])  # a list (h, c) is accepted
    assert got_h.shape == got_c.shape == (3, 7)


@pytest.mark.parametrize("make, exc, match", [
    (lambda: fastrnn.RNNCell(5, 7, nonlinearity="sigmoid"), ValueError, "nonlinearity"),
    (lambda: fastrnn.LSTMCell(5, 0), ValueError, "hidden_size is 0"),
    (lambda: fastrnn.GRUCell(0, 7), ValueError, "input_size is 0"),
    (lambda: fastrnn.GRUCell(5.0, 7), TypeError, "input_size must be an integer"),
    (lambda: fastrnn.LSTMCell(5, 7, dtype="float16"), ValueError, "dtype"),
    (lambda: fastrnn.GRUCell(5, 7, bias="yes"), TypeError, "bias"),
])
def test_bad_construction(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_repr():
    assert repr(fastrnn.RNNCell(3, 4, bias=False, nonlinearity="relu")) == \
        "RNNCell(3, 4, bias=False, nonlinearity='relu')"
    assert repr(fastrnn.LSTMCell(3, 4, dtype="float64")) == "LSTMCell(3, 4, dtype='float64')"
    assert repr(fastrnn.GRUCell(3, 4)) == "GRUCell(3, 4)"


def _one_step_reference(cell, kind):
    """A one-layer network with the cell's weights, and its call on one step."""
    name, kw = KINDS[kind]
    layer_cls = {"RNNCell": fastrnn.RNN, "LSTMCell": fastrnn.LSTM, "GRUCell": fastrnn.GRU}[name]
    layer = layer_cls(cell.input_size, cell.hidden_size, dtype=cell.dtype, **kw)
    layer.load_state_dict({k + "_l0": a for k, a in cell.state_dict().items()})

    def run(x, state):
        lead = x.shape[:-1]
        x3 = np.asarray(x, cell.dtype).reshape(1, -1, cell.input_size)
        if state is None:
            hx = None
        elif kind == "lstm":
            hx = tuple(np.asarray(a, cell.dtype).reshape(1, -1, cell.hidden_size) for a in state)
        else:
            hx = np.asarray(state, cell.dtype).reshape(1, -1, cell.hidden_size)
        _, hn = layer(x3, hx)
        if kind == "lstm":
            return tuple(a[0].reshape(lead + (-1,)) for a in hn)
        return hn[0].reshape(lead + (-1,))
    return run


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_calls_equal_the_layer_bitwise(kind, dtype, isa, n_threads):
    """A call whose arrays are what the engine reads is one C call on an engine stream
    the cell keeps per batch size; any other is converted first. Both must equal the
    layer's one-step call bitwise: batched and unbatched, with and without a state,
    over more batch sizes than the cell keeps streams for, converted inputs, and
    new weights loaded between calls."""
    name, kw = KINDS[kind]
    cell = getattr(fastrnn, name)(5, 19, dtype=dtype, seed=1, **kw)
    rng = np.random.default_rng(0)

    def check(ref, B, with_state, convert=False):
        x, state = _inputs(kind, 5, 19, B, dtype, with_state, seed=int(rng.integers(1 << 30)))
        want = ref(x, state)
        if convert:  # other dtypes and layouts: converted, then the same engine call
            x = np.asfortranarray(x.astype(np.float16 if dtype == "float32" else np.float32))
            want = ref(x, state)
        for _ in range(2):  # the first call makes the batch size's stream
            got = cell(x, state)
            for a, b in zip(got if kind == "lstm" else (got,), want if kind == "lstm" else (want,)):
                assert a.dtype == np.dtype(dtype) and a.shape == b.shape
                np.testing.assert_array_equal(a, b)

    ref = _one_step_reference(cell, kind)
    for B in (1, 3, None, 2, 5, 7, 3, 1, 64):
        check(ref, B, True)
        check(ref, B, False)
    check(ref, 4, True, convert=True)
    other = getattr(fastrnn, name)(5, 19, dtype=dtype, seed=2, **kw)
    cell.load_state_dict(other.state_dict())
    ref = _one_step_reference(cell, kind)
    for B in (1, 3, None):
        check(ref, B, True)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_one_cell_called_from_four_threads(kind):
    """Threads share a cell: a call that finds its batch size's engine stream busy
    runs another way; every result must be right."""
    import threading

    name, kw = KINDS[kind]
    cell = getattr(fastrnn, name)(16, 48, seed=4, **kw)
    ref = _one_step_reference(cell, kind)
    inputs = [_inputs(kind, 16, 48, 2, "float32", True, seed=s) for s in range(8)]
    wants = [ref(x, st) for x, st in inputs]
    bad = []

    def work(tid):
        for i in range(300):
            k = (tid + i) % len(inputs)
            got = cell(*inputs[k])
            same = all(np.array_equal(a, b) for a, b in
                       zip(got if kind == "lstm" else (got,),
                           wants[k] if kind == "lstm" else (wants[k],)))
            if not same:
                bad.append((tid, i))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad


def test_cells_copy_and_pickle_after_calls():
    """The engine streams a cell keeps are not copied: a copy makes its own."""
    import copy
    import pickle

    cell = fastrnn.LSTMCell(3, 4, seed=0)
    x = np.ones((2, 3), np.float32)
    want = cell(x)
    for twin in (copy.copy(cell), copy.deepcopy(cell), pickle.loads(pickle.dumps(cell))):
        for a, b in zip(twin(x), want):
            np.testing.assert_array_equal(a, b)
        assert twin._last is not cell._last
