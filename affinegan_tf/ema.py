"""An exponential moving average (EMA) of the generator's weights, the generator to generate with.

GAN generators averaged over their recent steps (Karras et al., as in StyleGAN and BigGAN) give
cleaner images than the last weights. With `TrainConfig.ema_decay` = d > 0 the model keeps a
second, non-trainable AffineGenerator whose weights follow, after every generator update,

    average = d_t * average + (1 - d_t) * weight,   d_t = min(d, (1 + n) / (10 + n)),

n being the updates done before this one: the warm-up keeps the first averages from being
dominated by the random initial weights (d_t = 0.1 at the first update, 0.5 at the eighth).
Only the trainable weights (E0, Ed, De) are averaged; the copy's random-seed states are unused
(no noise or dropout at inference). The mlp ablation's intensity regressor is not averaged.

The update runs in graph, one read-subtract-apply per variable, and under tf.distribute the way
Keras's optimisers update their variables (`extended.update` in a merge call), so every replica's
copy stays equal.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from affinegan_tf.config import ModelConfig
from affinegan_tf.networks import AffineGenerator

# Name and variable-path prefix of the averaged copy (its checkpoint keys contain it).
AVERAGE_NAME = "generator_ema"
# Warm-up: d_t = min(d, (1 + n) / (WARM_UP + n)).
WARM_UP = 10.0


def warmed_up_decay(decay: float, updates):
    """d_t = min(decay, (1 + n) / (10 + n)) for n updates done before this one (float32)."""
    updates = tf.cast(updates, tf.float32)
    return tf.minimum(tf.constant(decay, tf.float32), (1.0 + updates) / (WARM_UP + updates))


def make_average_generator(config: ModelConfig, seed: int) -> AffineGenerator:
    """An unbuilt AffineGenerator for the average, its variable paths under `generator_ema/`.

    The name scope keeps the copy's random-seed states (created at construction, outside any
    layer scope) from sharing the generator's checkpoint keys.
    """
    with keras.name_scope(AVERAGE_NAME):
        return AffineGenerator(config, seed=seed, name=AVERAGE_NAME)


class WeightAverage:
    """Keeps `average`'s weights the EMA of `source`'s trainable weights.

    A plain object, not a layer: the variables stay those of the two generators (and their
    checkpoint keys). Call `build` once both generators are built.

    Args:
        source: The trained generator.
        average: A generator of the same configuration, holding the average.
        decay: The EMA decay d, 0 < d < 1.
    """

    def __init__(self, source: AffineGenerator, average: AffineGenerator, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.source = source
        self.average = average
        self.decay = decay
        self.pairs: list = []

    def build(self) -> None:
        """Pairs the variables, freezes the average and starts it at the source's weights."""
        if self.pairs:  # built already (the frozen average lists no trainable variables)
            return
        sources, averages = self.source.trainable_variables, self.average.trainable_variables
        for source, average in zip(sources, averages, strict=True):
            tail = source.path.split(self.source.name + "/", 1)[-1]
            if not average.path.endswith(tail) or source.shape != average.shape:
                raise RuntimeError(f"EMA variable {average.path} does not match {source.path}")
        self.pairs = list(zip(averages, sources, strict=True))
        # The optimisers and Keras's trainable_variables must never see the average.
        self.average.trainable = False
        self.reset()

    @property
    def variables(self) -> list:
        """Every variable of the average generator (averaged weights and unused seed states)."""
        return list(self.average.variables)

    def reset(self) -> None:
        """Sets the average to the source's current weights (at build, or for a checkpoint
        written without an average)."""
        for average, source in self.pairs:
            average.assign(source)

    def update(self, updates) -> None:
        """One EMA step towards the source's current weights (in graph; any replica context).

        Args:
            updates: Generator updates done before this one (the model's step counter).
        """
        decay = warmed_up_decay(self.decay, updates)
        tf.__internal__.distribute.interim.maybe_merge_call(
            self._update, tf.distribute.get_strategy(), decay
        )

    def _update(self, strategy, decay) -> None:
        def blend(average, source, decay):
            # average - (1 - d) * (average - source) = d * average + (1 - d) * source.
            return tf.raw_ops.ResourceApplyGradientDescent(
                var=average.handle, alpha=1.0 - decay, delta=average.read_value() - source
            )

        for average, source in self.pairs:
            strategy.extended.update(average.value, blend, args=(source.value, decay), group=False)
