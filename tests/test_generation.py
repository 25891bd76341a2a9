"""`affinegan-tf generate`: every model form gives the same frames; outputs; clear errors."""

from __future__ import annotations

import json
import shutil

import export_helpers
import imageio.v3 as iio
import numpy as np
import pytest

from affinegan_tf.cli import main
from affinegan_tf.errors import UserError
from affinegan_tf.export.backends import load_backend
from affinegan_tf.generation import (
    generate_files,
    intensity_sweep,
    plan_outputs,
    read_photo,
    resolve_intensities,
)
from affinegan_tf.rendering import generate_frames

INTENSITIES = [0.0, 0.5, 1.0, 1.5]


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory):
    return export_helpers.tiny_run(tmp_path_factory)


@pytest.fixture(scope="session")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    export_helpers.write_photo(folder / "anna.png", size=96, seed=1)
    export_helpers.write_photo(folder / "ben.jpg", size=120, seed=2)
    return folder


@pytest.fixture(scope="session")
def keras_frames(run_dir, photos):
    export_helpers.fresh_names()
    backend = load_backend(run_dir)
    assert backend.kind == "keras" and backend.image_size == 64
    face = read_photo(photos / "anna.png", backend.image_size, face_crop=False)
    return face, backend.generate(face, INTENSITIES)


# ----------------------------------------------------------------------------- intensities


def test_default_is_16_frames_from_0_to_1():
    values = resolve_intensities()
    assert len(values) == 16 and values[0] == 0.0 and values[-1] == 1.0


def test_frames_max_intensity_and_pingpong():
    assert resolve_intensities(num_frames=3, max_intensity=2.0) == [0.0, 1.0, 2.0]
    assert resolve_intensities(num_frames=3, loop="pingpong") == [0.0, 0.5, 1.0, 0.5]
    assert resolve_intensities([0, 0.3, 1.2], loop="pingpong") == [0.0, 0.3, 1.2, 0.3]
    assert intensity_sweep(1, 0.7) == [0.7]
    with pytest.raises(UserError):
        resolve_intensities(loop="bounce")


# ----------------------------------------------------------------------------- model forms


@pytest.mark.parametrize(
    ("relative", "kind", "max_levels"),
    [
        (".", "saved_model", 1),
        ("saved_model/1", "saved_model", 1),
        ("saved_model", "saved_model", 1),
        ("generate_one.tflite", "tflite", 1),
        ("generate_one_fp16.tflite", "tflite", 1),
        ("encode.tflite", "tflite", 1),
        ("decode_fp16.tflite", "tflite", 1),
        ("generate_one.onnx", "onnx", 1),
        ("generate_frames.onnx", "onnx", 1),
    ],
)
def test_every_model_form_gives_the_keras_frames(
    exported, keras_frames, relative, kind, max_levels
):
    face, expected = keras_frames
    backend = load_backend(exported / relative)
    assert backend.kind == kind and backend.image_size == 64
    frames = backend.generate(face, INTENSITIES)
    assert frames.shape == expected.shape and frames.dtype == np.uint8
    # fp32 formats differ from Keras by ~1e-6 and fp16 by < 5e-3 on [-1, 1], i.e. < 1 level
    # before rounding: at most one level after.
    assert np.abs(frames.astype(int) - expected.astype(int)).max() <= max_levels


def test_keras_generate_frames_matches_the_run_folder_backend(tmp_path_factory, keras_frames):
    face, expected = keras_frames
    model, _ = export_helpers.tiny_model(tmp_path_factory)
    np.testing.assert_array_equal(generate_frames(model.generator, face, INTENSITIES), expected)


# ----------------------------------------------------------------------------- outputs


def test_gif_loops_with_the_frame_duration_from_fps(exported, photos, tmp_path):
    (path,) = generate_files(exported, [photos / "anna.png"], tmp_path / "a.gif", fps=5)
    frames = iio.imread(path, index=None)
    metadata = iio.immeta(path, index=None)
    assert frames.shape[0] == 16
    assert metadata.get("loop") == 0
    assert metadata.get("duration") == pytest.approx(200, abs=1)  # GIF stores centiseconds


def test_mp4_has_one_video_frame_per_intensity(exported, photos, tmp_path):
    (path,) = generate_files(
        exported, [photos / "anna.png"], tmp_path / "a.mp4", intensities=[0, 0.5, 1], fps=5
    )
    frames = iio.imread(path, index=None, plugin="pyav") if _has_pyav() else _ffmpeg_frames(path)
    assert len(frames) == 3


def _has_pyav() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def _ffmpeg_frames(path):
    import imageio.v2 as imageio

    with imageio.get_reader(path, format="FFMPEG") as reader:
        return [frame for frame in reader]


def test_png_folder_holds_the_exact_frames(exported, photos, keras_frames, tmp_path):
    _, expected = keras_frames
    (folder,) = generate_files(
        exported / "saved_model" / "1",
        [photos / "anna.png"],
        tmp_path / "frames/",
        intensities=INTENSITIES,
    )
    names = sorted(path.name for path in folder.iterdir())
    assert names == [f"frame_{index:04d}.png" for index in range(4)]
    written = np.stack([iio.imread(folder / name) for name in names])
    assert np.abs(written.astype(int) - expected.astype(int)).max() <= 1


def test_a_folder_of_photos_makes_one_output_each_named_after_the_photo(exported, photos, tmp_path):
    outputs = generate_files(
        exported / "generate_one.tflite", [photos], tmp_path / "out", num_frames=3
    )
    assert [path.name for path in outputs] == ["anna.gif", "ben.gif"]
    assert all(path.is_file() for path in outputs)


def test_plan_outputs_names_and_formats(tmp_path):
    one, two = tmp_path / "a.jpg", tmp_path / "b.png"
    assert plan_outputs([one], tmp_path / "x.gif") == [tmp_path / "x.gif"]
    assert plan_outputs([one], tmp_path / "dir") == [tmp_path / "dir"]
    assert plan_outputs([one], tmp_path / "dir", "mp4") == [tmp_path / "dir" / "a.mp4"]
    assert plan_outputs([one, two], f"{tmp_path}/dir/", "png") == [
        tmp_path / "dir" / "a",
        tmp_path / "dir" / "b",
    ]
    assert plan_outputs([one, tmp_path / "a.png"], tmp_path / "d") == [
        tmp_path / "d" / "a.gif",
        tmp_path / "d" / "a_png.gif",
    ]
    with pytest.raises(UserError, match="give a folder as --out"):
        plan_outputs([one, two], tmp_path / "x.gif")


def test_cli_generate_prints_the_outputs(exported, photos, tmp_path, capsys):
    out = tmp_path / "cli.gif"
    status = main(
        [
            "generate",
            "--model", str(exported / "generate_frames.onnx"),
            "--image", str(photos / "ben.jpg"),
            "--frames", "4",
            "--loop", "pingpong",
            "--out", str(out),
        ]
    )  # fmt: skip
    assert status == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert iio.imread(out, index=None).shape[0] == 6


# ----------------------------------------------------------------------------- errors


def test_unreadable_photo_is_named_and_nothing_is_written(exported, photos, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    with pytest.raises(UserError, match="broken.jpg"):
        generate_files(exported, [photos / "anna.png", bad], out)
    assert not out.exists()


def test_too_small_photo_is_a_clear_error(exported, tmp_path):
    small = export_helpers.write_photo(tmp_path / "thumb.png", size=20)
    with pytest.raises(UserError, match="too small"):
        generate_files(exported, [small], tmp_path / "x.gif")


def test_run_folder_without_checkpoints_is_a_clear_error(photos, tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text("{}")
    status = main(
        ["generate", "--model", str(run_dir), "--image", str(photos / "anna.png"),
         "--out", str(tmp_path / "x.gif")]
    )  # fmt: skip
    assert status == 2
    assert "has no checkpoint yet" in capsys.readouterr().err


def test_mismatched_export_version_is_a_clear_error(exported, photos, tmp_path):
    old = tmp_path / "old_export"
    old.mkdir()
    manifest = json.loads((exported / "manifest.json").read_text())
    manifest["format_version"] = 99
    (old / "manifest.json").write_text(json.dumps(manifest))
    shutil.copytree(exported / "saved_model", old / "saved_model")
    for model in (old, old / "saved_model" / "1"):
        with pytest.raises(UserError, match="format version 99"):
            generate_files(model, [photos / "anna.png"], tmp_path / "x.gif")


def test_unknown_model_file_type_is_a_clear_error(photos, tmp_path):
    weights = tmp_path / "model.h5"
    weights.write_bytes(b"\x89HDF")
    with pytest.raises(UserError, match="Unknown model file type"):
        generate_files(weights, [photos / "anna.png"], tmp_path / "x.gif")


def test_folder_that_is_no_model_is_a_clear_error(photos, tmp_path):
    with pytest.raises(UserError, match="is not a model folder"):
        generate_files(photos, [photos / "anna.png"], tmp_path / "x.gif")


@pytest.mark.parametrize(
    ("name", "message"), [("x.tflite", "Cannot use"), ("x.onnx", "Cannot load")]
)
def test_corrupt_model_file_is_a_clear_error(photos, tmp_path, name, message):
    broken = tmp_path / name
    broken.write_bytes(b"definitely not a model")
    with pytest.raises(UserError, match=message):
        generate_files(broken, [photos / "anna.png"], tmp_path / "x.gif")


def test_missing_optional_packages_name_the_extra_to_install(monkeypatch, photos, tmp_path):
    from affinegan_tf import errors
    from affinegan_tf.export.exporter import export_model

    monkeypatch.setitem(errors.EXTRA_MODULES, "onnx", (("no_such_module_xyz",), "export"))
    with pytest.raises(
        UserError, match=r"no_such_module_xyz.*pip install 'affinegan-tf\[export\]'"
    ):
        export_model(tmp_path, tmp_path / "out", formats=["onnx"])
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not used")
    with pytest.raises(UserError, match=r"Running model.onnx needs no_such_module_xyz"):
        generate_files(str(model), [str(photos / "anna.png")], str(tmp_path / "out.gif"))
