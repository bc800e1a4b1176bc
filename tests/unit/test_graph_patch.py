"""make_batch_dynamic on a small hand-built graph with the same Reshape([1,-1]) pattern."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from vision.graph_patch import load_with_dynamic_batch, make_batch_dynamic
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


def test_unreadable_file_is_a_model_load_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00not a model at all" * 10)
    with pytest.raises(ModelLoadError):
        load_with_dynamic_batch(bad)
