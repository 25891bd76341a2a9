"""Helpers for model and train-step tests: a random training batch shaped like the data
pipeline's, and a forced attention mask."""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf


def make_batch(config, batch_size=1, seed=0):
    """Random pixels in [-1, 1], random 0/1 masks (the local D's, and the neutral frame's own),
    prior intensities and frame positions, drawn in a fixed order from `seed`."""
    rng = np.random.default_rng(seed)
    size, targets = config.image_size, config.num_targets
    return {
        "neutral": tf.constant(rng.uniform(-1, 1, (batch_size, size, size, 3)), tf.float32),
        "targets": tf.constant(
            rng.uniform(-1, 1, (batch_size, targets, size, size, 3)), tf.float32
        ),
        "masks": tf.constant(rng.integers(0, 2, (batch_size, targets, size, size, 1)), tf.float32),
        "neutral_mask": tf.constant(rng.integers(0, 2, (batch_size, size, size, 1)), tf.float32),
        "prior_intensities": tf.constant(rng.uniform(0, 1, (batch_size, targets)), tf.float32),
        "target_positions": tf.constant(rng.uniform(0, 1, (batch_size, targets)), tf.float32),
    }


def set_uniform_mask(generator, logit: float) -> float:
    """Makes an attention decoder's mask the same everywhere: (tanh(logit) + 1) / 2, returned.

    The outermost conv's mask channel gets a zero kernel and the bias `logit`.
    """
    conv = generator.decoder.blocks[-1].conv
    kernel, bias = conv.kernel.numpy(), conv.bias.numpy()
    mask_axis = 2 if kernel.shape[2] == 4 else 3  # transposed convs keep [h, w, out, in]
    index = [slice(None)] * 4
    index[mask_axis] = 3
    kernel[tuple(index)] = 0.0
    bias[3] = logit
    conv.kernel.assign(kernel)
    conv.bias.assign(bias)
    return 0.5 * (math.tanh(logit) + 1.0)
