"""fastrnn.load for .pt/.pth files: torch.save'd state_dicts and whole modules,
read without torch and without running pickled code."""

from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest
from _io_helpers import (
    assert_close, layer_run, need, need_layers, run_python, run_spec, torch_run,
)

from fastrnn.errors import ModelFileError, UnsafeModelError
from fastrnn.io import read
from fastrnn.io._pickle import load_pt

torch = need("torch")

T, B = 5, 3

# (class, constructor kwargs) -- every kind, stacking, directions, bias, projection.
MODULES = [
    ("RNN", dict(input_size=4, hidden_size=5)),
    ("RNN", dict(input_size=4, hidden_size=5, nonlinearity="relu", num_layers=2,
                 bidirectional=True)),
    ("LSTM", dict(input_size=4, hidden_size=6, num_layers=2, bidirectional=True)),
    ("LSTM", dict(input_size=4, hidden_size=6, proj_size=3, num_layers=2)),
    ("LSTM", dict(input_size=4, hidden_size=6, proj_size=2, bidirectional=True, bias=False)),
    ("GRU", dict(input_size=4, hidden_size=5, bias=False)),
    ("GRU", dict(input_size=4, hidden_size=5, num_layers=2, bidirectional=True)),
]
IDS = [f"{c}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for c, kw in MODULES]


def make(cls, kwargs, dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    return getattr(torch.nn, cls)(**kwargs).to(dtype).eval()


def inputs(module, batch_first=False, dtype=np.float32, seed=1):
    rng = np.random.default_rng(seed)
    shape = (B, T, module.input_size) if batch_first else (T, B, module.input_size)
    return rng.standard_normal(shape).astype(dtype)


# ---------------------------------------------------------------- reading


@pytest.mark.parametrize("cls,kwargs", MODULES, ids=IDS)
@pytest.mark.parametrize("what", ["state_dict", "module"])
def test_read_matches_torch(tmp_path, cls, kwargs, what):
    """The arrays and hyperparameters read run to torch's numbers (reference)."""
    module = make(cls, kwargs)
    path = tmp_path / "m.pt"
    torch.save(module.state_dict() if what == "state_dict" else module, path)
    overrides = {"nonlinearity": "relu"} if what == "state_dict" and kwargs.get(
        "nonlinearity") == "relu" else {}
    spec = read(path, **overrides)
    assert spec.class_name == cls
    assert spec.kwargs["num_layers"] == kwargs.get("num_layers", 1)
    assert spec.kwargs["bidirectional"] == kwargs.get("bidirectional", False)
    assert spec.kwargs["bias"] == kwargs.get("bias", True)
    assert spec.kwargs["dtype"] == "float32"
    if cls == "LSTM":
        assert spec.kwargs["proj_size"] == kwargs.get("proj_size", 0)
        assert spec.kwargs["peephole"] is False
    if cls == "RNN":
        assert spec.kwargs["nonlinearity"] == kwargs.get("nonlinearity", "tanh")
    for k, v in module.state_dict().items():
        np.testing.assert_array_equal(spec.state_dict[k], v.numpy())
    x = inputs(module)
    assert_close(run_spec(spec, x), torch_run(module, x))


@pytest.mark.parametrize("cls,kwargs", MODULES, ids=IDS)
@pytest.mark.parametrize("what", ["state_dict", "module"])
def test_load_matches_torch(tmp_path, cls, kwargs, what):
    fastrnn = need_layers()
    module = make(cls, kwargs)
    path = tmp_path / "m.pth"
    torch.save(module.state_dict() if what == "state_dict" else module, path)
    overrides = {"nonlinearity": "relu"} if what == "state_dict" and kwargs.get(
        "nonlinearity") == "relu" else {}
    layer = fastrnn.load(path, **overrides)
    assert type(layer).__name__ == cls
    assert np.dtype(layer.dtype) == np.float32
    x = inputs(module)
    assert_close(layer_run(layer, x), torch_run(module, x))


def test_whole_module_attributes_are_honoured(tmp_path):
    module = make("RNN", dict(input_size=3, hidden_size=4, nonlinearity="relu",
                              batch_first=True))
    torch.save(module, tmp_path / "m.pt")
    spec = read(tmp_path / "m.pt")
    assert spec.kwargs["nonlinearity"] == "relu"
    assert spec.kwargs["batch_first"] is True
    x = inputs(module, batch_first=True)
    assert_close(run_spec(spec, x), torch_run(module, x))
    # The state_dict alone cannot tell: PyTorch's defaults, or overrides.
    torch.save(module.state_dict(), tmp_path / "sd.pt")
    spec = read(tmp_path / "sd.pt")
    assert spec.kwargs["nonlinearity"] == "tanh" and spec.kwargs["batch_first"] is False
    spec = read(tmp_path / "sd.pt", nonlinearity="relu", batch_first=True)
    assert_close(run_spec(spec, x), torch_run(module, x))
    # An override wins over the module's own attributes.
    spec = read(tmp_path / "m.pt", batch_first=False, nonlinearity="tanh")
    assert spec.kwargs["batch_first"] is False and spec.kwargs["nonlinearity"] == "tanh"


def test_whole_module_batch_first_loads(tmp_path):
    fastrnn = need_layers()
    module = make("GRU", dict(input_size=3, hidden_size=4, batch_first=True, num_layers=2))
    torch.save(module, tmp_path / "m.pt")
    layer = fastrnn.load(tmp_path / "m.pt")
    assert layer.batch_first is True
    x = inputs(module, batch_first=True)
    assert_close(layer_run(layer, x), torch_run(module, x))


@pytest.mark.parametrize("cls", ["RNN", "LSTM", "GRU"])
def test_float64(tmp_path, cls):
    module = make(cls, dict(input_size=3, hidden_size=4, num_layers=2), dtype=torch.float64)
    torch.save(module.state_dict(), tmp_path / "m.pt")
    spec = read(tmp_path / "m.pt")
    assert spec.kwargs["dtype"] == "float64"
    assert all(v.dtype == np.float64 for v in spec.state_dict.values())
    x = inputs(module, dtype=np.float64)
    assert_close(run_spec(spec, x), torch_run(module, x), np.float64)
    assert read(tmp_path / "m.pt", dtype="float32").kwargs["dtype"] == "float32"


@pytest.mark.parametrize("cls", ["RNN", "LSTM", "GRU"])
def test_float64_loads_tight(tmp_path, cls):
    fastrnn = need_layers()
    module = make(cls, dict(input_size=3, hidden_size=4, bidirectional=True),
                  dtype=torch.float64)
    torch.save(module, tmp_path / "m.pt")
    layer = fastrnn.load(tmp_path / "m.pt")
    assert np.dtype(layer.dtype) == np.float64
    x = inputs(module, dtype=np.float64)
    assert_close(layer_run(layer, x), torch_run(module, x), np.float64)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_storages(tmp_path, dtype):
    module = make("LSTM", dict(input_size=3, hidden_size=4)).to(getattr(torch, dtype))
    torch.save(module.state_dict(), tmp_path / "m.pt")
    spec = read(tmp_path / "m.pt")
    assert spec.kwargs["dtype"] == "float32"
    for k, v in module.state_dict().items():
        np.testing.assert_array_equal(spec.state_dict[k], v.float().numpy())


CELLS = [
    ("RNNCell", dict(input_size=3, hidden_size=4)),
    ("RNNCell", dict(input_size=3, hidden_size=4, nonlinearity="relu", bias=False)),
    ("LSTMCell", dict(input_size=3, hidden_size=4)),
    ("GRUCell", dict(input_size=3, hidden_size=4, bias=False)),
]


@pytest.mark.parametrize("cls,kwargs", CELLS, ids=[f"{c}-{kw}" for c, kw in CELLS])
@pytest.mark.parametrize("what", ["state_dict", "module"])
def test_cells_read(tmp_path, cls, kwargs, what):
    module = make(cls, kwargs)
    torch.save(module.state_dict() if what == "state_dict" else module, tmp_path / "c.pt")
    spec = read(tmp_path / "c.pt")
    assert spec.class_name == cls
    assert spec.kwargs["bias"] == kwargs.get("bias", True)
    if cls == "RNNCell":
        want = kwargs.get("nonlinearity", "tanh") if what == "module" else "tanh"
        assert spec.kwargs["nonlinearity"] == want
    for k, v in module.state_dict().items():
        np.testing.assert_array_equal(spec.state_dict[k], v.numpy())


@pytest.mark.parametrize("cls,kwargs", CELLS, ids=[f"{c}-{kw}" for c, kw in CELLS])
def test_cells_load(tmp_path, cls, kwargs):
    fastrnn = need_layers()
    need("fastrnn.cells")
    module = make(cls, kwargs)
    torch.save(module, tmp_path / "c.pt")
    cell = fastrnn.load(tmp_path / "c.pt")
    assert type(cell).__name__ == cls
    x = np.random.default_rng(0).standard_normal((B, 3)).astype(np.float32)
    with torch.no_grad():
        want = module(torch.from_numpy(x))
    got = cell(x)
    if cls == "LSTMCell":
        assert_close([got[0], got[1]], [want[0].numpy(), want[1].numpy()])
    else:
        assert_close([got], [want.numpy()])


# ---------------------------------------------------------------- overrides


def test_overrides(tmp_path):
    module = make("LSTM", dict(input_size=3, hidden_size=4, num_layers=2, proj_size=2))
    torch.save(module.state_dict(), tmp_path / "m.pt")
    spec = read(tmp_path / "m.pt", num_layers=2, hidden_size=4, input_size=3,
                proj_size=2, bias=True, bidirectional=False, peephole=False,
                batch_first=True, dtype="float64")
    assert spec.kwargs["batch_first"] is True and spec.kwargs["dtype"] == "float64"
    with pytest.raises(ValueError, match="num_layers=3 contradicts.*num_layers=2"):
        read(tmp_path / "m.pt", num_layers=3)
    with pytest.raises(ValueError, match="hidden_size=5 contradicts"):
        read(tmp_path / "m.pt", hidden_size=5)
    with pytest.raises(ValueError, match="bias=False contradicts"):
        read(tmp_path / "m.pt", bias=False)
    with pytest.raises(ValueError, match="unknown override.*'hiden_size'"):
        read(tmp_path / "m.pt", hiden_size=4)
    with pytest.raises(ValueError, match="'nonlinearity' does not apply to the LSTM"):
        read(tmp_path / "m.pt", nonlinearity="relu")
    with pytest.raises(ValueError, match="batch_first='yes'"):
        read(tmp_path / "m.pt", batch_first="yes")
    with pytest.raises(ValueError, match="dtype='float16'.*'float32' or 'float64'"):
        read(tmp_path / "m.pt", dtype="float16")
    # Errors in overrides are plain ValueErrors, not file errors.
    with pytest.raises(ValueError) as info:
        read(tmp_path / "m.pt", num_layers=1)
    assert not isinstance(info.value, ModelFileError)


def test_nonlinearity_override_loads(tmp_path):
    fastrnn = need_layers()
    module = make("RNN", dict(input_size=3, hidden_size=4, nonlinearity="relu"))
    torch.save(module.state_dict(), tmp_path / "m.pt")
    layer = fastrnn.load(tmp_path / "m.pt", nonlinearity="relu", batch_first=True)
    assert layer.nonlinearity == "relu" and layer.batch_first is True
    x = inputs(module)
    got = layer_run(layer, x.transpose(1, 0, 2))
    want = torch_run(module, x)
    assert_close([got[0].transpose(1, 0, 2), got[1]], want[:2])


# ---------------------------------------------------------------- formats


def test_legacy_format(tmp_path):
    module = make("LSTM", dict(input_size=3, hidden_size=4, proj_size=2, bidirectional=True))
    torch.save(module.state_dict(), tmp_path / "sd.pt", _use_new_zipfile_serialization=False)
    torch.save(module, tmp_path / "m.pt", _use_new_zipfile_serialization=False)
    assert not zipfile.is_zipfile(tmp_path / "sd.pt")
    x = inputs(module)
    for name in ("sd.pt", "m.pt"):
        spec = read(tmp_path / name)
        assert spec.class_name == "LSTM" and spec.kwargs["proj_size"] == 2
        assert_close(run_spec(spec, x), torch_run(module, x))


def _rewrite_zip(src, dst, change):
    """Copy a zip, passing each (name, bytes) through ``change``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = change(info.filename, zin.read(info.filename))
            if data is not None:
                zout.writestr(info.filename, data)


def test_big_endian_storages(tmp_path):
    module = make("GRU", dict(input_size=3, hidden_size=4))
    torch.save(module.state_dict(), tmp_path / "le.pt")

    def to_big(name, data):
        if name.endswith("/byteorder"):
            return b"big"
        if "/data/" in name:
            return np.frombuffer(data, "<f4").astype(">f4").tobytes()
        return data

    _rewrite_zip(tmp_path / "le.pt", tmp_path / "be.pt", to_big)
    spec = read(tmp_path / "be.pt")
    for k, v in module.state_dict().items():
        assert spec.state_dict[k].dtype == np.float32
        np.testing.assert_array_equal(spec.state_dict[k], v.numpy())


def test_views_and_shared_storage(tmp_path):
    """Non-contiguous and shared-storage tensors come out as their values."""
    base = torch.randn(8, 6)
    torch.save({"weight_ih_l0": base[:, 1:4], "weight_hh_l0": base[:, :2]}, tmp_path / "m.pt")
    obj = load_pt(tmp_path / "m.pt")
    np.testing.assert_array_equal(obj["weight_ih_l0"], base[:, 1:4].numpy())
    np.testing.assert_array_equal(obj["weight_hh_l0"], base[:, :2].numpy())
    assert obj["weight_ih_l0"].flags.c_contiguous
    spec = read(tmp_path / "m.pt")
    assert spec.class_name == "LSTM" and spec.kwargs["hidden_size"] == 2


def test_expanded_tensor_is_refused(tmp_path):
    """A stride-0 view could ask for any amount of memory from a tiny file."""
    torch.save({"weight_ih_l0": torch.zeros(1).expand(1000, 1000)}, tmp_path / "x.pt")
    with pytest.raises(ModelFileError, match="1000000 elements but its storage"):
        read(tmp_path / "x.pt")


@pytest.mark.parametrize("protocol", [1, 2])
def test_old_pickle_protocols(tmp_path, protocol):
    module = make("GRU", dict(input_size=3, hidden_size=4, num_layers=2))
    torch.save(module, tmp_path / "m.pt", pickle_protocol=protocol)
    spec = read(tmp_path / "m.pt")
    assert spec.class_name == "GRU" and spec.kwargs["num_layers"] == 2
    for k, v in module.state_dict().items():
        np.testing.assert_array_equal(spec.state_dict[k], v.numpy())


def test_prefixed_state_dict_and_checkpoint(tmp_path):
    class Wrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = torch.nn.GRU(3, 4)

    torch.manual_seed(0)
    wrapper = Wrapper()
    torch.save(wrapper.state_dict(), tmp_path / "w.pt")
    spec = read(tmp_path / "w.pt")
    assert spec.class_name == "GRU" and "weight_ih_l0" in spec.state_dict
    torch.save({"epoch": 3, "model_state_dict": wrapper.encoder.state_dict()}, tmp_path / "c.pt")
    assert read(tmp_path / "c.pt").class_name == "GRU"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit
def test_not_a_recurrent_model(tmp_path):
    torch.save(torch.nn.Linear(3, 4).state_dict(), tmp_path / "lin.pt")
    with pytest.raises(ModelFileError, match="'bias', 'weight'.*not weights of one RNN"):
        read(tmp_path / "lin.pt")

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(3, 4)
            self.fc = torch.nn.Linear(4, 2)

    torch.save(Model().state_dict(), tmp_path / "model.pt")
    with pytest.raises(ModelFileError, match="fc.weight"):
        read(tmp_path / "model.pt")
    torch.save(torch.zeros(3), tmp_path / "t.pt")
    with pytest.raises(ModelFileError, match="single tensor of shape"):
        read(tmp_path / "t.pt")
    torch.save([1, 2], tmp_path / "l.pt")
    with pytest.raises(ModelFileError, match="holds a list"):
        read(tmp_path / "l.pt")
    torch.save({"weight_ih_l0": torch.zeros(4, 3, dtype=torch.int64),
                "weight_hh_l0": torch.zeros(4, 4)}, tmp_path / "i.pt")
    with pytest.raises(ModelFileError, match="dtype int64"):
        read(tmp_path / "i.pt")
    # A whole model of another class is refused as an unknown global.
    torch.save(torch.nn.Linear(3, 4), tmp_path / "linm.pt")
    with pytest.raises(UnsafeModelError, match="torch.nn.modules.linear.Linear"):
        read(tmp_path / "linm.pt")
    scripted = torch.jit.script(torch.nn.GRU(3, 4))
    torch.jit.save(scripted, str(tmp_path / "ts.pt"))
    with pytest.raises(ModelFileError, match="TorchScript"):
        read(tmp_path / "ts.pt")


def test_unknown_suffix_and_missing_file(tmp_path):
    (tmp_path / "m.txt").write_text("x")
    with pytest.raises(ModelFileError, match=r"suffix '\.txt'.*\.pt, \.pth"):
        read(tmp_path / "m.txt")
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        read(tmp_path / "nope.pt")


# ---------------------------------------------------------------- malicious


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def _evil_zip(path, payload: bytes):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")


@pytest.mark.parametrize("protocol", [2, 4])
def test_malicious_zip_is_refused(tmp_path, protocol):
    marker = tmp_path / "pwned"
    _evil_zip(tmp_path / "evil.pt", pickle.dumps({"weight_ih_l0": _Evil(marker)}, protocol))
    with pytest.raises(UnsafeModelError, match=r"refused to load global '(posix|nt)\.system'"):
        read(tmp_path / "evil.pt")
    assert not marker.exists()


def test_malicious_plain_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "evil.pth").write_bytes(pickle.dumps(_Evil(marker), 2))
    with pytest.raises(UnsafeModelError, match="system"):
        read(tmp_path / "evil.pth")
    assert not marker.exists()
    # Harmless plain pickles are not torch files either.
    (tmp_path / "plain.pt").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ModelFileError, match="plain pickle"):
        read(tmp_path / "plain.pt")


@pytest.mark.parametrize("global_", [b"builtins\neval", b"__builtin__\nexec", b"subprocess\ncall",
                                     b"torch\nload", b"numpy\nload", b"collections\nUserDict"])
def test_other_globals_are_refused(tmp_path, global_):
    payload = b"\x80\x02c" + global_ + b"\nX\x01\x00\x00\x001\x85R."
    _evil_zip(tmp_path / "evil.pt", payload)
    with pytest.raises(UnsafeModelError, match="refused to load global"):
        read(tmp_path / "evil.pt")


def test_stand_ins_cannot_be_modified(tmp_path):
    # BUILD with a slot state on an allowed global would set its attributes.
    payload = (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n"
               b"N}X\x08\x00\x00\x00__call__K\x01s\x86b.")
    _evil_zip(tmp_path / "evil.pt", payload)
    with pytest.raises(UnsafeModelError, match="refused to set attribute"):
        read(tmp_path / "evil.pt")


def test_lying_tensor_sizes(tmp_path):
    torch.save({"weight_ih_l0": torch.zeros(4, 3), "weight_hh_l0": torch.zeros(4, 4)},
               tmp_path / "ok.pt")

    def grow(name, data):
        if name.endswith("data.pkl"):
            # size (4, 3) -> (40, 3): more elements than the storage has
            return data.replace(b"K\x04K\x03\x86", b"K(K\x03\x86", 1)
        return data

    _rewrite_zip(tmp_path / "ok.pt", tmp_path / "bad.pt", grow)
    with pytest.raises(ModelFileError, match="120 elements but its storage '0' holds 12"):
        read(tmp_path / "bad.pt")

    def stride(name, data):
        if name.endswith("data.pkl"):
            # stride (3, 1) -> (4, 1): the last row reads past the storage
            return data.replace(b"K\x03K\x01\x86", b"K\x04K\x01\x86", 1)
        return data

    _rewrite_zip(tmp_path / "ok.pt", tmp_path / "bad2.pt", stride)
    with pytest.raises(ModelFileError, match="reaches element 14 of storage '0', which holds 12"):
        read(tmp_path / "bad2.pt")

    def shrink_storage(name, data):
        return data[:-4] if name.endswith("/data/0") else data

    _rewrite_zip(tmp_path / "ok.pt", tmp_path / "short.pt", shrink_storage)
    with pytest.raises(ModelFileError, match="holds 44 bytes.*48 bytes"):
        read(tmp_path / "short.pt")

    def drop_storage(name, data):
        return None if name.endswith("/data/1") else data

    _rewrite_zip(tmp_path / "ok.pt", tmp_path / "missing.pt", drop_storage)
    with pytest.raises(ModelFileError, match="storage record .*data/1.* is missing"):
        read(tmp_path / "missing.pt")


# ---------------------------------------------------------------- corrupt


@pytest.mark.parametrize("legacy", [False, True])
def test_truncated_files(tmp_path, legacy):
    module = make("LSTM", dict(input_size=3, hidden_size=4))
    torch.save(module.state_dict(), tmp_path / "m.pt",
               _use_new_zipfile_serialization=not legacy)
    blob = (tmp_path / "m.pt").read_bytes()
    cuts = sorted({0, 1, 2, 10, 50, 100, len(blob) // 3, len(blob) // 2,
                   len(blob) - 300, len(blob) - 30, len(blob) - 1})
    for cut in cuts:
        (tmp_path / "cut.pt").write_bytes(blob[:cut])
        with pytest.raises(ModelFileError):
            read(tmp_path / "cut.pt")


def test_corrupt_bytes(tmp_path):
    module = make("GRU", dict(input_size=3, hidden_size=4))
    torch.save(module.state_dict(), tmp_path / "m.pt")
    blob = bytearray((tmp_path / "m.pt").read_bytes())
    rng = np.random.default_rng(0)
    for trial in range(40):
        bad = bytearray(blob)
        for pos in rng.integers(0, len(bad), size=3):
            bad[pos] ^= 0xFF
        (tmp_path / "bad.pt").write_bytes(bytes(bad))
        try:
            read(tmp_path / "bad.pt")
        except ModelFileError:
            pass  # UnsafeModelError included
    # The pickle itself garbled inside a valid zip.
    _rewrite_zip(tmp_path / "m.pt", tmp_path / "garbled.pt",
                 lambda n, d: d[:40] + b"\xff" * 20 + d[60:] if n.endswith("data.pkl") else d)
    with pytest.raises(ModelFileError):
        read(tmp_path / "garbled.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00\x01garbage" * 10)
    with pytest.raises(ModelFileError, match="corrupt or truncated"):
        read(tmp_path / "junk.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ModelFileError):
        read(tmp_path / "empty.pt")


def test_byteorder_record_checked(tmp_path):
    torch.save(make("GRU", dict(input_size=3, hidden_size=4)).state_dict(), tmp_path / "m.pt")
    _rewrite_zip(tmp_path / "m.pt", tmp_path / "bad.pt",
                 lambda n, d: b"middle" if n.endswith("/byteorder") else d)
    with pytest.raises(ModelFileError, match="byteorder record is b'middle'"):
        read(tmp_path / "bad.pt")


# ---------------------------------------------------------------- without torch


NO_TORCH = r"""
import sys, builtins, json
sys.modules["torch"] = None            # "import torch" now raises ImportError
real_import = builtins.__import__
def guarded(name, *a, **k):
    if name == "torch" or name.startswith("torch."):
        raise ImportError("torch is blocked in this test")
    return real_import(name, *a, **k)
builtins.__import__ = guarded
import numpy as np
from fastrnn.io import read
spec = read(sys.argv[1])
from fastrnn import reference
x = np.load(sys.argv[2])
out, (h, c) = reference.lstm(x, spec.state_dict, num_layers=spec.kwargs["num_layers"],
                             bidirectional=spec.kwargs["bidirectional"])
np.save(sys.argv[3], out)
if sys.argv[4] == "layer":
    import fastrnn
    layer = fastrnn.load(sys.argv[1])
    out2, _ = layer(x)
    np.save(sys.argv[3] + ".layer.npy", out2)
assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules if sys.modules[m])
print(json.dumps(spec.kwargs))
"""


@pytest.mark.parametrize("legacy", [False, True])
def test_load_without_torch(tmp_path, legacy):
    module = make("LSTM", dict(input_size=3, hidden_size=4, num_layers=2, bidirectional=True))
    torch.save(module, tmp_path / "m.pt", _use_new_zipfile_serialization=not legacy)
    x = inputs(module)
    np.save(tmp_path / "x.npy", x)
    try:
        need_layers()
        mode = "layer"
    except pytest.skip.Exception:
        mode = "spec"
    proc = run_python(NO_TORCH, str(tmp_path / "m.pt"), str(tmp_path / "x.npy"),
                      str(tmp_path / "out.npy"), mode)
    assert proc.returncode == 0, proc.stderr
    assert '"num_layers": 2' in proc.stdout
    want = torch_run(module, x)[0]
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), want, rtol=1e-5, atol=2e-6)
    if mode == "layer":
        np.testing.assert_allclose(np.load(tmp_path / "out.npy.layer.npy"), want,
                                   rtol=1e-5, atol=2e-6)


def test_legacy_header_checks(tmp_path):
    buf = io.BytesIO()
    pickle.dump(0x1950A86A20F9469CFC6C, buf, 2)
    pickle.dump(999, buf, 2)
    (tmp_path / "v.pt").write_bytes(buf.getvalue())
    with pytest.raises(ModelFileError, match="protocol version 999"):
        read(tmp_path / "v.pt")
    assert struct.calcsize("<q") == 8
