"""The one conversion between uint8 pixels (files, GIFs, exports) and the model's [-1, 1] floats.

The constants live in `affinegan_tf.config`; every module that crosses the uint8 / float boundary
calls these two functions so the rounding and clipping are the same everywhere.
"""

from __future__ import annotations

import tensorflow as tf

from affinegan_tf.config import PIXEL_OFFSET, PIXEL_SCALE


def to_model_range(pixels: tf.Tensor) -> tf.Tensor:
    """Maps uint8 pixels [0, 255] to float32 [-1, 1] (x / 127.5 - 1).

    Args:
        pixels: Tensor or array of any shape, uint8 (or any real dtype holding 0..255 values).

    Returns:
        A float32 tensor of the same shape.
    """
    return tf.cast(pixels, tf.float32) / PIXEL_SCALE - PIXEL_OFFSET


def to_uint8(values: tf.Tensor) -> tf.Tensor:
    """Maps model-range floats back to uint8 pixels, rounding to nearest and clipping to [0, 255].

    Args:
        values: Float tensor or array, nominally in [-1, 1]; values outside are clipped.

    Returns:
        A uint8 tensor of the same shape.
    """
    values = tf.cast(values, tf.float32)
    pixels = tf.round((values + PIXEL_OFFSET) * PIXEL_SCALE)
    return tf.cast(tf.clip_by_value(pixels, 0.0, 255.0), tf.uint8)
