"""The two Adam optimisers and their learning-rate schedule, as the authors' code sets them up.

Adam with beta1 0.5, beta2 0.999 and epsilon 1e-8 (PyTorch's default; Keras's is 1e-7). The rate
is constant, then decays linearly to 0 over a tail at the end of the run (their `niter` +
`niter_decay` epochs; TrainConfig.decay_epochs / decay_steps / decay_fraction).
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from affinegan_tf.config import TrainConfig

ADAM_EPSILON = 1e-8


@keras.saving.register_keras_serializable(package="affinegan_tf")
class ConstantThenLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Learning rate: constant, then linear decay to 0 over the last `decay_steps` steps."""

    def __init__(self, base_rate: float, total_steps: int, decay_steps: int):
        self.base_rate = base_rate
        self.total_steps = total_steps
        self.decay_steps = decay_steps

    def __call__(self, step):
        step = ops.cast(step, "float32")
        remaining = (float(self.total_steps) - step) / float(max(self.decay_steps, 1))
        return self.base_rate * ops.clip(remaining, 0.0, 1.0)

    def rate_at(self, step: int) -> float:
        """The rate at `step`, in plain Python (for checks outside the graph)."""
        remaining = (self.total_steps - step) / max(self.decay_steps, 1)
        return self.base_rate * min(max(remaining, 0.0), 1.0)

    def describe(self) -> str:
        constant = self.total_steps - self.decay_steps
        return (
            f"{self.base_rate:g} until step {constant}, then linear to 0 at step {self.total_steps}"
        )

    def get_config(self):
        return {
            "base_rate": self.base_rate,
            "total_steps": self.total_steps,
            "decay_steps": self.decay_steps,
        }


def make_schedule(train_config: TrainConfig, total_steps: int) -> ConstantThenLinearDecay:
    """The learning-rate schedule of a run of `total_steps` generator steps."""
    return ConstantThenLinearDecay(
        train_config.learning_rate, total_steps, train_config.decay_steps_of(total_steps)
    )


class FusedAdam(keras.optimizers.Adam):
    """Keras's Adam with each variable's update as one fused TensorFlow op (ResourceApplyAdam).

    The same maths (m += (g - m)(1 - b1), v += (g^2 - v)(1 - b2), var -= lr_t m / (sqrt(v) + eps)
    with lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)), up to float rounding, in one pass over each
    variable instead of about ten elementwise ops with their temporaries: those were a fifth of
    the op time of a `tiny` training step (TF profiler). Under a distribution strategy, and for
    sparse gradients, Keras's own update runs (its per-replica variable handling).
    """

    def update_step(self, gradient, variable, learning_rate):
        if (
            self.amsgrad
            or tf.distribute.has_strategy()
            or isinstance(gradient, tf.IndexedSlices)
            or keras.backend.backend() != "tensorflow"
        ):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        step = ops.cast(self.iterations + 1, dtype)
        index = self._get_variable_index(variable)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle,
            m=self._momentums[index].handle,
            v=self._velocities[index].handle,
            beta1_power=ops.power(ops.cast(self.beta_1, dtype), step),
            beta2_power=ops.power(ops.cast(self.beta_2, dtype), step),
            lr=ops.cast(learning_rate, dtype),
            beta1=ops.cast(self.beta_1, dtype),
            beta2=ops.cast(self.beta_2, dtype),
            epsilon=ops.cast(self.epsilon, dtype),
            grad=ops.cast(gradient, dtype),
        )
        return None


def make_optimizers(train_config: TrainConfig, total_steps: int):
    """(generator_optimizer, discriminator_optimizer): Adam, loss-scaled under mixed precision."""

    def optimizer(name):
        adam = FusedAdam(
            make_schedule(train_config, total_steps),
            beta_1=train_config.beta_1,
            beta_2=train_config.beta_2,
            epsilon=ADAM_EPSILON,
            name=name,
        )
        return keras.optimizers.LossScaleOptimizer(adam) if train_config.loss_scaling else adam

    return optimizer("generator_adam"), optimizer("discriminator_adam")


def schedule_of(optimizer) -> ConstantThenLinearDecay | None:
    """The ConstantThenLinearDecay an optimiser made by make_optimizers runs on, else None."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    schedule = getattr(inner, "_learning_rate", None)
    return schedule if isinstance(schedule, ConstantThenLinearDecay) else None
