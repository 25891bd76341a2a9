"""ONNX export: opset 17, static and dynamic-batch graphs, parity through ONNX Runtime, and what
ONNX Runtime's mobile usability checker says NNAPI / CoreML can run."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys

import export_helpers
import numpy as np
import onnx
import pytest
import tensorflow as tf

from affinegan_tf.config import PRESETS
from affinegan_tf.export import onnx as onnx_export
from affinegan_tf.export import signature
from affinegan_tf.networks import AffineGenerator

INTENSITIES = np.asarray([-0.25, 0.0, 0.5, 1.0, 1.5], np.float32)


@pytest.fixture(scope="session")
def mobile_export(tmp_path_factory):
    """The `mobile` preset's architecture (resize + conv upsampling) at 64 x 64, to ONNX."""
    config = dataclasses.replace(PRESETS["mobile"], image_size=64)
    mobile_generator = AffineGenerator(config)
    mobile_generator.build()
    out = tmp_path_factory.mktemp("mobile_onnx")
    return mobile_generator, onnx_export.export_onnx(mobile_generator, out)


def reference_frames(generator, intensities):
    face = signature.resize_to_model(export_helpers.face_image(64, seed=6), 64)[tf.newaxis]
    reference = signature.generate_frames_from_model_range(generator, face, intensities)
    return signature.model_range_to_unit(face).numpy(), reference.numpy()


def test_graphs_use_opset_17_with_static_and_dynamic_inputs(exported):
    for name, intensity_input, intensity_shape in [
        ("generate_one.onnx", "intensity", [1]),
        ("generate_frames.onnx", "intensities", [None]),
    ]:
        model = onnx.load(str(exported / name))
        onnx.checker.check_model(model)
        assert {
            entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")
        } == {17}
        io = onnx_export.onnx_io(exported / name)
        assert io["inputs"]["image"] == {"dtype": "float32", "shape": [1, 64, 64, 3]}
        assert io["inputs"][intensity_input] == {"dtype": "float32", "shape": intensity_shape}
        assert io["outputs"]["frames"]["shape"] == [intensity_shape[0], 64, 64, 3]


@pytest.mark.parametrize("name", ["generate_one.onnx", "generate_frames.onnx"])
def test_onnx_runtime_matches_keras(exported, generator, name):
    face_unit, reference = reference_frames(generator, INTENSITIES)
    session = onnx_export.session(exported / name)
    frames = onnx_export.run_onnx(session, face_unit, INTENSITIES)
    assert frames.shape == (5, 64, 64, 3)
    difference = np.abs(signature.unit_to_model_range(frames).numpy() - reference).max()
    assert difference <= 1e-4


def test_dynamic_graph_takes_any_number_of_intensities(exported, generator):
    session = onnx_export.session(exported / "generate_frames.onnx")
    for count in (1, 7):
        intensities = np.linspace(0, 1, count).astype(np.float32)
        face_unit, reference = reference_frames(generator, intensities)
        frames = session.run(None, {"image": face_unit, "intensities": intensities})[0]
        assert frames.shape == (count, 64, 64, 3)
        assert np.abs(signature.unit_to_model_range(frames).numpy() - reference).max() <= 1e-4


def test_manifest_reports_mobile_usability(tmp_path_factory):
    _, manifest = export_helpers.tiny_export(tmp_path_factory)
    entries = {entry["path"]: entry for entry in manifest["files"]}
    usability = entries["generate_one.onnx"]["mobile_usability"]
    assert set(usability) == {"nnapi", "coreml_neuralnetwork", "coreml_mlprogram"}
    for report in usability.values():
        assert 0 < report["supported_nodes"] <= report["nodes"]
        assert report["fraction"] == round(report["supported_nodes"] / report["nodes"], 4)
    # The `tiny` preset upsamples with transposed convolutions, which NNAPI does not take.
    assert "ConvTranspose" in usability["nnapi"]["unsupported_ops"]
    assert entries["generate_one.onnx"]["mobile_forbidden_ops"] == ["ConvTranspose"]


def test_usability_figures_are_what_the_onnx_runtime_checker_prints(exported):
    path = exported / "generate_one.onnx"
    result = subprocess.run(
        [sys.executable, "-m", "onnxruntime.tools.check_onnx_model_mobile_usability", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    log = result.stdout + result.stderr
    ours = onnx_export.mobile_usability(path)
    for provider, label in [
        ("nnapi", "NNAPI"),
        ("coreml_neuralnetwork", "CoreML NeuralNetwork"),
        ("coreml_mlprogram", "CoreML MLProgram"),
    ]:
        match = re.search(
            rf"(\d+) partitions with a total of (\d+)/(\d+) nodes can be handled by the "
            rf"{label} EP",
            log,
        )
        assert match, log
        partitions, supported, total = (int(value) for value in match.groups())
        report = ours[provider]
        assert (partitions, supported, total) == (
            report["partitions"],
            report["supported_nodes"],
            report["nodes"],
        )


def test_mobile_preset_graphs_have_no_convtranspose_expand_or_reciprocal(mobile_export):
    _, paths = mobile_export
    for path in paths:
        ops = onnx_export.onnx_op_counts(path)
        forbidden = [op for op in onnx_export.MOBILE_FORBIDDEN_OPS if op in ops]
        assert forbidden == [], f"{path.name}: {forbidden}"


def test_mobile_preset_onnx_matches_keras(mobile_export):
    mobile_generator, paths = mobile_export
    face_unit, reference = reference_frames(mobile_generator, INTENSITIES)
    for path in paths:
        frames = onnx_export.run_onnx(onnx_export.session(path), face_unit, INTENSITIES)
        assert np.abs(signature.unit_to_model_range(frames).numpy() - reference).max() <= 1e-4


def test_mobile_preset_static_graph_runs_whole_on_nnapi_and_coreml(mobile_export):
    _, paths = mobile_export
    (static,) = [path for path in paths if path.stem == "generate_one"]
    for provider, report in onnx_export.mobile_usability(static).items():
        assert report["supported_nodes"] == report["nodes"], provider
        assert report["partitions"] == 1, provider


def test_attention_output_exports_with_the_face_passed_from_encode_to_decode(tmp_path):
    config = dataclasses.replace(PRESETS["tiny"], output="attention", upsample="resize")
    attention_generator = AffineGenerator(config)
    attention_generator.build()
    paths = onnx_export.export_onnx(
        attention_generator, tmp_path, models=("generate_one", "encode", "decode")
    )
    by_name = {path.stem: path for path in paths}
    face_unit, reference = reference_frames(attention_generator, INTENSITIES)
    encode = onnx_export.session(by_name["encode"])
    assert [item.name for item in encode.get_outputs()][-1] == "source"
    paired = onnx_export.run_onnx_pair(
        encode, onnx_export.session(by_name["decode"]), face_unit, INTENSITIES
    )
    one = onnx_export.session(by_name["generate_one"])
    single = onnx_export.run_onnx(one, face_unit, INTENSITIES)
    expected = (reference + 1.0) / 2.0
    np.testing.assert_allclose(paired, expected, atol=2e-4)
    np.testing.assert_allclose(single, expected, atol=2e-4)
