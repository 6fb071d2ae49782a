"""Helpers shared by the tests."""

from __future__ import annotations

import importlib
import os

import numpy as np
import pytest

import fastrnn

EPS32 = float(np.finfo(np.float32).eps)


# Every variant of SPEC §1: name -> (class, constructor keywords); "proj" asks the
# test to pick a proj_size, "peephole" is the layer's own keyword.
VARIANTS = {
    "rnn_tanh": (fastrnn.RNN, dict(nonlinearity="tanh")),
    "rnn_relu": (fastrnn.RNN, dict(nonlinearity="relu")),
    "lstm": (fastrnn.LSTM, {}),
    "lstm_proj": (fastrnn.LSTM, dict(proj=True)),
    "lstm_peephole": (fastrnn.LSTM, dict(peephole=True)),
    "lstm_peephole_proj": (fastrnn.LSTM, dict(peephole=True, proj=True)),
    "gru": (fastrnn.GRU, dict(linear_before_reset=True)),
    "gru_lbr_false": (fastrnn.GRU, dict(linear_before_reset=False)),
}


def available_isas() -> list[str]:
    return list(fastrnn.config()["isa_available"])


def need(module: str):
    """Import an optional peer (torch, onnx, onnxruntime, ...): skip when missing,
    but FAIL when the CI environment variable is set -- CI must run every peer."""
    if os.environ.get("CI"):
        return importlib.import_module(module)
    return pytest.importorskip(module)


@pytest.fixture(autouse=True)
def one_engine_thread():
    """One engine thread unless a test asks for more (the n_threads fixture): on a
    busy machine a two-thread step can wait a whole time slice for its partner.
    Autouse in the modules that import it."""
    before = fastrnn.get_num_threads()
    fastrnn.set_num_threads(1)
    yield
    fastrnn.set_num_threads(before)


def f32_tolerance(k: int) -> float:
    """Bound on |float32 result - float64 reference| for values of order 1.

    Each output is a chain of dot products of length k (the widest reduction,
    input or hidden size) plus a few activations per step; float32 rounding gives
    errors of about eps*sqrt(k) per step, contracting through the gates. The bound
    is 32 eps sqrt(k): 4e-6 at k=1, 6e-5 at k=257, far below what a wrong index,
    gate or tail produces (~1e-2).
    """
    return 32.0 * EPS32 * max(1.0, np.sqrt(k))


def assert_close(actual, expected, dtype, k: int, what: str = "output"):
    """float64: within 1e-12 (relative, with the same absolute floor); float32:
    within f32_tolerance(k), relative for large values."""
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    tol = 1e-12 if np.dtype(dtype) == np.float64 else f32_tolerance(k)
    err = np.abs(actual - expected) / np.maximum(1.0, np.abs(expected))
    nan_a, nan_e = np.isnan(actual), np.isnan(expected)
    assert np.array_equal(nan_a, nan_e), f"{what}: NaN pattern differs"
    err = np.where(nan_a, 0.0, err)
    worst = float(err.max()) if err.size else 0.0
    assert worst <= tol, f"{what}: max scaled error {worst:.3g} > {tol:.3g}"
