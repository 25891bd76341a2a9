"""Small layers: instance norm from plain 4-D ops, the U-Net down/up blocks, the affine combine.

Everything here is built from ops that TFLite's GPU delegate and ONNX mobile runtimes take as they
are: 4-D tensors, Conv2D / Conv2DTranspose / nearest resize, mean, sqrt, divide. No
tensorflow-addons (end of life, does not import with Keras 3).
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
        # Divide by sqrt rather than multiply by rsqrt: tf2onnx turns Rsqrt into a Reciprocal node,
        # which NNAPI/CoreML do not take.
        normalised = centred / ops.sqrt(variance + self.epsilon)
        return ops.cast(normalised, inputs.dtype)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


def _conv(filters: int, kernel_size: int, strides: int, name: str, padding: str = "same"):
    # Every conv keeps its bias, as pix2pix does when instance norm is used: the paper's parameter
    # counts (encoder 19,535,808) only match that way.
    return layers.Conv2D(
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
        self.conv = _conv(filters, 4, 2, name="conv")
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
            self.conv = layers.Conv2DTranspose(
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
            self.conv = _conv(filters, 3, 1, name="conv")
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
        intensities: [N] intensities; N must equal B, or B must be 1 (one face, N intensities:
            plain broadcasting, so exported graphs need no Tile/Expand).

    Returns:
        [N, H, W, C] combined features.
    """
    scale = ops.reshape(ops.cast(intensities, base.dtype), (-1, 1, 1, 1))
    return base + scale * delta
