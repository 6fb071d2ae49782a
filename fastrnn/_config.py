"""Runtime configuration: instruction set, threads, build facts (SPEC §5)."""

from __future__ import annotations

import operator
import os
import sys

from . import _kernels

__all__ = ["config", "show_config", "set_num_threads", "get_num_threads"]

ISA_NAMES = ("generic", "avx2", "avx512")
_INT_MAX = 2**31 - 1


def _available_isas() -> list[str]:
    best = _kernels.cpu_isa()
    return [n for i, n in enumerate(ISA_NAMES) if i <= best and _kernels.isa_compiled(i)]


def _apply_env_isa() -> None:
    """Honour FASTRNN_ISA at import: it may only lower the choice."""
    value = os.environ.get("FASTRNN_ISA")
    if value is None or value.strip() == "":
        return
    name = value.strip().lower()
    if len(value) > 40:  # an error message, not an echo of whatever the variable holds
        value = value[:37] + "..."
    if name not in ISA_NAMES:
        raise ValueError(
            f"FASTRNN_ISA={value!r} is not an instruction set fastrnn knows; "
            f"use one of {', '.join(ISA_NAMES)}"
        )
    available = _available_isas()
    if name not in available:
        raise ValueError(
            f"FASTRNN_ISA={value!r} is not supported by this CPU or this build; "
            f"available here: {', '.join(available)}"
        )
    _kernels._set_isa(ISA_NAMES.index(name))


def _apply_env_isa_or_exit() -> None:
    """_apply_env_isa; its error is a ValueError at import (SPEC §5), except when
    the import is the `fastrnn` command starting (the console script, or python -m
    fastrnn): the command's errors are one line on stderr, without a traceback
    (SPEC §6), and it exits with status 2 as for a bad argument."""
    try:
        _apply_env_isa()
    except ValueError as exc:
        if not _starting_the_command():
            raise
        sys.stderr.write(f"fastrnn: error: {exc}\n")
        raise SystemExit(2) from None


def _starting_the_command() -> bool:
    """Whether this process is the `fastrnn` command: its console script, or
    ``python [options] -m fastrnn`` (the interpreter's own options skipped, those
    with a value included: -W, -X)."""
    argv = getattr(sys, "argv", None) or [""]
    if os.path.basename(str(argv[0])) in ("fastrnn", "fastrnn.exe"):
        return True
    args = list(getattr(sys, "orig_argv", []))[1:]
    while args and args[0].startswith("-") and args[0] != "-" and not args[0].startswith("--"):
        opt = args.pop(0)
        if "c" in opt[1:]:  # -c code
            return False
        if opt.endswith("m"):  # -m, or options joined with it (-um)
            return args[:1] in (["fastrnn"], ["fastrnn.cli"])
        if opt in ("-W", "-X"):
            args = args[1:]
    return False


def current_isa() -> str:
    return ISA_NAMES[_kernels.get_isa()]


def set_num_threads(n: int) -> None:
    """Set the number of OpenMP threads fastrnn uses (n >= 1).

    Like OpenMP's ``omp_set_num_threads``, this sets the value for the calling
    thread (and threads it starts afterwards inherit the process default, set by
    OMP_NUM_THREADS). threadpoolctl's limits act on the same setting.
    """
    if isinstance(n, bool):
        raise TypeError(f"n must be an integer >= 1, got {n!r}")
    try:
        n = operator.index(n)
    except TypeError:
        raise TypeError(f"n must be an integer >= 1, got {type(n).__name__} {n!r}") from None
    if n < 1:
        raise ValueError(f"n is {n}; the number of threads must be >= 1")
    if n > _INT_MAX:  # OpenMP takes a C int; say so instead of an OverflowError
        raise ValueError(f"n is {n}; the number of threads must be in [1, {_INT_MAX}]")
    _kernels.set_max_threads(n)


def get_num_threads() -> int:
    """The number of OpenMP threads fastrnn uses for calls from this thread (1 in a
    child process made by fork(), where every call runs on one thread)."""
    return _kernels.max_threads()


def _cpu_paths() -> list:
    """The kernel paths taken on some CPUs only that calls on the current ISA take
    now: the batch-1 projection woven into the recurrent steps (AMD) and the row
    tiles' next-panel prefetch (Intel); both AVX-512 only (csrc/dispatch.c)."""
    if current_isa() != "avx512":
        return []
    paths = []
    if _kernels._weaves():
        paths.append("woven projection")
    if _kernels._prefetches_next():
        paths.append("next-panel prefetch")
    return paths


def config() -> dict:
    """The build and runtime configuration as a dict (SPEC §5), with the thread count
    and the CPU-specific kernel paths ("cpu_paths") beside the keys SPEC names."""
    from . import __version__

    return {
        "version": __version__,
        "compiler": _kernels.compiler(),
        "openmp": _kernels.openmp_enabled(),
        "isa": current_isa(),
        "isa_available": _available_isas(),
        "num_threads": get_num_threads(),
        "cpu_paths": _cpu_paths(),
    }


def show_config() -> None:
    """Print :func:`config` in a readable form."""
    for key, value in config().items():
        if isinstance(value, list):
            value = ", ".join(value) or "none"
        print(f"{key + ':':<15}{value}")
