"""`--formats web`: DIR/web/, a static page that turns a photo into an expression GIF, offline.

The folder holds everything the page needs at run time (no CDN, no server-side code): the page
(copied from `web_assets/`), the vendored ONNX Runtime Web (wasm) and gifenc files with their
licences, and the model as the ONNX encode / decode pair (`models/encode.onnx` once per photo,
`models/decode.onnx` once per intensity), converted by `export/onnx.py` like the other ONNX files
and checked against the Keras generator by the exporter. `model.json` tells the page the model
size, its files and the intensity slider's range. Intensities are calibrated (calibration.py: 1
is the apex); the decode graph carries the model's apex as a constant.

Serve it with any static server, e.g. `python -m http.server -d DIR/web`; the page's own service
worker adds the cross-origin isolation headers that multi-threaded wasm needs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from affinegan_tf import calibration
from affinegan_tf.calibration import UNCALIBRATED_APEX
from affinegan_tf.export import signature
from affinegan_tf.networks import AffineGenerator

WEB_DIR = "web"
MODELS_DIR = "models"
MODEL_FILE = "model.json"
ASSETS = Path(__file__).with_name("web_assets")
# How the tests and benchmarks start Debian's headless Chromium on the page: offline, as root,
# without the background connections a closed network refuses.
HEADLESS_CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
# Copied for the page; anything else in web_assets (editor files, caches) is left out.
ASSET_SUFFIXES = (".html", ".js", ".mjs", ".css", ".wasm", ".md", ".txt", "")


# The slider's [low, high] in calibrated intensities: 0 is the input face, 1 the apex; the last
# quarter lets a user exaggerate the expression a little (as `generate --intensities` can).
INTENSITY_SLIDER = (0.0, 1.25)


def _copy_assets(target: Path) -> None:
    for source in sorted(ASSETS.rglob("*")):
        relative = source.relative_to(ASSETS)
        if source.is_dir() or "__pycache__" in relative.parts or source.name.startswith("."):
            continue
        if source.suffix not in ASSET_SUFFIXES:
            continue
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, destination)


def export_web(
    generator: AffineGenerator, out_dir: Path, apex: float = UNCALIBRATED_APEX
) -> list[Path]:
    """Writes `<out_dir>/web/` and returns the paths of its two ONNX models (encode, decode).

    Args:
        generator: A built AffineGenerator.
        out_dir: The export folder being built (the staging folder of `export_generator`).
        apex: The raw intensity a = 1 means (calibration.py), a constant of the decode graph.
    """
    from affinegan_tf.export import onnx as onnx_export

    web = Path(out_dir) / WEB_DIR
    _copy_assets(web)
    models = web / MODELS_DIR
    models.mkdir(parents=True, exist_ok=True)
    written = onnx_export.export_onnx(
        generator, models, models=tuple(onnx_export.SPLIT_ONNX_MODELS), apex=apex
    )
    description = {
        "format_version": signature.EXPORT_FORMAT_VERSION,
        "image_size": generator.config.image_size,
        "files": {path.stem: f"{MODELS_DIR}/{path.name}" for path in written},
        "features": signature.feature_names(generator),
        "intensity_slider": list(INTENSITY_SLIDER),
        "intensity_apex": float(apex),
        "intensity_meaning": calibration.MEANING,
        "input": (
            "the photo's square crop (centre square by default) resized to S x S like "
            "`affinegan-tf generate` (OpenCV INTER_AREA to shrink, INTER_CUBIC to enlarge), "
            "RGB float32 [1,S,S,3] = pixel / 255"
        ),
        "output": "frames float32 [1,S,S,3] in [0,1]: clip, * 255, round",
    }
    (web / MODEL_FILE).write_text(json.dumps(description, indent=2))
    return written
