"""TFLite export: builtin ops only, static 4-D shapes, parity with Keras, GPU-delegate op check."""

from __future__ import annotations

import dataclasses
import re

import export_helpers
import numpy as np
import pytest
import tensorflow as tf

from affinegan_tf.config import PRESETS
from affinegan_tf.export import signature, tflite, tflite_gpu
from affinegan_tf.networks import AffineGenerator

INTENSITIES = np.asarray([-0.25, 0.0, 0.5, 1.0, 1.5], np.float32)
FILES = [
    "generate_one.tflite",
    "generate_one_fp16.tflite",
    "encode.tflite",
    "encode_fp16.tflite",
    "decode.tflite",
    "decode_fp16.tflite",
]


@pytest.fixture(scope="session")
def face_and_reference(generator):
    face = signature.resize_to_model(export_helpers.face_image(64, seed=5), 64)[tf.newaxis]
    reference = signature.generate_frames_from_model_range(generator, face, INTENSITIES)
    return signature.model_range_to_unit(face).numpy(), reference.numpy()


def run_generate_one(path, face_unit) -> np.ndarray:
    runner = tflite.interpreter(path).get_signature_runner()
    frames = [
        runner(image=face_unit, intensity=INTENSITIES[i : i + 1])["frames"]
        for i in range(len(INTENSITIES))
    ]
    return np.concatenate(frames)


def run_pair(encode_path, decode_path, face_unit) -> np.ndarray:
    encode = tflite.interpreter(encode_path).get_signature_runner()
    decode = tflite.interpreter(decode_path).get_signature_runner()
    features = encode(image=face_unit)
    frames = [
        decode(**features, intensity=INTENSITIES[i : i + 1])["frames"]
        for i in range(len(INTENSITIES))
    ]
    return np.concatenate(frames)


def to_model_range(frames_unit) -> np.ndarray:
    return signature.unit_to_model_range(frames_unit).numpy()


def test_export_writes_float32_and_float16_models(exported):
    for name in FILES:
        assert (exported / name).is_file(), name
    full = (exported / "generate_one.tflite").stat().st_size
    half = (exported / "generate_one_fp16.tflite").stat().st_size
    assert 0.45 < half / full < 0.55


@pytest.mark.parametrize("name", FILES)
def test_models_use_builtin_ops_and_static_shapes_only(exported, name):
    graph = tflite.read_tflite_graph(exported / name)
    assert graph.subgraphs == 1
    assert not [op.name for op in graph.operators if op.custom]  # no Flex / custom ops
    assert not [t.name for t in graph.tensors if any(d < 0 for d in t.shape_signature)]
    for tensor in graph.inputs + graph.outputs:
        assert tensor.dtype == "FLOAT32"
        assert len(tensor.shape) == 4 or tensor.shape == (1,)


def test_generate_one_io_is_the_documented_contract(exported):
    for name in ("generate_one.tflite", "generate_one_fp16.tflite"):
        io = tflite.tflite_io(exported / name)
        assert io["signature"] == "generate_one"
        assert io["inputs"] == {
            "image": {"dtype": "float32", "shape": [1, 64, 64, 3]},
            "intensity": {"dtype": "float32", "shape": [1]},
        }
        assert io["outputs"] == {"frames": {"dtype": "float32", "shape": [1, 64, 64, 3]}}


def test_float32_generate_one_matches_keras(exported, face_and_reference):
    face_unit, reference = face_and_reference
    frames = run_generate_one(exported / "generate_one.tflite", face_unit)
    assert np.abs(to_model_range(frames) - reference).max() <= 1e-4


def test_float16_generate_one_matches_keras(exported, face_and_reference):
    face_unit, reference = face_and_reference
    frames = run_generate_one(exported / "generate_one_fp16.tflite", face_unit)
    assert np.abs(to_model_range(frames) - reference).max() <= 5e-3


@pytest.mark.parametrize(("suffix", "tolerance"), [("", 1e-4), ("_fp16", 5e-3)])
def test_encode_once_decode_per_intensity_matches_keras(
    exported, face_and_reference, suffix, tolerance
):
    face_unit, reference = face_and_reference
    frames = run_pair(
        exported / f"encode{suffix}.tflite", exported / f"decode{suffix}.tflite", face_unit
    )
    assert np.abs(to_model_range(frames) - reference).max() <= tolerance


@pytest.mark.parametrize("name", FILES)
def test_every_exported_tflite_runs_entirely_on_the_gpu_delegate(exported, name):
    report = tflite_gpu.check_gpu_delegate(exported / name)
    assert report["problems"] == []
    assert report["gpu_compatible"]
    assert set(report["ops"]) <= set(tflite_gpu.GPU_DELEGATE_BUILTIN_OPS)


def test_gpu_check_results_are_in_the_manifest(tmp_path_factory):
    _, manifest = export_helpers.tiny_export(tmp_path_factory)
    entries = {entry["path"]: entry for entry in manifest["files"]}
    for name in FILES:
        assert entries[name]["gpu_delegate"]["gpu_compatible"] is True
        assert "model_builder.cc" in entries[name]["gpu_delegate"]["source"]


def test_gpu_check_flags_ops_dtypes_and_shapes_the_delegate_rejects():
    @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32, name="image")])
    def unsupported(image):
        flat = tf.reshape(image, (-1, 8 * 8 * 3))
        return {
            "index": tf.argmax(flat, axis=-1),
            "counts": tf.cast(image, tf.int32) + 1,
            "pixels": tf.cast(image, tf.uint8),
        }

    report = tflite_gpu.check_gpu_delegate(tflite.convert(unsupported))
    problems = " | ".join(report["problems"])
    assert not report["gpu_compatible"]
    assert "ARG_MAX is not a GPU delegate op" in problems
    assert "dynamic shape" in problems
    assert re.search(r"ADD: tensor \S+ is INT32", problems)
    assert "CAST from FLOAT32 to UINT8" in problems
    assert "2-D, not 4-D" in problems


@pytest.mark.parametrize("apex", [1.0, 1.5])  # a calibrated model carries its apex inside
def test_mobile_preset_tflite_runs_entirely_on_the_gpu_delegate(apex):
    config = dataclasses.replace(PRESETS["mobile"], image_size=64)
    generator = AffineGenerator(config)
    generator.build()
    for factory in (signature.make_generate_one, signature.make_decode):
        converted = tflite.convert(factory(generator, apex), generator=generator)
        report = tflite_gpu.check_gpu_delegate(converted)
        assert report["problems"] == [], factory.__name__


def test_flatbuffer_reader_sees_the_ops_the_interpreter_runs(exported):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    for name in ("generate_one.tflite", "decode_fp16.tflite"):
        interpreter = Interpreter(
            model_path=str(exported / name),
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
        interpreter.allocate_tensors()
        running = [op["op_name"] for op in interpreter._get_ops_details()]
        assert [op.name for op in tflite.read_tflite_graph(exported / name).operators] == running
