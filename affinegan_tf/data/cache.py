"""Decode once: frames at the load size, cached on disk as .npy and read back memory-mapped.

An entry is keyed by the source's absolute path, the size and mtime of the video file or of every
frame (and mask) file, the load size, the face crop and its margin, max_frames and the format
version, so changing any of those decodes again and nothing stale is ever read. Entries live in
`<data root>/.affinegan_cache/`, or in the user cache folder when the data folder is read-only.
Writes go to a temporary file first and are renamed into place, so an interrupted run leaves no
half-written entry.

A second kind of entry, the probe, records what `find_videos` needs to know about a source
(frame count and size, or why it is unusable) so that listing a large data set is fast the
second time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from affinegan_tf.data import video
from affinegan_tf.errors import UserError

if TYPE_CHECKING:
    from affinegan_tf.data.layout import VideoSource

CACHE_FORMAT_VERSION = 1
CACHE_FOLDER_NAME = ".affinegan_cache"
MASK_THRESHOLD = 127


def user_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/affinegan_tf`, else `~/.cache/affinegan_tf`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "affinegan_tf"


def resolve_cache_dir(data_root: str | Path, cache_dir: str | Path | None = None) -> Path:
    """The folder cache entries go to, created if needed.

    Args:
        data_root: The data folder the user gave.
        cache_dir: An explicit folder (DataConfig.cache_dir); None picks
            `<data_root>/.affinegan_cache`, falling back to the user cache folder when the data
            folder is not writable.

    Returns:
        An existing, writable folder.

    Raises:
        UserError: An explicit `cache_dir` cannot be created or written.
    """
    if cache_dir is not None:
        folder = Path(cache_dir).expanduser()
        if not _writable(folder):
            raise UserError(f"Cannot write the frame cache to {folder}. Choose another cache_dir.")
        return folder.resolve()
    root = Path(data_root).expanduser().resolve()
    folder = root / CACHE_FOLDER_NAME
    if _meant_to_be_writable(root) and _writable(folder):
        return folder
    fallback = user_cache_dir()
    if _writable(fallback):
        return fallback
    raise UserError(
        f"Cannot write the frame cache to {folder} nor to {fallback}. Set cache_dir in the "
        "pipeline file to a writable folder."
    )


def _meant_to_be_writable(folder: Path) -> bool:
    """False for a folder with no write permission bit, even for root (who could write anyway).

    Shared, read-only data sets must not get a cache folder added to them.
    """
    try:
        mode = folder.stat().st_mode
    except OSError:
        return False
    return bool(mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)) and os.access(folder, os.W_OK)


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class VideoInfo:
    """What probing a source found: its frame count and native frame size."""

    frames: int
    width: int
    height: int


def source_files(source: VideoSource) -> tuple[list[Path], list[Path] | None]:
    """The frame files (or the video file) of a source and its mask files (None without masks)."""
    if source.kind == "frame_folder":
        files = video.list_frame_files(source.path)
    else:
        files = [source.path]
    masks = None
    if source.mask_dir is not None and source.mask_dir.is_dir():
        masks = video.list_frame_files(source.mask_dir)
    return files, masks


def source_signature(source: VideoSource) -> str:
    """A hash of the names, sizes and mtimes of every file a source is read from."""
    frame_files, mask_files = source_files(source)
    digest = hashlib.sha1()
    digest.update(f"{CACHE_FORMAT_VERSION}|{source.kind}|{source.mask_dir}".encode())
    for path in frame_files + (mask_files or []):
        try:
            file_stat = path.stat()
        except OSError:
            continue  # vanished meanwhile: the decode that follows names it
        digest.update(f"|{path.name}|{file_stat.st_size}|{file_stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _path_key(path: Path) -> str:
    return hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:16]


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
    mask_files = video.list_frame_files(mask_dir)
    if len(mask_files) != frame_count:
        raise UserError(
            f"Mask folder {mask_dir} has {len(mask_files)} masks but {source.path} has "
            f"{frame_count} frames: give one mask per frame, with the same file names."
        )
    if source.kind != "frame_folder":
        return mask_files
    masks_by_stem = {path.stem: path for path in mask_files}
    frame_files = video.list_frame_files(source.path)
    missing = [path.name for path in frame_files if path.stem not in masks_by_stem]
    if missing:
        shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise UserError(
            f"Mask folder {mask_dir} has no mask named like frame(s) {shown} of {source.path}: "
            "masks must have the same file names as the frames."
        )
    return [masks_by_stem[path.stem] for path in frame_files]


class FrameCache:
    """Decoded frames and probe results of video sources, in one cache folder.

    Args:
        folder: From `resolve_cache_dir`.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.decoded_videos = 0  # how many `load` calls had to decode (a cache miss)

    # ------------------------------------------------------------------------- probe

    def probe(self, source: VideoSource) -> VideoInfo:
        """Frame count and size of a source, checking that it can be trained on.

        A video file is decoded once (that is how truncation shows); a frame folder's frames
        are counted and its first frame read. Masks are checked against the frames. Both the
        result and a failure are remembered until a file of the source changes.

        Raises:
            UserError: The source is unusable (unreadable, truncated, < 2 frames, bad masks);
                the message names the file.
        """
        signature = source_signature(source)
        path = self.folder / f"{_path_key(source.path)}-probe-{signature}.json"
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            record = None
        if record is None:
            try:
                info = self._probe_uncached(source)
                record = {"frames": info.frames, "width": info.width, "height": info.height}
            except UserError as error:
                record = {"error": str(error)}
            self._write_atomically(path, lambda handle: handle.write(json.dumps(record).encode()))
            self._remove_stale(f"{_path_key(source.path)}-probe-", path.name)
        if "error" in record:
            raise UserError(record["error"])
        return VideoInfo(int(record["frames"]), int(record["width"]), int(record["height"]))

    def _probe_uncached(self, source: VideoSource) -> VideoInfo:
        if source.kind == "frame_folder":
            files = video.list_frame_files(source.path)
            if len(files) < 2:
                raise UserError(
                    f"{source.path} has {len(files)} frame image{'s' if len(files) != 1 else ''}"
                    f" ({'/'.join(video.IMAGE_EXTENSIONS)}); a training video needs at least 2."
                )
            first = video.read_image(files[0])
            count = len(files)
        else:
            count, first = video.probe_video_file(source.path)
            if count < 2:
                raise UserError(
                    f"{source.path} has {count} frame{'s' if count != 1 else ''}; a training "
                    "video needs at least 2 (the neutral frame first). Remove it."
                )
        matched_mask_files(source, count)
        return VideoInfo(count, int(first.shape[1]), int(first.shape[0]))

    # ------------------------------------------------------------------------- frames

    def entry_paths(
        self,
        source: VideoSource,
        load_size: int,
        face_crop: bool,
        face_margin: float,
        max_frames: int | None,
    ) -> tuple[Path, Path]:
        """Paths of the frames and masks .npy files of one cache entry."""
        margin = float(face_margin) if face_crop else 0.0
        params = f"{CACHE_FORMAT_VERSION}|{load_size}|{bool(face_crop)}|{margin:.6f}|{max_frames}"
        params_key = hashlib.sha1(params.encode()).hexdigest()[:12]
        stem = f"{_path_key(source.path)}-{params_key}-{source_signature(source)}"
        return self.folder / f"{stem}.frames.npy", self.folder / f"{stem}.masks.npy"

    def is_cached(
        self,
        source: VideoSource,
        load_size: int,
        face_crop: bool = False,
        face_margin: float = 0.35,
        max_frames: int | None = None,
    ) -> bool:
        """Whether `load` with these arguments would read from the cache without decoding."""
        frames_path, masks_path = self.entry_paths(
            source, load_size, face_crop, face_margin, max_frames
        )
        return frames_path.is_file() and (source.mask_dir is None or masks_path.is_file())

    def load(
        self,
        source: VideoSource,
        load_size: int,
        face_crop: bool = False,
        face_margin: float = 0.35,
        max_frames: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The frames (and masks) of a source at the load size, decoding only on a cache miss.

        Args:
            source: From `find_videos`.
            load_size: Side of the square cached frames.
            face_crop: Crop every frame to the face found in the neutral frame.
            face_margin: Margin of the face crop (see `faces.face_box`).
            max_frames: Evenly subsample longer clips to this many frames (first kept).

        Returns:
            frames: read-only memory-mapped uint8 [T, L, L, 3].
            masks: read-only memory-mapped uint8 [T, L, L, 1] with values 0/255, or None when
                the source has no masks.

        Raises:
            UserError: The source cannot be decoded, or `face_crop` finds no face.
        """
        frames_path, masks_path = self.entry_paths(
            source, load_size, face_crop, face_margin, max_frames
        )
        has_masks = source.mask_dir is not None
        if not (frames_path.is_file() and (not has_masks or masks_path.is_file())):
            frames, masks = self._decode(source, load_size, face_crop, face_margin, max_frames)
            # Masks first: an entry counts as present once its frames file exists.
            if masks is not None:
                self._write_atomically(masks_path, lambda handle: np.save(handle, masks))
            self._write_atomically(frames_path, lambda handle: np.save(handle, frames))
            stem_prefix = frames_path.name.rsplit("-", 1)[0] + "-"
            self._remove_stale(stem_prefix, frames_path.name, masks_path.name)
            self.decoded_videos += 1
        frames = np.load(frames_path, mmap_mode="r")
        masks = np.load(masks_path, mmap_mode="r") if has_masks else None
        return frames, masks

    def _decode(
        self,
        source: VideoSource,
        load_size: int,
        face_crop: bool,
        face_margin: float,
        max_frames: int | None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        info = self.probe(source)
        indices = video.select_frames(info.frames, max_frames)
        box: tuple[int, int, int] | None = None
        native_size: tuple[int, int] | None = None

        def to_load_size(frame: np.ndarray) -> np.ndarray:
            nonlocal box, native_size
            if native_size is None:  # the first kept frame is the neutral frame
                native_size = frame.shape[:2]
                if face_crop:
                    from affinegan_tf.data.faces import face_box

                    box = face_box(frame, face_margin, f"the neutral frame of {source.path}")
            return video.square_resize(frame, load_size, box)

        frames = video.read_frames_at(source.path, indices, transform=to_load_size)
        if source.mask_dir is None:
            return frames, None
        mask_files = matched_mask_files(source, info.frames)
        masks = np.stack(
            [_read_mask(mask_files[index], native_size, load_size, box) for index in indices]
        )
        return frames, masks

    # ------------------------------------------------------------------------- files

    def _write_atomically(self, path: Path, write: Callable) -> None:
        handle = tempfile.NamedTemporaryFile(
            dir=self.folder, prefix=f".{path.name}.", suffix=".tmp", delete=False
        )
        try:
            with handle:
                write(handle)
            os.replace(handle.name, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(handle.name)
            raise

    def _remove_stale(self, prefix: str, *keep: str) -> None:
        """Deletes older entries of the same source and settings (their files changed)."""
        for path in self.folder.glob(f"{prefix}*"):
            if path.name not in keep:
                with contextlib.suppress(OSError):
                    path.unlink()


def _read_mask(
    path: Path,
    frame_size: tuple[int, int] | None,
    load_size: int,
    box: tuple[int, int, int] | None,
) -> np.ndarray:
    """One mask file -> uint8 [L, L, 1] of 0/255, cropped exactly like its frame."""
    mask = video.read_image(path).max(axis=2)
    if frame_size is not None and mask.shape != tuple(frame_size):
        mask = cv2.resize(mask, (frame_size[1], frame_size[0]), interpolation=cv2.INTER_NEAREST)
    mask = video.square_resize(mask[:, :, np.newaxis], load_size, box)
    return np.where(mask > MASK_THRESHOLD, 255, 0).astype(np.uint8)
