"""Pure loss functions (no state): vanilla GAN losses on logits and L1."""

from __future__ import annotations

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


def accuracy(logits, is_real: bool):
    """Fraction of patches a discriminator classifies correctly."""
    logits = ops.cast(logits, "float32")
    correct = logits > 0 if is_real else logits <= 0
    return ops.mean(ops.cast(correct, "float32"))
