"""Which files are images, videos and frames, and the natural order of frame files.

The lowest layer of the data package: names only, no decoding.
"""

from __future__ import annotations

import re
from pathlib import Path

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".gif")


def natural_sort_key(name: str) -> tuple:
    """Sort key that orders digit runs by value: frame2 before frame10.

    Args:
        name: A file or folder name.

    Returns:
        A key for `sorted`; ties between equal-valued names (frame01, frame1) break by the name.
    """
    parts = re.split(r"(\d+)", name)
    return (
        tuple(int(part) if index % 2 else part.lower() for index, part in enumerate(parts)),
        name,
    )


def is_hidden(path: Path) -> bool:
    """Whether a file or folder is hidden (dot-files, AppleDouble `._x`, `Thumbs.db`-style)."""
    return path.name.startswith(".") or path.name.lower() in ("thumbs.db", "desktop.ini")


def is_image_file(path: Path) -> bool:
    """Whether `path` has one of the frame/photo extensions (case-insensitive)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


def is_video_file(path: Path) -> bool:
    """Whether `path` has one of the video extensions (case-insensitive)."""
    return path.suffix.lower() in VIDEO_EXTENSIONS


def list_frame_files(folder: str | Path) -> list[Path]:
    """The image files of a frame folder in natural order; hidden and other files are ignored.

    Args:
        folder: A folder of frame images.

    Returns:
        Paths sorted so that frame2 comes before frame10.
    """
    folder = Path(folder)
    files = [
        path
        for path in folder.iterdir()
        if path.is_file() and not is_hidden(path) and is_image_file(path)
    ]
    return sorted(files, key=lambda path: natural_sort_key(path.name))
