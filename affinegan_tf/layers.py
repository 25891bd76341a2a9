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

import keras
import tensorflow as tf
from keras import layers, ops

from affinegan_tf import conv_forms
from affinegan_tf.conv_forms import TRANSPOSE_TAPS


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


# The innermost U-Net levels work on maps of 4x4 pixels and less with the widest kernels (at 64 x
# 64, 256 channels in and out at 4x4, 2x2 and 1x1): there the CPU conv kernels are bound by their
# per-call set-up and weight traffic, not by arithmetic. The same maths as one matrix product over
# the kernel taps takes a fraction of the time, forward and backward (a 2-core Zen 3, fwd + bwd,
# batch 10: the 2x2 -> 4x4 transposed conv 67 -> 15 ms, 1x1 -> 2x2 15 -> 4 ms; the 4x4 -> 2x2 conv
# 26 -> 9 ms, 2x2 -> 1x1 17 -> 5 ms; at 4x4 and 8x8 the transposed conv, and at 8x8 the conv, are
# faster as they are). Training steps take this path for both convs; generation in Python for
# the decoder's transposed convs, which run once per frame. Exports (SavedModel, TFLite, ONNX)
# trace under `conv_forms.portable_graph()` and keep the standard Conv2D / Conv2DTranspose ops
# that converters, servers and mobile delegates map natively. Maps of unknown size take the conv
# ops. Larger maps may take the sub-pixel forms of `conv_forms`, where this machine gains by them.
SMALL_MAP_CONV = 4
SMALL_MAP_CONV_TRANSPOSE = 2


def _is_small(values, limit: int) -> bool:
    """Whether `values`' height and width are known and at most `limit`."""
    height, width = values.shape[1], values.shape[2]
    return height is not None and width is not None and max(height, width) <= limit


def small_map_conv(inputs, kernel):
    """A 4x4 stride-2 "same" convolution of a map of at most 4x4 pixels as a matrix product.

    Args:
        inputs: [N, H, W, C_in] with H and W even and at most 4.
        kernel: [4, 4, C_in, C_out] (Keras's Conv2D layout).

    Returns:
        [N, H / 2, W / 2, C_out], equal to the convolution up to float rounding.
    """
    height, width, channels = inputs.shape[1], inputs.shape[2], inputs.shape[3]
    outputs = kernel.shape[3]
    if height == 2 and width == 2:
        # One output pixel; "same" padding puts the 2x2 input under taps 1..2 of each axis.
        patches = ops.reshape(inputs, (-1, 4 * channels))
        taps = ops.reshape(kernel[1:3, 1:3], (4 * channels, outputs))
        return ops.reshape(ops.matmul(patches, taps), (-1, 1, 1, outputs))
    padded = ops.pad(inputs, ((0, 0), (1, 1), (1, 1), (0, 0)))
    patches = ops.concatenate(
        [
            padded[:, row : row + height : 2, col : col + width : 2, :]
            for row in range(4)
            for col in range(4)
        ],
        axis=-1,
    )
    product = ops.matmul(
        ops.reshape(patches, (-1, 16 * channels)), ops.reshape(kernel, (16 * channels, outputs))
    )
    return ops.reshape(product, (-1, height // 2, width // 2, outputs))


def small_map_conv_transpose(inputs, kernel):
    """A 4x4 stride-2 "same" transposed convolution of a map of at most 2x2 pixels, as a product.

    Args:
        inputs: [N, H, W, C_in] with H and W at most 2.
        kernel: [4, 4, C_out, C_in] (Keras's Conv2DTranspose layout).

    Returns:
        [N, 2H, 2W, C_out], equal to the transposed convolution up to float rounding.
    """
    height, width, channels = inputs.shape[1], inputs.shape[2], inputs.shape[3]
    outputs = kernel.shape[2]
    flat = ops.reshape(inputs, (-1, channels))
    if height == 1 and width == 1:
        # The four output pixels each see the one input pixel through one of the central taps.
        taps = ops.reshape(kernel[1:3, 1:3], (4 * outputs, channels))
        return ops.reshape(ops.matmul(flat, ops.transpose(taps)), (-1, 2, 2, outputs))
    # Every input pixel through every tap at once, then each output phase sums its four taps
    # from the (zero-padded) neighbouring input pixels; depth_to_space interleaves the phases.
    taps = ops.reshape(kernel, (16 * outputs, channels))
    spread = ops.reshape(ops.matmul(flat, ops.transpose(taps)), (-1, height, width, 16 * outputs))
    spread = ops.pad(spread, ((0, 0), (1, 1), (1, 1), (0, 0)))
    phases = []
    for row_phase in (0, 1):
        for col_phase in (0, 1):
            total = 0
            for row_offset, row_tap in TRANSPOSE_TAPS[row_phase].items():
                for col_offset, col_tap in TRANSPOSE_TAPS[col_phase].items():
                    tap = (row_tap * 4 + col_tap) * outputs
                    total = (
                        total
                        + spread[
                            :,
                            1 + row_offset : 1 + row_offset + height,
                            1 + col_offset : 1 + col_offset + width,
                            tap : tap + outputs,
                        ]
                    )
            phases.append(total)
    return tf.nn.depth_to_space(ops.concatenate(phases, axis=-1), 2)


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
