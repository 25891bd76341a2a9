"""`affinegan-tf export`: a trained run -> SavedModel, TFLite, ONNX files, a browser page (web/)
plus manifest.json.

The export is built in a temporary sibling folder and renamed into place at the end, so a failed or
interrupted export leaves nothing half-written behind. Every artefact is reloaded and compared with
the Keras generator before the folder is published; the figures go into the manifest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from affinegan_tf import __version__, calibration
from affinegan_tf.config import PIXEL_OFFSET, PIXEL_SCALE
from affinegan_tf.errors import UserError, require_extra
from affinegan_tf.export.backends import MANIFEST_FILE
from affinegan_tf.files import replace_folder
from affinegan_tf.run_folder import INTENSITY_RANGE_FILE, read_intensity_range

FORMATS = ("savedmodel", "tflite", "onnx", "web")
# What `export` writes when no formats are given; "all" is every one of FORMATS.
DEFAULT_FORMATS = ("savedmodel", "tflite", "onnx")
_FORMAT_ALIASES = {"saved_model": "savedmodel", "savedmodel": "savedmodel", "tflite": "tflite"}
# The optional packages each format needs (a key of errors.EXTRA_MODULES).
_FORMAT_EXTRAS = {"tflite": "tflite", "onnx": "onnx", "web": "onnx"}

# Max abs difference from the Keras generator on the [-1, 1] scale (uint8 levels for SavedModel).
TOLERANCES = {
    "savedmodel": 1.0,
    "tflite": 1e-4,
    "tflite_fp16": 5e-3,
    "onnx": 1e-4,
    "web": 1e-4,
}
PARITY_INTENSITIES = (0.0, 0.5, 1.0, 1.5)


class ExportParityError(RuntimeError):
    """An exported artefact does not reproduce the Keras generator (a bug, not a user error)."""


def normalisation() -> dict:
    """How pixels enter and leave each exported model (from the constants in config.py)."""
    return {
        "layout": "NHWC, RGB",
        "inside_model": f"float32 in [-1, 1]: pixel / {PIXEL_SCALE} - {PIXEL_OFFSET}",
        "savedmodel": (
            "uint8 RGB in (any size; resized to S x S inside with bilinear, antialiased "
            "tf.image.resize), uint8 RGB out: round((x + 1) * 127.5) clipped to [0, 255]"
        ),
        "tflite_and_onnx": (
            "float32 RGB in [0, 1] (pixel / 255) at S x S, resized beforehand like the "
            "SavedModel does; float32 out in [0, 1] (not clipped): clip, * 255, round"
        ),
    }


def _check_formats(formats) -> list[str]:
    chosen = []
    for name in formats or DEFAULT_FORMATS:
        key = _FORMAT_ALIASES.get(name.strip().lower(), name.strip().lower())
        keys = FORMATS if key == "all" else (key,)
        if not set(keys) <= set(FORMATS):
            raise UserError(
                f"Unknown export format {name!r}; choose from {', '.join(FORMATS)}, or all."
            )
        chosen += [key for key in keys if key not in chosen]
    if not chosen:
        raise UserError(f"Give at least one export format ({', '.join(FORMATS)}, or all).")
    for key in chosen:
        if key in _FORMAT_EXTRAS:
            require_extra(_FORMAT_EXTRAS[key], f"Exporting {key}")
    return chosen


def _check_target(out_dir: Path) -> None:
    """Refuses to replace anything but an earlier export (or an empty folder)."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is a file; give a folder name for the export.")
    if any(out_dir.iterdir()) and not (out_dir / MANIFEST_FILE).is_file():
        raise UserError(
            f"--out {out_dir} already exists and is not an affinegan-tf export (no "
            f"{MANIFEST_FILE}). Choose another folder or remove it."
        )


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- parity


def _parity_face(image_size: int) -> np.ndarray:
    """A fixed smooth-plus-noise uint8 test image (deterministic, no files needed)."""
    rows, cols = np.mgrid[0:image_size, 0:image_size] / max(image_size - 1, 1)
    base = np.stack([rows, cols, 0.5 * (rows + cols)], axis=-1) * 200 + 20
    noise = np.random.default_rng(0).integers(-20, 21, size=base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _max_difference(first, second) -> float:
    return float(np.max(np.abs(np.asarray(first, np.float64) - np.asarray(second, np.float64))))


def _check_parity(
    generator, staging: Path, written: dict[str, list[Path]], apex: float
) -> list[dict]:
    """Reloads every artefact and compares its frames with the Keras generator's.

    The artefacts take calibrated intensities (`apex` inside their graphs); the reference decodes
    the raw intensities `calibration.to_raw` makes of them, so a wrong or missing apex in a graph
    fails here.
    """
    import tensorflow as tf

    from affinegan_tf.data.pixels import to_uint8
    from affinegan_tf.export import onnx as onnx_export
    from affinegan_tf.export import saved_model, signature, tflite

    size = generator.config.image_size
    face_uint8 = _parity_face(size)
    face = signature.resize_to_model(face_uint8, size)[tf.newaxis]
    intensities = np.asarray(PARITY_INTENSITIES, np.float32)
    raw = calibration.to_raw(intensities, apex)
    reference = signature.generate_frames_from_model_range(generator, face, raw).numpy()
    face_unit = signature.model_range_to_unit(face).numpy()
    results = []

    def record(path: Path, key: str, difference: float, scale: str, partner: Path | None = None):
        name = path.relative_to(staging).as_posix()
        if partner is not None:
            name = f"{name}+{partner.relative_to(staging).as_posix()}"
        results.append(
            {
                "path": name,
                "max_abs_difference": difference,
                "tolerance": TOLERANCES[key],
                "scale": scale,
                "passed": difference <= TOLERANCES[key],
            }
        )

    for directory in written.get("savedmodel", []):
        loaded, generate = saved_model.load_generate(directory)
        frames = saved_model.generate_with_saved_model(generate, face_uint8, intensities)
        expected = to_uint8(reference).numpy()
        record(directory, "savedmodel", _max_difference(frames, expected), "uint8 levels")
        del loaded
    for path in written.get("tflite", []):
        key = "tflite_fp16" if path.stem.endswith("_fp16") else "tflite"
        if path.stem.startswith("decode"):
            continue  # checked with its encode half
        decode_path = None
        if path.stem.startswith("encode"):
            suffix = "_fp16" if key == "tflite_fp16" else ""
            encode = tflite.interpreter(path).get_signature_runner()
            decode_path = path.with_name(f"decode{suffix}.tflite")
            decode = tflite.interpreter(decode_path).get_signature_runner()
            features = encode(image=face_unit)
            frames = [
                decode(**features, intensity=intensities[i : i + 1])["frames"]
                for i in range(len(intensities))
            ]
        else:
            runner = tflite.interpreter(path).get_signature_runner()
            frames = [
                runner(image=face_unit, intensity=intensities[i : i + 1])["frames"]
                for i in range(len(intensities))
            ]
        frames = np.concatenate(frames, axis=0)
        difference = _max_difference(signature.unit_to_model_range(frames), reference)
        record(path, key, difference, "[-1, 1]", partner=decode_path)
    for path in written.get("onnx", []):
        frames = onnx_export.run_onnx(onnx_export.session(path), face_unit, intensities)
        difference = _max_difference(signature.unit_to_model_range(frames), reference)
        record(path, "onnx", difference, "[-1, 1]")
    if written.get("web"):
        encode_path, decode_path = written["web"]
        frames = onnx_export.run_onnx_pair(
            onnx_export.session(encode_path),
            onnx_export.session(decode_path),
            face_unit,
            intensities,
        )
        difference = _max_difference(signature.unit_to_model_range(frames), reference)
        record(encode_path, "web", difference, "[-1, 1]", partner=decode_path)
    return results


# ----------------------------------------------------------------------------- export


def export_generator(
    generator,
    out_dir: str | Path,
    formats=DEFAULT_FORMATS,
    fp16: bool = False,
    preset: str | None = None,
    source: dict | None = None,
    intensity_range: dict | None = None,
    card: dict | None = None,
) -> dict:
    """Exports a generator to `out_dir` and returns the manifest (also written as manifest.json).

    Args:
        generator: A built AffineGenerator.
        out_dir: Export folder (e.g. exported/NAME); created, or replaced if it holds an export.
        formats: Any of "savedmodel", "tflite", "onnx", "web" (the browser page), or "all".
        fp16: Also write float16-weight TFLite files.
        preset: Preset name recorded in the manifest.
        source: Where the weights came from (run folder, checkpoint), recorded as given.
        intensity_range: The intensity range seen in training, recorded as given; its `apex`
            (calibration.py; 1 when absent) becomes a constant of every exported graph, so that
            exported models take calibrated intensities (1 = the apex).
        card: Top-level manifest entries about what the model is for (name, expression,
            input_crop, training_data: see `model_card`), recorded as given.

    Raises:
        UserError: Bad formats or an `out_dir` that is not an export.
        ExportParityError: An artefact does not reproduce the Keras generator.
    """
    from affinegan_tf.export import onnx as onnx_export
    from affinegan_tf.export import saved_model, signature, tflite, tflite_gpu, web

    chosen = _check_formats(formats)
    out_dir = Path(out_dir)
    _check_target(out_dir)
    apex = calibration.apex_of(intensity_range)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        written: dict[str, list[Path]] = {}
        details: dict[str, dict] = {}
        if "savedmodel" in chosen:
            directory = saved_model.export_saved_model(generator, staging, apex)
            written["savedmodel"] = [directory]
            details[(directory / "saved_model.pb").as_posix()] = {
                "format": "savedmodel",
                "description": "TensorFlow Serving model (version 1); signatures below",
                "io": saved_model.saved_model_io(directory),
            }
        if "tflite" in chosen:
            written["tflite"] = tflite.export_tflite(generator, staging, fp16=fp16, apex=apex)
            for path in written["tflite"]:
                model = path.stem.removesuffix("_fp16")
                details[path.as_posix()] = {
                    "format": "tflite",
                    "variant": "fp16" if path.stem.endswith("_fp16") else "fp32",
                    "description": tflite.TFLITE_MODELS[model][1],
                    "io": tflite.tflite_io(path),
                    "gpu_delegate": tflite_gpu.check_gpu_delegate(path),
                }
        if "onnx" in chosen:
            written["onnx"] = onnx_export.export_onnx(generator, staging, apex=apex)
            for path in written["onnx"]:
                ops = onnx_export.onnx_op_counts(path)
                details[path.as_posix()] = {
                    "format": "onnx",
                    "description": onnx_export.describe_model(path.stem),
                    "io": onnx_export.onnx_io(path),
                    "ops": ops,
                    "mobile_forbidden_ops": [
                        op for op in onnx_export.MOBILE_FORBIDDEN_OPS if op in ops
                    ],
                    "mobile_usability": onnx_export.mobile_usability(path),
                }
        if "web" in chosen:
            written["web"] = web.export_web(generator, staging, apex)
            for path in written["web"]:
                details[path.as_posix()] = {
                    "format": "web",
                    "description": onnx_export.describe_model(path.stem),
                    "io": onnx_export.onnx_io(path),
                }
        parity = _check_parity(generator, staging, written, apex)
        files = []
        for path in sorted(p for p in staging.rglob("*") if p.is_file()):
            entry = {
                "path": path.relative_to(staging).as_posix(),
                "bytes": path.stat().st_size,
                "sha256": sha256(path),
            }
            if path.as_posix() in details:
                entry.update(details[path.as_posix()])
            elif "saved_model" in path.relative_to(staging).parts:
                entry["part_of"] = f"{saved_model.SAVED_MODEL_DIR}/{saved_model.MODEL_VERSION}"
            files.append(entry)
        config = generator.config
        manifest = {
            "format_version": signature.EXPORT_FORMAT_VERSION,
            "affinegan_tf_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "preset": preset,
            "image_size": config.image_size,
            "model_config": dataclasses.asdict(config),
            "normalisation": normalisation(),
            "intensity_range": intensity_range,
            "intensity_calibration": intensity_calibration(intensity_range),
            "source": source or {},
            "formats": chosen,
            "files": files,
            "parity": parity,
            **(card or {}),
        }
        if intensity_range is None:
            manifest["intensity_range_note"] = (
                f"not recorded: the run folder has no {INTENSITY_RANGE_FILE}; intensities are "
                "usually in [0, 1], and values outside extrapolate"
            )
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        failed = [item for item in parity if not item["passed"]]
        if failed:
            raise ExportParityError(
                "Exported models do not reproduce the Keras generator: "
                + "; ".join(
                    f"{item['path']} differs by {item['max_abs_difference']:.3g} "
                    f"(tolerance {item['tolerance']})"
                    for item in failed
                )
            )
        replace_folder(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def export_model(
    model_path: str | Path, out_dir: str | Path, formats=DEFAULT_FORMATS, fp16: bool = False
) -> dict:
    """`affinegan-tf export`: exports the latest checkpoint of a training run folder.

    Returns:
        The manifest written to `<out_dir>/manifest.json`.
    """
    from affinegan_tf.checkpoints import latest_checkpoint, load_model

    chosen = _check_formats(formats)
    run_dir = Path(model_path)
    if not run_dir.is_dir():
        raise UserError(
            f"--model {run_dir} is not a folder; `export` takes a training run folder "
            "(the --out of `affinegan-tf fit`)."
        )
    out_dir = Path(out_dir)
    _check_target(out_dir)
    checkpoint = latest_checkpoint(run_dir)
    model, config = load_model(run_dir, checkpoint)
    intensity_range = read_intensity_range(run_dir)
    return export_generator(
        model.inference_generator,
        out_dir,
        formats=chosen,
        fp16=fp16,
        preset=config.preset,
        source={
            "run_dir": str(run_dir.resolve()),
            "checkpoint": Path(checkpoint).name,
        },
        intensity_range=intensity_range,
        card=model_card(config, out_dir.name),
    )


def model_card(config, name: str) -> dict:
    """What `affinegan-tf models` and `generate --model NAME` need to know about an export.

    The crop a photo needs and the training data's licence come from the data card that
    `prepare-pairs` wrote (pairs.json) when the run trained on prepared pairs; otherwise the crop
    is the run's own (--face-crop or the centre square). What intensity 1 means is not part of
    the card: the apex is inside the exported graphs (`intensity_calibration`).
    """
    from affinegan_tf.pairs import read_data_card

    data = getattr(config, "data", None)
    data_card = read_data_card(data.data_dir) if data is not None and data.data_dir else None
    card: dict = {"name": name}
    if data_card is None:
        card["input_crop"] = (
            {
                "kind": "face",
                "detector": "opencv haarcascade_frontalface_alt2",
                "margin": float(data.face_margin),
            }
            if data is not None and data.face_crop
            else {"kind": "centre"}
        )
        return card
    card["expression"] = data_card.get("expression")
    card["input_crop"] = data_card.get("crop")
    card["training_data"] = {
        "licence": data_card.get("licence"),
        "attribution": data_card.get("attribution"),
        "kind": data_card.get("kind"),
        "pairs": len(data_card.get("train", [])),
        "held_out": data_card.get("held_out", []),
        # Whether the expression frames kept only the expression photo's face (prepare-pairs
        # --blend-face); cards written before the option have no entry: they did not.
        "blend_face": bool(data_card.get("blend_face", False)),
        # Morphed frames between the two photos of each training video (--inbetweens).
        "inbetweens": int(data_card.get("inbetweens", 0)),
    }
    return card


def intensity_calibration(intensity_range: dict | None) -> dict:
    """The manifest's `intensity_calibration`: the apex inside the exported graphs and what
    intensity 1 means (a note instead when the run recorded no apex)."""
    entry = {
        "apex": calibration.apex_of(intensity_range),
        "applied_in_graph": True,
        "meaning": calibration.MEANING,
    }
    if not calibration.is_calibrated(intensity_range):
        entry["note"] = calibration.MISSING_NOTE
    elif (intensity_range or {}).get("note") == calibration.TEMPORAL_NOTE:
        entry["note"] = calibration.TEMPORAL_NOTE
    else:
        maxima = intensity_range.get("video_maxima") or []
        entry["note"] = (
            f"median over {len(maxima)} training videos of each video's largest inferred "
            f"intensity, at step {intensity_range.get('step')}"
        )
    return entry


def format_export(manifest: dict, out_dir: str | Path) -> str:
    """What `affinegan-tf export` prints: files, sizes, mobile op checks, parity, where to look."""
    lines = [f"{entry['path']}  ({entry['bytes'] / 1e6:.1f} MB)" for entry in manifest["files"]]
    for entry in manifest["files"]:
        gpu = entry.get("gpu_delegate")
        if gpu is not None:
            verdict = "all ops" if gpu["gpu_compatible"] else "; ".join(gpu["problems"][:3])
            lines.append(f"TFLite GPU delegate, {entry['path']}: {verdict}")
        usability = entry.get("mobile_usability")
        if usability is not None:
            figures = ", ".join(
                f"{provider} {report['supported_nodes']}/{report['nodes']} nodes "
                f"in {report['partitions']} partition(s)"
                for provider, report in usability.items()
            )
            lines.append(f"ONNX Runtime mobile, {entry['path']}: {figures}")
    worst = {
        item["path"]: f"{item['max_abs_difference']:.2g} ({item['scale']})"
        for item in manifest["parity"]
    }
    lines.append("max difference from Keras: " + ", ".join(f"{k} {v}" for k, v in worst.items()))
    lines.append(f"manifest: {Path(out_dir) / 'manifest.json'}")
    if "web" in manifest["formats"]:
        page = Path(out_dir) / "web"
        lines.append(f"browser page: python -m http.server -b 127.0.0.1 -d {page}  (then open it)")
    return "\n".join(lines)
