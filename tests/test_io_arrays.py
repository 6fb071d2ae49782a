"""fastrnn.load for .npz / .safetensors, and fastrnn.io.save round trips."""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest
from _io_helpers import assert_close, layer_run, need, need_layers, run_python, run_spec

import fastrnn
from fastrnn.errors import ModelFileError, UnsafeModelError
from fastrnn.io import read, save

T, B = 5, 3

CONFIGS = [
    ("RNN", dict(input_size=4, hidden_size=5, nonlinearity="relu", num_layers=2)),
    ("LSTM", dict(input_size=4, hidden_size=6, proj_size=3, bidirectional=True)),
    ("LSTM", dict(input_size=4, hidden_size=6, num_layers=2, bias=False)),
    ("GRU", dict(input_size=4, hidden_size=5, bidirectional=True)),
]
IDS = [f"{c}-{i}" for i, (c, _) in enumerate(CONFIGS)]


def torch_state(cls, kwargs, dtype="float32"):
    torch = need("torch")
    torch.manual_seed(0)
    module = getattr(torch.nn, cls)(**kwargs).to(getattr(torch, dtype)).eval()
    return module, {k: v.numpy() for k, v in module.state_dict().items()}


def write_npz(path, sd):
    np.savez(path, **sd)
    return path


def write_st(path, sd, metadata=None):
    st = need("safetensors.numpy")
    st.save_file(sd, str(path), metadata=metadata)
    return path


WRITERS = {"npz": write_npz, "safetensors": write_st}


@pytest.mark.parametrize("cls,kwargs", CONFIGS, ids=IDS)
@pytest.mark.parametrize("fmt", ["npz", "safetensors"])
def test_state_dict_files(tmp_path, cls, kwargs, fmt):
    from _io_helpers import torch_run

    module, sd = torch_state(cls, kwargs)
    path = WRITERS[fmt](tmp_path / f"m.{fmt}", sd)
    overrides = {"nonlinearity": "relu"} if kwargs.get("nonlinearity") == "relu" else {}
    spec = read(path, **overrides)
    assert spec.class_name == cls and spec.kwargs["dtype"] == "float32"
    x = np.random.default_rng(0).standard_normal((T, B, 4)).astype(np.float32)
    want = torch_run(module, x)
    assert_close(run_spec(spec, x), want)
    try:
        fastrnn = need_layers()
    except pytest.skip.Exception:
        return
    assert_close(layer_run(fastrnn.load(path, **overrides), x), want)


@pytest.mark.parametrize("fmt", ["npz", "safetensors"])
def test_float64_and_float16_files(tmp_path, fmt):
    from _io_helpers import torch_run

    module, sd = torch_state("GRU", dict(input_size=3, hidden_size=4), "float64")
    spec = read(WRITERS[fmt](tmp_path / f"m.{fmt}", sd))
    assert spec.kwargs["dtype"] == "float64"
    x = np.random.default_rng(0).standard_normal((T, B, 3))
    assert_close(run_spec(spec, x), torch_run(module, x), np.float64)
    half = {k: v.astype(np.float16) for k, v in sd.items()}
    spec = read(WRITERS[fmt](tmp_path / f"h.{fmt}", half))
    assert spec.kwargs["dtype"] == "float32"
    for k, v in half.items():
        np.testing.assert_array_equal(spec.state_dict[k], v.astype(np.float32))


def test_safetensors_from_torch(tmp_path):
    need("safetensors.torch")
    from safetensors.torch import save_file

    torch = need("torch")
    module = torch.nn.LSTM(3, 4, num_layers=2)
    save_file(module.state_dict(), str(tmp_path / "m.safetensors"))
    spec = read(tmp_path / "m.safetensors")
    assert spec.class_name == "LSTM" and spec.kwargs["num_layers"] == 2


def test_npz_object_array_is_refused(tmp_path):
    sd = {"weight_ih_l0": np.zeros((4, 3), np.float32),
          "weight_hh_l0": np.array([{"evil": 1}, None], dtype=object)}
    np.savez(tmp_path / "evil.npz", **sd)
    with pytest.raises(UnsafeModelError, match="'weight_hh_l0' is an object array"):
        read(tmp_path / "evil.npz")


def test_npz_not_an_archive(tmp_path):
    np.save(tmp_path / "single.npy", np.zeros(3))
    (tmp_path / "single.npz").write_bytes((tmp_path / "single.npy").read_bytes())
    with pytest.raises(ModelFileError, match="single .npy array"):
        read(tmp_path / "single.npz")
    (tmp_path / "junk.npz").write_bytes(b"\x80\x04 this is a pickle, maybe" * 4)
    with pytest.raises(ModelFileError, match="not an .npz archive"):
        read(tmp_path / "junk.npz")
    np.savez(tmp_path / "empty.npz")
    with pytest.raises(ModelFileError, match="holds no tensors"):
        read(tmp_path / "empty.npz")
    np.savez(tmp_path / "ints.npz", weight_ih_l0=np.zeros((4, 3), np.int32),
             weight_hh_l0=np.zeros((4, 4), np.int32))
    with pytest.raises(ModelFileError, match="dtype int32"):
        read(tmp_path / "ints.npz")


@pytest.mark.parametrize("fmt", ["npz", "safetensors"])
def test_truncated_and_corrupt(tmp_path, fmt):
    _, sd = torch_state("LSTM", dict(input_size=3, hidden_size=4, num_layers=2))
    blob = WRITERS[fmt](tmp_path / f"m.{fmt}", sd).read_bytes()
    for cut in sorted({0, 1, 7, 9, 30, 100, len(blob) // 3, len(blob) // 2,
                       len(blob) - 100, len(blob) - 1}):
        (tmp_path / f"cut.{fmt}").write_bytes(blob[:cut])
        with pytest.raises(ModelFileError):
            read(tmp_path / f"cut.{fmt}")
    rng = np.random.default_rng(0)
    for _ in range(30):
        bad = bytearray(blob)
        for pos in rng.integers(0, len(bad), size=3):
            bad[pos] ^= 0xFF
        (tmp_path / f"bad.{fmt}").write_bytes(bytes(bad))
        try:
            read(tmp_path / f"bad.{fmt}")
        except ModelFileError:
            pass


def test_safetensors_header_lies(tmp_path):
    _, sd = torch_state("GRU", dict(input_size=3, hidden_size=4))
    blob = write_st(tmp_path / "m.safetensors", sd).read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    key = next(k for k in header if k != "__metadata__")
    header[key]["shape"] = [1000, 1000]
    text = json.dumps(header).encode()
    (tmp_path / "lie.safetensors").write_bytes(struct.pack("<Q", len(text)) + text + blob[8 + n:])
    with pytest.raises(ModelFileError, match="lie.safetensors"):
        read(tmp_path / "lie.safetensors")
    (tmp_path / "huge.safetensors").write_bytes(struct.pack("<Q", 2**60) + blob[8:])
    with pytest.raises(ModelFileError):
        read(tmp_path / "huge.safetensors")


def test_bad_metadata(tmp_path):
    _, sd = torch_state("GRU", dict(input_size=3, hidden_size=4))

    def with_meta(text):
        np.savez(tmp_path / "m.npz", **sd, __fastrnn__=np.frombuffer(text.encode(), np.uint8))
        return tmp_path / "m.npz"

    with pytest.raises(ModelFileError, match="not valid JSON"):
        read(with_meta("{nope"))
    meta = {"format": "fastrnn", "version": 2, "class": "GRU", "hyperparameters": {}}
    with pytest.raises(ModelFileError, match="newer fastrnn"):
        read(with_meta(json.dumps(meta)))
    meta.update(version=1, **{"class": "Transformer"})
    with pytest.raises(ModelFileError, match="class 'Transformer'"):
        read(with_meta(json.dumps(meta)))
    meta.update(**{"class": "LSTM"})
    with pytest.raises(ModelFileError, match="the file says LSTM"):
        read(with_meta(json.dumps(meta)))
    meta.update(**{"class": "GRU", "hyperparameters": {"num_layers": 3}})
    with pytest.raises(ModelFileError, match="says num_layers=3 but its weights have num_layers=1"):
        read(with_meta(json.dumps(meta)))
    meta["hyperparameters"] = {"batch_first": "yes"}
    with pytest.raises(ModelFileError, match="says batch_first='yes'"):
        read(with_meta(json.dumps(meta)))
    meta["hyperparameters"] = {"batch_first": True, "linear_before_reset": False}
    spec = read(with_meta(json.dumps(meta)))
    assert spec.kwargs["batch_first"] is True and spec.kwargs["linear_before_reset"] is False
    assert read(tmp_path / "m.npz", batch_first=False).kwargs["batch_first"] is False
    np.savez(tmp_path / "o.npz", **sd, __fastrnn__=np.zeros((2, 2)))
    with pytest.raises(ModelFileError, match="expected 1-D uint8"):
        read(tmp_path / "o.npz")


def test_safetensors_missing(tmp_path):
    _, sd = torch_state("GRU", dict(input_size=3, hidden_size=4))
    path = write_st(tmp_path / "m.safetensors", sd)
    proc = run_python(
        "import sys; sys.modules['safetensors'] = None\n"
        "from fastrnn.io import read\n"
        "from fastrnn.errors import ModelFileError\n"
        "try:\n    read(sys.argv[1])\n"
        "except ModelFileError as e:\n    print('ERR', e)\n", str(path))
    assert proc.returncode == 0, proc.stderr
    assert "ERR" in proc.stdout and "pip install safetensors" in proc.stdout


# ---------------------------------------------------------------- save -> load


LAYERS = [
    ("RNN", dict(nonlinearity="relu", num_layers=2, batch_first=True)),
    ("RNN", dict(bidirectional=True, bias=False)),
    ("LSTM", dict(num_layers=2, bidirectional=True, proj_size=2)),
    ("LSTM", dict(peephole=True, batch_first=True)),
    ("LSTM", dict(peephole=True, proj_size=3, bias=False)),
    ("GRU", dict(linear_before_reset=False, bidirectional=True, num_layers=2)),
    ("GRU", dict(batch_first=True)),
]
ATTRS = ("mode", "input_size", "hidden_size", "num_layers", "bias", "batch_first",
         "bidirectional", "proj_size", "peephole", "nonlinearity", "linear_before_reset")


@pytest.mark.parametrize("cls,kwargs", LAYERS, ids=[f"{c}-{i}" for i, (c, _) in enumerate(LAYERS)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("fmt", ["npz", "safetensors"])
def test_save_load_round_trip(tmp_path, cls, kwargs, dtype, fmt):
    fastrnn = need_layers()
    if fmt == "safetensors":
        need("safetensors")
    layer = getattr(fastrnn, cls)(3, 5, dtype=dtype, seed=7, **kwargs)
    path = tmp_path / f"m.{fmt}"
    layer.save(path)
    back = fastrnn.load(path)
    assert type(back) is type(layer)
    for attr in ATTRS:
        if hasattr(layer, attr):
            assert getattr(back, attr) == getattr(layer, attr), attr
    assert np.dtype(back.dtype) == np.dtype(dtype)
    want, got = layer.state_dict(), back.state_dict()
    assert want.keys() == got.keys()
    for k in want:
        assert got[k].dtype == want[k].dtype and np.array_equal(got[k], want[k]), k
    x = np.random.default_rng(0).standard_normal((T, B, 3) if not layer.batch_first else (B, T, 3))
    for a, b in zip(layer_run(layer, x), layer_run(back, x)):
        if a is not None:
            assert np.array_equal(a, b)
    # The module-level spelling, and a reloaded file saved again is identical.
    save(back, tmp_path / f"again.{fmt}")
    spec1, spec2 = read(path), read(tmp_path / f"again.{fmt}")
    assert spec1.class_name == spec2.class_name and spec1.kwargs == spec2.kwargs


CELLS = [("RNNCell", dict(nonlinearity="relu")), ("RNNCell", dict(bias=False)),
         ("LSTMCell", {}), ("GRUCell", {})]


@pytest.mark.parametrize("cls,kwargs", CELLS, ids=[f"{c}-{i}" for i, (c, _) in enumerate(CELLS)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("fmt", ["npz", "safetensors"])
def test_save_load_cells(tmp_path, cls, kwargs, dtype, fmt):
    fastrnn = need_layers()
    cells = need("fastrnn.cells")
    cell = getattr(cells, cls)(3, 4, dtype=dtype, seed=3, **kwargs)
    save(cell, tmp_path / f"c.{fmt}")
    back = fastrnn.load(tmp_path / f"c.{fmt}")
    assert type(back) is type(cell)
    for k, v in cell.state_dict().items():
        assert back.state_dict()[k].dtype == v.dtype and np.array_equal(back.state_dict()[k], v)
    if cls == "RNNCell":
        assert back.nonlinearity == cell.nonlinearity


def test_save_refuses(tmp_path):
    fastrnn = need_layers()
    layer = fastrnn.GRU(3, 4)
    for bad in ("m.pt", "m.onnx", "m", "m.npy"):
        with pytest.raises(ValueError, match=r"fastrnn saves to \.npz or \.safetensors"):
            save(layer, tmp_path / bad)
    with pytest.raises(TypeError, match="expected a fastrnn RNN"):
        save(object(), tmp_path / "m.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    # a folder that does not exist: the error names the file asked for, not a temporary
    for write in (layer.save, lambda p: fastrnn.save_model(fastrnn.Sequential(layer), p)):
        with pytest.raises(FileNotFoundError, match="cannot write .*no/such/m.npz"):
            write(tmp_path / "no" / "such" / "m.npz")
    deep = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(ValueError, match="nested too deeply"):
        fastrnn.save_model(fastrnn.Sequential(layer), tmp_path / "m.npz", meta={"a": deep})
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_bytes_paths_save_as_they_load(tmp_path):
    fastrnn = need_layers()
    layer = fastrnn.GRU(3, 4, seed=0)
    for name in ("m.npz", "m.safetensors") if need("safetensors") else ("m.npz",):
        path = os.fsencode(tmp_path / name)
        layer.save(path)
        assert fastrnn.load(path).state_dict()["weight_hh_l0"].tobytes() == \
            layer.state_dict()["weight_hh_l0"].tobytes()
    fastrnn.save_model(fastrnn.Sequential(layer), os.fsencode(tmp_path / "whole.npz"))
    assert isinstance(fastrnn.load(os.fsencode(tmp_path / "whole.npz")), fastrnn.Sequential)


def test_saved_npz_holds_no_object_array(tmp_path):
    fastrnn = need_layers()
    fastrnn.LSTM(3, 4, peephole=True).save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:
        meta = json.loads(z["__fastrnn__"].tobytes())
    assert meta["class"] == "LSTM" and meta["hyperparameters"]["peephole"] is True
    assert meta["hyperparameters"]["dtype"] == "float32"


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_dropout_round_trips_and_overrides(tmp_path, suffix):
    """dropout (torch's argument, never applied) is a hyperparameter like the others:
    saved and loaded back, taken from a whole torch module, and an override."""
    layer = fastrnn.LSTM(3, 4, 2, dropout=0.3, seed=0)
    path = tmp_path / f"m{suffix}"
    layer.save(path)
    assert fastrnn.load(path).dropout == 0.3
    assert fastrnn.load(path, dropout=0.1).dropout == 0.1
    with pytest.raises(ValueError, match=r"override dropout=2; expected a probability"):
        fastrnn.load(path, dropout=2)
    fastrnn.GRUCell(3, 4).save(path)
    with pytest.raises(ValueError, match="override 'dropout' does not apply to the GRUCell"):
        fastrnn.load(path, dropout=0.1)
    torch = need("torch")
    torch.save(torch.nn.GRU(3, 4, 2, dropout=0.25), tmp_path / "t.pt")
    assert fastrnn.load(tmp_path / "t.pt").dropout == 0.25
