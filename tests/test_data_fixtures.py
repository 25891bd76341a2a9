"""Small real media files for the data tests, written with OpenCV and imageio into tmp_path.

The other test_data_* modules import these helpers; the tests here check the helpers themselves
(what OpenCV writes is what the data code has to read).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import imageio.v3 as iio
import numpy as np


def coloured_frames(count: int, height: int = 48, width: int = 64) -> np.ndarray:
    """RGB frames whose frame number is readable back: R = 40 * t + 15, G = 100, B = 200 - 30 * t.

    Values stay away from 0/255 and differ by >= 30 between frames, so JPEG/MPEG-4 noise cannot
    turn one frame into another.
    """
    frames = np.zeros((count, height, width, 3), np.uint8)
    for index in range(count):
        frames[index] = (min(40 * index + 15, 255), 100, max(200 - 30 * index, 0))
    return frames


def frame_number(frame: np.ndarray) -> int:
    """Inverse of `coloured_frames` (from the mean red value)."""
    return int(round((float(frame[..., 0].mean()) - 15) / 40))


def write_frame_folder(
    folder: Path,
    frames: np.ndarray,
    extension: str = ".png",
    names: list[str] | None = None,
) -> list[Path]:
    """Writes RGB frames as image files (frame0, frame1, ... unless `names` is given)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = names or [f"frame{index}" for index in range(len(frames))]
    paths = []
    for name, frame in zip(names, frames, strict=True):
        path = folder / f"{name}{extension}"
        assert cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        paths.append(path)
    return paths


def write_masks(folder: Path, count: int, height: int = 48, width: int = 64, names=None):
    """One binary mouth-like mask per frame (a white rectangle in the lower middle)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = names or [f"frame{index}" for index in range(count)]
    for name in names:
        mask = np.zeros((height, width), np.uint8)
        mask[height * 2 // 3 : height * 5 // 6, width // 3 : width * 2 // 3] = 255
        assert cv2.imwrite(str(folder / f"{name}.png"), mask)


def write_video(path: Path, frames: np.ndarray, fourcc: str = "mp4v", fps: float = 10.0) -> Path:
    """Writes RGB frames as a video file with OpenCV ('mp4v' for .mp4/.mov, 'MJPG' for .avi)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    assert writer.isOpened(), f"OpenCV cannot write {path}"
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def write_gif(path: Path, frames: np.ndarray) -> Path:
    """Writes RGB frames as an animated GIF with imageio."""
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, frames, duration=100, loop=0)
    return path


def test_coloured_frames_round_trip_through_png(tmp_path):
    frames = coloured_frames(5)
    paths = write_frame_folder(tmp_path / "frames", frames)
    for index, path in enumerate(paths):
        back = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        assert frame_number(back) == index


def test_written_video_has_the_frames(tmp_path):
    path = write_video(tmp_path / "clip.mp4", coloured_frames(6))
    capture = cv2.VideoCapture(str(path))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    capture.release()
