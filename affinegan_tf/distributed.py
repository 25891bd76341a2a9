"""Training on several machines: MultiWorkerMirroredStrategy driven by a loop of our own.

Keras 3's `model.fit` fails under MultiWorkerMirroredStrategy with several workers
(keras-team/keras#20585, tensorflow/tensorflow#72388: "Attempt to convert a value
(PerReplica ...) to a Tensor" on the first batch). This loop does what fit does for us: it calls
`AffineGAN.train_step` through `strategy.run` inside a tf.function, on batches from
`strategy.distribute_datasets_from_function`, and drives the same Keras callbacks through
`keras.callbacks.CallbackList` (on_train_begin, on_train_batch_end(batch, logs), on_train_end,
`model.stop_training`).

Every worker reads its own part of every global batch from the index-based stream (sample i is a
pure function of (seed, i)), so two workers with a batch of 2 train on exactly the samples one
process with a batch of 2 would, and a job restarted from a checkpoint at step s continues the
stream at step s.

Only the chief writes the run folder. The other workers run the same callbacks into a temporary
folder (tf.distribute needs every worker to take part in saving) that is removed at the end.
A collective that waits longer than the timeout (a worker died or hangs) fails with
`WorkerLostError` instead of waiting forever.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from affinegan_tf.errors import UserError

# Seconds a collective (gradient all-reduce, ...) may wait for the other workers. A worker that
# writes a checkpoint and a sample makes the others wait that long, so it is generous.
DEFAULT_COLLECTIVE_TIMEOUT = 600.0
TIMEOUT_VARIABLE = "AFFINEGAN_COLLECTIVE_TIMEOUT"


class WorkerLostError(UserError):
    """Another worker stopped answering (died, was preempted, or hangs)."""


def collective_timeout() -> float:
    """$AFFINEGAN_COLLECTIVE_TIMEOUT seconds, else DEFAULT_COLLECTIVE_TIMEOUT."""
    value = os.environ.get(TIMEOUT_VARIABLE)
    if not value:
        return DEFAULT_COLLECTIVE_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise UserError(f"{TIMEOUT_VARIABLE}={value!r}: give a number of seconds > 0.")
    return seconds


def multi_worker_strategy() -> tf.distribute.MultiWorkerMirroredStrategy:
    """MultiWorkerMirroredStrategy from TF_CONFIG, with a timeout on every collective."""
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=collective_timeout())
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


@dataclass
class WorkerRole:
    """This process's place in the job: who writes the run folder, and where this one writes.

    Attributes:
        workers: Workers in the job (1 outside a multi-worker job).
        is_chief: The chief writes the run folder; the others write to `scratch`.
        task: "worker 1" etc., for messages.
        scratch: The temporary folder of a non-chief worker (None on the chief).
    """

    workers: int
    is_chief: bool
    task: str
    scratch: Path | None = None

    @classmethod
    def of(cls, strategy) -> WorkerRole:
        resolver = getattr(strategy, "cluster_resolver", None)
        if resolver is None or not resolver.task_type:
            return cls(workers=1, is_chief=True, task="single process")
        cluster = resolver.cluster_spec().as_dict()
        workers = sum(len(cluster.get(job, [])) for job in ("chief", "worker"))
        task_type, task_id = resolver.task_type, int(resolver.task_id or 0)
        # The chief is task "chief", or worker 0 when the cluster has no chief task.
        is_chief = task_type == "chief" or (
            task_type == "worker" and task_id == 0 and "chief" not in cluster
        )
        return cls(workers=workers, is_chief=is_chief, task=f"{task_type} {task_id}")

    @property
    def multi_worker(self) -> bool:
        return self.workers > 1

    def write_dir(self, run_dir: Path) -> Path:
        """The run folder on the chief; a fresh temporary folder on the other workers."""
        if self.is_chief:
            return run_dir
        if self.scratch is None:
            self.scratch = Path(tempfile.mkdtemp(prefix=f"affinegan-{self.task.replace(' ', '')}-"))
        return self.scratch

    def cleanup(self) -> None:
        """Removes a non-chief worker's temporary folder."""
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None


def distributed_batches(strategy, make_part: Callable[[tuple[int, int]], tf.data.Dataset]):
    """The per-replica batches of every worker, each worker reading its own part of the stream.

    Args:
        strategy: The tf.distribute strategy.
        make_part: (part index, part count) -> that part of every global batch (the stream's
            `make_dataset(..., part=...)`), batched at global batch / part count.

    Returns:
        A distributed dataset; replica r of the job gets samples r * b .. (r + 1) * b - 1 of every
        global batch (b = global batch / replicas), as MirroredStrategy's split does.
    """
    replicas = strategy.num_replicas_in_sync

    def worker_dataset(context: tf.distribute.InputContext) -> tf.data.Dataset:
        try:
            dataset = make_part((context.input_pipeline_id, context.num_input_pipelines))
        except ValueError as error:
            raise UserError(
                f"{error} The batch size is the global batch of all workers together: give a "
                f"--batch-size that divides by the {replicas} replicas."
            ) from None
        local_replicas = replicas // context.num_input_pipelines
        if local_replicas > 1:
            # Local replicas take consecutive elements: split the worker's part in order.
            per_worker = dataset.element_spec["neutral"].shape[0]
            dataset = dataset.rebatch(per_worker // local_replicas)
        return dataset

    return strategy.distribute_datasets_from_function(worker_dataset)


def train(
    model: keras.Model,
    strategy,
    make_part: Callable[[tuple[int, int]], tf.data.Dataset],
    callbacks: list[keras.callbacks.Callback],
    start_step: int,
    total_steps: int,
) -> int:
    """Runs training steps start_step + 1 .. total_steps under `strategy`, like model.fit.

    Args:
        model: The compiled AffineGAN (built in the strategy's scope).
        strategy: A MultiWorkerMirroredStrategy (any tf.distribute strategy works).
        make_part: See `distributed_batches`.
        callbacks: Keras callbacks; they get on_train_begin, on_train_batch_end(batch, logs)
            with batch counted from 0 at start_step (as in fit), and on_train_end.
        start_step: Steps already done (restored from a checkpoint).
        total_steps: Step to stop at.

    Returns:
        The last step done. Stops early, on every worker at the same step, when any worker's
        callback sets `model.stop_training` (a signal, a non-finite loss).

    Raises:
        WorkerLostError: A collective timed out or a peer went away.
    """
    callback_list = keras.callbacks.CallbackList(callbacks, model=model)
    iterator = iter(distributed_batches(strategy, make_part))

    @tf.function
    def train_function(iterator, stop_requested):
        logs = strategy.run(model.train_step, args=(next(iterator),))
        logs = {
            name: strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)
            for name, value in logs.items()
        }
        # One worker's stop request (its callbacks ran after the previous step) stops them all
        # after this step, so every worker saves at the same step.
        requests = strategy.run(lambda: tf.cast(stop_requested, tf.float32))
        stop = strategy.reduce(tf.distribute.ReduceOp.SUM, requests, axis=None) > 0
        return logs, stop

    model.stop_training = False
    callback_list.on_train_begin()
    step = start_step
    try:
        while step < total_steps:
            logs, stop = train_function(iterator, tf.constant(bool(model.stop_training)))
            step += 1
            callback_list.on_train_batch_end(step - start_step - 1, logs)
            if bool(stop):
                break
    except (
        tf.errors.DeadlineExceededError,
        tf.errors.UnavailableError,
        tf.errors.CancelledError,
        tf.errors.AbortedError,
    ) as error:
        raise WorkerLostError(
            f"Training stopped at step {step}: another worker stopped answering "
            f"({error.__class__.__name__}: {_first_line(error)}). Restart every worker with the "
            "same command: the run resumes from its last checkpoint. (A collective waits at most "
            f"{collective_timeout():.0f} s; set {TIMEOUT_VARIABLE} to change that.)"
        ) from None
    callback_list.on_train_end()
    return step


# Lines of a collective's error that say what happened (TensorFlow puts them after a traceback).
_TELLING = ("unhealthy", "Connection refused", "failed to connect", "timed out", "Deadline")


def _first_line(error: Exception) -> str:
    """The informative line of a runtime error: one that says what happened, else the first."""
    text = str(getattr(error, "message", "") or error)
    lines = [line.strip() for line in text.splitlines()]
    useful = [line for line in lines if line and not line.startswith("Graph execution error")]
    telling = [line for line in useful if any(word in line for word in _TELLING)]
    chosen = (telling or useful or ["no message"])[0]
    return chosen[:300]
