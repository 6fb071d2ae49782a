"""What every whole-model module shares: parameters under torch's names, the §2
``state_dict``/``load_state_dict`` rules across nested modules, input helpers."""

from __future__ import annotations

import numpy as np

from .. import _validate as v
from ..layers import _RNNBase

__all__ = ["Module", "ids", "input_dtype", "is_torch", "torch_dtype", "param_shapes",
           "load_into", "describe"]


def is_torch(obj, names: tuple[str, ...]) -> bool:
    """obj is a torch.nn module of one of these class names (torch is not imported)."""
    cls = type(obj)
    return (cls.__name__ in names and cls.__module__.startswith("torch")
            and hasattr(obj, "state_dict"))


def torch_dtype(module) -> str:
    """'float64' for a float64 torch module, else 'float32'."""
    for p in module.parameters():
        return "float64" if str(p.dtype) == "torch.float64" else "float32"
    return "float32"


def describe(value) -> str:
    return v._describe(value)


def input_dtype(x) -> np.dtype:
    """The dtype a parameterless module computes in: the input's when it is float32 or
    float64, else float32."""
    dt = getattr(x, "dtype", None)
    if dt is not None and not isinstance(dt, np.dtype):  # a torch tensor
        name = str(dt).replace("torch.", "")
        dt = np.dtype(name) if name in ("float32", "float64") else None
    if dt is not None and np.dtype(dt) in (np.float32, np.float64):
        return np.dtype(dt)
    return np.dtype(np.float32)


def _index(where):
    """An index for messages: i for 1-D arrays, (i, j, ...) otherwise."""
    return int(where[0]) if len(where) == 1 else tuple(int(i) for i in where)


def ids(name: str, value, n: int) -> np.ndarray:
    """Token ids as an int64 array of any shape, each in [0, n).

    TypeError for anything but integers (floats, bools, strings, objects);
    ValueError naming the first id out of range, its index and the range.
    """
    value = v._torch_to_numpy(value)
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be integer token ids, got {describe(value)}")
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise TypeError(f"{name} must be an array of integer token ids; converting it failed: "
                        f"{exc}") from None
    private = isinstance(value, (list, tuple))  # numpy built arr from it
    if arr.size == 0 and arr.dtype.kind == "f" and not isinstance(value, np.ndarray):
        arr = arr.astype(np.int64)  # np.asarray([]) is float64
        private = True
    if arr.dtype.kind == "O" and arr.size and all(
            isinstance(i, int) and not isinstance(i, bool) for i in arr.flat):
        # Python ints (numpy keeps them as objects if one is beyond int64, or when
        # asked): those beyond int64 are out of any range, the others are ids
        where = v.int_beyond(arr, -2**63, 2**63)
        if where is not None:
            raise ValueError(f"{name}[{_index(where)}] is {arr[where]}; token ids must be in "
                             f"[0, {n}) (num_embeddings={n})")
        arr = arr.astype(np.int64)
        private = True
    if arr.dtype.kind not in "iu":
        what = {"b": "bool", "f": "float", "c": "complex", "O": "object", "U": "string",
                "S": "bytes"}.get(arr.dtype.kind, str(arr.dtype))
        raise TypeError(f"{name} must hold integer token ids, got {what} values "
                        f"(dtype {arr.dtype})")
    # a private copy, checked after it was made: the C code reads the ids with the
    # GIL released, and the caller's array may change meanwhile (another thread, or
    # an argument converted after this one); an array, a tensor's memory or what
    # __array__ returns may be the caller's, a list's conversion is not
    if not private:
        arr = arr.copy()
    bad = (arr < 0) | (arr >= n)
    if bad.any():
        where = np.unravel_index(int(np.flatnonzero(bad)[0]), arr.shape)
        raise ValueError(
            f"{name}[{_index(where)}] is {int(arr[where])}; token ids must be in [0, {n}) "
            f"(num_embeddings={n})"
        )
    return np.asarray(arr, dtype=np.int64, order="C")  # (ascontiguousarray makes 0-d 1-d)


def param_shapes(module) -> dict[str, tuple]:
    """Every parameter's name and shape, torch-style dotted through children."""
    if isinstance(module, Module):
        shapes = dict(module._own_shapes())
        for cname, child in module._children():
            for k, s in param_shapes(child).items():
                shapes[f"{cname}.{k}"] = s
        return shapes
    if isinstance(module, _RNNBase):
        return module._param_shapes()
    raise TypeError(f"{type(module).__name__} is not a fastrnn module")


def _leaves(module, prefix=""):
    """(prefix, leaf, own parameter names) for every module holding parameters."""
    if isinstance(module, _RNNBase):
        yield prefix, module, tuple(module._param_shapes())
        return
    own = tuple(module._own_shapes())
    if own:
        yield prefix, module, own
    for cname, child in module._children():
        yield from _leaves(child, f"{prefix}{cname}.")


def load_into(module, state_dict, strict) -> None:
    """SPEC §2 loading for a module and all its children at once: every problem
    listed in one ValueError, nothing changed unless everything loads."""
    dtypes = {prefix + n: leaf.dtype for prefix, leaf, names in _leaves(module) for n in names}
    arrays = v.state_dict_arrays(state_dict, strict, param_shapes(module), dtypes,
                                 type(module).__name__, "module")
    for prefix, leaf, names in _leaves(module):
        sub = {n: arrays[prefix + n] for n in names if prefix + n in arrays}
        if not sub:
            continue
        if isinstance(leaf, _RNNBase):
            leaf.load_state_dict(sub, strict=False)
        else:
            leaf._params.update(sub)
            leaf._changed()


class Module(v.Fixed):
    """Base of fastrnn's whole-model modules (not of the recurrent layers).

    A module keeps its own parameters in ``_params`` (torch's names, the module
    dtype) and may have children (``_children()``), whose parameters appear in
    ``state_dict`` under ``child_name.parameter`` as in torch. Its sizes, dtype
    and parts are fixed once built (``_fixed``, see fastrnn._validate.Fixed).
    """

    dtype: np.dtype | None = None
    _fixed = frozenset({"dtype"})

    def __init__(self):
        self._params: dict[str, np.ndarray] = {}

    # -- parameters --------------------------------------------------------

    def _own_shapes(self) -> dict[str, tuple]:
        return {k: a.shape for k, a in self._params.items()}

    def _children(self):
        return ()

    def _changed(self) -> None:
        """Called after this module's own parameters were replaced."""

    def state_dict(self) -> dict[str, np.ndarray]:
        """Every parameter under torch's names and shapes (copies)."""
        out = {k: a.copy() for k, a in self._params.items()}
        for cname, child in self._children():
            for k, a in child.state_dict().items():
                out[f"{cname}.{k}"] = a
        return out

    def load_state_dict(self, state_dict, strict: bool = True) -> None:
        """Load NumPy arrays or torch tensors under torch's names.

        ValueError listing every missing and unexpected key and every mismatched
        shape; ``strict=False`` ignores missing and unexpected keys, not shapes. A
        failed load leaves the module (and its children) unchanged.

        The parts load one after the other: a call running on another thread
        meanwhile may use some parts' new weights and others' old ones. To replace
        the weights of a model that serves calls, load them into a copy
        (``copy.deepcopy``) and swap the reference.
        """
        load_into(self, state_dict, strict)

    def _init_dtype(self, dtype, seed):
        self.dtype = v.dtype(dtype)
        return np.random.default_rng(v.seed(seed))
