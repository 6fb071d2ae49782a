"""Plain-NumPy reference implementation of every recurrent layer fastrnn runs.

This module is the oracle the C kernels are tested against. It is written directly
from the math of SPEC.md §1, for clarity rather than speed, and shares no code with
the rest of the package: it imports only NumPy and the standard library.

Conventions
-----------
* Weights use PyTorch's layouts and gate orders (LSTM: i, f, g, o; GRU: r, z, n), so
  a ``torch.nn`` ``state_dict`` converted to NumPy can be passed as ``params``.
* Everything is computed in one floating dtype: by default the result dtype of all
  arrays given (integers promote to float64); keyword ``dtype`` overrides it. Run it
  in float64 to get the oracle; float32 is supported too.
* Time steps are a Python loop; batch and hidden units are vectorised.
* ``lengths`` (B,) gives the padded-batch equivalent of a PyTorch ``PackedSequence``
  (``enforce_sorted=False``): sequence ``b`` is processed for its first ``lengths[b]``
  steps only, its output is exactly 0 past that, its final state is taken at its own
  last valid step, and the reverse direction starts at step ``lengths[b] - 1``.

Shapes use SPEC's letters: T steps, B batch, I input features, H hidden units,
P projection units (LSTM ``proj_size``), H_out = P or H, D directions (1 or 2),
L layers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

__all__ = [
    "sigmoid",
    "tanh",
    "rnn_cell",
    "lstm_cell",
    "gru_cell",
    "rnn",
    "lstm",
    "gru",
    "forward",
]

tanh = np.tanh


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def sigmoid(x: ArrayLike) -> np.ndarray:
    """Logistic sigmoid ``1 / (1 + exp(-x))``, stable for any ``x``.

    Only ``exp(-|x|)`` is evaluated, which never overflows, so there are no
    floating-point warnings for large ``|x|`` (underflow to 0 is silenced); ``±inf``
    map to 1 and 0 and NaN propagates.

    Parameters
    ----------
    x : array_like
        Any shape. Floating inputs keep their dtype; others are computed in float64.

    Returns
    -------
    numpy.ndarray
        Same shape as ``x``, values in [0, 1].
    """
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.inexact):
        x = x.astype(np.float64)
    with np.errstate(under="ignore"):  # exp(-|x|) -> 0 is the right limit
        e = np.exp(-np.abs(x))  # in [0, 1]: never overflows
        one = np.ones((), dtype=x.dtype)
        return np.where(x >= 0, one / (one + e), e / (one + e))


def _compute_dtype(arrays: list[Any], dtype: DTypeLike | None) -> np.dtype:
    """The dtype to compute in: ``dtype`` if given, else the arrays' result dtype."""
    if dtype is not None:
        dt = np.dtype(dtype)
    else:
        present = [np.asarray(a) for a in arrays if a is not None]
        dt = np.result_type(*present) if present else np.dtype(np.float64)
    if not np.issubdtype(dt, np.floating):
        dt = np.dtype(np.float64)
    return dt


def _as(a: ArrayLike | None, dt: np.dtype) -> np.ndarray | None:
    return None if a is None else np.asarray(a, dtype=dt)


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(message)


def _affine(x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """``x @ w.T + b`` for x (B, K), w (N, K), b (N,) or None -> (B, N)."""
    y = x @ w.T
    return y if b is None else y + b


def _batch_cell_inputs(
    x: ArrayLike, states: list[ArrayLike | None], state_sizes: list[int], dt: np.dtype
) -> tuple[np.ndarray, list[np.ndarray], bool]:
    """Give x and the states a batch axis; missing states become zeros.

    Returns ``(x (B, I), [state (B, n)], unbatched)``.
    """
    x = np.asarray(x, dtype=dt)
    _check(x.ndim in (1, 2), f"x must be (B, I) or (I,), got shape {x.shape}")
    unbatched = x.ndim == 1
    if unbatched:
        x = x[None, :]
    out = []
    for s, n in zip(states, state_sizes):
        if s is None:
            s = np.zeros((x.shape[0], n), dtype=dt)
        else:
            s = np.asarray(s, dtype=dt)
            _check(
                s.ndim == (1 if unbatched else 2),
                f"state has shape {s.shape} but x has {x.ndim - unbatched} dimensions; "
                "batched x needs batched states and unbatched x unbatched ones",
            )
            if unbatched:
                s = s[None, :]
            _check(
                s.shape == (x.shape[0], n),
                f"state has shape {s.shape}, expected {(x.shape[0], n)}",
            )
        out.append(s)
    return x, out, unbatched


def _check_weights(
    w_ih: np.ndarray, w_hh: np.ndarray, gates: int, n_in: int, name: str
) -> tuple[int, int]:
    """Check ``w_ih`` (G*H, I) and ``w_hh`` (G*H, H_out); return (H, H_out)."""
    _check(w_ih.ndim == 2 and w_hh.ndim == 2, f"{name}: weights must be 2-D")
    _check(
        w_ih.shape[0] % gates == 0 and w_ih.shape[0] == w_hh.shape[0],
        f"{name}: w_ih {w_ih.shape} and w_hh {w_hh.shape} must both have {gates}*H rows",
    )
    _check(w_ih.shape[1] == n_in, f"{name}: w_ih {w_ih.shape} does not take {n_in} inputs")
    return w_ih.shape[0] // gates, w_hh.shape[1]


# --------------------------------------------------------------------------------------
# Cells: one time step
# --------------------------------------------------------------------------------------


def rnn_cell(
    x: ArrayLike,
    h: ArrayLike | None,
    w_ih: ArrayLike,
    w_hh: ArrayLike,
    b_ih: ArrayLike | None = None,
    b_hh: ArrayLike | None = None,
    nonlinearity: str = "tanh",
    *,
    dtype: DTypeLike | None = None,
) -> np.ndarray:
    """One Elman RNN step: ``h' = act(W_ih x + b_ih + W_hh h + b_hh)``.

    Parameters
    ----------
    x : array_like, (B, I) or (I,)
    h : array_like or None, (B, H) or (H,)
        Same batching as ``x``; None means zeros.
    w_ih : array_like, (H, I)
    w_hh : array_like, (H, H)
    b_ih, b_hh : array_like or None, (H,)
    nonlinearity : {"tanh", "relu"}
    dtype : dtype, optional
        Compute dtype; default the result dtype of all arrays given.

    Returns
    -------
    numpy.ndarray, (B, H) or (H,)
    """
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    dt = _compute_dtype([x, h, w_ih, w_hh, b_ih, b_hh], dtype)
    w_ih, w_hh, b_ih, b_hh = (_as(a, dt) for a in (w_ih, w_hh, b_ih, b_hh))
    n_in = np.shape(x)[-1]
    hidden, h_out = _check_weights(w_ih, w_hh, 1, n_in, "rnn_cell")
    _check(h_out == hidden, f"rnn_cell: w_hh must be (H, H), got {w_hh.shape}")
    x, (h,), unbatched = _batch_cell_inputs(x, [h], [hidden], dt)

    pre = _affine(x, w_ih, b_ih) + _affine(h, w_hh, b_hh)
    h_new = np.tanh(pre) if nonlinearity == "tanh" else np.maximum(pre, 0)
    return h_new[0] if unbatched else h_new


def lstm_cell(
    x: ArrayLike,
    h: ArrayLike | None,
    c: ArrayLike | None,
    w_ih: ArrayLike,
    w_hh: ArrayLike,
    b_ih: ArrayLike | None = None,
    b_hh: ArrayLike | None = None,
    w_hr: ArrayLike | None = None,
    peephole: ArrayLike | None = None,
    *,
    dtype: DTypeLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One LSTM step (gate order i, f, g, o), optionally projected and with peepholes.

    ::

        i = σ(W_ii x + b_ii + W_hi h + b_hi + p_i ⊙ c)
        f = σ(W_if x + b_if + W_hf h + b_hf + p_f ⊙ c)
        g = tanh(W_ig x + b_ig + W_hg h + b_hg)
        c' = f ⊙ c + i ⊙ g
        o = σ(W_io x + b_io + W_ho h + b_ho + p_o ⊙ c')
        h' = o ⊙ tanh(c')            (then h' = W_hr h' with a projection)

    The peephole terms are present only when ``peephole`` is given.

    Parameters
    ----------
    x : array_like, (B, I) or (I,)
    h : array_like or None, (B, H_out) or (H_out,)
        H_out = P with a projection, else H. None means zeros.
    c : array_like or None, (B, H) or (H,)
        None means zeros.
    w_ih : array_like, (4H, I)
    w_hh : array_like, (4H, H_out)
    b_ih, b_hh : array_like or None, (4H,)
    w_hr : array_like or None, (P, H)
        Projection weights (PyTorch ``proj_size``).
    peephole : array_like or None, (3, H)
        Rows (p_i, p_f, p_o).
    dtype : dtype, optional
        Compute dtype; default the result dtype of all arrays given.

    Returns
    -------
    h_new : numpy.ndarray, (B, H_out) or (H_out,)
    c_new : numpy.ndarray, (B, H) or (H,)
    """
    dt = _compute_dtype([x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, peephole], dtype)
    w_ih, w_hh, b_ih, b_hh, w_hr, peephole = (
        _as(a, dt) for a in (w_ih, w_hh, b_ih, b_hh, w_hr, peephole)
    )
    n_in = np.shape(x)[-1]
    hidden, h_out = _check_weights(w_ih, w_hh, 4, n_in, "lstm_cell")
    if w_hr is None:
        _check(h_out == hidden, f"lstm_cell: w_hh must be (4H, H), got {w_hh.shape}")
    else:
        _check(
            w_hr.shape == (h_out, hidden),
            f"lstm_cell: w_hr must be (P, H) = {(h_out, hidden)}, got {w_hr.shape}",
        )
    if peephole is not None:
        _check(
            peephole.shape == (3, hidden),
            f"lstm_cell: peephole must be (3, H) = {(3, hidden)}, got {peephole.shape}",
        )
    x, (h, c), unbatched = _batch_cell_inputs(x, [h, c], [h_out, hidden], dt)

    gates = _affine(x, w_ih, b_ih) + _affine(h, w_hh, b_hh)  # (B, 4H)
    a_i, a_f, a_g, a_o = (gates[:, k * hidden : (k + 1) * hidden] for k in range(4))
    if peephole is not None:
        a_i = a_i + peephole[0] * c
        a_f = a_f + peephole[1] * c
    i = sigmoid(a_i)
    f = sigmoid(a_f)
    g = np.tanh(a_g)
    c_new = f * c + i * g
    if peephole is not None:
        a_o = a_o + peephole[2] * c_new
    o = sigmoid(a_o)
    h_new = o * np.tanh(c_new)
    if w_hr is not None:
        h_new = h_new @ w_hr.T
    if unbatched:
        return h_new[0], c_new[0]
    return h_new, c_new


def gru_cell(
    x: ArrayLike,
    h: ArrayLike | None,
    w_ih: ArrayLike,
    w_hh: ArrayLike,
    b_ih: ArrayLike | None = None,
    b_hh: ArrayLike | None = None,
    linear_before_reset: bool = True,
    *,
    dtype: DTypeLike | None = None,
) -> np.ndarray:
    """One GRU step (gate order r, z, n).

    ::

        r = σ(W_ir x + b_ir + W_hr h + b_hr)
        z = σ(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))    linear_before_reset=True
        n = tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn)    linear_before_reset=False
        h' = (1 − z) ⊙ n + z ⊙ h

    Parameters
    ----------
    x : array_like, (B, I) or (I,)
    h : array_like or None, (B, H) or (H,)
        Same batching as ``x``; None means zeros.
    w_ih : array_like, (3H, I)
    w_hh : array_like, (3H, H)
    b_ih, b_hh : array_like or None, (3H,)
    linear_before_reset : bool
        True is PyTorch's (and cuDNN's) form, False the original Cho et al. form.
    dtype : dtype, optional
        Compute dtype; default the result dtype of all arrays given.

    Returns
    -------
    numpy.ndarray, (B, H) or (H,)
    """
    dt = _compute_dtype([x, h, w_ih, w_hh, b_ih, b_hh], dtype)
    w_ih, w_hh, b_ih, b_hh = (_as(a, dt) for a in (w_ih, w_hh, b_ih, b_hh))
    n_in = np.shape(x)[-1]
    hidden, h_out = _check_weights(w_ih, w_hh, 3, n_in, "gru_cell")
    _check(h_out == hidden, f"gru_cell: w_hh must be (3H, H), got {w_hh.shape}")
    x, (h,), unbatched = _batch_cell_inputs(x, [h], [hidden], dt)

    H = hidden
    gi = _affine(x, w_ih, b_ih)  # (B, 3H)
    w_hr, w_hz, w_hn = w_hh[:H], w_hh[H : 2 * H], w_hh[2 * H :]
    b_hr = b_hz = b_hn = None
    if b_hh is not None:
        b_hr, b_hz, b_hn = b_hh[:H], b_hh[H : 2 * H], b_hh[2 * H :]
    r = sigmoid(gi[:, :H] + _affine(h, w_hr, b_hr))
    z = sigmoid(gi[:, H : 2 * H] + _affine(h, w_hz, b_hz))
    if linear_before_reset:
        n = np.tanh(gi[:, 2 * H :] + r * _affine(h, w_hn, b_hn))
    else:
        n = np.tanh(gi[:, 2 * H :] + _affine(r * h, w_hn, b_hn))
    h_new = (1 - z) * n + z * h
    return h_new[0] if unbatched else h_new


# --------------------------------------------------------------------------------------
# Whole networks: layers x directions x time
# --------------------------------------------------------------------------------------

# A step function: (x_t (b, I), [states (b, n)], weights of one layer+direction)
# -> [new states]; states[0] is h, the step's output.
_Step = Callable[[np.ndarray, list[np.ndarray], dict[str, np.ndarray]], list[np.ndarray]]


def _layer_weights(
    params: Mapping[str, Any],
    layer: int,
    direction: int,
    dt: np.dtype,
    *,
    projection: bool = False,
    peephole: bool = False,
) -> dict[str, np.ndarray | None]:
    """Fetch one layer+direction's weights from a PyTorch-named dict."""
    sfx = f"_l{layer}" + ("_reverse" if direction else "")

    def get(name: str, required: bool) -> np.ndarray | None:
        key = name + sfx
        if key not in params:
            if required:
                raise ValueError(f"params has no {key!r} (keys: {sorted(params)})")
            return None
        return np.asarray(params[key], dtype=dt)

    w = {
        "w_ih": get("weight_ih", True),
        "w_hh": get("weight_hh", True),
        "b_ih": get("bias_ih", False),
        "b_hh": get("bias_hh", False),
        "w_hr": get("weight_hr", projection),
        "peephole": get("weight_peephole", peephole),
    }
    _check(
        (w["b_ih"] is None) == (w["b_hh"] is None),
        f"params must have both or neither of bias_ih{sfx} and bias_hh{sfx}",
    )
    _check(
        projection == (w["w_hr"] is not None),
        f"params {'lacks' if projection else 'has'} weight_hr{sfx} "
        f"but proj_size {'> 0' if projection else '= 0'}",
    )
    _check(
        peephole == (w["peephole"] is not None),
        f"params {'lacks' if peephole else 'has'} weight_peephole{sfx} "
        f"but peephole={peephole}",
    )
    return w


def _run(
    step: _Step,
    gates: int,
    x: ArrayLike,
    params: Mapping[str, Any],
    *,
    num_layers: int,
    bidirectional: bool,
    batch_first: bool,
    states0: list[ArrayLike | None],
    lengths: ArrayLike | None,
    dtype: DTypeLike | None,
    projection: bool = False,
    peephole: bool = False,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Run a stacked, optionally bidirectional recurrent net; PyTorch semantics.

    ``states0`` lists the initial states (h0, and c0 for LSTM), each
    (D*L, B, n) / (D*L, n) or None. Returns ``(out, [h_n, (c_n)])`` with the shapes
    of the public functions.
    """
    _check(num_layers >= 1, f"num_layers must be >= 1, got {num_layers}")
    D = 2 if bidirectional else 1
    dt = _compute_dtype([x, *states0, *params.values()], dtype)

    x = np.asarray(x, dtype=dt)
    _check(x.ndim in (2, 3), f"x must be (T, B, I), (B, T, I) or (T, I); got shape {x.shape}")
    unbatched = x.ndim == 2
    if unbatched:
        x = x[:, None, :]
    elif batch_first:
        x = x.transpose(1, 0, 2)
    T, B, _ = x.shape

    # Sizes, from layer 0's forward weights.
    w0 = _layer_weights(params, 0, 0, dt, projection=projection, peephole=peephole)
    hidden = w0["w_hh"].shape[0] // gates
    h_out = w0["w_hh"].shape[1]
    state_sizes = [h_out, hidden][: len(states0)]

    # Initial states -> (D*L, B, n).
    states = []
    for s, n in zip(states0, state_sizes):
        if s is None:
            s = np.zeros((D * num_layers, B, n), dtype=dt)
        else:
            s = np.asarray(s, dtype=dt)
            if unbatched:
                _check(s.ndim == 2, f"unbatched x needs 2-D initial states, got {s.shape}")
                s = s[:, None, :]
            _check(
                s.shape == (D * num_layers, B, n),
                f"initial state has shape {s.shape}, expected {(D * num_layers, B, n)}",
            )
        states.append(s)

    if lengths is None:
        lens = np.full(B, T, dtype=np.int64)
    else:
        lens = np.asarray(lengths)
        _check(lens.dtype.kind in "iu", f"lengths must be integers, got dtype {lens.dtype}")
        lens = lens.reshape(-1).astype(np.int64)
        _check(lens.shape == (B,), f"lengths must have shape ({B},), got {np.shape(lengths)}")
        _check(
            bool(np.all((lens >= 1) & (lens <= T))),
            f"each length must be in [1, T={T}], got {lens.tolist()}",
        )

    final = [np.empty_like(s) for s in states]
    layer_in = x
    for layer in range(num_layers):
        outs = []
        for d in range(D):
            w = _layer_weights(params, layer, d, dt, projection=projection, peephole=peephole)
            _check(
                w["w_ih"].shape[1] == layer_in.shape[2],
                f"weight_ih_l{layer}{'_reverse' if d else ''} has shape {w['w_ih'].shape} "
                f"but the layer's input has {layer_in.shape[2]} features",
            )
            idx = layer * D + d
            cur = [s[idx].copy() for s in states]
            y = np.zeros((T, B, h_out), dtype=dt)
            # Forward runs 0..T-1; reverse runs T-1..0 but each sequence b only
            # takes part at steps t < lengths[b], so it starts at lengths[b]-1.
            for t in range(T) if d == 0 else range(T - 1, -1, -1):
                active = np.nonzero(t < lens)[0]
                new = step(layer_in[t, active], [s[active] for s in cur], w)
                for s, s_new in zip(cur, new):
                    s[active] = s_new
                y[t, active] = new[0]
            for f, s in zip(final, cur):
                f[idx] = s
            outs.append(y)
        layer_in = np.concatenate(outs, axis=2)

    out = layer_in
    if unbatched:
        out = out[:, 0]
        final = [f[:, 0] for f in final]
    elif batch_first:
        out = out.transpose(1, 0, 2)
    return np.ascontiguousarray(out), [np.ascontiguousarray(f) for f in final]


def rnn(
    x: ArrayLike,
    params: Mapping[str, Any],
    *,
    num_layers: int = 1,
    nonlinearity: str = "tanh",
    bidirectional: bool = False,
    batch_first: bool = False,
    h0: ArrayLike | None = None,
    lengths: ArrayLike | None = None,
    dtype: DTypeLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Multi-layer Elman RNN with ``torch.nn.RNN``'s semantics.

    Parameters
    ----------
    x : array_like, (T, B, I), (B, T, I) if ``batch_first``, or unbatched (T, I)
    params : mapping of str to array_like
        ``weight_ih_l{k}`` (H, I or D*H), ``weight_hh_l{k}`` (H, H) and optionally
        ``bias_ih_l{k}``, ``bias_hh_l{k}`` (H,), each with a ``_reverse`` twin when
        ``bidirectional``.
    num_layers : int
    nonlinearity : {"tanh", "relu"}
    bidirectional : bool
    batch_first : bool
        Layout of ``x`` and ``out`` only; states are always (D*L, B, H).
    h0 : array_like or None, (D*L, B, H), or (D*L, H) for unbatched x
        Initial hidden state, index ``layer*D + direction``; None means zeros.
    lengths : array_like of int or None, (B,)
        Valid steps of each sequence, each in [1, T] (see the module docstring).
    dtype : dtype, optional
        Compute dtype; default the result dtype of all arrays given.

    Returns
    -------
    out : numpy.ndarray, (T, B, D*H) (``batch_first``: (B, T, D*H); unbatched: (T, D*H))
        Last layer's output, [forward, reverse] on the last axis; 0 past each length.
    h_n : numpy.ndarray, (D*L, B, H) (unbatched: (D*L, H))
    """
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")

    def step(x_t, states, w):
        (h,) = states
        return [rnn_cell(x_t, h, w["w_ih"], w["w_hh"], w["b_ih"], w["b_hh"], nonlinearity)]

    out, (h_n,) = _run(
        step, 1, x, params, num_layers=num_layers, bidirectional=bidirectional,
        batch_first=batch_first, states0=[h0], lengths=lengths, dtype=dtype,
    )  # fmt: skip
    return out, h_n


def lstm(
    x: ArrayLike,
    params: Mapping[str, Any],
    *,
    num_layers: int = 1,
    bidirectional: bool = False,
    batch_first: bool = False,
    proj_size: int = 0,
    peephole: bool = False,
    h0: ArrayLike | None = None,
    c0: ArrayLike | None = None,
    lengths: ArrayLike | None = None,
    dtype: DTypeLike | None = None,
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Multi-layer LSTM with ``torch.nn.LSTM``'s semantics, plus optional peepholes.

    Parameters
    ----------
    x : array_like, (T, B, I), (B, T, I) if ``batch_first``, or unbatched (T, I)
    params : mapping of str to array_like
        ``weight_ih_l{k}`` (4H, I or D*H_out), ``weight_hh_l{k}`` (4H, H_out),
        optionally ``bias_ih_l{k}``, ``bias_hh_l{k}`` (4H,); ``weight_hr_l{k}``
        (P, H) when ``proj_size`` > 0; ``weight_peephole_l{k}`` (3, H), rows
        (i, f, o), when ``peephole``; each with a ``_reverse`` twin when
        ``bidirectional``. H_out = P if ``proj_size`` else H.
    num_layers : int
    bidirectional : bool
    batch_first : bool
        Layout of ``x`` and ``out`` only.
    proj_size : int
        P, or 0 for no projection; must match the rows of ``weight_hr_l{k}``.
    peephole : bool
    h0 : array_like or None, (D*L, B, H_out), or (D*L, H_out) for unbatched x
    c0 : array_like or None, (D*L, B, H), or (D*L, H) for unbatched x
    lengths : array_like of int or None, (B,)
        Valid steps of each sequence, each in [1, T] (see the module docstring).
    dtype : dtype, optional
        Compute dtype; default the result dtype of all arrays given.

    Returns
    -------
    out : numpy.ndarray, (T, B, D*H_out)
        ``batch_first``: (B, T, D*H_out); unbatched: (T, D*H_out). 0 past each length.
    (h_n, c_n) : tuple of numpy.ndarray, (D*L, B, H_out) and (D*L, B, H)
        The batch axis is dropped for unbatched x.
    """
    projection = proj_size > 0

    def step(x_t, states, w):
        h, c = states
        return list(
            lstm_cell(
                x_t, h, c, w["w_ih"], w["w_hh"], w["b_ih"], w["b_hh"],
                w_hr=w["w_hr"], peephole=w["peephole"],
            )  # fmt: skip
        )

    out, (h_n, c_n) = _run(
        step, 4, x, params, num_layers=num_layers, bidirectional=bidirectional,
        batch_first=batch_first, states0=[h0, c0], lengths=lengths, dtype=dtype,
        projection=projection, peephole=peephole,
    )  # fmt: skip
    if projection:
        _check(
            h_n.shape[-1] == proj_size,
            f"proj_size={proj_size} but weight_hh_l0 gives {h_n.shape[-1]}",
        )
    return out, (h_n, c_n)


def gru(
    x: ArrayLike,
    params: Mapping[str, Any],
    *,
    num_layers: int = 1,
    bidirectional: bool = False,
    batch_first: bool = False,
    linear_before_reset: bool = True,
    h0: ArrayLike | None = None,
    lengths: ArrayLike | None = None,
    dtype: DTypeLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Multi-layer GRU with ``torch.nn.GRU``'s semantics (and the Cho et al. variant).

    Parameters
    ----------
    x : array_like, (T, B, I), (B, T, I) if ``batch_first``, or unbatched (T, I)
    params : mapping of str to array_like
        ``weight_ih_l{k}`` (3H, I or D*H), ``weight_hh_l{k}`` (3H, H) and optionally
        ``bias_ih_l{k}``, ``bias_hh_l{k}`` (3H,), each with a ``_reverse`` twin when
        ``bidirectional``.
    num_layers : int
    bidirectional : bool
    batch_first : bool
        Layout of ``x`` and ``out`` only.
    linear_before_reset : bool
        True: PyTorch's form; False: ``n = tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn)``.
    h0 : array_like or None, (D*L, B, H), or (D*L, H) for unbatched x
    lengths : array_like of int or None, (B,)
        Valid steps of each sequence, each in [1, T] (see the module docstring).
    dtype : dtype, optional
        Compute dtype; default the result dtype of all arrays given.

    Returns
    -------
    out : numpy.ndarray, (T, B, D*H) (``batch_first``: (B, T, D*H); unbatched: (T, D*H))
    h_n : numpy.ndarray, (D*L, B, H) (unbatched: (D*L, H))
    """

    def step(x_t, states, w):
        (h,) = states
        return [
            gru_cell(
                x_t, h, w["w_ih"], w["w_hh"], w["b_ih"], w["b_hh"],
                linear_before_reset=linear_before_reset,
            )  # fmt: skip
        ]

    out, (h_n,) = _run(
        step, 3, x, params, num_layers=num_layers, bidirectional=bidirectional,
        batch_first=batch_first, states0=[h0], lengths=lengths, dtype=dtype,
    )  # fmt: skip
    return out, h_n


# --------------------------------------------------------------------------------------
# Running a fastrnn layer object through the reference
# --------------------------------------------------------------------------------------

_CELL_KINDS = {1: "RNN", 4: "LSTM", 3: "GRU"}


def forward(
    layer: Any,
    x: ArrayLike,
    hx: Any = None,
    *,
    lengths: ArrayLike | None = None,
    dtype: DTypeLike = np.float64,
) -> Any:
    """Run the reference for a fastrnn layer (or cell), duck-typed.

    Layers are read through the attributes ``mode`` ("RNN_TANH", "RNN_RELU", "LSTM"
    or "GRU"), ``num_layers``, ``bidirectional``, ``batch_first``, ``proj_size`` and
    ``peephole`` (LSTM), ``linear_before_reset`` (GRU) and ``state_dict()`` (NumPy
    arrays under PyTorch's names). Nothing is imported from fastrnn.

    Cells are recognised by their ``state_dict()`` keys (``weight_ih`` rather than
    ``weight_ih_l0``); their kind comes from ``mode`` if they have one, else from the
    weight shapes, and an RNN cell's activation from ``nonlinearity``.

    Parameters
    ----------
    layer : object
        A fastrnn ``RNN``/``LSTM``/``GRU`` (or cell), or anything with the attributes
        above.
    x : array_like
        As for :func:`rnn`, :func:`lstm`, :func:`gru` (cells: (B, I) or (I,)).
    hx : array_like, tuple or None
        h0, or ``(h0, c0)`` for an LSTM; None means zeros.
    lengths : array_like of int or None, (B,)
        Layers only.
    dtype : dtype
        Weights, inputs and states are cast to it and the computation runs in it.

    Returns
    -------
    Whatever the matching function returns: ``(out, h_n)``, ``(out, (h_n, c_n))`` for
    LSTM; for cells ``h_new`` or ``(h_new, c_new)``.
    """
    dt = np.dtype(dtype)
    sd = {k: np.asarray(v, dtype=dt) for k, v in layer.state_dict().items()}
    x = np.asarray(x, dtype=dt)

    def cast(a):
        return None if a is None else np.asarray(a, dtype=dt)

    if "weight_ih" in sd:  # a cell
        mode = getattr(layer, "mode", None)
        if mode is None:
            kind = _CELL_KINDS.get(sd["weight_hh"].shape[0] // sd["weight_hh"].shape[1])
            nonlin = getattr(layer, "nonlinearity", "tanh")
        else:
            kind, _, nonlin = str(mode).partition("_")
            nonlin = nonlin.lower() or getattr(layer, "nonlinearity", "tanh")
        w = (sd["weight_ih"], sd["weight_hh"], sd.get("bias_ih"), sd.get("bias_hh"))
        if lengths is not None:
            raise ValueError("lengths is for layers, not cells")
        if kind == "RNN":
            return rnn_cell(x, cast(hx), *w, nonlinearity=nonlin)
        if kind == "LSTM":
            h0, c0 = (None, None) if hx is None else hx
            return lstm_cell(x, cast(h0), cast(c0), *w)
        if kind == "GRU":
            return gru_cell(x, cast(hx), *w)
        raise ValueError(f"cannot tell the cell kind of {type(layer).__name__}")

    mode = layer.mode
    common = {
        "num_layers": int(layer.num_layers),
        "bidirectional": bool(layer.bidirectional),
        "batch_first": bool(layer.batch_first),
        "lengths": lengths,
    }
    if mode in ("RNN_TANH", "RNN_RELU"):
        nonlin = "tanh" if mode == "RNN_TANH" else "relu"
        return rnn(x, sd, nonlinearity=nonlin, h0=cast(hx), **common)
    if mode == "LSTM":
        h0, c0 = (None, None) if hx is None else hx
        return lstm(
            x, sd, proj_size=int(getattr(layer, "proj_size", 0) or 0),
            peephole=bool(getattr(layer, "peephole", False)),
            h0=cast(h0), c0=cast(c0), **common,
        )  # fmt: skip
    if mode == "GRU":
        return gru(
            x, sd, linear_before_reset=bool(getattr(layer, "linear_before_reset", True)),
            h0=cast(hx), **common,
        )  # fmt: skip
    raise ValueError(f"layer.mode must be RNN_TANH, RNN_RELU, LSTM or GRU; got {mode!r}")
