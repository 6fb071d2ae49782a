"""Cells: one time step with PyTorch's call signature (SPEC §2).

A cell is a one-layer, unidirectional layer run for a single step; its weights
carry the cell names of torch (``weight_ih``, ``weight_hh``, ``bias_ih``,
``bias_hh``).
"""

from __future__ import annotations

import numpy as np

from . import _kernels
from . import _validate as v
from .layers import GRU, LSTM, RNN, _is_torch_module, _module_dtype

__all__ = ["RNNCell", "LSTMCell", "GRUCell"]


# engine streams a cell keeps, one per batch size it was last called with
_CELL_STREAMS = 4


class _CellBase(v.Fixed):
    """A cell runs its layer's engine one step at a time. A call whose arrays are
    already what the engine reads (C-contiguous, of the cell's dtype and shapes)
    takes one C call on an engine stream kept for its batch size, the state passed
    in and out (_kernels.Stream.cell); any other is checked and converted first,
    then runs the same way. Results are bitwise those of the layer on one step."""

    _layer_cls = None
    _fixed = frozenset({"input_size", "hidden_size", "bias", "dtype", "nonlinearity", "_layer"})
    # batch size -> engine stream, and the one the last call used; not copied
    _engine = ("_streams", "_last")
    _streams = None
    _last = None

    def _init(self, layer):
        self._layer = layer
        self.input_size = layer.input_size
        self.hidden_size = layer.hidden_size
        self.bias = layer.bias
        self.dtype = layer.dtype

    @property
    def mode(self) -> str:
        return self._layer.mode

    def state_dict(self) -> dict[str, np.ndarray]:
        """Weights under torch's cell names (copies)."""
        return {k[: -len("_l0")]: a for k, a in self._layer.state_dict().items()}

    def load_state_dict(self, state_dict, strict: bool = True) -> None:
        """Load weights (NumPy arrays or torch tensors) under torch's cell names;
        errors as for layers (SPEC §2): ValueError listing every missing and
        unexpected key and every mismatched shape, nothing loaded on failure."""
        # Checked here under the cell's names (not the inner layer's "_l0" names), so
        # a layer's keys are unexpected for a cell, as in torch, and messages name
        # the keys the caller gave.
        shapes = {k[: -len("_l0")]: s for k, s in self._layer._param_shapes().items()}
        arrays = v.state_dict_arrays(state_dict, strict, shapes, self.dtype, repr(self), "cell")
        new = {name + "_l0": arr for name, arr in arrays.items()}
        self._layer.load_state_dict(new, strict=False)

    def _names(self):
        return [k[: -len("_l0")] for k in self._layer._param_shapes()]

    def save(self, path) -> None:
        from .io import save

        save(self, path)

    def _stream(self, B: int):
        """The engine stream for B rows of the current weights (made or remade as
        needed), or None when it cannot be made: the call then runs the layer."""
        plan = self._layer._packed()
        streams = self._streams
        if streams is None:
            streams = self._streams = {}
        s = streams.get(B)
        if s is None or s.plan is not plan:
            if len(streams) >= _CELL_STREAMS:
                streams.pop(next(iter(streams), None), None)
            try:
                s = _kernels.Stream(plan, B, self.input_size, self.hidden_size,
                                    self.dtype == np.float64)
            except MemoryError:
                return None
            streams[B] = s
        self._last = s
        return s

    def _step(self, x, h, c, hname="h"):
        x = v.numeric("x", x)  # converted once its shape is known to be right
        if x.ndim not in (1, 2):
            raise ValueError(
                f"x must be 2-D (B, input_size) or 1-D (input_size,); got shape {x.shape}"
            )
        unbatched = x.ndim == 1
        if x.shape[-1] != self.input_size:
            raise ValueError(
                f"x has {x.shape[-1]} features (shape {x.shape}) but the cell's input_size is "
                f"{self.input_size}"
            )
        B = 1 if unbatched else x.shape[0]
        if B > v.INT32_MAX:
            raise ValueError(f"x has shape {x.shape}: more than {v.INT32_MAX} sequences in one "
                             "call; split it")
        x = v.convert(x, self.dtype)
        hshape = (self.hidden_size,) if unbatched else (B, self.hidden_size)
        h0 = None if h is None else v.state(hname, h, hshape, self.dtype, False)
        c0 = None if c is None else v.state("c", c, hshape, self.dtype, False)
        xs = x.reshape((1, 1, self.input_size) if unbatched else (1, B, self.input_size))
        if B == 0:
            z = np.zeros(hshape, self.dtype)
            return z, z.copy()
        s = self._stream(B)
        y = None if s is None else s.cell(x, h0, c0)
        if y is not None:
            return y
        hx = None if h0 is None else h0.reshape(1, B, self.hidden_size)
        cx = None if c0 is None else c0.reshape(1, B, self.hidden_size)
        out, hn, cn = self._layer._run(xs, hx, cx, None)
        hn = hn.reshape(hshape)
        return hn, (cn.reshape(hshape) if cn is not None else None)

    @classmethod
    def from_torch(cls, module):
        """The equivalent fastrnn cell of a torch.nn cell module, weights included."""
        name = cls.__name__
        if not _is_torch_module(module, (name,)):
            raise TypeError(f"{name}.from_torch expects a torch.nn.{name}, got {type(module).__name__}")
        kwargs = dict(bias=bool(module.bias), dtype=_module_dtype(module))
        if name == "RNNCell":
            kwargs["nonlinearity"] = module.nonlinearity
        cell = cls(module.input_size, module.hidden_size, **kwargs)
        cell.load_state_dict(module.state_dict())
        return cell

    def __repr__(self) -> str:
        extra = "" if self.bias else ", bias=False"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            extra += f", nonlinearity={self.nonlinearity!r}"
        if self.dtype != np.float32:
            extra += f", dtype='{self.dtype.name}'"
        return f"{type(self).__name__}({self.input_size}, {self.hidden_size}{extra})"


class _HCell(_CellBase):
    """A cell whose state is one array h (RNNCell, GRUCell)."""

    _a_name = ""  # the class with its article, for messages

    def __call__(self, x, hx=None):
        s = self._last  # the common case first (_CellBase)
        if s is not None and s.plan is self._layer._plan:
            y = s.cell(x, hx, None)
            if y is not None:
                return y[0]
        if isinstance(hx, tuple):
            raise TypeError(f"hx of {self._a_name} is one array (B, hidden_size), got a tuple")
        return self._step(x, hx, None, "hx")[0]


class RNNCell(_HCell):
    """h' = act(W_ih x + b_ih + W_hh h + b_hh); call ``h' = cell(x, hx=None)``."""

    _a_name = "an RNNCell"

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", *,
                 dtype="float32", seed=None):
        self.nonlinearity = v.choice("nonlinearity", nonlinearity, ("tanh", "relu"))
        self._init(RNN(input_size, hidden_size, 1, nonlinearity=nonlinearity, bias=bias,
                       dtype=dtype, seed=seed))


class GRUCell(_HCell):
    """PyTorch's GRU cell (gate order r, z, n); call ``h' = cell(x, hx=None)``."""

    _a_name = "a GRUCell"

    def __init__(self, input_size, hidden_size, bias=True, *, dtype="float32", seed=None):
        self._init(GRU(input_size, hidden_size, 1, bias=bias, dtype=dtype, seed=seed))


class LSTMCell(_CellBase):
    """PyTorch's LSTM cell (gate order i, f, g, o); call ``(h', c') = cell(x, (h, c)=None)``."""

    def __init__(self, input_size, hidden_size, bias=True, *, dtype="float32", seed=None):
        self._init(LSTM(input_size, hidden_size, 1, bias=bias, dtype=dtype, seed=seed))

    def __call__(self, x, hx=None):
        s = self._last  # the common case first (_CellBase)
        if s is not None and s.plan is self._layer._plan:
            if hx is None:
                y = s.cell(x, None, None)
            elif type(hx) is tuple and len(hx) == 2:
                y = s.cell(x, hx[0], hx[1])
            else:
                y = None
            if y is not None:
                return y
        h = c = None
        if hx is not None:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(
                    f"hx of an LSTMCell must be a tuple (h, c) of arrays, got "
                    f"{type(hx).__name__}"
                    + (f" of length {len(hx)}" if isinstance(hx, (tuple, list)) else "")
                )
            h, c = hx
            if h is None or c is None:
                raise TypeError("hx of an LSTMCell must be (h, c) with both arrays given")
        return self._step(x, h, c)
