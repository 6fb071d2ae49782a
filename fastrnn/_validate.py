"""Every check on what a caller passes, and its message (SPEC §4).

Nothing reaches the C engine that has not been through here: arrays come out
C-contiguous, of the layer dtype, with the shapes the engine expects. Messages
name the argument, what came and what is allowed.
"""

from __future__ import annotations

import itertools
import math
import numbers
import operator

import numpy as np

INT32_MAX = 2**31 - 1  # the engine counts steps and sequences in C ints
_FLOAT_DTYPES = {"float32": np.dtype(np.float32), "float64": np.dtype(np.float64)}


def _describe(value) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of dtype {value.dtype} and shape {value.shape}"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def integer(name: str, value, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """An int (not bool) within [minimum, maximum]."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got {_describe(value)}")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {_describe(value)}") from None
    if minimum is not None and value < minimum:
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} is {value}; it must be {bound}")
    if maximum is not None and value > maximum:
        bound = f"<= {maximum}" if minimum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} is {value}; it must be {bound}")
    return value


def flag(name: str, value) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {_describe(value)}")


def probability(name: str, value) -> float:
    """A real number (not bool) in [0, 1], as float: torch's dropout probabilities."""
    number = (int, float, np.integer, np.floating)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, number):
        raise TypeError(f"{name} must be a number in [0, 1], got {_describe(value)}")
    if not 0 <= value <= 1:
        raise ValueError(f"{name} is {value}; it must be a probability in [0, 1]")
    return float(value)


def real(name: str, value) -> float:
    """A finite real number, as float: a Python or NumPy int or float, not a bool and
    not a string that would parse as one."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {_describe(value)}")
    x = float(value)
    if not math.isfinite(x):
        raise ValueError(f"{name} is {x}; it must be finite")
    return x


def choice(name: str, value, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(
            f"{name} is {value!r}; allowed: {', '.join(repr(a) for a in allowed)}"
        )
    return value


def dtype(value) -> np.dtype:
    """'float32' or 'float64' (any spelling numpy accepts for them; not None, which
    numpy would silently read as float64)."""
    try:
        dt = None if value is None else np.dtype(value)
    except TypeError:
        dt = None
    if dt is None or dt.name not in _FLOAT_DTYPES:
        raise ValueError(f"dtype is {value!r}; allowed: 'float32', 'float64'")
    return _FLOAT_DTYPES[dt.name]


def seed(value):
    if value is None:
        return None
    if isinstance(value, (np.random.SeedSequence, np.random.BitGenerator, np.random.Generator)):
        return value
    return integer("seed", value, minimum=0)


def numeric(name: str, value) -> np.ndarray:
    """A numeric array-like as an ndarray, not yet converted (a view of the caller's
    array when it is one), so its shape can be checked before a copy is made: a
    broadcast view of the wrong shape is refused without materializing it.
    Strings, objects, complex and bool are refused with TypeError, and so is
    anything NumPy cannot convert (a torch meta or sparse tensor, ragged lists)."""
    if isinstance(value, np.ndarray):
        # subclasses (np.matrix keeps 2-D under reshape, masked arrays...) as plain arrays
        arr = value if type(value) is np.ndarray else np.asarray(value)
    else:
        if value is None:
            raise TypeError(f"{name} must be a numeric array, got None")
        if hasattr(value, "__array__") or isinstance(value, (list, tuple)) or np.isscalar(value):
            try:
                arr = np.asarray(_torch_to_numpy(value))
            except (ValueError, TypeError, RuntimeError, NotImplementedError) as exc:
                raise TypeError(f"{name} must be a numeric array; converting it failed "
                                f"({type(exc).__name__}: {exc})") from None
        else:
            raise TypeError(f"{name} must be a numeric array, got {_describe(value)}")
    kind = arr.dtype.kind
    if kind == "O" and arr.size and all(type(x) in (int, float) for x in arr.flat):
        # numbers numpy keeps as objects: a Python int beyond 64 bits among them
        where = int_beyond(arr, -2**63, 2**64)
        if where is not None:
            raise ValueError(f"{name}[{', '.join(str(int(i)) for i in where)}] is {arr[where]}, "
                             "an integer too large to convert; integers must fit in 64 bits")
    if kind not in "fiu":
        what = {
            "b": "bool",
            "c": "complex",
            "O": "object",
            "U": "string",
            "S": "bytes",
            "V": "structured",
            "M": "datetime",
            "m": "timedelta",
        }.get(kind, str(arr.dtype))
        raise TypeError(
            f"{name} must hold real numbers (float or integer), got {what} values "
            f"(dtype {arr.dtype})"
        )
    return arr


def convert(arr: np.ndarray, dt: np.dtype) -> np.ndarray:
    """A :func:`numeric` array as a C-contiguous, aligned array of dtype dt: itself
    when it is one, else a copy (the caller's array is never modified); a 0-d
    array stays 0-d."""
    if arr.dtype == dt and arr.flags.c_contiguous and arr.flags.aligned:
        return arr
    with np.errstate(over="ignore", invalid="ignore"):  # out-of-range values become
        return arr.astype(dt, order="C")  # +-inf, as a cast does in torch: no warning


def float_array(name: str, value, dt: np.dtype) -> np.ndarray:
    """A numeric array-like as a C-contiguous array of dtype dt (a copy when needed;
    the caller's array is never modified). Strings, objects, complex and bool are
    refused with TypeError."""
    return convert(numeric(name, value), dt)


def int_beyond(arr: np.ndarray, lo: int, hi: int):
    """The index of the first Python int of an object array outside [lo, hi) (numpy
    keeps ints as objects when one does not fit 64 bits), or None."""
    for i, x in enumerate(arr.flat):
        if isinstance(x, int) and not isinstance(x, bool) and not lo <= x < hi:
            return np.unravel_index(i, arr.shape)
    return None


def _torch_to_numpy(value):
    """A torch tensor as NumPy, without importing torch."""
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        t = value.detach().cpu()
        if str(t.dtype) in ("torch.bfloat16",):
            t = t.float()
        return t.numpy()
    return value


def sequence(x, input_size: int, batch_first: bool, dt: np.dtype):
    """Validate the input sequence of a layer.

    Returns (x, T, B, unbatched): x C-contiguous of dtype dt.
    """
    x = numeric("x", x)  # converted once its shape is known to be right
    if x.ndim == 2:
        T, feat = x.shape
        B = 1
        unbatched = True
    elif x.ndim == 3:
        unbatched = False
        if batch_first:
            B, T, feat = x.shape
        else:
            T, B, feat = x.shape
    else:
        layout = "(B, T, input_size)" if batch_first else "(T, B, input_size)"
        raise ValueError(
            f"x must be 3-D {layout} or 2-D (T, input_size) for one unbatched sequence; "
            f"got {x.ndim}-D with shape {x.shape}"
        )
    if feat != input_size:
        raise ValueError(
            f"x has {feat} features (shape {x.shape}) but the layer's input_size is {input_size}"
        )
    if T < 1:
        raise ValueError(f"x has {T} time steps (shape {x.shape}); T must be >= 1")
    if max(T, B) > INT32_MAX:
        raise ValueError(f"x has shape {x.shape}: more than {INT32_MAX} time steps or "
                         "sequences in one call; split it")
    return convert(x, dt), T, B, unbatched


def state(name: str, value, shape: tuple, dt: np.dtype, unbatched: bool) -> np.ndarray:
    """An initial state of exactly `shape` (batch axis dropped when unbatched)."""
    if unbatched:
        shape = (shape[0],) + tuple(shape[2:])
    arr = numeric(name, value)
    if arr.shape != tuple(shape):
        raise ValueError(f"{name} has shape {arr.shape}; expected {tuple(shape)}")
    return convert(arr, dt)


def state_dict_arrays(state_dict, strict, shapes: dict, dtypes, owner: str, kind: str) -> dict:
    """SPEC §2 loading checks, shared by layers, cells and whole models.

    `shapes` maps every parameter name to its shape; `dtypes` is one dtype or a
    mapping name -> dtype. Returns C-contiguous copies of the given parameters.
    Raises TypeError when `state_dict` is not a mapping, and one ValueError listing
    every mismatched shape (and, when `strict`, every missing and unexpected key)
    as "load_state_dict failed for OWNER; nothing was loaded" -- before anything
    is loaded.
    """
    if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
        raise TypeError(
            f"state_dict must be a mapping of names to arrays, got {type(state_dict).__name__}"
        )
    strict = flag("strict", strict)
    missing = [k for k in shapes if k not in state_dict]
    unexpected = [k for k in state_dict.keys() if k not in shapes]
    arrays, problems = {}, []
    for name, shape in shapes.items():
        if name not in state_dict:
            continue
        dt = dtypes[name] if isinstance(dtypes, dict) else dtypes
        arr = numeric(f"state_dict[{name!r}]", state_dict[name])
        if arr.shape != tuple(shape):
            problems.append(f"{name}: shape {arr.shape} in the state_dict, {tuple(shape)} in "
                            f"the {kind}")
            continue
        with np.errstate(over="ignore", invalid="ignore"):
            arrays[name] = np.array(arr, dtype=dt, copy=True, order="C")  # one copy, ours
    if strict and missing:
        problems.append("missing keys: " + ", ".join(missing))
    if strict and unexpected:
        problems.append("unexpected keys: " + ", ".join(map(str, unexpected)))
    if problems:
        raise ValueError(
            f"load_state_dict failed for {owner}; nothing was loaded:\n  " + "\n  ".join(problems)
        )
    return arrays


def lengths(value, B: int, T: int) -> np.ndarray | None:
    """Per-sequence lengths as int64 (B,), each in [1, T]; None when all equal T.

    Always a private copy, checked after it was made: the engine reads the lengths
    again and again with the GIL released, and another thread may change the
    caller's array meanwhile (a length past T would then address past the output)."""
    if value is None:
        return None
    value = _torch_to_numpy(value)
    try:
        arr = np.array(value)  # a copy, even of an ndarray
    except (ValueError, TypeError) as exc:
        raise TypeError(f"lengths must be a 1-D array of integers; converting it failed: {exc}") from None
    if arr.dtype.kind == "O" and arr.ndim == 1 and all(type(n) is int for n in arr.tolist()):
        # Python ints (numpy keeps those beyond int64 as objects): checked as they are
        bad = [(i, n) for i, n in enumerate(arr.tolist()) if not 1 <= n <= T]
        if not bad:
            arr = arr.astype(np.int64)
        elif arr.shape[0] == B:
            raise ValueError(f"lengths[{bad[0][0]}] is {bad[0][1]}; each length must be in "
                             f"[1, T={T}]")
        else:  # only its shape matters now: refused below
            arr = np.zeros(arr.shape)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"lengths must hold integers, got dtype {arr.dtype}")
    if isinstance(value, (list, tuple)) and any(isinstance(n, (bool, np.bool_)) for n in value):
        # numpy turns [True, 4] into integers: a bool there is refused as in an array
        raise TypeError("lengths must hold integers, got a bool")
    if arr.ndim != 1 or arr.shape[0] != B:
        raise ValueError(f"lengths has shape {arr.shape}; expected ({B},), one length per sequence")
    if arr.dtype.kind == "f":
        # floats are accepted when they are whole numbers (e.g. a float tensor)
        fractional = np.flatnonzero(~np.isfinite(arr) | (arr != np.round(arr)))
        if fractional.size:
            i = int(fractional[0])
            raise ValueError(
                f"lengths[{i}] is {float(arr[i])!r}; each length must be a whole number "
                f"in [1, T={T}]"
            )
    bad = np.flatnonzero((arr < 1) | (arr > T))  # before the cast: 1e30 must not wrap
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"lengths[{i}] is {int(arr[i])}; each length must be in [1, T={T}]")
    arr = np.ascontiguousarray(arr, dtype=np.int64)  # a fresh array is aligned
    if np.all(arr == T):
        return None
    return arr


_WEIGHTS_VERSIONS = itertools.count(1)


class Fixed:
    """Attributes set once, when the object is built: the sizes and kinds that its
    weights, its packed copy in the engine and its buffers were made for.

    A subclass names them in ``_fixed``. Assigning or deleting one later raises
    AttributeError: the engine was built for the old value, and running it with
    the new one would read or write past its arrays (SPEC §4). ``_checked`` maps
    an attribute that may change to the check its new value goes through.

    Copies and pickles (copy, deepcopy, pickle) take the weights but not the
    engine's packed copy of them (the attributes named in ``_engine``), which the
    copy packs again on its first call; a shallow copy gets its own weights dict,
    so loading weights into one leaves the other as it was.
    """

    _fixed: frozenset = frozenset()
    _checked: dict = {}
    _engine: tuple = ()
    _weights_version = 0  # an instance's own once weights are loaded into it

    def _drop_engine(self) -> None:
        """After new weights: drop the packed copy (the next call packs them again),
        under a new version, so that a packing of the old ones still under way (on
        another thread, with the GIL released) is not kept (_pack)."""
        self._weights_version = next(_WEIGHTS_VERSIONS)  # atomic under the GIL
        for name in self._engine:
            setattr(self, name, None)

    def _pack(self, name: str, make):
        """make() the packed copy of the current weights and keep it as `name`,
        unless other weights were loaded meanwhile (_drop_engine): the caller uses
        it either way."""
        version = self._weights_version  # before make() reads the weights
        packed = make()
        if self._weights_version == version:
            setattr(self, name, packed)
        return packed

    def __getstate__(self):
        state = self.__dict__.copy()
        for name in self._engine:
            state[name] = None
        if "_params" in state:
            state["_params"] = dict(state["_params"])
        return state

    def __setattr__(self, name, value):
        if name in self._fixed and name in self.__dict__:
            raise AttributeError(self._fixed_message(name))
        check = self._checked.get(name)
        object.__setattr__(self, name, value if check is None else check(name, value))

    def __delattr__(self, name):
        if name in self._fixed:
            raise AttributeError(self._fixed_message(name))
        if name in self._checked:
            raise AttributeError(f"{type(self).__name__}.{name} cannot be deleted; assign "
                                 "it a new value instead")
        object.__delattr__(self, name)

    def _fixed_message(self, name) -> str:
        cls = type(self).__name__
        return (f"{cls}.{name} cannot be changed: it is fixed when the {cls} is built (its "
                f"weights and engine are made for it); build a new {cls} instead")
