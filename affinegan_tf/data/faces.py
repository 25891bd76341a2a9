"""Face detection for --face-crop: OpenCV's bundled Haar cascade, no download needed.

`haarcascade_frontalface_alt2` found 80 of 81 real faces with no false positive in this project's
measurements (EVALUATION.md); it ships inside opencv-python-headless 4.x (5.0 ships no cascades).
"""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np

from affinegan_tf.errors import UserError

CASCADE_NAME = "haarcascade_frontalface_alt2.xml"
# Faces are searched in a copy whose shorter side is at least this (small frames are upscaled)
# and at most _MAX_SIDE (large photos are shrunk: the cascade's cost grows with the area).
_MIN_SIDE = 200
_MAX_SIDE = 960
# A detection smaller than this fraction of the shorter side is ignored (a face on a T-shirt, a
# poster in the background); training faces fill much of the frame.
_MIN_FACE_FRACTION = 0.1


# The ellipse of `face_blend_weights`, in units of the Haar face box's side (the box runs
# from the brows to about the chin): centre a little below the box centre (a smile moves the
# mouth, cheeks and chin, not the forehead), half-axes wide enough for the cheeks and down to
# below the chin, and a Gaussian feather so that no seam shows where the two photos meet.
_BLEND_CENTRE_DROP = 0.08
_BLEND_HALF_WIDTH = 0.52
_BLEND_HALF_HEIGHT = 0.62
_BLEND_FEATHER = 0.06


@functools.lru_cache(maxsize=1)
def _cascade() -> cv2.CascadeClassifier:
    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    path = Path(folder or "") / CASCADE_NAME
    classifier = cv2.CascadeClassifier(str(path)) if path.is_file() else None
    if classifier is None or classifier.empty():
        raise UserError(
            f"OpenCV's face detector ({CASCADE_NAME}) is not installed. --face-crop needs "
            "opencv-python-headless 4.x (`pip install 'opencv-python-headless>=4.10,<5'`); "
            "or drop --face-crop."
        )
    return classifier


def detect_faces(image_rgb: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Finds every frontal face (of at least a tenth of the shorter side), largest first.

    Args:
        image_rgb: uint8 [H, W, 3] RGB (or [H, W] grey).

    Returns:
        (x, y, w, h) boxes in the image's pixel coordinates, largest first; empty if none.
    """
    image = np.asarray(image_rgb)
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    grey = np.ascontiguousarray(grey, dtype=np.uint8)
    height, width = grey.shape
    shorter, longer = min(height, width), max(height, width)
    scale = 1.0
    if shorter < _MIN_SIDE:
        scale = _MIN_SIDE / shorter
    elif longer > _MAX_SIDE:
        scale = _MAX_SIDE / longer
    if scale != 1.0:
        interpolation = cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA
        grey = cv2.resize(
            grey,
            (max(1, round(width * scale)), max(1, round(height * scale))),
            interpolation=interpolation,
        )
    grey = cv2.equalizeHist(grey)
    min_face = max(24, int(min(grey.shape) * _MIN_FACE_FRACTION))
    faces = _cascade().detectMultiScale(
        grey, scaleFactor=1.1, minNeighbors=4, minSize=(min_face, min_face)
    )
    ordered = sorted(faces, key=lambda face: int(face[2]) * int(face[3]), reverse=True)
    return [
        (
            int(round(x / scale)),
            int(round(y / scale)),
            int(round(w / scale)),
            int(round(h / scale)),
        )
        for x, y, w, h in ordered
    ]


def detect_face(image_rgb: np.ndarray) -> tuple[int, int, int, int] | None:
    """Finds the largest frontal face.

    Args:
        image_rgb: uint8 [H, W, 3] RGB (or [H, W] grey).

    Returns:
        (x, y, w, h) of the largest face in the image's pixel coordinates, or None.
    """
    faces = detect_faces(image_rgb)
    return faces[0] if faces else None


def face_box(image_rgb: np.ndarray, margin: float, source_name: str) -> tuple[int, int, int]:
    """The square crop around the detected face used by --face-crop.

    Args:
        image_rgb: uint8 [H, W, 3] RGB; for a video, its neutral (first) frame.
        margin: Added on each side of the face, as a fraction of the face side (0.35 gives a
            square 1.7 times the face side: forehead, chin and some hair).
        source_name: The file named in the error message.

    Returns:
        (x, y, side) of a square centred on the face. It may extend past the image;
        `square_resize` repeats the border pixels there.

    Raises:
        UserError: No face was found.
    """
    if margin < 0:
        raise UserError(f"face_margin must be >= 0, got {margin}.")
    face = detect_face(image_rgb)
    if face is None:
        raise UserError(
            f"No face found in {source_name} (for --face-crop). Use a photo where the face is "
            "visible, frontal and not too small, or drop --face-crop (then the centre square is "
            "used)."
        )
    x, y, w, h = face
    side = max(1, int(round(max(w, h) * (1.0 + 2.0 * margin))))
    center_x, center_y = x + w / 2.0, y + h / 2.0
    return int(round(center_x - side / 2.0)), int(round(center_y - side / 2.0)), side


def face_blend_weights(
    size: int, face: tuple[int, int, int, int], box: tuple[int, int, int]
) -> np.ndarray:
    """The weight of the expression photo in `blend_face`'s frame: a feathered ellipse.

    Args:
        size: Side of the crop.
        face: The (x, y, w, h) face box in the photo's pixel coordinates.
        box: The (x, y, side) square the crop was cut from, in the same coordinates.

    Returns:
        float32 [size, size, 1] in [0, 1]: 1 on the face, 0 outside it.
    """
    scale = size / box[2]
    x, y, w, h = (
        (face[0] - box[0]) * scale,
        (face[1] - box[1]) * scale,
        face[2] * scale,
        face[3] * scale,
    )
    side = max(w, h)
    centre_x, centre_y = x + w / 2.0, y + h / 2.0 + _BLEND_CENTRE_DROP * side
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    radius = np.sqrt(
        ((cols - centre_x) / (_BLEND_HALF_WIDTH * side)) ** 2
        + ((rows - centre_y) / (_BLEND_HALF_HEIGHT * side)) ** 2
    )
    weights = (radius <= 1.0).astype(np.float32)
    sigma = max(_BLEND_FEATHER * side, 0.5)
    weights = cv2.GaussianBlur(weights, (0, 0), sigmaX=sigma, sigmaY=sigma)
    return weights[:, :, None]
