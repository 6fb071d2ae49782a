"""Recurrent layers with PyTorch's interface: RNN, LSTM, GRU (SPEC §2).

A layer keeps its weights under PyTorch's names in its dtype, and a packed copy
(a `_kernels.Plan`) that the C engine runs. The plan is built once when weights
change, and again only if the instruction set is changed at run time.
"""

from __future__ import annotations

import math

import numpy as np

from . import _kernels, _weights
from . import _validate as v

__all__ = ["RNN", "LSTM", "GRU"]

_CELL_CODES = {"RNN_TANH": 0, "RNN_RELU": 1, "LSTM": 2, "GRU": 3}
_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}
_C_INT = 2**31 - 1


def _is_torch_module(obj, names: tuple[str, ...]) -> bool:
    cls = type(obj)
    return cls.__name__ in names and cls.__module__.startswith("torch") and hasattr(obj, "state_dict")


def _module_dtype(module) -> str:
    for p in module.parameters():
        return "float64" if str(p.dtype) == "torch.float64" else "float32"
    return "float32"


class _RNNBase(v.Fixed):
    """What RNN, LSTM and GRU share: hyperparameters, weights, the call."""

    mode: str
    _fixed = frozenset({"mode", "input_size", "hidden_size", "num_layers", "bias",
                        "bidirectional", "proj_size", "peephole", "linear_before_reset",
                        "dtype", "nonlinearity"})
    # the call reads batch_first and nothing reads dropout (torch's argument, taken so
    # that torch code ports unchanged; it acts only in training): they may change
    _checked = {"batch_first": v.flag, "dropout": v.probability}
    _engine = ("_plan",)
    dropout = 0.0  # for layers pickled before dropout was an attribute

    def __init__(self, mode, input_size, hidden_size, num_layers, *, bias, batch_first,
                 bidirectional, dropout=0.0, proj_size=0, peephole=False,
                 linear_before_reset=True, dtype="float32", seed=None):
        self.mode = mode
        self.dropout = dropout  # checked by _checked
        self.input_size = v.integer("input_size", input_size, minimum=1)
        self.hidden_size = v.integer("hidden_size", hidden_size, minimum=1)
        self.num_layers = v.integer("num_layers", num_layers, minimum=1)
        self.bias = v.flag("bias", bias)
        self.batch_first = v.flag("batch_first", batch_first)
        self.bidirectional = v.flag("bidirectional", bidirectional)
        self.proj_size = v.integer("proj_size", proj_size, minimum=0)
        for name in ("input_size", "hidden_size", "num_layers", "proj_size"):
            if getattr(self, name) > _C_INT:  # before allocating anything for it
                raise ValueError(
                    f"{name} is {getattr(self, name)}; it must be <= {_C_INT} (the engine "
                    "counts in C ints)"
                )
        if self.proj_size and self.proj_size >= self.hidden_size:
            raise ValueError(
                f"proj_size is {self.proj_size}; it must be smaller than hidden_size "
                f"({self.hidden_size}), or 0 for no projection"
            )
        self.peephole = v.flag("peephole", peephole)
        self.linear_before_reset = v.flag("linear_before_reset", linear_before_reset)
        self.dtype = v.dtype(dtype)
        rng = np.random.default_rng(v.seed(seed))
        k = 1.0 / math.sqrt(self.hidden_size)
        self._params = {
            name: _weights.new(shape, self.dtype, lambda s: rng.uniform(-k, k, size=s))
            for name, shape in self._param_shapes().items()
        }
        self._plan = None

    # -- shapes and names ---------------------------------------------------

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def _h_out(self) -> int:
        return self.proj_size or self.hidden_size

    def _param_shapes(self) -> dict[str, tuple[int, ...]]:
        """PyTorch's parameter names and shapes, in PyTorch's order."""
        G, H, D = _GATES[self.mode], self.hidden_size, self.num_directions
        shapes = {}
        for layer in range(self.num_layers):
            k_in = self.input_size if layer == 0 else D * self._h_out
            for d in range(D):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                shapes["weight_ih" + sfx] = (G * H, k_in)
                shapes["weight_hh" + sfx] = (G * H, self._h_out)
                if self.bias:
                    shapes["bias_ih" + sfx] = (G * H,)
                    shapes["bias_hh" + sfx] = (G * H,)
                if self.proj_size:
                    shapes["weight_hr" + sfx] = (self.proj_size, H)
                if self.peephole:
                    shapes["weight_peephole" + sfx] = (3, H)
        return shapes

    # -- weights --------------------------------------------------------------

    def state_dict(self) -> dict[str, np.ndarray]:
        """The weights under PyTorch's names and shapes (copies)."""
        return {name: arr.copy() for name, arr in self._params.items()}

    def load_state_dict(self, state_dict, strict: bool = True) -> None:
        """Load weights given as NumPy arrays or torch tensors under PyTorch's names.

        Raises ValueError listing every missing and unexpected key and every
        mismatched shape (``strict=False`` ignores missing and unexpected keys, not
        shapes). A failed load leaves the layer unchanged.
        """
        new = v.state_dict_arrays(state_dict, strict, self._param_shapes(), self.dtype,
                                  repr(self), "layer")
        self._params.update(new)
        self._drop_engine()

    @classmethod
    def from_torch(cls, module):
        """The equivalent fastrnn layer of a torch.nn module, weights included.

        float64 modules give float64 layers, others float32. torch itself is never
        imported: the module passed in is only read.
        """
        name = cls.__name__
        if not _is_torch_module(module, (name,)):
            raise TypeError(f"{name}.from_torch expects a torch.nn.{name}, got {type(module).__name__}")
        kwargs = dict(
            bias=bool(module.bias),
            batch_first=bool(module.batch_first),
            bidirectional=bool(module.bidirectional),
            dropout=float(module.dropout),
            dtype=_module_dtype(module),
        )
        if name == "RNN":
            kwargs["nonlinearity"] = module.nonlinearity
        if name == "LSTM":
            kwargs["proj_size"] = int(getattr(module, "proj_size", 0))
        layer = cls(module.input_size, module.hidden_size, module.num_layers, **kwargs)
        layer.load_state_dict(module.state_dict())
        return layer

    def save(self, path) -> None:
        """Write the weights and every hyperparameter to .npz or .safetensors."""
        from .io import save

        save(self, path)

    def stream(self, batch_size: int = 1, state=None):
        """A stateful stepper for real-time use (see :class:`fastrnn.stream.Stream`).

        Bidirectional layers cannot stream (ValueError).
        """
        from .stream import Stream

        return Stream(self, batch_size, state)

    # -- the packed plan ----------------------------------------------------

    def _packed(self):
        plan = self._plan
        if plan is None or plan.isa != _kernels.get_isa():
            plan = self._pack("_plan", self._make_plan)
        return plan

    def _make_plan(self):
        D = self.num_directions
        weights = []
        for layer in range(self.num_layers):
            for d in range(D):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                p = self._params
                weights.append((
                    p["weight_ih" + sfx],
                    p["weight_hh" + sfx],
                    p.get("bias_ih" + sfx),
                    p.get("bias_hh" + sfx),
                    p.get("weight_hr" + sfx),
                    p.get("weight_peephole" + sfx),
                ))
        return _kernels.Plan(
            _CELL_CODES[self.mode], self.dtype == np.float64, self.num_layers, D,
            self.input_size, self.hidden_size, self.proj_size, self.bias, self.peephole,
            self.linear_before_reset, weights,
        )

    # -- the call -----------------------------------------------------------

    def _run(self, x, h0, c0, lengths, batch_first=None):
        """(out, h_n, c_n or None) for x laid out as batch_first says (default: the
        layer's). Whole models pass the layout they checked, as the layer's may
        change meanwhile (another thread); it is read once here for the same reason:
        converting an argument below may run the caller's code."""
        plan = self._packed()
        if batch_first is None:
            batch_first = self.batch_first
        if h0 is None and c0 is None and lengths is None:
            done = plan.run(x, batch_first)  # None unless x is engine-ready
            if done is not None:
                return done
        x, T, B, unbatched = v.sequence(x, self.input_size, batch_first, self.dtype)
        D, L, H, HO = self.num_directions, self.num_layers, self.hidden_size, self._h_out
        if h0 is not None:
            h0 = v.state("h0", h0, (D * L, B, HO), self.dtype, unbatched)
        if c0 is not None:
            c0 = v.state("c0", c0, (D * L, B, H), self.dtype, unbatched)
        if lengths is not None:
            if unbatched and np.ndim(lengths) == 0:
                lengths = [lengths]
            lengths = v.lengths(lengths, B, T)
        if B > 0:
            return plan.run(x, batch_first, h0, c0, lengths)
        lstm = self.mode == "LSTM"
        out_shape = (0, T, D * HO) if batch_first else (T, 0, D * HO)
        return (np.zeros(out_shape, self.dtype), np.zeros((D * L, 0, HO), self.dtype),
                np.zeros((D * L, 0, H), self.dtype) if lstm else None)

    def __repr__(self) -> str:
        args = [str(self.input_size), str(self.hidden_size)]
        if self.num_layers != 1:
            args.append(f"num_layers={self.num_layers}")
        for name, default in self._repr_defaults():
            value = getattr(self, name)
            if value != default:
                args.append(f"{name}={value!r}")
        if self.dtype != np.float32:
            args.append(f"dtype='{self.dtype.name}'")
        return f"{type(self).__name__}({', '.join(args)})"

    def _repr_defaults(self):
        return [("bias", True), ("batch_first", False), ("dropout", 0.0),
                ("bidirectional", False)]


def _h0_or_hx(h0, hx):
    """The initial state given as h0 (SPEC) or hx (torch's keyword), not both."""
    if hx is None:
        return h0
    if h0 is not None:
        raise TypeError("give the initial state once: h0 or hx (torch's name for it), not both")
    return hx


class RNN(_RNNBase):
    """Elman RNN, h' = act(W_ih x + b_ih + W_hh h + b_hh), act = tanh or relu.

    Parameters
    ----------
    input_size, hidden_size : int
    num_layers : int, default 1
    nonlinearity : {"tanh", "relu"}
    bias, batch_first, bidirectional : bool
    dropout : float, default 0
        Accepted as torch takes it (so torch code ports unchanged); dropout acts
        only in training, so fastrnn never applies it.
    dtype : {"float32", "float64"}
    seed : int, optional
        Seed of the PyTorch-style random initial weights.

    Call ``out, h_n = rnn(x, h0=None, *, lengths=None)`` (h0 may also be given as
    torch's keyword ``hx``) with x (T, B, I), (B, T, I) when batch_first, or
    (T, I); out (T, B, D*H), h_n (D*num_layers, B, H). The sizes, dtype and kind
    are fixed once built (AttributeError on assignment); batch_first may change.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, *, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, dtype="float32",
                 seed=None):
        self.nonlinearity = v.choice("nonlinearity", nonlinearity, ("tanh", "relu"))
        super().__init__("RNN_TANH" if self.nonlinearity == "tanh" else "RNN_RELU", input_size,
                         hidden_size, num_layers, bias=bias, batch_first=batch_first,
                         bidirectional=bidirectional, dropout=dropout, dtype=dtype, seed=seed)

    def __call__(self, x, h0=None, *, lengths=None, hx=None):
        h0 = _h0_or_hx(h0, hx)
        if isinstance(h0, tuple):
            raise TypeError("h0 of an RNN is one array (D*num_layers, B, hidden_size), got a tuple")
        out, hn, _ = self._run(x, h0, None, lengths)
        return out, hn

    def _repr_defaults(self):
        return [("nonlinearity", "tanh")] + super()._repr_defaults()


class GRU(_RNNBase):
    """Gated recurrent unit, gate order (r, z, n) as in PyTorch.

    ``linear_before_reset=True`` (default) is PyTorch's / cuDNN's form,
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn)); False is the original form,
    n = tanh(W_in x + b_in + W_hn (r * h) + b_hn) (ONNX's default).
    Call ``out, h_n = gru(x, h0=None, *, lengths=None)`` (or ``hx=``); shapes and
    arguments as for RNN.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, *, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, linear_before_reset=True, dtype="float32",
                 seed=None):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias=bias,
                         batch_first=batch_first, bidirectional=bidirectional, dropout=dropout,
                         linear_before_reset=linear_before_reset, dtype=dtype, seed=seed)

    def __call__(self, x, h0=None, *, lengths=None, hx=None):
        h0 = _h0_or_hx(h0, hx)
        if isinstance(h0, tuple):
            raise TypeError("h0 of a GRU is one array (D*num_layers, B, hidden_size), got a tuple")
        out, hn, _ = self._run(x, h0, None, lengths)
        return out, hn

    def _repr_defaults(self):
        return super()._repr_defaults() + [("linear_before_reset", True)]


class LSTM(_RNNBase):
    """Long short-term memory, gate order (i, f, g, o) as in PyTorch.

    ``proj_size > 0`` adds PyTorch's projection h = W_hr (o * tanh(c));
    ``peephole=True`` adds ONNX-style peepholes (weights ``weight_peephole_l{k}``,
    rows (i, f, o)). Call ``out, (h_n, c_n) = lstm(x, (h0, c0)=None, *, lengths=None)``:
    h (D*num_layers, B, proj_size or hidden_size), c (D*num_layers, B, hidden_size).
    """

    def __init__(self, input_size, hidden_size, num_layers=1, *, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, peephole=False,
                 dtype="float32", seed=None):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias=bias,
                         batch_first=batch_first, bidirectional=bidirectional, dropout=dropout,
                         proj_size=proj_size, peephole=peephole, dtype=dtype, seed=seed)

    def __call__(self, x, hx=None, *, lengths=None):
        h0 = c0 = None
        if hx is not None:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(
                    "hx of an LSTM must be a tuple (h0, c0) of arrays, got "
                    f"{type(hx).__name__}" + (f" of length {len(hx)}" if isinstance(hx, (tuple, list)) else "")
                )
            h0, c0 = hx
            if h0 is None or c0 is None:
                raise TypeError("hx of an LSTM must be (h0, c0) with both arrays given, got None in it")
        out, hn, cn = self._run(x, h0, c0, lengths)
        return out, (hn, cn)

    def _repr_defaults(self):
        return super()._repr_defaults() + [("proj_size", 0), ("peephole", False)]
