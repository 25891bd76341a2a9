"""Shipped models: `affinegan-tf models`, `generate --model NAME`, the crop and intensity scale
a manifest asks for, EXIF rotation, and the wheel packing exported/smile-frl-*/."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from affinegan_tf.errors import UserError
from affinegan_tf.models import ENVIRONMENT_VARIABLE, list_models, resolve_model

REPO_ROOT = Path(__file__).resolve().parents[1]
NAME = "smile-frl-test"
ATTRIBUTION = "Test photos, licensed CC BY 4.0."


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    """A folder of exports holding one untrained tiny model exported from a run whose data was
    written by prepare-pairs (its data card says: face crop, smile, CC BY 4.0)."""
    import export_helpers

    from affinegan_tf.export.exporter import export_model

    root = tmp_path_factory.mktemp("shipped")
    data = root / "data"
    data.mkdir()
    (data / "pairs.json").write_text(
        json.dumps(
            {
                "expression": "smile",
                "crop": {"kind": "face", "detector": "opencv", "margin": 0.35},
                "licence": "CC BY 4.0",
                "attribution": ATTRIBUTION,
                "kind": "photo pairs",
                "train": [{"name": "a"}, {"name": "b"}],
                "held_out": ["c"],
            }
        )
    )
    run = export_helpers.write_run_folder(root / "run")
    config = json.loads((run / "config.json").read_text())
    config["data"]["data_dir"] = str(data)
    (run / "config.json").write_text(json.dumps(config))
    (run / "intensity_range.json").write_text(
        json.dumps({"mean": 0.5, "min": 0.4, "max": 0.6, "video_maxima": [0.5, 0.6], "apex": 0.5})
    )
    export_helpers.fresh_names()
    export_model(run, root / "models" / NAME, formats=["savedmodel"])
    return root / "models"


@pytest.fixture
def shipped(models_dir, monkeypatch) -> Path:
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, str(models_dir))
    return models_dir / NAME


def test_manifest_carries_the_card(shipped):
    manifest = json.loads((shipped / "manifest.json").read_text())
    assert manifest["name"] == NAME and manifest["expression"] == "smile"
    assert manifest["input_crop"]["kind"] == "face" and manifest["input_crop"]["margin"] == 0.35
    assert manifest["training_data"]["licence"] == "CC BY 4.0"
    assert manifest["training_data"]["attribution"] == ATTRIBUTION
    assert manifest["training_data"]["pairs"] == 2
    # A card from before --blend-face and --inbetweens: neither was used.
    assert manifest["training_data"]["blend_face"] is False
    assert manifest["training_data"]["inbetweens"] == 0
    assert manifest["intensity_calibration"]["apex"] == 0.5
    assert "intensity_scale" not in manifest  # the apex is inside the graphs, not applied twice


def test_models_lists_it_and_names_resolve(shipped, tmp_path):
    from cli_helpers import run_cli

    (model,) = [m for m in list_models() if m.name == NAME]
    assert (model.expression, model.image_size, model.licence) == ("smile", 64, "CC BY 4.0")
    assert resolve_model(NAME) == shipped.resolve()
    listed = json.loads(run_cli("models", "--json", cwd=tmp_path).stdout)
    entry = next(item for item in listed if item["name"] == NAME)
    assert entry["expression"] == "smile" and entry["attribution"] == ATTRIBUTION
    assert Path(entry["path"]) == shipped.resolve()
    text = run_cli("models", cwd=tmp_path).stdout
    assert NAME in text and "face (margin 0.35)" in text and ATTRIBUTION in text


def test_unknown_name_lists_the_shipped_ones(shipped):
    with pytest.raises(UserError, match=rf"neither a file or folder nor the name .*{NAME}"):
        resolve_model("smile-frl-9999")


def _frames(folder: Path) -> np.ndarray:
    from affinegan_tf.data.images import read_image

    return np.stack([read_image(path) for path in sorted(folder.glob("*.png"))])


def test_generate_by_name_crops_the_face_and_scales_intensity(shipped, shared_data, tmp_path):
    import export_helpers

    from affinegan_tf.checkpoints import load_model
    from affinegan_tf.data.square import prepare_photo
    from affinegan_tf.export.backends import load_backend
    from affinegan_tf.generation import generate_files
    from affinegan_tf.rendering import generate_frames

    photo = shared_data / "lisa4.jpg"  # a portrait 600 x 800 phone photo
    by_name = generate_files(NAME, photo, tmp_path / "by_name/", intensities=[0.0, 1.0])[0]
    centre = generate_files(
        NAME, photo, tmp_path / "centre/", intensities=[0.0, 1.0], face_crop=False
    )[0]
    backend = load_backend(shipped)
    face = prepare_photo(photo, 64, face_crop=True, face_margin=0.35)
    # Face crop by default, and intensity 1 is the apex (raw 0.5), applied once, in the graph.
    np.testing.assert_array_equal(_frames(by_name), backend.generate(face, [0.0, 1.0]))
    export_helpers.fresh_names()
    model, _ = load_model(shipped.parent.parent / "run")
    keras_raw = generate_frames(model.generator, face, [0.0, 0.5]).astype(int)
    assert np.abs(_frames(by_name).astype(int) - keras_raw).max() <= 1
    assert not np.array_equal(_frames(by_name), _frames(centre))


def test_cli_generate_by_name_and_no_face_errors(shipped, shared_data, tmp_path):
    import cv2
    from cli_helpers import console_script, run_cli

    run_cli(
        "generate",
        "--model",
        NAME,
        "--image",
        str(shared_data / "lisa4.jpg"),
        "--out",
        "smile.gif",
        "--frames",
        "3",
        cwd=tmp_path,
    )
    assert (tmp_path / "smile.gif").stat().st_size > 0
    cv2.imwrite(str(tmp_path / "wall.png"), np.full((300, 400, 3), 128, np.uint8))
    failed = subprocess.run(
        [console_script(), "generate", "--model", NAME, "--image", "wall.png", "--out", "x.gif"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert failed.returncode == 2
    assert "No face found in wall.png" in failed.stderr and "Traceback" not in failed.stderr
    assert not (tmp_path / "x.gif").exists()
    # --no-face-crop takes the centre square instead: no detection, no error.
    run_cli(
        "generate",
        "--model",
        NAME,
        "--image",
        "wall.png",
        "--out",
        "wall.gif",
        "--frames",
        "2",
        "--no-face-crop",
        cwd=tmp_path,
    )


def test_exif_rotation_is_honoured(shipped, shared_data, tmp_path):
    from PIL import Image

    from affinegan_tf.generation import generate_files

    upright = Image.open(shared_data / "lisa4.jpg").convert("RGB")
    # Stored on its side (landscape pixels), with the EXIF tag that turns it upright.
    sideways = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    sideways.save(tmp_path / "tagged.jpg", quality=95, exif=exif.tobytes())
    sideways.save(tmp_path / "untagged.jpg", quality=95)
    generate_files(NAME, tmp_path / "tagged.jpg", tmp_path / "ok.gif", num_frames=2)
    assert (tmp_path / "ok.gif").is_file()
    with pytest.raises(UserError, match="No face found"):
        generate_files(NAME, tmp_path / "untagged.jpg", tmp_path / "no.gif", num_frames=2)


@pytest.mark.slow
def test_wheel_packs_shipped_models_and_finds_them_installed(tmp_path):
    """`pip install .` carries exported/smile-frl-*/ as affinegan_tf/shipped/ and nothing else."""
    source = tmp_path / "source"
    source.mkdir()
    for item in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO_ROOT / item, source)
    for folder in ("affinegan_tf", "pipelines"):
        shutil.copytree(REPO_ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__py*"))
    (source / "exported").mkdir()
    shipped_model = source / "exported" / "smile-frl-64"
    (shipped_model / "saved_model" / "1").mkdir(parents=True)
    manifest = {"image_size": 64, "name": "smile-frl-64", "expression": "smile"}
    (shipped_model / "manifest.json").write_text(json.dumps(manifest))
    (shipped_model / "generate_fp16.tflite").write_bytes(b"tflite")
    (shipped_model / "saved_model" / "1" / "saved_model.pb").write_bytes(b"pb")
    (source / "exported" / "my-own-export").mkdir()
    (source / "exported" / "my-own-export" / "manifest.json").write_text('{"image_size": 64}')
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-q", "-w", str(wheels)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = wheels.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "affinegan_tf/shipped/smile-frl-64/manifest.json" in names
    assert "affinegan_tf/shipped/smile-frl-64/saved_model/1/saved_model.pb" in names
    assert "affinegan_tf/shipped/smile-frl-64/generate_fp16.tflite" in names
    assert not any("my-own-export" in name for name in names)
    installed = tmp_path / "installed"
    zipfile.ZipFile(wheel).extractall(installed)
    # -S: no site-packages, so only the unpacked wheel provides affinegan_tf (models.py needs
    # nothing else).
    listed = subprocess.run(
        [
            sys.executable,
            "-S",
            "-c",
            f"import sys, json; sys.path.insert(0, {str(installed)!r}); "
            "from affinegan_tf.models import list_models; "
            "print(json.dumps([m.to_dict() for m in list_models()]))",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
    )
    (model,) = json.loads(listed.stdout)
    assert model["name"] == "smile-frl-64" and model["expression"] == "smile"
    assert Path(model["path"]) == (installed / "affinegan_tf" / "shipped" / "smile-frl-64")


def test_slim_export_keeps_the_shipped_files_and_says_what_went(tmp_path):
    from affinegan_tf.models import slim_export

    folder = tmp_path / "smile-frl-128"
    (folder / "saved_model" / "1" / "variables").mkdir(parents=True)
    sizes = {
        "saved_model/1/saved_model.pb": 10,
        "saved_model/1/variables/variables.data-00000-of-00001": 400,
        "generate_one_fp16.tflite": 200,
        "generate_one.tflite": 400,
        "encode.tflite": 200,
        "generate_frames.onnx": 400,
        "generate_one.onnx": 400,
    }
    for name, size in sizes.items():
        (folder / name).write_bytes(b"x" * size)
    manifest = {
        "image_size": 128,
        "files": [{"path": name, "bytes": size} for name, size in sizes.items()],
        "parity": [{"path": "generate_one.tflite"}, {"path": "generate_frames.onnx"}],
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="over the 0 MB budget"):
        slim_export(folder, budget_bytes=100)
    assert (folder / "generate_one.tflite").is_file()  # nothing removed on refusal
    result = slim_export(folder)
    remaining = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert remaining == [
        "generate_frames.onnx",
        "generate_one_fp16.tflite",
        "manifest.json",
        "saved_model/1/saved_model.pb",
        "saved_model/1/variables/variables.data-00000-of-00001",
    ]
    assert result["shipped"]["dropped"] == [
        "encode.tflite",
        "generate_one.onnx",
        "generate_one.tflite",
    ]
    assert [entry["path"] for entry in result["parity"]] == ["generate_frames.onnx"]
    assert json.loads((folder / "manifest.json").read_text()) == result
