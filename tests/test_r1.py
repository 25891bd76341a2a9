"""The optional R1 penalty on the image discriminators (LossWeights.r1)."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf
from batches import make_batch

from affinegan_tf.config import PRESETS, LossWeights
from affinegan_tf.errors import UserError
from affinegan_tf.gan import AffineGAN
from affinegan_tf.losses import logits_with_r1
from affinegan_tf.networks import PatchDiscriminator

TINY = dataclasses.replace(PRESETS["tiny"], dropout=0.0)


def test_r1_of_a_linear_discriminator_and_its_gradient_match_a_hand_computation():
    # D(x) = a 1x1 conv with kernel w, no bias: every patch logit is <x, w>, so the mean patch
    # logit of an H x W pair has gradient w / (H W) at every pixel and R1 = |w|^2 / (H W).
    height, width, channels = 3, 5, 6
    w = np.arange(1, channels + 1, dtype=np.float32) / 10
    conv = keras.layers.Conv2D(1, 1, use_bias=False)
    conv.build((None, height, width, channels))
    conv.kernel.assign(w.reshape(1, 1, channels, 1))
    pairs = tf.constant(
        np.random.default_rng(0).normal(size=(4, height, width, channels)), "float32"
    )
    with tf.GradientTape() as outer:
        logits, penalty = logits_with_r1(conv, pairs, real_count=2)
    assert logits.shape == (4, height, width, 1)
    np.testing.assert_allclose(float(penalty), (w @ w) / (height * width), rtol=1e-5)
    # The caller's tape differentiates the penalty (a second-order gradient): d/dw = 2 w / (H W).
    kernel_gradient = outer.gradient(penalty, conv.kernel)
    np.testing.assert_allclose(kernel_gradient.numpy().ravel(), 2 * w / (height * width), rtol=1e-5)


def test_r1_reads_only_the_real_pairs_of_a_patchgan_batch():
    discriminator = PatchDiscriminator(8)
    rng = np.random.default_rng(1)
    real = tf.constant(rng.uniform(-1, 1, (2, 32, 32, 6)), "float32")
    fake = tf.constant(rng.uniform(-1, 1, (3, 32, 32, 6)), "float32")
    _, alone = logits_with_r1(discriminator, real, real_count=2)
    _, in_batch = logits_with_r1(discriminator, tf.concat([real, fake], 0), real_count=2)
    np.testing.assert_allclose(float(in_batch), float(alone), rtol=1e-4)
    assert float(alone) > 0


def test_a_train_step_with_r1_logs_it_and_changes_the_discriminators_update():
    def trained_kernel(weights):
        model = AffineGAN(TINY, use_local_discriminator=True, seed=0)
        model.compile(
            keras.optimizers.Adam(1e-3, beta_1=0.5),
            keras.optimizers.SGD(1.0),
            weights,
        )
        logs = tf.function(model.train_step)(make_batch(TINY))
        kernel = model.global_discriminator.convs[0].kernel.numpy()
        return logs, kernel, model

    plain_logs, plain_kernel, _ = trained_kernel(LossWeights())
    assert "d_r1" not in plain_logs
    logs, kernel, model = trained_kernel(LossWeights(r1=10.0))
    assert np.isfinite(float(logs["d_r1"])) and float(logs["d_r1"]) > 0
    assert model.nonfinite_watch.first_bad() is None
    # The same start and batch: only the penalty's (second-order) gradient differs.
    assert not np.allclose(kernel, plain_kernel)
    np.testing.assert_allclose(float(logs["d_global"]), float(plain_logs["d_global"]), rtol=1e-5)


def test_a_negative_r1_weight_is_refused():
    with pytest.raises(UserError, match="r1"):
        LossWeights(r1=-1.0)
