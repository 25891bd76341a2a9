"""One training video (a video file or a frame folder, with its masks) and the checks on it.

`probe_source` is the one definition of "usable for training": both `inspect-data` (through
`find_videos`) and `fit` (through the frame cache) take its verdict, remembered in the cache.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from affinegan_tf.data import video
from affinegan_tf.data.images import read_image
from affinegan_tf.data.media_files import list_frame_files
from affinegan_tf.data.square import square_resize
from affinegan_tf.errors import UserError

SourceKind = Literal["video_file", "frame_folder"]
MASK_THRESHOLD = 127
# Part of every probe record's key: a new version re-checks every source once.
PROBE_FORMAT_VERSION = 2


@dataclass
class VideoSource:
    """One training video: a video file or a folder of frames, with its optional mask folder.

    Attributes:
        name: Folder name or file stem, unique within the data set.
        path: The video file or frame folder.
        kind: "video_file" or "frame_folder".
        mask_dir: Folder of one mouth mask per frame, or None.
        frames: Number of frames in the source (from the probe; 0 before probing).
        width: Native frame width in pixels (0 before probing).
        height: Native frame height in pixels (0 before probing).
    """

    name: str
    path: Path
    kind: SourceKind
    mask_dir: Path | None = None
    frames: int = 0
    width: int = 0
    height: int = 0


@dataclass(frozen=True)
class VideoInfo:
    """What probing a source found: its frame count and native frame size."""

    frames: int
    width: int
    height: int


def source_files(source: VideoSource) -> tuple[list[Path], list[Path] | None]:
    """The frame files (or the video file) of a source and its mask files (None without masks)."""
    files = list_frame_files(source.path) if source.kind == "frame_folder" else [source.path]
    masks = None
    if source.mask_dir is not None and source.mask_dir.is_dir():
        masks = list_frame_files(source.mask_dir)
    return files, masks


def source_signature(source: VideoSource, version: int) -> str:
    """A hash of `version` and the names, sizes and mtimes of every file a source is read from."""
    frame_files, mask_files = source_files(source)
    digest = hashlib.sha1()
    digest.update(f"{version}|{source.kind}|{source.mask_dir}".encode())
    for path in frame_files + (mask_files or []):
        try:
            file_stat = path.stat()
        except OSError:
            continue  # vanished meanwhile: the decode that follows names it
        digest.update(f"|{path.name}|{file_stat.st_size}|{file_stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def matched_mask_files(source: VideoSource, frame_count: int) -> list[Path]:
    """The mask file of every frame of `source`, in frame order.

    Masks of a frame folder must have the same names as the frames (the extension may differ);
    masks of a video file are matched by position and must be as many as its frames.

    Raises:
        UserError: The mask folder is missing, or the masks' count or names do not match.
    """
    mask_dir = source.mask_dir
    if mask_dir is None:
        return []
    if not mask_dir.is_dir():
        raise UserError(
            f"Mask folder {mask_dir} for {source.path} is missing: the other videos have mouth "
            "masks, so every video needs one mask per frame there (same file names)."
        )
    mask_files = list_frame_files(mask_dir)
    if len(mask_files) != frame_count:
        raise UserError(
            f"Mask folder {mask_dir} has {len(mask_files)} masks but {source.path} has "
            f"{frame_count} frames: give one mask per frame, with the same file names."
        )
    if source.kind != "frame_folder":
        return mask_files
    masks_by_stem = {path.stem: path for path in mask_files}
    frame_files = list_frame_files(source.path)
    missing = [path.name for path in frame_files if path.stem not in masks_by_stem]
    if missing:
        shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise UserError(
            f"Mask folder {mask_dir} has no mask named like frame(s) {shown} of {source.path}: "
            "masks must have the same file names as the frames."
        )
    return [masks_by_stem[path.stem] for path in frame_files]


def probe_source(source: VideoSource) -> VideoInfo:
    """Checks that a source can be trained on: every frame and every mask decodes.

    Everything that reading the source for training could find wrong is found here: missing,
    unreadable, truncated or oversized files, fewer than 2 frames, a corrupt frame anywhere in a
    frame folder, masks that do not match or do not decode. (Only the face check of
    --face-crop is left to the reading, as it depends on that option.)

    Raises:
        UserError: The source is unusable; the message names the file.
    """
    count, width, height = video.probe_clip(source.path)
    for mask_file in matched_mask_files(source, count):
        read_image(mask_file)
    return VideoInfo(count, width, height)


def read_mask(
    path: Path,
    frame_size: tuple[int, int] | None,
    load_size: int,
    box: tuple[int, int, int] | None,
) -> np.ndarray:
    """One mask file -> uint8 [L, L, 1] of 0/255, cropped exactly like its frame."""
    mask = read_image(path).max(axis=2)
    if frame_size is not None and mask.shape != tuple(frame_size):
        mask = cv2.resize(mask, (frame_size[1], frame_size[0]), interpolation=cv2.INTER_NEAREST)
    mask = square_resize(mask[:, :, np.newaxis], load_size, box)
    return np.where(mask > MASK_THRESHOLD, 255, 0).astype(np.uint8)
