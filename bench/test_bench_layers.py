"""fastrnn and PyTorch on the same networks, one case per test (pytest-benchmark).

Each test checks its engine's output against the float64 NumPy reference before
timing (outside the timed part) and asserts nothing about the time. Cases, T=100,
I=H unless said, one layer, float32:

- whole sequence, batch 1 (latency): LSTM and GRU at H=128 and 512;
- whole sequence, batch 64 (throughput): LSTM and GRU at H=128;
- shapes outside `fastrnn bench`'s matrix where fastrnn once trailed a peer: LSTM
  H=512 at batch 8 (row tiles), LSTM H=128 at batch 3 (small batches), GRU H=64 with
  512 inputs at batch 1 (wide inputs), LSTM H=384 at batch 4 (4 rows of 4-gate panels:
  on AVX2, 2 + 2 rows before W_hh's panels were split);
- streaming, one step per call at batch 1: LSTM and GRU at H=128.

Benchmarks are grouped per case, so ``--benchmark-group-by=group`` (the default
here) sets fastrnn beside torch.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_matches_reference, make_model

SEQUENCE_CASES = [
    pytest.param("LSTM", 128, 1, id="lstm-h128-b1"),
    pytest.param("LSTM", 512, 1, id="lstm-h512-b1"),
    pytest.param("GRU", 128, 1, id="gru-h128-b1"),
    pytest.param("GRU", 512, 1, id="gru-h512-b1"),
    pytest.param("LSTM", 128, 64, id="lstm-h128-b64"),
    pytest.param("GRU", 128, 64, id="gru-h128-b64"),
    pytest.param("LSTM", 512, 8, id="lstm-h512-b8"),
    pytest.param("LSTM", 128, 3, id="lstm-h128-b3"),
    pytest.param("LSTM", 384, 4, id="lstm-h384-b4"),
    pytest.param("GRU", (512, 64), 1, id="gru-i512-h64-b1"),
]
STREAM_CASES = [
    pytest.param("LSTM", 128, id="lstm-h128"),
    pytest.param("GRU", 128, id="gru-h128"),
]
CHECK_STEPS = 10  # streaming: steps checked against the reference before timing


def _shape(hidden) -> str:
    return f"I={hidden[0]} H={hidden[1]}" if isinstance(hidden, tuple) else f"H={hidden}"


# -- whole sequence ---------------------------------------------------------------------


@pytest.mark.parametrize("cell, hidden, batch", SEQUENCE_CASES)
def test_sequence_fastrnn(benchmark, cell, hidden, batch):
    layer, _, x = make_model(cell, hidden, batch, use_torch=False)
    assert_matches_reference(layer(x)[0], layer, x)
    benchmark.group = f"sequence {cell} {_shape(hidden)} B={batch} T={len(x)}"
    benchmark(layer, x)


@pytest.mark.parametrize("cell, hidden, batch", SEQUENCE_CASES)
def test_sequence_torch(benchmark, torch, cell, hidden, batch):
    layer, module, x = make_model(cell, hidden, batch, use_torch=True)
    xt = torch.from_numpy(x)

    def run():
        with torch.inference_mode():
            return module(xt)[0]

    assert_matches_reference(run().numpy(), layer, x)
    benchmark.group = f"sequence {cell} {_shape(hidden)} B={batch} T={len(x)}"
    benchmark(run)


# -- streaming: one step per call ---------------------------------------------------------


@pytest.mark.parametrize("cell, hidden", STREAM_CASES)
def test_stream_step_fastrnn(benchmark, cell, hidden):
    layer, _, x = make_model(cell, hidden, 1, use_torch=False)
    stream = layer.stream(1)
    out = np.stack([stream.step(x_t) for x_t in x[:CHECK_STEPS]])
    assert_matches_reference(out, layer, x)
    x_t = x[CHECK_STEPS]  # the state keeps advancing while timed; cost does not depend on it
    benchmark.group = f"stream step {cell} H={hidden} B=1"
    benchmark(stream.step, x_t)


@pytest.mark.parametrize("cell, hidden", STREAM_CASES)
def test_stream_step_torch(benchmark, torch, cell, hidden):
    layer, module, x = make_model(cell, hidden, 1, use_torch=True)
    cell_mod = getattr(torch.nn, cell + "Cell")(hidden, hidden).eval()
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell_mod, name).copy_(getattr(module, name + "_l0"))
    zero = torch.zeros(1, hidden)
    state = [(zero, zero) if cell == "LSTM" else zero]

    def step(x_t):
        with torch.inference_mode():
            state[0] = cell_mod(x_t, state[0])
        return state[0][0] if cell == "LSTM" else state[0]

    xs = [torch.from_numpy(x_t) for x_t in x]
    out = np.stack([step(x_t).numpy().copy() for x_t in xs[:CHECK_STEPS]])
    assert_matches_reference(out, layer, x)
    benchmark.group = f"stream step {cell} H={hidden} B=1"
    benchmark(step, xs[CHECK_STEPS])
