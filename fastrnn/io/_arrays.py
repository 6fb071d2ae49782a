"""``.npz`` and ``.safetensors``: arrays under PyTorch names, plus fastrnn metadata.

A file written by :func:`fastrnn.io.save` also carries its hyperparameters as
JSON -- in an ``.npz`` as the uint8 entry ``__fastrnn__`` (never an object
array), in a ``.safetensors`` file as the ``__metadata__`` entry ``fastrnn``::

    {"format": "fastrnn", "version": 1, "class": "LSTM",
     "hyperparameters": {"input_size": 8, ..., "dtype": "float32"}}

Files without it (``np.savez(**state_dict)``, ``safetensors.torch.save_file``)
load too; their hyperparameters are inferred from the weights.
"""

from __future__ import annotations

import json
import os
import secrets

import numpy as np

from ..errors import ModelFileError, UnsafeModelError
from ._infer import Found
from ._pickle import check_zip_sizes

__all__ = ["META_KEY", "FORMAT_VERSION", "load_npz", "load_safetensors",
           "write_npz", "write_safetensors", "parse_meta"]

META_KEY = "__fastrnn__"  # npz entry
SAFETENSORS_META_KEY = "fastrnn"  # safetensors __metadata__ entry
FORMAT_VERSION = 1
CLASSES = ("RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell")

_SAFETENSORS_HINT = (
    "install it with: pip install safetensors (or pip install 'fastrnn[safetensors]')"
)


def parse_meta(text, source: str) -> dict:
    """Decode fastrnn's JSON metadata into ``Found`` fields."""
    try:
        meta = json.loads(text)
    except (ValueError, TypeError) as exc:
        raise ModelFileError(f"{source}: the fastrnn metadata is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != "fastrnn":
        raise ModelFileError(
            f"{source}: the fastrnn metadata is {str(meta)[:80]!r}; expected a "
            "JSON object with \"format\": \"fastrnn\""
        )
    version = meta.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(f"{source}: fastrnn metadata version {version!r}; expected 1")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{source} was written by a newer fastrnn (metadata version "
            f"{version}); this fastrnn reads version {FORMAT_VERSION}"
        )
    cls = meta.get("class")
    hparams = meta.get("hyperparameters")
    if cls not in CLASSES or not isinstance(hparams, dict):
        raise ModelFileError(
            f"{source}: the fastrnn metadata names class {cls!r} with "
            f"hyperparameters {hparams!r}; expected one of {', '.join(CLASSES)} "
            "and an object"
        )
    return {"kind": cls.replace("Cell", ""), "cell": cls.endswith("Cell"), "hparams": hparams}


def load_npz(path, source: str) -> Found:
    """Read an ``.npz`` archive with ``allow_pickle=False``."""
    with open(path, "rb") as f:
        head = f.read(6)
    if head.startswith(b"\x93NUMPY"):
        raise ModelFileError(
            f"{source} is a single .npy array; expected an .npz archive of "
            "named weights (np.savez(path, **state_dict))"
        )
    if not head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        raise ModelFileError(
            f"{source} is not an .npz archive (it does not start with a zip header)"
        )
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as exc:  # BadZipFile, OSError, ValueError, EOFError
        raise ModelFileError(
            f"{source}: not a readable .npz archive ({type(exc).__name__}: {exc})"
        ) from exc
    arrays = {}
    extra = {}
    with npz:
        check_zip_sizes(npz.zip, source)  # before any entry is inflated
        for key in npz.files:
            try:
                value = npz[key]
            except ValueError as exc:
                if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
                    raise UnsafeModelError(
                        f"{source}: entry {key!r} is an object array, which "
                        "would need pickle to load; refused -- weights must be "
                        "numeric arrays"
                    ) from exc
                raise ModelFileError(
                    f"{source}: entry {key!r} is corrupt or truncated ({exc})"
                ) from exc
            except Exception as exc:  # BadZipFile, zlib.error, EOFError, OSError
                raise ModelFileError(
                    f"{source}: entry {key!r} is corrupt or truncated "
                    f"({type(exc).__name__}: {exc})"
                ) from exc
            if not isinstance(value, np.ndarray):
                raise ModelFileError(
                    f"{source}: entry {key!r} is not a .npy array; an .npz "
                    "model holds only arrays"
                )
            if key == META_KEY:
                if value.dtype == np.uint8 and value.ndim == 1:
                    text = value.tobytes().decode("utf-8", errors="replace")
                elif value.dtype.kind == "U" and value.ndim == 0:
                    text = str(value[()])
                else:
                    raise ModelFileError(
                        f"{source}: entry {META_KEY!r} has dtype {value.dtype} "
                        f"and shape {value.shape}; expected 1-D uint8 JSON bytes"
                    )
                extra = parse_meta(text, source)
            else:
                arrays[key] = value
    return Found(arrays=arrays, source=source, **extra)


def _import_safetensors(source: str):
    try:
        import safetensors
        import safetensors.numpy
    except ImportError as exc:
        raise ModelFileError(
            f"{source}: .safetensors files need the 'safetensors' package; "
            + _SAFETENSORS_HINT
        ) from exc
    return safetensors


def load_safetensors(path, source: str) -> Found:
    """Read a ``.safetensors`` file with the ``safetensors`` package."""
    st = _import_safetensors(source)
    try:
        with st.safe_open(os.fspath(path), framework="np") as f:
            meta = f.metadata() or {}
            arrays = {}
            for key in f.keys():
                try:
                    arrays[key] = f.get_tensor(key)
                except (TypeError, ValueError) as exc:
                    dtype = f.get_slice(key).get_dtype()
                    raise ModelFileError(
                        f"{source}: tensor {key!r} has dtype {dtype}, which "
                        "NumPy cannot hold; weights must be F16, F32 or F64 "
                        "(convert BF16 to float32 before saving)"
                    ) from exc
    except ModelFileError:
        raise
    except Exception as exc:  # SafetensorError, OSError, ...
        raise ModelFileError(
            f"{source}: not a readable .safetensors file ({type(exc).__name__}: {exc})"
        ) from exc
    extra = {}
    if SAFETENSORS_META_KEY in meta:
        extra = parse_meta(meta[SAFETENSORS_META_KEY], source)
    return Found(arrays=arrays, source=source, **extra)


def atomic_write(path, write):
    """Write through a temporary file in the same folder, then rename, so a reader
    never sees half a file. The temporary file is created like open() would create
    the file itself (mode 0o666 less the umask; mkstemp would make it private)."""
    path = os.fsdecode(os.fspath(path))
    folder = os.path.dirname(os.path.abspath(path))
    for _ in range(100):
        tmp = os.path.join(folder, f".fastrnn-{os.getpid()}-{secrets.token_hex(8)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
        except OSError as exc:  # no such folder, no permission: name the file asked for
            raise type(exc)(exc.errno, f"cannot write {path!r}: {exc.strerror}") from None
    else:  # pragma: no cover - 100 random names taken
        raise OSError(f"could not create a temporary file in {folder!r}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_npz(path, arrays: dict, meta_json: str):
    if META_KEY in arrays:
        raise ValueError(f"state_dict key {META_KEY!r} is reserved for fastrnn's metadata")
    entries = dict(arrays)
    entries[META_KEY] = np.frombuffer(meta_json.encode("utf-8"), dtype=np.uint8)

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **entries)

    atomic_write(path, write)


def write_safetensors(path, arrays: dict, meta_json: str):
    st = _import_safetensors(repr(os.fspath(path)))

    def write(tmp):
        st.numpy.save_file(arrays, tmp, metadata={SAFETENSORS_META_KEY: meta_json})

    atomic_write(path, write)
