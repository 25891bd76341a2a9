"""The two Adam optimisers and their learning-rate schedule, as the authors' code sets them up.

Adam with beta1 0.5, beta2 0.999 and epsilon 1e-8 (PyTorch's default; Keras's is 1e-7). The rate
is constant, then decays linearly to 0 over a tail at the end of the run (their `niter` +
`niter_decay` epochs; TrainConfig.decay_epochs / decay_steps / decay_fraction).
"""

from __future__ import annotations

import keras
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


def make_optimizers(train_config: TrainConfig, total_steps: int):
    """(generator_optimizer, discriminator_optimizer): Adam, loss-scaled under mixed precision."""

    def optimizer(name):
        adam = keras.optimizers.Adam(
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
