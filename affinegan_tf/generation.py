"""`affinegan-tf generate`: photos in, one animation per photo out, from any model form.

`generate_files` reads the photos, loads a run folder or any exported model
(`export/backends.py`), and writes one GIF / MP4 / PNG folder per photo (`animation.py`). The
Keras path encodes each face once and decodes all intensities as one batch (`rendering.py`, the
one definition of `generate`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from affinegan_tf.animation import write_animation
from affinegan_tf.data.images import read_image
from affinegan_tf.data.media_files import is_hidden, is_image_file, natural_sort_key
from affinegan_tf.data.square import prepare_photo
from affinegan_tf.errors import UserError
from affinegan_tf.export.backends import load_backend

DEFAULT_FRAMES = 16
OUTPUT_FORMATS = ("gif", "mp4", "png")
# Smaller photos carry too little of a face to fill even the `tiny` model's 64 x 64 input.
MIN_PHOTO_SIDE = 32


def intensity_sweep(
    num_frames: int = DEFAULT_FRAMES, max_intensity: float = 1.0, loop: str = "none"
) -> list[float]:
    """Evenly spaced intensities 0..max_intensity; `pingpong` appends the way back down."""
    if num_frames < 1:
        raise UserError(f"--frames must be >= 1, got {num_frames}.")
    if num_frames == 1:
        values = [float(max_intensity)]
    else:
        values = [float(v) for v in np.linspace(0.0, max_intensity, num_frames)]
    if loop == "pingpong" and len(values) > 2:
        values = values + values[-2:0:-1]
    return values


# ------------------------------------------------------------------------ affinegan-tf generate


def resolve_intensities(
    intensities=None,
    num_frames: int | None = None,
    max_intensity: float = 1.0,
    loop: str = "none",
) -> list[float]:
    """The intensities to render: the given list, or an even sweep; `pingpong` adds the way back.

    Args:
        intensities: Explicit values (any real numbers; outside [0, 1] extrapolates).
        num_frames: Frames of the sweep 0..max_intensity when no list is given (default 16).
        max_intensity: End of the sweep.
        loop: "none" or "pingpong".
    """
    if loop not in ("none", "pingpong"):
        raise UserError(f"--loop must be none or pingpong, got {loop!r}.")
    if intensities is None:
        return intensity_sweep(num_frames or DEFAULT_FRAMES, max_intensity, loop)
    values = [float(value) for value in intensities]
    if not values:
        raise UserError("--intensities needs at least one value.")
    if not all(np.isfinite(values)):
        raise UserError(f"--intensities must be finite numbers, got {values}.")
    if loop == "pingpong" and len(values) > 2:
        values = values + values[-2:0:-1]
    return values


def expand_photos(images) -> list[Path]:
    """Photo paths from --image values: files as given, folders expanded to their image files."""
    photos: list[Path] = []
    for item in [images] if isinstance(images, (str, Path)) else images:
        path = Path(item)
        if path.is_dir():
            found = sorted(
                (
                    child
                    for child in path.iterdir()
                    if child.is_file() and not is_hidden(child) and is_image_file(child)
                ),
                key=lambda child: natural_sort_key(child.name),
            )
            if not found:
                raise UserError(f"Folder {path} holds no photos (.jpg, .png, .bmp, .webp).")
            photos += found
        elif path.is_file():
            photos.append(path)
        else:
            raise UserError(f"Photo {path} does not exist.")
    if not photos:
        raise UserError("Give at least one --image.")
    return photos


def _is_folder_target(out: str) -> bool:
    path = Path(out)
    return out.endswith(("/", os.sep)) or path.is_dir() or not path.suffix


def plan_outputs(photos: list[Path], out: str | Path, output_format: str | None = None):
    """Where each photo's animation goes.

    One photo: `out` as given (`.gif`, `.mp4`, or a folder of numbered PNGs), unless
    `output_format` asks for a file named after the photo inside the folder. Several photos: `out`
    must be a folder; each photo gets `<out>/<photo name>.gif` (or .mp4, or a `<photo name>/` PNG
    folder, per `output_format`).
    """
    text = str(out)
    if output_format is not None and output_format not in OUTPUT_FORMATS:
        raise UserError(f"--format must be one of {', '.join(OUTPUT_FORMATS)}.")
    if not _is_folder_target(text):
        suffix = Path(text).suffix.lower()
        if suffix not in (".gif", ".mp4"):
            raise UserError(f"Cannot write {text}: use a .gif or .mp4 name, or a folder for PNGs.")
        if len(photos) > 1:
            raise UserError(
                f"{len(photos)} photos make {len(photos)} animations: give a folder as --out "
                f"(e.g. {Path(text).with_suffix('')}/), not the single file {text}."
            )
        return [Path(text)]
    folder = Path(text)
    if len(photos) == 1 and output_format is None:
        return [folder]
    chosen = output_format or "gif"
    targets, used = [], set()
    for photo in photos:
        name = photo.stem
        if name in used:
            name = f"{photo.stem}_{photo.suffix.lstrip('.').lower()}"
        counter = 2
        while name in used:
            name = f"{photo.stem}_{counter}"
            counter += 1
        used.add(name)
        targets.append(folder / name if chosen == "png" else folder / f"{name}.{chosen}")
    return targets


def read_photo(
    path: Path, image_size: int, face_crop: bool, face_margin: float = 0.35
) -> np.ndarray:
    """A photo as the model's uint8 [S, S, 3] input (centre square, or the face with --face-crop).

    Raises:
        UserError: Unreadable file, a photo too small to hold a usable face, or no face found.
    """
    image = read_image(path)
    height, width = image.shape[:2]
    if min(height, width) < MIN_PHOTO_SIDE:
        raise UserError(
            f"Photo {path} is {width}x{height}: too small to hold a usable face. Use a photo at "
            f"least {MIN_PHOTO_SIDE} px on its shorter side (ideally {image_size} px or more)."
        )
    return prepare_photo(
        image if not face_crop else path, image_size, face_crop=face_crop, face_margin=face_margin
    )


def expected_crop(manifest: dict | None, face_crop: bool | None) -> tuple[bool, float]:
    """(crop the face?, margin): --face-crop / --no-face-crop if given, else what the model's
    manifest says it was trained on (`input_crop`), else the centre square."""
    crop = (manifest or {}).get("input_crop") or {}
    margin = float(crop.get("margin", 0.35))
    if face_crop is None:
        return crop.get("kind") == "face", margin
    return bool(face_crop), margin


def legacy_intensity_scale(manifest: dict | None) -> float:
    """The factor exports made before intensity calibration need outside their graphs.

    Exports now carry the apex inside every graph (`intensity_calibration` in the manifest), so
    the factor is 1. Older exports of photo-pair models recorded `intensity_scale` (the mean
    intensity of the training apexes) for `generate` to multiply by instead; it is honoured only
    when the manifest has no `intensity_calibration`, so no model is scaled twice.
    """
    manifest = manifest or {}
    if "intensity_calibration" in manifest:
        return 1.0
    return float(manifest.get("intensity_scale", 1.0))


def generate_files(
    model_path: str | Path,
    images,
    out: str | Path,
    intensities=None,
    num_frames: int | None = None,
    max_intensity: float = 1.0,
    loop: str = "none",
    fps: float = 10.0,
    face_crop: bool | None = None,
    output_format: str | None = None,
    num_threads: int | None = None,
) -> list[Path]:
    """`affinegan-tf generate`: one animation per photo, from any model form.

    Every photo is read and checked, and the model loaded, before anything is written; each
    output appears only once complete.

    Args:
        model_path: Run folder, export folder, SavedModel folder, .tflite or .onnx file, or
            the name of a shipped model (`affinegan-tf models`).
        images: Photo path(s) and/or folder(s) of photos.
        out: `.gif` / `.mp4` file, or a folder (see `plan_outputs`).
        intensities: Explicit intensities; otherwise `num_frames` from 0 to `max_intensity`.
            Calibrated: 1 is the apex of the expression (calibration.py).
        num_frames: Frames of the sweep (default 16).
        max_intensity: End of the sweep.
        loop: "none" or "pingpong" (append the way back).
        fps: Frames per second of the GIF / MP4.
        face_crop: Crop to the detected face instead of the centre square; None: as the
            model's manifest says (shipped face models crop by default).
        output_format: "gif", "mp4" or "png" for outputs named after the photos.
        num_threads: CPU threads for TFLite / ONNX Runtime.

    Returns:
        The written paths, one per photo.
    """
    if fps <= 0:
        raise UserError(f"--fps must be > 0, got {fps}.")
    values = resolve_intensities(intensities, num_frames, max_intensity, loop)
    photos = expand_photos(images)
    targets = plan_outputs(photos, out, output_format)
    from affinegan_tf.models import resolve_model

    backend = load_backend(resolve_model(model_path), num_threads=num_threads)
    crop, margin = expected_crop(backend.manifest, face_crop)
    faces = [read_photo(photo, backend.image_size, crop, margin) for photo in photos]
    scale = legacy_intensity_scale(backend.manifest)
    written = []
    for face, target in zip(faces, targets, strict=True):
        frames = backend.generate(face, [value * scale for value in values])
        if target.suffix.lower() not in (".gif", ".mp4"):
            # A PNG folder, even when the photo's name has a dot in it.
            target = f"{target}{os.sep}"
        written.append(Path(write_animation(frames, target, fps=fps)))
    return written
