"""The data model and the measuring loop of ``fastrnn bench`` (SPEC §6).

A :class:`Case` is one configuration to time (cell, sizes, thread count); an
engine (see ``_bench_engines``) is one way of running it; a :class:`Result` is what
one engine gave on one case. :func:`run_case` checks every engine's output against
the float64 NumPy reference, then times the engines that passed *interleaved*: the
machine is shared and noisy, so each round takes one sample of every engine, in a
rotating order, rather than timing one engine after another.

Nothing here prints: progress goes through a callback, tables through
``_bench_report``.
"""

from __future__ import annotations

import gc
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

try:
    import resource
except ImportError:  # not on Windows: there settle() only sleeps its gap
    resource = None

__all__ = ["Case", "Policy", "Result", "check_output", "derive", "f32_tolerance", "run_case",
           "round_steps", "time_calls"]

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
EPS32 = float(np.finfo(np.float32).eps)


# --------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One configuration to time.

    Attributes
    ----------
    kind : {"seq", "stream"}
        "seq": one call on the whole sequence (T, B, I). "stream": T calls of one
        step (B, I) each, the state carried between calls.
    cell : {"LSTM", "GRU", "RNN"}
    hidden, input, batch, seq : int
        H, I, B and T of SPEC's notation.
    layers : int
    bidirectional : bool
    threads : int
        Thread count given to every engine.
    """

    kind: str
    cell: str
    hidden: int
    input: int
    batch: int
    seq: int
    layers: int = 1
    bidirectional: bool = False
    threads: int = 1

    @property
    def gates(self) -> int:
        """G: 4 for LSTM, 3 for GRU, 1 for RNN."""
        return GATES[self.cell]

    @property
    def directions(self) -> int:
        """D: 2 if bidirectional, else 1."""
        return 2 if self.bidirectional else 1

    @property
    def section(self) -> str:
        """The table this case belongs in: "latency", "throughput" or "stream"."""
        if self.kind == "stream":
            return "stream"
        return "latency" if self.batch == 1 else "throughput"

    @property
    def model_key(self) -> tuple:
        """Everything that fixes the weights, the input and the exported models."""
        return (self.kind, self.cell, self.hidden, self.input, self.batch, self.seq,
                self.layers, self.bidirectional)

    @property
    def widest_reduction(self) -> int:
        """The longest dot product in the network (sets the float32 tolerance)."""
        deeper = self.directions * self.hidden if self.layers > 1 else 0
        return max(self.input, self.hidden, deeper)

    def flops_per_step(self) -> int:
        """2·B·G·H·(I_k + H) per layer k and direction: both matrix products.

        The gate arithmetic (a few flops per unit) is not counted.
        """
        total = 0
        for k in range(self.layers):
            n_in = self.input if k == 0 else self.directions * self.hidden
            total += self.directions * 2 * self.batch * self.gates * self.hidden * (
                n_in + self.hidden)
        return total

    def whh_bytes(self) -> int:
        """Bytes of every float32 W_hh (G·H, H)."""
        return self.layers * self.directions * self.gates * self.hidden * self.hidden * 4

    def step_bytes(self) -> int:
        """Weight bytes every step must read: all W_hh for a whole-sequence call (the
        input projection is one GEMM over all steps); W_ih too when streaming, since a
        step call projects its own input."""
        total = self.whh_bytes()
        if self.kind == "stream":
            for k in range(self.layers):
                n_in = self.input if k == 0 else self.directions * self.hidden
                total += self.directions * self.gates * self.hidden * n_in * 4
        return total

    @property
    def bound_shape(self) -> tuple:
        """(rows, cols) of the matrix whose NumPy matvec read rate sets the bandwidth
        bound of a batch-1 case.

        A whole-sequence call runs layer by layer, each step re-reading that layer's
        W_hh: one W_hh, (G·H, H). A stream step reads every layer's W_ih and W_hh in
        turn, step after step, so the size of all of them, not of one W_hh, decides
        which cache they come from: one matrix of H columns holding them all (a
        2-layer LSTM H=256 stream of 40 inputs reads 3.2 MB a step, from L3 where
        the L2 holds 2 MB, while one 1 MB W_hh alone is read from L2).
        """
        if self.kind != "stream":
            return (self.gates * self.hidden, self.hidden)
        return (self.step_bytes() // (4 * self.hidden), self.hidden)

    def label(self) -> str:
        """A short human name, e.g. ``LSTM H=512 B=1 threads=2``."""
        parts = [self.cell, f"H={self.hidden}"]
        if self.input != self.hidden:
            parts.append(f"I={self.input}")
        parts.append(f"B={self.batch}")
        parts.append(f"T={self.seq}")
        if self.layers != 1:
            parts.append(f"L={self.layers}")
        if self.bidirectional:
            parts.append("bidir")
        if self.kind == "stream":
            parts.append("stream")
        parts.append(f"threads={self.threads}")
        return " ".join(parts)

    def as_dict(self) -> dict:
        """The fields as a JSON-ready dict (plus the derived section)."""
        return {
            "kind": self.kind, "section": self.section, "cell": self.cell,
            "hidden": self.hidden, "input": self.input, "batch": self.batch, "seq": self.seq,
            "layers": self.layers, "bidirectional": self.bidirectional,
            "threads": self.threads, "flops_per_step": self.flops_per_step(),
            "whh_bytes": self.whh_bytes(), "step_bytes": self.step_bytes(),
        }


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------


@dataclass
class Result:
    """What one engine gave on one case.

    ``samples`` hold seconds per *unit*: one call on the whole sequence ("seq") or
    the T step calls of a pass over it ("stream"), always scaled to the case's T
    steps (the NumPy reference may run fewer steps per call; ``timed_steps`` says).

    status: "ok" (checked and timed), "FAILED" (wrong output; not timed), "error"
    (the engine raised; not timed) or "skipped" (not available for this case).
    """

    case: Case
    engine: str
    status: str
    note: str = ""
    max_error: Optional[float] = None
    tolerance: Optional[float] = None
    checked_steps: Optional[int] = None
    samples: list = field(default_factory=list)
    calls_per_sample: int = 0  # the most calls averaged in one sample
    timed_steps: Optional[int] = None
    is_peer: bool = True
    others_load: Optional[float] = None  # CPU share other processes took during the case
    # Filled in by the analysis once the whole run is done.
    speedup: Optional[float] = None
    peak_fraction: Optional[float] = None
    bound_us_per_step: Optional[float] = None
    time_over_bound: Optional[float] = None

    @property
    def timed(self) -> bool:
        """True when there are samples to report."""
        return self.status == "ok" and bool(self.samples)

    @property
    def median(self) -> Optional[float]:
        """Median seconds per unit."""
        return float(np.median(self.samples)) if self.timed else None

    @property
    def iqr(self) -> Optional[float]:
        """Interquartile range of the samples, seconds."""
        if not self.timed:
            return None
        q1, q3 = np.percentile(self.samples, [25, 75])
        return float(q3 - q1)

    @property
    def us_per_step(self) -> Optional[float]:
        """Median time divided by T, in microseconds."""
        m = self.median
        return None if m is None else m / self.case.seq * 1e6

    @property
    def gflops(self) -> Optional[float]:
        """Case.flops_per_step() per step time, in GFLOP/s."""
        m = self.median
        return None if m is None else self.case.flops_per_step() * self.case.seq / m / 1e9

    def as_dict(self) -> dict:
        """JSON-ready dict of everything measured and derived."""
        def num(v):
            return None if v is None or not math.isfinite(v) else float(v)

        return {
            "engine": self.engine,
            "is_peer": self.is_peer,
            "case": self.case.as_dict(),
            "status": self.status,
            "note": self.note,
            "check": {
                "passed": self.status == "ok",
                "max_error": num(self.max_error),
                "tolerance": num(self.tolerance),
                "steps_checked": self.checked_steps,
            },
            "median_s": num(self.median),
            "iqr_s": num(self.iqr),
            "repeats": len(self.samples),
            "calls_per_repeat": self.calls_per_sample,
            "timed_steps_per_call": self.timed_steps,
            "samples_s": [float(s) for s in self.samples],
            "us_per_step": num(self.us_per_step),
            "gflops": num(self.gflops),
            "speedup_of_fastrnn": num(self.speedup),
            "fraction_of_gemm_peak": num(self.peak_fraction),
            "bandwidth_bound_us_per_step": num(self.bound_us_per_step),
            "time_over_bound": num(self.time_over_bound),
            "others_cpu_share": num(self.others_load),
        }


# --------------------------------------------------------------------------------------
# Correctness
# --------------------------------------------------------------------------------------


def f32_tolerance(k: int) -> float:
    """Bound on the scaled error of a float32 engine against the float64 reference.

    Each output is a chain of dot products of length ``k`` (the widest reduction)
    plus a few activations per step; float32 rounding gives errors of about
    eps·sqrt(k), which the gates contract rather than grow. The bound is
    32·eps·sqrt(k) (1.2e-4 at k=1024), the one the test suite uses, far below what a
    wrong index or gate produces (~1e-2). Measured engines land near 1e-6.
    """
    return 32.0 * EPS32 * max(1.0, math.sqrt(k))


def check_output(actual, expected, k: int) -> tuple:
    """Compare an engine's output with the float64 reference.

    Parameters
    ----------
    actual : array_like, (T', B, D·H)
    expected : numpy.ndarray, (T', B, D·H), float64
    k : int
        Widest reduction, for :func:`f32_tolerance`.

    Returns
    -------
    (passed, max_error, tolerance, reason) : (bool, float, float, str)
        max_error is max |actual − expected| / max(1, |expected|); NaN counts as a
        failure.
    """
    tol = f32_tolerance(k)
    a = np.asarray(actual, dtype=np.float64)
    if a.shape != expected.shape:
        return False, math.inf, tol, f"output shape {a.shape}, expected {expected.shape}"
    if not np.all(np.isfinite(a)):
        return False, math.inf, tol, "output has NaN or Inf"
    err = np.abs(a - expected) / np.maximum(1.0, np.abs(expected))
    worst = float(err.max()) if err.size else 0.0
    if worst > tol:
        return False, worst, tol, f"max error {worst:.2e} > tolerance {tol:.2e}"
    return True, worst, tol, ""


# --------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------


@dataclass
class Policy:
    """How long and how often to time.

    Attributes
    ----------
    budget : float
        Seconds of sampling per engine per case, once it has min_repeats samples.
    min_repeats, max_repeats : int
        Bounds on the number of samples per engine.
    repeats : int or None
        A fixed number of samples (``--repeats``), overriding the budget.
    min_sample : float
        Seconds a sample should last; fast calls are repeated inside one sample.
    ref_budget, ref_min_repeats : float, int
        The same for the slow NumPy reference.
    ref_call : float
        Seconds one reference call may take; it runs a prefix of the steps if the
        whole sequence would take longer, and its time is scaled to T steps.
    cap : float
        Seconds of sampling after which an engine stops even short of min_repeats
        (but with at least 2 samples): calls slowed down a hundredfold by other
        processes must not stretch the run without bound.
    oracle_budget : float
        Seconds the float64 reference may spend on the check; beyond it the check
        covers a prefix of the sequence (at least ``oracle_min_steps`` steps).
    oracle_min_steps : int
    switch_gap : float
        Seconds of idle time at least before each multi-thread sample of an engine
        that follows another engine's; then the wait goes on (up to ``settle_max``
        seconds) until this process uses the CPUs no more (see ``settle``). Thread
        pools spin-wait after a call (libgomp, ONNX Runtime for 30-50 ms), and an
        engine started while another one's pool still spins shares the cores with
        it -- measured here, a 2-thread fastrnn LSTM H=1024 sample right after ONNX
        Runtime's ran at about the 1-thread speed, 1.9x slower than on its own, and
        H=256 calls 30 ms after ONNX Runtime's took 4x their time one in ten. Not part
        of any timing.
    settle_max : float
    switch_warm : float
        Seconds of untimed calls of an engine after that idle time, before its
        multi-thread sample. Threads that were idle come back slow on a virtual
        machine for a few milliseconds (the host gives their CPUs back late or
        elsewhere): measured here, fastrnn's 2-thread LSTM H=128 batch-1 calls
        after the idle time ran at 4.3 instead of 2.4 us a step in about half of
        the samples (medians of runs 2.4-4.3); after 20 ms of calls, 2.36-2.38 with
        the 75th percentile at 2.5 at most. Every engine gets the same warm-up, so
        samples show what a caller running one engine steadily sees.
    """

    budget: float = 0.5
    switch_gap: float = 0.01
    settle_max: float = 0.5
    switch_warm: float = 0.02
    min_repeats: int = 5
    max_repeats: int = 200
    repeats: Optional[int] = None
    min_sample: float = 0.005
    ref_budget: float = 0.25
    ref_min_repeats: int = 3
    ref_call: float = 0.03
    cap: float = 2.0
    oracle_budget: float = 1.0
    oracle_min_steps: int = 10

    @classmethod
    def quick(cls) -> Policy:
        """Short budgets for ``--quick``."""
        return cls(budget=0.08, min_repeats=3, max_repeats=50, min_sample=0.002,
                   ref_budget=0.04, ref_min_repeats=2, ref_call=0.01, cap=0.4,
                   oracle_budget=0.25, switch_warm=0.005)


def _process_cpu_seconds() -> Optional[float]:
    """CPU time used so far by all threads of this process (None where unknown)."""
    if resource is None:
        return None
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def settle(gap: float, max_wait: float, window: float = 0.005, idle: float = 0.05) -> None:
    """Sleep ``gap`` seconds, then until the process's other threads are idle.

    Idle: over ``window`` seconds of sleep, the whole process used less than
    ``idle`` of one CPU (the caller sleeps, so that is what spinning thread pools
    use). Gives up after ``max_wait`` seconds: a pool that never rests must not
    hang the run.
    """
    time.sleep(gap)
    deadline = time.perf_counter() + max_wait
    while True:
        c0, t0 = _process_cpu_seconds(), time.perf_counter()
        if c0 is None:
            return
        time.sleep(window)
        c1, t1 = _process_cpu_seconds(), time.perf_counter()
        if (c1 - c0) < idle * (t1 - t0) or t1 > deadline:
            return


def time_calls(call: Callable[[], object], n: int) -> float:
    """Seconds per call of ``n`` back-to-back calls, garbage collector paused."""
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter()
        for _ in range(n):
            call()
        return (time.perf_counter() - t0) / n
    finally:
        if gc_was_on:
            gc.enable()


@dataclass
class _Timer:
    """An engine's timed unit and its sampling state within one case."""

    result: Result
    call: Callable[[], object]
    scale: float          # case T / steps the call actually runs
    inner: int = 1        # calls per sample
    min_repeats: int = 5
    max_repeats: int = 200
    budget: float = 0.5   # seconds of sampling, after which min_repeats is enough
    spent: float = 0.0
    warm_each: bool = False

    cap: float = 2.0      # seconds of sampling after which it stops, min_repeats or not

    def wants_more(self) -> bool:
        n = len(self.result.samples)
        if n < self.min_repeats:
            return n < 2 or self.spent < self.cap
        return n < self.max_repeats and self.spent < self.budget


def _plan(timer: _Timer, seconds_per_call: float, policy: Policy, is_reference: bool) -> None:
    """Choose calls per sample and the sampling budget from one call's time."""
    t = max(seconds_per_call, 1e-7)
    timer.inner = max(1, math.ceil(policy.min_sample / t))
    if policy.repeats is not None:
        timer.min_repeats = timer.max_repeats = policy.repeats
        timer.cap = math.inf  # asked for explicitly: take them all
    else:
        timer.min_repeats = policy.ref_min_repeats if is_reference else policy.min_repeats
        timer.max_repeats = policy.max_repeats
        timer.budget = policy.ref_budget if is_reference else policy.budget
        timer.cap = policy.cap
    # Interleaving means the previous engine's weights fill the caches and its
    # thread pool may still be spinning when this engine's sample starts. A caller
    # running one engine back to back sees neither, so when it is cheap (samples
    # under 50 ms) an untimed call precedes each sample to restore that state.
    timer.warm_each = timer.inner * t < 0.05


def run_case(case: Case, engines: list, policy: Policy, oracle: Callable[[int], np.ndarray],
             check_steps: int, progress: Callable[[str], None] = lambda s: None) -> list:
    """Check, then time, every engine on one case.

    Parameters
    ----------
    case : Case
    engines : list
        Engine objects (``_bench_engines.Engine``) built for this case, or
        ``(name, reason)`` pairs for engines skipped on it.
    policy : Policy
    oracle : callable
        ``oracle(steps)`` returns the float64 reference output on the first
        ``steps`` steps of the case's input, (steps, B, D·H).
    check_steps : int
        How many steps the check covers (T, or a prefix when the reference is slow).
    progress : callable
        Called with a short status (e.g. the engine being checked).

    Returns
    -------
    list of Result, one per engine, in the order given.

    Sampling: each round every engine that still wants samples gives one, the
    order rotating from round to round. An engine wants samples until it has
    ``min_repeats`` of them and has spent its time budget (wall time), or has
    ``max_repeats``; calls slowed down by other processes stop it at ``policy.cap``
    seconds with fewer samples (at least 2), and shrink its calls per sample.
    """
    results, timers = [], []
    expected = oracle(check_steps)
    k = case.widest_reduction
    for eng in engines:
        if isinstance(eng, tuple):
            results.append(Result(case, eng[0], "skipped", note=eng[1]))
            continue
        progress(f"checking {eng.name}")
        res = Result(case, eng.name, "ok", note=eng.note, checked_steps=check_steps,
                     is_peer=eng.is_peer)
        results.append(res)
        try:
            t0 = time.perf_counter()
            out = eng.output(check_steps)
            per_step = (time.perf_counter() - t0) / check_steps
            passed, res.max_error, res.tolerance, why = check_output(out, expected, k)
            if not passed:
                res.status, res.note = "FAILED", _join(res.note, why)
                continue
            call, steps = eng.prepare(per_step)
        except Exception as exc:  # an engine's own failure is a result, not a crash
            res.status = "error"
            res.note = _join(res.note, f"{type(exc).__name__}: {_one_line(exc)}")
            continue
        res.timed_steps = steps
        if steps != case.seq:
            res.note = _join(res.note, f"timed on {steps} of {case.seq} steps, scaled")
        timers.append(_Timer(res, call, case.seq / steps))

    # Warm up, and size the samples from that call (pessimistic if the first call
    # pays for paging weights in: samples then come out a little short, no harm).
    for tm in timers:
        progress(f"warming up {tm.result.engine}")
        try:
            _plan(tm, time_calls(tm.call, 1), policy, tm.result.engine == "reference")
        except Exception as exc:
            tm.result.status = "error"
            tm.result.note = _join(tm.result.note, f"{type(exc).__name__}: {_one_line(exc)}")
    timers = [tm for tm in timers if tm.result.status == "ok"]

    r = 0
    while True:
        live = [tm for tm in timers if tm.wants_more()]
        if not live:
            break
        shift = r % len(live)
        for tm in live[shift:] + live[:shift]:
            progress(f"timing {tm.result.engine}")
            switching = case.threads > 1 and len(live) > 1
            if switching:
                settle(policy.switch_gap, policy.settle_max)  # let the last pool stop spinning
            t0 = time.perf_counter()
            if tm.warm_each and len(live) > 1:
                tm.call()
                while switching and time.perf_counter() - t0 < policy.switch_warm:
                    tm.call()  # idle threads come back slow for a while (Policy)
            per_call = time_calls(tm.call, tm.inner)
            tm.result.samples.append(per_call * tm.scale)
            tm.result.calls_per_sample = max(tm.result.calls_per_sample, tm.inner)
            tm.spent += time.perf_counter() - t0
            # Calls may slow down (other processes): keep samples near min_sample
            # long rather than letting inner × a slow call stretch the run.
            tm.inner = max(1, min(tm.inner, math.ceil(policy.min_sample / per_call)))
            tm.warm_each = tm.warm_each and tm.inner * per_call < 0.05
        r += 1
    return results


def round_steps(target: float, T: int) -> int:
    """The largest of T, 500, 200, 100, 50, 20, 10, 5, 2, 1 (those < T) that is
    <= target, so that shortened runs share a few step counts (and table notes)."""
    for n in [T] + [n for n in (500, 200, 100, 50, 20, 10, 5, 2, 1) if n < T]:
        if n <= target:
            return n
    return 1


def _join(a: str, b: str) -> str:
    return f"{a}; {b}" if a and b else (a or b)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] if text else type(exc).__name__


# --------------------------------------------------------------------------------------
# Derived figures
# --------------------------------------------------------------------------------------


def derive(results: list, gemm: dict, bandwidth: dict) -> None:
    """Fill in speed-ups, fractions of the GEMM peak and bandwidth bounds.

    Parameters
    ----------
    results : list of Result
        All results of the run; grouped by case here.
    gemm : dict
        threads -> gemm_peak() dict (GFLOP/s of NumPy matmul at that thread count).
    bandwidth : dict
        Case.bound_shape -> matvec_bandwidth() dict (one thread).

    Speed-up of fastrnn over a peer = peer median / fastrnn median, same case.
    Batch > 1 rows get GFLOP/s ÷ the GEMM peak at the same thread count; batch-1
    rows get bound = Case.step_bytes() (W_hh; streaming also W_ih) ÷ the one-thread
    matvec read rate of a Case.bound_shape matrix (µs per step) and time ÷ bound.
    """
    by_case = {}
    for r in results:
        by_case.setdefault(r.case, []).append(r)
    for case, rows in by_case.items():
        base = next((r for r in rows if r.engine == "fastrnn" and r.timed), None)
        bw = bandwidth.get(case.bound_shape)
        peak = gemm.get(case.threads)
        for r in rows:
            if not r.timed:
                continue
            if base is not None and r is not base and r.is_peer:
                r.speedup = r.median / base.median
            if case.batch > 1 and peak and peak.get("gflops"):
                r.peak_fraction = r.gflops / peak["gflops"]
            if case.batch == 1 and bw and r.is_peer:  # not "fastrnn (seq)": other bytes
                r.bound_us_per_step = case.step_bytes() / (bw["gbytes_per_s"] * 1e9) * 1e6
                r.time_over_bound = r.us_per_step / r.bound_us_per_step
