"""fit(): train (or resume) a run: the data, the model, the callbacks, the training loop.

Training is `model.fit` on an infinite, index-based tf.data stream: sample i of the stream is a
pure function of (seed, i), so a run resumed at step s reads exactly the samples an uninterrupted
run would have read from step s on.

Around fit: `recipes.py` resolves the config, `run_folder.py` names and checks the run folder,
`checkpoints.py` saves and restores, `callbacks.py` does the work between steps (progress,
TensorBoard, checkpoints and samples, signals, the NaN guard).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from affinegan_tf import conv_forms, distributed
from affinegan_tf.callbacks import (
    CheckpointAndSamples,
    DeferredLogsCallbackList,
    NonFiniteGuard,
    ProgressBar,
    ScalarLogs,
    SignalStop,
    say,
)
from affinegan_tf.checkpoints import TrainingCheckpoint
from affinegan_tf.compute_settings import apply_compute_settings
from affinegan_tf.config import RunConfig, steps_per_epoch
from affinegan_tf.data.pipeline import TrainingSet, load_training_set, make_dataset
from affinegan_tf.distributed import WorkerRole
from affinegan_tf.errors import UserError
from affinegan_tf.gan import AffineGAN
from affinegan_tf.machine_load import cpu_flags
from affinegan_tf.optimizers import make_optimizers
from affinegan_tf.run_folder import LOGS_DIR, is_run_folder, prepare_run_dir
from affinegan_tf.samples import range_clips, sample_face


@dataclass
class FitResult:
    """What a finished (or stopped) fit reports."""

    run_dir: Path
    step: int
    total_steps: int
    checkpoint: str | None
    sample: Path | None
    interrupted: bool
    logs: dict


def fit(run_config: RunConfig, run_dir: str | Path, force: bool = False) -> FitResult:
    """Trains (or resumes) a run. See the module docstring for the resume guarantee."""
    run_dir = Path(run_dir)
    training_set = load_training_set(run_config.data, run_config.model.load_size)
    run_config = resolve_local_discriminator(run_config, training_set)
    model_config, train = run_config.model, run_config.train
    total_steps = train.total_steps(len(training_set.names))

    configure_tensorflow(run_config)
    strategy = distribution_strategy()
    # Once, eagerly, before any step is traced (a strategy traces steps in its replica threads).
    conv_forms.use_subpixel_forms()
    # Several workers (TF_CONFIG): only the chief writes the run folder, the others a scratch one.
    worker = WorkerRole.of(strategy)
    if worker.is_chief:
        resuming = prepare_run_dir(run_dir, run_config, force)
    else:
        resuming = is_run_folder(run_dir)
    write_dir = worker.write_dir(run_dir)
    with strategy.scope():
        model = build_model(run_config, total_steps)
    checkpoint = TrainingCheckpoint(model, write_dir, keep=train.keep_checkpoints)
    # Every worker restores the chief's checkpoint (the run folder is on a shared file system).
    start_step = (
        TrainingCheckpoint(model, run_dir).restore_latest(allow_schedule_change=force)
        if resuming
        else 0
    )
    say(
        f"{'Resuming' if start_step else 'Starting'} {run_dir} at step {start_step}/{total_steps}: "
        f"{len(training_set.names)} videos, preset {run_config.preset} "
        f"({model_config.image_size}px), local D {model_config.local_discriminator}, "
        f"batch {train.batch_size}, {strategy.num_replicas_in_sync} replica(s)"
        + (f" on {worker.workers} workers (this is {worker.task})." if worker.multi_worker else ".")
    )
    hint = precision_hint(run_config, cpu_flags(), tf.config.list_logical_devices("GPU"))
    if hint:
        say(hint)
    if start_step >= total_steps:
        say(f"Nothing to do: the run already reached step {start_step}.")
        return FitResult(run_dir, start_step, total_steps, checkpoint.latest, None, False, {})

    def dataset(part=(0, 1)):
        return make_dataset(
            training_set,
            image_size=model_config.image_size,
            load_size=model_config.load_size,
            num_targets=model_config.num_targets,
            batch_size=train.batch_size,
            seed=train.seed,
            start_step=start_step,
            include_masks=model_config.local_discriminator == "on",
            part=part,
        )

    writer = tf.summary.create_file_writer(str(write_dir / LOGS_DIR))
    guard = NonFiniteGuard()
    scalars = ScalarLogs(writer, train.log_every, start_step, total_steps)
    saver = CheckpointAndSamples(
        checkpoint,
        write_dir,
        writer,
        every=train.checkpoint_every,
        first_step=start_step,
        total_steps=total_steps,
        sample_face=sample_face(
            training_set,
            model_config.image_size,
            run_config.data.face_crop,
            run_config.data.face_margin,
        ),
        range_videos=range_clips(training_set, model_config.image_size),
    )
    progress = ProgressBar(
        total_steps, start_step, steps_per_epoch(len(training_set.names), train.batch_size)
    )
    # Groups of steps start at start_step, so checkpoints stay on multiples of checkpoint_every
    # even when a run stopped by a signal resumes at another step.
    steps_per_execution = math.gcd(train.steps_per_execution, start_step) or 1
    with SignalStop() as stop:
        # The guard first: it stops the run at the batch end where it sees a NaN.
        callbacks = [guard, stop, saver, scalars, progress]
        if worker.multi_worker:  # Keras 3's model.fit fails there: our own loop, same callbacks
            distributed.train(model, strategy, dataset, callbacks, start_step, total_steps)
        else:
            run_training(model, dataset(), total_steps - start_step, callbacks, steps_per_execution)
    worker.cleanup()

    step = int(model.step.numpy())
    if guard.failure is not None:
        first, *others = guard.failure.terms
        also = f" (and {', '.join(others)})" if others else ""
        raise UserError(
            f"Training stopped: at step {guard.failure.step} the loss term '{first}'{also} became "
            f"NaN or Inf. Nothing was saved after it; the last good checkpoint is "
            f"{saver.latest or 'none (no checkpoint had been written yet)'}. Lower "
            "--learning-rate, check the data for broken frames, or resume from that checkpoint."
        )
    reached = f"step {step}/{total_steps}"
    if stop.requested:
        say(f"\nStopped at {reached}; saved {saver.latest}. Rerun the command to resume.")
    else:
        say(f"\nDone: {reached}; checkpoint {saver.latest}; sample {saver.last_sample}.")
    return FitResult(
        run_dir,
        step,
        total_steps,
        saver.latest,
        saver.last_sample,
        stop.requested,
        scalars.values(),
    )


def run_training(
    model: AffineGAN, dataset, steps: int, callbacks: list, steps_per_execution: int = 1
) -> None:
    """Runs `steps` training steps, calling `callbacks`: the one place the loop is chosen.

    `model.fit` on one machine (one device or MirroredStrategy); a loop that drives the same
    callbacks through a keras.callbacks.CallbackList can take over here where fit cannot run.
    Keras reads `steps_per_execution` when fit first builds the train function.
    """
    model.steps_per_execution = steps_per_execution
    model.fit(
        dataset,
        epochs=1,
        steps_per_epoch=steps,
        verbose=0,
        shuffle=False,  # the stream is shuffled by its own seed
        callbacks=DeferredLogsCallbackList(callbacks, add_history=True, model=model),
    )


# ----------------------------------------------------------------------------- setup


def resolve_local_discriminator(run_config: RunConfig, training_set: TrainingSet) -> RunConfig:
    """The config with local_discriminator "auto" resolved against the data (masks or not)."""
    local = run_config.model.local_discriminator
    if local == "auto":
        local = "on" if training_set.with_masks else "off"
    elif local == "on" and not training_set.with_masks:
        raise UserError(
            f"--local-d on needs mouth masks, but {run_config.data.data_dir} has none "
            "(expected <root>/train/patch/<video>/ with one mask per frame). Use --local-d off."
        )
    model = dataclasses.replace(run_config.model, local_discriminator=local)
    return dataclasses.replace(run_config, model=model)


def configure_tensorflow(run_config: RunConfig) -> None:
    """Process-wide TensorFlow settings a run needs (before its model is built)."""
    apply_compute_settings()
    if run_config.train.mixed_precision:
        keras.mixed_precision.set_global_policy(run_config.train.precision_policy)


def precision_hint(run_config: RunConfig, flags: set[str], gpus: list) -> str | None:
    """A line for float32 runs at 128 px and more on a CPU that multiplies bfloat16 in hardware
    (AMX), where `--mixed-precision bfloat16` is much faster; None otherwise."""
    if (
        run_config.train.mixed_precision
        or gpus
        or run_config.model.image_size < 128
        or "amx_bf16" not in flags
    ):
        return None
    return (
        "Note: this CPU multiplies bfloat16 in hardware (AMX): --mixed-precision bfloat16 took "
        "0.58x the float32 time per 256 px step on a 2-core Xeon (README: How long the paper "
        "setting takes). It is not the default: its effect on results is measured only at 64 px."
    )


def distribution_strategy():
    """MultiWorkerMirroredStrategy under TF_CONFIG, MirroredStrategy on >1 GPU, else default."""
    if os.environ.get("TF_CONFIG"):
        return distributed.multi_worker_strategy()
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def build_model(run_config: RunConfig, total_steps: int) -> AffineGAN:
    """The compiled AffineGAN for a resolved config (call inside the strategy scope)."""
    model_config, train = run_config.model, run_config.train
    generator_optimizer, discriminator_optimizer = make_optimizers(train, total_steps)
    model = AffineGAN(
        model_config,
        use_local_discriminator=model_config.local_discriminator == "on",
        seed=train.seed,
        ema_decay=train.ema_decay,
    )
    model.compile(
        generator_optimizer=generator_optimizer,
        discriminator_optimizer=discriminator_optimizer,
        loss_weights=train.loss_weights,
    )
    return model
