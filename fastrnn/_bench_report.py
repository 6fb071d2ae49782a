"""How ``fastrnn bench`` shows what it measured: progress, table, JSON, chart.

Nothing here measures; everything reads :class:`~fastrnn._bench_core.Result`
objects and the machine facts gathered by ``_bench_machine``.
"""

from __future__ import annotations

import json
import math
import sys
import textwrap
import time

__all__ = ["Progress", "render", "summary", "to_json", "plot"]

BUSY = 0.15  # other processes' CPU share above which a case is flagged as disturbed

SECTIONS = {
    "latency": "Batch-1 latency: one call on the whole sequence",
    "throughput": "Batch throughput: one call on the whole sequence",
    "stream": "Streaming: one call per time step, state carried between calls",
}


# --------------------------------------------------------------------------------------
# Progress on stderr
# --------------------------------------------------------------------------------------


class Progress:
    """A one-line counter on stderr: ``[12/48] LSTM H=512 B=1 threads=2: timing torch``.

    On a terminal the line is rewritten in place (``\\r``), at most every 0.1 s; on
    anything else (a CI log, a pipe) one plain line per case is written.
    """

    def __init__(self, total: int, stream=None, enabled: bool = True):
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self._index, self._label, self._width, self._last = 0, "", 0, 0.0

    def case(self, index: int, label: str, elapsed: float) -> None:
        """Start case ``index`` (1-based), ``elapsed`` seconds into the run."""
        self._index, self._label = index, label
        if not self.enabled:
            return
        if self.tty:
            self._draw(f"[{index}/{self.total}] {label}", force=True)
        else:
            self.stream.write(f"[{index}/{self.total}] {label} ({elapsed:.0f} s)\n")
            self.stream.flush()

    def stage(self, label: str) -> None:
        """A step outside the cases (e.g. measuring the machine), shown on a terminal."""
        self._index, self._label = 0, label
        if self.tty:
            self._draw(label + "...", force=True)

    def detail(self, text: str) -> None:
        """What the current case or stage is doing (shown on a terminal only)."""
        if self.tty:
            head = f"[{self._index}/{self.total}] {self._label}" if self._index else self._label
            self._draw(f"{head}: {text}...")

    def message(self, text: str) -> None:
        """A line of its own (a phase, a warning), wherever stderr goes."""
        if not self.enabled:
            return
        if self.tty:
            self._clear()
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Erase the counter line."""
        if self.tty:
            self._clear()

    def _draw(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        text = text[:119]
        self.stream.write("\r" + text.ljust(self._width))
        self._width = len(text)
        self.stream.flush()

    def _clear(self) -> None:
        if self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


# --------------------------------------------------------------------------------------
# Number formatting
# --------------------------------------------------------------------------------------


def _sig(v, digits: int = 3) -> str:
    """``v`` to about ``digits`` significant digits, without exponent for usual sizes."""
    if v is None or not math.isfinite(v):
        return "—"
    if v == 0:
        return "0"
    mag = math.floor(math.log10(abs(v)))
    decimals = max(0, digits - 1 - mag)
    return f"{v:.{decimals}f}"


def _duration(s) -> str:
    if s is None:
        return "—"
    if s >= 1:
        return f"{_sig(s)} s"
    if s >= 1e-3:
        return f"{_sig(s * 1e3)} ms"
    return f"{_sig(s * 1e6)} µs"


def _size(n: int) -> str:
    return f"{n / 2**20:.3g} MiB" if n >= 2**20 else f"{n / 2**10:.3g} KiB"


def _ratio(v) -> str:
    return "—" if v is None else f"{_sig(v)}×"


def _check(r) -> str:
    if r.status == "ok":
        return f"ok {r.max_error:.0e}"
    if r.status == "FAILED":
        err = "" if r.max_error is None or not math.isfinite(r.max_error) else f" {r.max_error:.0e}"
        return "FAILED" + err
    return r.status


# --------------------------------------------------------------------------------------
# The text report
# --------------------------------------------------------------------------------------


def _wrap(label: str, text: str) -> list:
    return textwrap.wrap(text, width=100, initial_indent=f"{label:<10}",
                         subsequent_indent=" " * 10, break_on_hyphens=False)


def _header(info: dict, refs: dict, threads: list) -> list:
    cfg = info["fastrnn"]
    eng = info["engines"]
    versions = [f"Python {info['python']}", f"NumPy {info['numpy']} ({info['blas']})"]
    for name in ("torch", "onnxruntime"):
        if name in eng:
            e = eng[name]
            versions.append(f"{name} {e['version']}" if e["available"]
                            else f"{name}: skipped, {e['reason']}")
    load = info.get("load_average")
    cores = f"{info['usable_cpus']} usable of {info['logical_cpus']} logical CPUs"
    lines = ["fastrnn bench"]
    lines += _wrap("fastrnn", f"{cfg['version']}, isa {cfg['isa']} (available: "
                   f"{', '.join(cfg['isa_available'])}), OpenMP {'on' if cfg['openmp'] else 'off'}"
                   f", built with {cfg['compiler']}"
                   + (f"; CPU-specific paths: {', '.join(cfg['cpu_paths'])}"
                      if cfg.get("cpu_paths") else ""))
    lines += _wrap("CPU", f"{info['cpu']}; {cores}"
                   + (f"; load average {' '.join(map(str, load))} at start" if load else ""))
    lines += _wrap("Versions", "; ".join(versions))
    lines += _wrap("Threads", f"{', '.join(map(str, threads))} — fastrnn.set_num_threads, "
                   "torch.set_num_threads, ORT intra_op_num_threads (inter_op 1), NumPy BLAS "
                   "via threadpoolctl")
    share = info.get("others_load")
    run = f"{info.get('seconds', 0):.0f} s"
    if share is not None:
        run += (f"; other processes kept {100 * share:.0f}% of the CPUs busy meanwhile "
                "(column 'others': during each case)")
        if share > BUSY:
            run += " — timings are disturbed, 2-thread rows most; rerun on a quiet machine"
    lines += _wrap("Run", run)
    if max(threads) > info["usable_cpus"]:
        lines += _wrap("", f"note: more threads than the {info['usable_cpus']} usable CPUs")
    peaks = refs.get("gemm_peak", {})
    if peaks:
        lines += _wrap("GEMM peak", "NumPy float32 matmul, best sample: " + ", ".join(
            f"{_sig(p['gflops'])} GFLOP/s at {t} thread{'s' if t > 1 else ''}"
            for t, p in sorted(peaks.items())))
    bws = refs.get("matvec", {})
    if bws:
        lines += _wrap("Matvec", "NumPy float32 W @ h read rate, 1 thread, best sample, W one "
                       "W_hh (streams: all the weights of a step as one matrix): "
                       + "; ".join(f"{r}×{c} ({_size(b['bytes'])}) {_sig(b['gbytes_per_s'])} GB/s"
                                   for (r, c), b in sorted(bws.items())))
    trips = [t["ns"] for t in refs.get("roundtrip", []) if t.get("ns") is not None]
    if trips:
        lines += _wrap("Cores", "a cache line between the CPUs of two fastrnn threads and "
                       "back, median: " + ", ".join(
                           f"{_sig(ns)} ns {when}"
                           for ns, when in zip(trips, ("before the cases", "after them")))
                       + " (every hand-over of a 2-thread call pays it; a VM host can move "
                       "the CPUs apart mid-run, which slows 2-thread rows)")
    own = refs.get("matvec_fastrnn", {})
    if own:
        lines += _wrap("Floor", "fastrnn's own micro-kernels on the same W @ h, 1 thread "
                       "(what reading those weights once a step costs at least): " + "; ".join(
                           f"{r}×{c} {_sig(b['gbytes_per_s'])} GB/s = "
                           f"{_sig(b['bytes'] / b['gbytes_per_s'] / 1e3)} µs"
                           for (r, c), b in sorted(own.items())))
    return lines


_METHOD = [
    "Method: engines checked first, then timed interleaved (one sample of each in turn; at",
    "  2+ threads each sample follows an idle wait for the previous engine's threads to rest",
    "  and 20 ms (--quick: 5) of untimed calls of its own engine: idle threads come back slow);",
    "  time = median per call, IQR = interquartile range in % of the median; µs/step = time ÷ T",
    "  (streaming: per step call); GFLOP/s counts 2·B·G·H·(I+H) flops per step and layer",
    "  (G = 4 LSTM, 3 GRU, 1 RNN; gate math not counted); speed-up = peer time ÷ fastrnn time",
    "  (> 1: fastrnn is faster); %peak = GFLOP/s ÷ NumPy GEMM peak at equal threads; bound =",
    "  bytes of the weights a step reads (W_hh; streaming: every layer's W_ih and W_hh) ÷",
    "  NumPy's 1-thread matvec read rate on a matrix of that size (Matvec), in µs/step;",
    "  ×bound = time ÷ bound (< 1: the weights are read faster than NumPy's matvec reads",
    "  them, e.g. from cache); check = max |out − ref| / max(1, |ref|) against the float64",
    "  NumPy reference, tolerance 32·eps·sqrt(k), k the widest dot product; an engine that",
    "  fails is not timed. others = share of the CPUs that other processes used while the",
    "  case ran (high values make timings, above all at 2 threads, unreliable).",
]


def _section_lines(name: str, rows: list) -> list:
    """One section's table: a title stating what all its cases share, a column for
    each field that varies, one row per case and engine, then the numbered notes."""
    cases = []
    for r in rows:
        if r.case not in cases:
            cases.append(r.case)
    fixed, vary = [], []
    for attr, short in (("input", "I"), ("batch", "B"), ("seq", "T"), ("layers", "layers"),
                        ("bidirectional", "bidir")):
        values = {getattr(c, attr) for c in cases}
        if attr == "input" and all(c.input == c.hidden for c in cases):
            fixed.append("I=H")
        elif len(values) == 1:
            v = values.pop()
            if attr == "bidirectional":
                fixed.append("bidirectional" if v else "unidirectional")
            else:
                fixed.append(f"{short}={v}")
        else:
            vary.append((attr, short))
    title = f"{SECTIONS[name]} ({', '.join(fixed)})"

    cols = [("cell", "<"), ("H", ">")] + [(s, ">") for _, s in vary] + [
        ("thr", ">"), ("others", ">"), ("engine", "<")]
    if name != "stream":
        cols.append(("time", ">"))
    cols += [("IQR", ">"), ("µs/step", ">"), ("GFLOP/s", ">")]
    if name == "throughput":
        cols.append(("%peak", ">"))
    else:
        cols += [("bound", ">"), ("×bound", ">")]
    cols += [("speed-up", ">"), ("check", "<"), ("", "<")]

    notes, table = [], []
    for case in cases:
        first = True
        for r in (r for r in rows if r.case == case):
            cells = {"engine": r.engine}
            if first:
                cells.update(cell=case.cell, H=str(case.hidden), thr=str(case.threads))
                cells.update({short: str(getattr(case, attr)) for attr, short in vary})
                cells["others"] = "—" if r.others_load is None else f"{100 * r.others_load:.0f}%"
                cells["bound"] = _sig(r.bound_us_per_step)
            cells["time"] = _duration(r.median)
            cells["IQR"] = "—" if r.iqr is None else f"{_sig(100 * r.iqr / r.median, 2)}%"
            cells["µs/step"] = _sig(r.us_per_step)
            cells["GFLOP/s"] = _sig(r.gflops)
            cells["%peak"] = "—" if r.peak_fraction is None else f"{100 * r.peak_fraction:.1f}%"
            cells["×bound"] = _ratio(r.time_over_bound)
            cells["speed-up"] = _ratio(r.speedup)
            cells["check"] = _check(r)
            marks = []
            texts = [r.note]
            if first and r.checked_steps is not None and r.checked_steps < case.seq:
                texts.insert(0, f"every engine of this case checked on the first "
                                f"{r.checked_steps} of {case.seq} steps (the float64 "
                                "reference is slow at this size)")
            for text in texts:
                if r.status == "skipped" and text.startswith("not installed"):
                    text = "not installed"
                if text:
                    if text not in notes:
                        notes.append(text)
                    marks.append(f"[{notes.index(text) + 1}]")
            cells[""] = " ".join(marks)
            table.append(cells)
            first = False
        table.append(None)  # a blank line between cases
    widths = {h: max([len(h)] + [len(row.get(h, "")) for row in table if row]) for h, _ in cols}
    fmt = [(h, a, widths[h]) for h, a in cols]

    def line(cells):
        return "  ".join(f"{cells.get(h, ''):{a}{w}}" for h, a, w in fmt).rstrip()

    out = [title, "-" * len(title), line({h: h for h, _ in cols})]
    out += [line(row) if row else "" for row in table[:-1]]
    out += [f"  [{i + 1}] {n}" for i, n in enumerate(notes)]
    return out


def summary(results: list) -> list:
    """fastrnn's speed-up per section, thread count and peer (geometric mean over the
    cases, with the range), how many cases were disturbed, and every failure."""
    peers = []
    for r in results:
        if r.is_peer and r.engine != "fastrnn" and r.engine not in peers:
            peers.append(r.engine)
    table = []
    for name in SECTIONS:
        for n in sorted({r.case.threads for r in results if r.case.section == name}):
            rows = [r for r in results if r.case.section == name and r.case.threads == n]
            cells = {"section": name, "threads": str(n)}
            for peer in peers:
                s = [r.speedup for r in rows if r.engine == peer and r.speedup]
                if len(s) == 1:
                    cells[peer] = f"{_sig(s[0])}×"
                elif s:
                    g = math.exp(sum(map(math.log, s)) / len(s))
                    cells[peer] = f"{_sig(g)}× [{_sig(min(s), 2)}–{_sig(max(s), 2)}]"
            if len(cells) > 2:
                table.append(cells)
    lines = []
    if table:
        heads = ["section", "threads"] + peers
        widths = {h: max(len(h), *(len(c.get(h, "—")) for c in table)) for h in heads}
        lines.append("Summary: fastrnn's speed-up, peer time ÷ fastrnn time (geometric mean over "
                     "the cases [range])")
        lines.append("  " + "  ".join(f"{h:<{widths[h]}}" for h in heads).rstrip())
        for c in table:
            lines.append("  " + "  ".join(f"{c.get(h, '—'):<{widths[h]}}" for h in heads).rstrip())
        cases = {r.case: r.others_load for r in results}
        busy = [c for c, v in cases.items() if v is not None and v > BUSY]
        if busy:
            lines += textwrap.wrap(
                f"{len(busy)} of {len(cases)} cases ran while other processes took more than "
                f"{100 * BUSY:.0f}% of the CPUs (column 'others'); their multi-thread figures "
                "are unreliable.", width=100, initial_indent="  ", subsequent_indent="  ")
    for r in results:
        if r.status in ("FAILED", "error"):
            lines.append(f"  {r.status}: {r.engine} on {r.case.label()}: {r.note}")
    return lines


def render(info: dict, refs: dict, results: list, threads: list, notes: list = ()) -> str:
    """The whole text report: header, method, one table per section, summary."""
    out = _header(info, refs, threads) + [""] + _METHOD
    for n in notes:
        out.append(f"Note: {n}")
    for name in SECTIONS:
        rows = [r for r in results if r.case.section == name]
        if rows:
            out += [""] + _section_lines(name, rows)
    s = summary(results)
    if s:
        out += [""] + s
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------
# JSON and chart
# --------------------------------------------------------------------------------------


def to_json(info: dict, refs: dict, settings: dict, results: list) -> str:
    """All results as JSON text (schema version 1)."""
    doc = {
        "schema": "fastrnn-bench/1",
        "machine": info,
        "settings": settings,
        "references": {
            "gemm_peak": {str(t): p for t, p in sorted(refs.get("gemm_peak", {}).items())},
            "matvec_bandwidth": [
                {"rows": r, "cols": c, **b} for (r, c), b in sorted(refs.get("matvec", {}).items())
            ],
            "fastrnn_matvec_bandwidth": [
                {"rows": r, "cols": c, **b}
                for (r, c), b in sorted(refs.get("matvec_fastrnn", {}).items())
            ],
            "core_roundtrip": list(refs.get("roundtrip", [])),
        },
        "units": {"median_s": "seconds per call (streaming: per pass of T step calls)",
                  "us_per_step": "microseconds", "gflops": "1e9 flop/s, 2*B*G*H*(I+H) per "
                  "step and layer", "speedup_of_fastrnn": "peer median / fastrnn median",
                  "tolerance": "32*eps32*sqrt(k); see f32_tolerance"},
        "results": [r.as_dict() for r in results],
        "summary": summary(results),
    }
    return json.dumps(doc, indent=1, allow_nan=False)


_COLORS = {"fastrnn": "tab:blue", "fastrnn (seq)": "lightsteelblue", "reference": "tab:gray",
           "torch": "tab:orange", "onnxruntime": "tab:green"}


def plot(path: str, results: list) -> None:
    """A PNG chart of µs per step (log scale): one panel per section and thread count,
    one group of bars per case, one bar per engine (same colour in every panel)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = [r for r in results if r.timed]
    names = [n for n in SECTIONS if any(r.case.section == n for r in timed)]
    threads = sorted({r.case.threads for r in timed})
    if not names:
        raise ValueError("nothing was timed, so there is nothing to plot")
    per_panel = max(len({r.case for r in timed if r.case.section == n and r.case.threads == t})
                    for n in names for t in threads)
    width_in = max(5.0, 0.75 * per_panel + 1.5)
    fig, axes = plt.subplots(len(names), len(threads), squeeze=False,
                             figsize=(width_in * len(threads), 3.4 * len(names)))
    for row, name in enumerate(names):
        for col, n in enumerate(threads):
            ax = axes[row, col]
            rows = [r for r in timed if r.case.section == name and r.case.threads == n]
            cases, engines = [], []
            for r in rows:
                if r.case not in cases:
                    cases.append(r.case)
                if r.engine not in engines:
                    engines.append(r.engine)
            ax.set_title(f"{SECTIONS[name].split(':')[0]}, {n} thread{'s' if n > 1 else ''}",
                         fontsize=10)
            if not rows:
                ax.set_axis_off()
                continue
            width = 0.8 / len(engines)
            for j, eng in enumerate(engines):
                xs, ys = [], []
                for i, c in enumerate(cases):
                    r = next((r for r in rows if r.case == c and r.engine == eng), None)
                    if r is not None:
                        xs.append(i + (j - (len(engines) - 1) / 2) * width)
                        ys.append(r.us_per_step)
                ax.bar(xs, ys, width, label=eng, color=_COLORS.get(eng))
            ax.set_xticks(range(len(cases)))
            ax.set_xticklabels([f"{c.cell}\nH={c.hidden}" + (f"\nB={c.batch}" if c.batch > 1
                                                              else "") for c in cases],
                               fontsize=7)
            ax.set_yscale("log")
            ax.set_ylabel("µs per step")
            ax.grid(axis="y", which="both", alpha=0.3)
            ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
