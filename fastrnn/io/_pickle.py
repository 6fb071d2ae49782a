"""Safe reader for files written by ``torch.save`` -- torch is never imported.

A ``torch.save`` file is a pickle whose tensors point at raw storages kept
beside it.  Unpickling it with :mod:`pickle` as-is would run any callable the
file names, so this module unpickles with a :class:`pickle.Unpickler` whose
``find_class`` resolves exactly the globals torch writes for tensors, state
dicts and the recurrent ``torch.nn`` modules -- each to an inert stand-in
defined here, never to the real object -- and refuses everything else with
:class:`~fastrnn.errors.UnsafeModelError` before it can be called.

Two container formats are read:

* the zip archive of torch >= 1.6 (``<name>/data.pkl``, ``<name>/byteorder``,
  ``<name>/data/<key>``): storages are zip entries in the byte order the
  ``byteorder`` record names (little-endian when the record is missing);
* the legacy stream of ``torch.save(..., _use_new_zipfile_serialization=False)``:
  magic number, protocol version and system-info pickles, the object pickle,
  the sorted storage keys, then each storage as a little-endian int64 element
  count followed by its little-endian bytes.

The pre-0.4 tar format and TorchScript archives are refused with
:class:`~fastrnn.errors.ModelFileError`.  Storage sizes, offsets and strides
in the file are never trusted: every tensor view is checked against the bytes
actually present before it is materialised.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import pickletools
import struct
import tarfile
import zipfile

import numpy as np

from ..errors import ModelFileError, UnsafeModelError

__all__ = ["TorchModule", "load_pt"]

_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL_VERSION = 1001
_MAX_NDIM = 64

# torch storage class -> (numpy type code, itemsize).  "bf16" has no numpy
# dtype; it is read as uint16 and widened to float32 exactly.
_STORAGE_TYPES = {
    "DoubleStorage": "f8",
    "FloatStorage": "f4",
    "HalfStorage": "f2",
    "BFloat16Storage": "bf16",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "b1",
    "UntypedStorage": "u1",
}

# torch dtype objects (used by _rebuild_tensor_v3) -> numpy type code.
_TORCH_DTYPES = {
    "float64": "f8",
    "double": "f8",
    "float32": "f4",
    "float": "f4",
    "float16": "f2",
    "half": "f2",
    "bfloat16": "bf16",
    "int64": "i8",
    "long": "i8",
    "int32": "i4",
    "int": "i4",
    "int16": "i2",
    "short": "i2",
    "int8": "i1",
    "uint8": "u1",
    "bool": "b1",
}

_RNN_MODULES = ("RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell")


def _itemsize(code: str) -> int:
    return 2 if code == "bf16" else np.dtype(code).itemsize


class _Frozen(type):
    """Metaclass of the stand-in classes: a pickle cannot set their attributes."""

    def __setattr__(cls, name, value):
        raise UnsafeModelError(
            f"refused to set attribute {name!r} on {cls.__name__}; "
            "only tensor rebuilding is allowed"
        )


class _Inert(metaclass=_Frozen):
    """Base of every object ``find_class`` hands to the unpickler."""

    __slots__ = ()

    def __setattr__(self, name, value):
        raise UnsafeModelError(
            f"refused to set attribute {name!r} on {type(self).__name__}; "
            "only tensor rebuilding is allowed"
        )


class _StorageType(_Inert):
    """Stand-in for a torch storage class such as ``torch.FloatStorage``."""

    __slots__ = ("name", "code")

    def __init__(self, name: str, code: str):
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "code", code)


class _DType(_Inert):
    """Stand-in for a torch dtype object such as ``torch.float32``."""

    __slots__ = ("name", "code")

    def __init__(self, name: str, code: str):
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "code", code)


class _Storage(_Inert):
    """A storage's raw bytes (a 1-D uint8 array) and its element type."""

    __slots__ = ("key", "raw", "code", "order")

    def __init__(self, key: str, raw: np.ndarray, code: str, order: str):
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "raw", raw)
        object.__setattr__(self, "code", code)
        object.__setattr__(self, "order", order)


class _Function(_Inert):
    """An allowed callable: ``name`` for messages, ``fn`` our own code."""

    __slots__ = ("name", "fn")

    def __init__(self, name: str, fn):
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "fn", fn)

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)


class TorchModule:
    """Inert stand-in for a pickled ``torch.nn`` recurrent module.

    It only keeps the attribute dict the pickle restores (``__setstate__``);
    :attr:`torch_class` names the class the file asked for, e.g. ``"LSTM"``.
    Subclasses are created per file by :func:`_module_class`.
    """

    torch_class = "?"

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise ModelFileError(
                f"the pickled torch.nn.{self.torch_class} has a state of type "
                f"{type(state).__name__}; expected a dict of attributes"
            )
        self.__dict__["state"] = state

    @property
    def module_state(self) -> dict:
        return self.__dict__.get("state", {})


def _module_class(name: str) -> type:
    # A fresh, frozen class per file: nothing one file does to it reaches
    # the next one.
    return _Frozen(name, (TorchModule,), {"torch_class": name, "__slots__": ()})


def _as_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ModelFileError(f"{what} is {value!r}; expected a non-negative int")
    if value < 0:
        raise ModelFileError(f"{what} is {value}; expected a non-negative int")
    return value


def _as_int_tuple(value, what: str) -> tuple:
    if not isinstance(value, (tuple, list)) or len(value) > _MAX_NDIM:
        raise ModelFileError(
            f"{what} is {value!r}; expected a tuple of at most {_MAX_NDIM} ints"
        )
    return tuple(_as_int(v, f"{what}[{i}]") for i, v in enumerate(value))


def _rebuild(storage, storage_offset, size, stride, code=None) -> np.ndarray:
    """Materialise one tensor view of ``storage`` as a new native NumPy array."""
    if not isinstance(storage, _Storage):
        raise ModelFileError(
            f"a tensor's storage is a {type(storage).__name__}; expected a "
            "storage record of the file"
        )
    if storage.raw is None:
        return None  # first pass over a legacy file: the bytes come later
    code = storage.code if code is None else code
    offset = _as_int(storage_offset, "a tensor's storage offset")
    size = _as_int_tuple(size, "a tensor's size")
    stride = _as_int_tuple(stride, "a tensor's stride")
    if len(size) != len(stride):
        raise ModelFileError(
            f"a tensor's size {size} and stride {stride} differ in length"
        )
    itemsize = _itemsize(code)
    numel = len(storage.raw) // itemsize
    count = 1
    for s in size:
        count *= s
    base_code = "u2" if code == "bf16" else code
    dtype = np.dtype(base_code).newbyteorder(storage.order)
    if count > numel:
        # Only a stride-0 (expanded) view can do this; a weight never is one,
        # and copying it out could take unbounded memory.
        raise ModelFileError(
            f"a tensor of size {size} and stride {stride} has {count} elements "
            f"but its storage {storage.key!r} holds {numel}; fastrnn does not "
            "read tensors that repeat elements"
        )
    if count == 0:
        out = np.empty(size, dtype=dtype.newbyteorder("="))
    else:
        last = offset + sum((s - 1) * st for s, st in zip(size, stride))
        if last >= numel:
            raise ModelFileError(
                f"a tensor of size {size}, stride {stride} and offset {offset} "
                f"reaches element {last} of storage {storage.key!r}, which "
                f"holds {numel} elements"
            )
        flat = storage.raw[: numel * itemsize].view(dtype)[offset:]
        view = np.lib.stride_tricks.as_strided(
            flat, shape=size, strides=[st * itemsize for st in stride], writeable=False
        )
        out = np.array(view, dtype=dtype.newbyteorder("="), order="C", copy=True)
    if code == "bf16":
        out = (out.astype(np.uint32) << 16).view(np.float32)
    return out


def _rebuild_tensor_v2(
    storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
    metadata=None,
):
    return _rebuild(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(
    storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype,
    metadata=None,
):
    if not isinstance(dtype, _DType):
        raise ModelFileError(f"a tensor's dtype is {dtype!r}; expected a torch dtype")
    return _rebuild(storage, storage_offset, size, stride, dtype.code)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _rebuild(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    if data is not None and not isinstance(data, np.ndarray):
        raise ModelFileError(
            f"a Parameter wraps a {type(data).__name__}; expected a tensor"
        )
    return data


def _rebuild_from_type_v2(func, new_type, args, state):
    # torch writes this for tensor subclasses; only plain tensors and
    # Parameters (both stand-ins here) are accepted.
    if new_type not in (_TENSOR, _PARAMETER) or not isinstance(func, _Function):
        raise UnsafeModelError(
            f"refused to rebuild a tensor of type {new_type!r}; only "
            "torch.Tensor and torch.nn.Parameter are allowed"
        )
    if not isinstance(args, tuple):
        raise ModelFileError(f"a tensor's rebuild arguments are {type(args).__name__}")
    return func(*args)


def _reconstructor(cls, base, state=None):
    # copyreg._reconstructor, which pickle protocols 0 and 1 use for objects.
    if not (isinstance(cls, type) and issubclass(cls, TorchModule)) or base is not object:
        raise UnsafeModelError(
            f"refused to reconstruct {getattr(cls, '__name__', cls)!r}; only "
            "torch.nn recurrent modules are allowed"
        )
    return object.__new__(cls)


def _ordered_dict(*args):
    return collections.OrderedDict(*args)


def _set(*args):
    return set(*args)


_TENSOR = _module_class("Tensor")
_PARAMETER = _module_class("Parameter")

_FUNCTIONS = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("collections", "OrderedDict"): _ordered_dict,
    ("builtins", "set"): _set,
    ("copyreg", "_reconstructor"): _reconstructor,
}
# Globals mapped to themselves: inert builtins with no callable behaviour
# a pickle could abuse (``object`` is _reconstructor's base argument).
_BUILTINS = {("builtins", "object"): object}


_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


class _SafeUnpickler(pickle.Unpickler):
    """Unpickler that resolves only tensor-rebuild records, to stand-ins."""

    def __init__(self, file, source: str, load_storage):
        super().__init__(file, encoding="utf-8")
        self._source = source
        self._load_storage = load_storage
        self._modules = {}

    def find_class(self, module, name):
        module = _PY2_MODULES.get(module, module)  # pickle protocols <= 2
        if not (isinstance(module, str) and isinstance(name, str)):
            raise UnsafeModelError(f"refused to load global {module!r}.{name!r}")
        key = (module, name)
        if key in _FUNCTIONS:
            return _Function(f"{module}.{name}", _FUNCTIONS[key])
        if key in _BUILTINS:
            return _BUILTINS[key]
        if module == "torch":
            if name in _STORAGE_TYPES:
                return _StorageType(name, _STORAGE_TYPES[name])
            if name in _TORCH_DTYPES:
                return _DType(name, _TORCH_DTYPES[name])
            if name == "Tensor":
                return _TENSOR
        if key in (("torch.storage", "UntypedStorage"), ("torch.storage", "TypedStorage")):
            return _StorageType(name, "u1")
        if key == ("torch.nn.parameter", "Parameter"):
            return _PARAMETER
        if module in ("torch.nn.modules.rnn", "torch.nn") and name in _RNN_MODULES:
            if name not in self._modules:
                self._modules[name] = _module_class(name)
            return self._modules[name]
        raise UnsafeModelError(
            f"refused to load global '{module}.{name}' from {self._source}: "
            "only tensor rebuilding and torch.nn RNN/LSTM/GRU modules are "
            "allowed, nothing in the file was executed"
        )

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or not pid:
            raise ModelFileError(
                f"{self._source}: a persistent id is {pid!r}; expected a "
                "('storage', ...) record"
            )
        tag = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
        if tag == "module" and len(pid) == 4:
            return pid[1]  # legacy format: the module class, source ignored
        if tag != "storage" or len(pid) not in (5, 6):
            raise ModelFileError(
                f"{self._source}: a persistent id is {pid!r}; expected a "
                "('storage', type, key, location, numel) record"
            )
        storage_type, key, location, numel = pid[1:5]
        if len(pid) == 6 and pid[5] is not None:
            raise ModelFileError(
                f"{self._source}: storage {key!r} is a legacy storage view, "
                "which fastrnn does not read; re-save the model with a "
                "current torch.save"
            )
        if not isinstance(storage_type, _StorageType):
            raise ModelFileError(
                f"{self._source}: storage {key!r} has type {storage_type!r}; "
                "expected a torch storage class"
            )
        if isinstance(key, int) and not isinstance(key, bool):
            key = str(key)
        if not isinstance(key, str) or not key.isalnum():
            raise ModelFileError(
                f"{self._source}: a storage key is {key!r}; expected an "
                "alphanumeric string"
            )
        numel = _as_int(numel, f"{self._source}: the size of storage {key!r}")
        return self._load_storage(key, storage_type.code, numel)


_MEMO_PUTS = ("PUT", "BINPUT", "LONG_BINPUT")
_MEMO_GETS = ("GET", "BINGET", "LONG_BINGET")
# Objects a pickle may build, counted as trees (a shared reference counted at each
# place it is used). Hashing, comparing or printing an object costs its tree size;
# a torch.save of an RNN is a few thousand.
_MAX_TREE = 1_000_000
_MARK = -1  # a MARK on the simulated stack


def _check_program(data, source: str):
    """Walk the pickle program without running it (pickletools), simulating its
    stack with the tree size of each object, and refuse two things no pickler
    writes but that would make the C unpickler itself run away:

    * a memo index above the count of opcodes before it (Python's pickler numbers
      memo entries 0, 1, 2, ...): the unpickler grows its memo table to the index,
      so ``LONG_BINPUT 2**30`` alone allocates and clears gigabytes;
    * an object whose tree is larger than _MAX_TREE: doubling a tuple through
      the memo ((t, t), then ((t, t), (t, t)), ...) takes 60 opcodes to reach a
      tuple of 2**60 leaves, whose hash (as a dict key) never finishes.
    """
    start = data.tell()

    def pop():
        if not stack or stack[-1] == _MARK:
            raise ModelFileError(f"{source}: the pickle is corrupt (stack underflow)")
        return stack.pop()

    stack, memo = [], {}
    try:
        for n, (op, arg, pos) in enumerate(pickletools.genops(data)):
            name = op.name
            if name in _MEMO_PUTS or name == "MEMOIZE":
                index = len(memo) if name == "MEMOIZE" else arg
                if not 0 <= index <= n:
                    raise ModelFileError(
                        f"{source}: the pickle stores memo entry {index} at opcode {n} "
                        f"(byte {pos}); a pickler numbers them from 0, one per store -- "
                        "the file is corrupt or crafted"
                    )
                if not stack or stack[-1] == _MARK:
                    raise ModelFileError(f"{source}: the pickle is corrupt (empty memo store)")
                memo[index] = stack[-1]
                continue
            if name in _MEMO_GETS:
                if arg not in memo:
                    raise ModelFileError(f"{source}: the pickle is corrupt (memo {arg} unset)")
                stack.append(memo[arg])
                continue
            if name == "DUP":
                stack.append(stack[-1] if stack else pop())
                continue
            if name == "POP" and stack and stack[-1] == _MARK:
                stack.pop()  # the C unpickler pops a MARK too (recursive tuples, protocol 0)
                continue
            before, after = op.stack_before, op.stack_after
            size = 1
            if pickletools.markobject in before:
                while stack and stack[-1] != _MARK:
                    size += stack.pop()
                if not stack:
                    raise ModelFileError(f"{source}: the pickle is corrupt (no MARK)")
                stack.pop()
                for _ in range(before.index(pickletools.markobject)):
                    size += pop()
            else:
                for _ in before:
                    size += pop()
            if size > _MAX_TREE:
                raise ModelFileError(
                    f"{source}: the pickle builds an object of more than {_MAX_TREE} "
                    f"parts (at opcode {n}, byte {pos}) by reusing shared references; "
                    "no model needs that -- the file is corrupt or crafted"
                )
            for item in after:
                stack.append(_MARK if item is pickletools.markobject else size)
    except ModelFileError:
        raise
    except Exception as exc:  # an unknown opcode, a truncated argument, ...
        raise ModelFileError(
            f"{source}: the pickle is corrupt or truncated ({type(exc).__name__}: {exc})"
        ) from exc
    finally:
        data.seek(start)


def _unpickle(data, source: str, load_storage):
    _check_program(data, source)
    try:
        return _SafeUnpickler(data, source, load_storage).load()
    except ModelFileError:
        raise
    except RecursionError as exc:
        raise ModelFileError(f"{source}: the pickle nests too deeply") from exc
    except MemoryError as exc:
        raise ModelFileError(f"{source}: the pickle asks for too much memory") from exc
    except Exception as exc:  # pickle reports corruption with many types
        raise ModelFileError(
            f"{source}: the pickle is corrupt or truncated "
            f"({type(exc).__name__}: {exc})"
        ) from exc


# A compressed zip entry may expand to at most this many times its stored size,
# above _BOMB_FLOOR bytes: deflate reaches ~1000x only on runs of equal bytes, and
# weights compress by a few percent (torch.save stores its entries uncompressed).
_BOMB_RATIO = 200
_BOMB_FLOOR = 64 << 20


def check_zip_sizes(zf, source: str):
    """Refuse a zip archive whose entries would expand far beyond the file (a
    decompression bomb: a few MB that inflate to gigabytes in memory)."""
    for info in zf.infolist():
        if info.file_size > max(_BOMB_FLOOR, _BOMB_RATIO * info.compress_size):
            raise ModelFileError(
                f"{source}: zip entry {info.filename!r} would inflate from "
                f"{info.compress_size} to {info.file_size} bytes; fastrnn refuses entries "
                f"compressed more than {_BOMB_RATIO}x beyond {_BOMB_FLOOR >> 20} MiB"
            )


def _read_zip(path, source: str):
    try:
        zf = zipfile.ZipFile(path)
    except Exception as exc:  # BadZipFile, NotImplementedError, OSError, ...
        raise ModelFileError(
            f"{source}: not a readable zip archive ({type(exc).__name__}: {exc})"
        ) from exc
    with zf:
        check_zip_sizes(zf, source)
        names = zf.namelist()
        pickles = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise ModelFileError(
                f"{source}: a torch.save archive holds one '<name>/data.pkl' "
                f"record; found {len(pickles)} among {len(names)} entries"
            )
        prefix = pickles[0][: -len("data.pkl")]
        if any(n.startswith(prefix + "code/") for n in names) or (
            prefix + "constants.pkl" in names
        ):
            raise ModelFileError(
                f"{source} is a TorchScript archive (torch.jit.save); fastrnn "
                "reads torch.save files: save the module or its state_dict "
                "with torch.save"
            )
        order = "<"
        if prefix + "byteorder" in names:
            record = _zip_read(zf, prefix + "byteorder", source).strip()
            if record not in (b"little", b"big"):
                raise ModelFileError(
                    f"{source}: the byteorder record is {record[:20]!r}; "
                    "expected b'little' or b'big'"
                )
            order = "<" if record == b"little" else ">"
        cache = {}

        def load_storage(key, code, numel):
            if key in cache:
                return cache[key]
            name = f"{prefix}data/{key}"
            nbytes = numel * _itemsize(code)
            try:
                info = zf.getinfo(name)
            except KeyError:
                if nbytes == 0:
                    raw = np.empty(0, np.uint8)
                    cache[key] = _Storage(key, raw, code, order)
                    return cache[key]
                raise ModelFileError(
                    f"{source}: storage record {name!r} is missing"
                ) from None
            if info.file_size != nbytes:
                raise ModelFileError(
                    f"{source}: storage record {name!r} holds {info.file_size} "
                    f"bytes; its header promises {numel} elements of "
                    f"{_itemsize(code)} bytes ({nbytes} bytes)"
                )
            raw = np.frombuffer(_zip_read(zf, name, source), np.uint8)
            if len(raw) != nbytes:
                raise ModelFileError(
                    f"{source}: storage record {name!r} is truncated "
                    f"({len(raw)} of {nbytes} bytes)"
                )
            cache[key] = _Storage(key, raw, code, order)
            return cache[key]

        data = _zip_read(zf, pickles[0], source)
        return _unpickle(io.BytesIO(data), source, load_storage)


def _zip_read(zf, name, source) -> bytes:
    try:
        return zf.read(name)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as exc:
        raise ModelFileError(
            f"{source}: zip entry {name!r} is corrupt or truncated ({exc})"
        ) from exc
    except Exception as exc:  # zlib.error, NotImplementedError for methods
        raise ModelFileError(
            f"{source}: zip entry {name!r} cannot be read ({type(exc).__name__}: {exc})"
        ) from exc


def _read_legacy(path, source: str):
    """The pre-1.6 stream format: header pickles, object pickle, storages."""
    with open(path, "rb") as f:
        blob = f.read()
    stream = io.BytesIO(blob)

    def no_storage(key, code, numel):
        raise ModelFileError(f"{source}: a header pickle refers to a storage")

    magic = _unpickle(stream, source, no_storage)
    if magic != _MAGIC_NUMBER:
        # A plain pickle (it was read safely above, so it ran nothing).
        raise ModelFileError(
            f"{source} is a plain pickle holding a {type(magic).__name__}, not "
            "a torch.save file (zip archive, or the legacy format that starts "
            "with torch's magic number)"
        )
    version = _unpickle(stream, source, no_storage)
    if version != _LEGACY_PROTOCOL_VERSION:
        raise ModelFileError(
            f"{source}: legacy torch.save protocol version {version!r}; "
            f"expected {_LEGACY_PROTOCOL_VERSION}"
        )
    _unpickle(stream, source, no_storage)  # sys_info: nothing needed from it

    wanted = {}
    numels = {}

    def remember(key, code, numel):
        if key not in wanted:
            wanted[key] = _Storage(key, None, code, "<")
            numels[key] = numel
        elif wanted[key].code != code or numels[key] != numel:
            raise ModelFileError(
                f"{source}: storage {key!r} is used with two element types or sizes"
            )
        return wanted[key]

    # The storages follow the object pickle, and how many bytes each takes
    # is only known from the records inside it: read it once to learn them
    # (tensors come out as None), fill the storages, then read it again.
    start = stream.tell()
    _unpickle(stream, source, remember)
    keys = _unpickle(stream, source, no_storage)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise ModelFileError(f"{source}: the storage key list is {type(keys).__name__}")
    pos = stream.tell()
    for key in keys:
        if key not in wanted:
            raise ModelFileError(f"{source}: storage key {key!r} is not used")
        storage = wanted[key]
        itemsize = _itemsize(storage.code)
        if pos + 8 > len(blob):
            raise ModelFileError(f"{source} is truncated: storage {key!r} is missing")
        (count,) = struct.unpack_from("<q", blob, pos)
        pos += 8
        if count != numels[key]:
            raise ModelFileError(
                f"{source}: storage {key!r} holds {count} elements; its record "
                f"promises {numels[key]}"
            )
        nbytes = count * itemsize
        if pos + nbytes > len(blob):
            raise ModelFileError(
                f"{source} is truncated: storage {key!r} needs {nbytes} bytes, "
                f"{len(blob) - pos} remain"
            )
        raw = np.frombuffer(blob, np.uint8, count=nbytes, offset=pos)
        object.__setattr__(storage, "raw", raw)
        pos += nbytes
    missing = [k for k, s in wanted.items() if s.raw is None]
    if missing:
        raise ModelFileError(f"{source}: storages {missing} have no data")
    stream.seek(start)
    return _unpickle(stream, source, lambda key, code, numel: wanted[key])


def load_pt(path) -> object:
    """Unpickle a ``torch.save`` file safely.

    Returns the saved object with every tensor as a new native-endian NumPy
    array (bfloat16 widened to float32), ``collections.OrderedDict`` and
    ``dict`` kept, and recurrent ``torch.nn`` modules as :class:`TorchModule`
    stand-ins holding their attribute dict.

    Raises
    ------
    UnsafeModelError
        The pickle names a global beyond tensor rebuilding.
    ModelFileError
        The file is corrupt, truncated, or of another kind.
    """
    source = repr(os.fspath(path))
    if zipfile.is_zipfile(path):
        return _read_zip(path, source)
    with open(path, "rb") as f:
        head = f.read(4)
    if head == b"PK\x03\x04":
        raise ModelFileError(
            f"{source} starts like a zip archive but is truncated or corrupt "
            "(no readable zip directory)"
        )
    try:
        is_tar = tarfile.is_tarfile(path)
    except Exception:
        is_tar = False
    if is_tar:
        raise ModelFileError(
            f"{source} is a tar archive: the torch < 0.4 format, which fastrnn "
            "does not read; re-save it with a current torch.save"
        )
    return _read_legacy(path, source)
