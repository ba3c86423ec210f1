"""Our ONNX writer, read back by the onnx package and run by ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest

from bot.knowledge.e5_onnx import build_graph
from bot.knowledge.e5_weights import E5Weights
from bot.knowledge.onnx_proto import Graph

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def small_graph() -> bytes:
    g = Graph("small")
    w = g.constant("w", np.arange(12, dtype=np.float32).reshape(3, 4) - 5.5)
    shape = g.constant("shape", np.array([0, -1], np.int64))
    y = g.node("MatMul", ["x", w], ["xw"])[0]
    y = g.node("Softmax", [y], ["soft"], axis=-1)[0]
    y = g.node("Transpose", [g.node("Reshape", [y, shape], ["flat"])[0]], ["t"], perm=[1, 0])[0]
    g.node("LeakyRelu", [y], ["y"], alpha=0.25)
    g.input("x", ["batch", 3])
    g.output("y", [4, "batch"])
    return g.model({"": 17})


def test_the_onnx_package_reads_and_checks_what_we_write() -> None:
    model = onnx.load_model_from_string(small_graph())
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == 8 and model.opset_import[0].version == 17
    assert [n.op_type for n in model.graph.node] == ["MatMul", "Softmax", "Reshape", "Transpose", "LeakyRelu"]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for n in model.graph.node for a in n.attribute}
    assert attrs == {"axis": -1, "perm": [1, 0], "alpha": 0.25}
    w = onnx.numpy_helper.to_array(model.graph.initializer[0])
    np.testing.assert_array_equal(w, np.arange(12, dtype=np.float32).reshape(3, 4) - 5.5)
    dims = [d.dim_param or d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    assert dims == [4, "batch"]


def test_onnx_runtime_computes_what_the_graph_says() -> None:
    x = np.array([[1.0, 0.0, -2.0], [0.5, 0.5, 0.5]], np.float32)
    (y,) = ort.InferenceSession(small_graph(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    xw = x @ (np.arange(12, dtype=np.float32).reshape(3, 4) - 5.5)
    soft = np.exp(xw - xw.max(-1, keepdims=True))
    soft /= soft.sum(-1, keepdims=True)
    np.testing.assert_allclose(y, soft.T, rtol=1e-5)  # softmax outputs are positive: LeakyRelu keeps them


def test_the_e5_graph_parses_with_every_weight_in_place() -> None:
    weights = E5Weights()
    model = onnx.load_model_from_string(build_graph(weights))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("MatMulNBits") == 4 * weights.config.layers
    assert ops.count("LayerNormalization") == 1 + 2 * weights.config.layers
    assert {n.domain for n in model.graph.node if n.op_type == "MatMulNBits"} == {"com.microsoft"}
    fi = next(t for t in model.graph.initializer if t.name == "l0.fi.q4")
    assert list(fi.dims) == [weights.config.ffn, weights.config.hidden // 32, 16]
    assert [i.name for i in model.graph.input] == ["x", "mask", "pool"]
