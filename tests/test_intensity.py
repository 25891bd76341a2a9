"""IntensityEstimator: one code path for training and inference, broadcasting, stable weights."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from affinegan_tf.config import PRESETS
from affinegan_tf.errors import UserError
from affinegan_tf.gan import AffineGAN
from affinegan_tf.intensity import infer_intensity

TINY = PRESETS["tiny"]


def built_model(**changes):
    model = AffineGAN(dataclasses.replace(TINY, **changes), use_local_discriminator=False)
    model.build()
    return model


def faces(count, seed):
    return tf.random.uniform((count, 64, 64, 3), -1, 1, seed=seed)


def test_one_neutral_row_broadcasts_over_its_targets():
    model = built_model()
    neutral, targets = faces(2, 1), faces(6, 2)
    base_neutral = model.generator.base_encoder(neutral)[-1]
    delta = model.generator.delta_encoder(neutral)[-1]
    base_targets = model.generator.base_encoder(targets)[-1]
    broadcast = model.intensity_estimator.from_bottlenecks(
        base_neutral, tf.reshape(base_targets, (2, 3, *base_targets.shape[1:])), delta
    )
    repeated = infer_intensity(tf.repeat(base_neutral, 3, 0), base_targets, tf.repeat(delta, 3, 0))
    assert broadcast.shape == (2, 3)
    np.testing.assert_allclose(broadcast.numpy().reshape(-1), repeated, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("mode", ["affine", "mlp"])
def test_training_and_inference_read_the_same_intensities(mode):
    model = built_model(intensity=mode)
    neutral, targets = faces(1, 3), faces(5, 4)
    batch = {
        "neutral": neutral,
        "targets": targets[None],
        "masks": tf.ones((1, 5, 64, 64, 1)),
        "prior_intensities": tf.zeros((1, 5)),
        "target_positions": tf.zeros((1, 5)),
    }
    training = model._generator_forward(batch, training=False).intensities[0]
    inference = model.infer_intensities(neutral, targets)
    np.testing.assert_allclose(training, inference, rtol=1e-5, atol=1e-7)


def test_the_formula_of_the_config_is_used():
    direction = np.array([[1.0, 2.0, 0.0, -1.0]], np.float32)
    neutral = np.zeros((1, 4), np.float32)
    target = neutral - 0.3 * direction  # <t - n, d> = -0.3 * |d|^2, |d|^2 = 6
    paper = infer_intensity(neutral, target, direction, formula="paper")
    authors = infer_intensity(neutral, target, direction, formula="authors_code")
    np.testing.assert_allclose(paper, [0.3], rtol=1e-5)
    np.testing.assert_allclose(authors, [0.3 * np.sqrt(6.0)], rtol=1e-5)
    paper_model = built_model()
    authors_model = built_model(intensity_formula="authors_code")
    authors_model.set_weights(paper_model.get_weights())
    neutral_face, frames = faces(1, 5), faces(3, 6)
    ratio = authors_model.infer_intensities(neutral_face, frames) / paper_model.infer_intensities(
        neutral_face, frames
    )
    delta = paper_model.generator.delta_encoder(neutral_face)[-1]
    np.testing.assert_allclose(ratio, np.linalg.norm(delta.numpy()), rtol=1e-4)
    with pytest.raises(UserError, match="intensity_formula"):
        dataclasses.replace(TINY, intensity_formula="other")


def test_temporal_labels_come_from_positions_and_have_no_estimator():
    model = built_model(intensity="temporal")
    positions = tf.constant([[0.0, 0.25, 1.0]])
    unused = tf.zeros((1, 1, 1, 8))
    np.testing.assert_array_equal(
        model.intensity_estimator.from_bottlenecks(unused, unused[None], unused, positions),
        positions,
    )
    with pytest.raises(ValueError, match="temporal"):
        model.infer_intensities(faces(1, 7), faces(2, 8))


def test_variable_paths_of_earlier_checkpoints_are_kept():
    paths = {variable.path for variable in built_model(intensity="mlp").variables}
    assert {
        "affinegan/intensity_regressor/hidden/kernel",
        "affinegan/intensity_regressor/output/bias",
    } <= paths
    # The in-graph NaN record is a metric: not a model variable, not in checkpoints.
    assert not any("nonfinite" in path for path in paths)
