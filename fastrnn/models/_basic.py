"""Embedding, Linear, LayerNorm, Dropout and the activations, called like their
torch.nn twins on NumPy arrays (SPEC §7)."""

from __future__ import annotations

import math

import numpy as np

from .. import _kernels, _weights
from .. import _validate as v
from ._base import Module, ids, input_dtype, is_torch, torch_dtype

__all__ = ["Embedding", "Linear", "LayerNorm", "Dropout", "ReLU", "Tanh", "Sigmoid", "Softmax"]

_INT_MAX = 2**31 - 1


def _check_torch(cls, module, names=None):
    names = names or (cls.__name__,)
    if not is_torch(module, names):
        raise TypeError(
            f"{cls.__name__}.from_torch expects a torch.nn.{names[0]}, got "
            f"{type(module).__module__}.{type(module).__name__}"
        )


def _readonly(a):
    """A view of a parameter that cannot be made writeable (its base is a read-only
    buffer): writes would change state_dict() but not the packed copy the engine
    runs."""
    if a is None:
        return None
    return np.frombuffer(memoryview(np.ascontiguousarray(a)).toreadonly(),
                         a.dtype).reshape(a.shape)


class Embedding(Module):
    """A lookup table: ``emb(ids)`` maps integer ids of any shape to (..., embedding_dim).

    Parameters
    ----------
    num_embeddings, embedding_dim : int
    padding_idx : int, optional
        As in torch: that row starts at zero (negative values count from the end).
        At inference it is an ordinary row of the table.
    dtype : {"float32", "float64"}
    seed : int, optional
        Seed of torch's initialisation, N(0, 1).

    state_dict: ``weight`` (num_embeddings, embedding_dim). Ids must be integers
    (TypeError otherwise) in [0, num_embeddings) (ValueError naming the first bad
    id and where it is).
    """

    _fixed = frozenset({"dtype", "num_embeddings", "embedding_dim", "padding_idx"})

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, *, dtype="float32",
                 seed=None):
        super().__init__()
        self.num_embeddings = v.integer("num_embeddings", num_embeddings, minimum=1)
        self.embedding_dim = v.integer("embedding_dim", embedding_dim, minimum=1)
        n = self.num_embeddings
        if padding_idx is not None:
            padding_idx = v.integer("padding_idx", padding_idx, minimum=-n, maximum=n - 1)
            padding_idx = padding_idx + n if padding_idx < 0 else padding_idx
        self.padding_idx = padding_idx
        rng = self._init_dtype(dtype, seed)

        def init(shape):
            w = rng.standard_normal(shape)
            if padding_idx is not None:
                w[padding_idx] = 0
            return w

        self._params = {"weight": _weights.new((n, self.embedding_dim), self.dtype, init)}

    @property
    def weight(self) -> np.ndarray:
        """The table (a read-only view; use load_state_dict to change it)."""
        return _readonly(self._params["weight"])

    def __call__(self, input) -> np.ndarray:
        idx = ids("ids", input, self.num_embeddings)
        return self._params["weight"][idx]

    @classmethod
    def from_torch(cls, module) -> Embedding:
        """The equivalent of a torch.nn.Embedding (max_norm is refused: it rescales
        rows at lookup time, which fastrnn does not do)."""
        _check_torch(cls, module)
        if module.max_norm is not None:
            raise ValueError(
                f"Embedding.from_torch: max_norm={module.max_norm} is not supported "
                "(torch renormalizes looked-up rows in place); use max_norm=None"
            )
        emb = cls(module.num_embeddings, module.embedding_dim, module.padding_idx,
                  dtype=torch_dtype(module))
        emb.load_state_dict(module.state_dict())
        return emb

    def _config(self):
        return {"num_embeddings": self.num_embeddings, "embedding_dim": self.embedding_dim,
                "padding_idx": self.padding_idx, "dtype": self.dtype.name}

    def __repr__(self):
        extra = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        if self.dtype != np.float32:
            extra += f", dtype='{self.dtype.name}'"
        return f"Embedding({self.num_embeddings}, {self.embedding_dim}{extra})"


class Linear(Module):
    """y = x W^T + b on the last axis: x (..., in_features) -> (..., out_features).

    The product runs in the engine's packed micro-kernels (the same as the
    recurrent layers'), W packed once when weights load (again only if the
    instruction set changes at run time).

    Parameters
    ----------
    in_features, out_features : int
    bias : bool, default True
    dtype : {"float32", "float64"}
    seed : int, optional
        Seed of torch's initialisation, uniform(-1/sqrt(in), 1/sqrt(in)).

    state_dict: ``weight`` (out_features, in_features), ``bias`` (out_features,).
    """

    _fixed = frozenset({"dtype", "in_features", "out_features", "has_bias"})
    _engine = ("_packed",)

    def __init__(self, in_features, out_features, bias=True, *, dtype="float32", seed=None):
        super().__init__()
        self.in_features = v.integer("in_features", in_features, minimum=1, maximum=_INT_MAX)
        # the engine pads the outputs to a multiple of up to 64 in a C int
        self.out_features = v.integer("out_features", out_features, minimum=1,
                                      maximum=_INT_MAX - 63)
        self.has_bias = v.flag("bias", bias)
        rng = self._init_dtype(dtype, seed)
        k = 1.0 / math.sqrt(self.in_features)
        shape = (self.out_features, self.in_features)
        self._params = {"weight": _weights.new(shape, self.dtype, lambda s: rng.uniform(-k, k, s))}
        if self.has_bias:
            self._params["bias"] = _weights.new((self.out_features,), self.dtype,
                                                lambda s: rng.uniform(-k, k, s))
        self._packed = None

    @property
    def weight(self) -> np.ndarray:
        return _readonly(self._params["weight"])

    @property
    def bias(self):
        return _readonly(self._params.get("bias"))

    def _changed(self):
        self._drop_engine()

    def _kernel(self):
        """The packed weights (`_kernels.Linear`) for the current instruction set."""
        k = self._packed
        if k is None or k.isa != _kernels.get_isa():
            k = self._pack("_packed", lambda: _kernels.Linear(self._params["weight"],
                                                               self._params.get("bias")))
        return k

    def __call__(self, input) -> np.ndarray:
        x = v.numeric("x", input)  # converted once its shape is known to be right
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"x has shape {x.shape}; Linear expects (..., in_features={self.in_features})"
            )
        lead = x.shape[:-1]
        M = int(np.prod(lead, dtype=np.int64))
        if M > _INT_MAX:
            raise ValueError(f"x has {M} rows; at most {_INT_MAX} per call")
        x = v.convert(x, self.dtype)
        y = np.empty(lead + (self.out_features,), self.dtype)
        if M:
            self._kernel().apply(x.reshape(M, self.in_features), y.reshape(M, self.out_features),
                                 _kernels.max_threads())
        return y

    @classmethod
    def from_torch(cls, module) -> Linear:
        _check_torch(cls, module)
        lin = cls(module.in_features, module.out_features, bias=module.bias is not None,
                  dtype=torch_dtype(module))
        lin.load_state_dict(module.state_dict())
        return lin

    def _config(self):
        return {"in_features": self.in_features, "out_features": self.out_features,
                "bias": self.has_bias, "dtype": self.dtype.name}

    def __repr__(self):
        extra = "" if self.has_bias else ", bias=False"
        if self.dtype != np.float32:
            extra += f", dtype='{self.dtype.name}'"
        return f"Linear({self.in_features}, {self.out_features}{extra})"


class LayerNorm(Module):
    """Normalise the last ``len(normalized_shape)`` axes to mean 0, variance 1
    (biased, + eps), then scale by ``weight`` and shift by ``bias`` (torch's names,
    shape normalized_shape; ones and zeros at first). Computed in float64, returned
    in the module dtype -- or, without elementwise_affine (no weights, so nothing
    fixes a dtype), in the input's dtype when it is float32 or float64."""

    _fixed = frozenset({"dtype", "normalized_shape", "eps", "elementwise_affine", "has_bias"})

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, *,
                 dtype="float32"):
        super().__init__()
        if isinstance(normalized_shape, (list, tuple)):
            shape = tuple(v.integer(f"normalized_shape[{i}]", s, minimum=1)
                          for i, s in enumerate(normalized_shape))
            if not shape:
                raise ValueError("normalized_shape is empty; give at least one axis size")
        else:
            shape = (v.integer("normalized_shape", normalized_shape, minimum=1),)
        self.normalized_shape = shape
        eps = v.real("eps", eps)
        if eps < 0:
            raise ValueError(f"eps is {eps}; it must be a finite number >= 0")
        self.eps = eps
        self.elementwise_affine = v.flag("elementwise_affine", elementwise_affine)
        self.has_bias = v.flag("bias", bias) and self.elementwise_affine
        self._init_dtype(dtype, None)
        if self.elementwise_affine:
            self._params["weight"] = _weights.new(shape, self.dtype, np.ones)
            if self.has_bias:
                self._params["bias"] = _weights.new(shape, self.dtype, np.zeros)

    @property
    def weight(self):
        return _readonly(self._params.get("weight"))

    @property
    def bias(self):
        return _readonly(self._params.get("bias"))

    def __call__(self, input) -> np.ndarray:
        dt = self.dtype if self.elementwise_affine else input_dtype(input)
        x = v.numeric("x", input)  # converted once its shape is known to be right
        n = len(self.normalized_shape)
        if x.ndim < n or x.shape[x.ndim - n:] != self.normalized_shape:
            raise ValueError(
                f"x has shape {x.shape}; LayerNorm expects (..., "
                f"{', '.join(map(str, self.normalized_shape))})"
            )
        x = v.convert(x, dt)
        if x.size == 0:
            return np.zeros(x.shape, dt)
        axes = tuple(range(x.ndim - n, x.ndim))
        x64 = x.astype(np.float64)
        mean = x64.mean(axis=axes, keepdims=True)
        d = x64 - mean
        var = (d * d).mean(axis=axes, keepdims=True)
        y = d / np.sqrt(var + self.eps)
        if self.elementwise_affine:
            y = y * self._params["weight"]
            if self.has_bias:
                y = y + self._params["bias"]
        return np.ascontiguousarray(y, dtype=dt)

    @classmethod
    def from_torch(cls, module) -> LayerNorm:
        _check_torch(cls, module)
        affine = bool(module.elementwise_affine)
        has_bias = affine and getattr(module, "bias", None) is not None
        ln = cls(tuple(module.normalized_shape), module.eps, affine, has_bias,
                 dtype=torch_dtype(module))
        ln.load_state_dict(module.state_dict())
        return ln

    def _config(self):
        return {"normalized_shape": list(self.normalized_shape), "eps": self.eps,
                "elementwise_affine": self.elementwise_affine, "bias": self.has_bias,
                "dtype": self.dtype.name}

    def __repr__(self):
        shape = self.normalized_shape
        extra = "" if self.eps == 1e-5 else f", eps={self.eps}"
        if not self.elementwise_affine:
            extra += ", elementwise_affine=False"
        elif not self.has_bias:
            extra += ", bias=False"
        if self.dtype != np.float32:
            extra += f", dtype='{self.dtype.name}'"
        return f"LayerNorm({shape[0] if len(shape) == 1 else shape}{extra})"


class _Elementwise(Module):
    """A parameterless module: computes in the input's dtype when float32 or
    float64, else float32, and returns a new array."""

    def __call__(self, input) -> np.ndarray:
        x = v.float_array("x", input, input_dtype(input))
        with np.errstate(over="ignore", invalid="ignore"):
            return np.ascontiguousarray(self._f(x), dtype=x.dtype)

    @classmethod
    def from_torch(cls, module):
        _check_torch(cls, module)
        return cls()

    def _config(self):
        return {}

    def __repr__(self):
        return f"{type(self).__name__}()"


class Dropout(_Elementwise):
    """Identity at inference (``p`` is kept for state and repr, as torch's eval mode)."""

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        self.p = v.probability("p", p)

    @staticmethod
    def _f(x):
        return x.copy()

    @classmethod
    def from_torch(cls, module):
        _check_torch(cls, module)
        return cls(module.p)

    def _config(self):
        return {"p": self.p}

    def __repr__(self):
        return f"Dropout(p={self.p})"


class ReLU(_Elementwise):
    """max(x, 0) (NaN stays NaN)."""

    def __init__(self, inplace=False):
        super().__init__()

    @staticmethod
    def _f(x):
        return np.maximum(x, 0)


class Tanh(_Elementwise):
    @staticmethod
    def _f(x):
        return np.tanh(x)


class Sigmoid(_Elementwise):
    """1 / (1 + exp(-x)), computed without overflow."""

    @staticmethod
    def _f(x):
        return np.exp(-np.logaddexp(0, -x))


class Softmax(_Elementwise):
    """softmax along ``dim`` (required: torch's implicit-dim legacy is not copied)."""

    def __init__(self, dim):
        super().__init__()
        if dim is None:
            raise ValueError("Softmax needs dim (an axis); dim=None (torch's deprecated "
                             "implicit choice) is not supported")
        self.dim = v.integer("dim", dim)

    def _f(self, x):
        nd = max(x.ndim, 1)
        if not -nd <= self.dim < nd:
            raise ValueError(f"dim is {self.dim}; x has shape {x.shape}, so dim must be in "
                             f"[{-nd}, {nd - 1}]")
        if x.ndim == 0:
            return np.ones_like(x)
        x64 = x.astype(np.float64)
        m = np.max(x64, axis=self.dim, keepdims=True) if x.size else 0.0
        e = np.exp(x64 - m)
        return e / np.sum(e, axis=self.dim, keepdims=True)

    @classmethod
    def from_torch(cls, module):
        _check_torch(cls, module)
        if module.dim is None:
            raise ValueError("Softmax.from_torch: the torch module has dim=None (implicit "
                             "dim, deprecated in torch); give it an explicit dim")
        return cls(module.dim)

    def _config(self):
        return {"dim": self.dim}

    def __repr__(self):
        return f"Softmax(dim={self.dim})"
