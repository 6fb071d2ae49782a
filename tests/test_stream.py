"""Streams (SPEC §2): `layer.stream(batch_size, state)` steps a unidirectional
layer one time step per call and must give exactly what the whole-sequence call
gives; a refused call must not advance it."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

import fastrnn
from _io_helpers import run_python
from _util import need

I, H, P, T = 5, 7, 3, 9

# Every unidirectional variant: id -> constructor(num_layers, dtype, seed)
VARIANTS = {
    "rnn_tanh": lambda L, dt, s: fastrnn.RNN(I, H, L, dtype=dt, seed=s),
    "rnn_relu": lambda L, dt, s: fastrnn.RNN(I, H, L, nonlinearity="relu", dtype=dt, seed=s),
    "lstm": lambda L, dt, s: fastrnn.LSTM(I, H, L, dtype=dt, seed=s),
    "lstm_proj": lambda L, dt, s: fastrnn.LSTM(I, H, L, proj_size=P, dtype=dt, seed=s),
    "lstm_peephole": lambda L, dt, s: fastrnn.LSTM(I, H, L, peephole=True, dtype=dt, seed=s),
    "gru": lambda L, dt, s: fastrnn.GRU(I, H, L, dtype=dt, seed=s),
    "gru_lbr_false": lambda L, dt, s: fastrnn.GRU(I, H, L, linear_before_reset=False, dtype=dt,
                                                 seed=s),
}


def _make(kind, L=2, dtype="float32", seed=0):
    return VARIANTS[kind](L, dtype, seed)


def _is_lstm(layer):
    return layer.mode == "LSTM"


def _h_out(layer):
    return layer.proj_size if _is_lstm(layer) and layer.proj_size else layer.hidden_size


def _x(layer, B, T=T, seed=1):
    return np.random.default_rng(seed).standard_normal((T, B, layer.input_size)).astype(layer.dtype)


def _random_state(layer, B, seed=2):
    rng = np.random.default_rng(seed)
    L = layer.num_layers
    h = rng.standard_normal((L, B, _h_out(layer))).astype(layer.dtype)
    if _is_lstm(layer):
        c = rng.standard_normal((L, B, layer.hidden_size)).astype(layer.dtype)
        return h, c
    return h


def _call(layer, x, state=None):
    """The whole-sequence call; returns (out, h_n, c_n or None)."""
    if _is_lstm(layer):
        out, (hn, cn) = layer(x, state)
        return out, hn, cn
    out, hn = layer(x, state)
    return out, hn, None


def _assert_equal(actual, expected, dtype, what):
    """float32: bitwise; float64: within 1e-12 (in practice also bitwise)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == np.dtype(dtype), f"{what}: dtype {actual.dtype}"
    if np.dtype(dtype) == np.float32:
        assert np.array_equal(actual, expected, equal_nan=True), (
            f"{what}: float32 stream differs from the whole-sequence call by "
            f"{np.nanmax(np.abs(actual - expected)):.3g} (expected bitwise equality)"
        )
    else:
        np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12, err_msg=what)


def _assert_state(stream, layer, hn, cn, what="state"):
    st = stream.state
    if _is_lstm(layer):
        assert isinstance(st, tuple) and len(st) == 2
        _assert_equal(st[0], hn, layer.dtype, what + " h")
        _assert_equal(st[1], cn, layer.dtype, what + " c")
    else:
        assert isinstance(st, np.ndarray)
        _assert_equal(st, hn, layer.dtype, what + " h")


def _steps(stream, x):
    return np.stack([stream.step(x[t]) for t in range(x.shape[0])])


# -- stepping equals the whole-sequence call -------------------------------------


@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("L", [1, 2, 3])
@pytest.mark.parametrize("kind", list(VARIANTS))
def test_steps_equal_sequence(kind, L, dtype, B, isa):
    layer = _make(kind, L, dtype)
    x = _x(layer, B)
    out, hn, cn = _call(layer, x)
    stream = layer.stream(B)
    ys = _steps(stream, x)
    _assert_equal(ys, out, dtype, "outputs")
    _assert_state(stream, layer, hn, cn, "final state")

    # Initial state, given to the constructor and through the setter.
    s0 = _random_state(layer, B)
    out, hn, cn = _call(layer, x, s0)
    stream = layer.stream(B, state=s0)
    _assert_equal(_steps(stream, x), out, dtype, "outputs from state=")
    _assert_state(stream, layer, hn, cn, "final state from state=")
    stream = layer.stream(B)
    stream.step(x[0])  # the setter must overwrite whatever was carried
    stream.state = s0
    _assert_equal(_steps(stream, x), out, dtype, "outputs after the setter")
    _assert_state(stream, layer, hn, cn, "final state after the setter")


@pytest.mark.parametrize("kind", ["lstm_proj", "gru", "rnn_tanh", "lstm_big", "gru_big"])
def test_steps_equal_sequence_wide(kind, isa, n_threads):
    """Sizes past the SIMD tile widths and the one-thread cut-off, so the stream's
    parallel split and tile tails are exercised too: on its helper threads, and
    (the "big" ones, over a million multiply-adds a step) in an OpenMP region."""
    if kind == "lstm_big":
        layer = fastrnn.LSTM(64, 300, 1, seed=3)
    elif kind == "gru_big":
        layer = fastrnn.GRU(40, 340, 2, seed=3)
    elif kind == "lstm_proj":
        layer = fastrnn.LSTM(19, 97, 2, proj_size=45, seed=3)
    elif kind == "gru":
        layer = fastrnn.GRU(19, 130, 2, seed=3)
    else:
        layer = fastrnn.RNN(19, 257, 2, seed=3)
    x = _x(layer, 3, T=6)
    out, hn, cn = _call(layer, x)
    stream = layer.stream(3)
    _assert_equal(_steps(stream, x), out, layer.dtype, "outputs")
    _assert_state(stream, layer, hn, cn)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_steps_past_l2_equal_sequence(kind, B, dtype, isa, n_threads):
    """Layers whose weights pass 2 MB a thread run every other stream step's
    recurrent products first, the last layer's first, and the steps between
    unfused (engine.h, stream_r_first); on 2 threads these are OpenMP steps (over a
    million multiply-adds a step). Both kinds of step give the bits of the
    whole-sequence call."""
    if kind == "lstm":
        layer = fastrnn.LSTM(250, 450, 2, dtype=dtype, seed=4)  # 11.5 MB in float32
    elif kind == "gru":
        layer = fastrnn.GRU(250, 520, 2, dtype=dtype, seed=4)  # 11.3 MB
    else:
        layer = fastrnn.RNN(700, 1000, 2, dtype=dtype, seed=4)  # 14.8 MB
    x = _x(layer, B, T=5)
    s0 = _random_state(layer, B)
    out, hn, cn = _call(layer, x, s0)
    stream = layer.stream(B, state=s0)
    _assert_equal(_steps(stream, x), out, dtype, "outputs")
    _assert_state(stream, layer, hn, cn)


def _away(us):
    """Keep the calling thread busy for `us` microseconds, as an application does
    between frames."""
    end = time.perf_counter() + us * 1e-6
    while time.perf_counter() < end:
        pass


@pytest.mark.parametrize("n_threads", [2], indirect=True)
@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh", "lstm_proj", "gru_lbr_false"])
def test_steps_with_time_between_equal_sequence(kind, B, isa, n_threads):
    """When the caller spends time between steps, a stream on helper threads has them
    compute the next step's recurrent products before the call (layers/engine.h,
    "eager"; LSTM without projection, GRU with linear_before_reset, RNN). Steps must
    still equal the whole-sequence call bitwise, across a state set and a reset made
    while those products may be under way."""
    layer = {
        "lstm": lambda: fastrnn.LSTM(40, 130, 2, seed=3),
        "gru": lambda: fastrnn.GRU(40, 130, 2, seed=3),
        "rnn_tanh": lambda: fastrnn.RNN(19, 257, 2, seed=3),
        "lstm_proj": lambda: fastrnn.LSTM(40, 130, 2, proj_size=60, seed=3),
        "gru_lbr_false": lambda: fastrnn.GRU(40, 130, 2, linear_before_reset=False, seed=3),
    }[kind]()
    x = _x(layer, B, T=12)
    stream = layer.stream(B)

    def run(seg):
        ys = []
        for t in range(seg.shape[0]):
            _away(10)
            ys.append(stream.step(seg[t]))
        return np.stack(ys)

    out, hn, cn = _call(layer, x[:4])
    _assert_equal(run(x[:4]), out, layer.dtype, "outputs")
    _assert_state(stream, layer, hn, cn, "state read between steps")
    s0 = _random_state(layer, B)
    stream.state = s0
    out, hn, cn = _call(layer, x[4:8], s0)
    _assert_equal(run(x[4:8]), out, layer.dtype, "outputs after the setter")
    stream.reset()
    out, hn, cn = _call(layer, x[8:])
    _assert_equal(run(x[8:]), out, layer.dtype, "outputs after reset")
    _assert_state(stream, layer, hn, cn, "final state")


def test_many_steps_on_helper_threads_match_one_thread():
    """A soak of the hand-over between the caller and the helper threads
    (layers/sched.h): 40k steps on two threads, back to back and with time between
    them (so steps with and without their recurrent products ahead alternate), end
    in exactly the state 40k steps on one thread reach.

    Helpers join one step in four up to 6 us late (`_set_helper_lag`), as when the
    OS runs them late: a helper may see step n published and join it only after the
    caller has gone on to step n + 1. It must walk step n's phases. It once walked
    those of the step whose flags it read, and when that step had its products ahead
    and step n not, its counts closed the wrong phase and the stream hung (about one
    8-second run in 18 on two busy cores; here every run). In a subprocess: a hang
    fails the test, not the suite."""
    code = """
import json, random, time, numpy as np, fastrnn
from fastrnn import _kernels
_kernels._set_far(0)
layer = fastrnn.LSTM(64, 64, seed=5)
x = np.random.default_rng(0).standard_normal((256, 64)).astype(np.float32) * 0.3
n = 40000
fastrnn.set_num_threads(1)
one = layer.stream(1)
for i in range(n):
    one.step(x[i & 255])
fastrnn.set_num_threads(2)
_kernels._set_helper_lag(6000)
two = layer.stream(1)
rnd = random.Random(0)
i = 0
while i < n:
    for _ in range(min(rnd.choice((1, 2, 3, 5, 8)), n - i)):
        two.step(x[i & 255])
        i += 1
    gap, t0 = rnd.choice((0, 0, 2e-6, 5e-6, 2e-5)), time.perf_counter()
    while time.perf_counter() - t0 < gap:
        pass
print(json.dumps([bool(np.array_equal(a, b)) for a, b in zip(two.state, one.state)]))
"""
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[true, true]"


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2 if hasattr(os, "sched_getaffinity")
                    else True, reason="needs 2 CPUs")
def test_streams_past_2_to_the_31_phases_keep_stepping():
    """The helpers' counters carry their phase modulo 2^32 (layers/sched.h). A
    counter untouched for 2^31 phases -- a one-layer stream's, stepped back to back
    ~10^9 times, whose next step has its products ahead -- looked taken by a later
    phase: nobody claimed its items and the step never returned. Streams here start
    at such phase numbers (`_set_stream_phase0`, counters as phases 0 and 1 left
    them), step back to back, then with time between steps, and end in the state a
    one-thread stream reaches. In a subprocess with an alarm: a hang fails the test."""
    code = """
import json, signal, time, numpy as np, fastrnn
from fastrnn import _kernels
signal.alarm(60)
_kernels._set_far(0)
layer = fastrnn.LSTM(64, 64, seed=5)
x = np.random.default_rng(0).standard_normal((256, 64)).astype(np.float32) * 0.3
fastrnn.set_num_threads(1)
one = layer.stream(1)
for i in range(1200):
    one.step(x[i & 255])
fastrnn.set_num_threads(2)
same = []
for k0 in (2**31 + 1024, 2**31 + 1025, 2**32 - 256, 2**33 + 2**31):
    _kernels._set_stream_phase0(k0)
    two = layer.stream(1)
    for i in range(1200):
        two.step(x[i & 255])
        if i >= 1000:  # time between steps: their products go ahead
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < 2e-5:
                pass
    same += [bool(np.array_equal(a, b)) for a, b in zip(two.state, one.state)]
print(json.dumps(same))
"""
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr or f"status {proc.returncode} (alarm: a hang)"
    assert proc.stdout.strip().splitlines()[-1] == json.dumps([True] * 8)


@pytest.mark.skipif(not hasattr(os, "fork") or not hasattr(os, "sched_getaffinity")
                    or len(os.sched_getaffinity(0)) < 2, reason="needs fork and 2 CPUs")
def test_a_child_forked_while_the_helpers_run_ahead_steps_on():
    """With time between steps, a stream's helpers go on computing the next step's
    recurrent products after step() returns. A child forked then inherited their
    claimed but unfinished items, and its first step waited for them for good (20
    forks in 20, 40 layers). The child drops them and steps on one thread: each
    child's step equals the parent's."""
    code = """
import os, signal, time, numpy as np, fastrnn
from fastrnn import _kernels
_kernels._set_far(0)
fastrnn.set_num_threads(2)
layer = fastrnn.LSTM(256, 256, 40, seed=0)
s = layer.stream()
x = np.ones(256, np.float32) * 0.1
def wait(us):
    t = time.perf_counter()
    while time.perf_counter() - t < us * 1e-6:
        pass
for i in range(50):
    s.step(x)
    wait(20)
results = []
for trial in range(8):
    s.step(x)
    wait(20)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        signal.alarm(20)
        os.write(w, s.step(x).tobytes())
        os._exit(0)
    os.close(w)
    got = b""
    while True:
        chunk = os.read(r, 1 << 16)
        if not chunk:
            break
        got += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    mine = s.step(x)
    results.append("hung" if os.WIFSIGNALED(status) else
                   str(np.array_equal(np.frombuffer(got, np.float32), mine)))
print(" ".join(results))
"""
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True"] * 8


@pytest.mark.parametrize("kind", list(VARIANTS))
def test_unbatched_steps(kind):
    layer = _make(kind)
    x = _x(layer, 1)[:, 0]  # (T, I)
    out, hn, cn = _call(layer, x)  # unbatched call: out (T, H_out), hn (L, H_out)
    stream = layer.stream()  # batch_size=1
    ys = []
    for t in range(T):
        y = stream.step(x[t])
        assert y.shape == (_h_out(layer),)
        ys.append(y)
    _assert_equal(np.stack(ys), out, layer.dtype, "unbatched outputs")
    # The state keeps its batch axis of 1.
    _assert_state(stream, layer, hn[:, None], None if cn is None else cn[:, None])
    # Mixing (I,) and (1, I) steps is the same stream.
    stream.reset()
    mixed = [stream.step(x[t]) if t % 2 else stream.step(x[t][None])[0] for t in range(T)]
    _assert_equal(np.stack(mixed), out, layer.dtype, "mixed (I,) / (1, I) steps")


def test_unbatched_step_needs_batch_size_1():
    layer = _make("gru")
    stream = layer.stream(3)
    with pytest.raises(ValueError, match=r"x has shape \(5,\).*\(3, 5\)"):
        stream.step(np.zeros(I, np.float32))


def test_step_accepts_any_array_like():
    """Lists, float16/float64, non-contiguous and Fortran-order steps are converted."""
    layer = _make("lstm")
    x = _x(layer, 3)
    out, _, _ = _call(layer, x)
    stream = layer.stream(3)
    got = [
        stream.step(x[0].tolist()),
        stream.step(x[1].astype(np.float64)),
        stream.step(np.asfortranarray(x[2])),
        stream.step(np.ascontiguousarray(x[3].T).T),
    ]
    _assert_equal(np.stack(got), out[:4], layer.dtype, "array-like steps")


def test_unaligned_x_and_out():
    """Arrays at an odd byte offset (e.g. from a network buffer) work as x and out."""
    layer = _make("lstm")
    x = _x(layer, 3)
    out_seq, _, _ = _call(layer, x)

    def unaligned(shape):
        n = int(np.prod(shape)) * 4
        a = np.zeros(n + 1, np.uint8)[1:].view(np.float32).reshape(shape)
        assert not a.flags.aligned
        return a

    stream = layer.stream(3)
    for t in range(T):
        xt = unaligned((3, I))
        xt[...] = x[t]
        buf = unaligned((3, H))
        assert stream.step(xt, out=buf) is buf
        _assert_equal(buf, out_seq[t], layer.dtype, f"unaligned step {t}")


def test_step_returns_new_arrays_and_leaves_x_alone():
    layer = _make("gru")
    x = _x(layer, 3)
    x_copy = x.copy()
    stream = layer.stream(3)
    y0 = stream.step(x[0])
    y0_copy = y0.copy()
    y1 = stream.step(x[1])
    assert y1 is not y0 and not np.shares_memory(y0, y1)
    assert np.array_equal(y0, y0_copy), "a later step changed an earlier result"
    assert np.array_equal(x, x_copy), "step modified its input"
    assert y0.flags.c_contiguous and y0.flags.owndata


# -- state ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rnn_tanh", "lstm", "lstm_proj", "gru"])
def test_state_is_a_copy(kind):
    layer = _make(kind)
    x = _x(layer, 3)
    stream = layer.stream(3)
    stream.step(x[0])
    before = stream.state
    got = stream.state
    for a in (got if isinstance(got, tuple) else (got,)):
        a[...] = 123.0
    after = stream.state
    for a, b in zip(before if isinstance(before, tuple) else (before,),
                    after if isinstance(after, tuple) else (after,)):
        assert np.array_equal(a, b), "mutating the returned state changed the stream"
    # And an array given to the setter is copied in, not kept.
    s0 = _random_state(layer, 3)
    stream.state = s0
    expected = stream.state
    for a in (s0 if isinstance(s0, tuple) else (s0,)):
        a[...] = -7.0
    for a, b in zip(expected if isinstance(expected, tuple) else (expected,),
                    stream.state if isinstance(expected, tuple) else (stream.state,)):
        assert np.array_equal(a, b), "the stream kept a reference to the caller's state"


@pytest.mark.parametrize("kind", ["rnn_relu", "lstm", "lstm_peephole", "gru_lbr_false"])
def test_state_shapes_and_dtype(kind):
    layer = _make(kind, L=3, dtype="float64")
    st = layer.stream(4).state
    L, ho, hs = 3, _h_out(layer), layer.hidden_size
    if _is_lstm(layer):
        h, c = st
        assert h.shape == (L, 4, ho) and c.shape == (L, 4, hs)
        assert h.dtype == c.dtype == np.float64
        assert not h.any() and not c.any()
    else:
        assert st.shape == (L, 4, ho) and st.dtype == np.float64 and not st.any()


@pytest.mark.parametrize("kind", ["rnn_tanh", "lstm_proj", "gru"])
def test_reset_zeroes(kind):
    layer = _make(kind)
    x = _x(layer, 3)
    fresh = _steps(layer.stream(3), x)
    stream = layer.stream(3, state=_random_state(layer, 3))
    _steps(stream, x)
    stream.reset()
    st = stream.state
    for a in (st if isinstance(st, tuple) else (st,)):
        assert a.shape[1] == 3 and not a.any(), "reset() did not zero the state"
    _assert_equal(_steps(stream, x), fresh, layer.dtype, "outputs after reset")


def test_state_accepts_array_likes():
    layer = _make("lstm", dtype="float32")
    h, c = _random_state(layer, 2)
    stream = layer.stream(2)
    stream.state = [h.astype(np.float64).tolist(), c.astype(np.float64)]  # list, float64
    got_h, got_c = stream.state
    assert np.array_equal(got_h, h) and np.array_equal(got_c, c)


def test_failed_state_set_leaves_state_unchanged():
    layer = _make("lstm")
    x = _x(layer, 2)
    stream = layer.stream(2)
    stream.step(x[0])
    h, c = stream.state
    good_h = np.ones_like(h)
    with pytest.raises(ValueError, match=r"c has shape \(2, 2, 8\)"):
        stream.state = (good_h, np.ones((2, 2, H + 1), np.float32))
    h2, c2 = stream.state
    assert np.array_equal(h, h2) and np.array_equal(c, c2), "a refused set changed h or c"


# -- out= ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", ["rnn_tanh", "lstm_proj", "gru"])
def test_out_is_filled_and_returned(kind, dtype):
    layer = _make(kind, dtype=dtype)
    x = _x(layer, 3)
    out_seq, _, _ = _call(layer, x)
    stream = layer.stream(3)
    buf = np.full((3, _h_out(layer)), np.nan, dtype)
    for t in range(T):
        got = stream.step(x[t], out=buf)
        assert got is buf
        _assert_equal(buf, out_seq[t], dtype, f"out at step {t}")
    # any writeable out of the step's shape: a time slice of a batch-first buffer
    # (strided), Fortran order, a reversed view -- filled through a copy
    ho = _h_out(layer)
    ys = np.full((3, T, ho), np.nan, dtype)
    fort = np.asfortranarray(np.full((3, ho), np.nan, dtype))
    rev = np.full((3, ho), np.nan, dtype)[::-1, ::-1]
    streams = [layer.stream(3) for _ in range(3)]
    for t in range(T):
        bufs = {"batch-first slice": ys[:, t], "Fortran": fort, "reversed": rev}
        for st, (what, buf) in zip(streams, bufs.items()):
            assert not buf.flags.c_contiguous
            got = st.step(x[t], out=buf)
            assert got is buf, what
            _assert_equal(buf, out_seq[t], dtype, f"{what} out at step {t}")
    # unbatched, out (H_out,)
    stream1 = layer.stream(1)
    x1 = x[:, 0]
    out1, _, _ = _call(layer, x1)
    buf1 = np.empty(_h_out(layer), dtype)
    for t in range(T):
        assert stream1.step(x1[t], out=buf1) is buf1
        _assert_equal(buf1, out1[t], dtype, f"unbatched out at step {t}")


def _bad_outs(layer, B):
    """(description, out, expected exception, match) for out arrays a stream refuses."""
    ho, dt = _h_out(layer), layer.dtype
    other = np.float64 if dt == np.float32 else np.float32
    ro = np.zeros((B, ho), dt)
    ro.flags.writeable = False
    return [
        ("wrong shape", np.zeros((B, ho + 1), dt), ValueError, "out.*shape"),
        ("transposed shape", np.zeros((ho, B), dt), ValueError, "out.*shape"),
        ("unbatched shape for a batched step", np.zeros(ho, dt), ValueError, "out.*shape"),
        ("wrong dtype", np.zeros((B, ho), other), TypeError, "out.*dtype"),
        ("int dtype", np.zeros((B, ho), np.int32), TypeError, "out.*dtype"),
        ("read-only", ro, ValueError, "out.*writeable"),
        ("a list", [[0.0] * ho] * B, TypeError, "out.*NumPy array"),
    ]


@pytest.mark.parametrize("kind", ["rnn_tanh", "lstm_proj"])
def test_bad_out_refused_and_stream_not_advanced(kind):
    layer = _make(kind)
    B = 3 if kind == "rnn_tanh" else 2
    x = _x(layer, B)
    out_seq, _, _ = _call(layer, x)
    stream = layer.stream(B)
    stream.step(x[0])
    for what, bad, exc, match in _bad_outs(layer, B):
        before = stream.state
        with pytest.raises(exc, match=match):
            stream.step(x[1], out=bad)
        after = stream.state
        for a, b in zip(before if isinstance(before, tuple) else (before,),
                        after if isinstance(after, tuple) else (after,)):
            assert np.array_equal(a, b), f"refused out ({what}) advanced the stream"
    _assert_equal(stream.step(x[1]), out_seq[1], layer.dtype, "the step after refused outs")


def test_a_replaced_engine_stream_takes_no_step():
    """After new weights (or a reset) the stream carries its state on in a new
    engine stream; the old one refuses steps, as a step during a step is refused:
    another thread's step on it would otherwise be accepted, then lost."""
    layer = _make("gru", L=1)
    x = _x(layer, 2)
    stream = layer.stream(2)
    stream.step(x[0])
    for change in (lambda: layer.load_state_dict(_make("gru", L=1, seed=5).state_dict()),
                   stream.reset):
        old = stream._c
        change()
        stream.step(x[1])
        assert stream._c is not old
        with pytest.raises(RuntimeError, match="another thread"):
            old.step(np.ascontiguousarray(x[2]), None)
        with pytest.raises(RuntimeError, match="another thread"):
            old.get_state(np.empty_like(stream.state), None)


def test_bad_x_refused_and_stream_not_advanced():
    layer = _make("lstm")
    B = 3
    x = _x(layer, B)
    out_seq, _, _ = _call(layer, x)
    stream = layer.stream(B)
    stream.step(x[0])
    bad_xs = [
        (np.zeros((B, I + 1), np.float32), ValueError, r"x has shape \(3, 6\)"),
        (np.zeros((B + 1, I), np.float32), ValueError, r"x has shape \(4, 5\)"),
        (np.zeros(I, np.float32), ValueError, r"x has shape \(5,\)"),  # unbatched, B=3
        (np.zeros((1, B, I), np.float32), ValueError, "x has shape"),
        # (B, I) first, more axes after: the engine's fast path took those
        (np.zeros((B, I, 1), np.float32), ValueError, r"x has shape \(3, 5, 1\)"),
        (np.zeros((B, I, 1, 1), np.float32), ValueError, r"x has shape \(3, 5, 1, 1\)"),
        (np.zeros((), np.float32), ValueError, "x has shape"),
        (np.full((B, I), "a"), TypeError, "x must hold real numbers.*string"),
        ("abc", TypeError, "x must hold real numbers"),
        (np.zeros((B, I), complex), TypeError, "x.*complex"),
        (np.zeros((B, I), bool), TypeError, "x.*bool"),
        (np.zeros((B, I), object), TypeError, "x.*object"),
        (None, TypeError, "x must be a numeric array"),
        ({"a": 1}, TypeError, "x must be a numeric array"),
        ([[1.0, 2.0], [3.0]], TypeError, "x must be a numeric array"),  # ragged
    ]
    for bad, exc, match in bad_xs:
        before = stream.state
        with pytest.raises(exc, match=match):
            stream.step(bad)
        after = stream.state
        for a, b in zip(before, after):
            assert np.array_equal(a, b), f"refused x {bad!r:.40} advanced the stream"
    _assert_equal(stream.step(x[1]), out_seq[1], layer.dtype, "the step after refused calls")


def test_bad_x_with_out_does_not_touch_out():
    layer = _make("gru")
    stream = layer.stream(2)
    buf = np.full((2, H), 5.0, np.float32)
    with pytest.raises(ValueError):
        stream.step(np.zeros((2, I + 1), np.float32), out=buf)
    assert np.all(buf == 5.0)
    # (B, I, k) with out (B, H, k): the fast path once stepped on x's first B*I values
    buf3 = np.full((2, H, 2), 5.0, np.float32)
    with pytest.raises(ValueError, match=r"x has shape \(2, 5, 2\)"):
        stream.step(np.ones((2, I, 2), np.float32), out=buf3)
    assert np.all(buf3 == 5.0) and not stream.state.any()


# -- construction errors -----------------------------------------------------------


@pytest.mark.parametrize("make", [
    lambda: fastrnn.LSTM(I, H, bidirectional=True),
    lambda: fastrnn.GRU(I, H, 2, bidirectional=True),
    lambda: fastrnn.RNN(I, H, bidirectional=True, nonlinearity="relu"),
])
def test_bidirectional_cannot_stream(make):
    layer = make()
    with pytest.raises(ValueError, match="bidirectional") as info:
        layer.stream()
    msg = str(info.value)
    assert "reverse" in msg and "whole" in msg and "sequence" in msg, msg


@pytest.mark.parametrize("bad, exc, match", [
    (0, ValueError, "batch_size is 0"),
    (-2, ValueError, "batch_size is -2"),
    (1.5, TypeError, "batch_size must be an integer"),
    (2.0, TypeError, "batch_size must be an integer"),
    (True, TypeError, "batch_size must be an integer"),
    ("3", TypeError, "batch_size must be an integer"),
    (None, TypeError, "batch_size must be an integer"),
])
def test_bad_batch_size(bad, exc, match):
    with pytest.raises(exc, match=match):
        _make("gru").stream(bad)


def test_batch_size_accepts_numpy_integers():
    assert _make("gru").stream(np.int64(3)).batch_size == 3


@pytest.mark.parametrize("kind", ["rnn_tanh", "gru"])
def test_wrong_state_structure_rnn_gru(kind):
    layer = _make(kind)
    h = np.zeros((2, 3, H), np.float32)
    stream = layer.stream(3)
    with pytest.raises(TypeError, match="tuple"):
        stream.state = (h, h)
    with pytest.raises(TypeError, match="tuple"):
        layer.stream(3, state=(h,))
    with pytest.raises(ValueError, match=r"h has shape \(2, 3, 8\); expected \(2, 3, 7\)"):
        stream.state = np.zeros((2, 3, H + 1), np.float32)
    with pytest.raises(ValueError, match=r"h has shape \(2, 2, 7\)"):
        layer.stream(3, state=np.zeros((2, 2, H), np.float32))
    with pytest.raises(ValueError, match=r"h has shape \(3, 7\)"):
        stream.state = np.zeros((3, H), np.float32)  # missing the layer axis
    with pytest.raises(TypeError, match="h must hold real numbers"):
        stream.state = np.full((2, 3, H), "x")
    with pytest.raises(TypeError, match="h must be a numeric array"):
        stream.state = None


def test_wrong_state_structure_lstm():
    layer = _make("lstm_proj")  # h (2, B, P), c (2, B, H)
    B = 3
    h = np.zeros((2, B, P), np.float32)
    c = np.zeros((2, B, H), np.float32)
    stream = layer.stream(B)
    with pytest.raises(TypeError, match=r"tuple \(h, c\)"):
        stream.state = h
    with pytest.raises(TypeError, match=r"tuple \(h, c\)"):
        layer.stream(B, state=c)
    with pytest.raises(TypeError, match=r"tuple \(h, c\)"):
        stream.state = (h, c, c)
    with pytest.raises(TypeError, match=r"tuple \(h, c\)"):
        stream.state = None
    with pytest.raises(ValueError, match=r"h has shape \(2, 3, 7\); expected \(2, 3, 3\)"):
        stream.state = (c, c)  # h given with hidden_size instead of proj_size
    with pytest.raises(ValueError, match=r"c has shape \(2, 3, 3\); expected \(2, 3, 7\)"):
        stream.state = (h, h)
    with pytest.raises(TypeError, match="c must"):
        stream.state = (h, None)
    stream.state = (h + 1, c + 2)  # the right structure is accepted
    got_h, got_c = stream.state
    assert np.all(got_h == 1) and np.all(got_c == 2)


# -- weights reloaded, NaN ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rnn_relu", "lstm", "lstm_proj", "gru_lbr_false"])
def test_reloaded_weights_used_and_state_kept(kind):
    layer = _make(kind, seed=0)
    new_weights = _make(kind, seed=99).state_dict()
    x = _x(layer, 3)
    stream = layer.stream(3)
    _steps(stream, x[:4])
    carried = stream.state
    layer.load_state_dict(new_weights)
    # state survives the reload ...
    after = stream.state
    for a, b in zip(carried if isinstance(carried, tuple) else (carried,),
                    after if isinstance(after, tuple) else (after,)):
        assert np.array_equal(a, b), "reloading the weights changed the stream's state"
    # ... and the next steps use the new weights from that state
    reference = _make(kind, seed=99)
    out, hn, cn = _call(reference, x[4:], carried)
    _assert_equal(_steps(stream, x[4:]), out, layer.dtype, "outputs after the reload")
    _assert_state(stream, layer, hn, cn)


def test_reload_then_step_without_reading_state():
    """The reload is noticed by step() itself, not only by the state property."""
    layer = _make("gru", seed=0)
    x = _x(layer, 2)
    stream = layer.stream(2)
    stream.step(x[0])
    h = stream.state
    layer.load_state_dict(_make("gru", seed=5).state_dict())
    expected, _, _ = _call(_make("gru", seed=5), x[1:3], h)
    _assert_equal(np.stack([stream.step(x[1]), stream.step(x[2])]), expected, layer.dtype,
                  "steps after a reload")


def test_failed_reload_keeps_old_weights():
    layer = _make("lstm", seed=0)
    x = _x(layer, 2)
    expected, _, _ = _call(layer, x)
    stream = layer.stream(2)
    stream.step(x[0])
    bad = layer.state_dict()
    bad["weight_hh_l0"] = np.zeros((1, 1), np.float32)
    with pytest.raises(ValueError):
        layer.load_state_dict(bad)
    _assert_equal(_steps(stream, x[1:]), expected[1:], layer.dtype, "steps after a failed reload")


@pytest.mark.parametrize("value", [np.nan, np.inf])
@pytest.mark.parametrize("kind", list(VARIANTS))
def test_nan_propagates_in_its_own_stream(kind, value):
    layer = _make(kind)
    x = _x(layer, 3)
    x[2, 1, 0] = value
    out, hn, cn = _call(layer, x)
    stream = layer.stream(3)
    ys = _steps(stream, x)
    _assert_equal(ys, out, layer.dtype, "outputs with a NaN/Inf input")
    if value != value:  # NaN: every later output of that sequence is NaN
        assert not np.isnan(ys[:2]).any()
        assert np.isnan(ys[2:, 1]).all(), "NaN did not propagate through the carried state"
    # the other sequences of the batch are untouched
    assert np.isfinite(ys[:, [0, 2]]).all()
    clean = x.copy()
    clean[2, 1, 0] = 0.0
    _assert_equal(ys[:, [0, 2]], _call(layer, clean)[0][:, [0, 2]], layer.dtype,
                  "the other sequences")


def test_repr_and_batch_size():
    stream = _make("gru").stream(4)
    assert stream.batch_size == 4
    assert "GRU" in repr(stream) and "batch_size=4" in repr(stream)


def test_batch_first_layer_streams_b_i_steps():
    """batch_first only changes the layout of whole sequences: steps are (B, I)."""
    layer = fastrnn.GRU(I, H, 2, batch_first=True, seed=0)
    x = _x(layer, 3).transpose(1, 0, 2).copy()  # (B, T, I)
    out, hn = layer(x)
    stream = layer.stream(3)
    ys = np.stack([stream.step(x[:, t]) for t in range(T)], axis=1)
    _assert_equal(ys, out, layer.dtype, "batch_first outputs")
    _assert_equal(stream.state, hn, layer.dtype, "batch_first state")


@pytest.mark.parametrize("layer, B", [
    (fastrnn.LSTM(8, 8, 2, seed=0), 2), (fastrnn.GRU(8, 8, 3, seed=0), 2),
    # one layer: the engine writes out while its input projection still reads x
    (fastrnn.LSTM(16, 16, seed=1), 4), (fastrnn.GRU(256, 256, seed=1), 1),
    (fastrnn.RNN(64, 64, seed=2), 3),
], ids=["lstm-2layers", "gru-3layers", "lstm", "gru-256", "rnn"])
def test_out_may_be_the_input_buffer(layer, B):
    """In-place stepping (out=x when I == H_out), as a real-time loop may do, and
    out overlapping x in part: every step as if x had been read first."""
    x = _x(layer, B)
    out, _, _ = _call(layer, x)
    stream, shifted, flat = layer.stream(B), layer.stream(B), layer.stream(B)
    for t in range(T):
        buf = x[t].copy()
        assert stream.step(buf, out=buf) is buf
        _assert_equal(buf, out[t], layer.dtype, f"in-place step {t}")
        big = np.zeros((B + 1, layer.input_size), layer.dtype)
        big[:B] = x[t]
        assert shifted.step(big[:B], out=big[1:]) is not None
        _assert_equal(big[1:], out[t], layer.dtype, f"out one row after x, step {t}")
        if B == 1:  # unbatched steps, in place
            one = x[t, 0].copy()
            assert flat.step(one, out=one) is one
            _assert_equal(one, out[t, 0], layer.dtype, f"unbatched in-place step {t}")


def test_torch_tensors_as_steps_and_state():
    torch = need("torch")
    layer = _make("lstm")
    x = _x(layer, 2)
    s0 = _random_state(layer, 2)
    out, _, _ = _call(layer, x, s0)
    stream = layer.stream(2, state=tuple(torch.from_numpy(a) for a in s0))
    ys = [stream.step(torch.from_numpy(x[t]).requires_grad_(True)) for t in range(T)]
    _assert_equal(np.stack(ys), out, layer.dtype, "steps from torch tensors")


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2
                    or not os.path.isdir("/proc/self/task"),
                    reason="needs Linux and at least 2 CPUs")
def test_helpers_woken_after_sleeping_keep_the_process_affinity():
    """A stream's helper threads sleep between bursts of steps; when woken they may
    step off the caller's CPU (a momentary affinity change). Results stay exact and
    no thread is left with a narrowed affinity."""
    layer = fastrnn.LSTM(64, 128, seed=5)  # a step between the one-thread cut-off and OpenMP
    x = _x(layer, 1, T=30)
    out, hn, cn = _call(layer, x)
    before = fastrnn.get_num_threads()
    fastrnn.set_num_threads(2)
    try:
        stream = layer.stream(1)
        for burst in range(4):
            stream.reset()
            _assert_equal(_steps(stream, x), out, layer.dtype, f"outputs, burst {burst}")
            time.sleep(0.02)  # the helpers fall asleep; the next burst wakes them
    finally:
        fastrnn.set_num_threads(before)
    want = os.sched_getaffinity(0)
    for tid in os.listdir("/proc/self/task"):
        try:
            got = os.sched_getaffinity(int(tid))
        except (ProcessLookupError, PermissionError):
            continue
        assert got == want, f"thread {tid} kept affinity {sorted(got)}, not {sorted(want)}"


def test_one_stream_stepped_from_two_python_threads_refuses_not_hangs():
    """Two Python threads stepping one stream at once (its steps on helper threads:
    LSTM H=256, 2 threads) once published steps to the same helpers from both callers,
    which then spun forever (4 runs in 6). A stream carries one sequence, so the
    second caller is refused with a RuntimeError while a step runs, and every step
    that ran is a whole step: the state is that of the accepted steps alone, in
    order. In a subprocess: a hang fails the test, not the suite."""
    code = """
import json, threading, numpy as np, fastrnn
fastrnn.set_num_threads(2)
layer = fastrnn.LSTM(256, 256, seed=3)
s = layer.stream()
x = np.random.default_rng(0).standard_normal((2, 256)).astype(np.float32)
done, refused, lock = [], [0], threading.Lock()
def work(k):
    fastrnn.set_num_threads(2)
    for _ in range(300):
        try:
            s.step(x[k])
        except RuntimeError as e:
            assert "being stepped in another thread" in str(e), e
            with lock:
                refused[0] += 1
            continue
        with lock:
            done.append(k)
ts = [threading.Thread(target=work, args=(k,)) for k in (0, 1)]
[t.start() for t in ts]
[t.join() for t in ts]
one = layer.stream()
fastrnn.set_num_threads(1)
for k in done:
    one.step(x[k])
print(json.dumps([len(done), refused[0],
                  [bool(np.array_equal(a, b)) for a, b in zip(s.state, one.state)]]))
"""
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    n_done, n_refused, same = json.loads(proc.stdout.strip().splitlines()[-1])
    assert n_done + n_refused == 600 and n_done >= 300
    assert same == [True, True]


def test_streams_cannot_be_copied_or_pickled():
    """A stream's state lives in the engine; copying one once failed with a message
    about Cython internals. The error says what to do instead, and that works."""
    import copy
    import pickle

    layer = fastrnn.GRU(3, 4, seed=0)
    s = layer.stream()
    s.step(np.ones(3, np.float32))
    for how in (copy.copy, copy.deepcopy, pickle.dumps):
        with pytest.raises(TypeError, match=r"cannot be copied or pickled.*layer.stream"):
            how(s)
    twin = layer.stream(1, state=s.state)
    np.testing.assert_array_equal(twin.step(np.ones(3)), s.step(np.ones(3)))


def test_a_stream_built_half_way_raises_not_crashes():
    """step's common case runs in Cython on the stream's engine stream (StreamFront);
    one whose __init__ never ran, or whose engine stream is gone, must raise."""
    from fastrnn.stream import Stream

    x = np.ones((1, 3), np.float32)
    bare = Stream.__new__(Stream)
    with pytest.raises(AttributeError):
        bare.step(x)
    s = fastrnn.GRU(3, 4, seed=0).stream()
    s.step(x)
    c = s._c
    s._c = None
    with pytest.raises(AttributeError):
        s.step(x)
    with pytest.raises(TypeError):
        s._c = "not an engine stream"
    s._c = c
    assert s.step(x).shape == (1, 4)


def test_step_follows_weights_loaded_between_steps():
    """The fast path checks the layer's plan on every step: a load between two
    steps is used by the second (on a stream stepped only through step)."""
    layer = fastrnn.LSTM(3, 4, seed=0)
    other = fastrnn.LSTM(3, 4, seed=1)
    s, ref = layer.stream(), other.stream()
    x = np.ones((1, 3), np.float32)
    h0 = s.step(x)
    layer.load_state_dict(other.state_dict())
    ref.state = s.state
    np.testing.assert_array_equal(s.step(x), ref.step(x))
    assert not np.array_equal(h0, ref.step(x))
