"""The pixel limit, and an image's size read from its header before anything is decoded.

A decoder allocates the whole image before it looks at the pixel data, so a 40,000 x 40,000 PNG
of a few hundred bytes asks for 4.8 GB (OpenCV refuses it with its own error; Pillow warns, then
refuses). Every reader of this package checks the size here first, from the few bytes of the
header, and turns "too large" into our own message naming the file.
"""

from __future__ import annotations

import struct
import warnings
from pathlib import Path
from typing import BinaryIO

from affinegan_tf.errors import UserError

# 64 megapixels: above every phone and most camera photos (a 61 MP full-frame sensor fits), far
# below OpenCV's own 2^30. Measured peak memory of read_image at this size: see the README.
MAX_IMAGE_PIXELS = 64_000_000


def too_large(path: Path | str, width: int, height: int, what: str = "image") -> UserError:
    """The error for an image (or video frame) over MAX_IMAGE_PIXELS."""
    return UserError(
        f"{path}: {what} of {width}x{height} pixels ({width * height / 1e6:.0f} megapixels) is "
        f"over the limit of {MAX_IMAGE_PIXELS / 1e6:.0f} megapixels (decoding it would need "
        f"{width * height * 3 / 1e9:.1f} GB or more). Shrink it first, e.g. to 2048 pixels on "
        "the long side, or remove it."
    )


def check_pixels(path: Path | str, width: int, height: int, what: str = "image") -> None:
    """Raises `too_large` when width x height is over the limit (or not a real size).

    Raises:
        UserError: Over the limit, or a zero/negative size.
    """
    if width <= 0 or height <= 0:
        raise UserError(f"{path}: the header gives a size of {width}x{height} pixels: corrupt.")
    if width * height > MAX_IMAGE_PIXELS:
        raise too_large(path, width, height, what)


def check_image_file(path: Path | str) -> None:
    """Checks an image file's size from its header, before it is decoded.

    Raises:
        UserError: The header says the image is over MAX_IMAGE_PIXELS, or the file's format is
            recognised and its header is broken, or no header reader recognises the file at all
            (then no decoder would be trusted with it either).
    """
    size = header_size(path)
    if size is None:
        raise UserError(
            f"Cannot read image {path}: not an image format this program reads (or its header "
            "is corrupt). Use .jpg or .png, or remove it."
        )
    check_pixels(path, *size)


def header_size(path: Path | str) -> tuple[int, int] | None:
    """(width, height) from the header of a PNG, JPEG, GIF, BMP, WebP or TIFF file, else of any
    format Pillow opens lazily; None when no reader recognises the file.

    Raises:
        UserError: The file cannot be opened.
    """
    try:
        with open(path, "rb") as handle:
            start = handle.read(32)
            for matches, reader in _READERS:
                if matches(start):
                    handle.seek(0)
                    return reader(handle)
    except OSError as error:
        raise UserError(f"Cannot read {path}: {error}. Check that the file is readable.") from None
    except (struct.error, ValueError, IndexError):
        return None
    return _pillow_size(path)


def _png(handle: BinaryIO) -> tuple[int, int] | None:
    data = handle.read(24)
    if data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


# Start-of-frame markers (baseline, progressive, lossless, arithmetic ...): they carry the size.
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


# Junk tolerated between JPEG segments before the file counts as corrupt (a random file that
# happens to start with FF D8 must not be scanned byte by byte to its end).
_JPEG_MAX_JUNK = 65536


def _jpeg(handle: BinaryIO) -> tuple[int, int] | None:
    handle.seek(2)
    junk = 0
    while True:
        byte = handle.read(1)
        if not byte:
            return None
        if byte != b"\xff":
            junk += 1  # not at a marker: scan on (tolerates padding and junk between segments)
            if junk > _JPEG_MAX_JUNK:
                return None
            continue
        marker = handle.read(1)
        while marker == b"\xff":
            marker = handle.read(1)
        if not marker:
            return None
        code = marker[0]
        if code in (0x00, 0x01) or 0xD0 <= code <= 0xD7:
            continue  # stuffed byte, TEM, restart markers: no length
        if code in (0xD9, 0xDA):
            return None  # end of image or start of scan before any frame header
        length_bytes = handle.read(2)
        if len(length_bytes) < 2:
            return None
        length = struct.unpack(">H", length_bytes)[0]
        if code in _JPEG_SOF:
            data = handle.read(5)
            if len(data) < 5:
                return None
            height, width = struct.unpack(">HH", data[1:5])
            return width, height
        handle.seek(length - 2, 1)


def _gif(handle: BinaryIO) -> tuple[int, int]:
    data = handle.read(10)
    return struct.unpack("<HH", data[6:10])


def _bmp(handle: BinaryIO) -> tuple[int, int] | None:
    data = handle.read(26)
    header_length = struct.unpack("<I", data[14:18])[0]
    if header_length == 12:  # OS/2 BITMAPCOREHEADER
        return struct.unpack("<HH", data[18:22])
    width, height = struct.unpack("<ii", data[18:26])
    return width, abs(height)  # negative height: rows stored top-down


def _webp(handle: BinaryIO) -> tuple[int, int] | None:
    data = handle.read(30)
    kind = data[12:16]
    if kind == b"VP8X":
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    if kind == b"VP8L" and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    return None


def _tiff(handle: BinaryIO) -> tuple[int, int] | None:
    order = "<" if handle.read(2) == b"II" else ">"
    handle.seek(4)
    (offset,) = struct.unpack(order + "I", handle.read(4))
    handle.seek(offset)
    (count,) = struct.unpack(order + "H", handle.read(2))
    size: dict[int, int] = {}
    for _ in range(count):
        tag, kind, _, value = struct.unpack(order + "HHI4s", handle.read(12))
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT or LONG
            fmt = "H" if kind == 3 else "I"
            size[tag] = struct.unpack(order + fmt, value[: struct.calcsize(fmt)])[0]
    if 256 not in size or 257 not in size:
        return None
    return size[256], size[257]


_READERS = (
    (lambda start: start.startswith(b"\x89PNG\r\n\x1a\n"), _png),
    (lambda start: start.startswith(b"\xff\xd8"), _jpeg),
    (lambda start: start[:6] in (b"GIF87a", b"GIF89a"), _gif),
    (lambda start: start.startswith(b"BM") and len(start) >= 26, _bmp),
    (lambda start: start[:4] == b"RIFF" and start[8:12] == b"WEBP", _webp),
    (lambda start: start[:4] in (b"II*\x00", b"MM\x00*"), _tiff),
)


def _pillow_size(path: Path | str) -> tuple[int, int] | None:
    """The size Pillow reads from the header of any format it knows (it decodes nothing yet)."""
    try:
        from PIL import Image

        pillow_limit = Image.MAX_IMAGE_PIXELS
        try:
            Image.MAX_IMAGE_PIXELS = None  # its bomb check would hide the size: we decide here
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(path) as image:
                    return tuple(image.size)
        finally:
            Image.MAX_IMAGE_PIXELS = pillow_limit
    except Exception:  # noqa: BLE001 - Pillow raises many types for unknown or broken files
        return None
