"""``fastrnn run``: inference from files.

    fastrnn run MODEL --input X.npy --output Y.npy [--lengths L.npy]
                [--batch-first] [--state-out S.npz]

MODEL is any file :func:`fastrnn.load` reads.  X is read with
``allow_pickle=False``; Y.npy receives the output sequence; S.npz, when asked
for, the final states (``h_n``, and ``c_n`` for an LSTM).  ``--batch-first``
overrides the model's batch_first.  A cell model takes one step: X is (B, I)
or (I,), Y is the new h, and ``--lengths`` does not apply.  A whole model
(``fastrnn.save_model``: Sequential, LanguageModel) writes its output to Y and
has no state for ``--state-out``; a Seq2Seq, which takes two sequences, is
refused.

Every failure prints one line, ``fastrnn run: error: ...``, on stderr and
returns a non-zero exit code (2 for bad arguments, 1 otherwise); no traceback.
"""

from __future__ import annotations

import argparse
import sys

from ._cli_common import error_exit, run_guarded, standalone

__all__ = ["add_parser", "main"]

_PROG = "fastrnn run"


def _error_exit(message, code: int = 2):
    error_exit(_PROG, message, code)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``run`` on an ``argparse`` subparsers object; returns its parser.

    The parser's defaults hold ``func=main``, so a caller may dispatch with
    ``sys.exit(args.func(args))``.  Its argument errors print one line and
    exit with status 2.
    """
    p = subparsers.add_parser(
        "run",
        help="run a model file on an input array",
        description="Load MODEL (.pt/.pth/.safetensors/.npz/.onnx), run it on "
        "X.npy and save the output sequence to Y.npy.",
    )
    p.add_argument("model", metavar="MODEL", help="model file")
    p.add_argument("--input", required=True, metavar="X.npy",
                   help="input: (T, B, I), (B, T, I) if batch-first, or (T, I)")
    p.add_argument("--output", required=True, metavar="Y.npy", help="where to save the output")
    p.add_argument("--lengths", metavar="L.npy", help="valid length of each sequence, shape (B,)")
    p.add_argument("--batch-first", action="store_true",
                   help="X and Y are (B, T, ...) whatever the model file says")
    p.add_argument("--state-out", metavar="S.npz",
                   help="save the final states here (h_n, and c_n for an LSTM)")
    p.set_defaults(func=main)
    # One line on stderr for argument errors, as for every other failure.
    p.error = lambda message: _error_exit(message, 2)
    return p


def _load_array(path, what):
    import numpy as np

    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ValueError(f"{what} file {path!r} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"{what} file {path!r} is a directory") from None
    except ValueError as exc:
        if "pickle" in str(exc):
            raise ValueError(
                f"{what} file {path!r} holds pickled objects; expected a numeric .npy array"
            ) from None
        raise ValueError(f"{what} file {path!r} is not a readable .npy array ({exc})") from None
    except Exception as exc:
        raise ValueError(
            f"{what} file {path!r} is not a readable .npy array ({type(exc).__name__}: {exc})"
        ) from None


def _run(args) -> int:
    import numpy as np

    from .io import load

    overrides = {"batch_first": True} if args.batch_first else {}
    try:
        model = load(args.model, **overrides)
    except ValueError as exc:
        if args.batch_first and "batch_first" in str(exc):
            raise ValueError(f"--batch-first: {exc}") from None
        raise
    x = _load_array(args.input, "--input")
    if not isinstance(x, np.ndarray):
        raise ValueError(f"--input file {args.input!r} is an .npz archive; expected one .npy array")
    lengths = None
    if args.lengths is not None:
        lengths = _load_array(args.lengths, "--lengths")
        if not isinstance(lengths, np.ndarray):
            raise ValueError(f"--lengths file {args.lengths!r} is an .npz archive; expected .npy")
    from .cells import _CellBase
    from .layers import _RNNBase

    kind = type(model).__name__
    is_lstm = kind.startswith("LSTM")
    whole = not isinstance(model, (_RNNBase, _CellBase))  # fastrnn.save_model's
    if kind.endswith("Cell") and lengths is not None:
        raise ValueError(
            f"--lengths does not apply to the {kind} in {args.model!r}, which takes one step"
        )
    if whole and kind == "Seq2Seq":
        raise ValueError(f"{args.model!r} holds a Seq2Seq, which takes a source and a target "
                         "sequence; fastrnn run feeds one input (use the Python API, or "
                         "fastrnn generate)")
    if whole and args.state_out is not None:
        raise ValueError(f"--state-out does not apply to the {kind} in {args.model!r}: a "
                         "whole model returns its output only")
    try:
        if whole:  # Sequential, LanguageModel: the output alone
            out = model(x) if lengths is None else model(x, lengths=lengths)
        elif kind.endswith("Cell"):
            result = model(x)
            out, h_n, c_n = (result[0], *result) if is_lstm else (result, result, None)
        else:
            out, state = model(x, lengths=lengths)
            h_n, c_n = state if is_lstm else (state, None)
    except (ValueError, TypeError) as exc:
        raise type(exc)(
            f"running the {kind} of {args.model!r} on --input {args.input!r}"
            + (f" with --lengths {args.lengths!r}" if lengths is not None else "")
            + f": {exc}"
        ) from None
    _save_npy(args.output, out, "--output")
    if args.state_out is not None:
        states = {"h_n": np.asarray(h_n)}
        if c_n is not None:
            states["c_n"] = np.asarray(c_n)
        _save(args.state_out, lambda f: np.savez(f, **states), "--state-out")
    return 0


def _save(path, write, what):
    try:
        with open(path, "wb") as f:
            write(f)
    except OSError as exc:
        reason = exc.strerror or exc
        raise ValueError(f"{what} file {path!r} cannot be written ({reason})") from None


def _save_npy(path, array, what):
    import numpy as np

    _save(path, lambda f: np.save(f, np.asarray(array), allow_pickle=False), what)


def main(args) -> int:
    """Run the ``run`` subcommand on parsed ``args``; returns the exit code."""
    return run_guarded(_PROG, _run, args)


def _standalone(argv=None) -> int:
    """``python -m fastrnn._cli_run ...``: the subcommand without fastrnn's CLI."""
    return standalone(_PROG, add_parser, argv)


if __name__ == "__main__":
    sys.exit(_standalone())
