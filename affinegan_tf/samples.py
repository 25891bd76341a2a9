"""What a run shows of itself while it trains: the sample face, and the training clips whose
inferred intensities make `<run>/intensity_range.json`.

Chosen once when training starts (`sample_face`, `range_clips`); `callbacks.CheckpointAndSamples`
renders and measures them at every checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from affinegan_tf.data.images import read_image
from affinegan_tf.data.pipeline import TrainingSet
from affinegan_tf.data.square import prepare_photo, square_resize
from affinegan_tf.data.video import read_frames
from affinegan_tf.errors import UserError
from affinegan_tf.intensity import IntensityEstimator

# Frames of each sample GIF (intensities evenly spaced over 0..1).
SAMPLE_FRAMES = 16
# Training videos and frames per video whose inferred intensities are summarised at each
# checkpoint (TensorBoard histogram, intensity_range.json and the model's apex).
RANGE_VIDEOS = 16
RANGE_FRAMES = 16
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def sample_face(
    training_set: TrainingSet, image_size: int, face_crop: bool, margin: float
) -> np.ndarray:
    """The neutral face shown in sample GIFs: the first test item, else the first video.

    Returns:
        uint8 [S, S, 3].
    """
    for item in getattr(training_set.index, "test_items", [])[:1]:
        try:
            path = Path(item)
            if path.is_file() and path.suffix.lower() in PHOTO_SUFFIXES:
                image = read_image(path)
            else:
                image = read_frames(path, max_frames=2)[0]
            return prepare_photo(image, image_size, face_crop=face_crop, face_margin=margin)
        except UserError:
            break
    return square_resize(np.asarray(training_set.frames[0][0]), image_size)


def range_clips(training_set: TrainingSet, image_size: int) -> list[np.ndarray]:
    """Up to RANGE_VIDEOS training videos (evenly spaced), RANGE_FRAMES frames each, square at
    the model size; frame 0 of each clip is its video's first (neutral) frame.

    Returns:
        uint8 [T, S, S, 3] per clip.
    """
    videos = training_set.frames
    clips = []
    for index in np.linspace(0, len(videos) - 1, min(RANGE_VIDEOS, len(videos))).astype(int):
        frames = videos[index]
        chosen = np.unique(np.linspace(0, len(frames) - 1, RANGE_FRAMES).astype(int))
        clips.append(square_resize(np.asarray(frames[chosen]), image_size))
    return clips


def training_intensities(
    estimator: IntensityEstimator, clips: list[np.ndarray]
) -> list[np.ndarray]:
    """Inferred intensities of frames 1..T-1 of each clip, relative to its own frame 0: one array
    per clip (its largest value is that video's apex, calibration.py)."""
    return [estimator.from_frames(clip[0], clip[1:]) for clip in clips]
