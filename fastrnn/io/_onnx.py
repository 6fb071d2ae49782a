"""``.onnx``: LSTM / GRU / RNN nodes converted to PyTorch's names, order and layout.

The graph may hold one recurrent node or a stack of them, one per layer, as
``torch.onnx.export`` writes: layer k+1's X comes from layer k's Y through
Squeeze / Transpose / Reshape only.  Weights come from initializers,
Constant nodes, or constant subgraphs (``do_constant_folding=False``), which
are evaluated with ``onnx.reference``.  Everything outside the stack (the
Shape/Expand arithmetic that builds zero initial states, the transposes of a
batch_first export) is read only to learn ``batch_first``.

Conversion, per direction d (0 forward, 1 reverse):

* LSTM gates (i, o, f, c) -> torch (i, f, g, o); GRU (z, r, h) -> (r, z, n);
* ``B[d]`` = [Wb; Rb] -> ``bias_ih`` and ``bias_hh`` (no B: bias=False);
* ``P[d]`` = (i, o, f) -> ``weight_peephole`` rows (i, f, o);
* ``layout=1`` -> batch_first=True; a Transpose(1, 0, 2) between the graph
  input and X flips it (that is how torch exports batch_first=True);
* GRU ``linear_before_reset`` (ONNX default 0) -> linear_before_reset;
* RNN activations Tanh / Relu -> nonlinearity.

Refused by name (ModelFileError): ``clip``, ``input_forget=1``,
``activation_alpha``/``activation_beta``, activations other than the defaults
(LSTM Sigmoid, Tanh, Tanh; GRU Sigmoid, Tanh; RNN Tanh or Relu, the same in
both directions), a lone ``direction="reverse"`` (a fastrnn layer runs forward,
or both ways -- never only backwards), non-zero constant initial states,
weights computed from graph inputs, and recurrent nodes that do not form one
stack.  Initial states and sequence_lens fed from graph inputs are fine:
they are call-time arguments of the fastrnn layer.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import ModelFileError
from ._infer import Found

__all__ = ["load_onnx"]

_KINDS = ("LSTM", "GRU", "RNN")
_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
# Position in the ONNX stack of each torch gate, in torch's order.
_TORCH_FROM_ONNX = {"LSTM": [0, 2, 3, 1], "GRU": [1, 0, 2], "RNN": [0]}
_DEFAULT_ACTIVATIONS = {"LSTM": ["sigmoid", "tanh", "tanh"], "GRU": ["sigmoid", "tanh"]}
_KNOWN_ATTRS = {
    "LSTM": {"activation_alpha", "activation_beta", "activations", "clip",
             "direction", "hidden_size", "input_forget", "layout"},
    "GRU": {"activation_alpha", "activation_beta", "activations", "clip",
            "direction", "hidden_size", "layout", "linear_before_reset"},
    "RNN": {"activation_alpha", "activation_beta", "activations", "clip",
            "direction", "hidden_size", "layout"},
}
# Ops that only move data around between layers of a stack.
_RESHAPING = {"Squeeze", "Unsqueeze", "Transpose", "Reshape", "Identity", "Flatten",
              "Dropout"}
_STATE_PASSTHROUGH = {"Expand", "Identity", "Reshape", "Unsqueeze", "Squeeze",
                      "Tile", "Cast"}
_ONNX_HINT = "install it with: pip install onnx (or pip install 'fastrnn[onnx]')"

_RUNTIME = object()  # marker: a tensor that depends on graph inputs
# Constant subgraphs may compute this many values per byte of the model, or this many.
_CONSTANT_VALUES_PER_BYTE = 16
_MIN_CONSTANT_VALUES = 1 << 24


class _Graph:
    def __init__(self, model, source):
        import onnx
        from onnx import numpy_helper

        self.onnx = onnx
        self.numpy_helper = numpy_helper
        self.model = model
        self.graph = model.graph
        self.source = source
        self.initializers = {t.name: t for t in self.graph.initializer}
        self.inputs = {i.name for i in self.graph.input} - set(self.initializers)
        self.producer = {}
        for node in self.graph.node:
            for idx, out in enumerate(node.output):
                if out:
                    self.producer[out] = (node, idx)
        self._cache = {}

    def fail(self, message):
        raise ModelFileError(f"{self.source}: {message}")

    @staticmethod
    def label(node) -> str:
        return f"{node.op_type} node {node.name or '(unnamed)'!r}"

    def attrs(self, node) -> dict:
        helper = self.onnx.helper
        return {a.name: helper.get_attribute_value(a) for a in node.attribute}

    def value(self, name):
        """The constant value of tensor ``name``; _RUNTIME if it needs inputs."""
        if name in self._cache:
            return self._cache[name]
        if name in self.initializers:
            out = self.numpy_helper.to_array(self.initializers[name])
        elif name in self.inputs:
            out = _RUNTIME
        elif name not in self.producer:
            self.fail(f"tensor {name!r} is neither an input, an initializer nor produced by a node")
        else:
            node, idx = self.producer[name]
            if node.op_type == "Constant":
                out = self._constant(node)
            elif node.op_type == "Identity":
                out = self.value(node.input[0])
            else:
                out = self._evaluate(name)
        self._cache[name] = out
        return out

    def _constant(self, node):
        attrs = self.attrs(node)
        if "value" in attrs:
            return self.numpy_helper.to_array(attrs["value"])
        for key, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                           ("value_int", np.int64), ("value_ints", np.int64)):
            if key in attrs:
                return np.array(attrs[key], dtype=dtype)
        self.fail(f"{self.label(node)} has no tensor value fastrnn can read")

    def _evaluate(self, name):
        """Run the constant subgraph that computes ``name`` (onnx.reference)."""
        needed, needed_ids, stack, seen = [], set(), [name], set()
        while stack:
            tensor = stack.pop()
            if not tensor or tensor in seen or tensor in self.initializers:
                continue
            seen.add(tensor)
            if tensor in self.inputs:
                return _RUNTIME
            if tensor not in self.producer:
                self.fail(f"tensor {tensor!r} has no producer")
            node = self.producer[tensor][0]
            if id(node) not in needed_ids:
                needed.append(node)
                needed_ids.add(id(node))
                if any(a.type == self.onnx.AttributeProto.GRAPH for a in node.attribute):
                    return _RUNTIME  # control flow: not a plain constant
                stack.extend(node.input)
        order = {id(n): i for i, n in enumerate(self.graph.node)}
        needed.sort(key=lambda n: order[id(n)])
        used = {t for n in needed for t in n.input}
        helper = self.onnx.helper
        sub = helper.make_graph(
            needed, "constant_subgraph", [],
            [helper.make_tensor_value_info(name, self.onnx.TensorProto.UNDEFINED, None)],
            [t for t in self.graph.initializer if t.name in used],
        )
        model = helper.make_model(sub, opset_imports=list(self.model.opset_import))
        self._check_sizes(model, name)
        try:
            from onnx.reference import ReferenceEvaluator

            (out,) = ReferenceEvaluator(model).run(None, {})
        except Exception as exc:
            self.fail(
                f"cannot compute constant tensor {name!r} "
                f"({type(exc).__name__}: {exc})"
            )
        return np.asarray(out)

    def _check_sizes(self, model, name):
        """Evaluate a constant subgraph only when ONNX shape inference knows every
        tensor in it and, together, they hold at most _CONSTANT_VALUES_PER_BYTE
        values per byte of the model (at least _MIN_CONSTANT_VALUES): otherwise a
        file of a few hundred bytes (a ConstantOfShape of [1, 60000, 20000]) makes
        the evaluator allocate gigabytes. The subgraphs of real exports slice and
        concatenate the file's own initializers, far within the bound."""
        limit = max(_MIN_CONSTANT_VALUES, _CONSTANT_VALUES_PER_BYTE * self.model.ByteSize())
        try:
            inferred = self.onnx.shape_inference.infer_shapes(model, data_prop=True)
        except Exception as exc:
            self.fail(f"cannot size the constant subgraph that computes {name!r} "
                      f"({type(exc).__name__}: {exc})")
        total = 0
        for info in list(inferred.graph.value_info) + list(inferred.graph.output):
            t = info.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
            if not t.HasField("shape") or any(d < 0 for d in dims):
                self.fail(
                    f"the constant subgraph that computes {name!r} makes tensor "
                    f"{info.name!r} of a size ONNX shape inference cannot tell; fastrnn "
                    "evaluates constant subgraphs of known sizes only (export with "
                    "do_constant_folding=True, or fold the constants)"
                )
            count = 1
            for d in dims:
                count *= d
            total += count
        if total > limit:
            self.fail(
                f"the constant subgraph that computes {name!r} makes {total} values; a "
                f"model of {self.model.ByteSize()} bytes may make at most {limit}"
            )

    def walk_back(self, name, allowed):
        """Follow input 0 back through ``allowed`` ops; returns (path, end)."""
        path = []
        while name in self.producer:
            node, idx = self.producer[name]
            if node.op_type not in allowed or idx != 0:
                return path, (node, idx)
            path.append(node)
            name = node.input[0]
        return path, name


def _activations(g, node, kind, attrs, D):
    raw = attrs.get("activations")
    if raw is None:
        return "tanh" if kind == "RNN" else None
    names = [a.decode() if isinstance(a, bytes) else str(a) for a in raw]
    lowered = [n.lower() for n in names]
    if kind == "RNN":
        if len(lowered) != D or len(set(lowered)) != 1 or lowered[0] not in ("tanh", "relu"):
            g.fail(
                f"{g.label(node)} has activations={names}; fastrnn runs RNN "
                f"nodes with Tanh or Relu, the same for each of the {D} direction(s)"
            )
        return lowered[0]
    if lowered != _DEFAULT_ACTIVATIONS[kind] * D:
        expected = [a.capitalize() for a in _DEFAULT_ACTIVATIONS[kind]] * D
        g.fail(
            f"{g.label(node)} has activations={names}, which fastrnn does not "
            f"support; allowed: {expected} (the ONNX default)"
        )
    return None


def _read_node(g, node, k):
    """Convert one recurrent node (layer k) to torch-named arrays + hparams."""
    kind = node.op_type
    attrs = g.attrs(node)
    label = g.label(node)
    unknown = sorted(set(attrs) - _KNOWN_ATTRS[kind])
    if unknown:
        g.fail(f"{label} has attribute(s) {unknown}, unknown to fastrnn")
    for name in ("clip", "activation_alpha", "activation_beta"):
        if name in attrs:
            g.fail(
                f"{label} has attribute {name}={attrs[name]!r}, which fastrnn "
                f"does not support; allowed: no {name}"
            )
    if attrs.get("input_forget", 0) != 0:
        g.fail(
            f"{label} has input_forget={attrs['input_forget']}, which fastrnn "
            "does not support; allowed: input_forget=0"
        )
    direction = attrs.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else str(direction)
    if direction == "reverse":
        g.fail(
            f"{label} has direction='reverse': it runs only backwards in time, "
            "which a fastrnn layer cannot represent (it runs forward, or both "
            "ways when bidirectional); allowed: 'forward', 'bidirectional'"
        )
    if direction not in ("forward", "bidirectional"):
        g.fail(f"{label} has direction={direction!r}; allowed: 'forward', 'bidirectional'")
    D = 2 if direction == "bidirectional" else 1
    layout = attrs.get("layout", 0)
    if layout not in (0, 1):
        g.fail(f"{label} has layout={layout}; allowed: 0 or 1")
    nonlinearity = _activations(g, node, kind, attrs, D)
    lbr = attrs.get("linear_before_reset", 0)
    if kind == "GRU" and lbr not in (0, 1):
        g.fail(f"{label} has linear_before_reset={lbr}; allowed: 0 or 1")

    inputs = list(node.input) + [""] * (8 - len(node.input))
    x_name, w_name, r_name, b_name, seq_name, h0_name = inputs[:6]
    c0_name, p_name = (inputs[6], inputs[7]) if kind == "LSTM" else ("", "")

    def const(name, what, required):
        if not name:
            if required:
                g.fail(f"{label} has no {what} input")
            return None
        value = g.value(name)
        if value is _RUNTIME:
            g.fail(
                f"{label}'s {what} ({name!r}) is computed from graph inputs at "
                "run time; fastrnn needs it constant (an initializer)"
            )
        return value

    W = const(w_name, "W", True)
    R = const(r_name, "R", True)
    B = const(b_name, "B", False)
    P = const(p_name, "P", False)
    G = _GATES[kind]
    for what, arr in (("W", W), ("R", R)):
        if arr.ndim != 3 or arr.shape[0] != D or arr.shape[1] % G or arr.shape[1] == 0:
            g.fail(
                f"{label}'s {what} has shape {arr.shape}; expected "
                f"[{D}, {G}*hidden_size, size] for direction={direction!r}"
            )
    H = W.shape[1] // G
    if "hidden_size" in attrs and attrs["hidden_size"] != H:
        g.fail(f"{label} has hidden_size={attrs['hidden_size']} but W has shape {W.shape}")
    if R.shape != (D, G * H, H):
        g.fail(f"{label}'s R has shape {R.shape}; expected {(D, G * H, H)}")
    if B is not None and B.shape != (D, 2 * G * H):
        g.fail(f"{label}'s B has shape {B.shape}; expected {(D, 2 * G * H)}")
    if P is not None and P.shape != (D, 3 * H):
        g.fail(f"{label}'s P has shape {P.shape}; expected {(D, 3 * H)}")
    for what, arr in (("W", W), ("R", R), ("B", B), ("P", P)):
        if arr is not None and arr.dtype.kind != "f":
            g.fail(f"{label}'s {what} has dtype {arr.dtype}; expected floating point")

    for what, name in (("initial_h", h0_name), ("initial_c", c0_name)):
        _check_initial_state(g, label, what, name)
    if seq_name and g.value(seq_name) is not _RUNTIME:
        g.fail(
            f"{label}'s sequence_lens is a constant; a fastrnn layer takes sequence "
            "lengths at call time (lengths=), so fastrnn cannot load it; allowed: a "
            "graph input or no sequence_lens"
        )

    order = _TORCH_FROM_ONNX[kind]

    def torch_order(a):
        return np.concatenate([a[i * H:(i + 1) * H] for i in order], axis=0)

    arrays = {}
    for d in range(D):
        sfx = f"_l{k}" + ("_reverse" if d else "")
        arrays["weight_ih" + sfx] = torch_order(W[d])
        arrays["weight_hh" + sfx] = torch_order(R[d])
        if B is not None:
            arrays["bias_ih" + sfx] = torch_order(B[d][: G * H])
            arrays["bias_hh" + sfx] = torch_order(B[d][G * H:])
        if P is not None:
            arrays["weight_peephole" + sfx] = P[d].reshape(3, H)[[0, 2, 1]].copy()
    info = {
        "kind": kind, "D": D, "layout": layout, "nonlinearity": nonlinearity,
        "linear_before_reset": bool(lbr), "hidden_size": H, "bias": B is not None,
        "peephole": P is not None, "x": x_name,
    }
    return arrays, info


def _check_initial_state(g, label, what, name):
    if not name:
        return
    path, end = g.walk_back(name, _STATE_PASSTHROUGH)
    if isinstance(end, str):
        if end in g.inputs:
            return  # a graph input: the caller passes it at run time
        value = g.value(end)
    else:
        node, idx = end
        value = g.value(node.output[idx])
    if value is _RUNTIME:
        return
    if np.any(np.asarray(value) != 0):
        g.fail(
            f"{label}'s {what} is a non-zero constant; a fastrnn layer starts "
            "from the state passed at call time (zeros by default), so fastrnn "
            "cannot load it; allowed: a graph input or zeros"
        )


def _first_input_batch_first(g, first, info):
    path, end = g.walk_back(info["x"], {"Identity", "Transpose", "Dropout"})
    perm = [0, 1, 2]
    for node in path:
        p = g.attrs(node).get("perm") if node.op_type == "Transpose" else None
        if p is not None:
            if sorted(p) != [0, 1, 2]:
                g.fail(
                    f"{g.label(node)} before {g.label(first)} has perm={list(p)}; "
                    "expected a 3-D permutation"
                )
            perm = [perm[i] for i in p]
    if perm not in ([0, 1, 2], [1, 0, 2]):
        g.fail(
            f"the input of {g.label(first)} is transposed with perm={perm}; "
            "fastrnn can only swap the time and batch axes"
        )
    swapped = perm == [1, 0, 2]
    return (info["layout"] == 1) != swapped


def _check_link(g, prev, node, info_prev, info):
    path, end = g.walk_back(info["x"], _RESHAPING)
    if isinstance(end, tuple):
        src, idx = end
        if src is prev and idx == 0:
            if info_prev["D"] == 2 and info_prev["layout"] == 0:
                perms = [list(g.attrs(n).get("perm", [])) for n in path if n.op_type == "Transpose"]
                if perms != [[0, 2, 1, 3]]:
                    g.fail(
                        f"between {g.label(prev)} and {g.label(node)} the "
                        "bidirectional output is not transposed (0, 2, 1, 3) "
                        "before its directions are joined"
                    )
            return
        what = f"{g.label(src)}" if src is not prev else f"output {idx} of {g.label(prev)}"
    else:
        what = f"tensor {end!r}"
    g.fail(
        f"{g.label(node)}'s input X comes from {what}, not from {g.label(prev)}'s "
        "output Y through reshapes only; fastrnn loads one plain stack of "
        "recurrent nodes, one per layer"
    )


def _tensors(graph):
    """Every tensor of a graph and its subgraphs: initializers and attributes."""
    yield from graph.initializer
    for node in graph.node:
        for a in node.attribute:
            if a.HasField("t"):
                yield a.t
            yield from a.tensors
            if a.HasField("g"):
                yield from _tensors(a.g)
            for sub in a.graphs:
                yield from _tensors(sub)


def _load_external_data(model, base: str, source: str) -> None:
    """Read the tensors a model keeps in files beside it (``data_location``
    EXTERNAL) -- each only after its file is found to hold the bytes its dtype and
    dims declare, and then only those bytes: onnx alone reads a whole file for a
    tensor that gives no length, however large the file (a 36-value tensor once
    read 3 GB and crashed a process under a memory limit)."""
    from onnx import TensorProto, external_data_helper, helper

    for t in _tensors(model.graph):
        if not external_data_helper.uses_external_data(t):
            continue
        info = external_data_helper.ExternalDataInfo(t)
        # inside the model's folder, before the file is looked at (its size would be
        # in the messages below): a model must not learn what is elsewhere
        loc = info.location or ""
        file = os.path.join(base, loc)
        real_base = os.path.realpath(base)
        if (not loc or os.path.isabs(loc) or os.path.islink(file)
                or os.path.commonpath([real_base, os.path.realpath(file)]) != real_base):
            raise ModelFileError(f"{source}: tensor {t.name!r} is stored in {loc!r}, which is "
                                 "not a file in the model's folder (external data is read "
                                 "only from there)")
        what = f"{source}: tensor {t.name!r} is stored in {loc!r}, beside the model"
        try:
            itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
        except (KeyError, TypeError, ValueError):
            itemsize = 0
        if t.data_type == TensorProto.STRING or itemsize == 0:
            raise ModelFileError(f"{what}, with a data type fastrnn cannot read ({t.data_type})")
        if any(d < 0 for d in t.dims):
            raise ModelFileError(f"{what}, with negative dims {list(t.dims)}")
        need = int(np.prod(t.dims, dtype=object)) * itemsize
        if info.length and info.length != need:
            raise ModelFileError(f"{what}: {info.length} bytes, where its dtype and dims "
                                 f"{list(t.dims)} make {need}")
        size = os.path.getsize(file) if os.path.isfile(file) else None
        offset = info.offset or 0
        if size is not None and offset + need > size:
            raise ModelFileError(f"{what}: {need} bytes from offset {offset}, but the file "
                                 f"holds {size}")
        if size is not None and not info.length and size - offset != need:
            # no length: the data is the rest of the file
            raise ModelFileError(f"{what}: the rest of the file from offset {offset}, "
                                 f"{size - offset} bytes, where its dtype and dims "
                                 f"{list(t.dims)} make {need}")
        # onnx refuses missing files (and, again, locations outside the folder)
        entries = {e.key: e for e in t.external_data}
        if "length" in entries:
            entries["length"].value = str(need)
        else:
            e = t.external_data.add()
            e.key, e.value = "length", str(need)
        external_data_helper.load_external_data_for_tensor(t, base)


def load_onnx(path, source: str) -> Found:
    """Read the recurrent stack of an ONNX model; see the module docstring."""
    try:
        import onnx
    except ImportError as exc:
        raise ModelFileError(
            f"{source}: .onnx files need the 'onnx' package; {_ONNX_HINT}"
        ) from exc
    try:
        model = onnx.load(os.fspath(path), load_external_data=False)
        _load_external_data(model, os.path.dirname(os.path.abspath(os.fspath(path))), source)
    except ModelFileError:
        raise
    except Exception as exc:  # DecodeError, OSError, ValidationError, ...
        raise ModelFileError(
            f"{source}: not a readable ONNX model ({type(exc).__name__}: {exc})"
        ) from exc
    g = _Graph(model, source)
    nodes = [
        n for n in g.graph.node if n.op_type in _KINDS and n.domain in ("", "ai.onnx")
    ]
    if not nodes:
        ops = sorted({n.op_type for n in g.graph.node})
        hint = ""
        if "MatMul" in ops or "Gemm" in ops:
            hint = (
                "; if the recurrence was unrolled into MatMul/Add ops (the "
                "dynamo exporter does so for nn.RNN), export with "
                "torch.onnx.export(..., dynamo=False)"
            )
        g.fail(
            "holds no LSTM, GRU or RNN node in its main graph (found "
            f"{', '.join(ops[:12]) or 'no nodes'}); fastrnn loads ONNX "
            f"recurrent nodes{hint}"
        )
    kinds = sorted({n.op_type for n in nodes})
    if len(kinds) > 1:
        g.fail(f"holds {', '.join(kinds)} nodes; fastrnn loads one kind of layer")
    arrays, infos = {}, []
    for k, node in enumerate(nodes):
        a, info = _read_node(g, node, k)
        arrays.update(a)
        infos.append(info)
    first = infos[0]
    for name in ("D", "layout", "nonlinearity", "linear_before_reset", "hidden_size",
                 "bias", "peephole"):
        values = [i[name] for i in infos]
        if len(set(values)) > 1:
            g.fail(
                f"its {len(nodes)} {kinds[0]} nodes differ in {name} ({values}); "
                "a fastrnn layer has one setting for all layers"
            )
    for k in range(1, len(nodes)):
        _check_link(g, nodes[k - 1], nodes[k], infos[k - 1], infos[k])
    hparams = {
        "batch_first": _first_input_batch_first(g, nodes[0], first),
        "hidden_size": first["hidden_size"],
        "num_layers": len(nodes),
        "bidirectional": first["D"] == 2,
    }
    if first["kind"] == "RNN":
        hparams["nonlinearity"] = first["nonlinearity"]
    if first["kind"] == "GRU":
        hparams["linear_before_reset"] = first["linear_before_reset"]
    return Found(arrays=arrays, source=source, kind=first["kind"], cell=False, hparams=hparams)
