"""Single image files -> uint8 RGB arrays, size-checked from the header before decoding.

Colour order (OpenCV's BGR becomes RGB here and nowhere else) and grey/alpha/16-bit handling
are decided once, here; video frames go through `to_uint8_rgb` too.
"""

from __future__ import annotations

import os

# Silence FFmpeg's own console messages ("moov atom not found" ...): every failure it reports is
# turned into a UserError naming the file. Must be set before the first VideoCapture (video.py
# imports this module).
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from affinegan_tf.data.image_header import check_image_file  # noqa: E402
from affinegan_tf.data.native_stderr import captured_native_stderr  # noqa: E402
from affinegan_tf.errors import UserError  # noqa: E402


def read_image(path: str | Path) -> np.ndarray:
    """Reads one image file as uint8 RGB.

    The size is checked from the header first (over MAX_IMAGE_PIXELS is an error, before any
    decoder allocates it). Grey images become 3 channels, alpha is dropped, 16-bit images are
    scaled to 8 bits, CMYK JPEGs are converted and the EXIF orientation is applied. A JPEG that
    libjpeg calls corrupt is refused, not shown with grey or shifted blocks.

    Args:
        path: An image file (.jpg .jpeg .png .bmp .webp, or anything else OpenCV or Pillow
            decodes).

    Returns:
        A uint8 array [H, W, 3] in RGB order.

    Raises:
        UserError: The file is missing, too large, or not a readable image; the message names
            the file.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not an image file" if path.is_dir() else "does not exist"
        raise UserError(f"{path} {what}. Give the path of a photo (.jpg, .png, ...).")
    check_image_file(path)
    try:
        encoded = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise UserError(f"Cannot read {path}: {error}. Check that the file is readable.") from None
    image = None
    with captured_native_stderr() as decoder_output:
        try:
            # IMREAD_COLOR makes grey 3-channel, drops alpha, converts CMYK and applies EXIF
            # orientation; IMREAD_ANYDEPTH keeps 16-bit values so they can be scaled.
            image = cv2.imdecode(encoded, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
        except cv2.error:
            image = None
    complaint = _decoder_complaint(decoder_output.text)
    if complaint:
        raise UserError(
            f"Cannot read image {path}: it is corrupt ({complaint}). Replace it with a valid "
            "file or remove it."
        )
    if image is not None:
        return to_uint8_rgb(image, bgr=True)
    image = _read_image_with_imageio(path)  # formats this OpenCV build lacks; gives RGB
    if image is None:
        raise UserError(
            f"Cannot read image {path}: it is not an image file or it is corrupt. "
            "Replace it with a valid .jpg/.png or remove it."
        )
    return to_uint8_rgb(image, bgr=False)


def _decoder_complaint(text: str) -> str:
    """The first line a C decoder wrote that says the data is corrupt ('' when none)."""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(("Corrupt JPEG data", "Premature end of JPEG file", "libpng error")):
            return line
    return ""


def _read_image_with_imageio(path: Path) -> np.ndarray | None:
    """The first frame of anything imageio reads, in RGB(A)/grey order; None if it cannot.

    Only reached after `check_image_file` read the size from the header (ours or Pillow's), so
    no decoder here is handed an image over the limit.
    """
    try:
        import imageio.v3 as iio

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
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
        # round(x / 257) in one pass without a float copy: identical for all 65536 values, and
        # 40x faster and 4x smaller than going through float32 on a 64 MP photo.
        image = cv2.convertScaleAbs(image, alpha=1.0 / 257.0)
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
