"""Facts about this machine and the yardsticks ``fastrnn bench`` measures (SPEC §6).

- :func:`machine_info`: CPU model, core counts, load, fastrnn's configuration and
  the versions of NumPy (and its BLAS), torch and ONNX Runtime.
- :func:`gemm_peak`: the float32 GEMM rate of NumPy's matmul at a thread count,
  the ceiling that large-batch runs are compared with.
- :func:`matvec_bandwidth`: the rate at which NumPy's float32 matrix-vector
  product reads a matrix of W_hh's size on one thread; a batch-1 step must read all
  of W_hh, so bytes ÷ this rate is a bound on its time.
- :func:`core_roundtrip`: what a hand-over between two threads costs right now.

NumPy's BLAS threads are set with threadpoolctl when it is installed.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys

import numpy as np

import fastrnn

from ._bench_core import time_calls

__all__ = ["OtherLoad", "blas_threads", "core_roundtrip", "gemm_peak", "machine_info",
           "matvec_bandwidth", "fastrnn_matvec_bandwidth"]


def blas_threads(n: int):
    """Context manager limiting NumPy's BLAS to ``n`` threads (no-op without
    threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=n, user_api="blas")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _blas_info() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "BLAS unknown (threadpoolctl not installed)"
    for lib in threadpool_info():
        if lib.get("user_api") == "blas":
            arch = lib.get("architecture")
            return f"{lib.get('internal_api')} {lib.get('version')}" + (f", {arch}" if arch else "")
    return "BLAS unknown"


def machine_info(engines: dict) -> dict:
    """What the header of the report states.

    Parameters
    ----------
    engines : dict
        From ``_bench_engines.availability``: name -> {available, version, reason}.
    """
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        load = None
    return {
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": _usable_cores(),
        "load_average": load,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": _blas_info(),
        "fastrnn": fastrnn.config(),
        "engines": engines,
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
        "argv": sys.argv[1:],
    }


def _best_time(call, min_sample: float, samples: int) -> float:
    """Fastest of ``samples`` timings: a yardstick is what the machine *can* do, so
    (as STREAM does) the best sample is kept, not the median — time lost to other
    processes would only understate the peak."""
    call()
    t = time_calls(call, 1)
    inner = max(1, int(min_sample / max(t, 1e-7)))
    return min(time_calls(call, inner) for _ in range(samples))


def gemm_peak(threads: int, quick: bool = False) -> dict:
    """float32 GEMM rate of NumPy matmul at ``threads`` BLAS threads.

    Square products of n = 512 and 1024 (``np.matmul(a, b, out=c)``); the best of
    several samples per size, the best size reported.

    Returns
    -------
    dict
        {"gflops": float, "size": n, "threads": threads}.
    """
    rng = np.random.default_rng(0)
    best = {"gflops": 0.0, "size": None, "threads": threads}
    with blas_threads(threads):
        for n in (512,) if quick else (512, 1024):
            a = rng.standard_normal((n, n)).astype(np.float32)
            b = rng.standard_normal((n, n)).astype(np.float32)
            c = np.empty((n, n), np.float32)
            t = _best_time(lambda: np.matmul(a, b, out=c), 0.02, 3 if quick else 7)
            gflops = 2.0 * n**3 / t / 1e9
            if gflops > best["gflops"]:
                best = {"gflops": gflops, "size": n, "threads": threads}
    return best


def matvec_bandwidth(rows: int, cols: int, quick: bool = False) -> dict:
    """Read rate of NumPy's float32 ``W @ v`` for W (rows, cols), one BLAS thread.

    The best of several samples, as for :func:`gemm_peak`.
    The fixed cost of a NumPy call (measured on a 16×16 product) is subtracted
    from the time before dividing the matrix's bytes by it, so small matrices are
    not charged for the Python overhead (if the difference is implausibly small, it
    is not subtracted).

    Returns
    -------
    dict
        {"gbytes_per_s", "bytes", "seconds", "overhead_seconds", "shape"}.
    """
    rng = np.random.default_rng(0)
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    v = rng.standard_normal(cols).astype(np.float32)
    out = np.empty(rows, np.float32)
    w0 = np.ones((16, 16), np.float32)
    v0, o0 = np.ones(16, np.float32), np.empty(16, np.float32)
    samples = 3 if quick else 7
    with blas_threads(1):
        t0 = _best_time(lambda: np.matmul(w0, v0, out=o0), 0.002, samples)
        t = _best_time(lambda: np.matmul(w, v, out=out), 0.005, samples)
    net = t - t0 if t > 1.5 * t0 else t
    return {"gbytes_per_s": w.nbytes / net / 1e9, "bytes": int(w.nbytes), "seconds": t,
            "overhead_seconds": t0, "shape": [rows, cols]}


def fastrnn_matvec_bandwidth(rows: int, cols: int, quick: bool = False) -> dict:
    """Read rate of fastrnn's own packed micro-kernels on ``W @ v`` for W (rows, cols),
    one thread (``fastrnn.Linear``'s engine, the tiles of a batch-1 step).

    The floor a batch-1 step cannot beat while it reads all of W_hh once: at sizes
    that fit in L2 it shows what the cache delivers, which NumPy's matvec (above)
    does not reach. Same method as :func:`matvec_bandwidth`.
    """
    import fastrnn
    from fastrnn import _kernels

    rng = np.random.default_rng(0)
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    v = rng.standard_normal((1, cols)).astype(np.float32)
    out = np.empty((1, rows), np.float32)
    lin, lin0 = _kernels.Linear(w, None), _kernels.Linear(np.ones((16, 16), np.float32), None)
    v0, o0 = np.ones((1, 16), np.float32), np.empty((1, 16), np.float32)
    samples = 3 if quick else 7
    before = fastrnn.get_num_threads()
    fastrnn.set_num_threads(1)
    try:
        t0 = _best_time(lambda: lin0.apply(v0, o0, 1), 0.002, samples)
        t = _best_time(lambda: lin.apply(v, out, 1), 0.005, samples)
    finally:
        fastrnn.set_num_threads(before)
    net = t - t0 if t > 1.5 * t0 else t
    return {"gbytes_per_s": w.nbytes / net / 1e9, "bytes": int(w.nbytes), "seconds": t,
            "overhead_seconds": t0, "shape": [rows, cols]}


def core_roundtrip(quick: bool = False) -> dict:
    """Nanoseconds for a cache line to go from one of fastrnn's two OpenMP threads
    to the other and back: what every hand-over between the threads of a call costs.

    A median of several samples, not a best: on a virtual machine the host may move
    the CPUs between core complexes during a run, and the figure (measured here
    57 ns on one complex, 330-350 ns across two) says which 2-thread timings were
    taken in which placement, so it is measured before and after the cases.

    Returns
    -------
    dict
        {"ns": float or None (no second thread), "samples": [float, ...]}.
    """
    from fastrnn import _kernels

    samples = [_kernels.core_roundtrip_ns(2000 if quick else 20000)
               for _ in range(3 if quick else 7)]
    if min(samples) < 0:
        return {"ns": None, "samples": []}
    return {"ns": float(np.median(samples)), "samples": samples}


class OtherLoad:
    """How busy other processes kept the CPUs over an interval (Linux ``/proc/stat``).

    ``start()`` then ``fraction()``: the CPU time all processes used, less this
    process's own, divided by the interval's wall time × CPUs. 0 means the machine
    was ours; 0.5 on two CPUs means one CPU's worth was taken by someone else —
    enough to wreck a two-thread timing. None where /proc/stat is missing.
    """

    def __init__(self):
        self._t0 = None

    @staticmethod
    def _read():
        try:
            with open("/proc/stat", encoding="ascii") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        busy = sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal
        t = os.times()
        return busy, busy + idle, t.user + t.system

    def start(self) -> OtherLoad:
        self._t0 = self._read()
        return self

    def fraction(self):
        """Other processes' share of the CPUs since ``start()`` (0..1), or None."""
        t1 = self._read()
        if self._t0 is None or t1 is None:
            return None
        hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        busy = (t1[0] - self._t0[0]) / hz
        total = (t1[1] - self._t0[1]) / hz
        own = t1[2] - self._t0[2]
        if total <= 0:
            return None
        return min(1.0, max(0.0, (busy - own) / total))
