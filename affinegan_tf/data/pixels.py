"""The one definition of pixel normalisation: uint8 [0, 255] outside, float32 [-1, 1] inside."""

from __future__ import annotations

import tensorflow as tf

from affinegan_tf.config import PIXEL_OFFSET, PIXEL_SCALE


def to_model_range(images) -> tf.Tensor:
    """uint8 (or float in [0, 255]) images -> float32 in [-1, 1]."""
    return tf.cast(images, tf.float32) / PIXEL_SCALE - PIXEL_OFFSET


def to_uint8(images) -> tf.Tensor:
    """float images in [-1, 1] -> uint8, rounded and clipped."""
    values = (tf.cast(images, tf.float32) + PIXEL_OFFSET) * PIXEL_SCALE
    return tf.cast(tf.clip_by_value(tf.round(values), 0.0, 255.0), tf.uint8)
