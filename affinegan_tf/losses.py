"""Loss functions: vanilla GAN losses on logits, L1, the mask penalties and R1."""

from __future__ import annotations

import tensorflow as tf
from keras import ops


def sigmoid_cross_entropy(logits, is_real: bool):
    """Mean sigmoid cross-entropy of logits against an all-real or all-fake label."""
    logits = ops.cast(logits, "float32")
    labels = ops.ones_like(logits) if is_real else ops.zeros_like(logits)
    # max(x, 0) - x * z + log(1 + exp(-|x|)): the numerically stable form.
    losses = ops.relu(logits) - logits * labels + ops.log1p(ops.exp(-ops.abs(logits)))
    return ops.mean(losses)


def discriminator_loss(real_logits, fake_logits):
    """0.5 * (loss on real + loss on fake), as pix2pix and the authors weight it."""
    return 0.5 * (
        sigmoid_cross_entropy(real_logits, True) + sigmoid_cross_entropy(fake_logits, False)
    )


def generator_adversarial_loss(fake_logits):
    """Non-saturating generator loss: the fakes should be called real."""
    return sigmoid_cross_entropy(fake_logits, True)


def mean_absolute_error(first, second):
    """L1 distance averaged over every pixel and channel."""
    return ops.mean(ops.abs(ops.cast(first, "float32") - ops.cast(second, "float32")))


def mask_mean(masks):
    """Mean of attention masks [N, H, W, 1] in [0, 1]: the share of the frame that is redrawn."""
    return ops.mean(ops.cast(masks, "float32"))


def total_variation(masks):
    """Total variation of masks [N, H, W, C], as means: mean |vertical neighbour difference|
    plus mean |horizontal neighbour difference|.

    GANimation sums the differences instead; a sum grows with the image size and the batch, so its
    weight would have to change with both. The sum over one image of side S equals this mean times
    about S * (S - 1) per direction.
    """
    masks = ops.cast(masks, "float32")
    vertical = ops.mean(ops.abs(masks[:, 1:, :, :] - masks[:, :-1, :, :]))
    horizontal = ops.mean(ops.abs(masks[:, :, 1:, :] - masks[:, :, :-1, :]))
    return vertical + horizontal


def accuracy(logits, is_real: bool):
    """Fraction of patches a discriminator classifies correctly."""
    logits = ops.cast(logits, "float32")
    correct = logits > 0 if is_real else logits <= 0
    return ops.mean(ops.cast(correct, "float32"))


def logits_with_r1(discriminator, pairs, real_count: int):
    """The discriminator's logits on `pairs` and the R1 term of its first `real_count` (real)
    pairs: the mean over those pairs of |grad_x mean-patch-logit(x)|^2 (Mescheder et al. 2018).

    The gradient is taken on a tape of its own inside the caller's, so the caller's tape sees
    it and differentiates the penalty too (a second-order gradient through the discriminator:
    nothing in it may carry a custom gradient). One discriminator call serves both: instance
    norm and convs act per pair, so the fake pairs of the batch add nothing to the real ones'
    gradient. The inner gradient is not loss-scaled: under `mixed_float16` small input
    gradients can underflow to zero in float16 (bfloat16 has float32's range).
    """
    with tf.GradientTape() as tape:
        tape.watch(pairs)
        logits = discriminator(pairs)
        real_scores = ops.mean(ops.cast(logits[:real_count], "float32"), axis=(1, 2, 3))
        score = ops.sum(real_scores)
    gradients = tape.gradient(score, pairs)[:real_count]
    penalty = ops.mean(ops.sum(ops.square(ops.cast(gradients, "float32")), axis=(1, 2, 3)))
    return logits, penalty
