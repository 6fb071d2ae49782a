"""Whole models (SPEC §7): the modules around the recurrent layers, pooling,
composition, conversion from torch, and generation decoded in C.

- :class:`Embedding`, :class:`Linear`, :class:`LayerNorm`, :class:`Dropout`,
  :class:`ReLU`, :class:`Tanh`, :class:`Sigmoid`, :class:`Softmax`: torch's names,
  call signatures and state_dict keys, on NumPy arrays.
- :func:`pool`, :class:`Pool`, :class:`AttentionPool`: one vector per sequence.
- :class:`Sequential` and :func:`from_torch`.
- :class:`Attention`, :class:`Seq2Seq`, :class:`LanguageModel`: generation.
- :func:`save_model`, :func:`load_model`: whole models in one ``.npz``.
"""

from ._basic import Dropout, Embedding, LayerNorm, Linear, ReLU, Sigmoid, Softmax, Tanh
from ._pool import AttentionPool, Pool, pool
from ._seq2seq import Attention, LanguageModel, Seq2Seq
from ._sequential import Sequential, from_torch, load_model, save_model

__all__ = [
    "Embedding",
    "Linear",
    "LayerNorm",
    "Dropout",
    "ReLU",
    "Tanh",
    "Sigmoid",
    "Softmax",
    "pool",
    "Pool",
    "AttentionPool",
    "Sequential",
    "from_torch",
    "Attention",
    "Seq2Seq",
    "LanguageModel",
    "save_model",
    "load_model",
]
