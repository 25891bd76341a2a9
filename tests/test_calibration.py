"""What a = 1 means: the apex measured on training videos, applied in `generate`, carried by
exports, reported by the `intensity` command, and raw scale for runs older than calibration."""

from __future__ import annotations

import json
from pathlib import Path

import export_helpers
import numpy as np
import pytest

from affinegan_tf import calibration
from affinegan_tf.run_folder import (
    INTENSITY_RANGE_FILE,
    intensity_apex,
    read_intensity_range,
    write_intensity_range,
)

APEX = 1.5  # a = 0.5 and 1 decode as raw 0.75 and 1.5, exactly in float32


def test_apex_is_the_median_of_the_per_video_maxima(tmp_path):
    per_video = [
        np.asarray([0.1, 0.9, 0.5], np.float32),
        np.asarray([0.2, 1.3], np.float32),
        np.asarray([], np.float32),  # a one-frame clip: no frames after the neutral one
        np.asarray([0.7, 0.6], np.float32),
        np.asarray([0.05, 4.0], np.float32),  # one far-off video does not move the median much
    ]
    maxima = calibration.video_maxima(per_video)
    assert maxima == pytest.approx([0.9, 1.3, 0.7, 4.0])
    assert calibration.apex_from_maxima(maxima) == pytest.approx(1.1)

    written = write_intensity_range(tmp_path, 7, per_video)
    on_disk = read_intensity_range(tmp_path)
    assert on_disk == json.loads(json.dumps(written))
    assert on_disk["video_maxima"] == pytest.approx(maxima)
    assert on_disk["apex"] == pytest.approx(1.1) and on_disk["step"] == 7
    assert on_disk["max"] == pytest.approx(4.0) and on_disk["frames"] == 9
    assert intensity_apex(tmp_path) == pytest.approx(1.1)


def test_temporal_labels_have_apex_one_and_old_or_broken_ranges_fall_back_to_raw(tmp_path):
    write_intensity_range(tmp_path, 3, None)
    assert read_intensity_range(tmp_path)["apex"] == 1.0
    assert calibration.apex_of(None) == 1.0
    assert calibration.apex_of({"min": 0.0, "max": 2.0, "p95": 1.8}) == 1.0  # before calibration
    assert not calibration.is_calibrated({"p95": 1.8})
    assert calibration.apex_of({"apex": 0.0}) == 1.0
    assert calibration.apex_of({"apex": float("nan")}) == 1.0
    assert calibration.apex_from_maxima([]) == 1.0
    assert calibration.to_raw(np.float32(0.5), 2.0) == 1.0
    assert calibration.to_calibrated(np.float32(1.0), 2.0) == 0.5


@pytest.fixture(scope="module")
def calibrated_run(tmp_path_factory) -> Path:
    """An untrained tiny run folder whose intensity_range.json records apex APEX."""
    run = export_helpers.write_run_folder(tmp_path_factory.mktemp("calibrated") / "run")
    (run / INTENSITY_RANGE_FILE).write_text(
        json.dumps({"min": 0.1, "max": 2.0, "video_maxima": [1.4, 1.5, 1.6], "apex": APEX})
    )
    return run


@pytest.fixture(scope="module")
def keras_model(calibrated_run):
    from affinegan_tf.checkpoints import load_model

    export_helpers.fresh_names()
    return load_model(calibrated_run)[0]


def test_generate_at_one_is_the_raw_decode_at_the_apex(keras_model):
    import tensorflow as tf

    from affinegan_tf.rendering import (
        generate_frames,
        generate_frames_from_model_range,
        resize_to_model,
    )

    generator = keras_model.generator
    face = export_helpers.face_image(64)
    model_face = resize_to_model(face, 64)[tf.newaxis]
    calibrated = generate_frames_from_model_range(generator, model_face, [0.0, 0.5, 1.0], APEX)
    raw = generate_frames_from_model_range(generator, model_face, [0.0, 0.75, APEX])
    # a * (apex * delta) inside the graph against (a * apex) * delta: float rounding only.
    np.testing.assert_allclose(calibrated.numpy(), raw.numpy(), atol=1e-5)
    uint8 = generate_frames(generator, face, [0.0, 0.5, 1.0], apex=APEX).astype(int)
    raw_uint8 = generate_frames(generator, face, [0.0, 0.75, APEX]).astype(int)
    assert np.abs(uint8 - raw_uint8).max() <= 1
    # A different apex gives other frames from the same trace (the apex changes all through
    # training: a trace per apex made TensorFlow warn about retracing at every sample GIF).
    assert np.abs(raw_uint8 - generate_frames(generator, face, [0.0, 0.5, 1.0])).max() > 1
    assert generator._generate_function.experimental_get_tracing_count() == 1


def test_generate_from_the_run_folder_uses_its_apex(calibrated_run, keras_model, tmp_path):
    from affinegan_tf.data.images import read_image
    from affinegan_tf.generation import generate_files
    from affinegan_tf.rendering import generate_frames

    photo = export_helpers.write_photo(tmp_path / "face.png", size=64)
    export_helpers.fresh_names()
    (folder,) = generate_files(calibrated_run, photo, tmp_path / "frames/", intensities=[0, 1])
    frames = np.stack([read_image(path) for path in sorted(folder.glob("*.png"))]).astype(int)
    raw = generate_frames(keras_model.generator, read_image(photo), [0.0, APEX]).astype(int)
    assert np.abs(frames - raw).max() <= 1  # float rounding only (see the test above)
    uncalibrated = generate_frames(keras_model.generator, read_image(photo), [0.0, 1.0])
    assert np.abs(frames - uncalibrated.astype(int)).max() > 1


@pytest.mark.slow  # exports every format: ~17 s
def test_export_carries_the_apex_in_its_graphs_and_manifest(calibrated_run, keras_model, tmp_path):
    from affinegan_tf.export.backends import load_backend
    from affinegan_tf.export.exporter import export_model
    from affinegan_tf.generation import legacy_intensity_scale
    from affinegan_tf.rendering import generate_frames

    export_helpers.fresh_names()
    manifest = export_model(calibrated_run, tmp_path / "export", formats=["savedmodel", "onnx"])
    entry = manifest["intensity_calibration"]
    assert entry["apex"] == APEX and entry["applied_in_graph"] is True
    assert "apex" in entry["meaning"] and "3 training videos" in entry["note"]
    assert "intensity_scale" not in manifest and legacy_intensity_scale(manifest) == 1.0
    # The parity check compared every file at a = 0, 0.5, 1, 1.5 with Keras at raw a * APEX.
    assert manifest["parity"] and all(item["passed"] for item in manifest["parity"])
    face = export_helpers.face_image(64)
    raw = generate_frames(keras_model.generator, face, [0.0, APEX]).astype(int)
    for model in ("export", "export/generate_frames.onnx"):
        exported = load_backend(tmp_path / model).generate(face, [0.0, 1.0]).astype(int)
        assert np.abs(exported - raw).max() <= 1, model  # rounding of the float formats


def test_an_old_run_without_apex_generates_on_the_raw_scale_and_says_so(tmp_path):
    from affinegan_tf.checkpoints import load_model
    from affinegan_tf.data.images import read_image
    from affinegan_tf.export.exporter import export_model
    from affinegan_tf.generation import generate_files, legacy_intensity_scale
    from affinegan_tf.rendering import generate_frames

    old = export_helpers.write_run_folder(tmp_path / "old")
    # What fit wrote before calibration: no apex.
    (old / INTENSITY_RANGE_FILE).write_text(json.dumps({"min": 0.0, "max": 2.0, "p95": 1.8}))
    assert intensity_apex(old) == 1.0
    photo = export_helpers.write_photo(tmp_path / "face.png", size=64)
    export_helpers.fresh_names()
    (folder,) = generate_files(old, photo, tmp_path / "frames/", intensities=[0.0, 1.0])
    frames = np.stack([read_image(path) for path in sorted(folder.glob("*.png"))])
    export_helpers.fresh_names()
    model, _ = load_model(old)
    np.testing.assert_array_equal(
        frames, generate_frames(model.generator, read_image(photo), [0.0, 1.0])
    )
    export_helpers.fresh_names()
    manifest = export_model(old, tmp_path / "old_export", formats=["savedmodel"])
    assert manifest["intensity_calibration"]["apex"] == 1.0
    assert manifest["intensity_calibration"]["note"] == calibration.MISSING_NOTE
    # Exports made before calibration recorded `intensity_scale` for generate to apply outside
    # the graph; it still applies to them, and only to them (never twice).
    assert legacy_intensity_scale({"intensity_scale": 0.5}) == 0.5
    assert legacy_intensity_scale({"intensity_scale": 0.5, "intensity_calibration": {}}) == 1.0


def test_the_intensity_command_reports_calibrated_values(calibrated_run, keras_model, toy_data):
    from cli_helpers import run_cli

    from affinegan_tf.data.pixels import to_model_range
    from affinegan_tf.evaluation.curves import read_video_frames

    video = sorted((toy_data / "test" / "img").iterdir())[0]
    frames, _ = read_video_frames(video, 64)
    raw = keras_model.infer_intensities(to_model_range(frames[:1]), to_model_range(frames))
    result = run_cli(
        *("intensity", "--model", str(calibrated_run), "--video", str(video), "--json"),
        cwd=calibrated_run.parent,
        timeout=300,
    )
    curve = json.loads(result.stdout)
    np.testing.assert_allclose(
        [point["intensity"] for point in curve], raw.numpy() / APEX, rtol=1e-4, atol=1e-6
    )
