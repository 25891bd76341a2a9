"""prepare-pairs --inbetweens: frames between two registered photos move features along the
optical flow instead of cross-fading them."""

from __future__ import annotations

import numpy as np
import pytest

from affinegan_tf.data.morph import inbetween_frames


def _scene(blob_x: float, size: int = 96) -> np.ndarray:
    """A dark blob on a textured background (DIS needs texture to find motion)."""
    rng = np.random.default_rng(0)
    texture = rng.uniform(90, 160, (size // 8, size // 8))
    background = np.kron(texture, np.ones((8, 8)))
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    blob = np.exp(-((x - blob_x) ** 2 + (y - size / 2) ** 2) / (2 * 4.0**2))
    image = background * (1 - blob) + 10 * blob
    return np.repeat(np.round(image)[:, :, None], 3, axis=2).astype(np.uint8)


def _blob_centre(image: np.ndarray) -> float:
    darkness = np.clip(80.0 - image[:, :, 0].astype(np.float64), 0, None)
    return float((darkness.sum(axis=0) * np.arange(image.shape[1])).sum() / darkness.sum())


def test_inbetweens_move_the_feature_instead_of_fading_it():
    # A move of 6 px, as a mouth corner's in a smile at 256 px (DIS's range at this size).
    start, end = _scene(40.0), _scene(46.0)
    frames = inbetween_frames(start, end, 3)
    assert len(frames) == 3
    assert all(f.shape == start.shape and f.dtype == np.uint8 for f in frames)
    centres = [_blob_centre(f) for f in frames]
    # Evenly along the way (t = 0.25, 0.5, 0.75), not parked at either end.
    np.testing.assert_allclose(centres, [41.5, 43.0, 44.5], atol=0.5)
    # One dark blob at full depth half-way: a cross-fade would show two half-dark ones.
    middle, cross_fade = frames[1], (start.astype(float) + end) / 2
    assert middle[:, :, 0].min() < 20 < 40 < cross_fade[:, :, 0].min()


def test_inbetweens_of_nothing_and_of_mismatched_photos():
    image = _scene(40.0)
    assert inbetween_frames(image, image, 0) == []
    with pytest.raises(ValueError, match="two registered RGB photos of one size"):
        inbetween_frames(image, image[:64], 1)
