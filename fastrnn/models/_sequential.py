"""Sequential composition, conversion of torch models, and model files."""

from __future__ import annotations

import json
import os

import numpy as np

from .. import _weights
from ..cells import GRUCell, LSTMCell, RNNCell
from ..errors import ModelFileError
from ..io._arrays import atomic_write
from ..layers import GRU, LSTM, RNN
from ._base import Module, _leaves, is_torch
from ._basic import Dropout, Embedding, LayerNorm, Linear, ReLU, Sigmoid, Softmax, Tanh
from ._pool import AttentionPool, Pool

__all__ = ["Sequential", "from_torch", "save_model", "load_model"]

_RECURRENT = (RNN, LSTM, GRU)


def _check_member(m, where):
    if isinstance(m, (Module, *_RECURRENT)):
        return m
    if isinstance(m, (RNNCell, LSTMCell, GRUCell)):
        raise TypeError(f"{where} is a {type(m).__name__}: cells take one step, not a "
                        "sequence; use the layer (RNN, LSTM or GRU) in a Sequential")
    raise TypeError(f"{where} is a {type(m).__module__}.{type(m).__name__}; a Sequential "
                    "holds fastrnn modules (layers, Embedding, Linear, ...)")


class Sequential(Module):
    """Modules run in order: ``seq(x, lengths=None)`` returns the last one's output.

    - A recurrent layer (RNN, LSTM, GRU) passes on its output sequence only (its
      final states are dropped), and gets ``lengths``.
    - ``lengths`` reach every module that takes them: recurrent layers,
      :class:`Pool`, :class:`AttentionPool` (and nested Sequentials).
    - Pool-like modules whose ``batch_first``/``bidirectional`` are left at None
      follow the last recurrent layer before them.
    - Dropout is the identity (inference).

    state_dict names are torch's for ``nn.Sequential``: ``"0.weight"``,
    ``"1.weight_ih_l0"``, nested ``"2.0.bias"``. Index it, iterate it, take len().
    """

    def __init__(self, *modules):
        super().__init__()
        self._modules = tuple(_check_member(m, f"module {i}") for i, m in enumerate(modules))

    def _children(self):
        return [(str(i), m) for i, m in enumerate(self._modules)]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return Sequential(*self._modules[i])
        return self._modules[i]

    def __call__(self, x, lengths=None):
        x, _ = self._run(x, lengths, {"batch_first": None, "bidirectional": None})
        return x

    def _run(self, x, lengths, ctx):
        for m in self._modules:
            if isinstance(m, _RECURRENT):
                bf = m.batch_first  # once: the pool after it must see the same layout
                x = m._run(x, None, None, lengths, bf)[0]
                ctx = {"batch_first": bf, "bidirectional": m.bidirectional}
            elif isinstance(m, Sequential):
                x, ctx = m._run(x, lengths, ctx)
            elif isinstance(m, Dropout):
                continue
            elif isinstance(m, Pool):
                x = m(x, lengths, batch_first=_follow(m.batch_first, ctx["batch_first"]),
                      bidirectional=_follow(m.bidirectional, ctx["bidirectional"]))
            elif isinstance(m, AttentionPool):
                x = m(x, lengths, batch_first=_follow(m.batch_first, ctx["batch_first"]))
            elif getattr(m, "takes_lengths", False):
                x = m(x, lengths)
            else:
                x = m(x)
        return x, ctx

    @property
    def dtype(self):
        """The dtype of the first member that has one (None if none has)."""
        for m in self._modules:
            dt = getattr(m, "dtype", None)
            if dt is not None:
                return dt
        return None

    @classmethod
    def from_torch(cls, module) -> Sequential:
        """Convert a torch.nn.Sequential (see :func:`fastrnn.from_torch`)."""
        if not is_torch(module, ("Sequential",)):
            raise TypeError(f"Sequential.from_torch expects a torch.nn.Sequential, got "
                            f"{type(module).__name__}")
        return from_torch(module)

    def save(self, path, *, meta=None) -> None:
        """Write to ``.npz``: see :func:`save_model`."""
        save_model(self, path, meta=meta)

    def _config(self):
        return {}

    def __repr__(self):
        inner = ",\n".join("  " + repr(m).replace("\n", "\n  ") for m in self._modules)
        return "Sequential(\n" + inner + "\n)" if inner else "Sequential()"


def _follow(attr, ctx_value):
    if attr is not None:
        return attr
    return bool(ctx_value) if ctx_value is not None else False


# -- conversion from torch -------------------------------------------------------

def _leaf_converters():
    from ._seq2seq import Attention

    return {
        "LSTM": LSTM.from_torch, "GRU": GRU.from_torch, "RNN": RNN.from_torch,
        "LSTMCell": LSTMCell.from_torch, "GRUCell": GRUCell.from_torch,
        "RNNCell": RNNCell.from_torch,
        "Embedding": Embedding.from_torch, "Linear": Linear.from_torch,
        "LayerNorm": LayerNorm.from_torch, "Dropout": Dropout.from_torch,
        "ReLU": ReLU.from_torch, "Tanh": Tanh.from_torch, "Sigmoid": Sigmoid.from_torch,
        "Softmax": Softmax.from_torch,
    }, Attention


def from_torch(model, *, converters=None):
    """The fastrnn equivalent of a torch model, weights included.

    Converts these torch.nn modules: RNN, LSTM, GRU (and their cells, at the top
    level only), Embedding, Linear, LayerNorm, Dropout, ReLU, Tanh, Sigmoid,
    Softmax, and ``nn.Sequential`` of them, nested ones too (a recurrent layer in
    a Sequential passes on its output sequence, as :class:`Sequential` says).

    Custom modules (subclasses of nn.Module with their own ``forward``) are NOT
    converted: their forward is arbitrary Python that fastrnn does not read, so
    no pattern is guessed. Convert their parts with each class's ``from_torch``
    (e.g. ``AttentionPool.from_torch`` for a module with a ``score`` Linear,
    ``Attention.from_torch`` for one with ``Wa``/``Ua``/``Va``) and assemble them,
    or pass ``converters={MyTorchClass: function}``: each function takes the torch
    module and returns a fastrnn module; it is used wherever that class appears.

    Raises TypeError naming the first unsupported submodule by its path (torch's
    dotted name, as in ``named_modules()``) and class.
    """
    if converters is not None and not isinstance(converters, dict):
        raise TypeError(f"converters must be a dict {{torch class: function}}, got "
                        f"{type(converters).__name__}")
    return _convert(model, "", converters or {}, top=True)


def _convert(module, path, converters, top=False):
    where = f"submodule {path!r}" if path else "the model"
    cls = type(module)
    if cls in converters:
        out = converters[cls](module)
        if not top and not isinstance(out, (Module, *_RECURRENT)):
            raise TypeError(f"the converter of {cls.__name__} ({where}) returned a "
                            f"{type(out).__name__}; it must return a fastrnn module")
        return out
    if not hasattr(module, "state_dict") or not cls.__module__.startswith("torch"):
        if hasattr(module, "forward") and hasattr(module, "state_dict"):
            raise TypeError(
                f"{where} is a custom module {cls.__module__}.{cls.__name__}, which "
                "fastrnn.from_torch does not convert (its forward is not read); convert its "
                "parts with each class's from_torch, or pass converters={"
                f"{cls.__name__}: function}}"
            )
        raise TypeError(f"fastrnn.from_torch expects a torch.nn module, got "
                        f"{cls.__module__}.{cls.__name__}")
    name = cls.__name__
    leaves, _ = _leaf_converters()
    if name == "Sequential":
        return Sequential(*[
            _convert(child, f"{path}.{cname}" if path else cname, converters)
            for cname, child in module.named_children()
        ])
    if name in leaves:
        if name.endswith("Cell") and not top:
            raise TypeError(f"{where} is a torch.nn.{name}; a cell takes one step, so it "
                            "converts on its own but not inside a Sequential")
        return leaves[name](module)
    supported = ", ".join(sorted(leaves)) + ", Sequential"
    raise TypeError(f"{where} is a {cls.__module__}.{name}, which fastrnn.from_torch does "
                    f"not support (supported torch.nn modules: {supported})")


# -- model files -------------------------------------------------------------------

MODEL_KEY = "__fastrnn_model__"
MODEL_FORMAT = "fastrnn-model"
MODEL_VERSION = 1


def _describe_module(m) -> dict:
    from ..io._save import describe as describe_layer
    from ._seq2seq import Attention, LanguageModel, Seq2Seq

    if isinstance(m, _RECURRENT):
        cls, hp = describe_layer(m)
        return {"class": cls, "config": hp}
    if isinstance(m, Sequential):
        return {"class": "Sequential", "modules": [_describe_module(c) for c in m]}
    if isinstance(m, Seq2Seq):
        m._check_batch_first()  # as when called: no file that would not load
        return {"class": "Seq2Seq", "encoder": _describe_module(m.encoder),
                "decoder": _describe_module(m.decoder)}
    if isinstance(m, LanguageModel):
        return {"class": "LanguageModel", "model": _describe_module(m.model)}
    if isinstance(m, (Attention, Embedding, Linear, LayerNorm, Dropout, ReLU, Tanh, Sigmoid,
                      Softmax, Pool, AttentionPool)):
        return {"class": type(m).__name__, "config": m._config()}
    raise TypeError(f"cannot save a {type(m).__name__}")


def _build(desc, source):
    from ._seq2seq import Attention, LanguageModel, Seq2Seq

    simple = {c.__name__: c for c in (RNN, LSTM, GRU, Attention, Embedding, Linear, LayerNorm,
                                      Dropout, ReLU, Tanh, Sigmoid, Softmax, Pool, AttentionPool)}
    if not isinstance(desc, dict) or not isinstance(desc.get("class"), str):
        raise ModelFileError(f"{source}: a module description is {str(desc)[:60]!r}; expected "
                             "an object with a \"class\"")
    cls = desc["class"]
    try:
        if cls == "Sequential":
            return Sequential(*[_build(d, source) for d in desc["modules"]])
        if cls == "Seq2Seq":
            return Seq2Seq(_build(desc["encoder"], source), _build(desc["decoder"], source))
        if cls == "LanguageModel":
            return LanguageModel(_build(desc["model"], source))
        if cls in simple:
            cfg = dict(desc["config"])
            if cls in ("RNN", "LSTM", "GRU"):
                return simple[cls](cfg.pop("input_size"), cfg.pop("hidden_size"),
                                   cfg.pop("num_layers"), **cfg)
            if cls == "Attention":
                kind = cfg.pop("kind")
                sizes = [cfg.pop(k) for k in ("query_size", "key_size", "attn_size")]
                return Attention(kind, *[s for s in sizes if s is not None], **cfg)
            if cls in ("Pool",):
                return Pool(cfg.pop("mode"), **cfg)
            return simple[cls](**cfg)
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{source}: cannot rebuild a {cls} from its description "
                             f"({type(exc).__name__}: {exc})") from None
    raise ModelFileError(f"{source}: unknown module class {cls!r}")


def _least_arrays(desc) -> int:
    """A lower bound on the weight arrays a module description declares, worked out
    without building anything (0 for what does not parse: _build says why)."""
    if not isinstance(desc, dict):
        return 0
    cls = desc.get("class")
    if cls == "Sequential":
        mods = desc.get("modules")
        return sum(_least_arrays(d) for d in mods) if isinstance(mods, list) else 0
    if cls in ("Seq2Seq", "LanguageModel"):
        return sum(_least_arrays(desc.get(k)) for k in ("encoder", "decoder", "model"))
    cfg = desc.get("config")
    n = cfg.get("num_layers") if isinstance(cfg, dict) else None
    if cls in ("RNN", "LSTM", "GRU") and type(n) is int and n > 0:
        return 2 * n  # weight_ih and weight_hh per layer at least
    return 0


def save_model(model, path, *, meta=None) -> None:
    """Write a whole model (Sequential, Seq2Seq, LanguageModel, or any single
    fastrnn module) to ``.npz``: its state_dict under torch's names plus, as the
    uint8 JSON entry ``__fastrnn_model__``, the structure and every hyperparameter,
    and ``meta`` (any JSON-serialisable dict, e.g. a vocabulary). No pickles:
    :func:`load_model` reads it with ``allow_pickle=False``. Written to a temporary
    name and renamed into place."""
    fspath = os.fsdecode(os.fspath(path))  # bytes paths too, as load takes them
    if not fspath.lower().endswith(".npz"):
        raise ValueError(f"path {fspath!r} must end in .npz")
    if meta is not None and not isinstance(meta, dict):
        raise TypeError(f"meta must be a dict, got {type(meta).__name__}")
    desc = {"format": MODEL_FORMAT, "version": MODEL_VERSION, "model": _describe_module(model),
            "meta": meta or {}}
    try:
        text = json.dumps(desc, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"meta must be JSON-serialisable ({exc})") from None
    except RecursionError:
        raise ValueError("meta is nested too deeply to write as JSON") from None
    arrays = {k: np.ascontiguousarray(a) for k, a in model.state_dict().items()}
    arrays[MODEL_KEY] = np.frombuffer(text.encode("utf-8"), np.uint8)

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(fspath, write)


def load_model(path):
    """Read a file written by :func:`save_model`; returns the model with its
    ``meta`` dict as the attribute ``meta``. ModelFileError for anything else or a
    corrupt file, UnsafeModelError for an entry that would need pickle; the same
    guards as :func:`fastrnn.load` (which calls this for such files)."""
    from ..io import _load_whole_model

    return _load_whole_model(_read_model, path)


def _read_model(path):
    """load_model's reader, behind io's guards (zip sizes, object arrays, errors)."""
    fspath = os.fspath(path)
    source = repr(fspath)
    try:
        npz = np.load(fspath, allow_pickle=False)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise ModelFileError(f"{source}: not a readable .npz archive "
                             f"({type(exc).__name__}: {exc})") from None
    if not hasattr(npz, "files"):
        raise ModelFileError(f"{source} is a single .npy array; expected a fastrnn model .npz")
    with npz:
        if MODEL_KEY not in npz.files:
            raise ModelFileError(f"{source} has no {MODEL_KEY!r} entry: it was not written by "
                                 "fastrnn's save_model (for a single layer use fastrnn.load)")
        try:
            arrays = {k: npz[k] for k in npz.files}
        except Exception as exc:
            raise ModelFileError(f"{source}: an entry cannot be read ({type(exc).__name__}: "
                                 f"{exc})") from None
    raw = arrays.pop(MODEL_KEY)
    try:
        desc = json.loads(raw.astype(np.uint8).tobytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{source}: the model description is not valid JSON ({exc})") from None
    if not isinstance(desc, dict) or desc.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{source}: the model description is not a fastrnn model")
    version = desc.get("version")
    if not isinstance(version, int) or version > MODEL_VERSION or version < 1:
        raise ModelFileError(f"{source}: model format version {version!r}; this fastrnn reads "
                             f"version {MODEL_VERSION}")
    need = _least_arrays(desc.get("model"))
    if need > len(arrays):
        raise ModelFileError(f"{source}: the model description declares at least {need} weight "
                             f"arrays (2 per recurrent layer) but the file holds {len(arrays)}")
    with _weights.placeholders() as made:  # sizes come from the file's arrays, checked below
        model = _build(desc.get("model"), source)
    try:
        model.load_state_dict(arrays)
    except (ValueError, TypeError) as exc:
        raise ModelFileError(f"{source}: {exc}") from None
    _weights.check_replaced(made, (a for _, leaf, _ in _leaves(model)
                                   for a in leaf._params.values()))
    meta = desc.get("meta") or {}
    try:
        model.meta = meta
    except AttributeError:
        pass
    return model

