"""Graph patches applied when a model is loaded; the file on disk is never changed.

Batch: models exported with a fixed batch of 1 carry that 1 in two places: the
graph's inputs/outputs and the constant target shapes of ``Reshape`` nodes
(``[1, -1]``). Renaming the first dimension to ``N`` and replacing a leading
constant 1 with 0 (ONNX: "copy this dimension from the input") gives the same
outputs at any batch size; tests/integration/test_pipeline_faces.py proves it on
real faces.

PReLU: ONNX Runtime's CPU PRelu kernel broadcasts its per-channel slope element
by element; in the default embedder its 33 PRelu nodes took 64 % of the run
(5.9 of 9.2 ms per face). ``PRelu(x, s) = s*x + (1-s)*Relu(x)`` computes the
same values with kernels that vectorise (2.7x faster model, outputs equal to
within float rounding; bench/pipeline.py times both in one run).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .errors import ModelLoadError

__all__ = ("make_batch_dynamic", "rewrite_prelu", "load_patched")


def _constant_tensors(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    tensors = {init.name: init for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    tensors[node.output[0]] = attr.t
    return tensors


def make_batch_dynamic(model: onnx.ModelProto, dim_name: str = "N") -> onnx.ModelProto:
    graph = model.graph
    initializer_names = {init.name for init in graph.initializer}
    for value in list(graph.input) + list(graph.output):
        if value.name in initializer_names:
            continue
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = dim_name
    # Intermediate shapes inferred for batch 1 would contradict the new batch.
    del graph.value_info[:]

    constants = _constant_tensors(graph)
    patched: set[str] = set()
    for node in graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2:
            continue
        shape_name = node.input[1]
        tensor = constants.get(shape_name)
        if tensor is None or shape_name in patched:
            continue
        shape = numpy_helper.to_array(tensor)
        if shape.ndim == 1 and shape.size >= 2 and shape[0] == 1:
            new_shape = shape.copy()
            new_shape[0] = 0
            tensor.CopyFrom(numpy_helper.from_array(new_shape.astype(np.int64), tensor.name))
            patched.add(shape_name)
    return model


def rewrite_prelu(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace every PRelu whose slope is a constant by ``s*x + (1-s)*Relu(x)``."""
    graph = model.graph
    constants = _constant_tensors(graph)
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        slope_tensor = constants.get(node.input[1]) if node.op_type == "PRelu" else None
        if slope_tensor is None:
            nodes.append(node)
            continue
        x, slope = node.input
        y = node.output[0]
        rest = f"{y}__relu_rest"
        one_minus_slope = (1 - numpy_helper.to_array(slope_tensor)).astype(np.float32)
        graph.initializer.append(numpy_helper.from_array(one_minus_slope, f"{y}__one_minus_slope"))
        nodes += [
            helper.make_node("Mul", [x, slope], [f"{y}__scaled"]),
            helper.make_node("Relu", [x], [f"{y}__relu"]),
            helper.make_node("Mul", [f"{y}__relu", f"{y}__one_minus_slope"], [rest]),
            helper.make_node("Add", [f"{y}__scaled", rest], [y]),
        ]
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def load_patched(path: Path, *, dynamic_batch: bool = True) -> bytes:
    """The model at ``path`` with its PReLUs rewritten and, if asked, a symbolic batch dimension."""
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf DecodeError and friends
        raise ModelLoadError(f"{path} is not a readable ONNX model: {exc}") from exc
    model = rewrite_prelu(model)
    patched = make_batch_dynamic(model) if dynamic_batch else model
    return bytes(patched.SerializeToString())
