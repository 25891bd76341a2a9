"""Making input square: the one place non-square frames and photos become size x size.

Non-square input is centre-cropped to its largest square (or cropped to a given box, such as the
face), never squashed.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from affinegan_tf.data.faces import face_box
from affinegan_tf.data.images import read_image, to_uint8_rgb


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
        return crop_to_face(image, size, face_margin, source_name)[0]
    return square_resize(image, size)


def crop_to_face(
    image_rgb: np.ndarray, size: int, margin: float, source_name: str
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The face crop of a photo as model input: THE crop shared by `generate --face-crop` and
    `prepare-pairs`, so that a model trained on prepared pairs sees users' photos the same way.

    Args:
        image_rgb: uint8 [H, W, 3] RGB.
        size: Output side in pixels.
        margin: See `face_box`.
        source_name: The file named in the error message.

    Returns:
        (uint8 [size, size, 3] crop, the (x, y, side) box it was cut from).

    Raises:
        UserError: No face was found.
    """
    box = face_box(image_rgb, margin, source_name)
    return square_resize(image_rgb, size, box), box
