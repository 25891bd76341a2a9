"""The discriminators' jittered conditioning frame (ModelConfig.condition_jitter)."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf
from batches import make_batch

from affinegan_tf.config import PRESETS, ModelConfig
from affinegan_tf.errors import UserError
from affinegan_tf.gan import AffineGAN
from affinegan_tf.layers import shift_randomly

TINY = dataclasses.replace(PRESETS["tiny"], dropout=0.0)


def _offset_of(shifted: np.ndarray, images: np.ndarray, limit: int) -> tuple[int, int]:
    """The (dy, dx) with shifted[:, y, x] == images[:, y + dy, x + dx] away from the borders."""
    size = images.shape[1]
    inner = shifted[:, limit : size - limit, limit : size - limit]
    matches = [
        (dy, dx)
        for dy in range(-limit, limit + 1)
        for dx in range(-limit, limit + 1)
        if np.array_equal(
            inner, images[:, limit + dy : size - limit + dy, limit + dx : size - limit + dx]
        )
    ]
    assert len(matches) == 1, matches
    return matches[0]


@pytest.mark.parametrize("compiled", [False, True])
def test_shift_randomly_moves_the_whole_batch_by_one_offset_within_the_limit(compiled):
    rng = np.random.default_rng(0)
    images = rng.uniform(0.5, 1.0, (3, 16, 16, 2)).astype("float32")
    seed = keras.random.SeedGenerator(3)
    shift = tf.function(shift_randomly) if compiled else shift_randomly
    offsets = set()
    for _ in range(12):
        shifted = np.asarray(shift(tf.constant(images), 2, seed))
        assert shifted.shape == images.shape
        offsets.add(_offset_of(shifted, images, 2))
        # Mirrored borders: every pixel is one of the image's own, no padding zeros.
        assert shifted.min() >= 0.5
        assert np.isin(shifted, images).all()
    # The seed generator advances: the offsets vary from call to call.
    assert len(offsets) > 3


def test_the_jitter_is_a_fraction_of_the_image_side():
    assert ModelConfig(image_size=64, condition_jitter=0.03).condition_jitter_pixels == 2
    assert ModelConfig(image_size=256, condition_jitter=0.03).condition_jitter_pixels == 8
    assert ModelConfig(image_size=64, condition_jitter=0.001).condition_jitter_pixels == 1
    assert ModelConfig(image_size=64).condition_jitter_pixels == 0
    for bad in (-0.01, 0.3):
        with pytest.raises(UserError, match="condition_jitter"):
            ModelConfig(condition_jitter=bad)


def test_the_jitter_changes_what_the_discriminators_see_and_nothing_the_generator_draws():
    def one_step(config):
        model = AffineGAN(config, use_local_discriminator=True, seed=0)
        model.compile(
            keras.optimizers.Adam(1e-3, beta_1=0.5), keras.optimizers.Adam(1e-3, beta_1=0.5)
        )
        logs = tf.function(model.train_step)(make_batch(config))
        return model, {name: float(value) for name, value in logs.items()}

    plain_model, plain = one_step(TINY)
    model, jittered = one_step(dataclasses.replace(TINY, condition_jitter=0.05))
    assert model.nonfinite_watch.first_bad() is None
    # The same start and batch: the fakes are the same, the discriminators judge other pairs.
    assert jittered["g_reconstruction"] == pytest.approx(plain["g_reconstruction"], rel=1e-6)
    assert jittered["d_global"] != pytest.approx(plain["d_global"], rel=1e-4)
    assert jittered["d_local"] != pytest.approx(plain["d_local"], rel=1e-4)
    # Generation, exports and checkpoints of the generator keep the same variables.
    assert [v.path for v in model.generator.weights] == [
        v.path for v in plain_model.generator.weights
    ]
