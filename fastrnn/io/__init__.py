"""Loading and saving recurrent models: ``fastrnn.load`` and ``layer.save``.

Formats read by :func:`load`:

========================  ===================================================
``.pt`` / ``.pth``        ``torch.save`` of a state_dict, a whole nn.RNN /
                          nn.LSTM / nn.GRU (or cell), zip or legacy format;
                          read without torch, never running pickled code
``.safetensors``          arrays under PyTorch names (needs ``safetensors``)
``.npz``                  arrays under PyTorch names (``allow_pickle=False``)
``.onnx``                 ONNX LSTM / GRU / RNN nodes (needs ``onnx``)
========================  ===================================================

:func:`save` writes ``.npz`` or ``.safetensors`` with every hyperparameter.
"""

from __future__ import annotations

import contextlib
import os
import zipfile
from typing import NamedTuple

import numpy as np

from ..errors import ModelFileError, UnsafeModelError
from . import _arrays, _infer, _onnx, _pickle
from ._save import save

__all__ = ["load", "save", "read", "ModelSpec", "LOAD_SUFFIXES"]

LOAD_SUFFIXES = (".pt", ".pth", ".safetensors", ".npz", ".onnx")


class ModelSpec(NamedTuple):
    """What :func:`read` found: the class to build and what to build it with."""

    class_name: str  #: "RNN", "LSTM", "GRU", "RNNCell", "LSTMCell" or "GRUCell"
    kwargs: dict  #: constructor arguments, sizes and dtype included
    state_dict: dict  #: NumPy arrays under PyTorch's names, in kwargs["dtype"]


def _found_from_pt(obj, source: str) -> _infer.Found:
    def is_state_dict(value):
        return (
            isinstance(value, dict)
            and bool(value)
            and all(isinstance(v, np.ndarray) for v in value.values())
        )

    if isinstance(obj, _pickle.TorchModule):
        return _found_from_module(obj, source)
    if is_state_dict(obj):
        return _infer.Found(arrays=dict(obj), source=source)
    if isinstance(obj, dict):
        inner = [
            (k, v) for k, v in obj.items()
            if isinstance(v, _pickle.TorchModule) or is_state_dict(v)
        ]
        if len(inner) == 1:
            key, value = inner[0]
            return _found_from_pt(value, f"{source}[{key!r}]")
        keys = ", ".join(repr(k) for k in list(obj)[:8])
        raise ModelFileError(
            f"{source} holds a dict with keys {keys or '(none)'}, which is neither "
            "a state_dict (names -> tensors) nor holds exactly one; expected "
            "the state_dict of an RNN/LSTM/GRU or the module itself"
        )
    if isinstance(obj, np.ndarray):
        what = f"a single tensor of shape {obj.shape}"
    else:
        what = f"a {type(obj).__name__}"
    raise ModelFileError(
        f"{source} holds {what}; expected the state_dict of an RNN/LSTM/GRU "
        "(or cell) or the module itself"
    )


def _found_from_module(obj, source: str) -> _infer.Found:

    name = type(obj).torch_class
    if name not in _pickle._RNN_MODULES:
        raise ModelFileError(
            f"{source} holds a torch {name}; expected an RNN/LSTM/GRU module or state_dict"
        )
    state = obj.module_state
    params = state.get("_parameters")
    if not isinstance(params, dict):
        raise ModelFileError(f"{source}: the torch.nn.{name} has no parameter dict")
    if state.get("_modules"):
        raise ModelFileError(
            f"{source}: the torch.nn.{name} has submodules "
            f"{list(state['_modules'])}; expected a plain {name}"
        )
    arrays = {}
    for key, value in params.items():
        if value is None:
            continue
        if not isinstance(value, np.ndarray):
            raise ModelFileError(
                f"{source}: parameter {key!r} of the torch.nn.{name} is a "
                f"{type(value).__name__}, not a tensor"
            )
        arrays[key] = value
    hparams = {}
    keys = ("input_size", "hidden_size", "bias")
    if not name.endswith("Cell"):
        keys += ("num_layers", "bidirectional", "batch_first", "dropout")
        if name == "LSTM":
            keys += ("proj_size",)
    for key in keys:
        if key in state:
            hparams[key] = state[key]
    if name in ("RNN", "RNNCell"):
        nonlinearity = state.get("nonlinearity")
        if nonlinearity is None and state.get("mode") in ("RNN_TANH", "RNN_RELU"):
            nonlinearity = state["mode"][4:].lower()
        hparams["nonlinearity"] = nonlinearity or "tanh"
    return _infer.Found(
        arrays=arrays,
        source=f"{source} (torch.nn.{name})",
        kind=name.replace("Cell", ""),
        cell=name.endswith("Cell"),
        hparams=hparams,
    )


def _read_found(path) -> _infer.Found:
    fspath = os.fsdecode(os.fspath(path))  # a bytes path too
    source = repr(fspath)
    suffix = os.path.splitext(fspath)[1].lower()
    if suffix not in LOAD_SUFFIXES:
        raise ModelFileError(
            f"model file {source} has suffix {suffix or '(none)'!r}; fastrnn.load "
            f"reads {', '.join(LOAD_SUFFIXES)}"
        )
    if not os.path.isfile(fspath):
        raise FileNotFoundError(f"model file {source} does not exist or is not a file")
    with _reading(source):
        if suffix in (".pt", ".pth"):
            return _found_from_pt(_pickle.load_pt(fspath), source)
        if suffix == ".npz":
            return _arrays.load_npz(fspath, source)
        if suffix == ".safetensors":
            return _arrays.load_safetensors(fspath, source)
        return _onnx.load_onnx(fspath, source)


@contextlib.contextmanager
def _reading(source):
    """Around a reader: its own errors and missing files pass; a reader's library
    failing on a corrupt file in any other way becomes a ModelFileError naming it."""
    try:
        yield
    except (ModelFileError, FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except RecursionError as exc:
        raise ModelFileError(f"{source}: the file nests too deeply to read") from exc
    except MemoryError as exc:
        raise ModelFileError(f"{source}: the file asks for more memory than there is") from exc
    except Exception as exc:
        raise ModelFileError(
            f"{source}: corrupt or unreadable ({type(exc).__name__}: {exc})"
        ) from exc


def read(path, **overrides) -> ModelSpec:
    """Read a model file without building a layer.

    Same rules and errors as :func:`load`; returns the class name, the
    constructor arguments and the state_dict that :func:`load` would use.
    """
    found = _read_found(path)
    return ModelSpec(*_infer.resolve(found, overrides))


def load(path, **overrides):
    """Load a recurrent layer or cell from a model file.

    Parameters
    ----------
    path : str or os.PathLike
        ``.pt``/``.pth`` (torch.save'd state_dict or whole nn.RNN/LSTM/GRU or
        cell; torch is not needed and no pickled code runs), ``.safetensors``,
        ``.npz`` or ``.onnx``; a ``.npz`` written by ``fastrnn.save_model`` loads
        the whole model (as ``fastrnn.load_model``).
    **overrides
        Constructor arguments.  ``batch_first``, ``dropout`` (layers; never
        applied), ``nonlinearity`` (RNN), ``linear_before_reset`` (GRU) and
        ``dtype`` ("float32"/"float64") win over the file; sizes, ``num_layers``, ``bias``,
        ``bidirectional``, ``proj_size`` and ``peephole`` must agree with
        the weights.

    Returns
    -------
    RNN, LSTM, GRU, RNNCell, LSTMCell or GRUCell
        With the file's weights.  Hyperparameters the weights cannot show
        come from the overrides, else the file (a whole torch module's
        attributes, an ONNX node's attributes, fastrnn's metadata), else
        PyTorch's defaults (tanh, linear_before_reset=True,
        batch_first=False, dropout=0).  dtype: the override, else the file's (fastrnn
        files), else float64 if every weight is float64, else float32.

    Raises
    ------
    UnsafeModelError
        A .pt pickle asks for more than tensor rebuilding, or a .npz holds
        an object array.
    ModelFileError
        The file is corrupt, truncated, unsupported, or not a recurrent
        model; a needed optional package (onnx, safetensors) is missing.
    ValueError
        An override is unknown, does not apply, or contradicts the weights.
    FileNotFoundError
        There is no such file.
    """
    if _is_whole_model(path):  # written by fastrnn.save_model
        from ..models._sequential import _read_model

        if overrides:
            raise ValueError(
                f"{os.fsdecode(os.fspath(path))!r} is a whole model (fastrnn.save_model); "
                f"overrides ({', '.join(sorted(overrides))}) apply to single layers only"
            )
        return _load_whole_model(_read_model, path)
    found = _read_found(path)
    cls, kwargs, state = _infer.resolve(found, overrides)
    return _infer.build(cls, kwargs, state, found.source)


def _load_whole_model(reader, path):
    """A whole-model reader behind the same guards as the layer readers: no decompression
    bomb, an object array is UnsafeModelError, and a reader failing on a corrupt
    file any other way is a ModelFileError."""
    fspath = os.fsdecode(os.fspath(path))
    source = repr(fspath)
    with _reading(source):
        with zipfile.ZipFile(fspath) as zf:
            _pickle.check_zip_sizes(zf, source)
            for info in zf.infolist():
                with zf.open(info) as f:  # the .npy header only, nothing inflated beyond it
                    try:
                        version = np.lib.format.read_magic(f)
                        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                else np.lib.format.read_array_header_2_0)
                        dtype = read(f)[2]
                    except Exception:  # not a .npy: the reader says what is wrong
                        continue
                if dtype.hasobject:
                    raise UnsafeModelError(
                        f"{source}: entry {info.filename!r} is an object array, which would "
                        "need pickle to load; refused -- weights must be numeric arrays"
                    )
        return reader(fspath)


def _is_whole_model(path) -> bool:
    """A .npz with fastrnn.save_model's structure entry (read without pickle)."""
    fspath = os.fsdecode(os.fspath(path))
    if not fspath.lower().endswith(".npz") or not os.path.isfile(fspath):
        return False
    try:
        with np.load(fspath, allow_pickle=False) as npz:
            return "__fastrnn_model__" in npz.files
    except Exception:  # not a readable npz: the normal path says why
        return False
