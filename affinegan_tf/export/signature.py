"""The one definition of `generate(image, intensities) -> frames`, used by every format.

Python generation, sample GIFs during training, the SavedModel signatures, the TFLite models and
the ONNX graphs are all traced from the functions here, so they cannot drift apart.
"""

from __future__ import annotations

import tensorflow as tf

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


def generate_frames_from_model_range(generator: AffineGenerator, face, intensities):
    """Encode one face once, decode all intensities as one batch (inference mode).

    Args:
        generator: The trained generator.
        face: [1, S, S, 3] float32 in [-1, 1].
        intensities: [N] float32.

    Returns:
        [N, S, S, 3] float32 in [-1, 1].
    """
    base, delta = generator.encode(face)
    return generator.decode(base, delta, tf.cast(intensities, tf.float32), training=False)


def make_generate(generator: AffineGenerator):
    """`generate(image uint8 [H, W, 3], intensities float32 [N]) -> uint8 [N, S, S, 3]`."""
    image_size = generator.config.image_size

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None, 3], tf.uint8, name="image"),
            tf.TensorSpec([None], tf.float32, name="intensities"),
        ]
    )
    def generate(image, intensities):
        face = resize_to_model(image, image_size)[tf.newaxis]
        return {"frames": to_uint8(generate_frames_from_model_range(generator, face, intensities))}

    return generate


def make_generate_batch(generator: AffineGenerator):
    """`generate_batch(images uint8 [B, H, W, 3], intensities [N]) -> uint8 [B, N, S, S, 3]`."""
    image_size = generator.config.image_size

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None, None, 3], tf.uint8, name="images"),
            tf.TensorSpec([None], tf.float32, name="intensities"),
        ]
    )
    def generate_batch(images, intensities):
        faces = resize_to_model(images, image_size)

        def one_face(face):
            frames = generate_frames_from_model_range(generator, face[tf.newaxis], intensities)
            return to_uint8(frames)

        frames = tf.map_fn(
            one_face,
            faces,
            fn_output_signature=tf.TensorSpec([None, image_size, image_size, 3], tf.uint8),
        )
        return {"frames": frames}

    return generate_batch
