"""fastrnn layers against torch.nn.RNN / LSTM / GRU, converted with ``from_torch``.

Every configuration torch has: RNN tanh/relu, LSTM with and without proj_size, GRU;
1-3 layers; uni- and bidirectional; batch_first; bias; with and without initial
states; batched and unbatched input; float32 modules (within ``f32_tolerance``) and
``.double()`` modules, which give float64 layers (within 1e-12). ``lengths`` is
checked against pack_padded_sequence(enforce_sorted=False) -> module ->
pad_packed_sequence(total_length=T), final states included. Then state_dict names,
shapes and order, and load_state_dict from torch tensors.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from _util import assert_close, need

import fastrnn

torch = need("torch")
pack_padded_sequence = torch.nn.utils.rnn.pack_padded_sequence
pad_packed_sequence = torch.nn.utils.rnn.pad_packed_sequence

KINDS = ["rnn_tanh", "rnn_relu", "lstm", "lstm_proj", "gru"]
DTYPES = ["float32", "float64"]
T, B, I, H, P = 6, 4, 5, 7, 3


@pytest.fixture(autouse=True, scope="module")
def _torch_one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def torch_module(kind, *, num_layers=1, bidirectional=False, batch_first=False, bias=True,
                 dtype="float32", input_size=I, hidden_size=H, seed=0):
    torch.manual_seed(seed)
    kw = dict(num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first,
              bias=bias)
    if kind.startswith("rnn"):
        m = torch.nn.RNN(input_size, hidden_size, nonlinearity=kind[4:], **kw)
    elif kind.startswith("lstm"):
        m = torch.nn.LSTM(input_size, hidden_size, proj_size=P if kind == "lstm_proj" else 0,
                          **kw)
    else:
        m = torch.nn.GRU(input_size, hidden_size, **kw)
    m = m.eval()
    return m.double() if dtype == "float64" else m


def fastrnn_class(kind):
    return {"rnn": fastrnn.RNN, "lstm": fastrnn.LSTM, "gru": fastrnn.GRU}[kind.split("_")[0]]


def h_out(module):
    return getattr(module, "proj_size", 0) or module.hidden_size


def initial_state(module, batch, rng, dtype):
    """(numpy hx for fastrnn, torch hx) of the module's shapes; batch None = unbatched."""
    n = module.num_layers * (2 if module.bidirectional else 1)
    lead = (n,) if batch is None else (n, batch)
    h0 = rng.standard_normal(lead + (h_out(module),)).astype(dtype)
    if isinstance(module, torch.nn.LSTM):
        c0 = rng.standard_normal(lead + (module.hidden_size,)).astype(dtype)
        return (h0, c0), (torch.from_numpy(h0), torch.from_numpy(c0))
    return h0, torch.from_numpy(h0)


def split(result):
    """(out, h_n, c_n or None) from a layer's / module's result, as NumPy."""
    out, state = result
    if isinstance(state, tuple):
        h, c = state
    else:
        h, c = state, None

    def np_(a):
        return a.detach().numpy() if isinstance(a, torch.Tensor) else a

    return np_(out), np_(h), None if c is None else np_(c)


def compare(got, want, dtype, k, what):
    for name, a, e in zip(("out", "h_n", "c_n"), got, want):
        if e is None:
            assert a is None, f"{what}: {name}"
        else:
            assert a.shape == e.shape, f"{what} {name}: shape {a.shape} != torch {e.shape}"
            assert a.dtype == np.dtype(dtype), f"{what} {name}: dtype {a.dtype}"
            assert_close(a, e, dtype, k, f"{what} {name}")


def reduction(module) -> int:
    D = 2 if module.bidirectional else 1
    return max(module.input_size, module.hidden_size, D * h_out(module))


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_matches_torch(kind, dtype, num_layers, bidirectional):
    """batch_first x bias x initial state x batched/unbatched for one configuration."""
    rng = np.random.default_rng(num_layers)
    for batch_first, bias, with_state, unbatched in itertools.product(
            [False, True], [False, True], [False, True], [False, True]):
        what = (f"{kind} {dtype} L={num_layers} bi={bidirectional} bf={batch_first} "
                f"bias={bias} state={with_state} unbatched={unbatched}")
        module = torch_module(kind, num_layers=num_layers, bidirectional=bidirectional,
                              batch_first=batch_first, bias=bias, dtype=dtype)
        layer = fastrnn_class(kind).from_torch(module)
        assert layer.dtype == np.dtype(dtype)
        assert (layer.num_layers, layer.bidirectional, layer.batch_first, layer.bias) == (
            num_layers, bidirectional, batch_first, bias)
        shape = (T, I) if unbatched else ((B, T, I) if batch_first else (T, B, I))
        x = rng.standard_normal(shape).astype(dtype)
        hx, thx = (None, None)
        if with_state:
            hx, thx = initial_state(module, None if unbatched else B, rng, dtype)
        with torch.no_grad():
            want = split(module(torch.from_numpy(x), thx))
        got = split(layer(x, hx))
        compare(got, want, dtype, reduction(module), what)


@pytest.mark.parametrize("batch_first", [False, True], ids=["tb", "bt"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_lengths_match_packed_sequence(kind, dtype, bidirectional, batch_first):
    rng = np.random.default_rng(1)
    module = torch_module(kind, num_layers=2, bidirectional=bidirectional,
                          batch_first=batch_first, dtype=dtype)
    layer = fastrnn_class(kind).from_torch(module)
    k = reduction(module)
    Bl = 6
    for lengths in ([3, T, 1, 5, T, 2], [1] * Bl, [T, 1, 1, T, 2, 2]):
        lengths = np.array(lengths)
        x = rng.standard_normal((Bl, T, I) if batch_first else (T, Bl, I)).astype(dtype)
        for with_state in (False, True):
            hx, thx = initial_state(module, Bl, rng, dtype) if with_state else (None, None)
            with torch.no_grad():
                packed = pack_padded_sequence(torch.from_numpy(x), torch.from_numpy(lengths),
                                              batch_first=batch_first, enforce_sorted=False)
                out, state = module(packed, thx)
                out, _ = pad_packed_sequence(out, batch_first=batch_first, total_length=T)
                want = split((out, state))
            got = split(layer(x, hx, lengths=lengths))
            compare(got, want, dtype, k, f"{kind} lengths={lengths.tolist()} state={with_state}")
            # lengths as a torch tensor, x as a torch tensor: the same numbers
            again = split(layer(torch.from_numpy(x), hx, lengths=torch.from_numpy(lengths)))
            for a, b in zip(again, got):
                if b is not None:
                    assert np.array_equal(a, b)


@pytest.mark.parametrize("kind", KINDS)
def test_matches_torch_wide_every_isa(kind, isa, n_threads):
    """Sizes past every tile width on each ISA path and thread count."""
    rng = np.random.default_rng(2)
    for dtype in DTYPES:
        module = torch_module(kind, num_layers=2, bidirectional=True, dtype=dtype,
                              input_size=33, hidden_size=65)
        layer = fastrnn_class(kind).from_torch(module)
        x = rng.standard_normal((9, 17, 33)).astype(dtype)
        hx, thx = initial_state(module, 17, rng, dtype)
        with torch.no_grad():
            want = split(module(torch.from_numpy(x), thx))
        compare(split(layer(x, hx)), want, dtype, reduction(module), f"{kind} {dtype} {isa}")


@pytest.mark.parametrize("kind", KINDS)
def test_nan_like_torch(kind):
    module = torch_module(kind, num_layers=2, bidirectional=False)
    layer = fastrnn_class(kind).from_torch(module)
    x = np.random.default_rng(3).standard_normal((T, B, I)).astype(np.float32)
    x[2, 1, 3] = np.nan
    with torch.no_grad():
        want = split(module(torch.from_numpy(x)))
    got = split(layer(x))
    for a, e in zip(got, want):
        if e is not None:
            assert np.array_equal(np.isnan(a), np.isnan(e))
    assert np.isnan(got[0][2:, 1]).all() and np.isfinite(got[0][:2, 1]).all()
    assert np.isfinite(np.delete(got[0], 1, axis=1)).all()


# --------------------------------------------------------------------------------------
# state_dict and load_state_dict
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", KINDS)
def test_state_dict_names_and_shapes_equal_torch(kind, bias):
    for num_layers, bidirectional in [(1, False), (3, True)]:
        module = torch_module(kind, num_layers=num_layers, bidirectional=bidirectional,
                              bias=bias)
        tsd = module.state_dict()
        # a fresh fastrnn layer (random weights) already has torch's names and shapes
        kw = dict(bias=bias, bidirectional=bidirectional)
        if kind.startswith("rnn"):
            kw["nonlinearity"] = kind[4:]
        if kind == "lstm_proj":
            kw["proj_size"] = P
        fresh = fastrnn_class(kind)(I, H, num_layers, **kw).state_dict()
        assert list(fresh) == list(tsd), "names and their order"
        assert {k: v.shape for k, v in fresh.items()} == {k: tuple(v.shape) for k, v in tsd.items()}
        for v in fresh.values():
            assert isinstance(v, np.ndarray) and v.dtype == np.float32
        # after from_torch the values are torch's
        sd = fastrnn_class(kind).from_torch(module).state_dict()
        assert list(sd) == list(tsd)
        for k in tsd:
            assert np.array_equal(sd[k], tsd[k].numpy()), k


@pytest.mark.parametrize("kind", KINDS)
def test_load_state_dict_with_torch_tensors(kind):
    module = torch_module(kind, num_layers=2, bidirectional=True)
    x = np.random.default_rng(4).standard_normal((T, B, I)).astype(np.float32)
    with torch.no_grad():
        want = split(module(torch.from_numpy(x)))
    kw = dict(bidirectional=True)
    if kind.startswith("rnn"):
        kw["nonlinearity"] = kind[4:]
    if kind == "lstm_proj":
        kw["proj_size"] = P
    for source in (module.state_dict(),                      # detached tensors
                   dict(module.named_parameters()),          # Parameters, requires_grad
                   {k: v.double() for k, v in module.state_dict().items()},  # other dtype
                   {k: v.t().contiguous().t() for k, v in module.state_dict().items()}):
        layer = fastrnn_class(kind)(I, H, 2, seed=9, **kw)
        layer.load_state_dict(source)
        compare(split(layer(x)), want, "float32", reduction(module), kind)
    # the layer keeps copies: changing the module afterwards changes nothing
    layer = fastrnn_class(kind).from_torch(module)
    before = split(layer(x))
    with torch.no_grad():
        for p in module.parameters():
            p.add_(1.0)
    after = split(layer(x))
    for a, b in zip(before, after):
        if a is not None:
            assert np.array_equal(a, b)


def test_from_torch_keeps_hyperparameters_and_dtype():
    m = torch.nn.LSTM(I, H, 2, batch_first=True, bidirectional=True, proj_size=P, bias=False)
    layer = fastrnn.LSTM.from_torch(m)
    assert (layer.input_size, layer.hidden_size, layer.num_layers, layer.proj_size) == (I, H, 2, P)
    assert layer.batch_first and layer.bidirectional and not layer.bias
    assert layer.dtype == np.float32
    assert fastrnn.GRU.from_torch(torch.nn.GRU(I, H).double()).dtype == np.float64
    relu = fastrnn.RNN.from_torch(torch.nn.RNN(I, H, nonlinearity="relu"))
    assert relu.nonlinearity == "relu"
    # a bfloat16 module: float32 layer holding the same (exactly representable) weights
    mb = torch.nn.GRU(I, H).to(torch.bfloat16)
    layer = fastrnn.GRU.from_torch(mb)
    assert layer.dtype == np.float32
    for k, v in mb.state_dict().items():
        assert np.array_equal(layer.state_dict()[k], v.float().numpy())


def test_from_torch_refuses_other_modules():
    with pytest.raises(TypeError, match="LSTM"):
        fastrnn.LSTM.from_torch(torch.nn.GRU(I, H))
    with pytest.raises(TypeError, match="GRU"):
        fastrnn.GRU.from_torch(torch.nn.Linear(I, H))
    with pytest.raises(TypeError, match="RNN"):
        fastrnn.RNN.from_torch({"weight_ih_l0": np.zeros((H, I))})
