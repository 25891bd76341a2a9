"""The intensity projection: the one definition of how intensity is read off features."""

from __future__ import annotations

from keras import ops

EPSILON = 1e-8
# The authors' code adds 1e-6 to |f_d| (models/affineGAN_model.py, get_alpha).
AUTHORS_CODE_EPSILON = 1e-6


def infer_intensity(neutral_bottleneck, target_bottleneck, delta_bottleneck, formula="paper"):
    """Projection coefficient of (f_t - f_0) on f_d, per sample.

    With f_0 = E0(I0), f_t = E0(I_t) and f_d = Ed(I0) flattened per sample:
    - "paper": a_t = |<f_t - f_0, f_d>| / (<f_d, f_d> + eps), the least-squares coefficient;
    - "authors_code": a_t = |<f_t - f_0, f_d>| / (|f_d| + 1e-6), what the authors' code computes
      and their released models were trained with (ModelConfig.intensity_formula).
    Their code also summed the dot product over the whole batch (hidden by batch size 1); here it
    is per sample in both formulas.

    Args:
        neutral_bottleneck: E0 bottleneck of the neutral frame, [B, ...].
        target_bottleneck: E0 bottleneck of the target frame, [B, ...].
        delta_bottleneck: Ed bottleneck of the neutral frame, [B, ...].
        formula: "paper" or "authors_code".

    Returns:
        [B] float32 intensities (non-negative).
    """
    batch = ops.shape(target_bottleneck)[0]
    difference = ops.reshape(
        ops.cast(target_bottleneck, "float32") - ops.cast(neutral_bottleneck, "float32"),
        (batch, -1),
    )
    direction = ops.reshape(ops.cast(delta_bottleneck, "float32"), (batch, -1))
    projection = ops.abs(ops.sum(difference * direction, axis=-1))
    squared_norm = ops.sum(direction * direction, axis=-1)
    if formula == "paper":
        return projection / (squared_norm + EPSILON)
    if formula == "authors_code":
        return projection / (ops.sqrt(squared_norm) + AUTHORS_CODE_EPSILON)
    raise ValueError(f"unknown intensity formula {formula!r}; expected 'paper' or 'authors_code'")
