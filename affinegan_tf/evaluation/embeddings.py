"""128-D face embeddings with dlib's face-recognition ResNet (the `eval` extra).

Measured facts this module follows (EVALUATION.md):
- `import face_recognition_models` needs `pkg_resources`, gone from recent setuptools: the model
  files are located with importlib's spec, never by importing the package.
- The 5-point landmark model is used (the 68-point model's training data forbids commercial use).
- dlib takes only uint8, C-contiguous [H, W, 3] arrays.
- HOG detection needs faces of ~80 px: small frames are upsampled (1 for 128 px, 2 for 64 px).
- Detection runs on every frame (reusing frame 0's box breaks on head motion).
Frames where no face is found get a NaN embedding; callers count them (see metrics.py).
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from affinegan_tf.errors import UserError

EMBEDDING_SIZE = 128
SHAPE_PREDICTOR_FILE = "shape_predictor_5_face_landmarks.dat"
RECOGNITION_MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
INSTALL_HINT = "pip install 'affinegan-tf[eval]'  (dlib-bin, face-recognition-models, scipy)"
# HOG upsampling doubles the image until its shorter side reaches this (capped at 3 doublings).
_DETECTION_SIDE = 200
_MAX_UPSAMPLE = 3


def _missing(what: str) -> UserError:
    return UserError(
        f"Evaluation needs {what}, which is not installed. Install it with: {INSTALL_HINT}"
    )


def model_folder() -> Path:
    """The folder holding face-recognition-models' .dat files (found without importing it)."""
    try:
        spec = importlib.util.find_spec("face_recognition_models")
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        folder = Path(location) / "models"
        if (folder / SHAPE_PREDICTOR_FILE).is_file() and (
            folder / RECOGNITION_MODEL_FILE
        ).is_file():
            return folder
    raise _missing("the dlib model files of face-recognition-models")


@dataclass(frozen=True)
class _Models:
    detector: object
    shape_predictor: object
    recognizer: object


@functools.lru_cache(maxsize=1)
def _models() -> _Models:
    try:
        import dlib
    except ImportError:
        raise _missing("dlib (the dlib-bin wheel)") from None
    folder = model_folder()
    return _Models(
        detector=dlib.get_frontal_face_detector(),
        shape_predictor=dlib.shape_predictor(str(folder / SHAPE_PREDICTOR_FILE)),
        recognizer=dlib.face_recognition_model_v1(str(folder / RECOGNITION_MODEL_FILE)),
    )


def check_installed() -> None:
    """Raises a UserError naming the install command when the `eval` extra is missing."""
    _models()


def upsample_count(height: int, width: int) -> int:
    """HOG upsampling steps for a frame: 0 at >= 200 px, 1 for 128 px, 2 for 64 px."""
    side, steps = min(height, width), 0
    while side < _DETECTION_SIDE and steps < _MAX_UPSAMPLE:
        side *= 2
        steps += 1
    return steps


@dataclass
class Embeddings:
    """Embeddings of a stack of frames.

    Attributes:
        vectors: float64 [N, 128]; rows of frames with no face are NaN.
        found: bool [N], whether a face was found in each frame.
    """

    vectors: np.ndarray
    found: np.ndarray

    @property
    def missing(self) -> int:
        """Frames with no face."""
        return int((~self.found).sum())


def embed_faces(frames: np.ndarray) -> Embeddings:
    """Detects the largest face in each frame and embeds it (5-point alignment, no jitter).

    Args:
        frames: uint8 RGB [N, H, W, 3] (or one [H, W, 3] frame). Compare only frames of the same
            resolution and preprocessing: size alone moves an embedding as much as a smile.

    Returns:
        Embeddings with NaN rows where no face was found.
    """
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[np.newaxis]
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(
            f"expected uint8 RGB frames [N, H, W, 3], got {frames.dtype} {frames.shape}"
        )
    models = _models()
    upsample = upsample_count(*frames.shape[1:3])
    vectors = np.full((frames.shape[0], EMBEDDING_SIZE), np.nan)
    found = np.zeros(frames.shape[0], bool)
    for index, frame in enumerate(frames):
        image = np.ascontiguousarray(frame)
        detections = models.detector(image, upsample)
        if len(detections) == 0:
            continue
        box = max(detections, key=lambda rect: rect.width() * rect.height())
        shape = models.shape_predictor(image, box)
        vectors[index] = np.asarray(models.recognizer.compute_face_descriptor(image, shape))
        found[index] = True
    return Embeddings(vectors, found)
