"""Decoding: image files, video files and frame folders -> uint8 RGB arrays.

Everything that reads pixels from disk goes through this module, so colour order (OpenCV's BGR
becomes RGB here and nowhere else), grey/alpha/16-bit handling, frame order and the one way
non-square input becomes square are each decided once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

# Silence FFmpeg's own console messages ("moov atom not found" ...): every failure it reports is
# turned into a UserError naming the file. Must be set before the first VideoCapture.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from affinegan_tf.errors import UserError  # noqa: E402

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".gif")
# Containers whose header frame count is exact; for the others OpenCV estimates it from the
# duration, so only a large shortfall counts as truncation.
_EXACT_COUNT_CONTAINERS = (".mp4", ".mov", ".avi", ".gif")

FrameTransform = Callable[[np.ndarray], np.ndarray]


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


# ----------------------------------------------------------------------------- single images


def read_image(path: str | Path) -> np.ndarray:
    """Reads one image file as uint8 RGB.

    Grey images become 3 channels, alpha is dropped, 16-bit images are scaled to 8 bits, CMYK
    JPEGs are converted and the EXIF orientation is applied.

    Args:
        path: An image file (.jpg .jpeg .png .bmp .webp, or anything else OpenCV decodes).

    Returns:
        A uint8 array [H, W, 3] in RGB order.

    Raises:
        UserError: The file is missing or is not a readable image.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not an image file" if path.is_dir() else "does not exist"
        raise UserError(f"{path} {what}. Give the path of a photo (.jpg, .png, ...).")
    try:
        encoded = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise UserError(f"Cannot read {path}: {error}. Check that the file is readable.") from None
    # IMREAD_COLOR makes grey 3-channel, drops alpha, converts CMYK and applies EXIF orientation;
    # IMREAD_ANYDEPTH keeps 16-bit values so they can be scaled rather than truncated.
    image = cv2.imdecode(encoded, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH) if encoded.size else None
    if image is not None:
        return to_uint8_rgb(image, bgr=True)
    image = _read_image_with_imageio(path)  # formats this OpenCV build lacks; gives RGB
    if image is None:
        raise UserError(
            f"Cannot read image {path}: it is not an image file or it is corrupt. "
            "Replace it with a valid .jpg/.png or remove it."
        )
    return to_uint8_rgb(image, bgr=False)


def _read_image_with_imageio(path: Path) -> np.ndarray | None:
    """The first frame of anything imageio reads, in RGB(A)/grey order; None if it cannot."""
    try:
        import imageio.v3 as iio

        return np.asarray(iio.imread(path, index=0))
    except Exception:  # noqa: BLE001 - any decoder failure means "not an image"
        return None


def to_uint8_rgb(image: np.ndarray, bgr: bool = False) -> np.ndarray:
    """Normalises a decoded image to uint8 [H, W, 3] RGB.

    Args:
        image: [H, W], [H, W, 1], [H, W, 3] or [H, W, 4]; uint8, uint16 or float in [0, 1].
        bgr: Whether a 3/4-channel input is in OpenCV's BGR(A) order.

    Returns:
        A C-contiguous uint8 [H, W, 3] RGB array.

    Raises:
        UserError: The array cannot be an image (wrong rank or channel count).
    """
    image = np.asarray(image)
    if image.dtype == np.uint16:
        image = np.round(image.astype(np.float32) / 257.0).astype(np.uint8)
    elif image.dtype.kind == "f":
        image = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    elif image.dtype == bool:
        image = image.astype(np.uint8) * 255
    elif image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        image = image[:, :, np.newaxis]
    if image.ndim != 3 or image.shape[2] not in (1, 2, 3, 4):
        raise UserError(f"Expected an image [H, W, 1|3|4], got an array of shape {image.shape}.")
    channels = image.shape[2]
    if channels in (1, 2):  # grey, grey + alpha
        image = np.repeat(image[:, :, :1], 3, axis=2)
    elif channels == 4:
        image = image[:, :, :3]
    if bgr and channels >= 3:
        image = image[:, :, ::-1]
    return np.ascontiguousarray(image)


# ----------------------------------------------------------------------------- frame sequences


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


def probe_video_file(path: str | Path) -> tuple[int, np.ndarray]:
    """Exact frame count and first frame of a video file; decodes the whole file once.

    Returns:
        (count, first RGB frame). The count may be 0 or 1: the caller decides what is too short.

    Raises:
        UserError: The file cannot be opened or decoded, or it is truncated.
    """
    path = Path(path)
    _check_video_path(path)
    decode = _decode_gif if path.suffix.lower() == ".gif" else _decode_video
    frames, count = decode(path, {0}, None)
    return count, frames[0]


def read_frames(path: str | Path, max_frames: int | None = None) -> np.ndarray:
    """Reads every frame of a video file or a frame folder.

    Args:
        path: A video file (.mp4 .avi .mov .mkv .webm .gif) or a folder of frame images (.jpg
            .jpeg .png .bmp .webp, natural order: frame2 before frame10).
        max_frames: When the clip has more frames, keep this many evenly spaced ones, always
            including the first (the neutral frame).

    Returns:
        uint8 [T, H, W, 3] RGB, T >= 2. Frames whose size differs from the first frame's are
        resized to it.

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

    The cache uses `transform` to resize frames one by one, so a long high-resolution clip never
    has to be held in memory at full size.

    Args:
        path: A video file or a frame folder.
        frame_indices: Sorted indices to keep; None means `select_frames(count, max_frames)`.
        max_frames: Used only when `frame_indices` is None.
        transform: Applied to each kept RGB frame (after resizing it to the first frame's size).

    Returns:
        The kept (transformed) frames stacked, uint8 [T, ...].

    Raises:
        UserError: As `read_frames`, or when an index is beyond the end of the clip.
    """
    path = Path(path)
    if path.is_dir():
        frames = _read_frame_folder(path, frame_indices, max_frames, transform)
    else:
        _check_video_path(path)
        frames = _read_video_file(path, frame_indices, max_frames, transform)
    return np.stack(frames)


def _check_video_path(path: Path) -> None:
    if not path.exists():
        raise UserError(f"{path} does not exist. Give a video file or a folder of frames.")
    if not is_video_file(path):
        raise UserError(
            f"{path} is not a video: expected one of {', '.join(VIDEO_EXTENSIONS)} or a folder "
            f"of {'/'.join(IMAGE_EXTENSIONS)} frames."
        )


def _too_short(path: Path, count: int) -> UserError:
    return UserError(
        f"{path} has {count} frame{'s' if count != 1 else ''}; a training video needs at least 2 "
        "(the neutral frame first, then the expression). Remove it or add frames."
    )


def _read_frame_folder(
    folder: Path,
    frame_indices: Sequence[int] | None,
    max_frames: int | None,
    transform: FrameTransform | None,
) -> list[np.ndarray]:
    files = list_frame_files(folder)
    if len(files) < 2:
        raise _too_short(folder, len(files))
    if frame_indices is None:
        frame_indices = select_frames(len(files), max_frames)
    frames = []
    first_size = None
    for index in frame_indices:
        if index >= len(files):
            raise UserError(f"{folder} has {len(files)} frames; frame {index} does not exist.")
        frame = read_image(files[index])
        first_size, frame = _match_first_size(first_size, frame)
        frames.append(transform(frame) if transform else frame)
    return frames


def _match_first_size(
    first_size: tuple[int, int] | None, frame: np.ndarray
) -> tuple[tuple[int, int], np.ndarray]:
    """Resizes a frame to the first frame's (height, width) when they differ."""
    size = frame.shape[:2]
    if first_size is None:
        return size, frame
    if size != first_size:
        frame = cv2.resize(frame, (first_size[1], first_size[0]), interpolation=cv2.INTER_AREA)
    return first_size, frame


def _read_video_file(
    path: Path,
    frame_indices: Sequence[int] | None,
    max_frames: int | None,
    transform: FrameTransform | None,
) -> list[np.ndarray]:
    decode = _decode_gif if path.suffix.lower() == ".gif" else _decode_video
    if frame_indices is not None:
        # The caller knows the clip (from a probe): stop decoding after the last wanted frame.
        frames, count = decode(path, set(frame_indices), transform, stop_after=max(frame_indices))
        if len(frames) < len(frame_indices):
            raise UserError(
                f"{path} has {count} frames; frame {max(frame_indices)} does not exist. "
                "The file changed while it was read: run again."
            )
        return frames
    declared = _declared_frame_count(path)
    guessed = select_frames(declared, max_frames) if declared > 0 else None
    frames, count = decode(path, None if guessed is None else set(guessed), transform)
    if count < 2:
        raise _too_short(path, count)
    if guessed is None:
        if max_frames is not None and count > max_frames:
            frames = [frames[index] for index in select_frames(count, max_frames)]
        return frames
    if count != declared:
        # The header's count was off: select again from the exact count (a second pass).
        exact = select_frames(count, max_frames)
        if exact != guessed:
            frames, count = decode(path, set(exact), transform)
    return frames


def _declared_frame_count(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    try:
        return int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    finally:
        capture.release()


def _unreadable(path: Path, detail: str) -> UserError:
    return UserError(
        f"Cannot decode video {path}: {detail}. Re-encode it (for example "
        f"`ffmpeg -i {path.name} -c:v libx264 fixed.mp4`) or remove it from the data folder."
    )


def _decode_video(
    path: Path,
    wanted: set[int] | None,
    transform: FrameTransform | None,
    stop_after: int | None = None,
) -> tuple[list[np.ndarray], int]:
    """Decodes a video with OpenCV; returns the kept frames and the number of frames in the file.

    Every frame is grabbed (that is what detects truncation) unless `stop_after` ends the pass
    early; only the wanted frames are converted.
    """
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise _unreadable(path, "the file is unreadable, truncated or not a video OpenCV reads")
        declared = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        frames: list[np.ndarray] = []
        first_size = None
        count = 0
        while capture.grab():
            if wanted is None or count in wanted:
                ok, frame = capture.retrieve()
                if not ok or frame is None:
                    raise _unreadable(path, f"frame {count} cannot be decoded")
                first_size, frame = _match_first_size(first_size, to_uint8_rgb(frame, bgr=True))
                frames.append(transform(frame) if transform else frame)
            count += 1
            if stop_after is not None and count > stop_after:
                return frames, count
    finally:
        capture.release()
    if count == 0:
        raise _unreadable(path, "no frame could be decoded")
    _check_not_truncated(path, declared, count)
    return frames, count


def _check_not_truncated(path: Path, declared: int, count: int) -> None:
    if declared <= 0:
        return
    exact = path.suffix.lower() in _EXACT_COUNT_CONTAINERS
    allowed = max(1, declared // 50) if exact else max(2, declared // 10)
    if count < declared - allowed:
        raise _unreadable(
            path, f"the header promises {declared} frames but only {count} decode (truncated?)"
        )


def _decode_gif(
    path: Path,
    wanted: set[int] | None,
    transform: FrameTransform | None,
    stop_after: int | None = None,
) -> tuple[list[np.ndarray], int]:
    """Decodes an animated GIF with Pillow (via imageio), which applies frame disposal properly."""
    import imageio.v3 as iio

    frames: list[np.ndarray] = []
    first_size = None
    count = 0
    try:
        for frame in iio.imiter(path, plugin="pillow", mode="RGB"):
            if wanted is None or count in wanted:
                first_size, frame = _match_first_size(first_size, to_uint8_rgb(frame))
                frames.append(transform(frame) if transform else frame)
            count += 1
            if stop_after is not None and count > stop_after:
                break
    except UserError:
        raise
    except Exception as error:  # noqa: BLE001 - Pillow raises many types for broken files
        if count == 0:  # OpenCV has its own GIF decoder
            return _decode_video(path, wanted, transform, stop_after)
        raise _unreadable(path, f"frame {count} is broken ({error})") from None
    if count == 0:
        raise _unreadable(path, "no frame could be decoded")
    return frames, count


# ----------------------------------------------------------------------------- squaring


def square_resize(
    image_or_frames: np.ndarray,
    size: int,
    box: tuple[int, int, int] | None = None,
    interpolation: int | None = None,
) -> np.ndarray:
    """Crops to a square and resizes to size x size: the one place input is made square.

    Non-square input is centre-cropped to its largest square, never squashed.

    Args:
        image_or_frames: uint8 [H, W, C] or [T, H, W, C].
        size: Output side in pixels.
        box: (x, y, side) square to crop instead of the centre square; it may extend past the
            image, where the border pixels are repeated.
        interpolation: OpenCV interpolation flag; default INTER_AREA when shrinking and
            INTER_CUBIC when enlarging.

    Returns:
        uint8 [size, size, C] or [T, size, size, C].
    """
    array = np.asarray(image_or_frames)
    if array.ndim == 4:
        if array.shape[0] == 0:
            return np.zeros((0, size, size, array.shape[3]), np.uint8)
        return np.stack([square_resize(frame, size, box, interpolation) for frame in array])
    if array.ndim != 3:
        raise ValueError(f"square_resize expects [H, W, C] or [T, H, W, C], got {array.shape}.")
    if array.dtype != np.uint8:
        raise ValueError(f"square_resize expects uint8 pixels, got {array.dtype}.")
    height, width, channels = array.shape
    if box is None:
        side = min(height, width)
        box = ((width - side) // 2, (height - side) // 2, side)
    square = _crop_with_edge_padding(array, box)
    side = square.shape[0]
    if side != size:
        if interpolation is None:
            interpolation = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
        square = cv2.resize(square, (size, size), interpolation=interpolation)
    if square.ndim == 2:  # OpenCV drops a single channel axis
        square = square[:, :, np.newaxis]
    return np.ascontiguousarray(square.reshape(size, size, channels))


def _crop_with_edge_padding(image: np.ndarray, box: tuple[int, int, int]) -> np.ndarray:
    x, y, side = (int(round(value)) for value in box)
    if side < 1:
        raise ValueError(f"crop box side must be >= 1, got {side}.")
    height, width = image.shape[:2]
    left, top = max(x, 0), max(y, 0)
    right, bottom = min(x + side, width), min(y + side, height)
    if right <= left or bottom <= top:
        raise ValueError(f"crop box {box} lies outside the {width}x{height} image.")
    inside = image[top:bottom, left:right]
    pads = (top - y, y + side - bottom, left - x, x + side - right)
    if any(pads):
        inside = cv2.copyMakeBorder(inside, *pads, borderType=cv2.BORDER_REPLICATE)
        if inside.ndim == 2:
            inside = inside[:, :, np.newaxis]
    return inside


def prepare_photo(
    path_or_array: str | Path | np.ndarray,
    size: int,
    face_crop: bool = False,
    face_margin: float = 0.35,
) -> np.ndarray:
    """Turns a user photo into model input: RGB, square, size x size.

    Args:
        path_or_array: An image file, or an RGB(A)/grey array.
        size: Output side (the model's image size).
        face_crop: Crop a square around the detected face (with `face_margin`) instead of the
            centre square.
        face_margin: Margin around the face box on each side, as a fraction of the face side.

    Returns:
        uint8 [size, size, 3] RGB.

    Raises:
        UserError: Unreadable image, or `face_crop` and no face was found.
    """
    if isinstance(path_or_array, (str, Path)):
        source_name = str(path_or_array)
        image = read_image(path_or_array)
    else:
        source_name = "the input image"
        image = to_uint8_rgb(path_or_array)
    if face_crop:
        from affinegan_tf.data.faces import face_crop as crop_to_face

        return crop_to_face(image, size, face_margin, source_name)[0]
    return square_resize(image, size)
