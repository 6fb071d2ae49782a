"""Reducing a recurrent layer's output sequence to one vector per sequence:
``pool`` (last / mean / max over the valid steps), ``Pool`` (the same as a module)
and ``AttentionPool`` (a learned softmax over the valid steps)."""

from __future__ import annotations

import numpy as np

from .. import _weights
from .. import _validate as v
from ._base import Module, input_dtype, is_torch, torch_dtype

__all__ = ["pool", "Pool", "AttentionPool"]

_MODES = ("last", "mean", "max")


def _sequence(out, batch_first, dt):
    """out as (T, B, F) of dtype dt (a view when batch_first), T, B, unbatched."""
    x = v.numeric("out", out)  # converted once its shape is known to be right
    if x.ndim not in (2, 3):
        layout = "(B, T, F)" if batch_first else "(T, B, F)"
        raise ValueError(f"out must be 3-D {layout} or 2-D (T, F) for one unbatched sequence; "
                         f"got shape {x.shape}")
    T = x.shape[1 if batch_first and x.ndim == 3 else 0]
    if T < 1:
        raise ValueError(f"out has {T} time steps (shape {x.shape}); T must be >= 1")
    x = v.convert(x, dt)
    if x.ndim == 2:
        return x[:, None, :], T, 1, True
    if batch_first:
        x = x.transpose(1, 0, 2)
    return x, T, x.shape[1], False


def _lengths(lengths, B, T, unbatched):
    """int64 (B,) lengths (all T when None)."""
    if lengths is not None and unbatched and np.ndim(lengths) == 0:
        lengths = [lengths]
    lens = v.lengths(lengths, B, T)
    return np.full(B, T, np.int64) if lens is None else lens


def _valid(lens, T):
    return np.arange(T)[:, None] < lens[None, :]  # (T, B)


def pool(out, mode, *, lengths=None, batch_first=False, bidirectional=False) -> np.ndarray:
    """Reduce a layer's output sequence (T, B, F) to (B, F) over each sequence's valid
    steps.

    Parameters
    ----------
    out : array (T, B, F), (B, T, F) with batch_first, or (T, F) unbatched (-> (F,))
    mode : {"last", "mean", "max"}
        "last": each sequence's last valid step; with ``bidirectional=True`` the
        forward half (the first F/2 features) from the last valid step and the
        reverse half from step 0, where the reverse direction ends. "mean", "max":
        over the valid steps only.
    lengths : ints (B,), optional
        Valid steps of each sequence, in [1, T] (all T when omitted).

    Returns a new array of out's dtype (float32 or float64; other inputs float32).
    Means are summed in float64.
    """
    mode = v.choice("mode", mode, _MODES)
    batch_first = v.flag("batch_first", batch_first)
    bidirectional = v.flag("bidirectional", bidirectional)
    dt = input_dtype(out)
    x, T, B, unbatched = _sequence(out, batch_first, dt)
    F = x.shape[2]
    lens = _lengths(lengths, B, T, unbatched)
    if bidirectional and F % 2:
        raise ValueError(f"out has {F} features; bidirectional=True needs an even number "
                         "([forward, reverse] halves)")
    cols = np.arange(B)
    if mode == "last":
        res = x[lens - 1, cols, :]
        if bidirectional:
            res[:, F // 2:] = x[0, :, F // 2:]
    elif mode == "mean":
        valid = _valid(lens, T)[:, :, None]
        s = np.where(valid, x, 0).sum(axis=0, dtype=np.float64)
        res = s / lens[:, None]
    else:
        if B == 0:
            res = np.zeros((0, F), dt)
        else:
            valid = _valid(lens, T)[:, :, None]
            res = np.where(valid, x, -np.inf).max(axis=0)
    res = np.ascontiguousarray(res, dtype=dt)
    return res[0] if unbatched else res


class Pool(Module):
    """:func:`pool` as a module, for :class:`Sequential`: ``Pool(mode)`` called
    ``p(out, lengths=None)``.

    ``batch_first`` and ``bidirectional`` left at None follow the recurrent layer
    before it in a Sequential (standalone: False).
    """

    takes_lengths = True

    def __init__(self, mode, *, batch_first=None, bidirectional=None):
        super().__init__()
        self.mode = v.choice("mode", mode, _MODES)
        self.batch_first = None if batch_first is None else v.flag("batch_first", batch_first)
        self.bidirectional = (None if bidirectional is None
                              else v.flag("bidirectional", bidirectional))

    def __call__(self, out, lengths=None, batch_first=None, bidirectional=None):
        bf = _pick(batch_first, self.batch_first)
        bd = _pick(bidirectional, self.bidirectional)
        return pool(out, self.mode, lengths=lengths, batch_first=bf, bidirectional=bd)

    def _config(self):
        return {"mode": self.mode, "batch_first": self.batch_first,
                "bidirectional": self.bidirectional}

    def __repr__(self):
        extra = "".join(f", {k}={getattr(self, k)}" for k in ("batch_first", "bidirectional")
                        if getattr(self, k) is not None)
        return f"Pool({self.mode!r}{extra})"


def _pick(call_value, attr):
    if call_value is not None:
        return call_value
    return bool(attr) if attr is not None else False


class AttentionPool(Module):
    """Attention pooling: score_t = w . out_t + b, softmax over each sequence's valid
    steps, and the weighted sum of out_t: (T, B, F) -> (B, F).

    Parameters
    ----------
    features : int
    bias : bool, default True
    batch_first : bool, optional
        The layout when the call does not say; None follows the recurrent layer
        before it in a Sequential (standalone: False).
    dtype : {"float32", "float64"}
    seed : int, optional

    Call ``attn(out, lengths=None, batch_first=None)``. state_dict: ``weight``
    (F,), ``bias`` (1,). Scores, softmax and sum run in float64.

    ``from_torch(module)`` takes a torch module holding a ``torch.nn.Linear(features,
    1)`` named ``score`` and nothing else with parameters -- the usual
    ``softmax(self.score(out))``-weighted sum; its own forward is not read, so it
    must compute exactly that.
    """

    takes_lengths = True

    _fixed = frozenset({"dtype", "features", "has_bias"})

    def __init__(self, features, bias=True, *, batch_first=None, dtype="float32", seed=None):
        super().__init__()
        self.features = v.integer("features", features, minimum=1)
        self.has_bias = v.flag("bias", bias)
        self.batch_first = None if batch_first is None else v.flag("batch_first", batch_first)
        rng = self._init_dtype(dtype, seed)
        k = 1.0 / np.sqrt(self.features)
        self._params = {"weight": _weights.new((self.features,), self.dtype,
                                               lambda s: rng.uniform(-k, k, s))}
        if self.has_bias:
            self._params["bias"] = _weights.new((1,), self.dtype, lambda s: rng.uniform(-k, k, s))

    def __call__(self, out, lengths=None, batch_first=None) -> np.ndarray:
        bf = v.flag("batch_first", _pick(batch_first, self.batch_first))
        x, T, B, unbatched = _sequence(out, bf, self.dtype)
        if x.shape[2] != self.features:
            raise ValueError(f"out has {x.shape[2]} features (shape {np.shape(out)}) but "
                             f"AttentionPool has features={self.features}")
        lens = _lengths(lengths, B, T, unbatched)
        x64 = x.astype(np.float64)
        scores = x64 @ self._params["weight"].astype(np.float64)  # (T, B)
        if self.has_bias:
            scores = scores + float(self._params["bias"][0])
        valid = _valid(lens, T)
        scores = np.where(valid, scores, -np.inf)
        with np.errstate(invalid="ignore"):
            m = scores.max(axis=0, keepdims=True) if B else 0.0
            e = np.where(valid, np.exp(scores - m), 0.0)
            w = e / e.sum(axis=0, keepdims=True)
        res = np.einsum("tb,tbf->bf", w, np.where(valid[:, :, None], x64, 0.0))
        res = np.ascontiguousarray(res, dtype=self.dtype)
        return res[0] if unbatched else res

    @classmethod
    def from_torch(cls, module) -> AttentionPool:
        """From a torch module with a ``Linear(features, 1)`` named ``score`` (see the
        class docstring)."""
        if not hasattr(module, "state_dict") or not hasattr(module, "named_children"):
            raise TypeError(f"AttentionPool.from_torch expects a torch module, got "
                            f"{type(module).__name__}")
        score = getattr(module, "score", None)
        name = type(module).__name__
        if score is None or not is_torch(score, ("Linear",)):
            raise TypeError(
                f"AttentionPool.from_torch needs a torch module holding a Linear(features, 1) "
                f"named 'score'; {name} has "
                + ("no attribute 'score'" if score is None else
                   f"'score' of type {type(score).__name__}")
            )
        if score.out_features != 1:
            raise ValueError(f"{name}.score is Linear({score.in_features}, "
                             f"{score.out_features}); AttentionPool needs out_features=1")
        others = [k for k in module.state_dict() if not k.startswith("score.")]
        if others:
            raise ValueError(f"{name} has parameters besides 'score' ({', '.join(others)}); "
                             "AttentionPool holds only the score Linear")
        sd = score.state_dict()
        pool_ = cls(score.in_features, bias=score.bias is not None, dtype=torch_dtype(score))
        new = {"weight": v._torch_to_numpy(sd["weight"]).reshape(-1)}
        if "bias" in sd:
            new["bias"] = v._torch_to_numpy(sd["bias"]).reshape(1)
        pool_.load_state_dict(new)
        return pool_

    def _config(self):
        return {"features": self.features, "bias": self.has_bias,
                "batch_first": self.batch_first, "dtype": self.dtype.name}

    def __repr__(self):
        extra = "" if self.has_bias else ", bias=False"
        if self.batch_first is not None:
            extra += f", batch_first={self.batch_first}"
        if self.dtype != np.float32:
            extra += f", dtype='{self.dtype.name}'"
        return f"AttentionPool({self.features}{extra})"
