"""Decoding clips: video files and frame folders -> a stream of uint8 RGB frames.

Frames come out one at a time (`iter_frames`), in the clip's order, each converted to RGB and to
the size of the first frame, so a caller can shrink them as they arrive and never hold a long
high-resolution clip at full size. The frame size is checked against MAX_IMAGE_PIXELS from the
container (or every frame file's header) before frames are decoded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from affinegan_tf.data.image_header import check_pixels, header_size

# images sets OPENCV_FFMPEG_LOGLEVEL on import, before the first VideoCapture below.
from affinegan_tf.data.images import read_image, to_uint8_rgb
from affinegan_tf.data.media_files import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    is_video_file,
    list_frame_files,
)
from affinegan_tf.data.native_stderr import captured_native_stderr

# training.py (rewritten on another branch) still imports these two from here: at merge, import
# them from affinegan_tf.data.square there and delete this line.
from affinegan_tf.errors import UserError

# Containers whose header frame count is exact; for the others OpenCV estimates it from the
# duration, so only a large shortfall counts as truncation.
_EXACT_COUNT_CONTAINERS = (".mp4", ".mov", ".avi", ".gif")

FrameTransform = Callable[[np.ndarray], np.ndarray]


def select_frames(count: int, max_frames: int | None) -> list[int]:
    """Indices of the frames kept from a clip of `count` frames.

    Args:
        count: Frames in the clip.
        max_frames: Upper bound, or None for all.

    Returns:
        All indices when the clip is short enough, else `max_frames` evenly spaced ones that
        include the first (the neutral frame) and the last.
    """
    if max_frames is None or count <= max_frames:
        return list(range(count))
    if max_frames < 2:
        raise UserError(f"max_frames must be >= 2 (a neutral and a target), got {max_frames}.")
    return [int(index) for index in np.round(np.linspace(0, count - 1, max_frames))]


def too_short(path: Path, count: int) -> UserError:
    """The error for a clip of fewer than 2 frames."""
    return UserError(
        f"{path} has {count} frame{'s' if count != 1 else ''}; a training video needs at least 2 "
        "(the neutral frame first, then the expression). Remove it or add frames."
    )


def iter_frames(
    path: str | Path, frame_indices: Sequence[int] | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """Decodes a clip frame by frame.

    Args:
        path: A video file (.mp4 .avi .mov .mkv .webm .gif) or a folder of frame images (.jpg
            .jpeg .png .bmp .webp, natural order: frame2 before frame10).
        frame_indices: Sorted indices to yield; None yields every frame. A video file is read to
            its end when this is None (that is how truncation shows) and only up to the last
            wanted frame otherwise.

    Yields:
        (index, uint8 [H, W, 3] RGB frame); frames whose size differs from the first frame's are
        resized to it.

    Raises:
        UserError: Missing, unreadable, truncated or not a video; too few frames for an index;
            a frame over the pixel limit; a bad frame file. The message names the file.
    """
    wanted = None if frame_indices is None else set(frame_indices)
    yield from _decoded(Path(path), wanted, FrameCount(), to_end=frame_indices is None)


class FrameCount:
    """Filled in by a decoder that reads a clip to its end: how many frames it has."""

    def __init__(self) -> None:
        self.frames = 0


def _decoded(
    path: Path, wanted: set[int] | None, count: FrameCount, to_end: bool
) -> Iterator[tuple[int, np.ndarray]]:
    """The wanted frames (all when None) of a clip, at the first frame's size.

    With `to_end` every frame is grabbed (that detects truncation) and `count` is set at the
    end; otherwise decoding stops after the last wanted frame.
    """
    stop_after = None if to_end or not wanted else max(wanted)
    if path.is_dir():
        frames = _frame_folder_frames(path, wanted, stop_after, count)
    else:
        check_video_path(path)
        decode = _gif_frames if path.suffix.lower() == ".gif" else _video_frames
        frames = decode(path, wanted, stop_after, count)
    first_size = None
    for index, frame in frames:
        size = frame.shape[:2]
        if first_size is None:
            first_size = size
        elif size != first_size:
            frame = cv2.resize(frame, (first_size[1], first_size[0]), interpolation=cv2.INTER_AREA)
        yield index, frame


def probe_clip(path: str | Path) -> tuple[int, int, int]:
    """Decodes every frame of a clip once, keeping none: the checks reading it for training does.

    Every frame a later read could ask for has been decoded here, so a clip that passes can
    be read at any selection of frames.

    Returns:
        (frame count, width, height) of the clip; the count is at least 2.

    Raises:
        UserError: As `iter_frames`, or the clip has fewer than 2 frames.
    """
    path = Path(path)
    count = FrameCount()
    width = height = 0
    for index, frame in _decoded(path, None, count, to_end=True):
        if index == 0:
            height, width = frame.shape[:2]
    if count.frames < 2:
        raise too_short(path, count.frames)
    return count.frames, width, height


def read_frames(path: str | Path, max_frames: int | None = None) -> np.ndarray:
    """Reads every frame of a video file or a frame folder.

    Args:
        path: A video file or a folder of frame images (see `iter_frames`).
        max_frames: When the clip has more frames, keep this many evenly spaced ones, always
            including the first (the neutral frame).

    Returns:
        uint8 [T, H, W, 3] RGB, T >= 2.

    Raises:
        UserError: Unreadable, truncated or not a video; fewer than 2 frames; a bad frame file.
    """
    return read_frames_at(path, frame_indices=None, max_frames=max_frames)


def read_frames_at(
    path: str | Path,
    frame_indices: Sequence[int] | None = None,
    max_frames: int | None = None,
    transform: FrameTransform | None = None,
) -> np.ndarray:
    """Reads chosen frames, optionally transforming each as soon as it is decoded.

    Args:
        path: A video file or a frame folder.
        frame_indices: Sorted indices to keep; None means `select_frames(count, max_frames)`.
        max_frames: Used only when `frame_indices` is None. Only the frames the declared frame
            count says will be kept are converted; a wrong count costs a second pass.
        transform: Applied to each kept RGB frame (after resizing it to the first frame's size).

    Returns:
        The kept (transformed) frames stacked, uint8 [T, ...].

    Raises:
        UserError: As `read_frames`, or when an index is beyond the end of the clip.
    """
    path = Path(path)
    transform = transform or (lambda frame: frame)
    if frame_indices is not None:
        frames = [transform(frame) for _, frame in iter_frames(path, frame_indices)]
        if len(frames) < len(frame_indices):
            raise UserError(
                f"{path} has fewer frames than {max(frame_indices) + 1}; frame "
                f"{max(frame_indices)} does not exist. If the file changed meanwhile, run again."
            )
        return np.stack(frames)
    declared = _declared_frame_count(path) if max_frames is not None else 0
    guessed = set(select_frames(declared, max_frames)) if declared > 0 else None
    kept: dict[int, np.ndarray] = {}
    count = FrameCount()
    for index, frame in _decoded(path, guessed, count, to_end=True):
        kept[index] = transform(frame)
    if count.frames < 2:
        raise too_short(path, count.frames)
    exact = select_frames(count.frames, max_frames)
    if any(index not in kept for index in exact):  # the declared count was off
        return read_frames_at(path, exact, transform=transform)
    return np.stack([kept[index] for index in exact])


def check_video_path(path: Path) -> None:
    """Raises a UserError naming `path` unless it is an existing file with a video extension."""
    if not path.exists():
        raise UserError(f"{path} does not exist. Give a video file or a folder of frames.")
    if not is_video_file(path):
        raise UserError(
            f"{path} is not a video: expected one of {', '.join(VIDEO_EXTENSIONS)} or a folder "
            f"of {'/'.join(IMAGE_EXTENSIONS)} frames."
        )


def unreadable(path: Path, detail: str) -> UserError:
    """The error for a video file that cannot be decoded."""
    return UserError(
        f"Cannot decode video {path}: {detail}. Re-encode it (for example "
        f"`ffmpeg -i {path.name} -c:v libx264 fixed.mp4`) or remove it from the data folder."
    )


def _frame_folder_frames(
    folder: Path, wanted: set[int] | None, stop_after: int | None, count: FrameCount
) -> Iterator[tuple[int, np.ndarray]]:
    files = list_frame_files(folder)
    count.frames = len(files)
    indices = range(len(files)) if wanted is None else sorted(wanted)
    for index in indices:
        if index >= len(files):
            raise UserError(f"{folder} has {len(files)} frames; frame {index} does not exist.")
        yield index, read_image(files[index])


def _declared_frame_count(path: Path) -> int:
    """The frame count a frame folder has or a video's container declares (0: unknown)."""
    if path.is_dir():
        return len(list_frame_files(path))
    if not path.is_file() or not is_video_file(path):
        return 0
    with captured_native_stderr():
        capture = cv2.VideoCapture(str(path))
    try:
        return int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    finally:
        capture.release()


def _video_frames(
    path: Path, wanted: set[int] | None, stop_after: int | None, count: FrameCount
) -> Iterator[tuple[int, np.ndarray]]:
    """Decodes a video with OpenCV (FFmpeg); only the wanted frames are converted."""
    with captured_native_stderr():
        capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise unreadable(path, "the file is unreadable, truncated or not a video OpenCV reads")
        declared = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if width > 0 and height > 0:  # from the container, before any frame is decoded
            check_pixels(path, width, height, "video frame")
        index = 0
        while True:
            with captured_native_stderr():
                grabbed = capture.grab()
                frame = None
                if grabbed and (wanted is None or index in wanted):
                    ok, frame = capture.retrieve()
                    if not ok:
                        frame = None
            if not grabbed:
                break
            if index == 0 and frame is not None:  # the container's size may be missing or wrong
                check_pixels(path, frame.shape[1], frame.shape[0], "video frame")
            if wanted is None or index in wanted:
                if frame is None:
                    raise unreadable(path, f"frame {index} cannot be decoded")
                yield index, to_uint8_rgb(frame, bgr=True)
            index += 1
            if stop_after is not None and index > stop_after:
                return
    finally:
        capture.release()
    if index == 0:
        raise unreadable(path, "no frame could be decoded")
    _check_not_truncated(path, declared, index)
    count.frames = index


def _check_not_truncated(path: Path, declared: int, count: int) -> None:
    if declared <= 0:
        return
    exact = path.suffix.lower() in _EXACT_COUNT_CONTAINERS
    allowed = max(1, declared // 50) if exact else max(2, declared // 10)
    if count < declared - allowed:
        raise unreadable(
            path, f"the header promises {declared} frames but only {count} decode (truncated?)"
        )


def _gif_frames(
    path: Path, wanted: set[int] | None, stop_after: int | None, count: FrameCount
) -> Iterator[tuple[int, np.ndarray]]:
    """Decodes an animated GIF with Pillow (via imageio), which applies frame disposal properly;
    falls back to OpenCV's own GIF decoder when Pillow cannot read the first frame."""
    import imageio.v3 as iio

    size = header_size(path)
    if size is not None:
        check_pixels(path, *size, "GIF canvas")
    index = 0
    try:
        for frame in iio.imiter(path, plugin="pillow", mode="RGB"):
            if wanted is None or index in wanted:
                yield index, to_uint8_rgb(frame)
            index += 1
            if stop_after is not None and index > stop_after:
                return
    except UserError:
        raise
    except Exception as error:  # noqa: BLE001 - Pillow raises many types for broken files
        if index == 0:
            yield from _video_frames(path, wanted, stop_after, count)
            return
        raise unreadable(path, f"frame {index} is broken ({error})") from None
    if index == 0:
        raise unreadable(path, "no frame could be decoded")
    count.frames = index
