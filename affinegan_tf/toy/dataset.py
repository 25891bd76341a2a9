"""Writing the toy data set to disk in the authors' layout (see the package docstring)."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from affinegan_tf.errors import UserError
from affinegan_tf.files import replace_folder
from affinegan_tf.toy.drawing import check_size
from affinegan_tf.toy.names import KINDS, VIDEO_FORMATS, check_expression
from affinegan_tf.toy.videos import ToyVideo, make_video, video_name

README_MARKER = "AffineGAN-TF synthetic toy data set"
CSV_COLUMNS = ("split", "video", "kind", "frame", "file", "intensity")
JPEG_QUALITY = 95
MP4_FPS = 10


def _write_image(path: Path, image: np.ndarray) -> None:
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise OSError(f"could not encode {path}")
    path.write_bytes(encoded.tobytes())


def _write_mp4(path: Path, frames: np.ndarray) -> None:
    """H.264 with imageio-ffmpeg's own ffmpeg; OpenCV's mp4v when that is unavailable."""
    try:
        import imageio_ffmpeg

        executable = imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        executable = None
    height, width = frames.shape[1:3]
    if executable is not None:
        command = [
            executable, "-y", "-loglevel", "error",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
            "-r", str(MP4_FPS), "-i", "-",
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "16", "-pix_fmt", "yuv420p",
            "-threads", "1", "-fflags", "+bitexact", "-flags:v", "+bitexact",
            "-map_metadata", "-1", "-movflags", "+faststart", str(path),
        ]  # fmt: skip
        result = subprocess.run(
            command, input=np.ascontiguousarray(frames).tobytes(), capture_output=True
        )
        if result.returncode == 0:
            return
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), MP4_FPS, (width, height))
    if not writer.isOpened():
        raise UserError(f"Cannot write {path}: neither ffmpeg nor OpenCV can encode mp4 here.")
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def _readme_text(expression: str, size: int, seed: int, video_format: str) -> str:
    if video_format == "mp4":
        files = (
            "train/img holds the training videos as H.264 mp4 files (no mouth masks), test/img "
            "videos of other people whose first frame is the neutral photo to generate from."
        )
    else:
        files = (
            "train/img holds the training videos as folders of JPEG frames, train/patch one mouth "
            "mask per frame under the frame's own file name (binary JPEGs, exact because the boxes "
            "follow JPEG's 8x8 blocks), test/img videos of other people whose first frame is the "
            "neutral photo to generate from."
        )
    return (
        f"{README_MARKER} ({expression}, {size}x{size}, {video_format}, seed {seed}), written "
        "by `affinegan-tf make-toy-data`. Procedurally drawn faces, one person per video, each "
        f"video starting from the neutral face and showing the {expression} expression at a "
        f"known intensity per frame (0 = neutral, 1 = apex). {files} Video names give the "
        "sequence kind: complete (neutral to apex), incomplete (stops short of the apex), "
        "periodic (the expression comes and goes) and shuffled (frames after the first out of "
        "order). intensities.csv has the true intensity of every frame (split, video, kind, "
        "frame index from 0, file relative to this folder, intensity). Running make-toy-data "
        "again on this folder replaces it.\n"
    )


def _is_toy_dataset(path: Path) -> bool:
    readme = path / "README.txt"
    try:
        return readme.is_file() and readme.read_text(errors="replace").startswith(README_MARKER)
    except OSError:
        return False


def _check_destination(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file: give --out a folder (new, empty or a previous toy set).")
    if out.is_dir() and any(out.iterdir()) and not _is_toy_dataset(out):
        raise UserError(
            f"{out} is not empty and is not a toy data set written by make-toy-data; refusing "
            "to overwrite it. Choose a new or empty folder."
        )


def write_toy_dataset(
    out: str | Path,
    num_videos: int = 32,
    size: int = 64,
    expression: str = "smile",
    video_format: str = "frames",
    seed: int = 0,
    frames_per_video: int = 16,
    test_videos: int | None = None,
) -> dict:
    """Writes the synthetic data set in the authors' layout (see the module docstring).

    The set is built in a temporary folder beside `out` and renamed into place, so `out` is
    either the complete new set or left as it was. An existing `out` may be empty or a previous
    toy set (which is replaced); anything else is refused.

    Args:
        out: Destination folder.
        num_videos: Training videos (people); kinds cycle complete, incomplete, periodic, shuffled.
        size: Frame side in pixels (16 to 1024).
        expression: One of `EXPRESSIONS`.
        video_format: `frames` (JPEG frame folders plus mouth masks) or `mp4` (one H.264 file per
            video, no masks).
        seed: Seed of everything random; the same arguments give byte-identical files.
        frames_per_video: Frames in every video, at least 4 (so every kind shows its shape).
        test_videos: Held-out videos of other people; default max(4, num_videos // 4).

    Returns:
        A summary: `out`, `videos` (training videos), `frames` (training frames), `size`,
        `expression`, `format`, `test_videos`.

    Raises:
        UserError: A bad argument, or `out` exists and is not empty nor a previous toy set.
    """
    out = Path(out)
    check_expression(expression)
    check_size(size)
    if video_format not in VIDEO_FORMATS:
        choices = ", ".join(VIDEO_FORMATS)
        raise UserError(f"Unknown format {video_format!r}: choose one of {choices}.")
    if video_format == "mp4" and size % 2:
        raise UserError(f"mp4 (H.264, 4:2:0) needs an even frame size, got {size}.")
    if num_videos < 1:
        raise UserError(f"The toy set needs at least 1 training video, got {num_videos}.")
    if frames_per_video < 4:
        raise UserError(f"Videos need at least 4 frames, got frames_per_video={frames_per_video}.")
    test_videos = max(4, num_videos // 4) if test_videos is None else test_videos
    if test_videos < 0:
        raise UserError(f"test_videos cannot be negative, got {test_videos}.")
    _check_destination(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    try:
        total = num_videos + test_videos
        jobs = [("train", index, index) for index in range(num_videos)]
        jobs += [("test", index, num_videos + index) for index in range(test_videos)]

        def draw_and_write(job: tuple[str, int, int]) -> tuple[str, ToyVideo, list[str]]:
            split, index, number = job
            name = video_name(KINDS[index % len(KINDS)], number, total)
            video = make_video(seed, split, index, expression, size, frames_per_video, name)
            return split, video, _write_video(building, split, video, video_format)

        # Videos are independent (each has its own seeded generator), so threads (OpenCV, NumPy
        # and ffmpeg release the GIL) change the speed, never the bytes.
        rows, train_frames = [], 0
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as executor:
            for split, video, files in executor.map(draw_and_write, jobs):
                if split == "train":
                    train_frames += len(video.frames)
                truth = zip(files, video.intensities, strict=True)
                for frame_index, (file, intensity) in enumerate(truth):
                    rows.append(
                        (split, video.name, video.kind, frame_index, file, f"{intensity:.6f}")
                    )
        with open(building / "intensities.csv", "w", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(CSV_COLUMNS)
            writer.writerows(rows)
        (building / "README.txt").write_text(_readme_text(expression, size, seed, video_format))
        _replace(building, out)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return {
        "out": str(out),
        "videos": num_videos,
        "frames": train_frames,
        "size": size,
        "expression": expression,
        "format": video_format,
        "test_videos": test_videos,
    }


def _write_video(root: Path, split: str, video: ToyVideo, video_format: str) -> list[str]:
    """Writes one video's files; returns their paths relative to `root`, one per frame."""
    image_dir = root / split / "img"
    if video_format == "mp4":
        image_dir.mkdir(parents=True, exist_ok=True)
        _write_mp4(image_dir / f"{video.name}.mp4", video.frames)
        return [f"{split}/img/{video.name}.mp4"] * len(video.frames)
    frame_dir = image_dir / video.name
    frame_dir.mkdir(parents=True)
    mask_dir = root / split / "patch" / video.name
    if split == "train":
        mask_dir.mkdir(parents=True)
    files = []
    for frame_index, (frame, mask) in enumerate(zip(video.frames, video.masks, strict=True)):
        name = f"frame_{frame_index + 1:04d}.jpg"
        _write_image(frame_dir / name, frame)
        if split == "train":
            _write_image(mask_dir / name, mask)
        files.append(f"{split}/img/{video.name}/{name}")
    return files


def _replace(building: Path, out: Path) -> None:
    """Moves the finished set into place: `out` is the old set or the new one, never half."""
    if out.exists():
        _check_destination(out)
    replace_folder(building, out)
