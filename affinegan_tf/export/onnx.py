"""ONNX export via tf2onnx (opset 17), and ONNX Runtime's mobile (NNAPI / CoreML) usability check.

Two graphs, both traced from `export/signature.py`:
- `generate_one.onnx` (static): image float32 [1, S, S, 3] in [0, 1], intensity float32 [1]
  -> frames float32 [1, S, S, 3] in [0, 1]. Fixed shapes, what NNAPI and CoreML need.
- `generate_frames.onnx` (dynamic batch): the same image, intensities float32 [N]
  -> frames [N, S, S, 3]; encodes once and decodes all N as one batch (server / desktop).

The browser page (`export/web.py`) uses a third pair, `encode.onnx` (image -> base_i, delta_i
features, once per photo) and `decode.onnx` (features + intensity [1] -> frame, once per slider
position), the same split as the TFLite encode / decode pair.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from affinegan_tf.calibration import UNCALIBRATED_APEX
from affinegan_tf.conv_forms import portable_graph
from affinegan_tf.export import signature
from affinegan_tf.networks import AffineGenerator

OPSET = 17
ONNX_MODELS = {
    "generate_one": "static shapes: image [1,S,S,3] in [0,1] + intensity [1] -> [1,S,S,3]",
    "generate_frames": "dynamic N: image [1,S,S,3] in [0,1] + intensities [N] -> [N,S,S,3]",
}
# Written only for the browser page (into web/models/), on request.
SPLIT_ONNX_MODELS = {
    "encode": "run once per photo: image [1,S,S,3] in [0,1] -> base_i, delta_i features (and "
    "source, the face in [-1,1], for attention output)",
    "decode": "run once per intensity: encode's outputs + intensity [1] -> frame in [0,1]",
}
# The mobile preset must export to graphs NNAPI / CoreML take whole; these are what transposed
# convolutions, broadcasting by copy, UpSampling2D's repeat and 1/sqrt turn into.
MOBILE_FORBIDDEN_OPS = ("ConvTranspose", "Expand", "Tile", "Reciprocal")


def _function(generator: AffineGenerator, model: str, apex: float):
    factories = {
        "generate_one": signature.make_generate_one,
        "generate_frames": lambda model, apex: signature.make_generate_frames(model, None, apex),
        "encode": signature.make_encode,
        "decode": signature.make_decode,
    }
    return factories[model](generator, apex)


def describe_model(name: str) -> str:
    """What an exported ONNX file (by stem) takes and returns."""
    return {**ONNX_MODELS, **SPLIT_ONNX_MODELS}[name]


def export_onnx(
    generator: AffineGenerator,
    out_dir: Path,
    models=tuple(ONNX_MODELS),
    apex: float = UNCALIBRATED_APEX,
) -> list[Path]:
    """Writes `<model>.onnx` for each of `models` (default generate_one and generate_frames;
    `SPLIT_ONNX_MODELS` names the encode / decode pair); returns their paths. `apex` (the raw
    intensity a = 1 means, calibration.py) becomes a constant of each graph.

    tf2onnx keeps a fresh copy of every constant each time one of its optimisers runs (tens of
    copies of the weights: > 20 GB for the paper model), so the graph is converted with the
    weights as inputs, they become initializers afterwards, and ONNX Runtime's basic,
    provider-independent optimisation folds the weight layout transposes into them.
    """
    import onnx
    import tf2onnx

    weights = {
        f"weight_{index}": np.asarray(variable.numpy())
        for index, variable in enumerate(signature.float_variables(generator))
    }
    written = []
    for model in models:
        traced = _function(generator, model, apex)
        function, specs, names = signature.with_weight_inputs(traced, generator)
        with portable_graph():  # the standard conv ops, which ONNX runtimes map natively
            proto, _ = tf2onnx.convert.from_function(function, input_signature=specs, opset=OPSET)
        kept = [value for value in proto.graph.input if value.name not in weights]
        proto.graph.initializer.extend(
            onnx.numpy_helper.from_array(weights[name], name) for name in names
        )
        del proto.graph.input[:]
        proto.graph.input.extend(kept)
        path = Path(out_dir) / f"{model}.onnx"
        with tempfile.TemporaryDirectory() as temporary:
            raw = Path(temporary) / path.name
            onnx.save(proto, str(raw))
            del proto
            _fold_constants(raw, path)
        written.append(path)
    return written


def _fold_constants(source: Path, target: Path) -> None:
    """ONNX Runtime's basic graph optimisation (constant folding, redundant nodes), saved as a
    plain ONNX file that declares only the opsets its nodes use."""
    import onnx
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(target)
    options.log_severity_level = 3
    onnxruntime.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    model = onnx.load(str(target))
    used = {node.domain for node in model.graph.node}
    kept = [entry for entry in model.opset_import if entry.domain in used or entry.domain == ""]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    model.producer_name = "affinegan-tf (tf2onnx + onnxruntime basic optimisation)"
    onnx.checker.check_model(model)
    onnx.save(model, str(target))


def onnx_op_counts(path: Path) -> dict[str, int]:
    """Node count per op type of an ONNX file (main graph)."""
    import onnx

    counts: dict[str, int] = {}
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


def onnx_io(path: Path) -> dict:
    """Exact I/O of an ONNX file: name -> {dtype, shape} (None for a dynamic dimension)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph

    def describe(values) -> dict:
        described = {}
        for value in values:
            tensor = value.type.tensor_type
            shape = [
                int(dim.dim_value) if dim.HasField("dim_value") else None
                for dim in tensor.shape.dim
            ]
            dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
            described[value.name] = {"dtype": dtype, "shape": shape}
        return described

    return {"opset": OPSET, "inputs": describe(graph.input), "outputs": describe(graph.output)}


def session(path: Path, num_threads: int | None = None):
    """An ONNX Runtime CPU inference session."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if num_threads:
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(
        str(path), sess_options=options, providers=["CPUExecutionProvider"]
    )


def mobile_usability(path: Path) -> dict:
    """What ONNX Runtime's mobile usability checker says NNAPI and CoreML can run.

    The same steps as `python -m onnxruntime.tools.check_onnx_model_mobile_usability MODEL`
    (optimise to the basic level, infer shapes, partition per execution provider), returning the
    figures instead of logging them.

    Returns:
        {ep: {"nodes", "supported_nodes", "fraction", "partitions", "unsupported_ops",
        "unsupported_for_dynamic_shape", "suitability"}} for "nnapi", "coreml_neuralnetwork",
        "coreml_mlprogram".
    """
    from onnxruntime.tools.mobile_helpers import usability_checker
    from onnxruntime.tools.onnx_model_utils import ModelProtoWithShapeInfo, optimize_model

    path = Path(path)
    with tempfile.TemporaryDirectory() as temporary:
        optimized = Path(temporary) / path.name
        optimize_model(path, optimized, use_external_initializers=True)
        model = ModelProtoWithShapeInfo(optimized).model_with_shape_info
        partitions = {
            "nnapi": usability_checker.check_nnapi_partitions(model, True),
            "coreml_neuralnetwork": usability_checker.check_coreml_partitions(
                model, True, "coreml_supported_neuralnetwork_ops.md"
            ),
            "coreml_mlprogram": usability_checker.check_coreml_partitions(
                model, True, "coreml_supported_mlprogram_ops.md"
            ),
        }
    report = {}
    for provider, info in partitions.items():
        report[provider] = {
            "nodes": info.num_nodes,
            "supported_nodes": info.num_supported_nodes,
            "fraction": round(info.num_supported_nodes / max(info.num_nodes, 1), 4),
            "partitions": info.num_partitions,
            "unsupported_ops": sorted(op.split(":")[-1] for op in info.unsupported_ops),
            "unsupported_for_dynamic_shape": info.nodes_unsupported_due_to_dynamic_input,
            "suitability": info.suitability().name,
        }
    return report


def run_onnx_pair(encode_session, decode_session, image: np.ndarray, intensities) -> np.ndarray:
    """encode.onnx once, then decode.onnx once per intensity, as the browser page runs them.

    Returns:
        [N, S, S, 3] float32 in [0, 1] (not clipped).
    """
    feature_names = [item.name for item in encode_session.get_outputs()]
    features = dict(zip(feature_names, encode_session.run(None, {"image": image}), strict=True))
    intensities = np.asarray(intensities, np.float32).reshape(-1)
    frames = [
        decode_session.run(["frames"], {**features, "intensity": intensities[i : i + 1]})[0]
        for i in range(len(intensities))
    ]
    return np.concatenate(frames, axis=0)


def run_onnx(model_session, image: np.ndarray, intensities) -> np.ndarray:
    """Runs either ONNX graph on a [1, S, S, 3] float [0, 1] image; returns [N, S, S, 3] in [0, 1].

    The static graph is called once per intensity, the dynamic one once.
    """
    inputs = {item.name: item for item in model_session.get_inputs()}
    intensities = np.asarray(intensities, np.float32).reshape(-1)
    if "intensities" in inputs:
        return model_session.run(["frames"], {"image": image, "intensities": intensities})[0]
    frames = [
        model_session.run(["frames"], {"image": image, "intensity": intensities[i : i + 1]})[0]
        for i in range(len(intensities))
    ]
    return np.concatenate(frames, axis=0)
