"""Whole-model modules (SPEC §7): each against its torch twin, state_dict names and
errors; pooling, AttentionPool, Sequential, from_torch and model files."""

from __future__ import annotations

import numpy as np
import pytest

import fastrnn
from _util import assert_close, need, one_engine_thread  # noqa: F401 (autouse)
from fastrnn import _kernels

torch = need("torch")
nn = torch.nn

DTYPES = ["float32", "float64"]
TDT = {"float32": torch.float32, "float64": torch.float64}


def _t(module, dtype):
    return module.to(TDT[dtype]).eval()


def _np(t):
    return t.detach().numpy()


# -- Embedding ------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding_matches_torch(dtype):
    torch.manual_seed(0)
    te = _t(nn.Embedding(10, 4, padding_idx=3), dtype)
    e = fastrnn.Embedding.from_torch(te)
    assert e.dtype == np.dtype(dtype) and e.padding_idx == 3
    ids = np.array([[1, 3, 9], [0, 0, 5]])
    with torch.no_grad():
        ref = _np(te(torch.as_tensor(ids)))
    out = e(ids)
    assert out.dtype == np.dtype(dtype) and out.flags.c_contiguous
    assert np.array_equal(out, ref)
    assert np.array_equal(e([7]), _np(te.weight)[[7]])
    assert e(np.int32(2)).shape == (4,)
    assert e(torch.as_tensor(ids)).shape == (2, 3, 4)
    assert e(np.zeros((0, 5), np.int64)).shape == (0, 5, 4)
    assert list(e.state_dict()) == list(te.state_dict()) == ["weight"]


def test_embedding_init_and_errors():
    e = fastrnn.Embedding(6, 3, padding_idx=-1, seed=0)
    assert e.padding_idx == 5 and np.all(e.weight[5] == 0)
    with pytest.raises(ValueError, match=r"ids\[\(1, 0\)\] is 6; token ids must be in \[0, 6\)"):
        e([[0, 1], [6, 2]])
    with pytest.raises(ValueError, match=r"ids\[2\] is -1"):
        e([0, 1, -1])
    with pytest.raises(TypeError, match="integer"):
        e([0.0, 1.0])
    with pytest.raises(TypeError, match="integer"):
        e(np.array([True, False]))
    with pytest.raises(TypeError, match="integer"):
        e(["a"])
    with pytest.raises(ValueError, match="padding_idx"):
        fastrnn.Embedding(6, 3, padding_idx=6)
    with pytest.raises(ValueError, match="num_embeddings"):
        fastrnn.Embedding(0, 3)
    with pytest.raises(ValueError, match="max_norm"):
        fastrnn.Embedding.from_torch(nn.Embedding(4, 2, max_norm=1.0))
    with pytest.raises(TypeError, match="torch.nn.Embedding"):
        fastrnn.Embedding.from_torch(nn.Linear(4, 2))
    with pytest.raises(ValueError, match="readonly|read-only"):
        e.weight[0, 0] = 1.0


def test_embedding_ids_as_python_ints_in_an_object_array():
    """Python ints numpy keeps as objects are ids like any (they used to raise a bare
    StopIteration); one beyond int64 is out of range; other objects are refused."""
    e = fastrnn.Embedding(10, 3, seed=0)
    for ids in ([1, 2], [[3], [9]], 4):
        want = e(np.array(ids, np.int64))
        got = e(np.array(ids, dtype=object))
        assert got.dtype == want.dtype and np.array_equal(got, want)
    with pytest.raises(ValueError, match=r"ids\[1\] is 10; token ids must be in \[0, 10\)"):
        e(np.array([1, 10], dtype=object))
    with pytest.raises(ValueError, match=r"ids\[\(1, 0\)\] is 1180591620717411303424; token"):
        e(np.array([[1], [2**70]], dtype=object))
    with pytest.raises(ValueError, match=r"ids\[0\] is -9223372036854775809"):
        e([-2**63 - 1, 1])
    for mixed in ([1, "a"], [1, 2.0], [1, True], [1, None], [1, np.int64(2)]):
        with pytest.raises(TypeError, match="ids must hold integer token ids, got object"):
            e(np.array(mixed, dtype=object))


# -- Linear -----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(5,), (3, 5), (2, 7, 5), (0, 5)])
def test_linear_matches_torch(dtype, bias, shape):
    torch.manual_seed(1)
    tl = _t(nn.Linear(5, 37, bias=bias), dtype)
    lin = fastrnn.Linear.from_torch(tl)
    x = np.random.default_rng(0).standard_normal(shape)
    with torch.no_grad():
        ref = _np(tl(torch.as_tensor(x, dtype=TDT[dtype])))
    y = lin(x)
    assert y.dtype == np.dtype(dtype) and y.shape == shape[:-1] + (37,)
    assert_close(y, ref, dtype, k=5)
    assert list(lin.state_dict()) == list(tl.state_dict())


@pytest.mark.parametrize("N,K", [(1, 1), (17, 3), (64, 33), (257, 40)])
def test_linear_every_isa_and_thread_count(isa, n_threads, N, K):
    rng = np.random.default_rng(N)
    lin = fastrnn.Linear(K, N, seed=3)
    x = rng.standard_normal((9, K)).astype(np.float32)
    sd = lin.state_dict()
    ref = x.astype(np.float64) @ sd["weight"].T.astype(np.float64) + sd["bias"]
    y = lin(x)
    assert_close(y, ref, "float32", k=K)
    assert lin._kernel().isa == _kernels.get_isa()  # repacked for the ISA in force
    assert np.array_equal(lin(x), y)


def test_linear_repacks_on_load_and_refuses_bad_input():
    lin = fastrnn.Linear(3, 2, dtype="float64")
    x = np.ones((4, 3))
    lin(x)
    lin.load_state_dict({"weight": np.eye(2, 3), "bias": np.array([1.0, -1.0])})
    assert np.array_equal(lin(x), np.tile([2.0, 0.0], (4, 1)))
    x_f = np.asfortranarray(np.arange(12.0).reshape(4, 3))
    assert np.array_equal(lin(x_f), np.ascontiguousarray(x_f)[:, :2] + [1.0, -1.0])
    with pytest.raises(ValueError, match="in_features=3"):
        lin(np.ones((4, 2)))
    with pytest.raises(TypeError, match="complex"):
        lin(np.ones((4, 3), complex))
    with pytest.raises(ValueError, match=r"weight: shape \(2, 2\).*\n.*missing keys: bias"):
        lin.load_state_dict({"weight": np.eye(2)})
    lin.load_state_dict({"weight": np.zeros((2, 3))}, strict=False)
    assert np.array_equal(lin(x), np.tile([1.0, -1.0], (4, 1)))
    with pytest.raises(ValueError, match="out_features"):
        fastrnn.Linear(3, 0)


# -- LayerNorm, Dropout, activations ---------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,affine,bias", [(6, True, True), ((3, 6), True, False),
                                               (6, False, True)])
def test_layernorm_matches_torch(dtype, shape, affine, bias):
    torch.manual_seed(2)
    tln = nn.LayerNorm(shape, eps=1e-3, elementwise_affine=affine, bias=bias)
    with torch.no_grad():
        for p in tln.parameters():
            p.uniform_(-2, 2)
    tln = _t(tln, dtype)
    ln = fastrnn.LayerNorm.from_torch(tln)
    x = np.random.default_rng(1).standard_normal((4, 3, 6)) * 3 + 1
    with torch.no_grad():
        ref = _np(tln(torch.as_tensor(x, dtype=TDT[dtype])))
    assert_close(ln(x), ref, dtype, k=6)
    assert list(ln.state_dict()) == list(tln.state_dict())
    with pytest.raises(ValueError, match="LayerNorm expects"):
        ln(np.ones((4, 5)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_activations_match_torch(dtype):
    x = np.array([[-1e4, -3.0, -0.0, 0.0, 0.5, 40.0, np.inf, -np.inf, np.nan]] * 2)
    xt = torch.as_tensor(x, dtype=TDT[dtype])
    x = x.astype(dtype)
    pairs = [(fastrnn.ReLU(), nn.ReLU()), (fastrnn.Tanh(), nn.Tanh()),
             (fastrnn.Sigmoid(), nn.Sigmoid()), (fastrnn.Dropout(0.3), nn.Dropout(0.3)),
             (fastrnn.Softmax(-1), nn.Softmax(-1)), (fastrnn.Softmax(0), nn.Softmax(0))]
    for ours, theirs in pairs:
        conv = type(ours).from_torch(theirs.eval())
        with torch.no_grad():
            ref = _np(theirs.eval()(xt))
        for m in (ours, conv):
            y = m(x)
            assert y.dtype == np.dtype(dtype) and y is not x
            tol = 1e-12 if dtype == "float64" else 4e-7
            np.testing.assert_allclose(y, ref, rtol=tol, atol=tol, err_msg=type(m).__name__)
    finite = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 5.0]], dtype)
    with torch.no_grad():
        ref = _np(torch.softmax(torch.as_tensor(finite), 0))
    assert_close(fastrnn.Softmax(0)(finite), ref, dtype, k=3)


def test_activation_errors_and_dtypes():
    assert fastrnn.ReLU()([1, -2]).dtype == np.float32
    assert fastrnn.Tanh()(np.ones(2, np.float16)).dtype == np.float32
    assert fastrnn.Sigmoid()(np.ones(2)).dtype == np.float64
    with pytest.raises(ValueError, match="dim"):
        fastrnn.Softmax(None)
    with pytest.raises(ValueError, match=r"dim is 2"):
        fastrnn.Softmax(2)(np.ones((2, 2)))
    with pytest.raises(ValueError, match="explicit dim"):
        fastrnn.Softmax.from_torch(nn.Softmax())
    with pytest.raises(ValueError, match=r"p is 1.5"):
        fastrnn.Dropout(1.5)
    with pytest.raises(TypeError, match="string"):
        fastrnn.ReLU()(["a"])
    assert fastrnn.ReLU().state_dict() == {}


# -- pooling -----------------------------------------------------------------------------

def _pool_ref(out, mode, lengths, bidirectional):
    """Plain loops over each sequence's valid steps, in float64."""
    T, B, F = out.shape
    res = np.zeros((B, F))
    for b in range(B):
        n = T if lengths is None else lengths[b]
        seq = out[:n, b].astype(np.float64)
        if mode == "last":
            res[b] = seq[-1]
            if bidirectional:
                res[b, F // 2:] = seq[0, F // 2:]
        elif mode == "mean":
            res[b] = seq.mean(0)
        else:
            res[b] = seq.max(0)
    return res


@pytest.mark.parametrize("mode", ["last", "mean", "max"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_pool_modes(mode, dtype, batch_first, with_lengths):
    rng = np.random.default_rng(3)
    out = rng.standard_normal((6, 4, 8)).astype(dtype)
    lengths = np.array([6, 1, 3, 5]) if with_lengths else None
    x = out.transpose(1, 0, 2).copy() if batch_first else out
    for bidir in (False, True):
        got = fastrnn.pool(x, mode, lengths=lengths, batch_first=batch_first,
                           bidirectional=bidir)
        assert got.dtype == np.dtype(dtype) and got.shape == (4, 8)
        assert_close(got, _pool_ref(out, mode, lengths, bidir), dtype, k=6)
    assert fastrnn.pool(out[:, 0], mode, lengths=None if lengths is None else 6).shape == (8,)


def test_pool_last_of_a_bidirectional_lstm_is_its_final_state():
    """The forward half at the last valid step and the reverse half at step 0 are h_n."""
    lstm = fastrnn.LSTM(3, 5, bidirectional=True, seed=0)
    x = np.random.default_rng(0).standard_normal((7, 4, 3))
    lengths = [7, 2, 5, 1]
    out, (h, _) = lstm(x, lengths=lengths)
    last = fastrnn.pool(out, "last", lengths=lengths, bidirectional=True)
    assert np.array_equal(last, np.concatenate([h[0], h[1]], axis=-1))
    assert np.array_equal(fastrnn.Pool("last", bidirectional=True)(out, lengths), last)


def test_layernorm_eps_is_a_number():
    assert fastrnn.LayerNorm(4, eps=np.float32(1e-3)).eps == pytest.approx(1e-3)
    for bad in ("1e-5", None, True):
        with pytest.raises(TypeError, match="eps must be a number"):
            fastrnn.LayerNorm(4, eps=bad)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="eps is"):
            fastrnn.LayerNorm(4, eps=bad)


def test_pool_errors():
    out = np.zeros((4, 2, 6))
    with pytest.raises(ValueError, match="mode"):
        fastrnn.pool(out, "min")
    with pytest.raises(ValueError, match=r"lengths\[1\] is 5"):
        fastrnn.pool(out, "mean", lengths=[1, 5])
    with pytest.raises(ValueError, match="even"):
        fastrnn.pool(np.zeros((4, 2, 5)), "last", bidirectional=True)
    with pytest.raises(ValueError, match="3-D"):
        fastrnn.pool(np.zeros(4), "max")
    with pytest.raises(TypeError, match="bool"):
        fastrnn.pool(np.zeros((4, 2), bool), "max")
    assert fastrnn.pool(np.zeros((4, 0, 6)), "max").shape == (0, 6)
    # no time steps: refused alike, batched or not (unbatched ones reached NumPy)
    for empty, bf in (((0, 6), False), ((0, 2, 6), False), ((2, 0, 6), True)):
        for mode in ("last", "mean", "max"):
            with pytest.raises(ValueError, match="0 time steps"):
                fastrnn.pool(np.zeros(empty), mode, batch_first=bf)
        with pytest.raises(ValueError, match="0 time steps"):
            fastrnn.AttentionPool(6, seed=0)(np.zeros(empty), batch_first=bf)


class TorchAttnPool(nn.Module):
    """The usual attention pooling: softmax of a Linear score over the valid steps."""

    def __init__(self, features, bias=True):
        super().__init__()
        self.score = nn.Linear(features, 1, bias=bias)

    def forward(self, out, lengths):  # out (T, B, F)
        s = self.score(out)[..., 0]  # (T, B)
        mask = torch.arange(out.shape[0])[:, None] < torch.as_tensor(lengths)[None, :]
        w = torch.softmax(s.masked_fill(~mask, float("-inf")), 0)
        return (w[..., None] * out).sum(0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
def test_attention_pool_matches_torch(dtype, bias):
    torch.manual_seed(4)
    tp = _t(TorchAttnPool(8, bias), dtype)
    ap = fastrnn.AttentionPool.from_torch(tp)
    assert ap.dtype == np.dtype(dtype)
    assert list(ap.state_dict()) == (["weight", "bias"] if bias else ["weight"])
    assert ap.state_dict()["weight"].shape == (8,)
    out = np.random.default_rng(5).standard_normal((6, 4, 8)) * 2
    lengths = [6, 1, 3, 4]
    with torch.no_grad():
        ref = _np(tp(torch.as_tensor(out, dtype=TDT[dtype]), lengths))
    assert_close(ap(out, lengths), ref, dtype, k=8)
    assert_close(ap(out.transpose(1, 0, 2), lengths, batch_first=True), ref, dtype, k=8)
    assert_close(ap(out[:, 2], 3), ref[2], dtype, k=8)


def test_attention_pool_from_torch_refusals():
    class NoScore(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(4, 1)

    class Wide(nn.Module):
        def __init__(self):
            super().__init__()
            self.score = nn.Linear(4, 2)

    class Extra(TorchAttnPool):
        def __init__(self):
            super().__init__(4)
            self.scale = nn.Parameter(torch.ones(1))

    with pytest.raises(TypeError, match="named 'score'; NoScore has no attribute 'score'"):
        fastrnn.AttentionPool.from_torch(NoScore())
    with pytest.raises(ValueError, match="out_features=1"):
        fastrnn.AttentionPool.from_torch(Wide())
    with pytest.raises(ValueError, match="besides 'score' \\(scale\\)"):
        fastrnn.AttentionPool.from_torch(Extra())
    ap = fastrnn.AttentionPool(4)
    with pytest.raises(ValueError, match="features=4"):
        ap(np.zeros((3, 2, 5)))
    with pytest.raises(ValueError, match=r"missing keys: weight, bias.*\n?.*unexpected keys: "
                       r"score\.weight"):
        ap.load_state_dict(TorchAttnPool(4).state_dict())


# -- Sequential and from_torch -----------------------------------------------------------

class TorchClassifier(nn.Module):
    """What the fastrnn Sequential means: a recurrent layer passes on its outputs."""

    def __init__(self, seq):
        super().__init__()
        self.seq = seq

    def forward(self, x):
        return self._run(self.seq, x)

    def _run(self, seq, x):
        for m in seq:
            x = self._run(m, x) if isinstance(m, nn.Sequential) else m(x)
            if isinstance(x, tuple):
                x = x[0]
        return x


@pytest.mark.parametrize("dtype", DTYPES)
def test_from_torch_nested_sequential(dtype):
    torch.manual_seed(6)
    tseq = nn.Sequential(
        nn.Embedding(12, 5),
        nn.Sequential(nn.GRU(5, 7, batch_first=True, bidirectional=True), nn.Dropout(0.1)),
        nn.LayerNorm(14),
        nn.Sequential(nn.Linear(14, 9), nn.Tanh(), nn.Linear(9, 3, bias=False)),
        nn.Softmax(-1),
    )
    tseq = _t(tseq, dtype)
    seq = fastrnn.from_torch(tseq)
    assert isinstance(seq, fastrnn.Sequential) and isinstance(seq[1], fastrnn.Sequential)
    assert isinstance(seq[1][0], fastrnn.GRU) and seq[1][0].bidirectional
    assert list(seq.state_dict()) == list(tseq.state_dict())
    ids = np.random.default_rng(0).integers(0, 12, (4, 6))
    with torch.no_grad():
        ref = _np(TorchClassifier(tseq)(torch.as_tensor(ids)))
    assert_close(seq(ids), ref, dtype, k=16)
    # a state_dict from torch loads into a fresh fastrnn Sequential of the same shape
    fresh = fastrnn.from_torch(_t(nn.Sequential(
        nn.Embedding(12, 5),
        nn.Sequential(nn.GRU(5, 7, batch_first=True, bidirectional=True), nn.Dropout(0.1)),
        nn.LayerNorm(14),
        nn.Sequential(nn.Linear(14, 9), nn.Tanh(), nn.Linear(9, 3, bias=False)),
        nn.Softmax(-1)), dtype))
    fresh.load_state_dict(tseq.state_dict())
    assert np.array_equal(fresh(ids), seq(ids))


def test_sequential_lengths_reach_layers_and_pools():
    torch.manual_seed(7)
    tlstm = nn.LSTM(3, 6, 2, batch_first=True).double()
    tp = TorchAttnPool(6).double()
    tlin = nn.Linear(6, 2).double()
    seq = fastrnn.Sequential(fastrnn.LSTM.from_torch(tlstm), fastrnn.AttentionPool.from_torch(tp),
                             fastrnn.Linear.from_torch(tlin))
    x = np.random.default_rng(1).standard_normal((4, 5, 3))
    lengths = [5, 2, 4, 1]
    with torch.no_grad():
        packed = nn.utils.rnn.pack_padded_sequence(torch.as_tensor(x), torch.as_tensor(lengths),
                                                   batch_first=True, enforce_sorted=False)
        out, _ = tlstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=5)
        ref = _np(tlin(tp(out.transpose(0, 1), lengths)))
    # the AttentionPool follows the LSTM's batch_first (left at None)
    assert_close(seq(x, lengths=lengths), ref, "float64", k=6)
    mean = fastrnn.Sequential(fastrnn.LSTM.from_torch(tlstm), fastrnn.Pool("mean"))
    want = fastrnn.pool(fastrnn.LSTM.from_torch(tlstm)(x, lengths=lengths)[0], "mean",
                        lengths=lengths, batch_first=True)
    assert np.array_equal(mean(x, lengths=lengths), want)


def test_from_torch_refuses_unsupported_modules_by_path():
    class Custom(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(TypeError, match=r"submodule '1\.2' is a torch\.nn\.modules\.activation"
                                        r"\.GELU"):
        fastrnn.from_torch(nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU(), nn.Tanh(),
                                                                        nn.GELU())))
    with pytest.raises(TypeError, match=r"submodule '0' is a custom module .*Custom"):
        fastrnn.from_torch(nn.Sequential(Custom()))
    with pytest.raises(TypeError, match="the model is a custom module"):
        fastrnn.from_torch(Custom())
    with pytest.raises(TypeError, match="cell"):
        fastrnn.from_torch(nn.Sequential(nn.LSTMCell(2, 2)))
    with pytest.raises(TypeError, match="expects a torch.nn module"):
        fastrnn.from_torch(np.zeros(2))
    # top-level layers and cells convert; converters= handles custom classes
    assert isinstance(fastrnn.from_torch(nn.GRUCell(2, 3)), fastrnn.GRUCell)
    conv = fastrnn.from_torch(nn.Sequential(nn.LSTM(2, 4), TorchAttnPool(4)),
                              converters={TorchAttnPool: fastrnn.AttentionPool.from_torch})
    assert isinstance(conv[1], fastrnn.AttentionPool)


def test_sequential_state_dict_errors_leave_everything_unchanged():
    seq = fastrnn.Sequential(fastrnn.Embedding(5, 3, seed=0), fastrnn.GRU(3, 4, seed=1),
                             fastrnn.Linear(4, 2, seed=2))
    before = seq.state_dict()
    bad = {k: np.zeros_like(a) for k, a in before.items()}
    bad["1.weight_hh_l0"] = np.zeros((12, 5))
    del bad["2.bias"]
    bad["3.weight"] = np.zeros(1)
    with pytest.raises(ValueError) as info:
        seq.load_state_dict(bad)
    msg = str(info.value)
    assert "1.weight_hh_l0: shape (12, 5)" in msg and "missing keys: 2.bias" in msg
    assert "unexpected keys: 3.weight" in msg
    after = seq.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    with pytest.raises(ValueError, match="1.weight_hh_l0"):
        seq.load_state_dict(bad, strict=False)  # shapes are still checked
    del bad["1.weight_hh_l0"], bad["3.weight"]
    seq.load_state_dict(bad, strict=False)
    assert np.all(seq.state_dict()["0.weight"] == 0)
    with pytest.raises(TypeError, match="mapping"):
        seq.load_state_dict([1, 2])
    with pytest.raises(TypeError, match="module 1"):
        fastrnn.Sequential(fastrnn.Linear(2, 2), "relu")
    with pytest.raises(TypeError, match="cells take one step"):
        fastrnn.Sequential(fastrnn.GRUCell(2, 2))


def test_model_files(tmp_path):
    seq = fastrnn.Sequential(fastrnn.Embedding(9, 4, padding_idx=0, seed=0),
                             fastrnn.LSTM(4, 6, 2, batch_first=True, proj_size=3, seed=1),
                             fastrnn.Sequential(fastrnn.Dropout(0.2), fastrnn.LayerNorm(3)),
                             fastrnn.Pool("max"), fastrnn.Linear(3, 2, seed=2), fastrnn.Softmax(-1))
    path = tmp_path / "m.npz"
    fastrnn.save_model(seq, path, meta={"labels": ["a", "b"]})
    back = fastrnn.load_model(path)
    assert repr(back) == repr(seq) and back.meta == {"labels": ["a", "b"]}
    ids = np.random.default_rng(0).integers(0, 9, (3, 5))
    assert np.array_equal(back(ids, lengths=[5, 2, 3]), seq(ids, lengths=[5, 2, 3]))
    # not a model file, or a damaged one
    np.savez(tmp_path / "plain.npz", a=np.zeros(2))
    with pytest.raises(fastrnn.ModelFileError, match="save_model"):
        fastrnn.load_model(tmp_path / "plain.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(fastrnn.ModelFileError):
        fastrnn.load_model(tmp_path / "junk.npz")
    data = dict(np.load(path))
    data["1.weight_hh_l0"] = np.zeros((3, 3))
    np.savez(tmp_path / "bad.npz", **data)
    with pytest.raises(fastrnn.ModelFileError, match="weight_hh_l0"):
        fastrnn.load_model(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match=".npz"):
        fastrnn.save_model(seq, tmp_path / "m.pt")


def test_load_reads_a_whole_model_file_and_files_get_the_usual_mode(tmp_path):
    """fastrnn.load hands a save_model file to load_model; saved files are created
    with the umask's mode, not mkstemp's private 0600."""
    import os

    model = fastrnn.Sequential(fastrnn.Embedding(10, 4), fastrnn.LSTM(4, 8, batch_first=True),
                               fastrnn.Linear(8, 10))
    path = tmp_path / "model.npz"
    fastrnn.save_model(model, path)
    loaded = fastrnn.load(path)
    assert isinstance(loaded, fastrnn.Sequential)
    ids = np.array([[1, 2, 3]])
    np.testing.assert_array_equal(loaded(ids), model(ids))
    with pytest.raises(ValueError, match="overrides"):
        fastrnn.load(path, batch_first=False)
    umask = os.umask(0o022)
    os.umask(umask)
    layer_path = tmp_path / "layer.npz"
    fastrnn.LSTM(3, 4).save(layer_path)
    for p in (path, layer_path):
        assert os.stat(p).st_mode & 0o777 == 0o666 & ~umask
