"""Models shipped with the package, found by name: `affinegan-tf models`, `generate --model NAME`.

A shipped model is an export folder (`affinegan-tf export`: SavedModel, TFLite, ONNX and
manifest.json). They are looked up, first match of a name wins, in:

1. the folders of the `AFFINEGAN_TF_MODELS` environment variable (separated like PATH), each
   holding export folders (for tests, and for models kept outside the package);
2. the package's own `affinegan_tf/shipped/` folder: the repository's `exported/` folder, which
   `pip install .` packs into the wheel (see pyproject.toml's package data).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from affinegan_tf.errors import UserError

ENVIRONMENT_VARIABLE = "AFFINEGAN_TF_MODELS"
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class ShippedModel:
    """One model that `generate --model NAME` can use.

    Attributes:
        name: What `--model` takes (the manifest's name, else the folder's).
        expression: The expression it makes ("smile"), or None when the manifest does not say.
        image_size: Side of its frames.
        licence: Licence of its training data, as the manifest says (None: not recorded).
        attribution: Attribution its training data requires (None: not recorded).
        input_crop: The crop it expects of a photo: {"kind": "face", "margin": ...} or
            {"kind": "centre"}.
        path: The export folder.
    """

    name: str
    expression: str | None
    image_size: int
    licence: str | None
    attribution: str | None
    input_crop: dict
    path: Path

    def to_dict(self) -> dict:
        values = asdict(self)
        values["path"] = str(self.path)
        return values


def search_folders() -> list[Path]:
    """Where shipped models are looked for, in order (see the module docstring)."""
    folders = [Path(part) for part in os.environ.get(ENVIRONMENT_VARIABLE, "").split(os.pathsep)]
    folders = [folder for folder in folders if str(folder) not in ("", ".")]
    import importlib.util

    try:
        spec = importlib.util.find_spec("affinegan_tf.shipped")
    except (ImportError, ValueError):
        spec = None
    packaged = (
        [Path(location) for location in (spec.submodule_search_locations or [])] if spec else []
    )
    if not packaged:  # a checkout that was not pip-installed
        packaged = [Path(__file__).resolve().parents[1] / "exported"]
    return folders + packaged


def _read(folder: Path) -> ShippedModel | None:
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(manifest, dict) or "image_size" not in manifest:
        return None
    training_data = manifest.get("training_data") or {}
    return ShippedModel(
        name=str(manifest.get("name") or folder.name),
        expression=manifest.get("expression"),
        image_size=int(manifest["image_size"]),
        licence=training_data.get("licence"),
        attribution=training_data.get("attribution"),
        input_crop=manifest.get("input_crop") or {"kind": "centre"},
        path=folder.resolve(),
    )


def list_models() -> list[ShippedModel]:
    """Every shipped model, by name (a name found in an earlier search folder hides later ones)."""
    found: dict[str, ShippedModel] = {}
    for folder in search_folders():
        if not folder.is_dir():
            continue
        for child in sorted(folder.iterdir()):
            model = _read(child) if child.is_dir() else None
            if model is not None and model.name not in found:
                found[model.name] = model
    return sorted(found.values(), key=lambda model: model.name)


def resolve_model(name_or_path: str | Path) -> Path:
    """`--model`: an existing file or folder as given, else a shipped model's folder by name.

    Raises:
        UserError: Neither a path nor the name of a shipped model.
    """
    path = Path(name_or_path)
    if path.exists():
        return path
    models = list_models()
    for model in models:
        if model.name == str(name_or_path):
            return model.path
    names = ", ".join(model.name for model in models) or "none installed"
    raise UserError(
        f"--model {name_or_path} is neither a file or folder nor the name of a shipped model "
        f"(shipped: {names}; see `affinegan-tf models`)."
    )


def format_models(models: list[ShippedModel]) -> str:
    """The `affinegan-tf models` table."""
    if not models:
        return (
            "No shipped models found (looked in: "
            + ", ".join(str(folder) for folder in search_folders())
            + f"). Train and export one, or point {ENVIRONMENT_VARIABLE} at a folder of exports."
        )
    lines = []
    for model in models:
        crop = model.input_crop.get("kind", "centre")
        if crop == "face":
            crop = f"face (margin {model.input_crop.get('margin')})"
        lines.append(
            f"{model.name}\n"
            f"  expression: {model.expression or 'not recorded'}\n"
            f"  image size: {model.image_size}x{model.image_size}, input crop: {crop}\n"
            f"  training data licence: {model.licence or 'not recorded'}\n"
            f"  attribution: {model.attribution or 'not recorded'}\n"
            f"  path: {model.path}"
        )
    return "\n".join(lines)


# The files a shipped model keeps (at most GIT_BUDGET_BYTES in all): the SavedModel (what
# `generate` runs on a base install), the fp16 TFLite models (phones, GPU delegate) and the ONNX
# batch model. fp32 TFLite and the single-frame ONNX repeat the same weights and are dropped.
SHIPPED_FILES = (
    "manifest.json",
    "saved_model/",
    "generate_one_fp16.tflite",
    "encode_fp16.tflite",
    "decode_fp16.tflite",
    "generate_frames.onnx",
)
GIT_BUDGET_BYTES = 60_000_000


def slim_export(folder: str | Path, budget_bytes: int = GIT_BUDGET_BYTES) -> dict:
    """Turns an export folder into a shipped model: drops the files not in SHIPPED_FILES and
    rewrites manifest.json to list only what stays (with `shipped` saying what was dropped).

    Returns:
        The rewritten manifest.

    Raises:
        UserError: Not an export folder, or what stays is over `budget_bytes`.
    """
    folder = Path(folder)
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        raise UserError(f"{folder} is not an export folder (no {MANIFEST_FILE}).")
    manifest = json.loads(manifest_path.read_text())

    def kept(relative: str) -> bool:
        return any(
            relative == name or (name.endswith("/") and relative.startswith(name))
            for name in SHIPPED_FILES
        )

    files = [path for path in folder.rglob("*") if path.is_file()]
    dropped = sorted(
        path.relative_to(folder).as_posix()
        for path in files
        if not kept(path.relative_to(folder).as_posix())
    )
    total = sum(
        path.stat().st_size for path in files if path.relative_to(folder).as_posix() not in dropped
    )
    if total > budget_bytes:
        raise UserError(
            f"{folder}: the shipped files take {total / 1e6:.1f} MB, over the "
            f"{budget_bytes / 1e6:.0f} MB budget. Train a narrower model (ngf) or ship fewer "
            "formats."
        )
    for relative in dropped:
        (folder / relative).unlink()
    manifest["files"] = [
        entry for entry in manifest.get("files", []) if entry["path"] not in dropped
    ]
    manifest["parity"] = [
        entry
        for entry in manifest.get("parity", [])
        if all(part not in dropped for part in entry["path"].split("+"))
    ]
    manifest["shipped"] = {"bytes": total, "dropped": dropped}
    temporary = manifest_path.with_name(f".{MANIFEST_FILE}.partial")
    temporary.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    os.replace(temporary, manifest_path)
    return manifest
