"""Small layers: instance norm from plain 4-D ops, the U-Net down/up blocks, the affine combine.

Everything exported is built from ops that TFLite's GPU delegate and ONNX mobile runtimes take as
they are: 4-D tensors, Conv2D / Conv2DTranspose / nearest resize, mean, power, multiply (faster
forms of the same convolutions for training and Python generation are switched off by
`conv_forms.portable_graph()`). No tensorflow-addons (end of life, does not import with Keras 3).

A conv whose output goes straight into instance norm keeps its bias variable (the paper's parameter
counts and the checkpoint keys need it) but does not add it: the norm's mean subtraction removes
any per-channel constant exactly, so the add is dead work (and its zero gradient only rounding
noise).
"""

from __future__ import annotations

import functools

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from affinegan_tf import conv_forms


@keras.saving.register_keras_serializable(package="affinegan_tf")
class InstanceNorm(layers.Layer):
    """Instance normalisation over H and W without learned scale or offset (pix2pix's choice).

    Statistics are computed in float32 even under mixed precision: the variance of float16
    activations over a whole feature map underflows.
    """

    def __init__(self, epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def call(self, inputs):
        values = ops.cast(inputs, "float32")
        mean = ops.mean(values, axis=(1, 2), keepdims=True)
        centred = values - mean
        variance = ops.mean(ops.square(centred), axis=(1, 2), keepdims=True)
        # (var + eps)^-0.5 on the small [B, 1, 1, C] tensor, then one full-size multiply: forward
        # plus backward took 0.63-0.91x the time of a full-size divide by the deviation (issue
        # 11). A power, not 1/sqrt or rsqrt: tf2onnx turns those into a Reciprocal node, which
        # NNAPI/CoreML do not take; Pow is on the NNAPI, CoreML and TFLite GPU op lists.
        return ops.cast(centred * ops.power(variance + self.epsilon, -0.5), inputs.dtype)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="affinegan_tf")
class NormalisedConv2D(layers.Conv2D):
    """A Conv2D feeding instance norm: owns its bias (checkpoints, counts) but does not add it."""

    def call(self, inputs):
        return self.convolution_op(inputs, self.kernel)


@keras.saving.register_keras_serializable(package="affinegan_tf")
class NormalisedConv2DTranspose(layers.Conv2DTranspose):
    """A Conv2DTranspose feeding instance norm: owns its bias but does not add it."""

    def call(self, inputs):
        return ops.conv_transpose(
            inputs,
            self.kernel,
            strides=list(self.strides),
            padding=self.padding,
            output_padding=self.output_padding,
            dilation_rate=self.dilation_rate,
            data_format=self.data_format,
        )


def _conv(
    filters: int,
    kernel_size: int,
    strides: int,
    name: str,
    padding: str = "same",
    normalised: bool = False,
):
    """A conv with N(0, 0.02) weights and a bias.

    Every conv keeps its bias, as pix2pix does when instance norm is used: the paper's parameter
    counts (encoder 19,535,808) only match that way. With `normalised=True` (the output goes
    straight into instance norm) the bias is kept but not added.
    """
    conv_class = NormalisedConv2D if normalised else layers.Conv2D
    return conv_class(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        use_bias=True,
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.02),
        name=name,
    )


# The innermost U-Net levels work on small maps with the widest kernels: there the CPU conv
# kernels are bound by their per-call set-up and weight traffic, not by arithmetic. The same maths
# as matrix products takes a fraction of the time, forward and backward: the im2col (or, for the
# transposed conv, col2im) step is itself a product with a constant 0/1 matrix, so the backward
# pass is products too, with no slicing (strided-slice gradients fill a zero tensor of the
# slice's source per slice: they were 8 % of the `tiny` step). Measured fwd + bwd on a 2-core
# Emerald Rapids Xeon, batch 6, against the standard op: the 8x8 -> 4x4 conv 512 -> 512 channels
# 26 -> 14 ms, 16x16 -> 8x8 20 -> 28 ms (so not there); the 4x4 -> 8x8 transposed conv
# 1,024 -> 512 71 -> 30 ms, 8x8 -> 16x16 mixed (119 -> 89 ms at 1,024 channels, 9.7 -> 12.5 ms at
# 512 -> 128). Training steps take this path for both convs; generation in Python for the
# decoder's transposed convs, which run once per frame. Exports (SavedModel, TFLite, ONNX) trace
# under `conv_forms.portable_graph()` and keep the standard Conv2D / Conv2DTranspose ops that
# converters, servers and mobile delegates map natively. Maps of unknown size take the conv ops.
# Larger maps may take the sub-pixel forms of `conv_forms`, where this machine gains by them.
SMALL_MAP_CONV = 8
SMALL_MAP_CONV_TRANSPOSE = 4


def _is_small(values, limit: int) -> bool:
    """Whether `values`' height and width are known and at most `limit`."""
    height, width = values.shape[1], values.shape[2]
    return height is not None and width is not None and max(height, width) <= limit


@functools.cache
def _tap_matrix(height: int, width: int) -> np.ndarray:
    """Which input pixel each (output pixel, kernel tap) of a 4x4 stride-2 "same" conv reads.

    Returns:
        [(H / 2) * (W / 2) * 16, H * W] of 0/1: row (output pixel, tap row, tap column), column
        input pixel, both row-major. All-zero rows are taps on the zero padding. The transposed
        conv of an (H / 2) x (W / 2) map to H x W uses the same pairs the other way round.
    """
    out_height, out_width = height // 2, width // 2
    matrix = np.zeros((out_height * out_width * 16, height * width), np.float32)
    for out_row, out_col, tap_row, tap_col in np.ndindex(out_height, out_width, 4, 4):
        # "Same" padding of a 4x4 stride-2 conv of an even size puts one zero row/column before.
        row, col = 2 * out_row - 1 + tap_row, 2 * out_col - 1 + tap_col
        if 0 <= row < height and 0 <= col < width:
            matrix[
                ((out_row * out_width + out_col) * 4 + tap_row) * 4 + tap_col, row * width + col
            ] = 1
    return matrix


def small_map_conv(inputs, kernel):
    """A 4x4 stride-2 "same" convolution of a small map as matrix products.

    Args:
        inputs: [N, H, W, C_in] with H and W even and known.
        kernel: [4, 4, C_in, C_out] (Keras's Conv2D layout).

    Returns:
        [N, H / 2, W / 2, C_out], equal to the convolution up to float rounding.
    """
    height, width, channels = inputs.shape[1], inputs.shape[2], inputs.shape[3]
    outputs = kernel.shape[3]
    gather = tf.constant(_tap_matrix(height, width), inputs.dtype)
    patches = tf.linalg.matmul(gather, ops.reshape(inputs, (-1, height * width, channels)))
    product = tf.linalg.matmul(
        ops.reshape(patches, (-1, 16 * channels)), ops.reshape(kernel, (16 * channels, outputs))
    )
    return ops.reshape(product, (-1, height // 2, width // 2, outputs))


def small_map_conv_transpose(inputs, kernel):
    """A 4x4 stride-2 "same" transposed convolution of a small map as matrix products.

    Every input pixel goes through all 16 taps at once; a constant 0/1 matrix then adds up, for
    each output pixel, the taps that reach it (the tap pairs of `_tap_matrix`, transposed).

    Args:
        inputs: [N, H, W, C_in] with H and W known.
        kernel: [4, 4, C_out, C_in] (Keras's Conv2DTranspose layout).

    Returns:
        [N, 2H, 2W, C_out], equal to the transposed convolution up to float rounding.
    """
    height, width, channels = inputs.shape[1], inputs.shape[2], inputs.shape[3]
    outputs = kernel.shape[2]
    spread = tf.linalg.matmul(
        ops.reshape(inputs, (-1, channels)),
        ops.reshape(kernel, (16 * outputs, channels)),
        transpose_b=True,
    )
    # The conv of a 2H x 2W map reads pixel p through tap t at output q exactly when this
    # transposed conv sends input pixel q through tap t to output pixel p.
    scatter = tf.constant(_tap_matrix(2 * height, 2 * width), inputs.dtype)
    summed = tf.linalg.matmul(
        scatter, ops.reshape(spread, (-1, height * width * 16, outputs)), transpose_a=True
    )
    return ops.reshape(summed, (-1, 2 * height, 2 * width, outputs))


class DownBlock(layers.Layer):
    """One encoder level: [LeakyReLU(0.2)] -> conv 4x4 stride 2 -> [instance norm]."""

    def __init__(self, filters: int, activate: bool, normalise: bool, **kwargs):
        super().__init__(**kwargs)
        self.activate = activate
        self.conv = _conv(filters, 4, 2, name="conv", normalised=normalise)
        self.norm = InstanceNorm(name="norm") if normalise else None

    def call(self, inputs, training=False):
        values = ops.leaky_relu(inputs, 0.2) if self.activate else inputs
        conv, computation = self.conv, None
        if training and conv.built:
            if _is_small(values, SMALL_MAP_CONV):
                computation = small_map_conv
            elif _is_small(values, 2 * conv_forms.SUBPIXEL_CONV_TRANSPOSE) and (
                conv_forms.use_subpixel_forms()
            ):
                computation = conv_forms.fast_strided_conv
        if computation is None:
            values = conv(values)
        else:
            values = computation(values, ops.cast(conv.kernel, values.dtype))
            if self.norm is None:
                values = values + ops.cast(conv.bias, values.dtype)
        return self.norm(values) if self.norm is not None else values


class UpBlock(layers.Layer):
    """One decoder level: ReLU -> upsample x2 -> [instance norm] -> [dropout] (or tanh if last).

    Upsampling is a 4x4 stride-2 transposed conv (pix2pix) or, with `upsample="resize"`, a
    nearest-neighbour resize followed by a 3x3 conv: no ConvTranspose in exported graphs.
    """

    def __init__(
        self,
        filters: int,
        upsample: str,
        outermost: bool,
        dropout: float,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.outermost = outermost
        if upsample == "transpose":
            self.resize = False
            transpose_class = layers.Conv2DTranspose if outermost else NormalisedConv2DTranspose
            self.conv = transpose_class(
                filters,
                4,
                strides=2,
                padding="same",
                kernel_initializer=keras.initializers.RandomNormal(stddev=0.02),
                name="conv",
            )
        else:
            # A nearest resize, not keras.layers.UpSampling2D: Keras implements that as a
            # 5-D repeat (TFLite TILE/RESHAPE, ONNX Tile), which the TFLite GPU delegate,
            # NNAPI and CoreML do not take. ops.image.resize lowers to one resize op.
            self.resize = True
            self.conv = _conv(filters, 3, 1, name="conv", normalised=not outermost)
        self.norm = None if outermost else InstanceNorm(name="norm")
        self.dropout = dropout
        # A named seed generator (not keras.layers.Dropout's auto-numbered one) keeps the
        # variable path, and so the checkpoint key, the same in every process.
        self.dropout_seed = (
            keras.random.SeedGenerator(seed, name=f"{self.name}_dropout_seed") if dropout else None
        )

    def call(self, inputs, training=False):
        values = ops.relu(inputs)
        if self.resize:
            height, width = values.shape[1], values.shape[2]
            values = ops.image.resize(values, (2 * height, 2 * width), interpolation="nearest")
            values = self.conv(values)
        else:
            computation = self._conv_computation(values, training)
            if computation is None:
                values = self.conv(values)
            else:
                # Not outermost, so the conv feeds instance norm and owns no added bias.
                values = computation(values, ops.cast(self.conv.kernel, values.dtype))
        if self.outermost:
            return ops.tanh(values)
        values = self.norm(values)
        if self.dropout and training:
            values = keras.random.dropout(values, self.dropout, seed=self.dropout_seed)
        return values

    def _conv_computation(self, values, training):
        """The transposed conv's faster form for this map, or None for the layer's own op."""
        if self.outermost or not self.conv.built or conv_forms.is_portable():
            return None
        if _is_small(values, SMALL_MAP_CONV_TRANSPOSE):
            return small_map_conv_transpose
        if _is_small(values, conv_forms.SUBPIXEL_CONV_TRANSPOSE) and (
            conv_forms.use_subpixel_forms()
        ):
            return (
                conv_forms.fast_conv_transpose if training else conv_forms.subpixel_conv_transpose
            )
        return None


def affine_combine(base, delta, intensities):
    """The hidden affine transformation at one level: base + a * delta.

    Args:
        base: E0 features [B or 1, H, W, C].
        delta: Ed features, same shape as `base`.
        intensities: [N] intensities, N equal to B or B equal to 1 (one face, N intensities), or
            [B, K] (K intensities per face, as in training). Plain broadcasting either way: no
            repeated copies of the features, and exported graphs need no Tile/Expand.

    Returns:
        [N, H, W, C] combined features; [B * K, H, W, C] (face-major) for [B, K] intensities.
    """
    intensities = ops.cast(intensities, base.dtype)
    if len(intensities.shape) == 2:
        # [B, 1, H, W, C] + [B, K, 1, 1, 1] * [B, 1, H, W, C] -> [B, K, H, W, C] -> [B*K, ...].
        scale = ops.reshape(intensities, (-1, ops.shape(intensities)[1], 1, 1, 1))
        combined = ops.expand_dims(base, 1) + scale * ops.expand_dims(delta, 1)
        return ops.reshape(combined, (-1, *base.shape[1:]))
    scale = ops.reshape(intensities, (-1, 1, 1, 1))
    return base + scale * delta


def shift_randomly(images, max_shift: int, seed):
    """The batch shifted by one random offset in [-max_shift, max_shift] pixels on each axis.

    Borders are mirrored (symmetric padding), so the shift draws no new edge; the shape is kept.

    Args:
        images: [N, H, W, C] with H, W and C known.
        max_shift: The largest shift in pixels, >= 1.
        seed: A `keras.random.SeedGenerator` (or an int).
    """
    height, width, channels = images.shape[1], images.shape[2], images.shape[3]
    pad = [[0, 0], [max_shift, max_shift], [max_shift, max_shift], [0, 0]]
    padded = ops.pad(images, pad, mode="symmetric")
    offset = keras.random.randint((2,), 0, 2 * max_shift + 1, seed=seed)
    return ops.slice(
        padded, [0, offset[0], offset[1], 0], [ops.shape(images)[0], height, width, channels]
    )
