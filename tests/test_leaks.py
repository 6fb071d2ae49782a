"""Memory leaks: repeated calls keep the process's memory flat.

Each case warms up (the engine's per-thread workspace grows to its size once,
NumPy and the Python allocator fill their caches), then measures the resident
set size (RSS, /proc/self/statm) and the count of objects the garbage collector
tracks, repeats the call 10,000 times (loads: 500 times), and measures again.

Tolerances: RSS may grow by at most 2 MiB. RSS moves in whole pages, and glibc's
malloc, NumPy's small-block cache and CPython's arenas keep freed memory and
reuse it in a slightly different layout, so a few hundred KB of drift is normal;
2 MiB over 10,000 calls still catches any leak of 200 bytes or more per call (one
leaked output array, state buffer or plan), far below what the engine allocates
per call. The object count may grow by at most 50 (a leaked Python object per
call would add 10,000); the inputs' reference counts must not change at all (a
reference kept by the wrapper on each call).

Linux only (RSS from /proc); skipped elsewhere.
"""

from __future__ import annotations

import gc
import os
import sys

import numpy as np
import pytest

import fastrnn

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads the RSS from /proc/self/statm (Linux)"
)

RSS_TOLERANCE = 2 << 20
OBJECT_TOLERANCE = 50
CALLS = 10_000
LOADS = 500


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def assert_flat(fn, n, warmup, what, watch=()):
    """Run fn() `warmup` times, then n times; RSS, tracked objects and the watched
    objects' reference counts must stay flat."""
    for _ in range(warmup):
        fn()
    gc.collect()
    refs = [sys.getrefcount(o) for o in watch]
    objects = len(gc.get_objects())
    before = rss()
    for _ in range(n):
        fn()
    gc.collect()
    grown = rss() - before
    new_objects = len(gc.get_objects()) - objects
    assert grown <= RSS_TOLERANCE, (
        f"{what}: RSS grew by {grown / 2**20:.2f} MiB over {n} calls "
        f"({grown / n:.0f} bytes per call)")
    assert new_objects <= OBJECT_TOLERANCE, f"{what}: {new_objects} more tracked objects"
    assert [sys.getrefcount(o) for o in watch] == refs, f"{what}: an input's refcount changed"


@pytest.fixture(autouse=True)
def _threads():
    before = fastrnn.get_num_threads()
    fastrnn.set_num_threads(2)  # the OpenMP path too
    yield
    fastrnn.set_num_threads(before)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_layer_calls(dtype):
    layer = fastrnn.LSTM(8, 32, 2, bidirectional=True, proj_size=16, seed=0, dtype=dtype)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((10, 4, 8)).astype(dtype)
    h0 = np.zeros((4, 4, 16), dtype)
    c0 = np.zeros((4, 4, 32), dtype)
    lengths = np.array([10, 3, 7, 1])
    x64 = x.astype(np.float64 if dtype == "float32" else np.float32)  # converted each call

    def call():
        layer(x, (h0, c0), lengths=lengths)
        layer(x64[:, ::2])

    assert_flat(call, CALLS, 500, f"LSTM {dtype} call", watch=(x, h0, c0, lengths, x64))


def test_refused_calls():
    """The error paths: validation failures raise and free what they made."""
    layer = fastrnn.GRU(8, 16, seed=0)
    x = np.zeros((5, 2, 8), np.float32)
    bad = np.array([0, 9])

    def call():
        for args, kw in (((x,), {"lengths": bad}), ((x[..., :3],), {}),
                         ((x, np.zeros((2, 2, 16))), {})):
            try:
                layer(*args, **kw)
            except ValueError:
                pass

    assert_flat(call, CALLS, 500, "refused GRU calls", watch=(x, bad))


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_stream_steps(kind):
    layer = {"lstm": fastrnn.LSTM(8, 32, 2, seed=0), "gru": fastrnn.GRU(8, 32, 2, seed=0),
             "rnn": fastrnn.RNN(8, 32, 2, seed=0)}[kind]
    stream = layer.stream(3)
    x = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    x64 = x.astype(np.float64)
    out = np.empty((3, 32), np.float32)

    def step():
        stream.step(x)
        stream.step(x64, out=out)

    assert_flat(step, CALLS, 500, f"{kind} stream step", watch=(x, x64, out))


def test_stream_state_and_lifecycle():
    layer = fastrnn.LSTM(8, 32, seed=0)
    h = np.zeros((1, 2, 32), np.float32)

    def cycle():
        s = layer.stream(2, state=(h, h))
        s.step(np.zeros((2, 8), np.float32))
        s.state = (h, h)
        _ = s.state
        s.reset()

    assert_flat(cycle, CALLS // 5, 200, "stream create/state/reset", watch=(h,))


@pytest.mark.parametrize("cls", [fastrnn.RNNCell, fastrnn.LSTMCell, fastrnn.GRUCell])
def test_cell_calls(cls):
    cell = cls(8, 32, seed=0)
    x = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    h = np.zeros((4, 32), np.float32)
    state = (h, h) if cls is fastrnn.LSTMCell else h
    assert_flat(lambda: cell(x, state), CALLS, 500, f"{cls.__name__} call", watch=(x, h))


def test_weight_reloads():
    """Each load_state_dict drops the packed plan; the next call packs a new one."""
    layer = fastrnn.GRU(8, 32, 2, seed=0)
    sd = layer.state_dict()
    x = np.zeros((3, 1, 8), np.float32)

    def reload():
        layer.load_state_dict(sd)
        layer(x)

    assert_flat(reload, CALLS // 5, 200, "load_state_dict + call")


@pytest.mark.parametrize("fmt", ["npz", "safetensors", "pt"])
def test_load_a_small_file(tmp_path, fmt):
    path = tmp_path / f"model.{fmt}"
    if fmt == "pt":
        torch = pytest.importorskip("torch") if not os.environ.get("CI") else __import__("torch")
        torch.save(torch.nn.LSTM(8, 16, 2).state_dict(), path)
    else:
        if fmt == "safetensors" and not os.environ.get("CI"):
            pytest.importorskip("safetensors")
        fastrnn.LSTM(8, 16, 2, seed=0).save(path)

    def load():
        fastrnn.load(path)(np.zeros((2, 1, 8), np.float32))

    assert_flat(load, LOADS, 50, f"fastrnn.load .{fmt}")


def test_refused_loads(tmp_path):
    """Files refused by the loaders (corrupt, unsafe) leak nothing either."""
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00true\x85R.")
    npz = tmp_path / "junk.npz"
    npz.write_bytes(b"PK\x03\x04" + bytes(100))

    def load():
        for p in (junk, npz):
            try:
                fastrnn.load(p)
            except fastrnn.ModelFileError:
                pass

    assert_flat(load, LOADS * 2, 50, "refused loads")


def test_batch_1_workspace_does_not_grow_with_the_input_squared():
    """A batch-1 call that weaves its projection into the recurrent steps takes
    chunks of at least as many steps as its input has blocks of 32 features, so the
    chunk's gathered inputs grew with the input size squared: LSTM(2**18, 64) at
    batch 1 asked for 8 GB (2**19 inputs: 32 GB, a MemoryError) where batch 2 ran.
    Inputs that wide now project the usual way; under a 2 GB address-space limit the
    call runs and gives the bits of a batch of 2 (a subprocess: the limit is its
    own)."""
    from _io_helpers import run_python

    code = """
import resource
resource.setrlimit(resource.RLIMIT_AS, (2000 << 20, resource.RLIM_INFINITY))
import numpy as np, fastrnn
fastrnn._kernels._set_weave(1)  # on any CPU (by default only AMD CPUs weave)
m = fastrnn.LSTM(2**18, 64, seed=0)
x = np.full((3, 1, 2**18), 1e-3, np.float32)
one, _ = m(x)
two, _ = m(np.concatenate([x, x], 1))
print(bool(np.array_equal(one[:, 0], two[:, 0])))
"""
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True"]


def test_generate_touches_memory_for_the_tokens_it_makes_not_max_len():
    """generate(max_len=N) with every result ending at its first token: the C loop
    padded all N columns of its (B, N) results, so N = 10**8 as "until eos" took
    1.3 GB and seconds. Only the columns up to the longest result are written now;
    the rest of the buffers is address space the kernel never backs."""
    from fastrnn import LSTM, Embedding, LanguageModel, Linear, Sequential

    V = 11
    m = LanguageModel(Sequential(Embedding(V, 6, seed=0), LSTM(6, 8, batch_first=True, seed=1),
                                 Linear(8, V, seed=2)))
    prompt = np.array([[1, 2, 3], [3, 2, 1]])
    first = m.generate(prompt, max_len=1)[0][:, 0]
    m.generate(prompt, max_len=10, eos=int(first[0]))  # warm up
    gc.collect()
    before = rss()
    eos = int(first[0])
    tokens, logp = m.generate(prompt[:1], max_len=3 * 10**7, eos=eos)  # 360 MB of results
    grown = rss() - before
    assert tokens.shape == logp.shape == (1, 1) and tokens[0, 0] == eos
    assert grown <= 32 << 20, f"RSS grew by {grown >> 20} MiB for one token"


@pytest.mark.parametrize("threads", [1, 2])
def test_a_big_call_does_not_keep_its_workspace(threads):
    """The engine keeps each thread's scratch block between calls, but one past
    32 MiB only until its call ends: a 3-layer stack over 2000 steps of 512 rows
    (its inner layers' outputs: 2 x 131 MB) kept 262 MB for the life of the
    thread -- the main thread's, for good -- after every array was freed. On 2
    threads the batch is split in row groups, each with its own block. In a fresh
    process each: what an earlier test left in a block must not hide it."""
    from _io_helpers import run_python

    code = f"""
import gc, os, numpy as np, fastrnn
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
fastrnn.set_num_threads({threads})
layer = fastrnn.RNN(8, 32, 3, seed=0)
x = np.zeros((2000, 512, 8), np.float32)
layer(x[:, :2])  # the pool's threads start, each block reaches its small size
gc.collect()
before = rss()
out, hn = layer(x)
assert out.shape == (2000, 512, 32) and np.isfinite(hn).all()
del out, hn
gc.collect()
print((rss() - before) >> 20)
"""
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    kept = int(proc.stdout.split()[-1])
    assert kept <= 32, f"RSS kept {kept} MiB after the call"
