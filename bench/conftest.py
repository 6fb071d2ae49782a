"""pytest-benchmark setup for fastrnn's micro-benchmarks.

Run from outside the source tree, e.g.::

    python -m pytest bench -q -p no:cacheprovider --benchmark-only

Every engine runs with the same thread count: FASTRNN_BENCH_THREADS (default 1),
given to fastrnn.set_num_threads and torch.set_num_threads. ``fastrnn bench`` is
the full comparison (more sizes, ONNX Runtime, machine yardsticks); these tests
are the same cases in pytest-benchmark form, for its history and comparison tools.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import fastrnn
from fastrnn import reference

THREADS = int(os.environ.get("FASTRNN_BENCH_THREADS", "1"))
T = 100
SEED = 0
EPS32 = float(np.finfo(np.float32).eps)


def pytest_report_header(config):
    cfg = fastrnn.config()
    return [f"fastrnn {cfg['version']}: isa={cfg['isa']} threads={THREADS} "
            "(FASTRNN_BENCH_THREADS)"]


@pytest.fixture(autouse=True, scope="session")
def _threads():
    """The same thread count for every engine; restored afterwards."""
    before = fastrnn.get_num_threads()
    fastrnn.set_num_threads(THREADS)
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        torch_before = torch.get_num_threads()
        torch.set_num_threads(THREADS)
    yield THREADS
    fastrnn.set_num_threads(before)
    if torch is not None:
        torch.set_num_threads(torch_before)


@pytest.fixture
def torch():
    """torch, or skip the test when it is not installed."""
    return pytest.importorskip("torch")


def make_model(cell: str, hidden, batch: int, use_torch: bool):
    """A one-layer float32 network and its input (T, B, I); ``hidden`` is H (and
    I = H) or a pair (I, H).

    Returns ``(layer, module, x)``: the fastrnn layer is made from the torch
    module with ``from_torch`` when torch is wanted (module None otherwise).
    """
    inputs, hidden = hidden if isinstance(hidden, tuple) else (hidden, hidden)
    module = None
    if use_torch:
        import torch

        torch.manual_seed(SEED)
        module = getattr(torch.nn, cell)(inputs, hidden).eval()
        layer = getattr(fastrnn, cell).from_torch(module)
    else:
        layer = getattr(fastrnn, cell)(inputs, hidden, seed=SEED)
    x = np.random.default_rng(SEED).standard_normal((T, batch, inputs)).astype(np.float32)
    return layer, module, x


def assert_matches_reference(out, layer, x):
    """``out`` (steps, B, H) against the float64 reference on the same steps.

    Tolerance 32·eps·sqrt(H) on |out − ref| / max(1, |ref|), as in the tests.
    """
    expected = reference.forward(layer, x[: len(out)], dtype=np.float64)[0]
    out = np.asarray(out, np.float64)
    assert out.shape == expected.shape
    err = float(np.max(np.abs(out - expected) / np.maximum(1.0, np.abs(expected))))
    tol = 32.0 * EPS32 * np.sqrt(layer.hidden_size)
    assert err <= tol, f"max scaled error {err:.3g} > {tol:.3g}"
