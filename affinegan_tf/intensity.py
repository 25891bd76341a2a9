"""The intensity projection: the one definition of how intensity is read off features."""

from __future__ import annotations

from keras import ops

EPSILON = 1e-8


def infer_intensity(neutral_bottleneck, target_bottleneck, delta_bottleneck):
    """Least-squares coefficient of (f_t - f_0) on f_d, per sample.

    a_t = |<f_t - f_0, f_d>| / (<f_d, f_d> + eps), with f_0 = E0(I0), f_t = E0(I_t) and
    f_d = Ed(I0) flattened per sample. This is the paper's formula; the authors' code divided by
    |f_d| instead of its square and summed the dot product over the batch (hidden by batch size 1).

    Args:
        neutral_bottleneck: E0 bottleneck of the neutral frame, [B, ...].
        target_bottleneck: E0 bottleneck of the target frame, [B, ...].
        delta_bottleneck: Ed bottleneck of the neutral frame, [B, ...].

    Returns:
        [B] float32 intensities (non-negative).
    """
    batch = ops.shape(target_bottleneck)[0]
    difference = ops.reshape(
        ops.cast(target_bottleneck, "float32") - ops.cast(neutral_bottleneck, "float32"),
        (batch, -1),
    )
    direction = ops.reshape(ops.cast(delta_bottleneck, "float32"), (batch, -1))
    projection = ops.sum(difference * direction, axis=-1)
    return ops.abs(projection) / (ops.sum(direction * direction, axis=-1) + EPSILON)
