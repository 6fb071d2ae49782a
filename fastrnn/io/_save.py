"""``fastrnn.io.save``: weights plus every hyperparameter, read back bit-exact."""

from __future__ import annotations

import json
import os

import numpy as np

from . import _arrays

__all__ = ["save", "SUFFIXES"]

SUFFIXES = (".npz", ".safetensors")

_LAYER_HP = ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout",
             "bidirectional")
_EXTRA_HP = {
    "RNN": ("nonlinearity",),
    "LSTM": ("proj_size", "peephole"),
    "GRU": ("linear_before_reset",),
    "RNNCell": ("nonlinearity",),
    "LSTMCell": (),
    "GRUCell": (),
}


def _class_name(obj) -> str:
    for klass in type(obj).__mro__:
        if klass.__name__ in _EXTRA_HP and klass.__module__.startswith("fastrnn"):
            return klass.__name__
    raise TypeError(
        f"fastrnn.save got a {type(obj).__name__}; expected a fastrnn RNN, LSTM, "
        "GRU, RNNCell, LSTMCell or GRUCell"
    )


def _plain(value):
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    return value


def describe(obj) -> tuple[str, dict]:
    """The class name and JSON-ready hyperparameters of a layer or cell."""
    cls = _class_name(obj)
    names = ("input_size", "hidden_size", "bias") if cls.endswith("Cell") else _LAYER_HP
    hp = {name: _plain(getattr(obj, name)) for name in names + _EXTRA_HP[cls]}
    if hp.get("dropout") == 0:  # the default: files stay readable by versions without it
        del hp["dropout"]
    dtype = getattr(obj, "dtype", None)
    if dtype is None:
        dtype = next(iter(obj.state_dict().values())).dtype
    hp["dtype"] = np.dtype(dtype).name
    return cls, hp


def save(obj, path) -> None:
    """Write a fastrnn layer or cell to ``.npz`` or ``.safetensors``.

    The file holds the state_dict under PyTorch's names, in the layer's
    dtype, and every hyperparameter as JSON (``.npz``: the uint8 entry
    ``__fastrnn__``; ``.safetensors``: the metadata entry ``fastrnn``), so
    :func:`fastrnn.load` rebuilds the same layer to the bit.  The file is
    written to a temporary name and renamed into place.

    Parameters
    ----------
    obj : RNN, LSTM, GRU, RNNCell, LSTMCell or GRUCell
    path : str or os.PathLike
        Ends in ``.npz`` or ``.safetensors`` (any case).

    Raises
    ------
    ValueError
        Another suffix.
    ModelFileError
        ``.safetensors`` without the ``safetensors`` package installed.
    """
    fspath = os.fsdecode(os.fspath(path))  # bytes paths too, as load takes them
    suffix = os.path.splitext(fspath)[1].lower()
    if suffix not in SUFFIXES:
        raise ValueError(
            f"path {fspath!r} ends in {suffix or 'no suffix'!r}; fastrnn saves "
            f"to {' or '.join(SUFFIXES)}"
        )
    cls, hp = describe(obj)
    arrays = {
        str(k): np.ascontiguousarray(np.asarray(v)) for k, v in obj.state_dict().items()
    }
    meta = json.dumps(
        {"format": "fastrnn", "version": _arrays.FORMAT_VERSION, "class": cls,
         "hyperparameters": hp},
        sort_keys=True,
    )
    if suffix == ".npz":
        _arrays.write_npz(fspath, arrays, meta)
    else:
        _arrays.write_safetensors(fspath, arrays, meta)
