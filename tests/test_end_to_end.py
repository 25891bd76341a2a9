"""The whole user path through the installed console script, on a very small budget.

make-toy-data -> fit -> generate (GIF) -> export (all formats) -> generate from each exported
file -> evaluate, each step a subprocess running `affinegan-tf` exactly as a user types it.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import cv2
import imageio.v3 as iio
import numpy as np
import pytest
from cli_helpers import run_cli

pytestmark = pytest.mark.slow

STEPS = 30
FRAMES = 5
INTENSITIES = "0,0.25,0.5,0.75,1"
# Frames are uint8: the export tolerances (1e-4 fp32, 5e-3 fp16 on the [-1, 1] scale) are below
# one grey level, so exported frames may differ from Keras' by rounding only.
MAX_LEVELS = {"fp32": 1, "fp16": 2}


def read_png_folder(folder: Path) -> np.ndarray:
    files = sorted(folder.glob("*.png"))
    return np.stack([cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB) for path in files])


@pytest.fixture(scope="module")
def user_path(tmp_path_factory) -> dict:
    """Runs every step once; the tests below check its outputs."""
    root = tmp_path_factory.mktemp("user")
    # Every command runs in the test's own folder, never in the checkout.
    cli = functools.partial(run_cli, cwd=root)
    data, run, exported = root / "data", root / "run", root / "exported"
    cli("make-toy-data", "--out", str(data), "--videos", "4", "--size", "64", "--seed", "3")
    fit = cli(
        "fit",
        "--data",
        str(data),
        "--out",
        str(run),
        "--pipeline",
        "toy",  # the built-in recipe, shipped in the package
        "--steps",
        str(STEPS),
        "--checkpoint-every",
        str(STEPS),
    )
    photo = sorted((data / "test" / "img").iterdir())[0]
    photo = sorted(photo.iterdir())[0] if photo.is_dir() else photo
    cli("generate", "--model", str(run), "--image", str(photo), "--out", str(root / "keras.gif"))
    cli(
        "generate",
        "--model",
        str(run),
        "--image",
        str(photo),
        "--intensities",
        INTENSITIES,
        "--out",
        str(root / "keras") + "/",
    )
    cli("export", "--model", str(run), "--out", str(exported), "--fp16")
    manifest = json.loads((exported / "manifest.json").read_text())
    models = {"saved_model": exported / "saved_model"}
    models.update({path.name: path for path in exported.glob("*.tflite")})
    models.update({path.name: path for path in exported.glob("*.onnx")})
    for name, path in models.items():
        cli(
            "generate",
            "--model",
            str(path),
            "--image",
            str(photo),
            "--intensities",
            INTENSITIES,
            "--out",
            str(root / "from" / name) + "/",
        )
    report = root / "report"
    evaluation = cli(
        "evaluate", "--model", str(run), "--data", str(data), "--json", "--out", str(report)
    )
    return {
        "root": root,
        "data": data,
        "run": run,
        "fit_log": fit.stderr,
        "exported": exported,
        "manifest": manifest,
        "models": models,
        "report": report,
        "evaluation": json.loads(evaluation.stdout),
    }


def test_fit_wrote_a_complete_run_folder(user_path):
    run = user_path["run"]
    assert json.loads((run / "config.json").read_text())["train"]["steps"] == STEPS
    assert (run / "checkpoints" / f"ckpt-{STEPS}.index").is_file()
    assert (run / "samples" / f"step_{STEPS:07d}.gif").is_file()
    assert list((run / "logs").glob("events.out.tfevents.*"))
    seen = json.loads((run / "intensity_range.json").read_text())
    assert seen["step"] == STEPS and seen["min"] <= seen["mean"] <= seen["max"]
    assert f"step {STEPS}/{STEPS}" in user_path["fit_log"]


def test_keras_gif_has_the_default_16_frames(user_path):
    frames = iio.imread(user_path["root"] / "keras.gif")
    assert frames.shape[:3] == (16, 64, 64)


def test_export_wrote_every_format_with_a_manifest(user_path):
    exported, manifest = user_path["exported"], user_path["manifest"]
    assert (exported / "saved_model" / "1" / "saved_model.pb").is_file()
    names = set(user_path["models"])
    assert {"generate_one.tflite", "generate_one_fp16.tflite"} <= names
    assert {"generate_one.onnx", "generate_frames.onnx"} <= names
    listed = {entry["path"]: entry for entry in manifest["files"]}
    for path in exported.rglob("*"):
        if path.is_file() and path.name != "manifest.json":
            relative = path.relative_to(exported).as_posix()
            assert listed[relative]["bytes"] == path.stat().st_size
    assert manifest["intensity_range"]["step"] == STEPS


def test_every_exported_file_gives_the_keras_frames(user_path):
    root = user_path["root"]
    reference = read_png_folder(root / "keras").astype(int)
    assert reference.shape == (FRAMES, 64, 64, 3)
    for name in user_path["models"]:
        frames = read_png_folder(root / "from" / name).astype(int)
        assert frames.shape == reference.shape, name
        limit = MAX_LEVELS["fp16" if "fp16" in name else "fp32"]
        assert np.abs(frames - reference).max() <= limit, name


def test_evaluate_reports_metrics_and_writes_its_folder(user_path):
    printed, report = user_path["evaluation"], user_path["report"]
    assert printed == json.loads((report / "metrics.json").read_text())
    assert printed["videos"] == len(list((user_path["data"] / "test" / "img").iterdir()))
    assert {"generated", "real"} <= set(printed["rows"])
    assert (report / "summary.md").is_file()
    assert iio.imread(report / "contact_sheet.png").ndim == 3
