"""One face to frames at N intensities with a Keras generator: encode once, decode many.

The one definition of `generate(image, intensities) -> frames`. Python generation
(`generation.py`), the sample GIFs written during training (`callbacks.py`) and every export
signature (`export/signature.py`, traced from these functions for SavedModel, TFLite and ONNX)
use it, so they cannot drift apart.

Intensities are calibrated (calibration.py: a = 1 is the apex of the expression): every function
that decodes takes the model's `apex` and applies `calibration.to_raw` just before the decoder,
so traced exports carry the apex as a constant in their graphs.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from affinegan_tf.calibration import UNCALIBRATED_APEX, to_raw
from affinegan_tf.data.pixels import to_model_range, to_uint8
from affinegan_tf.networks import AffineGenerator


def resize_to_model(image, image_size: int) -> tf.Tensor:
    """uint8 [H, W, 3] or [B, H, W, 3] -> float32 [.., S, S, 3] in [-1, 1] (bilinear, antialiased).

    Inputs already at the model size pass through unchanged (no resampling).
    """
    values = to_model_range(image)
    if values.shape[-3] == image_size and values.shape[-2] == image_size:
        return values
    return tf.image.resize(values, (image_size, image_size), method="bilinear", antialias=True)


def encode_face(generator: AffineGenerator, face):
    """Both encoders on one face: (base_features, delta_features), one tensor per U-Net level."""
    return generator.encode(face)


def decode_features(
    generator: AffineGenerator,
    base_features,
    delta_features,
    intensities,
    apex: float = UNCALIBRATED_APEX,
    face=None,
):
    """Frames for N intensities from one encoding, decoded as one batch, inference mode.

    Args:
        generator: The trained generator.
        base_features: E0 features from `encode_face`, batch 1.
        delta_features: Ed features from `encode_face`, batch 1.
        intensities: [N] float32, calibrated (1 = the apex).
        apex: The model's raw intensity at the apex (`run_folder.intensity_apex`); 1 decodes
            the intensities as given (the raw scale).
        face: The encoded face [1, S, S, 3] in [-1, 1] (attention output copies from it).

    Returns:
        [N, S, S, 3] float32 in [-1, 1].
    """
    if float(apex) != UNCALIBRATED_APEX:
        # base + to_raw(a) * delta, written as base + a * (apex * delta): a product with the
        # [N] intensities would be a 1-D activation in the exported graphs, which the TFLite GPU
        # delegate refuses (TFLite moves a scalar factor past any reshape to 4-D).
        delta_features = [to_raw(features, float(apex)) for features in delta_features]
    values = tf.cast(intensities, tf.float32)
    return generator.decode(base_features, delta_features, values, training=False, source=face)


def generate_frames_from_model_range(
    generator: AffineGenerator, face, intensities, apex: float = UNCALIBRATED_APEX
):
    """Encode one face once, decode all intensities as one batch (inference mode).

    Args:
        generator: The trained generator.
        face: [1, S, S, 3] float32 in [-1, 1].
        intensities: [N] float32, calibrated (see `decode_features`).
        apex: The model's raw intensity at the apex.

    Returns:
        [N, S, S, 3] float32 in [-1, 1].
    """
    base, delta = encode_face(generator, face)
    return decode_features(generator, base, delta, intensities, apex, face)


def make_generate(generator: AffineGenerator, apex: float = UNCALIBRATED_APEX):
    """`generate(image uint8 [H, W, 3], intensities float32 [N]) -> uint8 [N, S, S, 3]`.

    `intensities` are calibrated: 1 is the apex; `apex` (the model's raw intensity there) is a
    constant of the traced graph.
    """
    image_size = generator.config.image_size

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None, 3], tf.uint8, name="image"),
            tf.TensorSpec([None], tf.float32, name="intensities"),
        ]
    )
    def generate(image, intensities):
        face = resize_to_model(image, image_size)[tf.newaxis]
        frames = generate_frames_from_model_range(generator, face, intensities, apex)
        return {"frames": to_uint8(frames)}

    return generate


def generate_frames(
    generator: AffineGenerator, image: np.ndarray, intensities, apex: float = UNCALIBRATED_APEX
) -> np.ndarray:
    """Frames for one face with a Keras generator (the traced `generate`, cached on it).

    Args:
        generator: An AffineGenerator.
        image: uint8 [H, W, 3] RGB (resized to the model size inside the graph).
        intensities: sequence of N floats, calibrated (1 = the apex).
        apex: The model's raw intensity at the apex (`run_folder.intensity_apex`).

    Returns:
        uint8 [N, S, S, 3].
    """
    # One trace per generator: the apex changes during training (every sample GIF would trace
    # anew, and TensorFlow warns about retracing), so it scales the intensities here instead of
    # being a constant of the graph as in the exports.
    generate = getattr(generator, "_generate_function", None)
    if generate is None:
        generate = generator._generate_function = make_generate(generator)
    raw = to_raw(np.asarray(intensities, np.float32), float(apex)).astype(np.float32)
    frames = generate(np.asarray(image, np.uint8), raw)
    return frames["frames"].numpy()
