"""fastrnn.load for .onnx files: torch.onnx.export'ed stacks and hand-built nodes,
checked against torch and ONNX Runtime on the same file."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from _io_helpers import assert_close, layer_run, need, need_layers, run_python, run_spec, torch_run

from fastrnn.errors import ModelFileError
from fastrnn.io import read

onnx = need("onnx")
ort = need("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

T, B = 6, 3
G = {"LSTM": 4, "GRU": 3, "RNN": 1}


def ort_run(path_or_model, x, feeds=None):
    if isinstance(path_or_model, onnx.ModelProto):
        data = path_or_model.SerializeToString()
    else:
        data = str(path_or_model)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return sess.run(None, {name: x, **(feeds or {})})


# ---------------------------------------------------------------- torch exports


def export(module, path, x, **kwargs):
    torch = need("torch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.from_numpy(x),), str(path), dynamo=False,
                          input_names=["x"], **kwargs)


EXPORTS = [
    (kind, extra, layers, bidir)
    for kind, extra in [("RNN", {}), ("RNN", {"nonlinearity": "relu"}), ("LSTM", {}), ("GRU", {})]
    for layers in (1, 2)
    for bidir in (False, True)
]
EXPORT_IDS = [f"{k}{'-relu' if e else ''}-L{n}{'-bi' if b else ''}" for k, e, n, b in EXPORTS]


def _module(kind, extra, layers, bidir, **kw):
    torch = need("torch")
    torch.manual_seed(layers * 2 + bidir)
    return getattr(torch.nn, kind)(4, 5, num_layers=layers, bidirectional=bidir,
                                   **extra, **kw).eval()


@pytest.mark.parametrize("kind,extra,layers,bidir", EXPORTS, ids=EXPORT_IDS)
def test_torch_export(tmp_path, kind, extra, layers, bidir):
    module = _module(kind, extra, layers, bidir)
    x = np.random.default_rng(0).standard_normal((T, B, 4)).astype(np.float32)
    export(module, tmp_path / "m.onnx", x)
    spec = read(tmp_path / "m.onnx")
    assert spec.class_name == kind
    assert spec.kwargs["num_layers"] == layers and spec.kwargs["bidirectional"] == bidir
    assert spec.kwargs["batch_first"] is False
    if kind == "RNN":
        assert spec.kwargs["nonlinearity"] == extra.get("nonlinearity", "tanh")
    if kind == "GRU":
        assert spec.kwargs["linear_before_reset"] is True
    # The weights are torch's own, reordered back exactly.
    for k, v in module.state_dict().items():
        np.testing.assert_array_equal(spec.state_dict[k], v.numpy())
    want = torch_run(module, x)
    assert_close(run_spec(spec, x), want)
    np.testing.assert_allclose(ort_run(tmp_path / "m.onnx", x)[0], want[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind,extra,layers,bidir", EXPORTS, ids=EXPORT_IDS)
def test_torch_export_loads(tmp_path, kind, extra, layers, bidir):
    fastrnn = need_layers()
    module = _module(kind, extra, layers, bidir)
    x = np.random.default_rng(0).standard_normal((T, B, 4)).astype(np.float32)
    export(module, tmp_path / "m.onnx", x)
    layer = fastrnn.load(tmp_path / "m.onnx")
    got = layer_run(layer, x)
    assert_close(got, torch_run(module, x))
    np.testing.assert_allclose(got[0], ort_run(tmp_path / "m.onnx", x)[0], rtol=1e-5, atol=1e-5)


def test_torch_export_batch_first(tmp_path):
    module = _module("LSTM", {}, 2, True, batch_first=True)
    x = np.random.default_rng(0).standard_normal((B, T, 4)).astype(np.float32)
    export(module, tmp_path / "m.onnx", x)
    spec = read(tmp_path / "m.onnx")
    assert spec.kwargs["batch_first"] is True
    want = torch_run(module, x)
    assert_close(run_spec(spec, x), want)
    np.testing.assert_allclose(ort_run(tmp_path / "m.onnx", x)[0], want[0], rtol=1e-5, atol=1e-5)
    assert read(tmp_path / "m.onnx", batch_first=False).kwargs["batch_first"] is False
    try:
        fastrnn = need_layers()
    except pytest.skip.Exception:
        return
    assert_close(layer_run(fastrnn.load(tmp_path / "m.onnx"), x), want)


def test_torch_export_without_constant_folding(tmp_path):
    """Weights built by Slice/Concat/Unsqueeze subgraphs are evaluated."""
    module = _module("GRU", {}, 2, False, bias=False)
    x = np.random.default_rng(0).standard_normal((T, B, 4)).astype(np.float32)
    export(module, tmp_path / "m.onnx", x, do_constant_folding=False)
    ops = {n.op_type for n in onnx.load(str(tmp_path / "m.onnx")).graph.node}
    assert "Concat" in ops or "Slice" in ops or "Unsqueeze" in ops
    spec = read(tmp_path / "m.onnx")
    assert spec.kwargs["bias"] is False
    assert_close(run_spec(spec, x), torch_run(module, x))


@pytest.mark.parametrize("kind,kwargs", [("LSTM", dict(num_layers=2, bidirectional=True)),
                                         ("GRU", dict(batch_first=True))])
def test_torch_dynamo_export(tmp_path, kind, kwargs):
    """torch's default (dynamo) exporter also writes LSTM/GRU nodes."""
    torch = need("torch")
    pytest.importorskip("onnxscript")  # the dynamo exporter's own dependency
    torch.manual_seed(0)
    module = getattr(torch.nn, kind)(4, 5, **kwargs).eval()
    shape = (B, T, 4) if kwargs.get("batch_first") else (T, B, 4)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.from_numpy(x),), str(tmp_path / "m.onnx"), dynamo=True)
    spec = read(tmp_path / "m.onnx")
    assert spec.class_name == kind
    assert spec.kwargs["batch_first"] == kwargs.get("batch_first", False)
    want = torch_run(module, x)
    assert_close(run_spec(spec, x), want)
    try:
        fastrnn = need_layers()
    except pytest.skip.Exception:
        return
    assert_close(layer_run(fastrnn.load(tmp_path / "m.onnx"), x), want)


def test_torch_dynamo_export_unrolled_rnn_is_refused(tmp_path):
    torch = need("torch")
    pytest.importorskip("onnxscript")
    module = torch.nn.RNN(4, 5).eval()
    x = np.zeros((T, B, 4), np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.from_numpy(x),), str(tmp_path / "m.onnx"), dynamo=True)
    if any(n.op_type == "RNN" for n in onnx.load(str(tmp_path / "m.onnx")).graph.node):
        assert read(tmp_path / "m.onnx").class_name == "RNN"  # a later torch may write it
        return
    with pytest.raises(ModelFileError, match="no LSTM, GRU or RNN node.*dynamo=False"):
        read(tmp_path / "m.onnx")


def test_torch_export_float64(tmp_path):
    torch = need("torch")
    module = _module("LSTM", {}, 1, True).double()
    x = np.random.default_rng(0).standard_normal((T, B, 4))
    export(module, tmp_path / "m.onnx", x)
    spec = read(tmp_path / "m.onnx")
    assert spec.kwargs["dtype"] == "float64"
    assert_close(run_spec(spec, x), torch_run(module, x), np.float64)
    assert torch.float64 == next(module.parameters()).dtype


# ---------------------------------------------------------------- hand-built nodes


def build(kind, *, D=1, H=4, I=3, layout=0, attrs=None, bias=True, peephole=False,
          w_input=False, h0=None, seed=0, dtype=np.float32, opset=14):
    """One recurrent node; returns (ModelProto, graph input shape)."""
    rng = np.random.default_rng(seed)
    g = G[kind]
    W = (rng.standard_normal((D, g * H, I)) * 0.5).astype(dtype)
    R = (rng.standard_normal((D, g * H, H)) * 0.5).astype(dtype)
    Bv = (rng.standard_normal((D, 2 * g * H)) * 0.5).astype(dtype)
    P = (rng.standard_normal((D, 3 * H)) * 0.5).astype(dtype)
    elem = TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT
    inits = [numpy_helper.from_array(R, "R")]
    x_shape = ["B", "T", I] if layout else ["T", "B", I]
    graph_inputs = [helper.make_tensor_value_info("X", elem, x_shape)]
    if w_input:
        graph_inputs.append(helper.make_tensor_value_info("W", elem, list(W.shape)))
    else:
        inits.append(numpy_helper.from_array(W, "W"))
    ins = ["X", "W", "R", "B" if bias else ""]
    if bias:
        inits.append(numpy_helper.from_array(Bv, "B"))
    ins += ["", ""]  # sequence_lens, initial_h
    if h0 is not None:
        inits.append(numpy_helper.from_array(h0.astype(dtype), "h0"))
        ins[5] = "h0"
    if peephole:
        inits.append(numpy_helper.from_array(P, "P"))
        ins += ["", "P"]
    node = helper.make_node(kind, ins, ["Y", "Y_h"], name=f"my_{kind.lower()}",
                            hidden_size=H, layout=layout, **(attrs or {}))
    graph = helper.make_graph([node], "g", graph_inputs,
                              [helper.make_tensor_value_info("Y", elem, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def save(model, path):
    onnx.save(model, str(path))
    return path


def y_to_out(y, layout):
    """ONNX Y (T, D, B, H) or (B, T, D, H) -> fastrnn out (T, B, D*H) / (B, T, D*H)."""
    if layout == 0:
        T_, D, B_, H = y.shape
        return y.transpose(0, 2, 1, 3).reshape(T_, B_, D * H)
    B_, T_, D, H = y.shape
    return y.reshape(B_, T_, D * H)


HAND = [
    ("LSTM", dict(D=2, layout=1)),
    ("LSTM", dict(D=1, peephole=True)),
    ("LSTM", dict(D=2, peephole=True, attrs={"direction": "bidirectional",
                                             "activations": ["Sigmoid", "Tanh", "Tanh"] * 2})),
    ("GRU", dict(D=1, attrs={"linear_before_reset": 0})),
    ("GRU", dict(D=2, attrs={"linear_before_reset": 0, "direction": "bidirectional"})),
    ("GRU", dict(D=1, layout=1, bias=False, attrs={"linear_before_reset": 1})),
    ("RNN", dict(D=1)),
    ("RNN", dict(D=2, attrs={"activations": ["Relu", "Relu"], "direction": "bidirectional"})),
    ("LSTM", dict(D=1, h0=np.zeros((1, B, 4)))),
]
HAND_IDS = [f"{k}-{i}" for i, (k, _) in enumerate(HAND)]


def _hand(kind, kw):
    kw = dict(kw)
    kw.setdefault("attrs", {})
    if kw["D"] == 2:
        kw["attrs"].setdefault("direction", "bidirectional")
    return build(kind, **kw)


def _hand_want(kind, kw, model, x):
    """ONNX Runtime's output (T, B, D*H) or (B, T, D*H); ORT has no layout=1,
    so that case runs on the same node with layout=0 and transposed data."""
    layout = kw.get("layout", 0)
    if layout == 1:
        twin = onnx.ModelProto()
        twin.CopyFrom(model)
        for a in twin.graph.node[0].attribute:
            if a.name == "layout":
                a.i = 0
        y = ort_run(twin, np.ascontiguousarray(x.transpose(1, 0, 2)))[0]
        out = y_to_out(y, 0).transpose(1, 0, 2)
        # onnx's own reference implementation does run layout=1 directly.
        from onnx.reference import ReferenceEvaluator

        (y_ref,) = ReferenceEvaluator(model).run(["Y"], {"X": x})
        np.testing.assert_allclose(y_to_out(y_ref, 1), out, rtol=1e-5, atol=1e-5)
        return out
    return y_to_out(ort_run(model, x)[0], 0)


@pytest.mark.parametrize("kind,kw", HAND, ids=HAND_IDS)
def test_hand_built(tmp_path, kind, kw):
    model = _hand(kind, kw)
    path = save(model, tmp_path / "h.onnx")
    layout = kw.get("layout", 0)
    x = np.random.default_rng(1).standard_normal((B, T, 3) if layout else (T, B, 3))
    x = x.astype(np.float32)
    spec = read(path)
    assert spec.class_name == kind
    assert spec.kwargs["batch_first"] == (layout == 1)
    assert spec.kwargs["bidirectional"] == (kw["D"] == 2)
    assert spec.kwargs["bias"] == kw.get("bias", True)
    if kind == "LSTM":
        assert spec.kwargs["peephole"] == kw.get("peephole", False)
    if kind == "GRU":
        assert spec.kwargs["linear_before_reset"] == bool(kw["attrs"]["linear_before_reset"])
    want = _hand_want(kind, kw, model, x)
    got = run_spec(spec, x)[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind,kw", HAND, ids=HAND_IDS)
def test_hand_built_loads(tmp_path, kind, kw):
    fastrnn = need_layers()
    model = _hand(kind, kw)
    path = save(model, tmp_path / "h.onnx")
    layout = kw.get("layout", 0)
    x = np.random.default_rng(1).standard_normal((B, T, 3) if layout else (T, B, 3))
    x = x.astype(np.float32)
    layer = fastrnn.load(path)
    got = layer_run(layer, x)[0]
    np.testing.assert_allclose(got, _hand_want(kind, kw, model, x), rtol=1e-5, atol=1e-5)


def test_hand_built_float64(tmp_path):
    model = build("GRU", D=1, dtype=np.float64, attrs={"linear_before_reset": 0})
    spec = read(save(model, tmp_path / "h.onnx"))
    assert spec.kwargs["dtype"] == "float64"
    x = np.random.default_rng(1).standard_normal((T, B, 3))
    # ONNX Runtime has no float64 GRU; onnx's reference implementation does.
    from onnx.reference import ReferenceEvaluator

    (y,) = ReferenceEvaluator(model).run(["Y"], {"X": x})
    np.testing.assert_allclose(run_spec(spec, x)[0], y_to_out(y, 0), rtol=1e-10, atol=1e-12)


def test_runtime_inputs_are_fine(tmp_path):
    """initial_h / sequence_lens as graph inputs are call-time arguments."""
    model = build("GRU")
    node = model.graph.node[0]
    node.input[4] = "lens"
    node.input[5] = "h0"
    model.graph.input.extend([
        helper.make_tensor_value_info("lens", TensorProto.INT32, ["B"]),
        helper.make_tensor_value_info("h0", TensorProto.FLOAT, [1, "B", 4]),
    ])
    spec = read(save(model, tmp_path / "h.onnx"))
    assert spec.class_name == "GRU" and spec.kwargs["linear_before_reset"] is False


# ---------------------------------------------------------------- refused


REFUSED = [
    ("LSTM", dict(attrs={"clip": 1.0}), "clip"),
    ("LSTM", dict(attrs={"input_forget": 1}), "input_forget=1"),
    ("LSTM", dict(attrs={"activations": ["Sigmoid", "Tanh", "Relu"]}), "activations=.*Relu"),
    ("GRU", dict(attrs={"activations": ["HardSigmoid", "Tanh"]}), "activations=.*HardSigmoid"),
    ("RNN", dict(attrs={"activations": ["Sigmoid"]}), "activations=.*Sigmoid"),
    ("RNN", dict(D=2, attrs={"direction": "bidirectional", "activations": ["Tanh", "Relu"]}),
     "the same for each"),
    ("RNN", dict(attrs={"activations": ["Tanh"], "activation_alpha": [1.0]}), "activation_alpha"),
    ("GRU", dict(attrs={"activation_beta": [1.0, 1.0]}), "activation_beta"),
    ("LSTM", dict(attrs={"direction": "reverse"}), "direction='reverse'"),
    ("LSTM", dict(w_input=True), "W .*computed from graph inputs"),
    ("GRU", dict(h0=np.ones((1, B, 4))), "initial_h is a non-zero constant"),
]


@pytest.mark.parametrize("kind,kw,match", REFUSED, ids=[m for _, _, m in REFUSED])
def test_refused(tmp_path, kind, kw, match):
    path = save(build(kind, **kw), tmp_path / "bad.onnx")
    with pytest.raises(ModelFileError, match=match) as info:
        read(path)
    assert "bad.onnx" in str(info.value)
    assert f"my_{kind.lower()}" in str(info.value) or "graph" in str(info.value)


def _two_nodes(between=None, chained=True, kinds=("LSTM", "LSTM")):
    rng = np.random.default_rng(0)
    H, I = 4, 3
    inits, nodes = [], []
    x = "X"
    for k, kind in enumerate(kinds):
        g = G[kind]
        i_k = I if k == 0 else H
        for name, shape in ((f"W{k}", (1, g * H, i_k)), (f"R{k}", (1, g * H, H))):
            inits.append(numpy_helper.from_array(
                rng.standard_normal(shape).astype(np.float32), name))
        nodes.append(helper.make_node(kind, [x, f"W{k}", f"R{k}"], [f"Y{k}"], name=f"n{k}",
                                      hidden_size=H))
        inits.append(numpy_helper.from_array(np.array([1], np.int64), f"ax{k}"))
        nodes.append(helper.make_node("Squeeze", [f"Y{k}", f"ax{k}"], [f"S{k}"]))
        x = f"S{k}"
        if between and k == 0:
            nodes.append(helper.make_node(between, [x], ["Z"]))
            x = "Z"
        if not chained:
            x = "X2"
    ins = [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", "B", I])]
    if not chained:
        ins.append(helper.make_tensor_value_info("X2", TensorProto.FLOAT, ["T", "B", H]))
    out = helper.make_tensor_value_info(x if chained else "S1", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "g", ins, [out], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


def test_stack_rules(tmp_path):
    spec = read(save(_two_nodes(), tmp_path / "ok.onnx"))
    assert spec.kwargs["num_layers"] == 2 and spec.kwargs["bias"] is False
    with pytest.raises(ModelFileError, match="Relu node"):
        read(save(_two_nodes("Relu"), tmp_path / "relu.onnx"))
    with pytest.raises(ModelFileError, match="plain stack"):
        read(save(_two_nodes(chained=False), tmp_path / "apart.onnx"))
    with pytest.raises(ModelFileError, match="GRU, LSTM nodes"):
        read(save(_two_nodes(kinds=("LSTM", "GRU")), tmp_path / "mixed.onnx"))
    relu_only = helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["X"], ["Y"])], "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2])]))
    with pytest.raises(ModelFileError, match="no LSTM, GRU or RNN node.*Relu"):
        read(save(relu_only, tmp_path / "relu_only.onnx"))


@pytest.mark.parametrize("how", ["initializer", "Constant"])
@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_constant_sequence_lens_is_refused(tmp_path, kind, how):
    """A constant sequence_lens would be ignored (fastrnn layers take lengths at call
    time), giving other numbers than ONNX Runtime's: refused by name."""
    model = build(kind, attrs={"linear_before_reset": 1} if kind == "GRU" else None)
    lens = numpy_helper.from_array(np.ones(B, np.int32), "lens")
    if how == "initializer":
        model.graph.initializer.append(lens)
    else:
        model.graph.node.insert(0, helper.make_node("Constant", [], ["lens"], value=lens))
    model.graph.node[-1].input[4] = "lens"
    x = np.random.default_rng(1).standard_normal((T, B, 3)).astype(np.float32)
    y = ort_run(model, x)[0]  # steps past each length are zeros in ONNX Runtime
    assert np.all(y[1:] == 0) and np.any(y[0] != 0)
    path = save(model, tmp_path / "lens.onnx")
    match = (f"{kind} node 'my_{kind.lower()}''s sequence_lens is a constant; a fastrnn "
             r"layer takes sequence lengths at call time \(lengths=\)")
    with pytest.raises(ModelFileError, match=match):
        read(path)
    with pytest.raises(ModelFileError, match="sequence_lens"):
        need_layers().load(path)


def test_zero_constant_initial_state_is_fine(tmp_path):
    spec = read(save(build("LSTM", h0=np.zeros((1, B, 4))), tmp_path / "z.onnx"))
    assert spec.class_name == "LSTM"


# ---------------------------------------------------------------- corrupt


def test_truncated_and_corrupt(tmp_path):
    path = save(build("LSTM", D=2, attrs={"direction": "bidirectional"}), tmp_path / "m.onnx")
    blob = path.read_bytes()
    for cut in sorted({1, 5, 20, len(blob) // 4, len(blob) // 2, len(blob) - 10, len(blob) - 1}):
        (tmp_path / "cut.onnx").write_bytes(blob[:cut])
        with pytest.raises(ModelFileError):
            read(tmp_path / "cut.onnx")
    rng = np.random.default_rng(0)
    for _ in range(30):
        bad = bytearray(blob)
        for pos in rng.integers(0, len(bad), size=4):
            bad[pos] ^= 0x5A
        (tmp_path / "bad.onnx").write_bytes(bytes(bad))
        try:
            read(tmp_path / "bad.onnx")
        except ModelFileError:
            pass
    (tmp_path / "junk.onnx").write_bytes(b"\xff\xfe not a protobuf " * 5)
    with pytest.raises(ModelFileError, match="junk.onnx"):
        read(tmp_path / "junk.onnx")


def _external(model, folder, files):
    """Move W and R into files beside the model: files maps a name to (location,
    offset or None, length or None); the bytes are written there, at the offset."""
    for t in model.graph.initializer:
        if t.name not in files:
            continue
        location, offset, length = files[t.name]
        data = t.raw_data or numpy_helper.to_array(t).tobytes()
        with open(folder / location, "ab") as f:
            if offset is not None:
                f.truncate(offset)
                f.seek(offset)
            f.write(data)
        t.ClearField("raw_data")
        t.ClearField("float_data")
        t.data_location = TensorProto.EXTERNAL
        for key, value in (("location", location), ("offset", offset), ("length", length)):
            if value is not None:
                e = t.external_data.add()
                e.key, e.value = key, str(value)
    return save(model, folder / "m.onnx")


def test_external_data(tmp_path):
    """Tensors kept in files beside the model: one file for all (as onnx.save writes
    it), or one file each without a length; the same weights either way."""
    want = read(save(build("GRU"), tmp_path / "inline.onnx")).state_dict
    one = tmp_path / "one"
    one.mkdir()
    onnx.save(build("GRU"), str(one / "m.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True, location="m.onnx.data", size_threshold=0)
    each = tmp_path / "each"
    each.mkdir()
    _external(build("GRU"), each, {"W": ("w.bin", None, None), "R": ("r.bin", None, None)})
    for folder in (one, each):
        got = read(folder / "m.onnx").state_dict
        assert sorted(got) == sorted(want)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])


@pytest.mark.parametrize("files, tail, match", [
    # no length, and the file is longer than the tensor: onnx alone reads all of it
    ({"W": ("w.bin", None, None)}, 16, "the rest of the file"),
    ({"W": ("w.bin", None, None)}, 0, None),  # exactly the tensor: fine
    ({"W": ("w.bin", 8, 48)}, 0, "48 bytes, where its dtype and dims"),
    ({"W": ("w.bin", None, 144)}, 16, None),  # a length: the bytes after it are not read
    ({"W": ("w.bin", 64, 144)}, -1, "holds 207"),  # the file ends before the tensor
    ({"W": ("../w.bin", None, 144)}, 0, "'../w.bin', which is not a file in the model's folder"),
    ({"W": ("missing.bin", None, 144)}, "delete", "missing.bin"),
], ids=["no-length-longer-file", "no-length-exact", "wrong-length", "length", "past-the-end",
        "outside", "missing"])
def test_external_data_checked(tmp_path, files, tail, match):
    """A tensor in a file beside the model is read only when the file holds the bytes
    its dtype and dims declare, and then only those bytes."""
    folder = tmp_path / "m"
    folder.mkdir()
    path = _external(build("GRU"), folder, files)
    data = folder / files["W"][0]
    if tail == "delete":
        data.unlink()
    elif tail > 0:
        with open(data, "ab") as f:
            f.write(b"\0" * tail)
    elif tail < 0:
        os.truncate(data, data.stat().st_size + tail)
    if match is None:
        assert read(path).state_dict["weight_ih_l0"].shape == (12, 3)
        return
    with pytest.raises(ModelFileError, match=match):
        read(path)


@pytest.mark.parametrize("where", ["absolute", "parent", "symlink"])
def test_external_data_elsewhere_is_not_looked_at(tmp_path, where):
    """A location outside the model's folder is refused before the file is looked
    at: the message says nothing of what is there (its size, whether it exists)."""
    folder = tmp_path / "m"
    folder.mkdir()
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\0" * 12345)
    if where == "symlink":
        (folder / "link.bin").symlink_to(secret)
    loc = {"absolute": str(secret), "parent": "../secret.bin", "symlink": "link.bin"}[where]
    model = build("GRU")
    t = next(t for t in model.graph.initializer if t.name == "W")
    t.ClearField("raw_data")
    t.ClearField("float_data")
    t.data_location = TensorProto.EXTERNAL
    e = t.external_data.add()
    e.key, e.value = "location", loc
    path = save(model, folder / "m.onnx")
    with pytest.raises(ModelFileError, match="not a file in the model's folder") as info:
        read(path)
    assert "12345" not in str(info.value)


def test_wrong_weight_shapes(tmp_path):
    model = build("LSTM")
    model.graph.node[0].attribute[0].i = 5  # hidden_size attribute lies
    with pytest.raises(ModelFileError, match="hidden_size=5"):
        read(save(model, tmp_path / "h.onnx"))


def test_onnx_missing(tmp_path):
    path = save(build("GRU"), tmp_path / "m.onnx")
    proc = run_python(
        "import sys; sys.modules['onnx'] = None\n"
        "from fastrnn.io import read\n"
        "from fastrnn.errors import ModelFileError\n"
        "try:\n    read(sys.argv[1])\n"
        "except ModelFileError as e:\n    print('ERR', e)\n", str(path))
    assert proc.returncode == 0, proc.stderr
    assert "ERR" in proc.stdout and "pip install onnx" in proc.stdout
