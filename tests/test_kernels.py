"""The C kernels against the float64 NumPy oracle (fastrnn.reference), on every ISA path.

Every variant of SPEC §1 (RNN tanh/relu, LSTM, LSTM+projection, LSTM+peepholes,
both, GRU in both forms) is run on a seeded covering design of the other axes
(layers, directions, batch_first, bias, hidden and input sizes that hit every tile
tail, batch, steps, initial states, lengths, threads): every value of every axis,
and every pair of values of two axes, appears in at least one configuration of
each variant. Each (variant, ISA, dtype) test loops over that design; float64 must
match within 1e-12, float32 within ``f32_tolerance`` of the float64 reference.

Then the contracts that do not need the full design: input conversion (lists,
Fortran order, strides, float16, ints), inputs never modified, bitwise identity
across thread counts and batch positions, empty batches, NaN/Inf propagation, and
the packed GEMM micro-kernels through ``_kernels.gemm_test``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random

import numpy as np
import pytest
from _util import EPS32, VARIANTS, assert_close

import fastrnn
from fastrnn import _kernels, reference

ISA_INDEX = {"generic": 0, "avx2": 1, "avx512": 2}
DTYPES = ["float32", "float64"]

AXES = {
    "num_layers": [1, 2, 3],
    "bidirectional": [False, True],
    "batch_first": [False, True],
    "bias": [False, True],
    "hidden": [1, 5, 33, 257],
    "input": [1, 5, 33, 257],
    "B": [0, 1, 3, 17],
    "T": [1, 7, 50],
    "init_state": [False, True],
    "lengths": [False, True],
    "threads": [1, 2],
}


@pytest.fixture(autouse=True, scope="module")
def _single_threaded_blas():
    """The oracle's matmuls in one BLAS thread: on a small machine OpenBLAS's spinning
    threads and the engine's OpenMP threads otherwise fight for the cores."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is a test dependency
        yield
        return
    with threadpool_limits(1, user_api="blas"):
        yield


@contextlib.contextmanager
def threads(n: int):
    """n threads for the calls inside, even past this machine's cores (calls cap
    their teams at the cores; here the cap is at least n, so that teams of 3 and 4 run
    on a 2-core machine, their shares late and taken over by the others)."""
    before = fastrnn.get_num_threads()
    fastrnn.set_num_threads(n)
    _kernels._set_procs(max(n, os.cpu_count() or 1))
    try:
        yield
    finally:
        _kernels._set_procs(0)
        fastrnn.set_num_threads(before)


@pytest.fixture(autouse=True)
def _one_thread_unless_asked():
    """Tests run on one thread unless they ask for more (the design's threads axis,
    the invariance tests): a second thread adds nothing to what they check, and on a
    busy machine each OpenMP barrier can cost a scheduler slice."""
    with threads(1):
        yield


# --------------------------------------------------------------------------------------
# The covering design
# --------------------------------------------------------------------------------------


def _all_pairs(axes):
    names = list(axes)
    return {
        ((a, va), (b, vb))
        for a, b in itertools.combinations(names, 2)
        for va in axes[a]
        for vb in axes[b]
    }


def covering_design(axes, seed: int) -> list[dict]:
    """A strength-2 covering array (every pair of values of two axes in some row),
    built greedily AETG-style: each new row is the best of a few random candidates,
    each candidate filled axis by axis with the value covering most new pairs."""
    rnd = random.Random(seed)
    names = list(axes)
    uncovered = _all_pairs(axes)
    rows = []
    while uncovered:
        best, best_gain = None, -1
        for _ in range(30):
            order = names[:]
            rnd.shuffle(order)
            row = {}
            for name in order:
                values = axes[name][:]
                rnd.shuffle(values)

                def gain(v, name=name, row=row):
                    return sum(
                        (((name, v), (o, row[o])) if names.index(name) < names.index(o)
                         else ((o, row[o]), (name, v))) in uncovered
                        for o in row
                    )

                row[name] = max(values, key=gain)
            covered = {
                ((a, row[a]), (b, row[b])) for a, b in itertools.combinations(names, 2)
            } & uncovered
            if len(covered) > best_gain:
                best, best_gain = row, len(covered)
        uncovered -= {((a, best[a]), (b, best[b])) for a, b in itertools.combinations(names, 2)}
        rows.append(best)
    return rows


DESIGNS = {name: covering_design(AXES, seed=1000 + i) for i, name in enumerate(VARIANTS)}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_design_covers_every_pair(variant):
    rows = DESIGNS[variant]
    seen = {
        ((a, r[a]), (b, r[b])) for r in rows for a, b in itertools.combinations(list(AXES), 2)
    }
    assert _all_pairs(AXES) <= seen
    assert len(rows) <= 30  # keeps the file fast; greedy designs here have ~20-24 rows


# --------------------------------------------------------------------------------------
# Building and running one configuration
# --------------------------------------------------------------------------------------


def make_layer(variant: str, cfg: dict, dtype: str, seed: int = 0):
    cls, kw = VARIANTS[variant]
    kw = dict(kw)
    hidden = cfg["hidden"]
    if kw.pop("proj", False):
        # With a projection the axis value is the output size P (what h carries, the
        # K of W_hh and the N of W_hr); hidden_size is P + 4 so P < hidden_size.
        kw["proj_size"] = hidden
        hidden = hidden + 4
    return cls(cfg["input"], hidden, cfg["num_layers"], bias=cfg["bias"],
               batch_first=cfg["batch_first"], bidirectional=cfg["bidirectional"],
               dtype=dtype, seed=seed, **kw)


def reduction_size(layer) -> int:
    """The longest dot product in the network (for the float32 bound)."""
    h_out = layer.proj_size or layer.hidden_size
    k = max(layer.input_size, layer.hidden_size, h_out)
    if layer.num_layers > 1:
        k = max(k, layer.num_directions * h_out)
    return k


def random_lengths(rng, B: int, T: int) -> np.ndarray:
    """Random, unsorted lengths in [1, T] including 1 and T when B allows."""
    lens = rng.integers(1, T + 1, size=B)
    if B >= 2:
        lens[:2] = [1, T]
    elif B == 1:
        lens[0] = rng.choice([1, T])
    rng.shuffle(lens)
    if B >= 3 and np.all(np.diff(lens) >= 0):  # make sure it is not sorted
        lens = lens[::-1].copy()
    return lens


def make_inputs(layer, cfg: dict, seed: int = 1):
    """x, hx (None, h0 or (h0, c0)) and lengths for a configuration, already
    rounded to the layer dtype so the float64 oracle sees the same numbers."""
    rng = np.random.default_rng(seed)
    T, B, dt = cfg["T"], cfg["B"], layer.dtype
    shape = (B, T, layer.input_size) if layer.batch_first else (T, B, layer.input_size)
    x = rng.standard_normal(shape).astype(dt)
    hx = None
    if cfg["init_state"]:
        n = layer.num_directions * layer.num_layers
        h0 = (0.5 * rng.standard_normal((n, B, layer.proj_size or layer.hidden_size))).astype(dt)
        if layer.mode == "LSTM":
            c0 = (0.5 * rng.standard_normal((n, B, layer.hidden_size))).astype(dt)
            hx = (h0, c0)
        else:
            hx = h0
    lengths = random_lengths(rng, B, T) if cfg["lengths"] else None
    return x, hx, lengths


def assert_same_runs(runs, msg: str, equal_nan: bool = False):
    """Every run's (out, h_n, c_n) bitwise the first's."""
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            if a is not None:
                assert np.array_equal(a, b, equal_nan=equal_nan), msg


def run(layer, x, hx=None, lengths=None):
    """(out, h_n, c_n or None) from the engine."""
    out, state = layer(x, hx, lengths=lengths)
    if layer.mode == "LSTM":
        return out, state[0], state[1]
    return out, state, None


def run_reference(layer, x, hx=None, lengths=None):
    out, state = reference.forward(layer, x, hx, lengths=lengths, dtype=np.float64)
    if layer.mode == "LSTM":
        return out, state[0], state[1]
    return out, state, None


def check_against_reference(layer, got, want, lengths, what: str):
    k = reduction_size(layer)
    for name, a, e in zip(("out", "h_n", "c_n"), got, want):
        if e is None:
            assert a is None
            continue
        assert a.dtype == layer.dtype, f"{what} {name}: dtype {a.dtype}"
        assert a.flags.c_contiguous, f"{what} {name}: not C-contiguous"
        assert_close(a, e, layer.dtype, k, f"{what} {name}")
    if lengths is not None:
        out = got[0] if not layer.batch_first else got[0].transpose(1, 0, 2)
        T = out.shape[0]
        pad = np.arange(T)[:, None] >= np.asarray(lengths)[None, :]
        assert np.all(out[pad] == 0), f"{what}: output past a sequence's length is not 0"


_REFERENCE_CACHE: dict = {}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_against_reference(variant, dtype, isa):
    """Every configuration of the variant's covering design on this ISA path."""
    for i, cfg in enumerate(DESIGNS[variant]):
        layer = make_layer(variant, cfg, dtype, seed=i)
        x, hx, lengths = make_inputs(layer, cfg, seed=100 + i)
        key = (variant, dtype, i)
        if key not in _REFERENCE_CACHE:  # the oracle does not depend on the ISA
            _REFERENCE_CACHE[key] = run_reference(layer, x, hx, lengths)
        with threads(cfg["threads"]):
            got = run(layer, x, hx, lengths)
        check_against_reference(layer, got, _REFERENCE_CACHE[key], lengths,
                                f"{variant} {dtype} {isa} config {i} {cfg}")


# The engine projects the inputs of a chunk of steps at a time: about 1M values of the
# projection or 256k gathered inputs, but at least one step's rows. These two
# configurations span several chunks (1360 rows against chunks of ~500-1300 here)
# and hit the one-step-per-chunk floor (an 8192-wide input: 32 rows < B = 40).
CHUNKED = [
    dict(num_layers=2, bidirectional=True, batch_first=False, bias=True, hidden=257,
         input=33, B=17, T=80, init_state=True, lengths=True, threads=1),
    dict(num_layers=1, bidirectional=True, batch_first=True, bias=True, hidden=5,
         input=8192, B=40, T=4, init_state=False, lengths=True, threads=1),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_long_sequences_span_several_chunks(variant, dtype, isa):
    for i, cfg in enumerate(CHUNKED):
        layer = make_layer(variant, cfg, dtype, seed=i)
        x, hx, lengths = make_inputs(layer, cfg, seed=i)
        # keep the pre-activations O(1) with 8192 inputs (the float32 AVX saturation
        # bug above would otherwise turn this test into another reproducer of it)
        x = (x / np.sqrt(layer.input_size)).astype(layer.dtype)
        key = ("chunked", variant, dtype, i)
        if key not in _REFERENCE_CACHE:
            _REFERENCE_CACHE[key] = run_reference(layer, x, hx, lengths)
        with threads(cfg["threads"]):
            got = run(layer, x, hx, lengths)
        check_against_reference(layer, got, _REFERENCE_CACHE[key], lengths,
                                f"{variant} {dtype} {isa} chunked config {i}")


# --------------------------------------------------------------------------------------
# Input forms, unbatched input, inputs never modified
# --------------------------------------------------------------------------------------

SMALL = dict(num_layers=2, bidirectional=True, batch_first=False, bias=True, hidden=5,
             input=3, B=3, T=6, init_state=True, lengths=True, threads=1)


def _copy_args(x, hx, lengths):
    copies = [np.array(x, copy=True), None, None]
    if hx is not None:
        copies[1] = tuple(np.array(a, copy=True) for a in hx) if isinstance(hx, tuple) \
            else np.array(hx, copy=True)
    if lengths is not None:
        copies[2] = np.array(lengths, copy=True)
    return copies


def _assert_same_args(before, x, hx, lengths):
    assert np.array_equal(before[0], np.asarray(x), equal_nan=True), "x was modified"
    if hx is not None:
        for b, a in zip(before[1] if isinstance(hx, tuple) else [before[1]],
                        hx if isinstance(hx, tuple) else [hx]):
            assert np.array_equal(b, a), "an initial state was modified"
    if lengths is not None:
        assert np.array_equal(before[2], lengths), "lengths was modified"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_unbatched_input(variant, dtype, isa):
    cfg = dict(SMALL, B=1, lengths=False)
    layer = make_layer(variant, cfg, dtype)
    x, hx, _ = make_inputs(layer, cfg)
    x1 = x[:, 0]
    hx1 = None if hx is None else (
        tuple(a[:, 0] for a in hx) if isinstance(hx, tuple) else hx[:, 0])
    got = run(layer, x1, hx1)
    batched = run(layer, x, hx)
    n = layer.num_layers * layer.num_directions
    assert got[0].shape == (cfg["T"], batched[0].shape[-1])
    assert got[1].shape == (n, layer.proj_size or layer.hidden_size)
    for a, b in zip(got, batched):
        if b is not None:
            assert np.array_equal(a, b[:, 0]), "unbatched differs from the batch of one"
    want = run_reference(layer, x1, hx1)
    check_against_reference(layer, got, want, None, f"{variant} unbatched")
    # unbatched lengths: a scalar or a one-element list
    for lens in (4, [4], np.array([4])):
        out = run(layer, x1, hx1, lengths=lens)
        want = run_reference(layer, x1[:, None], None if hx is None else hx, lengths=[4])
        assert_close(out[0], want[0][:, 0], layer.dtype, reduction_size(layer), "unbatched+lengths")


def _unaligned(a):
    """A copy of a whose data sits one byte off its dtype's alignment."""
    raw = np.zeros(a.nbytes + 1, np.uint8)
    out = raw[1:].view(a.dtype).reshape(a.shape)
    out[...] = a
    assert not out.flags.aligned or a.size == 0
    return out


def _input_forms(x):
    """(name, array-like) holding the same numbers as x in other layouts/types."""
    f = np.asfortranarray(x)
    assert not f.flags.c_contiguous
    big = np.zeros((x.shape[0], 2 * x.shape[1], 2 * x.shape[2]), x.dtype)
    big[:, ::2, ::2] = x
    strided = big[:, ::2, ::2]
    assert not strided.flags.c_contiguous
    readonly = x.copy()
    readonly.flags.writeable = False
    # the same numbers stored in the other layout and viewed through a transpose
    transposed = np.ascontiguousarray(x.transpose(1, 0, 2)).transpose(1, 0, 2)
    return [
        ("list", x.tolist()),
        ("fortran", f),
        ("strided", strided),
        ("transposed", transposed),
        ("read-only", readonly),
        ("unaligned", _unaligned(x)),
        ("negative_strides", np.ascontiguousarray(x[::-1, ::-1, ::-1])[::-1, ::-1, ::-1]),
        ("float64" if x.dtype == np.float32 else "float32",
         x.astype(np.float64 if x.dtype == np.float32 else np.float32)),
    ]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_input_forms_and_no_mutation(variant, dtype):
    layer = make_layer(variant, SMALL, dtype)
    x, hx, lengths = make_inputs(layer, SMALL)
    base = run(layer, x, hx, lengths)
    for name, xa in _input_forms(x):
        want = base
        if name in ("float32", "float64"):  # the conversion rounds: same as rounding first
            want = run(layer, np.asarray(xa).astype(layer.dtype), hx, lengths)
        before = _copy_args(xa, hx, lengths)
        got = run(layer, xa, hx, lengths)
        _assert_same_args(before, xa, hx, lengths)
        for a, b in zip(got, want):
            if b is not None:
                assert np.array_equal(a, b), f"{name} input gives a different result"
                assert a.flags.c_contiguous and a.dtype == layer.dtype
    # float16 and integer input: converted to the layer dtype
    rng = np.random.default_rng(5)
    for xa in (x.astype(np.float16), rng.integers(-2, 3, size=x.shape).astype(np.int32),
               rng.integers(0, 3, size=x.shape).astype(np.uint8), np.ones(x.shape, np.int64)):
        before = _copy_args(xa, hx, lengths)
        got = run(layer, xa, hx, lengths)
        _assert_same_args(before, xa, hx, lengths)
        want = run(layer, xa.astype(layer.dtype), hx, lengths)
        for a, b in zip(got, want):
            if b is not None:
                assert np.array_equal(a, b), f"{xa.dtype} input gives a different result"
    # a broadcast (stride-0, read-only) view against its contiguous copy
    xb = np.broadcast_to(x[:, :1], x.shape)
    got, want = run(layer, xb, hx, lengths), run(layer, np.ascontiguousarray(xb), hx, lengths)
    for a, b in zip(got, want):
        if b is not None:
            assert np.array_equal(a, b), "broadcast input gives a different result"
    # states and lengths as lists, Fortran order and other dtypes
    if hx is not None:
        if isinstance(hx, tuple):
            forms = [tuple(a.tolist() for a in hx), tuple(np.asfortranarray(a) for a in hx),
                     tuple(_unaligned(a) for a in hx)]
        else:
            forms = [hx.tolist(), np.asfortranarray(hx), _unaligned(hx)]
        for h in forms:
            got = run(layer, x, h, lengths)
            for a, b in zip(got, base):
                if b is not None:
                    assert np.array_equal(a, b), "state as list/Fortran/unaligned differs"
    for lens in (lengths.tolist(), lengths.astype(np.int32), lengths.astype(np.uint16),
                 lengths.astype(np.float64)):
        got = run(layer, x, hx, lens)
        for a, b in zip(got, base):
            if b is not None:
                assert np.array_equal(a, b), f"lengths as {type(lens).__name__} differs"


def test_results_are_new_arrays():
    layer = fastrnn.LSTM(3, 4, seed=0)
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    out1, (h1, c1) = layer(x)
    out2, (h2, c2) = layer(x)
    for a, b in ((out1, out2), (h1, h2), (c1, c2)):
        assert not np.shares_memory(a, b)
        assert not np.shares_memory(a, x)
        assert a.flags.c_contiguous and a.flags.writeable


class _Subclass(np.ndarray):
    pass


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_engine_ready_input_takes_the_short_call(variant, dtype):
    """A call with nothing but an engine-ready x (a plain C-contiguous, aligned array
    of the layer dtype) goes through Plan.run, without the general checks; it must
    give what the general path gives (forced here by explicit zero states, which the
    engine copies in, where Plan.run starts from its own zeros), shapes included,
    for every layout."""
    for num_layers, bidir, batch_first, B in ((1, False, False, 3), (2, True, True, 2),
                                              (2, False, True, 1)):
        cfg = dict(SMALL, num_layers=num_layers, bidirectional=bidir, batch_first=batch_first,
                   B=B, T=6, hidden=17, input=5)
        layer = make_layer(variant, cfg, dtype)
        x, _, _ = make_inputs(layer, cfg)
        n = layer.num_directions * layer.num_layers
        one = np.ascontiguousarray(x[0] if batch_first else x[:, 0])
        for xa in (x, one):  # batched, and one unbatched sequence
            lead = (n,) if xa.ndim == 2 else (n, B)
            h0 = np.zeros(lead + (layer.proj_size or layer.hidden_size,), layer.dtype)
            zeros = (h0, np.zeros(lead + (layer.hidden_size,), layer.dtype)) \
                if layer.mode == "LSTM" else h0
            quick = layer._packed().run(xa, layer.batch_first)
            assert quick is not None, "an engine-ready x must take the short call"
            general = run(layer, xa, zeros)
            for a, b in zip(quick, general):
                if b is None:
                    assert a is None
                    continue
                assert a.shape == b.shape and a.dtype == b.dtype and a.flags.c_contiguous
                assert np.array_equal(a, b), f"{variant}: short and general calls differ"
            for a, b in zip(run(layer, xa), general):  # the public call takes it too
                assert (a is None and b is None) or np.array_equal(a, b)
    # anything else is left to the general path (None, nothing run)
    layer = make_layer(variant, dict(SMALL, hidden=8, input=5), dtype)
    x = np.ones((4, 2, 5), layer.dtype)
    other = np.float32 if layer.dtype == np.float64 else np.float64
    for xa in (x.tolist(), x.astype(other), np.asfortranarray(x), x[:, :, ::-1], x[..., :4],
               x[:0], x[:, :0], x[0, 0], x[None], _unaligned(x), x.view(_Subclass),
               x.astype(np.int32)):
        assert layer._packed().run(xa, False) is None, f"{getattr(xa, 'shape', xa)} taken"


# --------------------------------------------------------------------------------------
# Bitwise invariances: thread count and batch position
# --------------------------------------------------------------------------------------

# (hidden, input, B, T): a tile tail with a full batch, and H=512 at B=1 so the step's
# hidden-unit split really runs in parallel.
THREAD_SIZES = [(257, 33, 17, 7), (512, 64, 1, 5), (33, 5, 3, 9)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_bitwise_same_for_1_and_2_threads(variant, dtype, isa):
    for j, (H, I, B, T) in enumerate(THREAD_SIZES):
        cfg = dict(SMALL, hidden=H, input=I, B=B, T=T, num_layers=2, lengths=B > 1)
        layer = make_layer(variant, cfg, dtype, seed=j)
        x, hx, lengths = make_inputs(layer, cfg, seed=j)
        results = []
        for n in (1, 2, 1):
            with threads(n):
                assert fastrnn.get_num_threads() == n
                results.append(run(layer, x, hx, lengths))
        assert_same_runs(results, f"H={H} B={B}: results differ between thread counts",
                         equal_nan=True)


def test_bitwise_same_for_more_threads_than_cores(isa):
    """3 and 4 threads split the hidden units at other boundaries than 2 (and
    oversubscribe a 2-core machine): still the bits of 1 thread."""
    for variant in VARIANTS:
        for dtype in DTYPES:
            cfg = dict(SMALL, hidden=512, input=64, B=3, T=4, num_layers=1)
            layer = make_layer(variant, cfg, dtype)
            x, hx, lengths = make_inputs(layer, cfg)
            results = []
            for n in (1, 3, 4):
                with threads(n):
                    results.append(run(layer, x, hx, lengths))
            assert_same_runs(results, f"{variant} {dtype}: 3-4 threads differ")


@contextlib.contextmanager
def forced(setter, mode: int):
    """A path chosen by the CPU's vendor forced on (1), off (0) or left to the CPU
    (-1) for the block, then on again (the suite's setting,
    conftest._vendor_paths_everywhere)."""
    setter(mode)
    try:
        yield
    finally:
        setter(1)


def weave(mode: int):
    """Batch-1 weaving of the projection (engine.h, weaves)."""
    return forced(_kernels._set_weave, mode)


def prefetch_next(mode: int):
    """The next-panel prefetch of row tiles (engine.h, run_panel_rows)."""
    return forced(_kernels._set_prefetch_next, mode)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_next_panel_prefetch_keeps_the_bits(variant, dtype, isa):
    """AVX-512 row tiles of weights of 1 MB or more ask for the next panel ahead
    (engine.h, run_panel_rows; by default on Intel CPUs): the same bits with it
    forced on or off, at batches of 2 to 5 row tiles a panel, with lengths (both
    directions: the panels run backwards every other step), on 1 and 2 threads.
    W_hh of every variant here is past 1 MB in float32 (LSTM 4 x 260^2 values, GRU
    and RNN panels of 3 and 4 vectors)."""
    cfg = dict(hidden=260, input=40, num_layers=1, bidirectional=True, bias=True,
               batch_first=False)
    layer = make_layer(variant, cfg, dtype, seed=5)
    rng = np.random.default_rng(5)
    for B in (9, 16, 25):
        x = rng.standard_normal((6, B, 40)).astype(dtype)
        lengths = np.arange(B) % 6 + 1
        runs = []
        for mode in (1, 0):
            with prefetch_next(mode):
                for n in (1, 2):
                    with threads(n):
                        runs.append(run(layer, x, None, lengths))
        assert_same_runs(runs, f"{variant} {dtype} B={B}")


def test_vendor_paths_are_chosen_by_the_cpu_vendor():
    """By default only AMD CPUs weave the projection into the recurrent steps
    (measured to pay on Zen 4, to cost on an Intel Xeon) and only Intel CPUs ask for
    the next panel ahead (measured on the Xeon; engine.h); forcing either holds until
    it is set back."""
    info = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    amd, intel = "AuthenticAMD" in info, "GenuineIntel" in info
    for ctx, query, default in ((weave, _kernels._weaves, amd),
                                (prefetch_next, _kernels._prefetches_next, intel)):
        with ctx(-1):
            if amd or intel:
                assert query() == default
        with ctx(0):
            assert not query()
        assert query()


@contextlib.contextmanager
def batch_split(mode: int):
    _kernels._set_batch_split(mode)
    try:
        yield
    finally:
        _kernels._set_batch_split(-1)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_bitwise_same_with_the_batch_split(variant, isa):
    """Batches split in groups of rows, one per thread, each group run through every
    layer by its thread alone (with lengths: groups of about equal row-steps; a group
    of one row weaves its projection ahead): the bits of 1 thread, forced on any
    batch (mode 1), off (0), and where it is chosen (-1: 17 and 40 rows of small
    weights), for 2, 3 and 4 threads."""
    # (B, lengths, layers, bidirectional, hidden): at H=96 a group of one row, which is
    # not the batch's first, weaves its projection ahead (W_hh >= 32 KB)
    for j, (B, lens, layers, bidir, H) in enumerate(((2, False, 1, False, 96),
                                                     (3, True, 2, False, 96),
                                                     (17, True, 3, False, 16),
                                                     (40, False, 2, True, 16),
                                                     (5, True, 2, True, 16))):
        cfg = dict(SMALL, hidden=H, input=5, B=B, T=9 if H < 64 else 40, num_layers=layers,
                   bidirectional=bidir, lengths=lens)
        layer = make_layer(variant, cfg, "float32", seed=j)
        x, hx, lengths = make_inputs(layer, cfg, seed=j)
        want = run(layer, x, hx, lengths)
        for mode, n in itertools.product((1, 0, -1), (2, 3, 4)):
            with threads(n), batch_split(mode):
                got = run(layer, x, hx, lengths)
            for a, b in zip(want, got):
                if a is not None:
                    assert np.array_equal(a, b), f"B={B} split {mode}, {n} threads: differs"


def test_uneven_batch_split_splits_the_units_while_the_cores_are_close():
    """A batch whose rows do not share out evenly over the groups (the largest 1.2
    times its share or more: 3 rows on 2 threads) splits the units instead while the
    cores are close, and stays in groups while they are far apart; the same bits
    either way."""
    try:
        _kernels._set_far(0)
        assert [B for B in range(2, 12) if _kernels._split_uneven(B, 2)] == [3, 5]
        assert _kernels._split_uneven(5, 4) and _kernels._split_uneven(6, 4)
        assert not _kernels._split_uneven(8, 4) and not _kernels._split_uneven(3, 1)
        layer = fastrnn.LSTM(8, 128, seed=1)
        x = np.random.default_rng(1).standard_normal((12, 3, 8)).astype(np.float32)
        with threads(2):
            close = run(layer, x, None, None)
            _kernels._set_far(1)
            assert not _kernels._split_uneven(3, 2)
            far = run(layer, x, None, None)
        for a, b in zip(close, far):
            if a is not None:
                assert np.array_equal(a, b)
    finally:
        _kernels._set_far(0)


def test_batch_split_groups_balance_row_steps():
    """The split's groups (seen through the hook's forced mode on a batch whose
    lengths are all different) cover every row once: a sequence of length 1 beside
    long ones ends where the reference says, whichever group it falls in."""
    layer = fastrnn.GRU(3, 8, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((30, 7, 3)).astype(np.float32)
    lengths = np.array([30, 1, 17, 2, 29, 3, 30])
    with threads(4), batch_split(1):
        out, hn = layer(x, lengths=lengths)
    ref_out, ref_hn = reference.forward(layer, x, lengths=lengths, dtype=np.float64)
    assert_close(out, ref_out, np.float32, 8, "out")
    assert_close(hn, ref_hn, np.float32, 8, "h_n")
    assert np.all(out[lengths[None, :] <= np.arange(30)[:, None]] == 0)


def test_bitwise_same_threads_bidirectional_past_apart_cutoff(isa):
    """Bidirectional layers run their two directions side by side on 2 threads while
    W_hh is at most 6 MB, and one after the other on both threads past it (LSTM
    H=740: 8.4 MB): that path too gives the bits of 1 thread."""
    cfg = dict(SMALL, hidden=740, input=16, B=2, T=3, num_layers=2)
    layer = make_layer("lstm", cfg, np.float32)
    x, hx, lengths = make_inputs(layer, cfg)
    results = []
    for n in (1, 2):
        with threads(n):
            results.append(run(layer, x, hx, lengths))
    for a, b in zip(*results):
        if a is not None:
            assert np.array_equal(a, b), "1 and 2 threads differ"


# Batch 1 weaves each chunk's input projection into the previous
# chunk's recurrent tiles (csrc/kernels/tile.h, "projection ahead") when W_hh is at
# least 32 KB (every variant here but the last size's GRU and RNN) and the layer's
# input has more than half as many features as the recurrent product (and, on one
# thread, fewer than 3 times as many; engine.h, weaves): chunks of 16 steps or more,
# rows in pairs, blocks of 32 reduction steps. The last two sizes mix the paths: a
# first layer projected first under a woven second one, and a first layer woven on
# 2+ threads only. Sizes: T past several chunks with a last
# chunk of fewer row pairs than segments per step (projected the usual way) and
# with more, of odd and even rows; inputs shorter,
# longer and not a multiple of the block; two layers, both directions, a length
# shorter than T. A batch of 2 (no projection ahead) must give the same bits, and so
# must 2, 3 and 4 threads, which weave the segments of the panels each one runs (3 and
# 4 on two cores: shares that are late, so taken over by the others; with 4, each
# direction of a bidirectional layer on a team of 2), and so must the plain path with
# weaving turned off (only AMD CPUs weave by default; the suite forces it on,
# conftest._vendor_paths_everywhere).
AHEAD_SIZES = [  # (hidden, input, T, num_layers, bidirectional, length)
    (130, 70, 53, 2, True, None),
    (128, 20, 40, 1, False, 33),
    (150, 257, 35, 1, True, None),
    (140, 300, 70, 2, False, 61),
    (101, 70, 37, 1, False, None),  # odd K: one W_hh step left beside a segment's step
    (100, 40, 45, 2, False, 39),  # a small input: only the second layer weaves
    (48, 200, 50, 2, True, None),  # a wide input: the first layer weaves on 2+ threads
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_projection_ahead_bitwise(variant, dtype, isa):
    for j, (H, I, T, L, bidir, length) in enumerate(AHEAD_SIZES):
        cfg = dict(hidden=H, input=I, num_layers=L, bidirectional=bidir, bias=j % 2 == 0,
                   batch_first=False)
        layer = make_layer(variant, cfg, dtype, seed=j)
        rng = np.random.default_rng(j)
        x = rng.standard_normal((T, 1, I)).astype(dtype)
        lengths = None if length is None else np.array([length])
        got = run(layer, x, None, lengths)
        # the same sequence beside another one
        x2 = np.concatenate([x, rng.standard_normal((T, 1, I)).astype(dtype)], axis=1)
        lens2 = None if length is None else np.array([length, T])
        pair = run(layer, x2, None, lens2)
        with threads(2):
            two = run(layer, x, None, lengths)
        more = []
        for n in (3, 4):
            with threads(n):
                more.append(run(layer, x, None, lengths))
        with weave(0):
            plain = run(layer, x, None, lengths)
            with threads(2):
                plain2 = run(layer, x, None, lengths)
        for i, name in enumerate(("out", "h_n", "c_n")):
            if got[i] is None:
                continue
            assert np.array_equal(got[i][:, :1], pair[i][:, :1]), \
                f"{variant} {dtype} {j}: {name} in a batch"
            assert np.array_equal(got[i], plain[i]), f"{variant} {dtype} {j}: {name} plain"
            assert np.array_equal(got[i], plain2[i]), \
                f"{variant} {dtype} {j}: {name} plain, 2 threads"
            for n, other in zip((2, 3, 4), (two, *more)):
                assert np.array_equal(got[i], other[i]), \
                    f"{variant} {dtype} {j}: {name} on {n} threads"
        check_against_reference(layer, got, run_reference(layer, x, None, lengths), lengths,
                                f"{variant} {dtype} {j}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_wide_input_projection_spread_bitwise(variant, dtype, isa):
    """A layer whose recurrent step is too small to hand over (one thread steps it)
    projects a wide input on every thread (engine.h, project_chunk): the same bits
    as 1 thread, at 2-4 threads, with and without a length, two layers."""
    for j, (H, I, T, L, length) in enumerate([(24, 700, 90, 1, None), (16, 520, 130, 2, 101)]):
        cfg = dict(hidden=H, input=I, num_layers=L, bidirectional=False, bias=j == 0,
                   batch_first=False)
        layer = make_layer(variant, cfg, dtype, seed=j)
        x = np.random.default_rng(j).standard_normal((T, 1, I)).astype(dtype)
        lengths = None if length is None else np.array([length])
        got = run(layer, x, None, lengths)
        for n in (2, 3, 4):
            with threads(n):
                other = run(layer, x, None, lengths)
            for i, name in enumerate(("out", "h_n", "c_n")):
                if got[i] is not None:
                    assert np.array_equal(got[i], other[i]), \
                        f"{variant} {dtype} {j}: {name} on {n} threads"
        check_against_reference(layer, got, run_reference(layer, x, None, lengths), lengths,
                                f"{variant} {dtype} {j}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_bitwise_same_at_any_batch_position(variant, dtype, isa):
    """One sequence gives the same bits wherever it sits in a batch (and whatever
    its neighbours are), with its own lengths and initial state."""
    cfg = dict(SMALL, hidden=33, input=5, B=17, T=9)
    layer = make_layer(variant, cfg, dtype)
    x, hx, lengths = make_inputs(layer, cfg)
    out, hn, cn = run(layer, x, hx, lengths)
    rng = np.random.default_rng(7)
    perm = rng.permutation(cfg["B"])
    xp = x[:, perm]
    hxp = None if hx is None else (
        tuple(a[:, perm] for a in hx) if isinstance(hx, tuple) else hx[:, perm])
    out_p, hn_p, cn_p = run(layer, xp, hxp, lengths[perm])
    assert np.array_equal(out_p, out[:, perm])
    assert np.array_equal(hn_p, hn[:, perm])
    if cn is not None:
        assert np.array_equal(cn_p, cn[:, perm])
    # sequence 0 at every position of a 17-batch of other sequences
    other = rng.standard_normal(x.shape).astype(layer.dtype)
    for pos in (0, 5, 16):
        x2 = other.copy()
        x2[:, pos] = x[:, 0]
        lens2 = np.full(cfg["B"], cfg["T"])
        lens2[pos] = lengths[0]
        hx2 = None
        if hx is not None:
            parts = hx if isinstance(hx, tuple) else (hx,)
            moved = []
            for a in parts:
                m = np.zeros_like(a)
                m[:, pos] = a[:, 0]
                moved.append(m)
            hx2 = tuple(moved) if isinstance(hx, tuple) else moved[0]
        o2, h2, c2 = run(layer, x2, hx2, lens2)
        assert np.array_equal(o2[:, pos], out[:, 0]), f"position {pos}"
        assert np.array_equal(h2[:, pos], hn[:, 0]), f"position {pos}"
        if cn is not None:
            assert np.array_equal(c2[:, pos], cn[:, 0]), f"position {pos}"
    # and alone, or in a batch of another size: each (sequence, unit) dot product is
    # computed in one fixed order whatever the batch (the engine's design; relax this
    # to assert_close if a batch-size-dependent kernel is ever introduced)
    for B in (1, 4):
        sub = None if hx is None else (
            tuple(a[:, :B] for a in hx) if isinstance(hx, tuple) else hx[:, :B])
        o3, h3, c3 = run(layer, x[:, :B], sub, lengths[:B])
        assert np.array_equal(o3, out[:, :B]), f"batch of {B}"
        assert np.array_equal(h3, hn[:, :B]), f"batch of {B}"
        if cn is not None:
            assert np.array_equal(c3, cn[:, :B]), f"batch of {B}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", ["lstm", "lstm_proj", "rnn_tanh", "gru_lbr_false"])
def test_every_row_tile_shape_bitwise(variant, dtype, isa):
    """Batches of 1-8, 12 and 16 rows, whose steps run every row tile the kernels
    have for 4-vector W_hh panels (1-3 rows over both halves of a split panel, 4-6
    rows a half at a time on AVX2; one row over 1-4 panels at once): every row equals
    the same sequence run alone, bitwise, and the float64 reference."""
    # 120 units: 15 panels of one unit block (LSTM), 230 KB of W_hh, so one row takes
    # 4 panels at a time and then 3; 2-layer, so the second layer's K is h_out
    cfg = dict(SMALL, hidden=120, input=7, B=16, T=5, num_layers=2)
    layer = make_layer(variant, cfg, dtype)
    x, hx, _ = make_inputs(layer, cfg)
    alone = [run(layer, x[:, b:b + 1]) for b in range(cfg["B"])]
    for B in (1, 2, 3, 4, 5, 6, 7, 8, 12, 16):
        for n in (1, 2):
            with threads(n):
                got = run(layer, x[:, :B])
            for b in range(B):
                for i, name in enumerate(("out", "h_n", "c_n")):
                    if got[i] is not None:
                        assert np.array_equal(got[i][:, b:b + 1], alone[b][i]), \
                            f"{variant} {dtype}: row {b} of {B} on {n} threads, {name}"
    check_against_reference(layer, got, run_reference(layer, x), None, f"{variant} {dtype}")


# --------------------------------------------------------------------------------------
# Empty batches
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_zero_size_batch(variant, batch_first):
    cfg = dict(SMALL, B=0, batch_first=batch_first)
    for dtype in DTYPES:
        layer = make_layer(variant, cfg, dtype)
        x, hx, lengths = make_inputs(layer, cfg)
        n = layer.num_layers * layer.num_directions
        HO = layer.proj_size or layer.hidden_size
        T = cfg["T"]
        for h in (None, hx):
            for lens in (None, lengths, []):
                out, hn, cn = run(layer, x, h, lens)
                D = layer.num_directions
                assert out.shape == ((0, T, D * HO) if batch_first else (T, 0, D * HO))
                assert hn.shape == (n, 0, HO)
                assert out.dtype == hn.dtype == layer.dtype
                if layer.mode == "LSTM":
                    assert cn.shape == (n, 0, layer.hidden_size) and cn.dtype == layer.dtype


# --------------------------------------------------------------------------------------
# NaN and Inf propagate as in PyTorch
# --------------------------------------------------------------------------------------


def assert_same_nonfinite(actual, expected, dtype, k, what):
    """Same NaN, +inf and -inf positions; the finite values close."""
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    for test in (np.isnan, np.isposinf, np.isneginf):
        assert np.array_equal(test(actual), test(expected)), f"{what}: {test.__name__} pattern"
    fin = np.isfinite(expected)
    assert_close(actual[fin], expected[fin], dtype, k, what)


def _saturation_params(variants=("rnn_tanh",)):
    """(variant, isa, dtype) for every available ISA."""
    params = []
    for variant in variants:
        for name in ISA_INDEX:
            for dtype in DTYPES:
                marks = []
                if name not in fastrnn.config()["isa_available"]:
                    marks.append(pytest.mark.skip(reason=f"{name} not available"))
                params.append(pytest.param(variant, name, dtype, marks=marks,
                                           id=f"{variant}-{name}-{dtype}"))
    return params


@contextlib.contextmanager
def on_isa(name: str):
    before = _kernels.get_isa()
    _kernels._set_isa(ISA_INDEX[name])
    try:
        yield
    finally:
        _kernels._set_isa(before)


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_propagates_per_sequence(variant, dtype, isa):
    """A NaN at step t of sequence b makes that sequence's later outputs (and, in
    the reverse direction, earlier ones) NaN; other sequences stay finite; a NaN in
    the padding past a sequence's length is never read."""
    for bidirectional in (False, True):
        cfg = dict(SMALL, bidirectional=bidirectional, num_layers=2, B=4, T=6, lengths=False)
        layer = make_layer(variant, cfg, dtype)
        x, hx, _ = make_inputs(layer, cfg)
        x[3, 1, 0] = np.nan  # step 3 of sequence 1
        lengths = np.array([6, 6, 6, 2])
        x[4, 3, :] = np.nan  # padding of sequence 3
        got = run(layer, x, hx, lengths)
        want = run_reference(layer, x, hx, lengths)
        k = reduction_size(layer)
        for name, a, e in zip(("out", "h_n", "c_n"), got, want):
            if e is not None:
                assert_same_nonfinite(a, e, layer.dtype, k, f"{variant} {name}")
        out = got[0]
        H2 = out.shape[-1] // layer.num_directions
        assert np.all(np.isnan(out[3:, 1, :H2])), "forward: NaN from step 3 on"
        if not bidirectional:
            assert np.all(np.isfinite(out[:3, 1])), "finite before step 3"
        else:  # the reverse half carries the NaN back to step 0, and layer 2 mixes both
            assert np.all(np.isnan(out[:, 1]))
        for b in (0, 2, 3):
            assert np.all(np.isfinite(out[:, b])), f"sequence {b} must stay finite"


@pytest.mark.parametrize("variant,isa_name,dtype", _saturation_params(list(VARIANTS)))
def test_inf_and_huge_inputs_saturate(variant, isa_name, dtype):
    """±Inf and huge inputs saturate the gates as in the reference (and torch):
    tanh(±inf) = ±1 and sigmoid(±inf) = 1/0 keep LSTM/GRU/tanh-RNN outputs finite."""
    with on_isa(isa_name):
        cfg = dict(SMALL, B=3, T=5, lengths=False, init_state=False)
        layer = make_layer(variant, cfg, dtype)
        x, hx, _ = make_inputs(layer, cfg)
        x[1, 0, 0] = np.inf
        x[2, 1, 1] = -np.inf
        x[:, 2] *= 1e4
        got = run(layer, x, hx)
        with np.errstate(invalid="ignore", over="ignore"):  # relu: inf - inf in the oracle
            want = run_reference(layer, x, hx)
        k = reduction_size(layer)
        for name, a, e in zip(("out", "h_n", "c_n"), got, want):
            if e is not None:
                assert_same_nonfinite(a, e, layer.dtype, k, f"{variant} {name}")


@pytest.mark.parametrize("variant,isa_name,dtype", _saturation_params())
def test_large_preactivation_minimal(variant, isa_name, dtype):
    """Minimal reproducer of the saturation case: a one-unit tanh RNN, weight 1,
    input 100: h = tanh(100) = 1."""
    with on_isa(isa_name):
        layer = fastrnn.RNN(1, 1, bias=False, dtype=dtype)
        layer.load_state_dict({"weight_ih_l0": np.ones((1, 1)), "weight_hh_l0": np.zeros((1, 1))})
        out, h = layer(np.full((1, 1, 1), 100.0))
        assert out[0, 0, 0] == 1.0 and h[0, 0, 0] == 1.0


# --------------------------------------------------------------------------------------
# The packed GEMM micro-kernels
# --------------------------------------------------------------------------------------

GEMM_M = range(1, 14)
GEMM_N = [1, 5, 16, 17, 63, 64, 65, 257]
GEMM_K = [1, 3, 64, 257]


@pytest.mark.parametrize("n", [1, 2], ids=["threads1", "threads2"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_tiles(isa, dtype, n):
    """c = a @ b_t.T + bias for M in 1..13 and N, K around every tile width: within the
    rigorous dot-product bound (K+1) eps (|a| @ |b_t|.T + |bias|), whatever the
    summation order; a wrong index or a dropped tail gives errors of order 1."""
    dt = np.dtype(dtype)
    eps = float(np.finfo(dt).eps)
    rng = np.random.default_rng(3)
    A = rng.standard_normal((13, 257)).astype(dt)
    Bt = rng.standard_normal((257, 257)).astype(dt)
    bias_all = rng.standard_normal(257).astype(dt)
    for M, N, K in itertools.product(GEMM_M, GEMM_N, GEMM_K):
        a = np.ascontiguousarray(A[:M, :K])
        b_t = np.ascontiguousarray(Bt[:N, :K])
        bias = np.ascontiguousarray(bias_all[:N])
        c = np.full((M, N), np.nan, dt)
        a0, b0 = a.copy(), b_t.copy()
        _kernels.gemm_test(ISA_INDEX[isa], a, b_t, bias, c, n)
        a64, b64 = a.astype(np.float64), b_t.astype(np.float64)
        want = a64 @ b64.T + bias
        bound = (K + 1) * eps * (np.abs(a64) @ np.abs(b64).T + np.abs(bias.astype(np.float64)))
        err = np.abs(c - want)
        assert np.all(err <= bound), (
            f"M={M} N={N} K={K}: max error {err.max():.3g}, bound {bound.min():.3g}")
        assert np.array_equal(a, a0) and np.array_equal(b_t, b0)
    # and bitwise the same for 1 and 2 threads (the split is over outputs)
    a, b_t, bias = A[:13].copy(), Bt.copy(), bias_all.copy()
    c1, c2 = np.empty((13, 257), dt), np.empty((13, 257), dt)
    _kernels.gemm_test(ISA_INDEX[isa], a, b_t, bias, c1, 1)
    _kernels.gemm_test(ISA_INDEX[isa], a, b_t, bias, c2, 2)
    assert np.array_equal(c1, c2)


def test_f32_tolerance_is_meaningful():
    """The float32 bound stays far below what a wrong gate or index produces."""
    from _util import f32_tolerance

    assert f32_tolerance(1) == 32 * EPS32
    assert f32_tolerance(257) < 1e-4
