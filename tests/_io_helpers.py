"""Shared helpers for the model-file tests (test_io_*.py, test_cli_run.py)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import numpy as np
import pytest

def need(module: str):
    """Import an optional peer (torch, onnx, ...): skip if missing, FAIL under CI."""
    if os.environ.get("CI"):
        return importlib.import_module(module)
    return pytest.importorskip(module)


def need_layers():
    """fastrnn's layers (built in place): skip if not importable, FAIL under CI."""
    fastrnn = need("fastrnn")
    need("fastrnn.layers")
    if not hasattr(fastrnn, "load"):
        message = "fastrnn.load is not exported by fastrnn/__init__.py"
        if os.environ.get("CI"):
            raise AssertionError(message)
        pytest.skip(message)
    return fastrnn


def run_spec(spec, x, lengths=None):
    """Run a ``fastrnn.io.read`` result through ``fastrnn.reference`` in float64.

    Checks what the file readers produce (class, hyperparameters, converted
    weights) independently of the C kernels.  x follows spec's batch_first.
    """
    from fastrnn import reference

    kw = dict(spec.kwargs)
    sd = {k: np.asarray(v, np.float64) for k, v in spec.state_dict.items()}
    x = np.asarray(x, np.float64)
    common = dict(num_layers=kw["num_layers"], bidirectional=kw["bidirectional"],
                  batch_first=kw["batch_first"], lengths=lengths)
    if spec.class_name == "LSTM":
        out, (h, c) = reference.lstm(x, sd, proj_size=kw["proj_size"],
                                     peephole=kw["peephole"], **common)
        return out, h, c
    if spec.class_name == "GRU":
        out, h = reference.gru(x, sd, linear_before_reset=kw["linear_before_reset"], **common)
        return out, h, None
    if spec.class_name == "RNN":
        out, h = reference.rnn(x, sd, nonlinearity=kw["nonlinearity"], **common)
        return out, h, None
    raise AssertionError(f"run_spec does not run {spec.class_name}")


def torch_run(module, x):
    """Run a torch recurrent module on a NumPy array; NumPy results."""
    import torch

    dtype = next(module.parameters()).dtype
    with torch.no_grad():
        out, state = module(torch.as_tensor(x, dtype=dtype))
    if isinstance(state, tuple):
        return out.numpy(), state[0].numpy(), state[1].numpy()
    return out.numpy(), state.numpy(), None


def layer_run(layer, x, lengths=None):
    """Run a fastrnn layer; (out, h_n, c_n or None)."""
    out, state = layer(x, lengths=lengths)
    if isinstance(state, tuple):
        return out, state[0], state[1]
    return out, state, None


def assert_close(got, want, dtype=np.float32):
    if np.dtype(dtype) == np.float32:
        tol = dict(rtol=1e-5, atol=2e-6)
    else:
        tol = dict(rtol=1e-11, atol=1e-12)
    for g, w in zip(got, want):
        if w is None:
            assert g is None
            continue
        assert g.shape == w.shape, (g.shape, w.shape)
        np.testing.assert_allclose(g, w, **tol)


def run_python(code: str, *args, env=None):
    """Run ``python -c code`` in a subprocess that imports the same fastrnn as
    this one (an installed package, or a source tree built in place)."""
    import fastrnn

    home = os.path.dirname(os.path.dirname(os.path.abspath(fastrnn.__file__)))
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (home, full_env.get("PYTHONPATH")) if p
    )
    if env:
        full_env.update(env)
    # cwd=home: the '' entry of sys.path cannot shadow it with another copy.
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True,
        env=full_env, cwd=home, timeout=300,
    )
