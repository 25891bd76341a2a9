"""Small layers: instance norm from plain 4-D ops, the U-Net down/up blocks, the affine combine.

Everything here is built from ops that TFLite's GPU delegate and ONNX mobile runtimes take as they
are: 4-D tensors, Conv2D / Conv2DTranspose / nearest resize, mean, power, multiply. No
tensorflow-addons (end of life, does not import with Keras 3).

A conv whose output goes straight into instance norm keeps its bias variable (the paper's parameter
counts and the checkpoint keys need it) but does not add it: the norm's mean subtraction removes
any per-channel constant exactly, so the add is dead work (and its zero gradient only rounding
noise).
"""

from __future__ import annotations

import keras
from keras import layers, ops


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


class DownBlock(layers.Layer):
    """One encoder level: [LeakyReLU(0.2)] -> conv 4x4 stride 2 -> [instance norm]."""

    def __init__(self, filters: int, activate: bool, normalise: bool, **kwargs):
        super().__init__(**kwargs)
        self.activate = activate
        self.conv = _conv(filters, 4, 2, name="conv", normalised=normalise)
        self.norm = InstanceNorm(name="norm") if normalise else None

    def call(self, inputs):
        values = ops.leaky_relu(inputs, 0.2) if self.activate else inputs
        values = self.conv(values)
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
        if self.outermost:
            return ops.tanh(values)
        values = self.norm(values)
        if self.dropout and training:
            values = keras.random.dropout(values, self.dropout, seed=self.dropout_seed)
        return values


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
