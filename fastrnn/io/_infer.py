"""Hyperparameters of a recurrent layer from its weights, its file and overrides.

Every reader hands over a :class:`Found`: arrays under PyTorch's names plus
whatever the file itself says.  :func:`resolve` then decides, in this order:

1. the weights decide the cell kind (gate count), input/hidden sizes,
   num_layers, bidirectional, bias, proj_size and peepholes -- an override of
   one of these must agree with them;
2. what the weights cannot tell (RNN ``nonlinearity``, GRU
   ``linear_before_reset``, ``batch_first``) comes from an override, else the
   file, else PyTorch's default (tanh, True, False);
3. ``dtype`` comes from an override, else the file (a file fastrnn saved),
   else float64 when every weight is float64, else float32.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from .. import _validate, _weights
from ..errors import ModelFileError

__all__ = ["Found", "resolve", "build"]

_LAYER_KEY = re.compile(
    r"^(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr|weight_peephole)_l(\d+)(_reverse)?$"
)
_CELL_KEYS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
_GATES = {1: "RNN", 3: "GRU", 4: "LSTM"}
_KIND_GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}

# Overrides each class accepts; the first group must agree with the weights.
_FROM_WEIGHTS = (
    "input_size", "hidden_size", "num_layers", "bias", "bidirectional",
    "proj_size", "peephole",
)
_ALLOWED = {
    "RNN": ("input_size", "hidden_size", "num_layers", "bias", "bidirectional",
            "batch_first", "dropout", "nonlinearity", "dtype"),
    "LSTM": ("input_size", "hidden_size", "num_layers", "bias", "bidirectional",
             "batch_first", "dropout", "proj_size", "peephole", "dtype"),
    "GRU": ("input_size", "hidden_size", "num_layers", "bias", "bidirectional",
            "batch_first", "dropout", "linear_before_reset", "dtype"),
    "RNNCell": ("input_size", "hidden_size", "bias", "nonlinearity", "dtype"),
    "LSTMCell": ("input_size", "hidden_size", "bias", "dtype"),
    "GRUCell": ("input_size", "hidden_size", "bias", "dtype"),
}
ALL_OVERRIDES = tuple(
    sorted({name for names in _ALLOWED.values() for name in names})
)


@dataclasses.dataclass
class Found:
    """What a reader found in a file.

    arrays: name -> floating NumPy array, under PyTorch's state_dict names.
    source: the file, for messages (already quoted).
    kind: "RNN" | "LSTM" | "GRU" when the file says so (a torch module, an
        ONNX node, fastrnn metadata), else None.
    cell: True/False when the file says it holds a cell/layer, else None.
    hparams: hyperparameters the file states (batch_first, nonlinearity,
        linear_before_reset, dtype, and sizes to cross-check).
    """

    arrays: dict
    source: str
    kind: str | None = None
    cell: bool | None = None
    hparams: dict = dataclasses.field(default_factory=dict)


def _fail(found: Found, message: str):
    raise ModelFileError(f"{found.source}: {message}")


def _describe_keys(keys, limit=8) -> str:
    keys = sorted(keys)
    shown = ", ".join(repr(k) for k in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _check_arrays(found: Found):
    if not found.arrays:
        _fail(found, "holds no tensors; expected the weights of an RNN, LSTM or GRU")
    for name, value in found.arrays.items():
        if not isinstance(name, str):
            _fail(found, f"has a tensor named {name!r}; names must be strings")
        if not isinstance(value, np.ndarray):
            _fail(found, f"entry {name!r} is a {type(value).__name__}, not a tensor")
        if value.dtype.kind != "f":
            _fail(
                found,
                f"tensor {name!r} has dtype {value.dtype}; weights must be "
                "float16, bfloat16, float32 or float64",
            )


def _strip_prefix(found: Found) -> dict:
    """Drop a common module prefix such as 'lstm.' or 'module.rnn.'."""
    arrays = found.arrays
    names = list(arrays)
    if not all("." in n for n in names):
        return arrays
    prefixes = {n.rsplit(".", 1)[0] + "." for n in names}
    if len(prefixes) != 1:
        return arrays
    (prefix,) = prefixes
    return {n[len(prefix):]: v for n, v in arrays.items()}


def _infer_layer(found: Found, arrays: dict) -> dict:
    entries = {}
    unknown = []
    for name in arrays:
        m = _LAYER_KEY.match(name)
        if m is None:
            unknown.append(name)
        else:
            entries[name] = (m.group(1), int(m.group(2)), bool(m.group(3)))
    if unknown:
        _fail(
            found,
            f"keys {_describe_keys(unknown)} are not weights of one RNN, LSTM "
            f"or GRU (found {_describe_keys(arrays)}); expected "
            "weight_ih_l{k}, weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k}, "
            "weight_hr_l{k}, weight_peephole_l{k} with optional _reverse",
        )
    layers = sorted({k for _, k, _ in entries.values()})
    num_layers = len(layers)
    if layers[-1] != num_layers - 1:  # sorted and distinct: this means 0..n-1
        shown = layers if num_layers <= 8 else layers[:4] + ["..."] + layers[-2:]
        _fail(found, f"has weights for layers {shown}; expected layers 0..{num_layers - 1}")
    bidirectional = any(rev for _, _, rev in entries.values())
    kinds = {kind for kind, _, _ in entries.values()}
    bias = "bias_ih" in kinds or "bias_hh" in kinds
    proj = "weight_hr" in kinds
    peephole = "weight_peephole" in kinds
    if "weight_hh_l0" not in arrays or "weight_ih_l0" not in arrays:
        _fail(found, "has no weight_ih_l0 / weight_hh_l0; they are required")
    w_hh = arrays["weight_hh_l0"]
    if w_hh.ndim != 2:
        _fail(found, f"weight_hh_l0 has shape {w_hh.shape}; expected 2-D")
    if proj:
        w_hr = arrays.get("weight_hr_l0")
        if w_hr is None or w_hr.ndim != 2:
            _fail(found, "has weight_hr_* but no 2-D weight_hr_l0")
        proj_size, hidden = w_hr.shape
    else:
        proj_size, hidden = 0, w_hh.shape[1]
    if hidden < 1 or w_hh.shape[0] % hidden:
        _fail(
            found,
            f"weight_hh_l0 has shape {w_hh.shape}, which is not (G*H, H) for "
            "G = 1 (RNN), 3 (GRU) or 4 (LSTM)",
        )
    gates = w_hh.shape[0] // hidden
    if gates not in _GATES:
        _fail(
            found,
            f"weight_hh_l0 has shape {w_hh.shape}: {gates} gates of {hidden} "
            "units; expected 1 (RNN), 3 (GRU) or 4 (LSTM)",
        )
    kind = _GATES[gates]
    if found.kind is not None and found.kind != kind:
        _fail(
            found,
            f"the file says {found.kind} but weight_hh_l0 has shape "
            f"{w_hh.shape}, {gates} gate(s) -- a {kind}",
        )
    if (proj or peephole) and kind != "LSTM":
        what = "weight_hr" if proj else "weight_peephole"
        _fail(found, f"has {what}_* weights, which only an LSTM has, but is a {kind}")
    w_ih = arrays["weight_ih_l0"]
    if w_ih.ndim != 2:
        _fail(found, f"weight_ih_l0 has shape {w_ih.shape}; expected 2-D")
    input_size = w_ih.shape[1]
    if input_size < 1:
        _fail(found, f"weight_ih_l0 has shape {w_ih.shape}; input_size must be >= 1")
    h_out = proj_size or hidden
    D = 2 if bidirectional else 1
    expected = {}
    for k in range(num_layers):
        for sfx in ("", "_reverse")[:D]:
            in_k = input_size if k == 0 else D * h_out
            expected[f"weight_ih_l{k}{sfx}"] = (gates * hidden, in_k)
            expected[f"weight_hh_l{k}{sfx}"] = (gates * hidden, h_out)
            if bias:
                expected[f"bias_ih_l{k}{sfx}"] = (gates * hidden,)
                expected[f"bias_hh_l{k}{sfx}"] = (gates * hidden,)
            if proj:
                expected[f"weight_hr_l{k}{sfx}"] = (proj_size, hidden)
            if peephole:
                expected[f"weight_peephole_l{k}{sfx}"] = (3, hidden)
    _compare(found, arrays, expected)
    return dict(
        kind=kind, cell=False, input_size=input_size, hidden_size=hidden,
        num_layers=num_layers, bias=bias, bidirectional=bidirectional,
        proj_size=proj_size, peephole=peephole,
    )


def _compare(found: Found, arrays: dict, expected: dict):
    missing = [k for k in expected if k not in arrays]
    unexpected = [k for k in arrays if k not in expected]
    wrong = [
        f"{k} has shape {tuple(arrays[k].shape)}, expected {shape}"
        for k, shape in expected.items()
        if k in arrays and tuple(arrays[k].shape) != shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {_describe_keys(missing)}")
    if unexpected:
        problems.append(f"unexpected {_describe_keys(unexpected)}")
    problems += wrong
    if problems:
        _fail(found, "the weights do not form one recurrent layer: " + "; ".join(problems))


def _infer_cell(found: Found, arrays: dict) -> dict:
    w_ih, w_hh = arrays.get("weight_ih"), arrays.get("weight_hh")
    if w_ih is None or w_hh is None or w_ih.ndim != 2 or w_hh.ndim != 2:
        _fail(found, "a cell needs 2-D weight_ih and weight_hh")
    hidden = w_hh.shape[1]
    if hidden < 1 or w_hh.shape[0] % hidden or w_hh.shape[0] // hidden not in _GATES:
        _fail(
            found,
            f"weight_hh has shape {w_hh.shape}, which is not (G*H, H) for "
            "G = 1 (RNNCell), 3 (GRUCell) or 4 (LSTMCell)",
        )
    gates = w_hh.shape[0] // hidden
    kind = _GATES[gates]
    if found.kind is not None and found.kind != kind:
        _fail(found, f"the file says {found.kind}Cell but weight_hh has shape {w_hh.shape}")
    bias = "bias_ih" in arrays or "bias_hh" in arrays
    input_size = w_ih.shape[1]
    if input_size < 1:
        _fail(found, f"weight_ih has shape {w_ih.shape}; input_size must be >= 1")
    expected = {"weight_ih": (gates * hidden, input_size), "weight_hh": (gates * hidden, hidden)}
    if bias:
        expected["bias_ih"] = expected["bias_hh"] = (gates * hidden,)
    _compare(found, arrays, expected)
    return dict(kind=kind, cell=True, input_size=input_size, hidden_size=hidden, bias=bias)


def _is_bool(value) -> bool:
    return isinstance(value, (bool, np.bool_))


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not _is_bool(value)


def _dtype_name(value):
    if value is None:  # np.dtype(None) is float64: None must not silently mean that
        return None
    try:
        dt = np.dtype(value)
    except (TypeError, ValueError):
        return None
    return dt.name if dt in (np.dtype(np.float32), np.dtype(np.float64)) else None


def _or_none(check, name, value):
    """check(name, value), or None where it raises."""
    try:
        return check(name, value)
    except (TypeError, ValueError):
        return None


# name -> (normaliser returning None when the value is not allowed, allowed text)
_FREE = {
    "batch_first": (lambda v: bool(v) if _is_bool(v) else None, "True or False"),
    "linear_before_reset": (lambda v: bool(v) if _is_bool(v) else None, "True or False"),
    "nonlinearity": (lambda v: v if v in ("tanh", "relu") else None, "'tanh' or 'relu'"),
    "dtype": (_dtype_name, "'float32' or 'float64'"),
    "dropout": (lambda v: _or_none(_validate.probability, "dropout", v), "a probability in [0, 1]"),
}


def _choose(name, overrides, found: Found, default):
    """An override, else what the file says, else ``default``; each checked."""
    normalise, allowed = _FREE[name]
    if name in overrides:
        value = normalise(overrides[name])
        if value is None:
            raise ValueError(f"override {name}={overrides[name]!r}; expected {allowed}")
        return value
    if name in found.hparams:
        value = normalise(found.hparams[name])
        if value is None:
            _fail(found, f"the file says {name}={found.hparams[name]!r}; expected {allowed}")
        return value
    return default


def resolve(found: Found, overrides: dict) -> tuple[str, dict, dict]:
    """Decide the class, constructor arguments and state_dict.

    Returns ``(class_name, kwargs, state_dict)`` where ``class_name`` is one
    of RNN, LSTM, GRU, RNNCell, LSTMCell, GRUCell, ``kwargs`` are keyword
    arguments of that constructor (sizes included) and ``state_dict`` holds
    the arrays in the chosen dtype.

    Raises
    ------
    ModelFileError
        The arrays are not the weights of one recurrent layer or cell.
    ValueError
        An override is unknown, does not apply, or contradicts the weights.
    """
    unknown = sorted(set(overrides) - set(ALL_OVERRIDES))
    if unknown:
        raise ValueError(
            f"unknown override(s) {', '.join(map(repr, unknown))} for "
            f"fastrnn.load; allowed: {', '.join(ALL_OVERRIDES)}"
        )
    _check_arrays(found)
    arrays = _strip_prefix(found)
    is_cell = found.cell
    if is_cell is None:
        is_cell = set(arrays) <= set(_CELL_KEYS)
    inferred = _infer_cell(found, arrays) if is_cell else _infer_layer(found, arrays)
    kind = inferred.pop("kind")
    inferred.pop("cell")
    cls = kind + ("Cell" if is_cell else "")
    allowed = _ALLOWED[cls]
    for name, value in overrides.items():
        if name not in allowed:
            raise ValueError(
                f"override {name!r} does not apply to the {cls} in {found.source}; "
                f"a {cls} takes {', '.join(allowed)}"
            )
        if name in _FROM_WEIGHTS:
            if isinstance(inferred[name], bool):
                ok = _is_bool(value) and bool(value) == inferred[name]
            else:
                ok = _is_int(value) and int(value) == inferred[name]
            if not ok:
                raise ValueError(
                    f"override {name}={value!r} contradicts the weights in "
                    f"{found.source}, which have {name}={inferred[name]!r}"
                )
    for name, value in found.hparams.items():
        if name in inferred and not (
            (_is_bool(value) or _is_int(value)) and value == inferred[name]
        ):
            _fail(
                found,
                f"the file says {name}={value!r} but its weights have "
                f"{name}={inferred[name]!r}",
            )
    kwargs = dict(inferred)
    if kind == "RNN":
        kwargs["nonlinearity"] = _choose("nonlinearity", overrides, found, "tanh")
    if not is_cell:
        kwargs["batch_first"] = _choose("batch_first", overrides, found, False)
        kwargs["dropout"] = _choose("dropout", overrides, found, 0.0)
        if kind == "GRU":
            kwargs["linear_before_reset"] = _choose(
                "linear_before_reset", overrides, found, True
            )
        if kind != "LSTM":
            del kwargs["proj_size"], kwargs["peephole"]
    weights64 = all(a.dtype == np.float64 for a in arrays.values())
    dtype = _choose("dtype", overrides, found, "float64" if weights64 else "float32")
    kwargs["dtype"] = dtype
    state = {k: np.ascontiguousarray(v, dtype=dtype) for k, v in arrays.items()}
    return cls, kwargs, state


def build(cls_name: str, kwargs: dict, state: dict, source: str):
    """Construct the fastrnn layer or cell and load ``state`` into it."""
    kwargs = dict(kwargs)
    if cls_name.endswith("Cell"):
        from .. import cells as module
    else:
        from .. import layers as module
    cls = getattr(module, cls_name)
    input_size = kwargs.pop("input_size")
    hidden_size = kwargs.pop("hidden_size")
    # No initial weights to draw and then throw away: the file's replace them all
    with _weights.placeholders() as made:
        try:
            if cls_name.endswith("Cell"):
                obj = cls(input_size, hidden_size, **kwargs)
            else:
                obj = cls(input_size, hidden_size, kwargs.pop("num_layers"), **kwargs)
        except ValueError as exc:  # every size came from the file's weights
            raise ModelFileError(f"{source}: {exc}") from exc
    try:
        obj.load_state_dict(state, strict=True)
    except ValueError as exc:
        raise ModelFileError(f"{source}: {exc}") from exc
    layer = obj._layer if cls_name.endswith("Cell") else obj
    _weights.check_replaced(made, layer._params.values())
    return obj
