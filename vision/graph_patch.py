"""Make a model's batch dimension symbolic so N faces run in one call.

Models exported with a fixed batch of 1 carry that 1 in two places: the graph's
inputs/outputs and the constant target shapes of ``Reshape`` nodes
(``[1, -1]``). Renaming the first dimension to ``N`` and replacing a leading
constant 1 with 0 (ONNX: "copy this dimension from the input") gives the same
outputs at any batch size; tests/unit/test_embedder_batch.py proves it per model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from .errors import ModelLoadError

__all__ = ("make_batch_dynamic", "load_with_dynamic_batch")


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


def load_with_dynamic_batch(path: Path) -> bytes:
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf DecodeError and friends
        raise ModelLoadError(f"{path} is not a readable ONNX model: {exc}") from exc
    return make_batch_dynamic(model).SerializeToString()
