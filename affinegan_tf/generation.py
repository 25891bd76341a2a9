"""Generation: one face in, frames at many intensities out; GIF / MP4 / PNG writing.

Encoding happens once per face and all intensities are decoded as one batch (see
`export/signature.py`, the one definition of `generate`). `generate_files` is `affinegan-tf
generate`: photos in, one animation per photo out, from a run folder or any exported model
(`export/backends.py`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from affinegan_tf.errors import UserError

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


def generate_frames(generator, image: np.ndarray, intensities) -> np.ndarray:
    """Frames for one face with a Keras generator.

    Args:
        generator: An AffineGenerator.
        image: uint8 [H, W, 3] RGB (resized to the model size inside the graph).
        intensities: sequence of N floats.

    Returns:
        uint8 [N, S, S, 3].
    """
    from affinegan_tf.export.signature import make_generate

    generate = getattr(generator, "_generate_function", None)
    if generate is None:
        generate = make_generate(generator)
        generator._generate_function = generate
    frames = generate(np.asarray(image, np.uint8), np.asarray(intensities, np.float32))
    return frames["frames"].numpy()


def _usual_mode(directory: bool = False) -> int:
    """The permissions a plainly created file (or folder) would get under the current umask.

    mkstemp / mkdtemp create private (0600 / 0700) entries; outputs renamed from them should not
    stay private.
    """
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def _atomic_target(path: Path):
    """A temporary sibling of `path`; renamed over it once fully written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent
    )
    os.close(handle)
    os.chmod(temporary, _usual_mode())
    return Path(temporary)


def write_animation(frames: np.ndarray, path: str | Path, fps: float = 10.0) -> Path:
    """Writes frames as a looping GIF, an MP4, or numbered PNGs (when `path` is a folder).

    The output appears only once complete (temporary name, then rename).

    Args:
        frames: uint8 [N, H, W, 3] RGB.
        path: `*.gif`, `*.mp4`, or a folder (existing, or given with a trailing slash).
        fps: Frames per second (GIF frame duration is 1000 / fps ms).

    Returns:
        The written path.
    """
    import imageio.v3 as iio

    frames = np.asarray(frames, np.uint8)
    if fps <= 0:
        raise UserError(f"--fps must be > 0, got {fps}.")
    text = str(path)
    path = Path(path)
    suffix = path.suffix.lower()
    if text.endswith(("/", os.sep)) or path.is_dir() or not suffix:
        return _write_png_folder(frames, path)
    if suffix not in (".gif", ".mp4"):
        raise UserError(f"Cannot write {path}: use a .gif or .mp4 name, or a folder for PNGs.")
    temporary = _atomic_target(path)
    try:
        if suffix == ".gif":
            iio.imwrite(temporary, frames, extension=".gif", duration=1000.0 / fps, loop=0)
        else:
            _write_mp4(frames, temporary, fps)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def _write_mp4(frames: np.ndarray, path: Path, fps: float) -> None:
    import imageio.v2 as imageio

    # H.264 needs even sides; yuv420p makes the file play on phones and in browsers.
    height, width = frames.shape[1:3]
    padded = np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    with imageio.get_writer(
        path,
        format="FFMPEG",
        fps=fps,
        codec="libx264",
        pixelformat="yuv420p",
        macro_block_size=1,
        ffmpeg_log_level="error",
    ) as writer:
        for frame in padded:
            writer.append_data(frame)


def _write_png_folder(frames: np.ndarray, folder: Path) -> Path:
    import imageio.v3 as iio

    folder.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    os.chmod(temporary, _usual_mode(directory=True))
    try:
        for index, frame in enumerate(frames):
            iio.imwrite(temporary / f"frame_{index:04d}.png", frame)
        if folder.exists():
            for item in temporary.iterdir():
                os.replace(item, folder / item.name)
        else:
            os.replace(temporary, folder)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return folder


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
    from affinegan_tf.data.video import is_hidden, is_image_file, natural_sort_key

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
    from affinegan_tf.data.video import prepare_photo, read_image

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
    from affinegan_tf.export.backends import load_backend

    if fps <= 0:
        raise UserError(f"--fps must be > 0, got {fps}.")
    values = resolve_intensities(intensities, num_frames, max_intensity, loop)
    photos = expand_photos(images)
    targets = plan_outputs(photos, out, output_format)
    from affinegan_tf.models import resolve_model

    backend = load_backend(resolve_model(model_path), num_threads=num_threads)
    crop, margin = expected_crop(backend.manifest, face_crop)
    faces = [read_photo(photo, backend.image_size, crop, margin) for photo in photos]
    # Models trained on photo pairs record where their training apexes landed: 1 means that.
    scale = float((backend.manifest or {}).get("intensity_scale", 1.0))
    written = []
    for face, target in zip(faces, targets, strict=True):
        frames = backend.generate(face, [value * scale for value in values])
        if target.suffix.lower() not in (".gif", ".mp4"):
            # A PNG folder, even when the photo's name has a dot in it.
            target = f"{target}{os.sep}"
        written.append(Path(write_animation(frames, target, fps=fps)))
    return written
