"""SPEC §4: bad input gets a clear error, never a crash or a wrong answer.

ValueError for shapes, sizes, lengths out of range, bad hyperparameter values and
bad state_dicts; TypeError for non-numeric input (strings, objects, complex, bool),
wrongly typed hyperparameters (as torch.nn does: ``LSTM(3.0, 4)`` is a TypeError,
``LSTM(0, 4)`` a ValueError) and a wrong state structure. Every test checks the
exception type and that the message names the offending argument and what came.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import fastrnn

LAYERS = [fastrnn.RNN, fastrnn.LSTM, fastrnn.GRU]
CELLS = [fastrnn.RNNCell, fastrnn.LSTMCell, fastrnn.GRUCell]
T, B, I, H = 5, 2, 3, 4


def ids(classes):
    return [c.__name__ for c in classes]


def make(cls, **kw):
    return cls(I, H, 2, bidirectional=True, seed=0, **kw)


def states(layer, batch=B):
    """Well-formed hx for the layer."""
    n = layer.num_layers * layer.num_directions
    h = np.zeros((n, batch, layer.proj_size or layer.hidden_size), layer.dtype)
    if layer.mode == "LSTM":
        return h, np.zeros((n, batch, layer.hidden_size), layer.dtype)
    return h


X = np.zeros((T, B, I), np.float32)


# --------------------------------------------------------------------------------------
# Hyperparameters
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", LAYERS + CELLS, ids=ids(LAYERS + CELLS))
@pytest.mark.parametrize("arg", ["input_size", "hidden_size"])
@pytest.mark.parametrize("value,exc,match", [
    (0, ValueError, "is 0; it must be >= 1"),
    (-3, ValueError, "is -3; it must be >= 1"),
    (2.0, TypeError, "must be an integer, got float 2.0"),
    (2.5, TypeError, "must be an integer, got float 2.5"),
    (True, TypeError, "must be an integer, got bool True"),
    ("4", TypeError, "must be an integer, got str '4'"),
    (None, TypeError, "must be an integer"),
    (np.float32(4), TypeError, "must be an integer"),
    ([4], TypeError, "must be an integer, got list"),
])
def test_bad_sizes(cls, arg, value, exc, match):
    sizes = {"input_size": I, "hidden_size": H, arg: value}
    with pytest.raises(exc, match=re.escape(f"{arg} {match}")):
        cls(sizes["input_size"], sizes["hidden_size"])


def test_numpy_integer_sizes_are_fine():
    layer = fastrnn.LSTM(np.int64(I), np.int32(H), np.uint8(2), proj_size=np.int16(2))
    assert (layer.input_size, layer.hidden_size, layer.num_layers, layer.proj_size) == (I, H, 2, 2)
    assert all(type(v) is int for v in (layer.input_size, layer.hidden_size, layer.num_layers))


@pytest.mark.parametrize("cls", LAYERS, ids=ids(LAYERS))
@pytest.mark.parametrize("value,exc,match", [
    (0, ValueError, "num_layers is 0; it must be >= 1"),
    (-1, ValueError, "num_layers is -1; it must be >= 1"),
    (1.5, TypeError, "num_layers must be an integer, got float 1.5"),
    (False, TypeError, "num_layers must be an integer, got bool"),
    ("2", TypeError, "num_layers must be an integer, got str"),
])
def test_bad_num_layers(cls, value, exc, match):
    with pytest.raises(exc, match=re.escape(match)):
        cls(I, H, value)


@pytest.mark.parametrize("value,exc,match", [
    (H, ValueError, rf"proj_size is {H}; it must be smaller than hidden_size \({H}\)"),
    (H + 3, ValueError, rf"proj_size is {H + 3}; it must be smaller than hidden_size"),
    (-1, ValueError, r"proj_size is -1; it must be >= 0"),
    (1.0, TypeError, r"proj_size must be an integer, got float"),
    (True, TypeError, r"proj_size must be an integer, got bool"),
])
def test_bad_proj_size(value, exc, match):
    with pytest.raises(exc, match=match):
        fastrnn.LSTM(I, H, proj_size=value)


@pytest.mark.parametrize("value", ["sigmoid", "Tanh", "RELU", "", None, 1, ("tanh",)])
def test_bad_nonlinearity(value):
    for make_it in (lambda: fastrnn.RNN(I, H, nonlinearity=value),
                    lambda: fastrnn.RNNCell(I, H, nonlinearity=value)):
        with pytest.raises(ValueError, match=r"nonlinearity is .*; allowed: 'tanh', 'relu'"):
            make_it()


@pytest.mark.parametrize("cls", LAYERS + CELLS, ids=ids(LAYERS + CELLS))
@pytest.mark.parametrize("value", ["float16", "int32", "complex64", "bogus", "", None, 5,
                                   np.float16, np.int64, object])
def test_bad_dtype(cls, value):
    with pytest.raises(ValueError, match=r"dtype is .*; allowed: 'float32', 'float64'"):
        cls(I, H, dtype=value)


@pytest.mark.parametrize("value,expected", [
    ("float32", np.float32), ("float64", np.float64), (np.float32, np.float32),
    (np.dtype("f8"), np.float64), ("double", np.float64), ("f4", np.float32),
])
def test_dtype_spellings(value, expected):
    assert fastrnn.GRU(I, H, dtype=value).dtype == np.dtype(expected)


@pytest.mark.parametrize("cls,arg", [
    (fastrnn.RNN, "bias"), (fastrnn.RNN, "batch_first"), (fastrnn.RNN, "bidirectional"),
    (fastrnn.LSTM, "peephole"), (fastrnn.GRU, "linear_before_reset"),
    (fastrnn.RNNCell, "bias"), (fastrnn.LSTMCell, "bias"), (fastrnn.GRUCell, "bias"),
])
@pytest.mark.parametrize("value", ["yes", 2, None, 1.0, [True]])
def test_bad_flags(cls, arg, value):
    with pytest.raises(TypeError, match=rf"{arg} must be True or False, got"):
        cls(I, H, **{arg: value})


@pytest.mark.parametrize("value,exc", [(-1, ValueError), (1.5, TypeError), ("x", TypeError)])
def test_bad_seed(value, exc):
    with pytest.raises(exc, match="seed"):
        fastrnn.LSTM(I, H, seed=value)


def test_unknown_hyperparameters_are_refused_by_name():
    with pytest.raises(TypeError, match="proj_size"):
        fastrnn.GRU(I, H, proj_size=2)
    with pytest.raises(TypeError, match="nonlinearity"):
        fastrnn.LSTM(I, H, nonlinearity="relu")
    with pytest.raises(TypeError, match="linear_before_reset"):
        fastrnn.RNN(I, H, linear_before_reset=False)


# --------------------------------------------------------------------------------------
# Input x
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("cls", LAYERS, ids=ids(LAYERS))
def test_bad_input_shapes(cls, batch_first):
    layer = make(cls, batch_first=batch_first)
    layout = r"\(B, T, input_size\)" if batch_first else r"\(T, B, input_size\)"
    for x in (np.zeros(I), np.zeros((T, B, I, 1)), np.float32(1.0), np.zeros((1, T, B, I))):
        with pytest.raises(ValueError, match=rf"x must be 3-D {layout} or 2-D.*got {x.ndim}-D"):
            layer(x)
    for shape in ((T, B, I + 1), (T, B, 1), (T, I - 1), (B, T, 0)):
        with pytest.raises(ValueError, match=rf"x has {shape[-1]} features .*input_size is {I}"):
            layer(np.zeros(shape))
    empty_t = (B, 0, I) if batch_first else (0, B, I)
    for shape in (empty_t, (0, I)):
        with pytest.raises(ValueError, match=r"x has 0 time steps .*T must be >= 1"):
            layer(np.zeros(shape))


NON_NUMERIC = [
    ("string", "abc", "string"),
    ("string array", np.full((T, B, I), "1"), "string"),
    ("list of strings", [[["1", "2", "3"]] * B] * T, "string"),
    ("bytes array", np.full((T, B, I), b"1"), "bytes"),
    ("object array", np.full((T, B, I), 1.0, dtype=object), "object"),
    ("list of objects", [[[object()] * I] * B] * T, "object"),
    ("complex", np.zeros((T, B, I), complex), "complex"),
    ("bool", np.zeros((T, B, I), bool), "bool"),
    ("list of bools", [[[True] * I] * B] * T, "bool"),
    ("datetime", np.zeros((T, B, I), "M8[s]"), "datetime"),
    ("None", None, "None"),
    ("dict", {"x": 1}, "dict"),
    ("set", {1.0, 2.0}, "set"),
    ("ragged list", [[[1.0, 2.0, 3.0], [1.0]]], "converting it failed"),
]


@pytest.mark.parametrize("name,x,what", NON_NUMERIC, ids=[n[0] for n in NON_NUMERIC])
@pytest.mark.parametrize("cls", LAYERS, ids=ids(LAYERS))
def test_non_numeric_input_is_a_type_error(cls, name, x, what):
    layer = make(cls)
    with pytest.raises(TypeError, match=rf"^x must .*{what}"):
        layer(x)


@pytest.mark.parametrize("cls", LAYERS, ids=ids(LAYERS))
def test_an_integer_beyond_64_bits_is_named(cls):
    """A Python int numpy cannot convert (it keeps the list as objects) is a
    ValueError naming where it is, not a complaint about object values."""
    layer = make(cls)
    x = np.zeros((T, B, I)).tolist()
    x[1][0][2] = 2**70
    with pytest.raises(ValueError, match=r"^x\[1, 0, 2\] is 1180591620717411303424, an integer "
                                         "too large to convert; integers must fit in 64 bits"):
        layer(x)
    x[1][0][2] = -(2**64)
    x[0][0][0] = 0.5
    with pytest.raises(ValueError, match=r"^x\[1, 0, 2\] is -18446744073709551616, an integer"):
        layer(x)
    with pytest.raises(ValueError, match=r"^x\[1\] is 1180591620717411303424, an integer"):
        fastrnn.GRUCell(2, H)([1, 2**70])
    x[0][0][0] = True  # not only numbers: refused as objects, as before
    with pytest.raises(TypeError, match="object values"):
        layer(x)


@pytest.mark.parametrize("name,x,what", NON_NUMERIC[:9], ids=[n[0] for n in NON_NUMERIC[:9]])
@pytest.mark.parametrize("cls", CELLS, ids=ids(CELLS))
def test_non_numeric_cell_input_is_a_type_error(cls, name, x, what):
    cell = cls(I, H)
    x = np.asarray(x)[0] if not isinstance(x, str) else x
    with pytest.raises(TypeError, match=rf"^x must .*{what}"):
        cell(x)


# --------------------------------------------------------------------------------------
# Initial states
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [fastrnn.RNN, fastrnn.GRU], ids=["RNN", "GRU"])
def test_bad_h0(cls):
    layer = make(cls)
    n = 4  # 2 layers x 2 directions
    for shape in ((n, B + 1, H), (n - 1, B, H), (n, B, H + 1), (n, H), (n, B, H, 1), (B, H)):
        with pytest.raises(ValueError, match=re.escape(f"h0 has shape {shape}; expected "
                                                       f"{(n, B, H)}")):
            layer(X, np.zeros(shape))
    # unbatched x: the state drops the batch axis
    with pytest.raises(ValueError, match=re.escape(f"h0 has shape {(n, 1, H)}; expected "
                                                   f"{(n, H)}")):
        layer(X[:, 0], np.zeros((n, 1, H)))
    # wrong structure: a tuple (as for an LSTM) is a TypeError naming h0
    with pytest.raises(TypeError, match=r"h0 of an? (RNN|GRU) is one array.*got a tuple"):
        layer(X, (np.zeros((n, B, H)), np.zeros((n, B, H))))
    for bad, what in ((np.full((n, B, H), "a"), "string"), (np.zeros((n, B, H), bool), "bool"),
                      (np.zeros((n, B, H), complex), "complex"), ("abc", "string")):
        with pytest.raises(TypeError, match=rf"h0 must hold real numbers.*{what}"):
            layer(X, bad)


@pytest.mark.parametrize("proj_size", [0, 2])
def test_bad_lstm_states(proj_size):
    layer = make(fastrnn.LSTM, proj_size=proj_size)
    n, HO = 4, proj_size or H
    h, c = np.zeros((n, B, HO)), np.zeros((n, B, H))
    # wrong structure: TypeError naming hx
    for hx, got in ((h, "ndarray"), ((h,), "tuple of length 1"), ((h, c, c), "tuple of length 3"),
                    ({"h": h}, "dict"), ("hc", "str")):
        with pytest.raises(TypeError, match=rf"hx of an LSTM must be a tuple \(h0, c0\).*{got}"):
            layer(X, hx)
    for hx in ((h, None), (None, c)):
        with pytest.raises(TypeError, match=r"hx of an LSTM must be \(h0, c0\) with both"):
            layer(X, hx)
    # shapes: h0 has proj_size units, c0 hidden_size
    with pytest.raises(ValueError, match=re.escape(f"h0 has shape {(n, B, H + 1)}; "
                                                   f"expected {(n, B, HO)}")):
        layer(X, (np.zeros((n, B, H + 1)), c))
    with pytest.raises(ValueError, match=re.escape(f"c0 has shape {(n - 2, B, H)}; "
                                                   f"expected {(n, B, H)}")):
        layer(X, (h, np.zeros((n - 2, B, H))))
    if proj_size:  # c0 given proj_size units instead of hidden_size
        with pytest.raises(ValueError, match=re.escape(f"c0 has shape {(n, B, HO)}; "
                                                       f"expected {(n, B, H)}")):
            layer(X, (h, np.zeros((n, B, HO))))
    with pytest.raises(TypeError, match="c0 must hold real numbers.*complex"):
        layer(X, (h, c.astype(complex)))
    with pytest.raises(TypeError, match="h0 must hold real numbers.*string"):
        layer(X, (np.full(h.shape, "x"), c))
    layer(X, [h, c])  # a list (h0, c0) is fine


def test_cell_state_structure():
    x = np.zeros((B, I))
    h = np.zeros((B, H))
    with pytest.raises(TypeError, match="hx of an RNNCell is one array"):
        fastrnn.RNNCell(I, H)(x, (h, h))
    with pytest.raises(TypeError, match="hx of a GRUCell is one array"):
        fastrnn.GRUCell(I, H)(x, (h, h))
    with pytest.raises(TypeError, match=r"hx of an LSTMCell must be a tuple \(h, c\)"):
        fastrnn.LSTMCell(I, H)(x, h)
    with pytest.raises(ValueError, match=r"hx has shape \(2, 5\); expected \(2, 4\)"):
        fastrnn.GRUCell(I, H)(x, np.zeros((B, H + 1)))


# --------------------------------------------------------------------------------------
# lengths
# --------------------------------------------------------------------------------------

BAD_LENGTHS = [
    ("zero", [0, T], ValueError, rf"lengths\[0\] is 0; each length must be in \[1, T={T}\]"),
    ("negative", [2, -1], ValueError, r"lengths\[1\] is -1; each length must be in \[1,"),
    ("T+1", [T, T + 1], ValueError,
     rf"lengths\[1\] is {T + 1}; each length must be in \[1, T={T}\]"),
    ("huge", np.array([2**40, 1]), ValueError, rf"lengths\[0\] is {2**40}; .*\[1, T={T}\]"),
    ("huge float", [1e30, 1.0], ValueError, r"lengths\[0\] is 1000000000000000019884624838656;"),
    ("huge uint64", np.array([2**63, 1], np.uint64), ValueError,
     r"lengths\[0\] is 9223372036854775808"),
    ("too many", [1, 2, 3], ValueError, rf"lengths has shape \(3,\); expected \({B},\)"),
    ("too few", [1], ValueError, rf"lengths has shape \(1,\); expected \({B},\)"),
    ("empty", [], ValueError, rf"lengths has shape \(0,\); expected \({B},\)"),
    ("scalar", 3, ValueError, rf"lengths has shape \(\); expected \({B},\)"),
    ("2-D", [[1, 2]], ValueError, rf"lengths has shape \(1, 2\); expected \({B},\)"),
    ("2-D column", np.array([[1], [2]]), ValueError, r"lengths has shape \(2, 1\)"),
    ("fraction", [1.5, 2], ValueError, r"lengths\[0\] is 1.5; each length must be a whole number"),
    ("nan", [2, np.nan], ValueError, r"lengths\[1\] is nan; each length must be a whole number"),
    ("inf", [np.inf, 2], ValueError, r"lengths\[0\] is inf;"),
    ("strings", ["1", "2"], TypeError, r"lengths must hold integers, got dtype <U1"),
    ("bools", [True, True], TypeError, r"lengths must hold integers, got dtype bool"),
    ("a bool among ints", [True, 2], TypeError, r"lengths must hold integers, got a bool"),
    ("a numpy bool among ints", (2, np.True_), TypeError, r"lengths must hold integers, got a bool"),
    ("complex", [1 + 0j, 2], TypeError, r"lengths must hold integers, got dtype complex"),
    ("objects", [object(), 1], TypeError, r"lengths must hold integers, got dtype object"),
    ("ragged", [[1], [1, 2]], TypeError, r"lengths must be a 1-D array of integers"),
]


@pytest.mark.parametrize("name,lengths,exc,match", BAD_LENGTHS, ids=[b[0] for b in BAD_LENGTHS])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("cls", LAYERS, ids=ids(LAYERS))
def test_bad_lengths(cls, batch_first, name, lengths, exc, match):
    layer = make(cls, batch_first=batch_first)
    x = X.transpose(1, 0, 2) if batch_first else X
    with pytest.raises(exc, match=match):
        layer(x, lengths=lengths)


def test_good_lengths_spellings():
    layer = make(fastrnn.GRU)
    want = layer(X, lengths=[3, 5])
    for lengths in ([3.0, 5.0], np.array([3, 5], np.uint8), (3, 5), np.array([3, 5], np.int16)):
        got = layer(X, lengths=lengths)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    # unbatched: a scalar or one-element list
    for lengths in (3, [3], np.int64(3)):
        layer(X[:, 0], lengths=lengths)
    with pytest.raises(ValueError, match=r"lengths has shape \(2,\); expected \(1,\)"):
        layer(X[:, 0], lengths=[3, 3])
    with pytest.raises(ValueError, match=rf"lengths\[0\] is {T + 1}"):
        layer(X[:, 0], lengths=T + 1)


def test_a_refused_call_changes_nothing():
    layer = make(fastrnn.LSTM)
    before = layer(X, lengths=[2, 5])
    with pytest.raises(ValueError):
        layer(X, lengths=[0, 5])
    after = layer(X, lengths=[2, 5])
    for a, b in zip((before[0], *before[1]), (after[0], *after[1])):
        assert np.array_equal(a, b)


# --------------------------------------------------------------------------------------
# load_state_dict
# --------------------------------------------------------------------------------------


def outputs(layer, x=None):
    x = np.random.default_rng(0).standard_normal((T, B, layer.input_size)) if x is None else x
    out, state = layer(x)
    return [out] + (list(state) if isinstance(state, tuple) else [state])


def assert_unchanged(layer, before_sd, before_out):
    after_sd = layer.state_dict()
    assert list(after_sd) == list(before_sd)
    for k in before_sd:
        assert np.array_equal(after_sd[k], before_sd[k]), f"{k} changed"
    for a, b in zip(outputs(layer), before_out):
        assert np.array_equal(a, b), "outputs changed after a failed load"


def _other_weights(layer):
    return {k: v + 0.25 for k, v in layer.state_dict().items()}


@pytest.mark.parametrize("cls", LAYERS, ids=ids(LAYERS))
def test_state_dict_missing_and_unexpected_all_listed(cls):
    layer = make(cls)
    sd0, out0 = layer.state_dict(), outputs(layer)
    bad = _other_weights(layer)
    del bad["weight_ih_l0"], bad["bias_hh_l1_reverse"]
    bad["weight_ih_l2"] = np.zeros((3, 3))
    bad["foo.bar"] = np.zeros(1)
    with pytest.raises(ValueError, match="load_state_dict") as info:
        layer.load_state_dict(bad)
    msg = str(info.value)
    assert re.search(r"missing keys: weight_ih_l0, bias_hh_l1_reverse", msg), msg
    assert re.search(r"unexpected keys: weight_ih_l2, foo\.bar", msg), msg
    assert "nothing was loaded" in msg
    assert_unchanged(layer, sd0, out0)


@pytest.mark.parametrize("cls", LAYERS, ids=ids(LAYERS))
def test_state_dict_shapes_all_listed_and_not_ignored_by_strict_false(cls):
    layer = make(cls)
    sd0, out0 = layer.state_dict(), outputs(layer)
    bad = _other_weights(layer)
    G = bad["weight_hh_l0"].shape[0]
    bad["weight_hh_l0"] = np.zeros((G, H + 1))
    bad["weight_ih_l1_reverse"] = np.zeros((G, 2 * H, 1))
    bad["bias_ih_l0"] = np.zeros((G + 1,))
    del bad["weight_ih_l0"]
    bad["extra"] = np.zeros(2)
    for strict in (True, False):
        with pytest.raises(ValueError, match="load_state_dict") as info:
            layer.load_state_dict(bad, strict=strict)
        msg = str(info.value)
        assert f"weight_hh_l0: shape {(G, H + 1)} in the state_dict, {(G, H)} in the layer" in msg
        assert f"weight_ih_l1_reverse: shape {(G, 2 * H, 1)}" in msg
        assert f"bias_ih_l0: shape {(G + 1,)}" in msg
        assert ("missing keys: weight_ih_l0" in msg) == strict
        assert ("unexpected keys: extra" in msg) == strict
        assert_unchanged(layer, sd0, out0)


@pytest.mark.parametrize("cls", LAYERS, ids=ids(LAYERS))
def test_state_dict_strict_false_ignores_keys(cls):
    layer = make(cls)
    sd0 = layer.state_dict()
    new = _other_weights(layer)
    del new["weight_hh_l1"]
    new["unused"] = np.zeros(3)
    layer.load_state_dict(new, strict=False)
    got = layer.state_dict()
    assert np.array_equal(got["weight_hh_l1"], sd0["weight_hh_l1"])  # missing: kept
    assert np.array_equal(got["weight_ih_l0"], new["weight_ih_l0"].astype(np.float32))
    assert "unused" not in got


@pytest.mark.parametrize("cls", LAYERS, ids=ids(LAYERS))
def test_state_dict_bad_values_leave_the_layer_unchanged(cls):
    layer = make(cls)
    sd0, out0 = layer.state_dict(), outputs(layer)
    keys = list(sd0)
    for value, exc, what in ((np.full(sd0[keys[-1]].shape, "x"), TypeError, "string"),
                             (sd0[keys[-1]].astype(complex), TypeError, "complex"),
                             (None, TypeError, "None"),
                             (object(), TypeError, "object")):
        bad = _other_weights(layer)
        bad[keys[-1]] = value  # the last key: every other one converts fine first
        with pytest.raises(exc, match=rf"state_dict\['{keys[-1]}'\].*{what}"):
            layer.load_state_dict(bad)
        assert_unchanged(layer, sd0, out0)
    for bad, exc, match in (([1, 2], TypeError, "state_dict must be a mapping"),
                            (None, TypeError, "state_dict must be a mapping"),
                            (sd0, TypeError, "strict must be True or False")):
        with pytest.raises(exc, match=match):
            layer.load_state_dict(bad, strict="no" if bad is sd0 else True)
        assert_unchanged(layer, sd0, out0)


def test_state_dict_for_another_architecture():
    """A GRU's weights for an LSTM of the same sizes: every shape is listed."""
    lstm = fastrnn.LSTM(I, H)
    gru_sd = fastrnn.GRU(I, H).state_dict()
    with pytest.raises(ValueError) as info:
        lstm.load_state_dict(gru_sd)
    msg = str(info.value)
    for k in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
        assert f"{k}: shape ({3 * H}," in msg
    # and a projection's missing weight_hr
    with pytest.raises(ValueError, match="missing keys: weight_hr_l0"):
        fastrnn.LSTM(I, H, proj_size=2).load_state_dict(
            {k: v for k, v in fastrnn.LSTM(I, H, proj_size=2).state_dict().items()
             if not k.startswith("weight_hr")})


@pytest.mark.parametrize("cls", CELLS, ids=ids(CELLS))
def test_cell_state_dict_errors(cls):
    cell = cls(I, H)
    sd0 = cell.state_dict()
    x = np.ones((B, I))
    out0 = cell(x)
    bad = {k: v + 1 for k, v in sd0.items()}
    del bad["bias_hh"]
    bad["weight_ih"] = np.zeros((1, I))
    bad["weight_ih_l0"] = np.zeros(1)
    with pytest.raises(ValueError) as info:
        cell.load_state_dict(bad)
    msg = str(info.value)
    assert "missing keys: bias_hh" in msg and "unexpected keys: weight_ih_l0" in msg
    assert "weight_ih: shape (1, 3)" in msg
    out1 = cell(x)
    for a, b in zip(out0 if isinstance(out0, tuple) else [out0],
                    out1 if isinstance(out1, tuple) else [out1]):
        assert np.array_equal(a, b)


# --------------------------------------------------------------------------------------
# Streams and threads (the ValueErrors SPEC §4 and §5 name)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", LAYERS, ids=ids(LAYERS))
def test_bidirectional_stream(cls):
    with pytest.raises(ValueError, match="bidirectional"):
        make(cls).stream()


@pytest.mark.parametrize("n,exc", [(0, ValueError), (-2, ValueError), (1.5, TypeError),
                                   ("2", TypeError), (True, TypeError)])
def test_bad_thread_count(n, exc):
    before = fastrnn.get_num_threads()
    with pytest.raises(exc, match=r"\bn\b"):
        fastrnn.set_num_threads(n)
    assert fastrnn.get_num_threads() == before
