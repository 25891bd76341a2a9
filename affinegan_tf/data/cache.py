"""Decode once: frames at the load size, cached on disk as .npy and read back memory-mapped.

An entry is keyed by the source's absolute path, the size and mtime of the video file or of every
frame (and mask) file, the load size, the face crop and its margin, max_frames and the format
version, so changing any of those decodes again and nothing stale is ever read. Entries live in
`<data root>/.affinegan_cache/`, or in the user cache folder when the data folder is read-only.
Writes go to a temporary file first and are renamed into place, so an interrupted run leaves no
half-written entry.

A second kind of entry, the probe, records the verdict of `sources.probe_source` (frame count
and size, or why the source is unusable). `find_videos` (so `inspect-data`) and `load` (so `fit`)
both take the verdict from here, so they can never disagree, and listing a large data set is
fast the second time.

Frames flow one way: `video.iter_frames` decodes them one by one, this module shrinks each to
the load size as it arrives and stacks them into the entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from affinegan_tf.data import video
from affinegan_tf.data.faces import face_box
from affinegan_tf.data.sources import (
    PROBE_FORMAT_VERSION,
    VideoInfo,
    VideoSource,
    matched_mask_files,
    probe_source,
    read_mask,
    source_signature,
)
from affinegan_tf.data.square import square_resize
from affinegan_tf.errors import UserError

CACHE_FORMAT_VERSION = 1
CACHE_FOLDER_NAME = ".affinegan_cache"


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


def _path_key(path: Path) -> str:
    return hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:16]


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

        The verdict of `sources.probe_source` (every frame and mask decoded once), remembered,
        success or failure, until a file of the source changes.

        Raises:
            UserError: The source is unusable (unreadable, truncated, oversized, < 2 frames, a
                corrupt frame, bad masks); the message names the file.
        """
        signature = source_signature(source, PROBE_FORMAT_VERSION)
        path = self.folder / f"{_path_key(source.path)}-probe-{signature}.json"
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            record = None
        if record is None:
            try:
                info = probe_source(source)
                record = {"frames": info.frames, "width": info.width, "height": info.height}
            except UserError as error:
                record = {"error": str(error)}
            self._write_atomically(path, lambda handle: handle.write(json.dumps(record).encode()))
            self._remove_stale(f"{_path_key(source.path)}-probe-", path.name)
        if "error" in record:
            raise UserError(record["error"])
        return VideoInfo(int(record["frames"]), int(record["width"]), int(record["height"]))

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
        signature = source_signature(source, CACHE_FORMAT_VERSION)
        stem = f"{_path_key(source.path)}-{params_key}-{signature}"
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
        frames = []
        for index, frame in video.iter_frames(source.path, indices):
            if index == indices[0]:  # the neutral frame
                native_size = frame.shape[:2]
                if face_crop:
                    box = face_box(frame, face_margin, neutral_frame_name(source))
            frames.append(square_resize(frame, load_size, box))
        if len(frames) < len(indices):
            raise UserError(
                f"{source.path} has fewer frames than when it was checked: it changed while it "
                "was read. Run again."
            )
        if source.mask_dir is None:
            return np.stack(frames), None
        mask_files = matched_mask_files(source, info.frames)
        masks = np.stack(
            [read_mask(mask_files[index], native_size, load_size, box) for index in indices]
        )
        return np.stack(frames), masks

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


def neutral_frame_name(source: VideoSource) -> str:
    """How messages name a source's neutral frame (the face check of --face-crop uses it)."""
    return f"the neutral frame of {source.path}"
