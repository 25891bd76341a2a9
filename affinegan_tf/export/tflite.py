"""TFLite export: `generate_one` and the `encode` / `decode` pair, float32 and float16 weights.

All three models are traced from `export/signature.py` and converted with TFLite builtin ops only
(no Flex / Select TF ops), with static shapes; each file's one signature is named after it.
`read_tflite_graph` reads a converted file's ops and tensors straight from its flatbuffer, for the
GPU-delegate check in `tflite_gpu.py` and for tests.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

from affinegan_tf.calibration import UNCALIBRATED_APEX
from affinegan_tf.conv_forms import portable_graph
from affinegan_tf.export import signature
from affinegan_tf.networks import AffineGenerator

# File name -> (signature factory, what it is). The fp16 variants add "_fp16" before ".tflite".
TFLITE_MODELS = {
    "generate_one": (
        signature.make_generate_one,
        "one frame per call: image [1,S,S,3] in [0,1] + intensity [1] -> frame [1,S,S,3] in [0,1]",
    ),
    "encode": (
        signature.make_encode,
        "run once per photo: image [1,S,S,3] in [0,1] -> base_i, delta_i features",
    ),
    "decode": (
        signature.make_decode,
        "run once per intensity: base_i, delta_i features + intensity [1] -> frame in [0,1]",
    ),
}


def tflite_file_name(model: str, fp16: bool) -> str:
    """`generate_one.tflite`, `generate_one_fp16.tflite`, ..."""
    return f"{model}_fp16.tflite" if fp16 else f"{model}.tflite"


def _weights_module(generator: AffineGenerator | None) -> tf.Module:
    """A tf.Module owning plain tf.Variable copies of the generator's weights.

    The converter freezes plain tf.Variables into constants, but keeps Keras 3 variables as
    resource variables (VAR_HANDLE / READ_VARIABLE ops, uninitialised at run time); freezing them
    in Python first (convert_variables_to_constants_v2) costs ~10x the weights in memory.
    """
    module = tf.Module()
    module.weights = (
        [
            tf.Variable(variable.value, trainable=False, name=f"weight_{index}")
            for index, variable in enumerate(signature.float_variables(generator))
        ]
        if generator is not None
        else []
    )
    return module


def _converter(saved_model_dir: Path, key: str, fp16: bool):
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir), signature_keys=[key])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if fp16:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    return converter


def convert(function, fp16: bool = False, generator: AffineGenerator | None = None) -> bytes:
    """Converts one signature function to a .tflite flatbuffer (builtin ops only).

    Args:
        function: A tf.function with an input signature (from `export/signature.py`).
        fp16: Store weights as float16 (dequantised on load; float32 compute on CPU).
        generator: The generator whose weights `function` reads (None for weightless functions).

    Returns:
        The flatbuffer bytes; its one signature is `serving_default`.
    """
    module = _weights_module(generator)
    if generator is not None:
        function = signature.with_weights(function, generator, module.weights)
    module.function = function
    with tempfile.TemporaryDirectory() as temporary, portable_graph():
        key = "serving_default"
        tf.saved_model.save(module, temporary, signatures={key: function.get_concrete_function()})
        return _converter(Path(temporary), key, fp16).convert()


def export_tflite(
    generator: AffineGenerator, out_dir: Path, fp16: bool, apex: float = UNCALIBRATED_APEX
) -> list[Path]:
    """Writes generate_one/encode/decode .tflite files (and the _fp16 variants if asked).

    `apex` (the raw intensity a = 1 means, calibration.py) becomes a constant of each graph.

    The three signatures are saved once to a temporary SavedModel with the weights as plain
    variables; each file is converted from it under its own signature key.

    Returns:
        The written paths.
    """
    module = _weights_module(generator)
    signatures = {}
    with portable_graph():
        for model, (factory, _) in TFLITE_MODELS.items():
            function = signature.with_weights(factory(generator, apex), generator, module.weights)
            setattr(module, model, function)
            signatures[model] = function.get_concrete_function()
    written = []
    with tempfile.TemporaryDirectory() as temporary:
        tf.saved_model.save(module, temporary, signatures=signatures)
        del module, signatures
        for model in TFLITE_MODELS:
            for use_fp16 in (False, True) if fp16 else (False,):
                path = Path(out_dir) / tflite_file_name(model, use_fp16)
                path.write_bytes(_converter(Path(temporary), model, use_fp16).convert())
                written.append(path)
    return written


def interpreter(path_or_bytes, num_threads: int | None = None):
    """An allocated LiteRT interpreter for a .tflite file or flatbuffer bytes."""
    from ai_edge_litert.interpreter import Interpreter

    if isinstance(path_or_bytes, (bytes, bytearray)):
        model = Interpreter(model_content=bytes(path_or_bytes), num_threads=num_threads)
    else:
        model = Interpreter(model_path=str(path_or_bytes), num_threads=num_threads)
    model.allocate_tensors()
    return model


def tflite_io(path) -> dict:
    """Exact I/O of a .tflite file: signature key, and name -> {dtype, shape} of inputs/outputs."""
    model = interpreter(path)
    signatures = model.get_signature_list()
    (key,) = signatures
    runner = model.get_signature_runner(key)

    def describe(details: dict) -> dict:
        return {
            name: {"dtype": np.dtype(item["dtype"]).name, "shape": item["shape"].tolist()}
            for name, item in sorted(details.items())
        }

    return {
        "signature": key,
        "inputs": describe(runner.get_input_details()),
        "outputs": describe(runner.get_output_details()),
    }


# ----------------------------------------------------------------------------- reading the graph


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a .tflite subgraph."""

    index: int
    name: str
    dtype: str  # FLOAT32, FLOAT16, INT32, ...
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...]  # -1 marks a dynamic dimension
    constant: bool  # backed by data in the file (weights, axes, shapes)


@dataclass(frozen=True)
class OperatorInfo:
    """One operator: builtin name (e.g. CONV_2D) or custom code, version and tensors."""

    name: str
    version: int
    custom: bool
    inputs: tuple[TensorInfo | None, ...]  # None for optional inputs left out
    outputs: tuple[TensorInfo, ...]
    options: object = None  # the builtin options table, when the op has one


@dataclass
class TfliteGraph:
    """Operators and tensors of the main subgraph of a .tflite file."""

    operators: list[OperatorInfo]
    tensors: list[TensorInfo]
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    subgraphs: int = 1
    op_names: list[str] = field(default_factory=list)

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for operator in self.operators:
            counts[operator.name] = counts.get(operator.name, 0) + 1
        return dict(sorted(counts.items()))


def _enum_names(enum_class) -> dict[int, str]:
    return {
        value: name
        for name, value in vars(enum_class).items()
        if not name.startswith("_") and isinstance(value, int)
    }


def read_tflite_graph(path_or_bytes) -> TfliteGraph:
    """Parses the flatbuffer of a .tflite model (no interpreter, nothing executed).

    Args:
        path_or_bytes: A .tflite path or its bytes.

    Returns:
        The main subgraph's operators (with versions) and tensors (with dtypes, shapes, and
        whether they are constants).
    """
    from ai_edge_litert import schema_py_generated as schema

    data = (
        bytes(path_or_bytes)
        if isinstance(path_or_bytes, (bytes, bytearray))
        else Path(path_or_bytes).read_bytes()
    )
    model = schema.Model.GetRootAs(data, 0)
    op_names = _enum_names(schema.BuiltinOperator)
    type_names = _enum_names(schema.TensorType)
    subgraph = model.Subgraphs(0)

    def is_constant(buffer_index: int) -> bool:
        if buffer_index <= 0 or buffer_index >= model.BuffersLength():
            return False
        buffer = model.Buffers(buffer_index)
        return buffer.DataLength() > 0 or buffer.Offset() > 1

    tensors = []
    for index in range(subgraph.TensorsLength()):
        tensor = subgraph.Tensors(index)
        shape = tuple(int(v) for v in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
        signature_shape = (
            tuple(int(v) for v in tensor.ShapeSignatureAsNumpy())
            if tensor.ShapeSignatureLength()
            else shape
        )
        tensors.append(
            TensorInfo(
                index=index,
                name=tensor.Name().decode(),
                dtype=type_names.get(tensor.Type(), str(tensor.Type())),
                shape=shape,
                shape_signature=signature_shape,
                constant=is_constant(tensor.Buffer()),
            )
        )

    operators = []
    for index in range(subgraph.OperatorsLength()):
        operator = subgraph.Operators(index)
        code = model.OperatorCodes(operator.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        custom = builtin == schema.BuiltinOperator.CUSTOM
        name = code.CustomCode().decode() if custom else op_names.get(builtin, str(builtin))
        options = None
        if operator.BuiltinOptionsType():
            options = _builtin_options(schema, operator)
        operators.append(
            OperatorInfo(
                name=name,
                version=code.Version(),
                custom=custom,
                inputs=tuple(
                    tensors[i] if i >= 0 else None for i in operator.InputsAsNumpy().tolist()
                )
                if operator.InputsLength()
                else (),
                outputs=tuple(tensors[i] for i in operator.OutputsAsNumpy().tolist())
                if operator.OutputsLength()
                else (),
                options=options,
            )
        )
    return TfliteGraph(
        operators=operators,
        tensors=tensors,
        inputs=[tensors[i] for i in subgraph.InputsAsNumpy().tolist()],
        outputs=[tensors[i] for i in subgraph.OutputsAsNumpy().tolist()],
        subgraphs=model.SubgraphsLength(),
        op_names=sorted({operator.name for operator in operators}),
    )


def _builtin_options(schema, operator):
    """The builtin options table of an operator as its generated *T object (or None)."""
    names = _enum_names(schema.BuiltinOptions)
    name = names.get(operator.BuiltinOptionsType())
    table = operator.BuiltinOptions()
    options_class = getattr(schema, name, None) if name else None
    object_class = getattr(schema, f"{name}T", None) if name else None
    if table is None or options_class is None or object_class is None:
        return None
    options = options_class()
    options.Init(table.Bytes, table.Pos)
    return object_class.InitFromObj(options)
