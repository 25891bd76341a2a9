"""The export signatures: `generate(image, intensities) -> frames` in the form each format takes.

Every signature here is traced from `affinegan_tf.rendering` (encode once, decode many), the same
functions Python generation and the sample GIFs of training use, so they cannot drift apart.

Two families of entry points:
- uint8 at the edges (`make_generate`, `make_generate_batch`): any image size, resized inside the
  graph; what TensorFlow Serving and Python generation use.
- float32 [0, 1] at the edges, static model size (`make_generate_one`, `make_generate_frames`,
  `make_encode`, `make_decode`): what mobile runtimes take (no uint8 casts, no resize with
  antialiasing, 4-D tensors). The caller resizes with `resize_to_model` first, so every runtime
  sees the same pixels.

Intensities are calibrated (calibration.py: 1 is the apex of the expression). Each factory takes
the model's `apex` and traces it into the graph as a constant (`rendering.decode_features`), so
an exported model needs nothing but its inputs; the input names stay `intensities` / `intensity`.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from affinegan_tf.calibration import UNCALIBRATED_APEX
from affinegan_tf.config import PIXEL_OFFSET, PIXEL_SCALE
from affinegan_tf.data.pixels import to_model_range, to_uint8
from affinegan_tf.networks import AffineGenerator
from affinegan_tf.rendering import (
    decode_features,
    encode_face,
    generate_frames_from_model_range,
    resize_to_model,
)
from affinegan_tf.rendering import make_generate as make_generate

# Bumped whenever the files or the I/O of an export change; `generate` refuses other versions.
EXPORT_FORMAT_VERSION = 1

# Unit range [0, 1] <-> model range [-1, 1], from the one pixel normalisation in config.py:
# a pixel p is p / 255 in unit range and p / PIXEL_SCALE - PIXEL_OFFSET in model range.
_UNIT_TO_PIXELS = 2.0 * PIXEL_SCALE


def unit_to_model_range(values) -> tf.Tensor:
    """float [0, 1] images (the mobile formats' input) -> float32 [-1, 1]."""
    return to_model_range(tf.cast(values, tf.float32) * _UNIT_TO_PIXELS)


def model_range_to_unit(values) -> tf.Tensor:
    """float [-1, 1] images -> float32 [0, 1] (the mobile formats' output; not clipped)."""
    return (tf.cast(values, tf.float32) + PIXEL_OFFSET) * (PIXEL_SCALE / _UNIT_TO_PIXELS)


def make_generate_batch(generator: AffineGenerator, apex: float = UNCALIBRATED_APEX):
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
            frames = generate_frames_from_model_range(
                generator, face[tf.newaxis], intensities, apex
            )
            return to_uint8(frames)

        frames = tf.map_fn(
            one_face,
            faces,
            fn_output_signature=tf.TensorSpec([None, image_size, image_size, 3], tf.uint8),
        )
        return {"frames": frames}

    return generate_batch


# ----------------------------------------------------------------------------- mobile entry points


def _face_spec(image_size: int) -> tf.TensorSpec:
    return tf.TensorSpec([1, image_size, image_size, 3], tf.float32, name="image")


def make_generate_frames(
    generator: AffineGenerator,
    num_intensities: int | None = None,
    apex: float = UNCALIBRATED_APEX,
):
    """`generate_frames(image f32 [1, S, S, 3] in [0, 1], intensities f32 [N]) -> [N, S, S, 3]`.

    The float, fixed-size form of `generate` (encode once, decode N as one batch). With
    `num_intensities=1` it is `generate_one`, the static single-frame model for mobile GPUs;
    with None, N is dynamic (the ONNX dynamic-batch variant).
    """
    image_size = generator.config.image_size

    @tf.function(
        input_signature=[
            _face_spec(image_size),
            tf.TensorSpec([num_intensities], tf.float32, name="intensities"),
        ]
    )
    def generate_frames(image, intensities):
        frames = generate_frames_from_model_range(
            generator, unit_to_model_range(image), intensities, apex
        )
        return {"frames": model_range_to_unit(frames)}

    return generate_frames


def make_generate_one(generator: AffineGenerator, apex: float = UNCALIBRATED_APEX):
    """`generate_one(image f32 [1, S, S, 3] in [0, 1], intensity f32 [1]) -> f32 [1, S, S, 3]`.

    Static shapes throughout: the model for TFLite GPU delegates and NNAPI/CoreML.
    """
    image_size = generator.config.image_size

    @tf.function(
        input_signature=[_face_spec(image_size), tf.TensorSpec([1], tf.float32, name="intensity")]
    )
    def generate_one(image, intensity):
        frames = generate_frames_from_model_range(
            generator, unit_to_model_range(image), intensity, apex
        )
        return {"frames": model_range_to_unit(frames)}

    return generate_one


def feature_names(generator: AffineGenerator) -> list[str]:
    """Names of the encode outputs / decode inputs: base_0.., then delta_0.., outermost first.

    A generator with attention output also passes the face itself (`source`, in [-1, 1]) from
    encode to decode: its frames copy the unchanged parts from it.
    """
    levels = generator.config.levels
    names = [f"base_{level}" for level in range(levels)]
    names += [f"delta_{level}" for level in range(levels)]
    return names + (["source"] if _copies_source(generator) else [])


def _copies_source(generator: AffineGenerator) -> bool:
    return generator.config.output == "attention"


def feature_shapes(generator: AffineGenerator) -> list[list[int]]:
    """Static shapes [1, H, W, C] of the features named by `feature_names`."""
    size = generator.config.image_size
    shapes = [
        [1, size // 2 ** (level + 1), size // 2 ** (level + 1), channels]
        for level, channels in enumerate(generator.config.encoder_channels())
    ]
    source = [[1, size, size, 3]] if _copies_source(generator) else []
    return shapes + shapes + source


def make_encode(generator: AffineGenerator, apex: float = UNCALIBRATED_APEX):
    """`encode(image f32 [1, S, S, 3] in [0, 1]) -> {base_i, delta_i}`: run once per photo.

    `apex` is not used (the encoders see no intensity); it is accepted so that every factory
    here is called alike.
    """
    image_size = generator.config.image_size
    names = feature_names(generator)

    @tf.function(input_signature=[_face_spec(image_size)])
    def encode(image):
        face = unit_to_model_range(image)
        base, delta = encode_face(generator, face)
        source = [face] if _copies_source(generator) else []
        return dict(zip(names, list(base) + list(delta) + source, strict=True))

    return encode


def make_decode(generator: AffineGenerator, apex: float = UNCALIBRATED_APEX):
    """`decode(base_i, delta_i, intensity f32 [1]) -> frames f32 [1, S, S, 3] in [0, 1]`.

    Run once per intensity on the features `make_encode` returned: half the work of
    `generate_one` per frame.
    """
    names = feature_names(generator)
    shapes = feature_shapes(generator)
    levels = generator.config.levels
    specs = [
        tf.TensorSpec(shape, tf.float32, name=name)
        for name, shape in zip(names, shapes, strict=True)
    ]

    @tf.function(input_signature=[*specs, tf.TensorSpec([1], tf.float32, name="intensity")])
    def decode(*features_and_intensity):
        *features, intensity = features_and_intensity
        face = features[2 * levels] if _copies_source(generator) else None
        frames = decode_features(
            generator, features[:levels], features[levels : 2 * levels], intensity, apex, face
        )
        return {"frames": model_range_to_unit(frames)}

    return decode


# ------------------------------------------------------------------------ weights from elsewhere


def float_variables(generator: AffineGenerator) -> list:
    """The generator's weights (its float variables; seed-generator states are left out)."""
    return [variable for variable in generator.variables if "float" in str(variable.dtype)]


def with_weights(function, generator: AffineGenerator, weights):
    """`function` (one of the signatures above) re-traced with its weights read from `weights`.

    The converters freeze plain `tf.Variable`s well but not Keras 3 variables, and tf2onnx copies
    constant weights many times over; tracing the same Python body with the weights mapped to
    other tensors (Keras's StatelessScope) lets each exporter pick what it handles best.

    Args:
        function: A tf.function with an input signature, from this module.
        generator: The generator whose variables `function` reads.
        weights: One tensor or tf.Variable per `float_variables(generator)`, same shapes.

    Returns:
        A tf.function with the same input signature and outputs.
    """
    variables = float_variables(generator)
    body = function.python_function

    @tf.function(input_signature=function.input_signature)
    def traced(*inputs):
        with keras.StatelessScope(state_mapping=list(zip(variables, weights, strict=True))):
            return body(*inputs)

    return traced


def with_weight_inputs(function, generator: AffineGenerator):
    """`function` re-traced with the generator's weights as extra inputs `weight_0`, `weight_1`..

    Returns:
        (tf.function, input specs, weight names): the function takes the original inputs followed
        by one tensor per `float_variables(generator)`.
    """
    variables = float_variables(generator)
    body = function.python_function
    names = [f"weight_{index}" for index in range(len(variables))]
    specs = [
        *function.input_signature,
        *(
            tf.TensorSpec(variable.shape, variable.dtype, name=name)
            for variable, name in zip(variables, names, strict=True)
        ),
    ]
    count = len(function.input_signature)

    @tf.function(input_signature=specs)
    def traced(*inputs):
        values = inputs[count:]
        with keras.StatelessScope(state_mapping=list(zip(variables, values, strict=True))):
            return body(*inputs[:count])

    return traced, specs, names
