"""Does a .tflite model run entirely on the TFLite (LiteRT) GPU delegate? A static check.

The converter's own GPU-compatibility analyser is not used: it was not reliable for these graphs.
Instead the rules below are written down from the delegate's source, which decides op by op:

- Which builtin ops have a parser, and the highest op version each accepts:
  `NewOperationParser` and the `CheckMaxSupportedOpVersion` calls in
  tflite/delegates/gpu/common/model_builder.cc of google-ai-edge/LiteRT, commit
  34ec5badbbbfd4d2147d1362f299f58843f84dfc (the delegate moved there from
  tensorflow/lite/delegates/gpu/common/model_builder.cc, whose older list is a subset).
- Tensor rules (`IsAllAllowedTensors` / `GetOpsToReplace`, same file): every non-constant input and
  output of a delegated op is float32 or float16, and no tensor has rank 5 or more.
- float16 weights: DEQUANTIZE ops whose input is a float16 constant are dropped by the delegate
  (`BuildModelEnforceIO`, same file) and count as supported.
- ADD / MUL broadcasting (`CheckAddMulBroadcastCompatibility` in
  tflite/tools/versioning/gpu_compatibility.cc, same repository and era): operands of different
  ranks (both > 1) only as 4-D with 3-D (batch 1), 4-D with [1, 1], or [b, x, y, c] with [b, c].
- Fused activations: none of the ops may fuse SIGN_BIT (`IsActivationSupported`).
- CAST only between the type pairs listed in `CheckGpuDelegateCompatibility` (same file).

On top of the delegate's rules this project asks for static shapes (no -1 in any shape signature)
and 4-D activations throughout (only the [1] intensity input may have another rank).
"""

from __future__ import annotations

from affinegan_tf.export.tflite import OperatorInfo, TfliteGraph, read_tflite_graph

DELEGATE_SOURCE = (
    "google-ai-edge/LiteRT tflite/delegates/gpu/common/model_builder.cc "
    "(NewOperationParser, IsAllAllowedTensors) at 34ec5badbbbfd4d2147d1362f299f58843f84dfc; "
    "tflite/tools/versioning/gpu_compatibility.cc (CheckAddMulBroadcastCompatibility)"
)

# Builtin op -> highest version the delegate's parser accepts (None: the parser checks none).
GPU_DELEGATE_BUILTIN_OPS: dict[str, int | None] = {
    "ABS": 2,
    "ADD": 2,
    "ADD_N": 2,
    "AVERAGE_POOL_2D": 2,
    "BATCH_MATMUL": None,
    "CAST": None,
    "CONCATENATION": 2,
    "CONV_2D": 6,
    "COS": 2,
    "CUMSUM": 1,
    "DENSIFY": 1,
    "DEPTHWISE_CONV_2D": 6,
    "DEPTH_TO_SPACE": None,
    "DEQUANTIZE": 3,  # float16 constants only (see module docstring)
    "DIV": 2,
    "ELU": 2,
    "EQUAL": 2,
    "EXP": 2,
    "FLOOR": 2,
    "FLOOR_DIV": 2,
    "FLOOR_MOD": 2,
    "FULLY_CONNECTED": 9,
    "GATHER": 1,
    "GELU": 2,
    "GREATER": 2,
    "GREATER_EQUAL": 2,
    "HARD_SWISH": None,
    "LEAKY_RELU": 2,
    "LESS": 2,
    "LESS_EQUAL": 2,
    "LOG": 2,
    "LOGICAL_AND": 2,
    "LOGISTIC": 2,
    "LSTM": 4,
    "MAXIMUM": 2,
    "MAX_POOL_2D": 2,
    "MEAN": None,
    "MINIMUM": 2,
    "MIRROR_PAD": 2,
    "MUL": 3,
    "NEG": 2,
    "NOT_EQUAL": 2,
    "ONE_HOT": 1,
    "PACK": None,
    "PAD": 2,
    "PADV2": 2,
    "POW": 2,
    "PRELU": 1,
    "REDUCE_MAX": None,
    "REDUCE_MIN": None,
    "REDUCE_PROD": None,
    "RELU": 2,
    "RELU6": 2,
    "RELU_0_TO_1": 2,
    "RELU_N1_TO_1": 2,
    "RESHAPE": 1,
    "RESIZE_BILINEAR": 3,
    "RESIZE_NEAREST_NEIGHBOR": 3,
    "RSQRT": 2,
    "SELECT": 1,
    "SELECT_V2": 1,
    "SIGN": 2,
    "SIN": 2,
    "SLICE": 2,
    "SOFTMAX": 2,
    "SPACE_TO_DEPTH": 2,
    "SPLIT": None,
    "SPLIT_V": None,
    "SQRT": 2,
    "SQUARE": 2,
    "SQUARED_DIFFERENCE": 2,
    "STRIDED_SLICE": 4,
    "SUB": 2,
    "SUM": None,
    "TANH": 2,
    "TILE": None,
    "TRANSPOSE": 4,
    "TRANSPOSE_CONV": 3,
    "UNPACK": None,
}

# Custom ops with a parser in the same switch.
GPU_DELEGATE_CUSTOM_OPS = frozenset(
    {"Convolution2DTransposeBias", "MaxPoolingWithArgmax2D", "MaxUnpooling2D", "Resampler"}
)

_FLOAT_TYPES = ("FLOAT32", "FLOAT16")
# CAST type pairs the delegate runs (CheckGpuDelegateCompatibility, kTfLiteBuiltinCast).
_GPU_CASTS = {
    ("BOOL", "FLOAT16"),
    ("BOOL", "FLOAT32"),
    ("FLOAT16", "BOOL"),
    ("FLOAT32", "BOOL"),
    ("FLOAT32", "FLOAT32"),
    ("FLOAT32", "INT32"),
    ("INT32", "FLOAT32"),
    ("INT32", "INT32"),
}
_SIGN_BIT_ACTIVATION = 5  # ActivationFunctionType.SIGN_BIT in the TFLite schema


def _weight_tensors(graph: TfliteGraph) -> set[int]:
    """Constants, plus the outputs of DEQUANTIZE ops on float16 constants (dropped by the delegate,
    which then reads the float16 weights directly)."""
    weights = {tensor.index for tensor in graph.tensors if tensor.constant}
    for operator in graph.operators:
        source = operator.inputs[0] if operator.inputs else None
        if operator.name == "DEQUANTIZE" and source is not None and source.index in weights:
            if source.dtype == "FLOAT16":
                weights.update(tensor.index for tensor in operator.outputs)
    return weights


def _broadcast_problem(operator: OperatorInfo) -> str | None:
    first, second = operator.inputs[0].shape, operator.inputs[1].shape
    if len(first) <= 1 or len(second) <= 1 or len(first) == len(second):
        return None
    longer, shorter = (first, second) if len(first) >= len(second) else (second, first)
    allowed = len(longer) == 4 and (
        (len(shorter) == 3 and longer[0] == 1)
        or (len(shorter) == 2 and longer[0] == 1 and shorter == (1, 1))
        or (len(shorter) == 2 and longer[0] == shorter[0] and longer[3] == shorter[1])
    )
    return None if allowed else f"broadcasting {list(first)} with {list(second)}"


def _operator_problems(operator: OperatorInfo, weights: set[int]) -> list[str]:
    if operator.custom:
        if operator.name in GPU_DELEGATE_CUSTOM_OPS:
            return []
        return [f"custom op {operator.name} has no GPU kernel"]
    if operator.name not in GPU_DELEGATE_BUILTIN_OPS:
        return [f"{operator.name} is not a GPU delegate op"]
    problems = []
    max_version = GPU_DELEGATE_BUILTIN_OPS[operator.name]
    if max_version is not None and operator.version > max_version:
        problems.append(f"{operator.name} version {operator.version} > {max_version}")
    if operator.name == "DEQUANTIZE":
        source = operator.inputs[0]
        if not (source.constant and source.dtype == "FLOAT16"):
            problems.append("DEQUANTIZE of something other than float16 weights")
        return problems  # its float16 input is the point; the tensor rule below does not apply
    if operator.name in ("ADD", "MUL") and len(operator.inputs) == 2:
        problem = _broadcast_problem(operator)
        if problem:
            problems.append(f"{operator.name} {problem}")
    if operator.name == "CAST":
        pair = (operator.inputs[0].dtype, operator.outputs[0].dtype)
        if pair not in _GPU_CASTS:
            problems.append(f"CAST from {pair[0]} to {pair[1]}")
        return problems  # casts have their own type rule
    if operator.name == "MEAN":
        axes = operator.inputs[1]
        if not (axes.constant and axes.dtype == "INT32"):
            problems.append("MEAN axes are not a constant int32 tensor")
    activation = getattr(operator.options, "fusedActivationFunction", 0)
    if activation == _SIGN_BIT_ACTIVATION:
        problems.append(f"{operator.name} fuses a SIGN_BIT activation")
    for tensor in [*operator.inputs, *operator.outputs]:
        if tensor is None:
            continue
        if len(tensor.shape) >= 5:
            problems.append(f"{operator.name}: tensor {tensor.name} has rank {len(tensor.shape)}")
        if tensor.index not in weights and tensor.dtype not in _FLOAT_TYPES:
            problems.append(f"{operator.name}: tensor {tensor.name} is {tensor.dtype}")
    return problems


def check_gpu_delegate(graph_or_path) -> dict:
    """Checks every op and tensor of a .tflite model against the GPU delegate's rules.

    Args:
        graph_or_path: A `TfliteGraph`, a .tflite path or its bytes.

    Returns:
        {"gpu_compatible": bool, "ops": {name: count}, "problems": [...], "source": ...}, where
        problems also lists dynamic shapes and non-4-D activations.
    """
    graph = graph_or_path if isinstance(graph_or_path, TfliteGraph) else None
    if graph is None:
        graph = read_tflite_graph(graph_or_path)
    weights = _weight_tensors(graph)
    problems: list[str] = []
    if graph.subgraphs != 1:
        problems.append(f"{graph.subgraphs} subgraphs (control flow)")
    for operator in graph.operators:
        problems += _operator_problems(operator, weights)
    intensity_inputs = {tensor.index for tensor in graph.inputs if tensor.shape == (1,)}
    for tensor in graph.tensors:
        if any(dimension < 0 for dimension in tensor.shape_signature):
            problems.append(f"tensor {tensor.name} has a dynamic shape {tensor.shape_signature}")
        if tensor.index not in weights and len(tensor.shape) != 4:
            if tensor.index in intensity_inputs:
                continue
            problems.append(f"activation {tensor.name} is {len(tensor.shape)}-D, not 4-D")
    unique = list(dict.fromkeys(problems))
    return {
        "gpu_compatible": not unique,
        "ops": graph.op_counts(),
        "problems": unique,
        "source": DELEGATE_SOURCE,
    }
