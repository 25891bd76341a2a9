"""A MirroredStrategy step on two logical CPUs equals a single-device step on the same global batch.

Logical devices must be configured before TensorFlow initialises, so the comparison runs in a
fresh interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import dataclasses, json
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
    import keras
    from affinegan_tf.config import PRESETS
    from affinegan_tf.gan import AffineGAN

    # No noise or dropout: their random draws would differ between one and two replicas.
    config = dataclasses.replace(PRESETS["tiny"], noise_std=0.0, dropout=0.0)
    rng = np.random.default_rng(0)
    size, k, batch_size = config.image_size, config.num_targets, 4
    batch = {
        "neutral": rng.uniform(-1, 1, (batch_size, size, size, 3)).astype("float32"),
        "targets": rng.uniform(-1, 1, (batch_size, k, size, size, 3)).astype("float32"),
        "masks": rng.integers(0, 2, (batch_size, k, size, size, 1)).astype("float32"),
        "neutral_mask": rng.integers(0, 2, (batch_size, size, size, 1)).astype("float32"),
        "prior_intensities": rng.uniform(0, 1, (batch_size, k)).astype("float32"),
        "target_positions": rng.uniform(0, 1, (batch_size, k)).astype("float32"),
    }

    def run(strategy):
        with strategy.scope():
            # With the generator's weight average on: its update must keep the replicas'
            # copies equal too (it is compared below with every other variable).
            model = AffineGAN(config, use_local_discriminator=True, seed=0, ema_decay=0.9)
            # SGD, not Adam: conv biases in front of instance norm get gradients of pure
            # rounding noise, which Adam's normalisation turns into full-size steps of random
            # sign. SGD shows the gradient aggregation itself.
            model.compile(keras.optimizers.SGD(0.1), keras.optimizers.SGD(0.1))
        initial = [v.numpy().copy() for v in model.variables]
        dataset = tf.data.Dataset.from_tensors(batch).repeat()
        model.fit(dataset, steps_per_epoch=2, epochs=1, verbose=0)
        pairs = model.weight_average.pairs
        lag = max(float(np.abs(a.numpy() - w.numpy()).max()) for a, w in pairs)
        # Each replica's own copy of the average (one component per device when mirrored).
        copies = [getattr(a.value, "values", (a.value,)) for a, _ in pairs]
        spread = max(float(np.abs(c[0].numpy() - c[-1].numpy()).max()) for c in copies)
        variables = [v.numpy() for v in model.variables]
        return initial, variables, strategy.num_replicas_in_sync, lag, (len(copies[0]), spread)

    init_one, after_one, replicas_one, lag_one, _ = run(tf.distribute.OneDeviceStrategy("/cpu:0"))
    init_two, after_two, replicas_two, lag_two, copies = run(
        tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    )
    same_start = max(float(np.abs(a - b).max()) for a, b in zip(init_one, init_two))
    # Weights only: the step counter (an integer) moves by 2 in both runs.
    update = max(
        float(np.abs(a - b).max())
        for a, b in zip(after_one, init_one)
        if a.dtype.kind == "f"
    )
    difference = max(float(np.abs(a - b).max()) for a, b in zip(after_one, after_two))
    # The average lags the weights on both (two warm-up steps: decay 0.1, then 2/11).
    print(json.dumps({"replicas": [replicas_one, replicas_two], "same_start": same_start,
                      "update": update, "difference": difference,
                      "average_lag": min(lag_one, lag_two), "average_copies": copies}))
    """
)


@pytest.mark.slow  # traces the step twice, once under MirroredStrategy: ~45 s
def test_mirrored_step_equals_single_device_step():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["replicas"] == [1, 2]
    assert figures["same_start"] == 0.0
    assert figures["update"] > 1e-4  # two SGD steps really moved the weights
    # Same update up to float32 reduction-order noise, which instance norm over the 2 x 2 and
    # 4 x 4 maps amplifies: measured 5e-6 to 1.5e-4 (of updates of 0.73) depending on the batch
    # values and whether the local D is on. A wrong aggregation differs by the update's size.
    assert figures["difference"] < 1e-3 * figures["update"], figures
    assert figures["average_lag"] > 1e-4, figures  # the weight average moved apart from G
    assert figures["average_copies"] == [2, 0.0], figures  # both replicas hold the same average


def test_worker_roles_from_the_cluster():
    """Who is chief, and where each worker writes."""
    import types

    import tensorflow as tf

    from affinegan_tf.distributed import WorkerRole

    def strategy(jobs, task_type, task_id):
        spec = tf.train.ClusterSpec(jobs)
        resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
            spec, task_type=task_type, task_id=task_id
        )
        return types.SimpleNamespace(cluster_resolver=resolver)

    workers = {"worker": ["localhost:2000", "localhost:2001"]}
    first = WorkerRole.of(strategy(workers, "worker", 0))
    second = WorkerRole.of(strategy(workers, "worker", 1))
    assert (first.workers, first.is_chief, first.multi_worker) == (2, True, True)
    assert not second.is_chief and second.task == "worker 1"
    with_chief = {"chief": ["localhost:1999"], **workers}
    assert WorkerRole.of(strategy(with_chief, "chief", 0)).is_chief
    assert not WorkerRole.of(strategy(with_chief, "worker", 0)).is_chief
    alone = WorkerRole.of(tf.distribute.get_strategy())
    assert alone.is_chief and not alone.multi_worker

    run_dir = Path("run")
    assert first.write_dir(run_dir) == run_dir  # the chief writes the run folder
    scratch = second.write_dir(run_dir)
    assert scratch != run_dir and scratch.is_dir() and second.write_dir(run_dir) == scratch
    second.cleanup()
    assert not scratch.exists()


def test_collective_timeout_setting(monkeypatch):
    from affinegan_tf.distributed import DEFAULT_COLLECTIVE_TIMEOUT, collective_timeout
    from affinegan_tf.errors import UserError

    monkeypatch.delenv("AFFINEGAN_COLLECTIVE_TIMEOUT", raising=False)
    assert collective_timeout() == DEFAULT_COLLECTIVE_TIMEOUT
    monkeypatch.setenv("AFFINEGAN_COLLECTIVE_TIMEOUT", "45")
    assert collective_timeout() == 45.0
    monkeypatch.setenv("AFFINEGAN_COLLECTIVE_TIMEOUT", "soon")
    with pytest.raises(UserError, match="seconds"):
        collective_timeout()
