"""Runtime (SPEC §5): threads, the GIL, thread-count invariance, configuration and
instruction-set dispatch (STYLE "Threads and the GIL", "Runtime dispatch")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import fastrnn
from _util import assert_close, need
from fastrnn import _kernels, reference

ISA_NAMES = ("generic", "avx2", "avx512")


# -- helpers -------------------------------------------------------------------------


def run_python(args, env=None, unset=()):
    """Run ``python *args`` importing the same fastrnn as this process (installed or
    built in place), from a neutral directory, with env changes applied."""
    home = os.path.dirname(os.path.dirname(os.path.abspath(fastrnn.__file__)))
    full = dict(os.environ)
    for name in ("FASTRNN_ISA", "OMP_NUM_THREADS", *unset):
        full.pop(name, None)
    full["PYTHONPATH"] = os.pathsep.join(p for p in (home, os.environ.get("PYTHONPATH")) if p)
    full.update(env or {})
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=full,
                          cwd=home, timeout=300)


def run_code(code, env=None):
    return run_python(["-c", code], env=env)


def last_json(proc):
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _set_isa(name):
    _kernels._set_isa(ISA_NAMES.index(name))


def _layers_for_invariance():
    """Work well above the engine's one-thread cut-offs (16k multiply-adds a step, 64k
    a call)."""
    return [
        fastrnn.LSTM(40, 150, 2, proj_size=70, bidirectional=True, seed=1),
        fastrnn.GRU(40, 150, 2, seed=2),
        fastrnn.GRU(40, 150, linear_before_reset=False, dtype="float64", seed=3),
        fastrnn.RNN(40, 257, 2, nonlinearity="relu", seed=4),
        fastrnn.LSTM(40, 130, peephole=True, seed=5),
    ]


def _run_layer(layer, x, **kw):
    out, state = layer(x, **kw)
    return (out, *state) if isinstance(state, tuple) else (out, state)


def _run_stream(layer, x):
    stream = layer.stream(x.shape[1])
    ys = np.stack([stream.step(x[t]) for t in range(x.shape[0])])
    st = stream.state
    return (ys, *st) if isinstance(st, tuple) else (ys, st)


@pytest.fixture
def restore_threads():
    before = fastrnn.get_num_threads()
    yield before
    fastrnn.set_num_threads(before)


# -- set_num_threads / get_num_threads --------------------------------------------------


def test_set_and_get_num_threads(restore_threads):
    for n in (1, 2, 3, np.int64(2), np.uint8(1)):
        fastrnn.set_num_threads(n)
        assert fastrnn.get_num_threads() == int(n)
        assert type(fastrnn.get_num_threads()) is int
        assert fastrnn.config()["num_threads"] == int(n)


@pytest.mark.parametrize("bad, exc, match", [
    (0, ValueError, "n is 0; the number of threads must be >= 1"),
    (-3, ValueError, "n is -3"),
    (True, TypeError, "n must be an integer"),
    (False, TypeError, "n must be an integer"),
    (1.0, TypeError, "n must be an integer.*float"),
    (2.5, TypeError, "n must be an integer"),
    ("2", TypeError, "n must be an integer"),
    (None, TypeError, "n must be an integer"),
    (np.array([2]), TypeError, "n must be an integer"),
])
def test_set_num_threads_refuses(bad, exc, match, restore_threads):
    fastrnn.set_num_threads(2)
    with pytest.raises(exc, match=match):
        fastrnn.set_num_threads(bad)
    assert fastrnn.get_num_threads() == 2, "a refused call changed the setting"


def test_set_num_threads_too_large_is_a_value_error(restore_threads):
    with pytest.raises(ValueError, match="n is 2147483648"):
        fastrnn.set_num_threads(2**31)


# The engine bounds a call's team by the processors OpenMP can use
# (csrc/dispatch.c, frn_threads): an absurd request must neither crash nor fail.
def test_huge_thread_count_does_not_crash():
    proc = run_code(
        "import numpy as np, fastrnn\n"
        "fastrnn.set_num_threads(100000)\n"
        "layer = fastrnn.GRU(4, 300, seed=0)\n"
        "out, h = layer(np.ones((2, 1, 4)))\n"
        "print('ok', bool(np.isfinite(out).all()))\n"
    )
    assert proc.returncode == 0 and "ok True" in proc.stdout, (proc.returncode, proc.stderr[-300:])


def test_both_directions_run_when_openmp_gives_fewer_threads():
    """The two directions of a bidirectional layer run side by side on 2 threads or
    more. When OpenMP gives the call fewer threads than it asks for (here
    OMP_THREAD_LIMIT=1 under set_num_threads(2)), the one thread it gets runs both:
    the same bits as a 1-thread call, every direction's outputs written."""
    code = (
        "import json, numpy as np, fastrnn\n"
        "rng = np.random.default_rng(0)\n"
        "same = []\n"
        "for layer, B in ((fastrnn.LSTM(24, 96, 2, bidirectional=True, seed=1), 3),\n"
        "                 (fastrnn.GRU(24, 200, bidirectional=True, seed=2), 1)):\n"
        "    x = rng.standard_normal((30, B, 24)).astype(np.float32)\n"
        "    fastrnn.set_num_threads(2)\n"
        "    two = layer(x)\n"
        "    fastrnn.set_num_threads(1)\n"
        "    one = layer(x)\n"
        "    flat = lambda r: [r[0]] + (list(r[1]) if isinstance(r[1], tuple) else [r[1]])\n"
        "    same.append(all(np.array_equal(a, b) for a, b in zip(flat(two), flat(one))))\n"
        "    same.append(bool(np.abs(two[0][:, :, -1]).max() > 0))  # direction 1 wrote\n"
        "print(json.dumps(same))\n"
    )
    assert last_json(run_code(code, env={"OMP_THREAD_LIMIT": "1"})) == [True] * 4


def assert_same_bits_apart_and_close(layer, x):
    """layer(x) on 2 threads with the cores placed as set now, then as close, then
    on 1 thread: the same bits (the thread count the rules pick never shows)."""
    fastrnn.set_num_threads(2)
    apart = layer(x)[0]
    _kernels._set_far(0)
    close = layer(x)[0]
    fastrnn.set_num_threads(1)
    assert np.array_equal(apart, close) and np.array_equal(layer(x)[0], close)


def test_small_steps_keep_one_thread_while_the_cores_are_far_apart():
    """Steps under 16k multiply-adds keep one thread; while the cores are far apart
    (a VM's host put them on different core complexes), steps under 128k too, and
    stream steps on helper threads under 64k; between close and far, steps under 32k
    and stream steps under 64k; a call under 64k opens no OpenMP region for threads
    either way."""
    try:
        _kernels._set_far(0)
        assert _kernels._useful_threads(16384, 0, 2) == 2
        assert _kernels._useful_threads(16383, 0, 2) == 1
        assert _kernels._useful_threads(131071, 0, 2) == 2
        assert _kernels._useful_threads(16384, 65535, 2) == 1  # region too small
        assert _kernels._useful_threads(1 << 20, 0, 1) == 1
        _kernels._set_far(1)
        assert _kernels._useful_threads(131071, 131071, 2) == 1
        assert _kernels._useful_threads(131072, 1 << 24, 2) == 2
        assert _kernels._useful_threads(131072, 1 << 24, 4) == 4
        # a stream's step on its helpers (no region of its own) from 64k
        assert _kernels._useful_threads(65535, 0, 2) == 1
        assert _kernels._useful_threads(65536, 0, 2) == 2
        # between close and far (dispatch.h, FRN_MID_NS): steps from 32k, streams'
        # helpers as when far apart
        _kernels._set_far(2)
        assert _kernels._useful_threads(32767, 1 << 24, 2) == 1
        assert _kernels._useful_threads(32768, 1 << 24, 2) == 2
        assert _kernels._useful_threads(16384, 0, 2) == 1
        assert _kernels._useful_threads(65535, 0, 2) == 1
        assert _kernels._useful_threads(65536, 0, 2) == 2
        # the same bits whichever count the rule picks
        _kernels._set_far(1)
        layer = fastrnn.LSTM(64, 64, seed=3)
        assert_same_bits_apart_and_close(layer, np.random.default_rng(0).standard_normal(
            (20, 1, 64)).astype(np.float32))
    finally:
        _kernels._set_far(0)
        fastrnn.set_num_threads(1)


def test_a_projection_spreads_over_threads_from_1m_fma_or_4m_apart():
    """A batch-1 layer that steps on one thread projects its input on more from 1M
    multiply-adds while the cores are close, from 4M while they are further apart
    (between or far: the rows of XP the other core writes cross back); the same bits
    either way."""
    try:
        _kernels._set_far(0)
        assert not _kernels._spread_pays((1 << 20) - 1) and _kernels._spread_pays(1 << 20)
        for far in (1, 2):
            _kernels._set_far(far)
            assert not _kernels._spread_pays((4 << 20) - 1) and _kernels._spread_pays(4 << 20)
        layer = fastrnn.GRU(128, 32, seed=2)  # 1.2M multiply-adds of projection
        assert_same_bits_apart_and_close(layer, np.random.default_rng(2).standard_normal(
            (100, 1, 128)).astype(np.float32))
    finally:
        _kernels._set_far(0)
        fastrnn.set_num_threads(1)


def test_probe_of_where_the_cores_are():
    """The probe times a line's round trip between two OpenMP threads: positive and
    under a millisecond (it gives up on a descheduled thread), and its verdict is
    what the far rule then applies, decided without probing again."""
    try:
        _kernels._set_far(-1)
        ns = _kernels._probe_cores()
        if not _kernels.openmp_enabled():
            assert ns == -1.0
            return
        assert ns == -1.0 or 0 < ns < 1e6
        if ns > 0:
            far, between = ns > 220, 115 < ns <= 220
            assert _kernels._useful_threads(65536, 1 << 24, 2, False) == (1 if far else 2)
            assert _kernels._useful_threads(20000, 1 << 24, 2, False) == (
                1 if far or between else 2)
    finally:
        _kernels._set_far(0)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_calls_in_a_forked_child_run_on_one_thread():
    """OpenMP's threads and a stream's helpers do not survive fork(): a child whose
    parent had run 2-thread calls hung in its first parallel region. In a child every
    call runs on one thread: a layer, a new stream, the parent's stream (its helpers
    gone) and a Linear give the parent's bits, and both streams are freed there;
    get_num_threads() says 1 there (it said the parent's 2). The child kills itself
    if it hangs."""
    code = (
        "import json, os, signal, numpy as np, fastrnn\n"
        "fastrnn.set_num_threads(2)\n"
        "layer = fastrnn.LSTM(64, 96, seed=0)\n"
        "lin = fastrnn.Linear(256, 512, seed=1)\n"
        "x = np.random.default_rng(0).standard_normal((30, 2, 64)).astype(np.float32)\n"
        "a = np.ones((64, 256), np.float32)\n"
        "st = layer.stream(2)\n"
        "ys = [st.step(x[t]) for t in range(15)]\n"
        "y, yl = layer(x)[0], lin(a)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    signal.alarm(60)\n"
        "    ok = fastrnn.get_num_threads() == 1 and fastrnn.config()['num_threads'] == 1\n"
        "    ok = ok and np.array_equal(layer(x)[0], y) and np.array_equal(lin(a), yl)\n"
        "    new = layer.stream(2)\n"
        "    ok = ok and np.array_equal(np.stack([new.step(x[t]) for t in range(30)]), y)\n"
        "    ok = ok and np.array_equal(np.stack([st.step(x[t]) for t in range(15, 30)]), y[15:])\n"
        "    del st, new  # freed in the child: its helpers are not there to join\n"
        "    os._exit(0 if ok else 3)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "print(json.dumps(os.waitstatus_to_exitcode(status)))\n"
    )
    assert last_json(run_code(code)) == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_stream_forked_mid_step_is_reset_in_the_child():
    """A thread of the parent in the middle of a step at fork() is not in the child:
    the stream's state may be half-written there, so stepping or reading it is a
    RuntimeError that says so (it said "another thread", which no longer exists),
    and reset() makes it usable again: its steps then equal a fresh stream's."""
    code = (
        "import json, os, signal, threading, numpy as np, fastrnn\n"
        "layer = fastrnn.LSTM(256, 256, num_layers=2, seed=0)\n"
        "x = np.ones(256, np.float32)\n"
        "want = layer.stream().step(x)\n"
        "s = layer.stream()\n"
        "stop = False\n"
        "def stepper():\n"
        "    while not stop:\n"
        "        s.step(x)\n"
        "th = threading.Thread(target=stepper)\n"
        "th.start()\n"
        "codes = []\n"
        "for _ in range(20):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        signal.alarm(60)\n"
        "        try:\n"
        "            s.step(x)\n"
        "            code = 1  # forked between two steps\n"
        "        except RuntimeError as e:\n"
        "            code = 3\n"
        "            if 'when the process forked' in str(e):\n"
        "                try:\n"
        "                    s.state\n"
        "                except RuntimeError:\n"
        "                    s.reset()\n"
        "                    code = 0 if np.array_equal(s.step(x), want) else 4\n"
        "        os._exit(code)\n"
        "    codes.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n"
        "    if 0 in codes:\n"
        "        break\n"
        "stop = True\n"
        "th.join()\n"
        "print(json.dumps(codes))\n"
    )
    codes = last_json(run_code(code))
    assert codes[-1] == 0 and set(codes) <= {0, 1}, codes


def test_omp_num_threads_respected():
    code = "import fastrnn, json; print(json.dumps([fastrnn.get_num_threads(), fastrnn.config()]))"
    n, cfg = last_json(run_code(code, env={"OMP_NUM_THREADS": "1"}))
    assert n == 1 and cfg["num_threads"] == 1
    n, _ = last_json(run_code(code, env={"OMP_NUM_THREADS": "3"}))
    assert n == 3


def test_setting_is_per_calling_thread(restore_threads):
    """As set_num_threads documents: the setting belongs to the calling thread."""
    assert "calling thread" in " ".join(fastrnn.set_num_threads.__doc__.split())
    fastrnn.set_num_threads(1)
    seen = {}
    layer = fastrnn.GRU(40, 150, seed=0)
    x = np.random.default_rng(0).standard_normal((5, 4, 40)).astype(np.float32)
    expected = layer(x)[0]

    def worker():
        fastrnn.set_num_threads(3)
        seen["worker"] = fastrnn.get_num_threads()
        seen["out"] = layer(x)[0]

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen["worker"] == 3
    assert fastrnn.get_num_threads() == 1, "setting it in a worker changed the main thread"
    assert np.array_equal(seen["out"], expected)


def test_new_threads_start_from_the_process_default():
    """A new thread sees OMP_NUM_THREADS (the process default), not what the thread
    that started it set; setting it there works there."""
    code = r"""
import json, threading, fastrnn, numpy as np
fastrnn.set_num_threads(1)
seen = {}
layer = fastrnn.LSTM(40, 150, seed=0)
x = np.ones((4, 3, 40), np.float32)
def worker(tag, n):
    seen[tag + "_new"] = fastrnn.get_num_threads()
    if n:
        fastrnn.set_num_threads(n)
    seen[tag + "_set"] = fastrnn.get_num_threads()
    seen[tag + "_ok"] = bool(np.array_equal(layer(x)[0], ref))
ref = layer(x)[0]
for tag, n in (("a", 2), ("b", 0)):
    t = threading.Thread(target=worker, args=(tag, n)); t.start(); t.join()
seen["main"] = fastrnn.get_num_threads()
print(json.dumps(seen))
"""
    seen = last_json(run_code(code, env={"OMP_NUM_THREADS": "3"}))
    assert seen == {"a_new": 3, "a_set": 2, "a_ok": True,
                    "b_new": 3, "b_set": 3, "b_ok": True, "main": 1}


# -- threadpoolctl --------------------------------------------------------------------------


def _openmp_entries(info):
    return [e for e in info if e["user_api"] == "openmp"]


def test_threadpoolctl_lists_fastrnns_openmp():
    threadpoolctl = need("threadpoolctl")
    if not fastrnn.config()["openmp"]:
        pytest.skip("this build has no OpenMP")
    entries = _openmp_entries(threadpoolctl.threadpool_info())
    assert any(e["prefix"] in ("libgomp", "libomp", "libiomp") for e in entries), entries
    # The entry is the library fastrnn's extension brings in: absent before importing
    # fastrnn (numpy and threadpoolctl loaded), present after.
    code = r"""
import json, numpy, threadpoolctl
before = {e["filepath"] for e in threadpoolctl.threadpool_info() if e["user_api"] == "openmp"}
import fastrnn
after = [e for e in threadpoolctl.threadpool_info() if e["user_api"] == "openmp"
         and e["filepath"] not in before]
print(json.dumps([[e["prefix"], e["num_threads"]] for e in after]))
"""
    new = last_json(run_code(code, env={"OMP_NUM_THREADS": "2"}))
    assert len(new) == 1, f"importing fastrnn added {new}"
    prefix, n = new[0]
    assert prefix in ("libgomp", "libomp", "libiomp") and n == 2


def test_threadpoolctl_sees_and_limits(restore_threads):
    threadpoolctl = need("threadpoolctl")
    if not fastrnn.config()["openmp"]:
        pytest.skip("this build has no OpenMP")
    fastrnn.set_num_threads(2)
    entries = _openmp_entries(threadpoolctl.threadpool_info())
    assert any(e["num_threads"] == 2 for e in entries), entries
    layer = fastrnn.LSTM(40, 150, seed=0)
    x = np.random.default_rng(0).standard_normal((5, 4, 40)).astype(np.float32)
    expected = layer(x)[0]
    with threadpoolctl.threadpool_limits(1):
        assert fastrnn.get_num_threads() == 1
        assert np.array_equal(layer(x)[0], expected)
    assert fastrnn.get_num_threads() == 2, "threadpool_limits did not restore the setting"
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert fastrnn.get_num_threads() == 1
    assert fastrnn.get_num_threads() == 2


# -- many Python threads, one layer ----------------------------------------------------------


def _in_threads(fn, n=4):
    """Run fn(i) in n threads released together by a barrier; re-raise any failure."""
    barrier = threading.Barrier(n)
    errors, results = [], [None] * n

    def worker(i):
        try:
            barrier.wait(timeout=60)
            results[i] = fn(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append((i, exc))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert not any(t.is_alive() for t in threads), "a worker thread hung"
    if errors:
        raise errors[0][1]
    return results


@pytest.mark.parametrize("omp_threads", [1, 2])
def test_one_layer_from_four_threads(omp_threads):
    """One layer (its plan built lazily, under the race) called from 4 Python threads
    at once, each with its own inputs: every result equals the single-threaded one."""
    rng = np.random.default_rng(0)
    layer = fastrnn.LSTM(16, 96, 2, proj_size=40, seed=7)
    twin = fastrnn.LSTM(16, 96, 2, proj_size=40, seed=7)  # same weights, no plan yet
    cases = []
    for i in range(4):
        x = rng.standard_normal((12, 3, 16)).astype(np.float32)
        h0 = rng.standard_normal((2, 3, 40)).astype(np.float32)
        c0 = rng.standard_normal((2, 3, 96)).astype(np.float32)
        lengths = [12, 5, 9] if i % 2 else None
        cases.append((x, (h0, c0), lengths))
    expected = [_run_layer(layer, x, hx=hc, lengths=ln) for x, hc, ln in cases]

    def work(i):
        fastrnn.set_num_threads(omp_threads)
        x, hc, ln = cases[i]
        bad = 0
        for _ in range(25):
            got = _run_layer(twin, x, hx=hc, lengths=ln)
            bad += not all(np.array_equal(g, e) for g, e in zip(got, expected[i]))
        return bad

    assert _in_threads(work) == [0, 0, 0, 0]


@pytest.mark.parametrize("omp_threads", [1, 2])
def test_a_stream_per_thread(omp_threads):
    """Four streams of one layer stepped from four Python threads at once."""
    rng = np.random.default_rng(1)
    layer = fastrnn.GRU(16, 120, 2, seed=8)
    xs = [rng.standard_normal((15, 2, 16)).astype(np.float32) for _ in range(4)]
    expected = [_run_layer(layer, x) for x in xs]

    def work(i):
        fastrnn.set_num_threads(omp_threads)
        stream = layer.stream(2)
        bad = 0
        for _ in range(8):
            stream.reset()
            ys = np.stack([stream.step(xs[i][t]) for t in range(15)])
            bad += not (np.array_equal(ys, expected[i][0])
                        and np.array_equal(stream.state, expected[i][1]))
        return bad

    assert _in_threads(work) == [0, 0, 0, 0]


# -- the GIL is released --------------------------------------------------------------------


def _progress_during(call):
    """How many time stamps a pure-Python counter thread records in the middle half
    of `call` (none if `call` holds the GIL throughout), and the call's duration."""
    stamps, stop = [], threading.Event()

    def counter():
        n = 0
        while not stop.is_set():
            n += 1
            if n % 64 == 0:
                stamps.append(time.perf_counter())

    th = threading.Thread(target=counter, daemon=True)
    th.start()
    while not stamps:
        time.sleep(0.001)
    t0 = time.perf_counter()
    call()
    t1 = time.perf_counter()
    stop.set()
    th.join()
    d = t1 - t0
    return sum(t0 + d / 4 < s < t1 - d / 4 for s in stamps), d


def _gil_enabled():
    return getattr(sys, "_is_gil_enabled", lambda: True)()


def _assert_releases_gil(make_call, what):
    if not _gil_enabled():
        pytest.skip("free-threaded Python: there is no GIL to release")
    # The probe itself: a long C call that holds the GIL shows no progress.
    held, d_held = _progress_during(lambda: sum(range(4_000_000)))
    assert held == 0, f"probe broken: {held} stamps during a GIL-holding call of {d_held:.3f}s"
    for scale in (1, 2, 4, 8):
        call = make_call(scale)
        call()  # warm up: plan and workspace
        progress, d = _progress_during(call)
        if d >= 0.04:
            break
    assert d >= 0.04, f"could not make {what} last 40 ms (took {d:.3f}s)"
    assert progress >= 3, (
        f"a Python thread made no progress during {d * 1000:.0f} ms of {what}: "
        "the GIL is not released"
    )


def test_gil_released_during_layer_call(restore_threads):
    fastrnn.set_num_threads(1)  # leave the other core to the counter thread

    def make(scale):
        layer = fastrnn.LSTM(64, 1024, seed=0)
        x = np.random.default_rng(0).standard_normal((200 * scale, 1, 64)).astype(np.float32)
        return lambda: layer(x)

    _assert_releases_gil(make, "an LSTM(H=1024, T=200) call")


def test_gil_released_during_stream_step(restore_threads):
    fastrnn.set_num_threads(1)

    def make(scale):
        layer = fastrnn.GRU(1024, 1024, seed=0)
        stream = layer.stream(256 * scale)
        x = np.ones((256 * scale, 1024), np.float32)
        return lambda: stream.step(x)

    _assert_releases_gil(make, "one stream step (GRU H=1024, B=256)")


# -- results do not depend on the thread count ---------------------------------------------


def test_bitwise_identical_for_any_thread_count(isa, restore_threads):
    rng = np.random.default_rng(3)
    for layer in _layers_for_invariance():
        x = rng.standard_normal((7, 5, 40)).astype(layer.dtype)
        lengths = [7, 3, 6, 1, 7]
        results = {}
        for n in (1, 2, 3):
            fastrnn.set_num_threads(n)
            results[n] = (_run_layer(layer, x), _run_layer(layer, x, lengths=lengths))
        for n in (2, 3):
            for a, b in zip(results[1], results[n]):
                for u, v in zip(a, b):
                    assert np.array_equal(u, v), f"{layer!r}: {n} threads differ from 1"


def test_stream_bitwise_identical_for_any_thread_count(isa, restore_threads):
    rng = np.random.default_rng(4)
    for layer in _layers_for_invariance():
        if layer.bidirectional:
            continue
        x = rng.standard_normal((6, 5, 40)).astype(layer.dtype)
        runs = {}
        for n in (1, 2, 3):
            fastrnn.set_num_threads(n)
            runs[n] = _run_stream(layer, x)
        for n in (2, 3):
            for u, v in zip(runs[1], runs[n]):
                assert np.array_equal(u, v), f"{layer!r} stream: {n} threads differ from 1"


# -- config ------------------------------------------------------------------------------------


def test_config_values():
    cfg = fastrnn.config()
    assert {"version", "compiler", "openmp", "isa", "isa_available"} <= set(cfg)
    assert cfg["version"] == fastrnn.__version__ and isinstance(cfg["version"], str)
    assert isinstance(cfg["compiler"], str) and cfg["compiler"].strip()
    assert isinstance(cfg["openmp"], bool)
    avail = cfg["isa_available"]
    assert isinstance(avail, list) and avail and set(avail) <= set(ISA_NAMES)
    assert avail == [n for n in ISA_NAMES if n in avail], "isa_available out of order"
    assert "generic" in avail
    assert cfg["isa"] in avail
    if not os.environ.get("FASTRNN_ISA"):
        assert cfg["isa"] == avail[-1], "by default the best ISA should be chosen"
    json.dumps(cfg)  # plain values


def test_config_follows_the_private_isa_switch(isa):
    assert fastrnn.config()["isa"] == isa


def test_config_names_the_cpu_specific_paths_taken():
    """config()["cpu_paths"]: the AVX-512 paths taken on some CPUs only, as set now
    (the suite forces both on; by default weaving on AMD, the prefetch on Intel), and
    none on the other ISAs; show_config() prints them."""
    before = _kernels.get_isa()
    try:
        for weave, prefetch in ((1, 1), (0, 1), (1, 0), (0, 0)):
            _kernels._set_weave(weave)
            _kernels._set_prefetch_next(prefetch)
            for name in fastrnn.config()["isa_available"]:
                _kernels._set_isa(ISA_NAMES.index(name))
                want = [p for p, on in (("woven projection", weave),
                                        ("next-panel prefetch", prefetch)) if on]
                assert fastrnn.config()["cpu_paths"] == (want if name == "avx512" else [])
        _kernels._set_weave(-1)
        _kernels._set_prefetch_next(-1)
        _kernels._set_isa(ISA_NAMES.index(fastrnn.config()["isa_available"][-1]))
        paths = fastrnn.config()["cpu_paths"]
        assert paths == ([p for p, on in (("woven projection", _kernels._weaves()),
                                          ("next-panel prefetch", _kernels._prefetches_next()))
                          if on] if fastrnn.config()["isa"] == "avx512" else [])
    finally:
        _kernels._set_isa(before)
        _kernels._set_weave(1)
        _kernels._set_prefetch_next(1)


def test_show_config(capsys):
    fastrnn.show_config()
    text = capsys.readouterr().out
    cfg = fastrnn.config()
    for key in ("version", "compiler", "openmp", "isa", "isa_available"):
        assert key in text, f"show_config() does not print {key}"
    assert cfg["version"] in text and cfg["compiler"] in text
    for name in cfg["isa_available"]:
        assert name in text
    assert "cpu_paths:" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("isa:"))
    assert line.split()[-1] == cfg["isa"]


def test_info_command():
    proc = run_python(["-m", "fastrnn", "info"])
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    cfg = fastrnn.config()
    for key in ("version", "compiler", "openmp", "isa", "isa_available"):
        assert key in proc.stdout
    assert cfg["version"] in proc.stdout and cfg["compiler"] in proc.stdout
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("isa:"))
    assert line.split()[-1] == cfg["isa_available"][-1]  # no FASTRNN_ISA: the best


# -- FASTRNN_ISA --------------------------------------------------------------------------------

_ISA_RUN = r"""
import json, sys, numpy as np, fastrnn
layer = fastrnn.LSTM(9, 33, 2, proj_size=17, seed=11)
x = np.random.default_rng(5).standard_normal((6, 3, 9)).astype(np.float32)
out, (h, c) = layer(x)
np.save(sys.argv[1], out)
print(json.dumps(fastrnn.config()))
"""


@pytest.mark.parametrize("name", ISA_NAMES)
def test_fastrnn_isa_lowers_the_choice(name, tmp_path):
    if name not in fastrnn.config()["isa_available"]:
        pytest.skip(f"{name} is not available on this CPU / in this build")
    path = tmp_path / "out.npy"
    cfg = last_json(run_python(["-c", _ISA_RUN, str(path)], env={"FASTRNN_ISA": name}))
    assert cfg["isa"] == name
    assert cfg["isa_available"] == fastrnn.config()["isa_available"]
    got = np.load(path)
    # Correct: against the float64 reference, and bitwise what this process's
    # path of the same name gives.
    layer = fastrnn.LSTM(9, 33, 2, proj_size=17, seed=11)
    x = np.random.default_rng(5).standard_normal((6, 3, 9)).astype(np.float32)
    expected, _ = reference.forward(layer, x)
    assert_close(got, expected, np.float32, 33)
    before = _kernels.get_isa()
    try:
        _set_isa(name)
        assert np.array_equal(got, layer(x)[0])
    finally:
        _kernels._set_isa(before)


def test_fastrnn_isa_unset_or_empty_gives_the_best(tmp_path):
    best = fastrnn.config()["isa_available"][-1]
    for env in ({}, {"FASTRNN_ISA": ""}):
        cfg = last_json(run_python(["-c", _ISA_RUN, str(tmp_path / "o.npy")], env=env))
        assert cfg["isa"] == best


def _assert_clear_import_error(proc, *needles):
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    for needle in needles:
        assert needle in last, f"{needle!r} not in the error: {last}"
    return last


@pytest.mark.parametrize("value", ["bogus", "sse2", "avx-512", "1"])
def test_fastrnn_isa_unknown_fails_at_import(value):
    proc = run_code("import fastrnn", env={"FASTRNN_ISA": value})
    _assert_clear_import_error(proc, "FASTRNN_ISA", repr(value), "generic", "avx2", "avx512")


def test_fastrnn_isa_long_value_is_not_echoed_whole():
    proc = run_code("import fastrnn", env={"FASTRNN_ISA": "x" * 100_000})
    last = _assert_clear_import_error(proc, "FASTRNN_ISA", "'" + "x" * 37 + "...'", "avx2")
    assert len(last) < 300


@pytest.mark.parametrize("start", [["-m", "fastrnn"], ["-u", "-m", "fastrnn"],
                                   ["-W", "ignore", "-um", "fastrnn"], ["-m", "fastrnn.cli"]])
def test_fastrnn_isa_unknown_fails_for_the_command(start):
    """For the command the import error is its one-line error (SPEC §6): no
    traceback, exit status 2 as for a bad argument (it once printed the import's
    traceback), whatever options the interpreter was given."""
    proc = run_python([*start, "info"], env={"FASTRNN_ISA": "bogus"})
    _assert_clear_import_error(proc, "FASTRNN_ISA", "generic, avx2, avx512")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "fastrnn: error: FASTRNN_ISA='bogus' is not an instruction set fastrnn knows; use one "
        "of generic, avx2, avx512"]


@pytest.mark.parametrize("code, args", [
    ("import sys; sys.argv = []; import fastrnn", []),
    ("import sys; del sys.argv; import fastrnn", []),
    ("import fastrnn", ["-m", "fastrnn"]),  # a program's own arguments, not the command
])
def test_fastrnn_isa_unknown_is_a_value_error_outside_the_command(code, args):
    proc = run_python(["-c", code, *args], env={"FASTRNN_ISA": "bogus"})
    last = _assert_clear_import_error(proc, "FASTRNN_ISA", "generic, avx2, avx512")
    assert last.startswith("ValueError: ")


def test_fastrnn_isa_above_the_cpu_fails_at_import():
    avail = fastrnn.config()["isa_available"]
    above = [n for n in ISA_NAMES if n not in avail]
    if not above:
        pytest.skip("this CPU and build have every ISA fastrnn knows; none above it to refuse "
                    "(the refusal logic is covered by test_isa_refusal_logic)")
    proc = run_code("import fastrnn", env={"FASTRNN_ISA": above[-1]})
    _assert_clear_import_error(proc, "FASTRNN_ISA", above[-1], "not supported",
                               ", ".join(avail))


def test_isa_refusal_logic(monkeypatch):
    """_apply_env_isa on a pretend CPU that stops at avx2 (any machine can run this)."""
    from fastrnn import _config

    monkeypatch.setattr(_config, "_available_isas", lambda: ["generic", "avx2"])
    before = _kernels.get_isa()
    try:
        monkeypatch.setenv("FASTRNN_ISA", "avx512")
        with pytest.raises(ValueError, match=r"FASTRNN_ISA='avx512' is not supported.*"
                                             r"available here: generic, avx2"):
            _config._apply_env_isa()
        assert _kernels.get_isa() == before, "a refused FASTRNN_ISA changed the ISA"
        monkeypatch.setenv("FASTRNN_ISA", "nope")
        with pytest.raises(ValueError, match="use one of generic, avx2, avx512"):
            _config._apply_env_isa()
        monkeypatch.setenv("FASTRNN_ISA", "generic")
        _config._apply_env_isa()
        assert fastrnn.config()["isa"] == "generic"
    finally:
        _kernels._set_isa(before)


def test_the_engine_refuses_an_isa_this_cpu_lacks():
    """The engine's own check behind FASTRNN_ISA's: the private switch to an ISA
    above this CPU's (its kernels would die with SIGILL), or to no ISA at all, is a
    ValueError and leaves the ISA as it was."""
    before = _kernels.get_isa()
    bad = [-1, len(ISA_NAMES)] + list(range(_kernels.cpu_isa() + 1, len(ISA_NAMES)))
    for isa in bad:
        with pytest.raises(ValueError, match="instruction set not available"):
            _kernels._set_isa(isa)
        assert _kernels.get_isa() == before


def test_what_ran_on_one_isa_follows_a_switch(isa):
    """A layer, a stream and a Linear that ran on the best ISA repack for the one in
    force after a switch (the test suite's `isa` fixture relies on it): bitwise what
    fresh ones built on that ISA give."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 3, 33)).astype(np.float32)
    best = len(fastrnn.config()["isa_available"]) - 1
    here = ISA_NAMES.index(isa)
    _kernels._set_isa(best)
    layer, lin = fastrnn.GRU(33, 37, seed=1), fastrnn.Linear(33, 37, seed=2)
    stream = layer.stream(3)
    layer(x), lin(x), stream.step(x[0])
    _kernels._set_isa(here)
    carried = stream.state  # the state the best ISA's step left
    got = layer(x)[0], lin(x), stream.step(x[1])
    assert layer._plan.isa == here and lin._kernel().isa == here
    fresh, fresh_lin = fastrnn.GRU(33, 37, seed=1), fastrnn.Linear(33, 37, seed=2)
    want = fresh(x)[0], fresh_lin(x), fresh.stream(3, state=carried).step(x[1])
    for g, w, what in zip(got, want, ("layer", "Linear", "stream")):
        assert np.array_equal(g, w), f"the {what} did not follow the switch to {isa}"
