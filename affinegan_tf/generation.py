"""Generation: one face in, frames at many intensities out; GIF / MP4 / PNG writing.

Encoding happens once per face and all intensities are decoded as one batch (see
`export/signature.py`, the one definition of `generate`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from affinegan_tf.errors import UserError

DEFAULT_FRAMES = 16


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


def _atomic_target(path: Path):
    """A temporary sibling of `path`; renamed over it once fully written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent
    )
    os.close(handle)
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
