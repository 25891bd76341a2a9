"""TensorFlow runtime settings every training process applies before it builds a model.

One definition for `fit`, `measure_steps_per_second` and benchmarks/train_speed.py, so that what
is measured is what trains. Each setting is kept only where it was measured to help (issue 11).
"""

from __future__ import annotations

import tensorflow as tf


def apply_compute_settings() -> None:
    """Applies the training process's TensorFlow settings (call before building the model).

    Grappler's remapper is switched off: on this graph it fails ("fanout LeakyReluGrad exists for
    missing node .../conv_0/BiasAdd": the PatchGAN's and the encoder's conv + bias + LeakyReLU
    fusion drops a node the gradient reads), logs an error and leaves the graph unchanged, so it
    gains nothing. Still so with the bias adds before instance norm removed (measured). The
    oneDNN layout pass fuses conv + bias without it (_MklNativeConv2DWithBias in the profile).
    """
    tf.config.optimizer.set_experimental_options({"remapping": False})
