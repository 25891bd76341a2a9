"""How intensity is read off faces: the projection formula and the estimator of each mode.

`infer_intensity` is the one definition of the method's formula. `IntensityEstimator` is the one
place that knows the three intensity modes of the ablation study (affine / mlp / temporal); both
the training forward pass (`AffineGAN._generator_forward`) and inference (`AffineGAN.
infer_intensities`, the `intensity` and `evaluate` commands, the intensity range written during
training) go through it; inference through `AffineGAN.inference_estimator`, the estimator bound to
the generator's weight average when the run keeps one.
"""

from __future__ import annotations

import copy

import numpy as np
from keras import ops

from affinegan_tf.config import INTENSITY_FORMULAS, ModelConfig
from affinegan_tf.data.pixels import to_model_range
from affinegan_tf.networks import AffineGenerator, IntensityRegressor

EPSILON = 1e-8
# The authors' code adds 1e-6 to |f_d| (models/affineGAN_model.py, get_alpha).
AUTHORS_CODE_EPSILON = 1e-6
# Frames sent through the encoder at once by `IntensityEstimator.from_frames` (bounds memory).
INFERENCE_BATCH = 32


def _coefficient(difference, direction, formula: str):
    """|<difference, direction>| / norm(direction), reduced over the last axis (broadcasting)."""
    projection = ops.sum(difference * direction, axis=-1)
    squared_norm = ops.sum(direction * direction, axis=-1)
    if formula == "paper":
        return ops.abs(projection) / (squared_norm + EPSILON)
    if formula == "authors_code":
        return ops.abs(projection) / (ops.sqrt(squared_norm) + AUTHORS_CODE_EPSILON)
    raise ValueError(f"intensity formula must be one of {INTENSITY_FORMULAS}, got {formula!r}")


def infer_intensity(neutral_bottleneck, target_bottleneck, delta_bottleneck, formula="paper"):
    """Least-squares coefficient of (f_t - f_0) on f_d, per sample.

    "paper": a_t = |<f_t - f_0, f_d>| / (<f_d, f_d> + eps), with f_0 = E0(I0), f_t = E0(I_t) and
    f_d = Ed(I0) flattened per sample. "authors_code": the authors' code divided by |f_d| instead
    of its square (it also summed the dot product over the batch, hidden by batch size 1; not
    reproduced).

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
    return _coefficient(difference, direction, formula)


def _flatten_features(values, leading_axes: int):
    """[d_1, ..., d_n, h, w, c] -> [d_1, ..., d_n, h * w * c] (float32)."""
    features = int(np.prod(values.shape[leading_axes:]))
    return ops.reshape(ops.cast(values, "float32"), (*ops.shape(values)[:leading_axes], features))


class IntensityEstimator:
    """The intensity a_t of target frames relative to a neutral frame, in a model's mode.

    - "affine" (the method): `infer_intensity` with `config.intensity_formula`;
    - "mlp" (the paper's ablation): the IntensityRegressor on the E0 bottlenecks;
    - "temporal" (FAN-style labels): the target's position t / T in its video; no estimator
      from images.

    A plain object, not a Keras layer: the regressor stays an attribute of the model that owns
    it (AffineGAN.intensity_regressor), so its variable paths (the checkpoint keys,
    `affinegan/intensity_regressor/...`) are those of every earlier checkpoint.

    Args:
        config: The model configuration (intensity mode and formula).
        generator: The generator whose encoders E0 and Ed the intensities are read from.
    """

    def __init__(self, config: ModelConfig, generator: AffineGenerator):
        self.mode = config.intensity
        self.formula = config.intensity_formula
        self.gradient = config.intensity_gradient
        self.generator = generator
        self.regressor = (
            IntensityRegressor(name="intensity_regressor") if self.mode == "mlp" else None
        )

    def bound_to(self, generator: AffineGenerator) -> IntensityEstimator:
        """The same estimator (mode, formula, regressor) reading `generator`'s encoders: the
        model's inference estimator reads its weight average (ema.py)."""
        bound = copy.copy(self)
        bound.generator = generator
        return bound

    @property
    def reads_images(self) -> bool:
        """Whether intensities come from the images (False for temporal labels)."""
        return self.mode != "temporal"

    def build(self, bottleneck_shape) -> None:
        """Creates the regressor's weights (mlp); call from the owning model's build()."""
        if self.regressor is not None:
            bottleneck = ops.zeros((1, *bottleneck_shape))
            self.regressor(bottleneck, bottleneck)

    def from_bottlenecks(self, neutral, targets, delta, positions=None):
        """Intensities of K targets per neutral frame, with gradients (training forward).

        Args:
            neutral: E0 bottleneck of the neutral frames, [B, h, w, c].
            targets: E0 bottleneck of the targets, [B, K, h, w, c].
            delta: Ed bottleneck of the neutral frames, [B, h, w, c].
            positions: [B, K] positions t / T of the targets in their videos (temporal mode).

        Returns:
            [B, K] float32. One neutral row serves its K targets by broadcasting (no copies).
        """
        if self.mode == "temporal":
            return ops.cast(positions, "float32")
        count, repeats = ops.shape(targets)[0], ops.shape(targets)[1]
        neutral = _flatten_features(neutral, 1)[:, None]  # [B, 1, F]
        targets = _flatten_features(targets, 2)  # [B, K, F]
        if self.mode == "mlp":
            neutral = ops.broadcast_to(neutral, ops.shape(targets))
            flat = (-1, targets.shape[-1])
            values = self.regressor(ops.reshape(neutral, flat), ops.reshape(targets, flat))
            return ops.reshape(values, (count, repeats))
        delta = _flatten_features(delta, 1)[:, None]
        return _coefficient(targets - neutral, delta, self.formula)

    def for_decoder(self, intensities):
        """The intensities the decoder is given during training.

        The generator sees a_t as a constant (only D_a's loss pulls gradients through it), as in
        the authors' code, except for the mlp regressor, which learns from the reconstruction
        loss through the decoder, and with `intensity_gradient` on, where the generator's losses
        train the encoders through a_t too.
        """
        if self.mode == "mlp" or self.gradient:
            return intensities
        return ops.stop_gradient(intensities)

    def from_images(self, neutral, frames):
        """Intensity of each frame relative to one neutral frame (inference).

        Args:
            neutral: [1, S, S, 3] in [-1, 1].
            frames: [N, S, S, 3] in [-1, 1].

        Returns:
            [N] float32 intensities.
        """
        if not self.reads_images:
            raise ValueError("a model trained with temporal labels has no intensity estimator")
        neutral_base = self.generator.base_encoder(neutral)[-1]
        delta = self.generator.delta_encoder(neutral)[-1]
        targets = self.generator.base_encoder(frames)[-1]
        return self.from_bottlenecks(neutral_base, targets[None], delta)[0]

    def from_frames(self, neutral: np.ndarray, frames: np.ndarray) -> np.ndarray:
        """`from_images` on uint8 frames at the model size, INFERENCE_BATCH frames at a time.

        Args:
            neutral: uint8 [S, S, 3].
            frames: uint8 [N, S, S, 3].

        Returns:
            float32 [N].
        """
        neutral_input = to_model_range(neutral[np.newaxis])
        values = [
            np.asarray(
                self.from_images(
                    neutral_input, to_model_range(frames[start : start + INFERENCE_BATCH])
                )
            )
            for start in range(0, len(frames), INFERENCE_BATCH)
        ]
        return np.concatenate(values).astype(np.float32).reshape(-1)
