"""The `paper` preset (256 x 256, 74M generator weights, untrained) exported to every format."""

from __future__ import annotations

import pytest

from affinegan_tf.config import PRESETS
from affinegan_tf.export.exporter import TOLERANCES, export_generator
from affinegan_tf.networks import AffineGenerator, count_parameters


@pytest.mark.slow
def test_paper_preset_exports_to_every_format_with_parity(tmp_path):
    generator = AffineGenerator(PRESETS["paper"])
    generator.build()
    weight_bytes = 4 * count_parameters(generator)
    manifest = export_generator(generator, tmp_path / "paper", fp16=True, preset="paper")

    sizes = {entry["path"]: entry["bytes"] for entry in manifest["files"]}
    full = ["generate_one.tflite", "generate_one.onnx", "generate_frames.onnx"]
    full.append("saved_model/1/variables/variables.data-00000-of-00001")
    for path in full:  # all weights, float32, plus a little graph
        assert weight_bytes <= sizes[path] <= 1.02 * weight_bytes, path
    assert 0.49 * weight_bytes <= sizes["generate_one_fp16.tflite"] <= 0.52 * weight_bytes
    # The pair holds both encoders and the decoder once between them.
    pair = sizes["encode.tflite"] + sizes["decode.tflite"]
    assert weight_bytes <= pair <= 1.02 * weight_bytes

    assert manifest["image_size"] == 256
    for item in manifest["parity"]:
        assert item["passed"], item
        key = "tflite_fp16" if "fp16" in item["path"] else item["path"].split(".")[-1]
        key = "savedmodel" if item["path"].startswith("saved_model") else key
        assert item["max_abs_difference"] <= TOLERANCES[key]
    for entry in manifest["files"]:
        if "gpu_delegate" in entry:
            assert entry["gpu_delegate"]["gpu_compatible"], entry["gpu_delegate"]["problems"]
