"""The engines ``fastrnn bench`` compares, and the model they share (SPEC §6).

Every engine of a case runs the same network on the same input: a torch.nn module
is built from a seed, the fastrnn layer is made from it with ``from_torch``, torch
runs the module itself and ONNX Runtime a model exported from it. Without torch
the fastrnn layer is built from the seed and the torch-based peers are skipped.

An engine has a ``name``, ``output(steps)`` (its output on the first ``steps`` steps
of the input, for the check) and ``prepare(seconds_per_step)``, which returns the
unit to time — one call on the whole sequence, or for streaming a pass of T one-step
calls with the state carried — and how many steps that unit runs.

Peers are imported only when asked for; an engine that is not installed is
reported as skipped with the reason.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import time
import warnings

import numpy as np

import fastrnn
from fastrnn import reference

from ._bench_core import Case, round_steps

__all__ = ["ENGINES", "Model", "availability", "build_engines"]

ENGINES = ("fastrnn", "reference", "torch", "onnxruntime")


# --------------------------------------------------------------------------------------
# Availability
# --------------------------------------------------------------------------------------


def _try_import(name: str):
    try:
        return importlib.import_module(name), ""
    except Exception as exc:  # ImportError, or a broken install raising anything
        return None, f"not installed ({type(exc).__name__}: {' '.join(str(exc).split())})"


def availability(selected) -> dict:
    """Which engines can run here.

    Parameters
    ----------
    selected : iterable of str
        Engine names asked for; peers outside it are not imported.

    Returns
    -------
    dict
        name -> {"available": bool, "version": str or None, "reason": str}.
    """
    info = {
        "fastrnn": {"available": True, "version": fastrnn.__version__, "reason": ""},
        "reference": {"available": True, "version": np.__version__,
                      "reason": "NumPy, float32 (the float64 run is the oracle)"},
    }
    torch = ort = None
    if "torch" in selected or "onnxruntime" in selected:
        torch, why = _try_import("torch")
        if "torch" in selected:
            info["torch"] = {"available": torch is not None,
                             "version": getattr(torch, "__version__", None), "reason": why}
    if "onnxruntime" in selected:
        ort, why = _try_import("onnxruntime")
        if ort is not None and torch is None:
            why = "needs torch to export the ONNX model"
        info["onnxruntime"] = {"available": ort is not None and torch is not None,
                               "version": getattr(ort, "__version__", None), "reason": why}
    for name in ENGINES:
        if name not in selected:
            info.pop(name, None)
    return info


# --------------------------------------------------------------------------------------
# The shared model
# --------------------------------------------------------------------------------------


class Model:
    """The network and input of one case geometry, shared by its engines.

    Parameters
    ----------
    case : Case
        Its thread count is ignored: one Model serves every thread count.
    seed : int
    use_torch : bool
        Build a torch module (and the fastrnn layer from it).

    Attributes
    ----------
    layer : fastrnn.LSTM, GRU or RNN
    module : torch.nn.Module or None
    x : numpy.ndarray, (T, B, I) float32
    """

    def __init__(self, case: Case, seed: int, use_torch: bool):
        self.case = case
        cls = getattr(fastrnn, case.cell)
        self.module = None
        if use_torch:
            import torch

            torch.manual_seed(seed)
            self.module = getattr(torch.nn, case.cell)(
                case.input, case.hidden, case.layers, bidirectional=case.bidirectional
            ).eval()
            self.layer = cls.from_torch(self.module)
        else:
            self.layer = cls(case.input, case.hidden, case.layers,
                             bidirectional=case.bidirectional, seed=seed)
        rng = np.random.default_rng(seed)
        self.x = rng.standard_normal((case.seq, case.batch, case.input)).astype(np.float32)
        self._oracle = {}
        self._onnx = None

    def oracle(self, steps: int) -> np.ndarray:
        """float64 reference output on the first ``steps`` steps (cached)."""
        if steps not in self._oracle:
            self._oracle[steps] = reference.forward(self.layer, self.x[:steps],
                                                    dtype=np.float64)[0]
        return self._oracle[steps]

    def check_steps(self, budget: float, min_steps: int) -> int:
        """How many steps the float64 check can afford within ``budget`` seconds.

        Times the reference on a few steps and extrapolates; never fewer than
        ``min_steps`` (or T if shorter).
        """
        T = self.case.seq
        probe = min(T, 3)
        t0 = time.perf_counter()
        self.oracle(probe)
        per_step = (time.perf_counter() - t0) / probe
        return round_steps(max(min_steps, budget / max(per_step, 1e-9)), T)

    def onnx_bytes(self) -> bytes:
        """The torch module exported to ONNX, in memory (cached).

        The legacy TorchScript exporter (``dynamo=False``) writes one ONNX LSTM /
        GRU / RNN node, the form ONNX Runtime has a fused kernel for. Streaming cases
        export a T=1 model with the state as inputs and outputs; sequence cases a
        model with a dynamic T axis (so the check can run a prefix).
        """
        if self._onnx is None:
            self._onnx = _export_onnx(self.module, self.case)
        return self._onnx


def _state_names(cell: str) -> tuple:
    return ("h0", "c0") if cell == "LSTM" else ("h0",)


def _export_onnx(module, case: Case) -> bytes:
    import torch

    T = 1 if case.kind == "stream" else case.seq
    x = torch.zeros(T, case.batch, case.input)
    shape = (case.layers * case.directions, case.batch, case.hidden)
    states = tuple(torch.zeros(shape) for _ in _state_names(case.cell))
    args = (x, states) if case.cell == "LSTM" else (x, states[0])
    outputs = ["y", "hn", "cn"] if case.cell == "LSTM" else ["y", "hn"]
    kwargs = {"input_names": ["x", *_state_names(case.cell)], "output_names": outputs}
    if case.kind != "stream":
        kwargs["dynamic_axes"] = {"x": {0: "T"}, "y": {0: "T"}}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False
    buf = io.BytesIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # deprecation and tracer warnings of the exporter
        torch.onnx.export(module, args, buf, **kwargs)
    return buf.getvalue()


# --------------------------------------------------------------------------------------
# Engines
# --------------------------------------------------------------------------------------


class Engine:
    """Base: one way of running a case.

    Attributes
    ----------
    name : str
        Shown in the table.
    is_peer : bool
        Whether fastrnn's speed-up over it is reported.
    note : str
        Said next to its row (what exactly is timed, if not obvious).
    """

    name = "?"
    is_peer = True

    def __init__(self, model: Model, case: Case):
        self.model = model
        self.case = case
        self.note = ""

    def output(self, steps: int) -> np.ndarray:
        """Output on the first ``steps`` steps of the input, (steps, B, D·H)."""
        raise NotImplementedError

    def prepare(self, seconds_per_step: float):
        """Return ``(call, steps)``: the timed unit and how many steps it runs."""
        raise NotImplementedError


class FastrnnSeq(Engine):
    """fastrnn: one layer call on the whole sequence."""

    name = "fastrnn"

    def output(self, steps):
        return self.model.layer(self.model.x[:steps])[0]

    def prepare(self, seconds_per_step):
        layer, x = self.model.layer, self.model.x
        return (lambda: layer(x)), self.case.seq


class FastrnnStreamSeq(FastrnnSeq):
    """fastrnn's whole-sequence call, shown beside its streaming cost."""

    name = "fastrnn (seq)"
    is_peer = False

    def __init__(self, model, case):
        super().__init__(model, case)
        self.note = "one call on all T steps, for reference"


class FastrnnStream(Engine):
    """fastrnn: ``layer.stream(B).step(x_t)`` once per step."""

    name = "fastrnn"

    def output(self, steps):
        s = self.model.layer.stream(self.case.batch)
        return np.stack([s.step(x_t) for x_t in self.model.x[:steps]])

    def prepare(self, seconds_per_step):
        s = self.model.layer.stream(self.case.batch)
        xs = list(self.model.x)  # (B, I) C-contiguous views
        step = s.step

        def call():
            for x_t in xs:
                step(x_t)
        return call, self.case.seq


class ReferenceSeq(Engine):
    """The NumPy reference (``fastrnn.reference.forward``) in float32."""

    name = "reference"
    call_seconds = 0.03  # one timed call runs at most about this long (fewer steps)

    def output(self, steps):
        return reference.forward(self.model.layer, self.model.x[:steps], dtype=np.float32)[0]

    def prepare(self, seconds_per_step):
        steps = _reference_steps(self.case.seq, seconds_per_step, self.call_seconds)
        layer, x = self.model.layer, self.model.x[:steps]
        return (lambda: reference.forward(layer, x, dtype=np.float32)), steps


class ReferenceStream(Engine):
    """The NumPy reference stepped one call per step (its cell functions, float32).

    ``reference.forward`` converts the weights on every call, which is not what a
    NumPy streaming loop would do, so the weights are converted once here and the
    per-layer cell functions (``lstm_cell``, ``gru_cell``, ``rnn_cell``) are called.
    """

    name = "reference"
    call_seconds = 0.03

    def __init__(self, model, case):
        super().__init__(model, case)
        self.note = "reference.*_cell per step"
        sd = model.layer.state_dict()
        self._w = [
            tuple(sd.get(f"{n}_l{k}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
            for k in range(case.layers)
        ]
        self._fn = {"LSTM": reference.lstm_cell, "GRU": reference.gru_cell,
                    "RNN": reference.rnn_cell}[case.cell]

    def _zero(self):
        B, H = self.case.batch, self.case.hidden
        n = 2 if self.case.cell == "LSTM" else 1
        return [tuple(np.zeros((B, H), np.float32) for _ in range(n))
                for _ in range(self.case.layers)]

    def _stepper(self):
        state, fn, ws = self._zero(), self._fn, self._w
        lstm = self.case.cell == "LSTM"

        def step(x_t):
            inp = x_t
            for k, w in enumerate(ws):
                if lstm:
                    state[k] = fn(inp, *state[k], *w)
                    inp = state[k][0]
                else:
                    inp = fn(inp, state[k][0], *w)
                    state[k] = (inp,)
            return inp
        return step

    def output(self, steps):
        step = self._stepper()
        return np.stack([step(x_t) for x_t in self.model.x[:steps]])

    def prepare(self, seconds_per_step):
        steps = _reference_steps(self.case.seq, seconds_per_step, self.call_seconds)
        step, xs = self._stepper(), list(self.model.x[:steps])

        def call():
            for x_t in xs:
                step(x_t)
        return call, steps


def _reference_steps(T: int, seconds_per_step: float, call_seconds: float) -> int:
    """Steps of a reference call: all T, or fewer so one call takes ~call_seconds."""
    return round_steps(call_seconds / max(seconds_per_step, 1e-9), T)


class TorchSeq(Engine):
    """PyTorch: the nn module on the whole sequence under ``torch.inference_mode()``."""

    name = "torch"

    def __init__(self, model, case):
        super().__init__(model, case)
        import torch

        self.torch = torch
        self.xt = torch.from_numpy(model.x)

    def output(self, steps):
        with self.torch.inference_mode():
            return self.model.module(self.xt[:steps])[0].numpy().copy()

    def prepare(self, seconds_per_step):
        module, xt, mode = self.model.module, self.xt, self.torch.inference_mode

        def call():
            with mode():
                module(xt)
        return call, self.case.seq


class TorchStream(Engine):
    """PyTorch: nn.LSTMCell / GRUCell / RNNCell called once per step.

    The cells hold the weights of the nn module's layers; the input steps are
    tensors made beforehand, so the timed loop is only the cell calls.
    """

    name = "torch"

    def __init__(self, model, case):
        super().__init__(model, case)
        import torch

        self.torch = torch
        m = model.module
        cls = getattr(torch.nn, case.cell + "Cell")
        self.cells = []
        with torch.no_grad():
            for k in range(case.layers):
                n_in = case.input if k == 0 else case.hidden
                cell = cls(n_in, case.hidden).eval()
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(cell, name).copy_(getattr(m, f"{name}_l{k}"))
                self.cells.append(cell)
        self.note = f"nn.{case.cell}Cell per step"
        self.xs = [torch.from_numpy(x_t) for x_t in model.x]

    def _stepper(self):
        torch, cells, case = self.torch, self.cells, self.case
        zero = torch.zeros(case.batch, case.hidden)
        lstm = case.cell == "LSTM"
        state = [(zero, zero) if lstm else zero for _ in cells]
        if len(cells) == 1:
            cell = cells[0]
            if lstm:
                def step(x_t):
                    state[0] = cell(x_t, state[0])
                    return state[0][0]
            else:
                def step(x_t):
                    state[0] = cell(x_t, state[0])
                    return state[0]
            return step

        def step(x_t):
            inp = x_t
            for k, c in enumerate(cells):
                state[k] = c(inp, state[k])
                inp = state[k][0] if lstm else state[k]
            return inp
        return step

    def output(self, steps):
        step = self._stepper()
        with self.torch.inference_mode():
            return np.stack([step(x_t).numpy().copy() for x_t in self.xs[:steps]])

    def prepare(self, seconds_per_step):
        step, xs, mode = self._stepper(), self.xs, self.torch.inference_mode

        def call():
            with mode():
                for x_t in xs:
                    step(x_t)
        return call, self.case.seq


class _OrtBase(Engine):
    """ONNX Runtime on the model exported from the same torch module."""

    name = "onnxruntime"

    def __init__(self, model, case):
        super().__init__(model, case)
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = case.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        self.session = ort.InferenceSession(model.onnx_bytes(), so,
                                            providers=["CPUExecutionProvider"])
        shape = (case.layers * case.directions, case.batch, case.hidden)
        self.zero_state = {n: np.zeros(shape, np.float32) for n in _state_names(case.cell)}


class OrtSeq(_OrtBase):
    """ONNX Runtime: ``session.run`` on the whole sequence."""

    def output(self, steps):
        return self.session.run(["y"], {"x": self.model.x[:steps], **self.zero_state})[0] \
            .reshape(steps, self.case.batch, -1)

    def prepare(self, seconds_per_step):
        run, feeds = self.session.run, {"x": self.model.x, **self.zero_state}
        return (lambda: run(["y"], feeds)), self.case.seq


class OrtStream(_OrtBase):
    """ONNX Runtime: ``session.run`` of a T=1 model per step, the state fed back."""

    def __init__(self, model, case):
        super().__init__(model, case)
        self.note = "T=1 model, state fed back"
        self.xs = [x_t[None] for x_t in model.x]  # (1, B, I)

    def _stepper(self):
        run, lstm = self.session.run, self.case.cell == "LSTM"
        state = dict(self.zero_state)
        names = ["y", "hn", "cn"] if lstm else ["y", "hn"]

        if lstm:
            def step(x_t):
                y, state["h0"], state["c0"] = run(names, {"x": x_t, **state})
                return y
        else:
            def step(x_t):
                y, state["h0"] = run(names, {"x": x_t, **state})
                return y
        return step

    def output(self, steps):
        step = self._stepper()
        return np.stack([step(x_t).reshape(self.case.batch, -1) for x_t in self.xs[:steps]])

    def prepare(self, seconds_per_step):
        step, xs = self._stepper(), self.xs

        def call():
            for x_t in xs:
                step(x_t)
        return call, self.case.seq


_CLASSES = {
    "seq": {"fastrnn": FastrnnSeq, "reference": ReferenceSeq, "torch": TorchSeq,
            "onnxruntime": OrtSeq},
    "stream": {"fastrnn": FastrnnStream, "reference": ReferenceStream, "torch": TorchStream,
               "onnxruntime": OrtStream},
}


def build_engines(case: Case, model: Model, avail: dict, ref_call: float) -> list:
    """The engines of one case, in table order.

    Returns a list of Engine objects, and ``(name, reason)`` for each engine that
    is skipped (not installed, or failed to set up, e.g. the ONNX export).
    Streaming cases add fastrnn's whole-sequence call for reference.
    """
    out = []
    for name, info in avail.items():
        if not info["available"]:
            out.append((name, info["reason"]))
            continue
        try:
            eng = _CLASSES[case.kind][name](model, case)
        except Exception as exc:
            text = " ".join(str(exc).split())[:200]
            out.append((name, f"setup failed: {type(exc).__name__}: {text}"))
            continue
        if isinstance(eng, (ReferenceSeq, ReferenceStream)):
            eng.call_seconds = ref_call
        out.append(eng)
        if case.kind == "stream" and name == "fastrnn":
            out.append(FastrnnStreamSeq(model, case))
    return out
