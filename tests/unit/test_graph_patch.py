"""Load-time graph patches on small hand-built graphs: the batch dimension (the Reshape([1,-1]) pattern) and PReLU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from vision.graph_patch import load_patched, make_batch_dynamic, rewrite_prelu
from vision.errors import ModelLoadError


def _model() -> onnx.ModelProto:
    weight = numpy_helper.from_array(np.arange(2 * 3 * 4, dtype=np.float32).reshape(1, 2, 3, 4) / 10, "w")
    shape = numpy_helper.from_array(np.array([1, -1], np.int64), "shape")
    nodes = [
        helper.make_node("Mul", ["input", "w"], ["scaled"]),
        helper.make_node("Reshape", ["scaled", "shape"], ["flat"]),
        helper.make_node("Relu", ["flat"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 2, 3, 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 24])],
        initializer=[weight, shape],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_patched_model_runs_any_batch_with_identical_rows() -> None:
    patched = make_batch_dynamic(_model())
    session = ort.InferenceSession(patched.SerializeToString(), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == "N"
    rng = np.random.default_rng(0)
    batch = rng.normal(size=(5, 2, 3, 4)).astype(np.float32)
    (together,) = session.run(None, {"input": batch})
    singles = np.concatenate([session.run(None, {"input": row[None]})[0] for row in batch])
    assert together.shape == (5, 24)
    np.testing.assert_array_equal(together, singles)


def test_unpatched_model_refuses_batch() -> None:
    session = ort.InferenceSession(_model().SerializeToString(), providers=["CPUExecutionProvider"])
    with pytest.raises(Exception):
        session.run(None, {"input": np.zeros((3, 2, 3, 4), np.float32)})


def test_unreadable_file_is_a_model_load_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00not a model at all" * 10)
    with pytest.raises(ModelLoadError):
        load_patched(bad)


def _prelu_model(slope: np.ndarray) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("PRelu", ["input", "slope"], ["output"])], "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 4, 5])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 4, 5])],
        initializer=[numpy_helper.from_array(slope, "slope")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)])


@pytest.mark.parametrize("slope_shape", [(3, 1, 1), (1,)])
def test_prelu_rewrite_computes_the_same_values_without_prelu(slope_shape: tuple[int, ...]) -> None:
    slope = np.linspace(-0.5, 0.75, int(np.prod(slope_shape)), dtype=np.float32).reshape(slope_shape)
    x = np.random.default_rng(1).normal(size=(1, 3, 4, 5)).astype(np.float32)
    original = ort.InferenceSession(_prelu_model(slope).SerializeToString(), providers=["CPUExecutionProvider"])
    rewritten_model = rewrite_prelu(_prelu_model(slope))
    assert "PRelu" not in {node.op_type for node in rewritten_model.graph.node}
    rewritten = ort.InferenceSession(rewritten_model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = np.where(x > 0, x, slope * x)
    np.testing.assert_allclose(original.run(None, {"input": x})[0], expected, rtol=1e-6)
    np.testing.assert_allclose(rewritten.run(None, {"input": x})[0], expected, rtol=1e-6, atol=1e-7)


def test_prelu_with_a_computed_slope_is_left_alone() -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["s"], ["slope"]), helper.make_node("PRelu", ["input", "slope"], ["output"])], "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3]),
         helper.make_tensor_value_info("s", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3])],
    )
    model = rewrite_prelu(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)]))
    assert [node.op_type for node in model.graph.node] == ["Relu", "PRelu"]
