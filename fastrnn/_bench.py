"""``fastrnn bench``: time fastrnn against the NumPy reference, PyTorch and ONNX Runtime.

With no arguments it times the default matrix of SPEC §6 (LSTM and GRU, one layer,
float32, at 1 and 2 threads):

- batch-1 latency: T=100, B=1, I=H, H in 64, 128, 256, 512, 1024;
- batch-64 throughput: T=100, B=64, I=H, H in 128, 512;
- streaming: T=100 calls of one step, B=1, H in 128, 512 — fastrnn's
  ``layer.stream(1).step``, torch's nn.LSTMCell/GRUCell, ONNX Runtime on a T=1
  model, and fastrnn's whole-sequence call for reference.

Every engine's output is checked against the float64 NumPy reference first; the
engines that pass are then timed interleaved. The report (stdout) states the
machine, the measured GEMM peak and matrix-vector read rate, and per case and
engine the median time, its spread, µs per step, GFLOP/s, the bound it is near and
fastrnn's speed-up. Progress goes to stderr. The pieces live in ``_bench_core``
(cases, checking, timing), ``_bench_engines`` (the engines), ``_bench_machine``
(machine facts and yardsticks) and ``_bench_report`` (table, JSON, chart).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import fastrnn

from . import _bench_core as core
from . import _bench_engines as engines_mod
from . import _bench_machine as machine
from . import _bench_report as report

__all__ = ["add_parser", "main", "build_cases"]

DEFAULT = {
    "latency_hidden": (64, 128, 256, 512, 1024),
    "throughput_hidden": (128, 512),
    "throughput_batch": 64,
    "stream_hidden": (128, 512),
    "seq": 100,
    "threads": (1, 2),
    "cells": ("LSTM", "GRU"),
}
QUICK = dict(DEFAULT, latency_hidden=(64, 256), throughput_hidden=(128,), stream_hidden=(128,))

_EPILOG = """\
examples:
  fastrnn bench                         the default matrix (a few minutes)
  fastrnn bench --quick                 a small matrix in well under a minute
  fastrnn bench --cell gru --hidden 256 --batch 1 --threads 1
  fastrnn bench --kind stream --json results.json --plot results.png
"""


# --------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------


_C_INT = 2**31 - 1  # the engine counts sizes and threads in C ints


def _positive_ints(text: str) -> list:
    """``N`` or a comma list ``N,M``: integers in [1, 2**31 - 1]."""
    out = []
    for part in str(text).split(","):
        part = part.strip()
        try:
            n = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{part!r} is not an integer; give a whole number >= 1") from None
        if n < 1:
            raise argparse.ArgumentTypeError(f"{n} is not allowed; give a whole number >= 1")
        if n > _C_INT:
            raise argparse.ArgumentTypeError(f"{n} is more than the engine takes ({_C_INT})")
        out.append(n)
    return out


def _positive_int(text: str) -> int:
    values = _positive_ints(text)
    if len(values) != 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give one whole number >= 1")
    return values[0]


def _choices(allowed):
    def parse(text: str) -> list:
        out = []
        for part in str(text).split(","):
            name = part.strip().lower()
            if name not in allowed:
                raise argparse.ArgumentTypeError(
                    f"{part.strip()!r} is not one of {', '.join(allowed)}")
            out.append(name)
        return out
    return parse


def add_parser(subparsers):
    """Register the ``bench`` subcommand on ``subparsers`` (from ``fastrnn.cli``)."""
    p = subparsers.add_parser(
        "bench", help="time fastrnn against the NumPy reference, PyTorch and ONNX Runtime",
        description="Time fastrnn against the NumPy reference and, when installed, PyTorch "
                    "and ONNX Runtime, after checking every engine's output against the "
                    "float64 reference. Without arguments: the default matrix (LSTM and "
                    "GRU; batch-1 latency, batch-64 throughput, per-step streaming; 1 and "
                    "2 threads). The flags narrow it; list flags take N,M or repeat.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = p.add_argument
    add("--cell", action="extend", type=_choices(("lstm", "gru", "rnn")),
        metavar="lstm|gru|rnn", help="cell kinds (default lstm,gru)")
    add("--hidden", action="extend", type=_positive_ints, metavar="N",
        help="hidden sizes, for every kind of case")
    add("--input", type=_positive_int, metavar="N", help="input size (default: = hidden)")
    add("--batch", action="extend", type=_positive_ints, metavar="N",
        help="batch sizes (default: 1 for latency and streaming, 64 for throughput)")
    add("--seq", type=_positive_int, metavar="N", help="time steps T (default 100)")
    add("--layers", type=_positive_int, metavar="N", help="stacked layers (default 1)")
    add("--bidirectional", action="store_true",
        help="bidirectional layers (streaming cases are then left out)")
    add("--threads", action="extend", type=_positive_ints, metavar="N",
        help="thread counts (default 1,2)")
    add("--kind", action="extend", type=_choices(("seq", "stream", "generate")),
        metavar="seq|stream|generate",
        help="whole-sequence calls, per-step streaming, text generation with the bundled "
             "char-LM example (tokens/s against the same loop in torch); default all, "
             "but generation only while no flag describes the network (--cell, --hidden, "
             "--input, --batch, --seq, --layers, --bidirectional): its network is fixed")
    add("--engine", "--engines", dest="engines", action="extend",
        type=_choices(engines_mod.ENGINES), metavar="NAME",
        help=f"engines to run ({', '.join(engines_mod.ENGINES)}; default all; fastrnn is "
             "always run)")
    add("--quick", action="store_true",
        help="a much smaller matrix and shorter timing (CI, first look)")
    add("--repeats", type=_positive_int, metavar="N",
        help="samples per engine and case (default: as many as fit the time budget)")
    add("--seed", type=int, default=0, metavar="N", help="seed of weights and inputs")
    add("--json", metavar="PATH", help="write every result as JSON")
    add("--plot", metavar="PATH", help="write a PNG chart (needs matplotlib)")
    p.set_defaults(func=main)
    return p


# --------------------------------------------------------------------------------------
# The matrix
# --------------------------------------------------------------------------------------


def build_cases(args) -> tuple:
    """The cases the arguments ask for, in table order, and notes about what was left out.

    Returns
    -------
    (cases, notes) : (list of Case, list of str)
    """
    d = QUICK if args.quick else DEFAULT
    cells = [c.upper() for c in _unique(args.cell)] if args.cell else list(d["cells"])
    threads = _unique(args.threads) if args.threads else list(d["threads"])
    kinds = _unique(args.kind) if args.kind else ["seq", "stream"]
    kinds = [k for k in kinds if k != "generate"]  # run apart: see _run_generation
    T = args.seq or d["seq"]
    layers = args.layers or 1
    notes = []
    if args.bidirectional and "stream" in kinds:
        kinds.remove("stream")
        notes.append("streaming cases left out: a bidirectional layer cannot stream")

    def hiddens(default):
        return _unique(args.hidden) if args.hidden else list(default)

    shapes = []  # (kind, B, [H])
    if "seq" in kinds:
        if args.batch:
            for B in sorted(_unique(args.batch)):
                shapes.append(("seq", B, hiddens(
                    d["latency_hidden"] if B == 1 else d["throughput_hidden"])))
        else:
            shapes.append(("seq", 1, hiddens(d["latency_hidden"])))
            shapes.append(("seq", d["throughput_batch"], hiddens(d["throughput_hidden"])))
    if "stream" in kinds:
        for B in (sorted(_unique(args.batch)) if args.batch else [1]):
            shapes.append(("stream", B, hiddens(d["stream_hidden"])))

    cases = []
    for kind, B, Hs in shapes:
        for cell in cells:
            for H in Hs:
                for n in threads:
                    cases.append(core.Case(kind, cell, H, args.input or H, B, T, layers,
                                           bool(args.bidirectional), n))
    return cases, notes


# flags that describe the network of the cases; the generation section's is fixed
_NETWORK_FLAGS = ("cell", "hidden", "input", "batch", "seq", "layers", "bidirectional")


def _wants_generation(args) -> tuple:
    """Whether to run the generation section, and a note when it is left out.

    Asked for by ``--kind generate``; by default (no ``--kind``) run only while no flag
    narrows the network, as its char-LM is none of the networks such flags describe.
    """
    if args.kind:
        return "generate" in args.kind, None
    given = [f"--{f}" for f in _NETWORK_FLAGS if getattr(args, f)]
    if given:
        return False, (f"generation left out: its network is the bundled char-LM, which "
                       f"{', '.join(given)} do{'es' if len(given) == 1 else ''} not describe "
                       "(--kind generate runs it)")
    return True, None


def _run_generation(threads, quick, progress, time_torch=True) -> list:
    """Tokens/s of the bundled char-LM example (fastrnn/_bench_generate.py) at each
    thread count: fastrnn's C decoding loop against the same loop in torch (or, with
    ``time_torch`` False, torch only as the check's oracle)."""
    from . import _bench_generate

    rows = []
    before = fastrnn.get_num_threads()
    try:
        for n in threads:
            progress.stage(f"generation, {n} thread{'s' if n > 1 else ''}")
            _set_threads(n)
            rows += _bench_generate.run(quick, time_torch=time_torch)
    finally:
        fastrnn.set_num_threads(before)
    return rows


def _render_generation(rows) -> str:
    title = ("Generation: the char-LM example (Embedding 84x32, LSTM 256, Linear 256x84), "
             "prompt \"\\n\\n\"")
    lines = ["", title, "-" * len(title),
             f"{'case':<24} {'thr':>3}  {'engine':<8} {'tokens/s':>10}  {'speed-up':>8}  check"]
    for r in rows:
        speed = r.get("speedup")
        lines.append(f"{r['case']:<24} {r['threads']:>3}  {r['engine']:<8} "
                     f"{r['tokens_per_s']:>10,.0f}  "
                     f"{(f'{speed:.2f}x' if speed else '—'):>8}  {r.get('check', '')}")
    lines.append("  speed-up = torch time / fastrnn time for the same tokens; both check "
                 "log p per token against torch's teacher-forced log_softmax")
    return "\n".join(lines) + "\n"


def _unique(values) -> list:
    out = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


# --------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------


def _case_bytes(case) -> float:
    """About the memory a case takes: its weights and sequences in float32 for up to
    three engines and in float64 for the reference, and the reference's gates."""
    G = {"LSTM": 4, "GRU": 3, "RNN": 1}[case.cell]
    D = 2 if case.bidirectional else 1
    H, I, L, TB = case.hidden, case.input, case.layers, case.seq * case.batch  # noqa: E741
    weights = D * G * H * (I + H + (L - 1) * (D * H + H))
    return (weights + TB * (I + D * H)) * (3 * 4 + 8) + TB * G * H * 8


def _too_big(cases):
    """A message when a case would not fit in this machine's memory (before anything
    is built for it), else None."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not on this platform
        return None
    for case in cases:
        need = _case_bytes(case)
        if need > 0.8 * total:
            return (f"the case {case.label()} needs about {need / 2**30:.3g} GiB and this "
                    f"machine has {total / 2**30:.3g} GiB; give smaller --hidden, --input, "
                    "--batch, --seq or --layers")
    return None


def _usage_error(text: str) -> int:
    sys.stderr.write(f"fastrnn bench: error: {text}\n")
    return 2


def _check_output_path(flag: str, path: str):
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        return f"{flag} {path}: the directory {parent} does not exist"
    if os.path.isdir(path):
        return f"{flag} {path}: is a directory; give a file name"
    return None


def _check_plot_format(path: str):
    """None, or why matplotlib cannot write ``path`` (its suffix names the format; no
    suffix is PNG): checked before the run, not after it."""
    from matplotlib.backend_bases import FigureCanvasBase

    suffix = os.path.splitext(path)[1][1:].lower()
    formats = FigureCanvasBase.get_supported_filetypes()
    if suffix and suffix not in formats:
        return (f"--plot {path}: matplotlib cannot write '.{suffix}' files; give a name "
                f"ending in one of {', '.join('.' + f for f in sorted(formats))}")
    return None


def _set_threads(n: int) -> None:
    fastrnn.set_num_threads(n)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)


def _measure_references(cases, threads, quick, progress, refs=None) -> dict:
    """GEMM peak per thread count and matvec read rate per bound shape (one W_hh; a
    stream's weights all together: Case.bound_shape), and (with 2+
    threads) the round trip between two threads' cores.

    Called before and after the cases; with ``refs`` from the first call, the
    better figure of the two is kept (see ``_bench_machine``: yardsticks are bests),
    but both round trips are kept (they show whether the host moved the CPUs).
    """
    refs = refs or {"gemm_peak": {}, "matvec": {}, "matvec_fastrnn": {}, "roundtrip": []}
    if max(threads) > 1:
        progress.detail("round trip between two threads' cores")
        refs["roundtrip"].append(machine.core_roundtrip(quick=quick))
    for n in threads:
        progress.detail(f"NumPy GEMM peak at {n} thread{'s' if n > 1 else ''}")
        new = machine.gemm_peak(n, quick=quick)
        old = refs["gemm_peak"].get(n)
        if old is None or new["gflops"] > old["gflops"]:
            refs["gemm_peak"][n] = new
    for shape in sorted({c.bound_shape for c in cases if c.batch == 1}):
        progress.detail(f"NumPy matvec read rate {shape[0]}×{shape[1]}")
        new = machine.matvec_bandwidth(*shape, quick=quick)
        old = refs["matvec"].get(shape)
        if old is None or new["gbytes_per_s"] > old["gbytes_per_s"]:
            refs["matvec"][shape] = new
        progress.detail(f"fastrnn matvec read rate {shape[0]}×{shape[1]}")
        new = machine.fastrnn_matvec_bandwidth(*shape, quick=quick)
        old = refs["matvec_fastrnn"].get(shape)
        if old is None or new["gbytes_per_s"] > old["gbytes_per_s"]:
            refs["matvec_fastrnn"][shape] = new
    return refs


def main(args) -> int:
    """Run ``fastrnn bench`` with parsed ``args``; returns the exit status.

    0 when every engine that ran passed its check; 1 when one failed or raised;
    2 for unusable arguments.
    """
    for flag, path in (("--json", args.json), ("--plot", args.plot)):
        if path:
            problem = _check_output_path(flag, path)
            if problem:
                return _usage_error(problem)
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            sys.stderr.write("fastrnn bench: error: --plot needs matplotlib, which is not "
                             "installed (pip install matplotlib)\n")
            return 1
        problem = _check_plot_format(args.plot)
        if problem:
            return _usage_error(problem)
    cases, notes = build_cases(args)
    problem = _too_big(cases)
    if problem:
        return _usage_error(problem)
    generate, note = _wants_generation(args)
    if note:
        notes.append(note)
    if not cases and not generate:
        return _usage_error("these flags leave no case to run")
    selected = ["fastrnn"] + [e for e in engines_mod.ENGINES
                              if e != "fastrnn" and (not args.engines or e in args.engines)]
    policy = core.Policy.quick() if args.quick else core.Policy()
    if args.repeats:
        policy.repeats = args.repeats
    threads = _unique(c.threads for c in cases)

    progress = report.Progress(len(cases))
    started = time.perf_counter()
    progress.message(f"fastrnn bench: {len(cases)} cases × {len(selected)} engines "
                     f"({', '.join(selected)})")
    avail = engines_mod.availability(selected)
    info = machine.machine_info(avail)
    use_torch = bool(avail.get("torch", {}).get("available")
                     or avail.get("onnxruntime", {}).get("available"))
    threads_before = fastrnn.get_num_threads()
    results = []
    whole_run = machine.OtherLoad().start()
    try:
        progress.stage("machine references")
        refs = _measure_references(cases, threads, args.quick, progress)
        model = None
        for i, case in enumerate(cases, 1):
            progress.case(i, case.label(), time.perf_counter() - started)
            if model is None or model.case.model_key != case.model_key:
                progress.detail("building the model")
                model = None  # free the previous one first
                model = engines_mod.Model(case, args.seed, use_torch)
                check_steps = model.check_steps(policy.oracle_budget, policy.oracle_min_steps)
            _set_threads(case.threads)
            with machine.blas_threads(case.threads):
                engines = engines_mod.build_engines(case, model, avail, policy.ref_call)
                load = machine.OtherLoad().start()
                rows = core.run_case(case, engines, policy, model.oracle, check_steps,
                                     progress.detail)
                share = load.fraction()
                for r in rows:
                    r.others_load = share
                results += rows
        model = None
        progress.stage("machine references, again")
        _measure_references(cases, threads, args.quick, progress, refs)
    finally:
        fastrnn.set_num_threads(threads_before)
        progress.close()
    gen_rows = []
    if generate:
        gen_rows = _run_generation(threads or _unique(args.threads or [1, 2]), args.quick,
                                   progress, time_torch="torch" in selected)
    core.derive(results, refs["gemm_peak"], refs["matvec"])
    info["others_load"] = whole_run.fraction()
    info["seconds"] = round(time.perf_counter() - started, 1)
    if results:
        sys.stdout.write(report.render(info, refs, results, threads, notes))
    if gen_rows:
        sys.stdout.write(_render_generation(gen_rows))
    sys.stdout.flush()

    settings = {k: getattr(args, k) for k in ("cell", "hidden", "input", "batch", "seq",
                                              "layers", "bidirectional", "threads", "kind",
                                              "engines", "quick", "repeats", "seed")}
    settings["policy"] = vars(policy)
    if args.json:
        doc = json.loads(report.to_json(info, refs, settings, results))
        doc["generation"] = gen_rows
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1, allow_nan=False)
    if args.plot:
        report.plot(args.plot, results)
    bad = [r for r in results if r.status in ("FAILED", "error")]
    bad += [r for r in gen_rows if str(r.get("check", "")).startswith("FAILED")]
    if bad:
        sys.stderr.write(f"fastrnn bench: {len(bad)} engine run(s) failed; see the table\n")
        return 1
    return 0
