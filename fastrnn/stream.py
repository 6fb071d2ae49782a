"""Streams: step a unidirectional layer one time step per call (SPEC §2).

Real-time callers (audio frames, sensor ticks, token-by-token decoding) pay the
per-call cost on every step, so `step` does as little as possible: its common case
(the weights unchanged, x and out already what the engine reads) is one call into
Cython (StreamFront, fastrnn/_kernels.pyx) and one C call on preallocated state,
with no Python frame. Everything else comes back here to be followed, converted
or refused.
"""

from __future__ import annotations

import numpy as np

from . import _kernels
from . import _validate as v

__all__ = ["Stream"]


class Stream(_kernels.StreamFront):
    """A stateful stepper over a unidirectional RNN, LSTM or GRU.

    Made by ``layer.stream(batch_size=1, state=None)``. ``step(x_t, out=None)``
    takes one time step of shape (B, input_size), or (input_size,) when
    batch_size is 1, and returns that step's output (B, H_out) or (H_out,).
    The state (``h`` of shape (num_layers, B, H_out); for LSTM the tuple
    ``(h, c)`` with c (num_layers, B, hidden_size)) is carried between calls;
    read or set it with :attr:`state`, zero it with :meth:`reset`.

    The stream follows the layer's current weights: if they are reloaded, the
    next step uses the new ones and keeps the carried state.

    Each step reads all of the input and recurrent weights; a call on a whole
    sequence reads the input weights once per chunk of steps and projects the
    inputs in one matrix product, so it costs less per step (about 1.5x less for
    an LSTM of 512 units on one thread). Stream when the inputs arrive one at a
    time; otherwise call the layer on the sequence.
    """

    # (_layer, _plan and _c are StreamFront's: its step reads them)
    __slots__ = ("_batch", "_dtype", "_in", "_out_shape", "_out_shape1", "_lstm")

    def __init__(self, layer, batch_size: int = 1, state=None):
        if layer.bidirectional:
            raise ValueError(
                "a bidirectional layer cannot stream: its reverse direction needs the whole "
                "sequence, from the last step back to the first; call the layer on the "
                "sequence instead, or stream a unidirectional layer"
            )
        self._layer = layer
        # the engine counts rows in a C int
        self._batch = v.integer("batch_size", batch_size, minimum=1, maximum=2**31 - 1)
        self._dtype = layer.dtype
        self._in = layer.input_size
        self._out_shape = (self.batch_size, layer._h_out)
        self._out_shape1 = (layer._h_out,)
        self._lstm = layer.mode == "LSTM"
        self._plan = layer._packed()
        self._c = self._new_c(self._plan)
        if state is not None:
            self.state = state

    @property
    def batch_size(self) -> int:
        """The rows stepped at once, fixed when the stream is made (its state and the
        engine's buffers are sized by it): for another, make another stream."""
        return self._batch

    @batch_size.setter
    def batch_size(self, value):
        raise AttributeError("Stream.batch_size cannot be changed: the stream's state and "
                             "buffers are sized by it; make another stream with "
                             "layer.stream(batch_size=...)")

    # -- state ------------------------------------------------------------

    def _state_shapes(self):
        L = self._layer.num_layers
        return (L, self.batch_size, self._layer._h_out), (L, self.batch_size, self._layer.hidden_size)

    @property
    def state(self):
        """A copy of the carried state: h, or (h, c) for an LSTM."""
        self._follow_layer()
        hs, cs = self._state_shapes()
        h = np.empty(hs, self._dtype)
        c = np.empty(cs, self._dtype) if self._lstm else None
        self._c.get_state(h, c)
        return (h, c) if self._lstm else h

    @state.setter
    def state(self, value):
        self._follow_layer()
        hs, cs = self._state_shapes()
        if self._lstm:
            if not isinstance(value, (tuple, list)) or len(value) != 2:
                raise TypeError(
                    "the state of an LSTM stream is a tuple (h, c), got " + type(value).__name__
                )
            h = v.state("h", value[0], hs, self._dtype, False)
            c = v.state("c", value[1], cs, self._dtype, False)
        else:
            if isinstance(value, tuple):
                raise TypeError("the state of an RNN or GRU stream is one array h, got a tuple")
            h = v.state("h", value, hs, self._dtype, False)
            c = None
        self._c.set_state(h, c)

    def reset(self) -> None:
        """Zero the carried state."""
        self._replace(self._layer._packed(), keep_state=False)

    def _new_c(self, plan):
        return _kernels.Stream(plan, self.batch_size, self._in, self._layer._h_out,
                               self._dtype == np.float64)

    def _follow_layer(self) -> None:
        plan = self._layer._packed()
        if plan is not self._plan:  # weights reloaded or ISA changed: keep the state
            self._replace(plan, keep_state=True)

    def _replace(self, plan, keep_state: bool) -> None:
        """Go on in a new engine stream for plan, with the carried state or zeroed.
        The old one is retired in the same step: a step another thread begins on it
        is refused, not taken and lost."""
        new = self._new_c(plan)
        if keep_state:
            hs, cs = self._state_shapes()
            h = np.empty(hs, self._dtype)
            c = np.empty(cs, self._dtype) if self._lstm else None
            self._c.retire(h, c)
            new.set_state(h, c)
        else:
            self._c.retire()
        self._plan, self._c = plan, new

    # -- stepping -----------------------------------------------------------

    # step(x, out=None) is StreamFront's (fastrnn/_kernels.pyx): the common case in
    # one call from Python. Everything else comes here: new weights to follow, or x
    # and out that are not already what the engine reads (C-contiguous arrays of the
    # layer dtype and a step's shape), to be converted or refused.

    def _step_checked(self, x, out):
        if self._layer._plan is not self._plan:
            self._follow_layer()
            y = self._c.step(x, out)  # the common case, on the new engine stream
            if y is not None:
                return y
        x = v.numeric("x", x)  # converted once its shape is known to be right
        unbatched = x.ndim == 1
        if unbatched:
            if x.shape[0] != self._in or self.batch_size != 1:
                self._bad_step_shape(x)
        elif x.ndim != 2 or x.shape[0] != self.batch_size or x.shape[1] != self._in:
            self._bad_step_shape(x)
        x = v.convert(x, self._dtype)
        shape = self._out_shape1 if unbatched else self._out_shape
        if out is not None and (not isinstance(out, np.ndarray) or out.dtype != self._dtype or
                                out.shape != shape or not out.flags.writeable):
            self._bad_out(out, shape)
        # The engine writes aligned C-contiguous rows and reads x to the end: any
        # other out (a strided view such as Y[:, t] of a batch-first buffer, Fortran
        # order, or memory x shares) gets the step through a copy
        if out is not None and (not out.flags.c_contiguous or not out.flags.aligned
                                or np.may_share_memory(x, out)):
            out[...] = self._c.step(x, None)
            return out
        return self._c.step(x, out)

    def _bad_step_shape(self, x):
        B, I = self.batch_size, self._in
        allowed = f"({B}, {I})" + (f" or ({I},)" if B == 1 else "")
        raise ValueError(f"x has shape {x.shape}; this stream takes one step of shape {allowed}")

    def _bad_out(self, out, shape):
        if not isinstance(out, np.ndarray):
            raise TypeError(f"out must be a NumPy array, got {type(out).__name__}")
        if out.dtype != self._dtype:
            raise TypeError(f"out has dtype {out.dtype}; it must be {self._dtype} (the layer dtype)")
        if out.shape != shape:
            raise ValueError(f"out has shape {out.shape}; expected {shape}")
        raise ValueError("out must be a writeable array")

    def __reduce__(self):
        raise TypeError("a Stream cannot be copied or pickled (its state lives in the "
                        "engine); make another with layer.stream(batch_size, "
                        "state=stream.state)")

    def __repr__(self) -> str:
        return f"Stream({self._layer!r}, batch_size={self.batch_size})"
