"""How fast a config trains on this machine, on random data (the demo's budget, the benchmarks)."""

from __future__ import annotations

import time

import keras
import tensorflow as tf

from affinegan_tf.config import RunConfig, replace
from affinegan_tf.training import build_model, configure_tensorflow


def random_batch(run_config: RunConfig) -> dict:
    """One batch shaped like the data pipeline's, with random values."""
    model_config = run_config.model
    size, targets = model_config.image_size, model_config.num_targets
    batch_size = run_config.train.batch_size
    return {
        "neutral": tf.random.uniform((batch_size, size, size, 3), -1, 1),
        "targets": tf.random.uniform((batch_size, targets, size, size, 3), -1, 1),
        "masks": tf.ones((batch_size, targets, size, size, 1)),
        "neutral_mask": tf.ones((batch_size, size, size, 1)),
        "prior_intensities": tf.random.uniform((batch_size, targets)),
        "target_positions": tf.random.uniform((batch_size, targets)),
    }


class _BatchClock(keras.callbacks.Callback):
    """Records the time at the end of chosen batches."""

    def __init__(self, batches: tuple[int, ...]):
        super().__init__()
        self.batches = batches
        self.marks: dict[int, float] = {}

    def on_train_batch_end(self, batch, logs=None):
        if batch in self.batches:
            self.marks[batch] = time.perf_counter()


def config_for_masked_data(run_config: RunConfig) -> RunConfig:
    """The config to time for a data set with masks: "auto" local D resolved to "on" (the
    probe's random data has no masks, so "auto" would time the step without the mouth D); an
    explicit "on" or "off" is kept."""
    if run_config.model.local_discriminator != "auto":
        return run_config
    return replace(run_config, model=replace(run_config.model, local_discriminator="on"))


def measure_steps_per_second(run_config: RunConfig, steps: int = 40, warmup: int = 5) -> float:
    """Training steps per second of a config on this machine (random data, after warm-up).

    Timed between batch ends inside one fit() call, so fit's own start-up is not counted.
    The local discriminator is used when the config says "on" (resolve "auto" first).
    """
    configure_tensorflow(run_config)
    model = build_model(run_config, total_steps=10_000)
    dataset = tf.data.Dataset.from_tensors(random_batch(run_config)).repeat()
    first, last = warmup - 1, warmup + steps - 1
    clock = _BatchClock((first, last))
    model.fit(
        dataset,
        steps_per_epoch=warmup + steps,
        epochs=1,
        verbose=0,
        shuffle=False,  # a repeated tensor: Keras would warn that it cannot shuffle it
        callbacks=[clock],
    )
    return steps / (clock.marks[last] - clock.marks[first])
