"""Writing frames as a looping GIF, an MP4, or a folder of numbered PNGs, never half-written."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import imageio.v2 as imageio
import imageio.v3 as iio
import numpy as np

from affinegan_tf.errors import UserError


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
