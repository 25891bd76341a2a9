"""Run `generate` from whatever the user has: a run folder, an export, a SavedModel, .tflite, .onnx.

Every backend takes the same input (a uint8 RGB face) and returns the same output (uint8
[N, S, S, 3] frames). The float formats (TFLite, ONNX) get the face resized by
`signature.resize_to_model`, the function the SavedModel runs inside its graph, so all backends see
the same pixels and agree within the export tolerances.

Each backend imports its modules inside the function that loads it, on purpose: an optional
runtime (LiteRT, ONNX Runtime) is needed only by the formats that use it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from affinegan_tf.errors import UserError, require_extra
from affinegan_tf.run_folder import intensity_apex, is_run_folder

MANIFEST_FILE = "manifest.json"
MODEL_KINDS = ("keras", "saved_model", "tflite", "onnx")


@dataclass
class Backend:
    """A loaded model that makes frames.

    Attributes:
        kind: "keras", "saved_model", "tflite" or "onnx".
        image_size: Side S of the frames.
        source: The file or folder it was loaded from.
        manifest: The export manifest, when the model came from an export folder.
    """

    kind: str
    image_size: int
    source: Path
    manifest: dict | None = None
    _run: object = field(default=None, repr=False)
    # What the run function needs alive (a loaded SavedModel, a Keras model).
    _owner: object = field(default=None, repr=False)

    def generate(self, image: np.ndarray, intensities) -> np.ndarray:
        """uint8 [H, W, 3] RGB face + N calibrated intensities (1 = the apex) -> uint8
        [N, S, S, 3] frames."""
        values = np.asarray(intensities, np.float32).reshape(-1)
        if values.size == 0:
            raise UserError("Give at least one intensity.")
        return self._run(np.asarray(image, np.uint8), values)


# ----------------------------------------------------------------------------- float formats


def face_to_unit(image: np.ndarray, image_size: int) -> np.ndarray:
    """uint8 [H, W, 3] -> float32 [1, S, S, 3] in [0, 1], resized exactly as `generate` does."""
    from affinegan_tf.export import signature

    face = signature.resize_to_model(np.asarray(image, np.uint8), image_size)
    return signature.model_range_to_unit(face).numpy()[np.newaxis]


def unit_to_uint8(frames: np.ndarray) -> np.ndarray:
    """float [N, S, S, 3] in [0, 1] -> uint8, with the one rounding/clipping of `to_uint8`."""
    from affinegan_tf.data.pixels import to_uint8
    from affinegan_tf.export import signature

    return to_uint8(signature.unit_to_model_range(frames)).numpy()


def _tflite_backend(path: Path, num_threads: int | None) -> Backend:
    from affinegan_tf.export import tflite

    try:
        model = tflite.interpreter(path, num_threads=num_threads)
        runner = model.get_signature_runner()
    except (ValueError, RuntimeError) as error:
        raise UserError(
            f"Cannot use {path} as a generate model ({error}). Pass a .tflite written by "
            "`affinegan-tf export`."
        ) from None
    inputs = runner.get_input_details()
    if set(inputs) == {"image", "intensity"}:
        image_size = int(inputs["image"]["shape"][1])

        def run(image, intensities):
            face = face_to_unit(image, image_size)
            frames = [
                runner(image=face, intensity=intensities[i : i + 1])["frames"]
                for i in range(len(intensities))
            ]
            return unit_to_uint8(np.concatenate(frames, axis=0))

        return Backend("tflite", image_size, path, _run=run)
    if "image" in inputs or "intensity" in inputs:
        return _tflite_pair_backend(path, num_threads)
    raise UserError(
        f"{path} is a .tflite model without the generate_one/encode/decode inputs "
        "(image, intensity). Pass a .tflite written by `affinegan-tf export`."
    )


def _tflite_pair_backend(path: Path, num_threads: int | None) -> Backend:
    """encode*.tflite or decode*.tflite: load both halves from the same folder."""
    from affinegan_tf.export import tflite

    suffix = "_fp16" if path.stem.endswith("_fp16") else ""
    encode_path = path.with_name(f"encode{suffix}.tflite")
    decode_path = path.with_name(f"decode{suffix}.tflite")
    for needed in (encode_path, decode_path):
        if not needed.is_file():
            raise UserError(
                f"{path} is half of the encode/decode pair, but {needed} is missing. "
                "Keep both files together, or pass generate_one.tflite."
            )
    encode = tflite.interpreter(encode_path, num_threads=num_threads).get_signature_runner()
    decode = tflite.interpreter(decode_path, num_threads=num_threads).get_signature_runner()
    image_size = int(encode.get_input_details()["image"]["shape"][1])

    def run(image, intensities):
        features = encode(image=face_to_unit(image, image_size))
        frames = [
            decode(**features, intensity=intensities[i : i + 1])["frames"]
            for i in range(len(intensities))
        ]
        return unit_to_uint8(np.concatenate(frames, axis=0))

    return Backend("tflite", image_size, encode_path, _run=run)


def _onnx_backend(path: Path, num_threads: int | None) -> Backend:
    from affinegan_tf.export import onnx as onnx_export

    try:
        model_session = onnx_export.session(path, num_threads=num_threads)
    except Exception as error:  # onnxruntime raises its own exception types
        raise UserError(f"Cannot load ONNX model {path}: {error}") from None
    inputs = {item.name: item for item in model_session.get_inputs()}
    if "image" not in inputs or not ({"intensity", "intensities"} & set(inputs)):
        raise UserError(
            f"{path} is not a generate graph (inputs {sorted(inputs)}); pass generate_one.onnx "
            "or generate_frames.onnx written by `affinegan-tf export`."
        )
    image_size = int(inputs["image"].shape[1])

    def run(image, intensities):
        face = face_to_unit(image, image_size)
        return unit_to_uint8(onnx_export.run_onnx(model_session, face, intensities))

    return Backend("onnx", image_size, path, _run=run)


# ----------------------------------------------------------------------------- TF formats


def _saved_model_backend(directory: Path, manifest: dict | None) -> Backend:
    import tensorflow as tf

    from affinegan_tf.export import saved_model

    try:
        loaded, generate = saved_model.load_generate(directory)
    except (OSError, KeyError, ValueError, tf.errors.OpError) as error:
        raise UserError(f"Cannot load the SavedModel in {directory}: {error}") from None
    image_size = generate.structured_outputs["frames"].shape[1]
    if image_size is None:
        raise UserError(f"{directory}: the generate signature has no static frame size.")

    def run(image, intensities):
        return saved_model.generate_with_saved_model(generate, image, intensities)

    return Backend("saved_model", int(image_size), directory, manifest, _run=run, _owner=loaded)


def _keras_backend(run_dir: Path) -> Backend:
    """A run folder: its latest checkpoint, with the apex it recorded (1 when it has none)."""
    from affinegan_tf.checkpoints import load_model
    from affinegan_tf.export import signature

    model, config = load_model(run_dir)
    generate = signature.make_generate(model.inference_generator, intensity_apex(run_dir))

    def run(image, intensities):
        return generate(image, intensities)["frames"].numpy()

    return Backend("keras", config.model.image_size, run_dir, _run=run, _owner=model)


# ----------------------------------------------------------------------------- resolving paths


def read_manifest(folder: Path) -> dict:
    """Reads `<folder>/manifest.json` and checks its format version against this package's."""
    from affinegan_tf.export.signature import EXPORT_FORMAT_VERSION

    path = Path(folder) / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"Cannot read export manifest {path}: {error}.") from None
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version != EXPORT_FORMAT_VERSION:
        raise UserError(
            f"{folder} was exported with format version {version!r}, but this affinegan-tf reads "
            f"version {EXPORT_FORMAT_VERSION}. Export the run again with `affinegan-tf export`, "
            "or use the affinegan-tf version that wrote it."
        )
    return manifest


def _saved_model_versions(folder: Path) -> list[Path]:
    """Numbered version folders holding a saved_model.pb (TensorFlow Serving's base-path layout)."""
    versions = [
        child
        for child in folder.iterdir()
        if child.is_dir() and child.name.isdigit() and (child / "saved_model.pb").is_file()
    ]
    return sorted(versions, key=lambda child: int(child.name))


def _manifest_above(directory: Path) -> dict | None:
    """The manifest of the export a SavedModel folder sits in (exported/NAME/saved_model/1)."""
    for parent in list(directory.resolve().parents)[:2]:
        if (parent / MANIFEST_FILE).is_file():
            return read_manifest(parent)
    return None


def load_backend(model_path: str | Path, num_threads: int | None = None) -> Backend:
    """Loads a model for generation from any of the forms the CLI accepts.

    Args:
        model_path: A training run folder (latest checkpoint), an export folder (its
            manifest.json is checked; its SavedModel is used), a SavedModel folder (or a
            TensorFlow Serving base folder of numbered versions), a .tflite or a .onnx file.
        num_threads: CPU threads for TFLite / ONNX Runtime (None: the runtime's default).

    Raises:
        UserError: Missing path, unknown file type, a run folder without checkpoints, an export
            of another format version.
    """
    path = Path(model_path)
    if not path.exists():
        raise UserError(f"Model {path} does not exist.")
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".tflite":
            require_extra("tflite", f"Running {path.name}")
            return _tflite_backend(path, num_threads)
        if suffix == ".onnx":
            require_extra("onnx", f"Running {path.name}")
            return _onnx_backend(path, num_threads)
        raise UserError(
            f"Unknown model file type {path.name!r}. Give a training run folder, an exported "
            "folder, a SavedModel folder, a .tflite or a .onnx file."
        )
    if (path / MANIFEST_FILE).is_file():
        manifest = read_manifest(path)
        saved = path / "saved_model"
        versions = _saved_model_versions(saved) if saved.is_dir() else []
        if versions:
            return _saved_model_backend(versions[-1], manifest)
        for fallback in ("generate_frames.onnx", "generate_one.tflite"):
            if (path / fallback).is_file():
                backend = load_backend(path / fallback, num_threads)
                backend.manifest = manifest
                return backend
        raise UserError(f"Export {path} holds no SavedModel, ONNX or TFLite generate model.")
    if (path / "saved_model.pb").is_file():
        return _saved_model_backend(path, _manifest_above(path))
    versions = _saved_model_versions(path)
    if versions:
        return _saved_model_backend(versions[-1], _manifest_above(versions[-1]))
    if is_run_folder(path):
        return _keras_backend(path)
    raise UserError(
        f"{path} is not a model folder: no config.json (training run), manifest.json (export) "
        "or saved_model.pb (SavedModel) in it."
    )
