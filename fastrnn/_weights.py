"""New weights for constructors, and placeholders for them while a model file is rebuilt.

A model file's description declares sizes; its weights come from the file's
arrays. Running the constructors with real initial weights first would take
memory and time in proportion to the declared sizes, not to the file (a few
hundred bytes can declare gigabytes). So every constructor that makes weights
calls :func:`new`, and while :func:`placeholders` is active in the calling thread,
``new`` returns a read-only zero-stride array of the right shape and dtype that
takes no memory. The strict ``load_state_dict`` that follows must replace every
one: :func:`check_replaced` says if any is left.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import numpy as np

__all__ = ["new", "placeholders", "check_replaced"]

_local = threading.local()  # per thread: another thread may build a model meanwhile


@contextmanager
def placeholders():
    """Within the block, :func:`new` in this thread returns placeholders; yields the
    list of those made (for :func:`check_replaced`)."""
    made: list[np.ndarray] = []
    outer = getattr(_local, "made", None)
    _local.made = made
    try:
        yield made
    finally:
        _local.made = outer


def new(shape: tuple[int, ...], dtype, init) -> np.ndarray:
    """Initial weights ``init(shape)`` converted to ``dtype``; a placeholder of that
    shape and dtype (no memory, read-only) inside :func:`placeholders`. ``init`` is
    not called then, so it may draw from a random generator or write into the
    array it makes."""
    made = getattr(_local, "made", None)
    if made is None:
        return np.asarray(init(shape)).astype(dtype)
    placeholder = np.broadcast_to(np.zeros((), dtype), shape)
    made.append(placeholder)
    return placeholder


def check_replaced(made, params) -> None:
    """RuntimeError if one of the placeholders `made` is still among `params` (the
    arrays a rebuilt model holds after its load)."""
    left = {id(p) for p in made}.intersection(id(a) for a in params)
    if left:
        raise RuntimeError(f"internal error: {len(left)} placeholder weight(s) survived the "
                           "model's load")
