"""``fastrnn bench`` end to end: a small run in a subprocess, its JSON, and bad flags."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from _util import need

import fastrnn

ENGINES = {"fastrnn", "fastrnn (seq)", "reference", "torch", "onnxruntime"}


def bench(*args, cwd):
    """Run ``python -m fastrnn bench ARGS`` against the fastrnn this test imports."""
    home = os.path.dirname(os.path.dirname(os.path.abspath(fastrnn.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (home, env.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "fastrnn", "bench", *map(str, args)],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=240,
    )


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """One quick run: GRU, H=64, one thread — a batch-1, a batch-64 and a stream case."""
    d = tmp_path_factory.mktemp("bench")
    args = ["--quick", "--cell", "gru", "--hidden", "64", "--threads", "1",
            "--json", d / "out.json"]
    has_mpl = importlib.util.find_spec("matplotlib") is not None
    if has_mpl:
        args += ["--plot", d / "out.png"]
    proc = bench(*args, cwd=d)
    return proc, d, has_mpl


def test_small_run_succeeds(small_run):
    proc, d, has_mpl = small_run
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    out = proc.stdout
    for text in ("Batch-1 latency", "Batch throughput", "Streaming", "GEMM peak", "Matvec",
                 "speed-up", "Summary"):
        assert text in out, text
    if has_mpl:
        assert (d / "out.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the generation section's network is fixed: flags that narrow the network leave it out
    assert "Generation:" not in out
    assert "generation left out" in out and "--cell, --hidden do not describe" in out


def test_json_structure(small_run):
    proc, d, _ = small_run
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((d / "out.json").read_text())
    assert doc["schema"] == "fastrnn-bench/1"
    assert doc["machine"]["fastrnn"]["isa"] in ("generic", "avx2", "avx512")
    assert doc["references"]["gemm_peak"]["1"]["gflops"] > 0
    assert doc["references"]["matvec_bandwidth"][0]["gbytes_per_s"] > 0
    assert doc["references"]["core_roundtrip"] == []  # measured for 2+ threads only
    results = doc["results"]
    sections = {r["case"]["section"] for r in results}
    assert sections == {"latency", "throughput", "stream"}
    for r in results:
        assert r["engine"] in ENGINES
        case = r["case"]
        assert case["cell"] == "GRU" and case["hidden"] == 64 and case["threads"] == 1
        assert r["status"] in ("ok", "skipped"), r  # every engine present passed its check
        if r["status"] == "skipped":
            assert doc["machine"]["engines"][r["engine"]]["available"] is False
            continue
        assert r["check"]["passed"] is True
        assert r["check"]["max_error"] <= r["check"]["tolerance"]
        assert r["repeats"] >= 2 and len(r["samples_s"]) == r["repeats"]
        assert r["median_s"] > 0 and r["iqr_s"] >= 0
        assert r["us_per_step"] == pytest.approx(r["median_s"] / case["seq"] * 1e6)
        assert r["gflops"] > 0
        if r["engine"] not in ("fastrnn", "fastrnn (seq)"):
            assert r["speedup_of_fastrnn"] > 0
        if case["batch"] > 1:
            assert 0 < r["fraction_of_gemm_peak"]
        elif r["is_peer"]:  # fastrnn and its peers; not "fastrnn (seq)" in a stream case
            assert r["bandwidth_bound_us_per_step"] > 0 and r["time_over_bound"] > 0
    fast = [r for r in results if r["engine"] == "fastrnn"]
    assert len(fast) == 3 and all(r["status"] == "ok" for r in fast)
    assert doc["generation"] == []


@pytest.mark.parametrize("argv, runs", [
    ([], True),
    (["--threads", "1", "--quick", "--engine", "fastrnn"], True),  # not about the network
    (["--cell", "gru"], False),
    (["--hidden", "64"], False),
    (["--batch", "8"], False),
    (["--seq", "10"], False),
    (["--layers", "2"], False),
    (["--input", "3"], False),
    (["--bidirectional"], False),
    (["--kind", "seq"], False),
    (["--kind", "generate", "--cell", "gru"], True),  # asked for by name
])
def test_generation_runs_only_for_its_own_network(argv, runs):
    from fastrnn import _bench
    from fastrnn.cli import build_parser

    args = build_parser().parse_args(["bench", *argv])
    wanted, note = _bench._wants_generation(args)
    assert wanted is runs
    assert (note is not None) == (not runs and not args.kind)


def test_generation_without_torch_timed():
    """--engine without torch: torch (when installed) only checks the log p."""
    from fastrnn import _bench_generate

    rows = _bench_generate.run(quick=True, time_torch=False)
    assert [r["engine"] for r in rows] == ["fastrnn"] * 4
    for r in rows:
        assert "speedup" not in r and r["tokens_per_s"] > 0
        assert r["check"] == ("ok" if importlib.util.find_spec("torch") else
                              "unchecked (torch not installed)")


def test_plot_format_refused_before_the_run(tmp_path):
    pytest.importorskip("matplotlib")
    proc = bench("--quick", "--kind", "seq", "--plot", tmp_path / "chart.txt", cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--plot" in lines[0] and ".png" in lines[0], proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("args, word", [
    (["--hidden", "0"], "--hidden"),
    (["--hidden", "abc"], "--hidden"),
    (["--cell", "transformer"], "--cell"),
    (["--threads", "-2"], "--threads"),
    (["--engine", "tensorflow"], "--engine"),
    (["--no-such-flag"], "no-such-flag"),
    (["--json", "/nonexistent-dir-for-fastrnn/out.json"], "--json"),
    # past the engine's C ints: refused by the parser, naming the flag
    (["--batch", "99999999999999999999"], "--batch"),
    (["--hidden", "3000000000"], "--hidden"),
    (["--threads", "3000000000"], "--threads"),
    # fits a C int but not in memory: refused before anything is built
    (["--hidden", "2000000000", "--batch", "1"], "--hidden"),
    (["--hidden", "64", "--batch", "100000000", "--seq", "100000"], "--batch"),
])
def test_bad_flags_give_one_line(tmp_path, args, word):
    proc = bench(*args, cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert word in lines[0]
    assert proc.stdout == ""


def test_settle_waits_for_spinning_threads_and_returns_when_idle():
    """Between engines, the bench waits until no thread of the process spins -- within limits."""
    import threading
    import time

    from fastrnn import _bench_core

    if _bench_core.resource is None:
        pytest.skip("no getrusage on this platform: settle() only sleeps its gap")
    # nothing spins: returns before giving up. In a fresh process: threads an earlier
    # test left busy in this one (a pool still spinning) once made it wait it out.
    from _io_helpers import run_python

    proc = run_python("import time\nfrom fastrnn import _bench_core\n"
                      "t0 = time.perf_counter()\n_bench_core.settle(0.0, max_wait=5.0)\n"
                      "print(time.perf_counter() - t0)")
    assert proc.returncode == 0, proc.stderr
    assert float(proc.stdout) < 5.0

    stop = threading.Event()

    def spin():
        while not stop.is_set():  # a busy thread pool's worker
            pass

    worker = threading.Thread(target=spin, daemon=True)
    worker.start()
    try:
        t0 = time.perf_counter()
        # windows of 50 ms: on a loaded machine the spinning thread may get no CPU
        # for one of 5 ms, which looks idle
        _bench_core.settle(0.0, max_wait=0.3, window=0.05)
        assert time.perf_counter() - t0 >= 0.3  # kept waiting, then gave up
    finally:
        stop.set()
        worker.join()


def test_core_roundtrip_between_two_threads():
    """The bench's hand-over yardstick: two OpenMP threads pass a cache line back and
    forth; a positive time in ns (or -1 in a build without OpenMP)."""
    from fastrnn import _bench_machine, _kernels

    ns = _kernels.core_roundtrip_ns(500)
    if not fastrnn.config()["openmp"]:
        assert ns == -1.0
        return
    assert 0 < ns < 1e7
    with pytest.raises(ValueError, match="iters"):
        _kernels.core_roundtrip_ns(0)
    r = _bench_machine.core_roundtrip(quick=True)
    assert len(r["samples"]) == 3 and r["ns"] == sorted(r["samples"])[1]


def test_check_output_refuses_wrong_outputs():
    """The check every engine passes before it is timed: off by 1e-2 (a wrong gate
    or index), 1e-4, NaN, Inf or of another shape fails; float32 rounding passes."""
    from fastrnn import _bench_core as core

    expected = np.random.default_rng(0).standard_normal((6, 2, 16))
    ok, err, tol, _ = core.check_output(expected.astype(np.float32), expected, 64)
    assert ok and err <= tol
    for bad in (expected + 1e-2, expected + 1e-4, np.where(expected > 1, np.nan, expected),
                np.where(expected > 1, np.inf, expected), expected[:, :1]):
        ok, err, tol, why = core.check_output(bad.astype(np.float32), expected, 64)
        assert not ok and err > tol and why


def test_an_engine_that_fails_its_check_is_not_timed():
    from fastrnn import _bench_core as core

    expected = np.random.default_rng(0).standard_normal((6, 2, 16))

    class Broken:  # an engine whose output is off by 1e-2
        name, note, is_peer = "broken", "", True

        def output(self, steps):
            return expected[:steps] + 1e-2

        def prepare(self, per_step):
            raise AssertionError("a failed engine must not be prepared for timing")

    case = core.Case("seq", "GRU", 16, 8, 2, 6)
    res = core.run_case(case, [Broken()], core.Policy.quick(), lambda steps: expected[:steps], 6)
    assert res[0].status == "FAILED" and not res[0].samples and "max error" in res[0].note


def test_a_stream_bound_reads_all_its_weights_at_the_rate_of_their_size():
    """A stream step's bound uses NumPy's read rate on one matrix as large as every
    weight the step reads (all layers' W_ih and W_hh), a whole-sequence call's the
    rate on one W_hh: a 2-layer stream of 3.2 MB is not read at the rate of its 1 MB
    W_hh, which an L2 holds."""
    from fastrnn import _bench_core as core

    stream = core.Case("stream", "LSTM", 256, 40, 1, 100, layers=2)
    rows, cols = stream.bound_shape
    assert (rows, cols) == (4 * (40 + 256) + 4 * (256 + 256), 256)
    assert rows * cols * 4 == stream.step_bytes()
    bi = core.Case("stream", "GRU", 32, 8, 1, 10, layers=2, bidirectional=True)
    assert bi.bound_shape[0] * bi.bound_shape[1] * 4 == bi.step_bytes()
    seq = core.Case("seq", "LSTM", 256, 40, 1, 100, layers=2)
    assert seq.bound_shape == (1024, 256)

    def timed(case, engine, seconds, peer=True):
        return core.Result(case, engine, "ok", samples=[seconds], is_peer=peer)

    rates = {stream.bound_shape: {"gbytes_per_s": 25.0}, seq.bound_shape: {"gbytes_per_s": 80.0}}
    results = [timed(stream, "fastrnn", 130e-4), timed(stream, "fastrnn (seq)", 25e-4, False),
               timed(seq, "fastrnn", 25e-4)]
    core.derive(results, {}, rates)
    fast, own_seq, whole = results
    assert fast.bound_us_per_step == pytest.approx(stream.step_bytes() / 25e3)
    assert fast.time_over_bound == pytest.approx(130 / fast.bound_us_per_step)
    assert own_seq.bound_us_per_step is None  # other bytes: no bound of its own
    assert whole.bound_us_per_step == pytest.approx(seq.whh_bytes() / 80e3)


def test_the_command_fails_when_fastrnn_fails_its_check(tmp_path):
    """fastrnn's own output off by 1e-3: the table says FAILED and the command exits
    with status 1."""
    code = """
import sys, fastrnn
from fastrnn import cli
right = fastrnn.GRU.__call__
def wrong(self, *args, **kwargs):
    out, h = right(self, *args, **kwargs)
    return out + 1e-3, h
fastrnn.GRU.__call__ = wrong
sys.exit(cli.main(["bench", "--quick", "--cell", "gru", "--hidden", "32", "--threads", "1",
                   "--kind", "seq", "--engine", "fastrnn"]))
"""
    from _io_helpers import run_python

    proc = run_python(code)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAILED" in proc.stdout and "engine run(s) failed" in proc.stderr


def test_generation_check_refuses_a_wrong_log_p(monkeypatch):
    """The generation section checks fastrnn's log p against torch's teacher-forced
    log_softmax: off by 0.1, every row fails."""
    need("torch")
    from fastrnn import _bench_generate
    from fastrnn.models import LanguageModel

    right = LanguageModel.generate

    def wrong(self, *args, **kwargs):
        tokens, logp = right(self, *args, **kwargs)
        return tokens, logp + 0.1

    monkeypatch.setattr(LanguageModel, "generate", wrong)
    checks = [r["check"] for r in _bench_generate.run(quick=True, time_torch=False)
              if r["engine"] == "fastrnn"]
    assert checks and all(c.startswith("FAILED: log p off by 0.1") for c in checks), checks
