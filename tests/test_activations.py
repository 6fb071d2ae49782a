"""The vectorised sigmoid, tanh and exp of every ISA path, in ulps.

``_kernels.activation(isa, kind, x, y)`` runs an ISA's vector code (csrc/kernels/
activ.h) over an array. Each is compared with an oracle computed in extended
precision (np.longdouble: the x87 80-bit format on x86-64, 64 mantissa bits, so the
oracle's own error is ~2^-11 ulp of float64; on platforms where longdouble is just
float64 the oracle is float64 and one ulp is added to the float64 bounds).

Error measure: |y - ref| / ulp(ref rounded to the dtype) where the true result is a
normal number; where it is subnormal (or 0) an absolute error of at most the
smallest normal number (the kernels may flush there: AVX's rcp gives 0 for
1/(>2^126), and exp is clamped so 2^n stays finite).

Bounds: measured maxima over the grid of ``dense_grid`` (x86-64, gcc 12.2), in
brackets the worst seen on a finer 2e6-point grid over [-100, 100] / [-760, 760];
the asserted bound sits just above, leaving room for other compilers' contraction
and for the oracle:

=======  ======  ====================  ====================  ====================  =====
dtype    kind    generic               avx2                  avx512                bound
=======  ======  ====================  ====================  ====================  =====
float32  sigm.   2.39 (2.47)           2.39 (2.47)           2.39 (2.47)           3
float32  tanh    2.58                  2.58                  2.58                  3
float32  exp     1.21                  0.92                  0.92                  1.5
float64  sigm.   1.93 (2.28)           1.95 (2.28)           1.95 (2.28)           3
float64  tanh    3.05                  3.05                  3.05                  3.5
float64  exp     1.13                  0.86                  0.86                  1.5
=======  ======  ====================  ====================  ====================  =====

Where they sit: tanh at |x| ~ 0.22, where expm1(2|x|) switches from n = 0 to n = 1
in its range reduction and e / (e + 2) adds the reciprocal's error; sigmoid at
x ~ -16.6 / -36.7, where exp's error and the reciprocal's add up.
exp here is the engine's internal one: its input is clamped just below log(max)
(88.7 / 709.7) so that e^x stays finite inside sigmoid and tanh; above the clamp it
returns e^88.7 / e^709.7 rather than inf. Subnormal results: at most 1.2e-38 (float32
AVX: flushed to 0) and 5.6e-309 (float64: exp's clamp), below the smallest normal.
"""

from __future__ import annotations

import numpy as np
import pytest
from _util import available_isas

import fastrnn
from fastrnn import _kernels

ISA_INDEX = {"generic": 0, "avx2": 1, "avx512": 2}
KINDS = {"sigmoid": 0, "tanh": 1, "exp": 2}
DTYPES = [np.float32, np.float64]

EXTENDED = np.finfo(np.longdouble).nmant >= 63
ORACLE = np.longdouble if EXTENDED else np.float64

# exp's input clamp in csrc/kernels/activ.h (FRN_EXP_HI)
EXP_CLAMP = {"float32": 88.7, "float64": 709.7}

BOUND_ULP = {
    ("sigmoid", np.float32): 3.0,
    ("sigmoid", np.float64): 3.0,
    ("tanh", np.float32): 3.0,
    ("tanh", np.float64): 3.5,
    ("exp", np.float32): 1.5,
    ("exp", np.float64): 1.5,
}


def bound(kind, dt) -> float:
    b = BOUND_ULP[(kind, dt)]
    return b if EXTENDED or dt == np.float32 else b + 1.0


def params(kinds=tuple(KINDS)):
    """(isa, dtype, kind) for every available ISA."""
    out = []
    available = available_isas()
    for isa in ISA_INDEX:
        for dt in DTYPES:
            for kind in kinds:
                marks = []
                if isa not in available:
                    marks.append(pytest.mark.skip(reason=f"{isa} not available"))
                out.append(pytest.param(isa, dt, kind, marks=marks,
                                        id=f"{isa}-{np.dtype(dt).name}-{kind}"))
    return out


def act(isa: str, kind: str, x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x)
    y = np.full_like(x, -12345.0)
    _kernels.activation(ISA_INDEX[isa], KINDS[kind], x, y)
    return y


def oracle(kind: str, x: np.ndarray) -> np.ndarray:
    x = x.astype(ORACLE)
    with np.errstate(over="ignore", under="ignore"):
        if kind == "tanh":
            return np.tanh(x)
        if kind == "exp":
            return np.exp(x)
        e = np.exp(-np.abs(x))  # stable sigmoid: never overflows
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def errors(y, ref, dt):
    """(ulp error where ref is normal, absolute error where it is subnormal/0)."""
    fi = np.finfo(dt)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        spacing = np.spacing(np.abs(ref.astype(dt))).astype(ORACLE)
        diff = np.abs(y.astype(ORACLE) - ref)
    normal = np.abs(ref) >= fi.smallest_normal
    return np.where(normal, diff / spacing, 0), np.where(normal, 0, diff)


def dense_grid(dt, kind):
    """1e6 points over [-20, 20], 1e5 over the saturating tails, and log-spaced
    tiny and huge magnitudes of both signs (all representable in dt)."""
    tail = 100.0 if dt == np.float32 else 760.0
    top = 30 if dt == np.float32 else 300
    mags = np.geomspace(10.0**-top, 10.0**top, 20001)
    with np.errstate(over="ignore"):
        parts = [
            np.linspace(-20, 20, 1_000_001),
            np.linspace(-tail, -20, 50_001),
            np.linspace(20, tail, 50_001),
            mags,
            -mags,
        ]
        x = np.concatenate(parts).astype(dt)
    x = x[np.isfinite(x)]
    if kind == "exp":  # below the engine's clamp (see the module docstring)
        x = x[x < EXP_CLAMP[np.dtype(dt).name]]
    return x


@pytest.mark.parametrize("isa,dt,kind", params())
def test_ulp_error_dense_grid(isa, dt, kind):
    x = dense_grid(dt, kind)
    x0 = x.copy()
    y = act(isa, kind, x)
    assert np.array_equal(x, x0), "the input was modified"
    assert not np.isnan(y).any(), f"NaN at x = {x[np.isnan(y)][:5]}"
    ulp, absolute = errors(y, oracle(kind, x), dt)
    worst = int(np.argmax(ulp))
    b = bound(kind, dt)
    assert ulp[worst] <= b, f"{kind}: {ulp[worst]:.3f} ulp at x = {x[worst]!r} (bound {b})"
    tiny = np.finfo(dt).smallest_normal
    worst_abs = int(np.argmax(absolute))
    assert absolute[worst_abs] <= tiny, (
        f"{kind}: subnormal result off by {absolute[worst_abs]:.3g} at x = {x[worst_abs]!r}")


@pytest.mark.parametrize("isa,dt,kind", params())
def test_zero_and_nan(isa, dt, kind):
    x = np.array([0.0, -0.0, np.nan, -np.nan, np.nan, 1.0], dt)
    y = act(isa, kind, x)
    zero = {"sigmoid": 0.5, "tanh": 0.0, "exp": 1.0}[kind]
    assert y[0] == zero and y[1] == zero, f"{kind}(±0) = {y[:2]}"
    # tanh(-0) is +0 on every path (the Taylor form x + x^3 p(x^2) loses the sign
    # of zero) where PyTorch keeps -0; equal as numbers, so the sign is not asserted.
    assert np.all(np.isnan(y[2:5])), f"{kind}(nan) = {y[2:5]}"
    assert np.isfinite(y[5])
    # a NaN does not leak into its vector neighbours
    x = np.linspace(-3, 3, 37).astype(dt)
    x[::5] = np.nan
    y = act(isa, kind, x)
    assert np.array_equal(np.isnan(y), np.isnan(x))


@pytest.mark.parametrize(
    "isa,dt", [pytest.param(*p.values[:2], marks=p.marks, id=p.id) for p in params(("exp",))])
def test_exp_limits(isa, dt):
    fi = np.finfo(dt)
    x = np.array([np.inf, -np.inf, fi.max, -fi.max, 1e4, -1e4,
                  np.log(fi.max) * 1.001, np.log(fi.smallest_subnormal) * 1.01], dt)
    y = act(isa, "exp", x)
    # above the clamp: e^clamp, finite (see the module docstring); below: 0
    top = np.exp(np.longdouble(EXP_CLAMP[np.dtype(dt).name]))
    assert np.all(np.isfinite(y))
    assert np.all(np.abs(y[0::2] / top - 1) < 1e-5), y[0::2]
    assert list(y[1::2]) == [0.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("isa,dt,kind", params(("sigmoid", "tanh")))
def test_saturation(isa, dt, kind):
    """tanh(±large) == ±1 and sigmoid(large) == 1 exactly; sigmoid(-large) is tiny
    and >= 0; ±inf included."""
    fi = np.finfo(dt)
    # from where the exact result rounds to ±1 in dt, up to the largest finite value
    start = 10.0 if dt == np.float32 else 20.0
    if kind == "sigmoid":
        start = 17.0 if dt == np.float32 else 37.0
    big = np.concatenate([np.linspace(start, 200, 10_001), np.geomspace(200, fi.max / 4, 1001),
                          [fi.max, np.inf]]).astype(dt)
    hi, lo = act(isa, kind, big), act(isa, kind, -big)
    if kind == "tanh":
        assert np.all(hi == 1), f"tanh(x) != 1 at x = {big[hi != 1][:5]}"
        assert np.all(lo == -1), f"tanh(-x) != -1 at x = {big[lo != -1][:5]}"
    else:
        assert np.all(hi == 1), f"sigmoid(x) != 1 at x = {big[hi != 1][:5]}"
        assert np.all((lo >= 0) & (lo <= np.exp(-start) * 1.01)), \
            f"sigmoid(-x) not tiny and >= 0 at x = {big[~((lo >= 0) & (lo < 1e-7))][:5]}"
        # past the clamp it stays at most the smallest normal
        far = -big[big > (100 if dt == np.float32 else 750)]
        assert np.all(act(isa, kind, far) <= fi.smallest_normal)


@pytest.mark.parametrize("isa,dt,kind", params(("tanh",)))
def test_tanh_is_odd(isa, dt, kind):
    x = np.linspace(0, 40, 400_001).astype(dt)  # below the float32 AVX saturation bug
    x = np.concatenate([x, np.geomspace(1e-30, 1, 1001).astype(dt)])
    pos, neg = act(isa, kind, x), act(isa, kind, -x)
    bad = pos != -neg
    assert not bad.any(), f"tanh(-x) != -tanh(x) at x = {x[bad][:5]}"
    assert np.all(np.diff(pos[:400_001]) >= 0), "tanh must be monotone"


@pytest.mark.parametrize("isa,dt,kind", params(("sigmoid",)))
def test_sigmoid_symmetry(isa, dt, kind):
    """sigmoid(-x) = 1 - sigmoid(x) to within the bound (not bitwise: 1 - s loses
    the small one's precision)."""
    x = np.linspace(-15, 15, 300_001).astype(dt)
    s, t = act(isa, kind, x), act(isa, kind, -x)
    eps = np.finfo(dt).eps
    assert np.all(np.abs(s + t - 1) <= 4 * eps)
    assert np.all(np.diff(s) >= 0), "sigmoid must be monotone"


@pytest.mark.parametrize("isa,dt,kind", params())
def test_any_length_and_no_overrun(isa, dt, kind):
    """Lengths that are not a multiple of the vector width (4, 8, 16): every element
    right, and nothing written past the end of y (a view into a sentinel buffer)."""
    rng = np.random.default_rng(0)
    pool = rng.uniform(-10, 10, 2000).astype(dt)
    ref = oracle(kind, pool)
    for n in list(range(0, 41)) + [63, 65, 127, 129, 1001]:
        x = pool[:n].copy()
        buf = np.full(n + 40, 7.0, dt)
        _kernels.activation(ISA_INDEX[isa], KINDS[kind], x, buf[:n])
        assert np.all(buf[n:] == 7.0), f"n={n}: wrote past the end"
        ulp, _ = errors(buf[:n], ref[:n], dt)
        assert ulp.max(initial=0) <= bound(kind, dt), f"n={n}"
        # the same value whatever its position in the vector (head or tail lane)
        if n:
            assert np.array_equal(buf[:n], act(isa, kind, pool[:2000])[:n])


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("kind", list(KINDS))
def test_isas_agree(dt, kind):
    """Every path within the bound of the oracle on the same points; in float64,
    where the reciprocal is an exact division on every path, AVX2 and AVX-512 run
    the same operations and agree bitwise (float32 differs: rcp_ps + two Newton
    steps against rcp14 + one)."""
    x = np.linspace(-20, 20, 100_001).astype(dt)
    ys = {isa: act(isa, kind, x) for isa in available_isas()}
    if "avx2" in ys and "avx512" in ys and dt == np.float64:
        assert np.array_equal(ys["avx2"], ys["avx512"])
    for a in ys.values():
        ulp, _ = errors(a, oracle(kind, x), dt)
        assert ulp.max() <= bound(kind, dt)


def test_config_lists_the_isas():
    cfg = fastrnn.config()
    assert cfg["isa"] in cfg["isa_available"]
    assert set(cfg["isa_available"]) <= set(ISA_INDEX)
