"""The networks: U-Net encoder/decoder, the affine generator, PatchGAN and intensity discriminators.

Shapes follow pix2pix's U-Net for any power-of-two size: log2(size) levels, 1x1 bottleneck.
"""

from __future__ import annotations

import contextlib
import random

import keras
from keras import layers, ops

from affinegan_tf.config import ModelConfig
from affinegan_tf.layers import DownBlock, InstanceNorm, UpBlock, _conv, affine_combine


class Encoder(keras.Model):
    """pix2pix U-Net encoder; returns the output of every level, outermost first.

    The last entry is the 1x1 bottleneck; the others are the skip tensors.
    """

    def __init__(self, config: ModelConfig, **kwargs):
        super().__init__(**kwargs)
        channels = config.encoder_channels()
        last = len(channels) - 1
        self.blocks = [
            DownBlock(
                filters,
                activate=index > 0,
                normalise=0 < index < last,
                name=f"down_{index}",
            )
            for index, filters in enumerate(channels)
        ]

    def call(self, images, training=False):
        """`training` lets the innermost levels compute as matrix products (layers.py)."""
        features = []
        values = images
        for block in self.blocks:
            values = block(values, training=training)
            features.append(values)
        return features


class Decoder(keras.Model):
    """pix2pix U-Net decoder consuming the (combined) features of every level; tanh output.

    With `config.output == "attention"` the outermost block draws a fourth channel, the mask m
    (its tanh mapped to [0, 1]), and the frame is m * drawn + (1 - m) * source.
    """

    def __init__(self, config: ModelConfig, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.attention = config.output == "attention"
        channels = config.encoder_channels()
        levels = len(channels)
        self.blocks = []
        # Block j upsamples from level j to level j-1; the innermost is j = levels - 1.
        for level in range(levels - 1, -1, -1):
            outermost = level == 0
            with_dropout = levels - 1 - config.dropout_blocks <= level < levels - 1
            self.blocks.append(
                UpBlock(
                    (4 if self.attention else 3) if outermost else channels[level - 1],
                    upsample=config.upsample,
                    outermost=outermost,
                    dropout=config.dropout if with_dropout else 0.0,
                    seed=None if seed is None else seed + level,
                    name=f"up_{level}",
                )
            )

    def call(self, features, training=False, source=None, return_mask=False):
        """Features of every level (and, for attention output, the source frames) -> frames.

        `source` is [N or 1, S, S, 3] in [-1, 1]; required for attention output, unused else.
        `return_mask` (attention output only; the training step's mask penalties) returns
        (frames, masks [N, S, S, 1] in [0, 1]) instead of the frames. Generation and every
        export call the decoder without it, so their graphs and signatures never see the mask.
        """
        if return_mask and not self.attention:
            raise ValueError("only a decoder with attention output draws a mask to return")
        values = features[-1]
        for index, block in enumerate(self.blocks):
            if index > 0:
                # pix2pix concatenates the skip first, then the upsampled tensor.
                values = ops.concatenate([features[-1 - index], values], axis=-1)
            values = block(values, training=training)
        if not self.attention:
            return values
        if source is None:
            raise ValueError("a decoder with attention output needs the source frames")
        drawn, mask = values[..., :3], 0.5 * (values[..., 3:] + 1.0)
        frames = source + mask * (drawn - source)
        return (frames, mask) if return_mask else frames


class AffineGenerator(keras.Model):
    """G(I0, a) = De(E0(I0) + a * Ed(I0)), the combine applied at every U-Net level.

    `encode` and `decode` are split so that one encoding serves any number of intensities.
    """

    def __init__(self, config: ModelConfig, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.base_encoder = Encoder(config, name="base_encoder")
        self.delta_encoder = Encoder(config, name="delta_encoder")
        self.decoder = Decoder(config, seed=seed, name="decoder")
        self.noise_seed = keras.random.SeedGenerator(seed + 7919, name="noise_seed")

    def build(self, input_shape=None):
        size = self.config.image_size
        dummy = ops.zeros((1, size, size, 3))
        base, delta = self.encode(dummy)
        self.decode(base, delta, ops.zeros((1,)), source=dummy)
        self.built = True

    def encode(self, images):
        """Encodes faces with both encoders.

        Args:
            images: [B, S, S, 3] float in [-1, 1].

        Returns:
            (base_features, delta_features): two lists with one tensor per level.
        """
        return self.base_encoder(images), self.delta_encoder(images)

    def combine(self, base_features, delta_features, intensities, training=False):
        """base + a * delta at every level, plus N(0, noise_std) noise when training.

        `intensities` is [N] or [B, K] (see `affine_combine`).
        """
        combined = []
        for base, delta in zip(base_features, delta_features, strict=True):
            values = affine_combine(base, delta, intensities)
            if training and self.config.noise_std > 0:
                values = values + self.config.noise_std * keras.random.normal(
                    ops.shape(values), dtype=values.dtype, seed=self.noise_seed
                )
            combined.append(values)
        return combined

    def decode(self, base_features, delta_features, intensities, training=False, source=None):
        """Decodes N intensities in one batch.

        Args:
            base_features: from `encode`, batch N or 1.
            delta_features: from `encode`, batch N or 1.
            intensities: [N] float.
            training: enables noise and dropout.
            source: the encoded faces [N or 1, S, S, 3] in [-1, 1]; needed by attention output.

        Returns:
            [N, S, S, 3] images in [-1, 1].
        """
        combined = self.combine(base_features, delta_features, intensities, training=training)
        return self.decoder(combined, training=training, source=source)

    def call(self, inputs, training=False):
        """(images [B, S, S, 3], intensities [B]) -> [B, S, S, 3]."""
        images, intensities = inputs
        base, delta = self.encode(images)
        return self.decode(base, delta, intensities, training=training, source=images)


class PatchDiscriminator(keras.Model):
    """Conditional 70x70 PatchGAN on the 6-channel (I0, image) pair; 30x30 logits at 256."""

    def __init__(self, ndf: int, **kwargs):
        super().__init__(**kwargs)
        specs = [(ndf, 2, False), (ndf * 2, 2, True), (ndf * 4, 2, True), (ndf * 8, 1, True)]
        self.pad = layers.ZeroPadding2D(1)
        self.convs = [
            _conv(filters, 4, strides, name=f"conv_{index}", padding="valid", normalised=normalise)
            for index, (filters, strides, normalise) in enumerate(specs)
        ]
        self.norms = [
            InstanceNorm(name=f"norm_{index}") if normalise else None
            for index, (_, _, normalise) in enumerate(specs)
        ]
        self.logits = _conv(1, 4, 1, name="logits", padding="valid")

    def call(self, inputs):
        values = inputs
        for conv, norm in zip(self.convs, self.norms, strict=True):
            values = conv(self.pad(values))
            if norm is not None:
                values = norm(values)
            values = ops.leaky_relu(values, 0.2)
        return self.logits(self.pad(values))


def _dense(units: int, name: str) -> layers.Dense:
    # Initialised like every conv here and every layer of the authors' code: normal(0, 0.02),
    # bias 0. Keras's glorot default made D_a sharply discriminative from the first step.
    return layers.Dense(
        units, kernel_initializer=keras.initializers.RandomNormal(stddev=0.02), name=name
    )


class IntensityDiscriminator(keras.Model):
    """D_a: an MLP (K -> K -> K -> 1) on the K inferred intensities of one training sample."""

    def __init__(self, num_targets: int, **kwargs):
        super().__init__(**kwargs)
        self.hidden = [_dense(num_targets, name=f"dense_{index}") for index in range(2)]
        self.logit = _dense(1, name="logit")

    def call(self, intensities):
        values = intensities
        for dense in self.hidden:
            values = ops.leaky_relu(dense(values), 0.2)
        return self.logit(values)


class IntensityRegressor(keras.Model):
    """The paper's plain-MLP ablation: intensity regressed from bottleneck features.

    Input: the flattened E0 bottlenecks of the neutral and the target frame; output in [0, 1].
    """

    def __init__(self, width: int = 64, **kwargs):
        super().__init__(**kwargs)
        self.hidden = _dense(width, name="hidden")
        self.output_layer = _dense(1, name="output")

    def call(self, neutral_bottleneck, target_bottleneck):
        batch = ops.shape(target_bottleneck)[0]
        values = ops.concatenate(
            [
                ops.reshape(neutral_bottleneck, (batch, -1)),
                ops.reshape(target_bottleneck, (batch, -1)),
            ],
            axis=-1,
        )
        values = ops.leaky_relu(self.hidden(values), 0.2)
        return ops.sigmoid(ops.squeeze(self.output_layer(values), axis=-1))


def count_parameters(model: keras.Model) -> int:
    """Total number of weights of a built model."""
    return int(sum(ops.size(weight) for weight in model.weights))


@contextlib.contextmanager
def seeded_initializers(seed: int):
    """Weight initialisers created inside draw their seeds from `seed`, not the global state.

    Keras gives an unseeded initialiser a seed from Python's `random` when the layer is
    constructed; this seeds that draw and then puts the caller's random state back.
    """
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)
