"""Exceptions raised by fastrnn.

Every user-facing error is raised from Python, before any C code runs, with a
message that names the argument, what came and what is allowed.
"""

__all__ = ["ModelFileError", "UnsafeModelError"]


class ModelFileError(ValueError):
    """A model file is corrupt, truncated, or of an unsupported kind."""


class UnsafeModelError(ModelFileError):
    """A pickle (in a .pt file, or an object array in a .npz) asked for more
    than tensor rebuilding, and was refused without being executed."""
