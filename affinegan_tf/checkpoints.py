"""Saving and restoring training state; loading a trained generator from a run folder.

A checkpoint holds every variable of the model (weights, random-seed states, the step counter)
and of both optimisers (moments, iteration counters), keyed by variable path, so a resumed run
continues bit for bit, plus the learning-rate schedule it was trained with. Files are written by
tf.train.CheckpointManager, which renames into place only when complete.

The generator's weight average (ema.py) is part of the model's variables; a checkpoint written
without one (EMA off, or before it existed) loads into a model that keeps one, which then starts
the average at the restored generator weights.
"""

from __future__ import annotations

from pathlib import Path

import keras
import tensorflow as tf

from affinegan_tf.config import RunConfig
from affinegan_tf.errors import UserError
from affinegan_tf.gan import AffineGAN
from affinegan_tf.run_folder import CHECKPOINT_DIR, CONFIG_FILE, is_run_folder

# Keys that checkpoints written before they existed lack; restoring such a checkpoint fills them
# in (`_fill_missing`) instead of refusing it.
STEP_KEY = "model__affinegan__step"
SCHEDULE_KEY = "learning_rate_schedule"
OPTIONAL_KEYS = (STEP_KEY, SCHEDULE_KEY)


def _key(path: str) -> str:
    return path.replace("/", "__").replace(":", "_")


def _tracked(variables, prefix: str) -> dict:
    tracked = {}
    for variable in variables:
        key = f"{prefix}__{_key(variable.path)}"
        if key in tracked:
            raise RuntimeError(f"two variables share the checkpoint key {key}")
        tracked[key] = variable
    return tracked


def _saved_keys(prefix: str) -> set[str]:
    """Top-level names of the objects a checkpoint holds."""
    return {name.split("/", 1)[0] for name, _ in tf.train.list_variables(prefix)}


def _average_keys(model, tracked: dict) -> set[str]:
    """The keys of the model's weight average (ema.py) among `tracked`."""
    if model.weight_average is None:
        return set()
    averaged = {id(variable) for variable in model.weight_average.variables}
    return {key for key, variable in tracked.items() if id(variable) in averaged}


def _restore(tracked: dict, prefix: str, partial: bool, model) -> list[str]:
    """Restores `tracked` from `prefix`, leaving out the optional keys the file lacks.

    Optional: the step counter, the schedule and the weight average. A weight average the file
    lacks starts at the restored generator weights here.

    Returns:
        The optional keys that were missing.
    """
    saved = _saved_keys(prefix)
    average_keys = _average_keys(model, tracked)
    optional = (*OPTIONAL_KEYS, *sorted(average_keys))
    missing = [key for key in optional if key in tracked and key not in saved]
    present = {key: value for key, value in tracked.items() if key not in missing}
    status = tf.train.Checkpoint(**present).restore(prefix)
    if partial:
        status = status.expect_partial()
    status.assert_existing_objects_matched()
    if average_keys & set(missing):
        model.reset_weight_average()
    return missing


class TrainingCheckpoint:
    """Model + optimiser state of a run, in `<run>/checkpoints/`."""

    def __init__(self, model, run_dir: str | Path, keep: int = 3):
        from affinegan_tf.optimizers import schedule_of

        tracked = _tracked(model.variables, "model")
        tracked.update(_tracked(model.generator_optimizer.variables, "generator_optimizer"))
        tracked.update(_tracked(model.discriminator_optimizer.variables, "discriminator_optimizer"))
        self.schedule = schedule_of(model.generator_optimizer)
        if self.schedule is not None:
            # (total steps, decay steps) of the schedule this run trains with, so that a resume
            # with another length can tell whether the learning rate would jump.
            self.schedule_state = tf.Variable(
                [self.schedule.total_steps, self.schedule.decay_steps],
                dtype=tf.int64,
                trainable=False,
            )
            tracked[SCHEDULE_KEY] = self.schedule_state
        self.tracked = tracked
        self.model = model
        self.checkpoint = tf.train.Checkpoint(**tracked)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, str(Path(run_dir) / CHECKPOINT_DIR), max_to_keep=keep
        )

    @property
    def latest(self) -> str | None:
        return self.manager.latest_checkpoint

    def restore_latest(self, allow_schedule_change: bool = False) -> int:
        """Restores the newest checkpoint if there is one; returns the step it was saved at.

        Args:
            allow_schedule_change: Accept a learning-rate schedule that differs from the saved
                run's at the resume step (the user forced a config change).
        """
        if self.latest is None:
            return 0
        try:
            missing = _restore(self.tracked, self.latest, partial=False, model=self.model)
        except (AssertionError, tf.errors.OpError, ValueError) as error:
            raise UserError(
                f"Checkpoint {self.latest} does not fit this model ({error.__class__.__name__}): "
                "the architecture changed since it was written. Train into a new --out folder."
            ) from error
        if STEP_KEY in missing:
            # Written before the model had its own step counter: the generator optimiser's
            # iteration count was the step then.
            self.model.step.assign(self.model.generator_optimizer.iterations)
        step = int(self.model.step.numpy())
        if self.schedule is not None:
            if SCHEDULE_KEY not in missing and not allow_schedule_change:
                self._check_schedule(step)
            self.schedule_state.assign([self.schedule.total_steps, self.schedule.decay_steps])
        return step

    def _check_schedule(self, step: int) -> None:
        """Refuses a new run length that would make the learning rate jump at `step`."""
        from affinegan_tf.optimizers import ConstantThenLinearDecay

        total, decay = (int(value) for value in self.schedule_state.numpy())
        saved = ConstantThenLinearDecay(self.schedule.base_rate, total, decay)
        before, after = saved.rate_at(step), self.schedule.rate_at(step)
        if abs(before - after) > 1e-9 * max(abs(before), abs(after), 1e-30):
            raise UserError(
                f"Resuming {self.latest} at step {step} with another run length would make the "
                f"learning rate jump from {before:.3g} to {after:.3g}: the saved run's schedule "
                f"is {saved.describe()}, the new one {self.schedule.describe()}. Lengthen or "
                "shorten a run only while both are still at the constant rate; otherwise keep "
                "--epochs/--steps as they were, train into a new --out, or pass --force to "
                "accept the jump."
            )

    def save(self) -> str:
        step = int(self.model.step.numpy())
        return self.manager.save(checkpoint_number=step)


def latest_checkpoint(run_dir: str | Path) -> str:
    """Path prefix of the newest checkpoint of a run folder, or a UserError saying what is wrong."""
    run_dir = Path(run_dir)
    if not is_run_folder(run_dir):
        raise UserError(
            f"{run_dir} is not a training run folder (no {CONFIG_FILE}). Pass the folder that "
            "`affinegan-tf fit --out` wrote, or an exported model."
        )
    latest = tf.train.latest_checkpoint(str(run_dir / CHECKPOINT_DIR))
    if latest is None:
        raise UserError(
            f"{run_dir} has no checkpoint yet (nothing in {run_dir / CHECKPOINT_DIR}). "
            "Train longer (checkpoints are written every --checkpoint-every steps and at the end)."
        )
    return latest


def checkpoint_step(prefix: str) -> int:
    """The training step a checkpoint was saved at (checkpoints are numbered by step)."""
    return int(Path(prefix).name.rsplit("-", 1)[-1])


def load_model(run_dir: str | Path, checkpoint: str | None = None):
    """The trained AffineGAN of a run folder (latest checkpoint unless one is named).

    Returns:
        (model, run_config). The model is built and restored; only the model's variables are read.
        Generate with `model.inference_generator` (and `model.inference_estimator`): the
        generator's weight average when the run keeps one.
    """
    run_dir = Path(run_dir)
    prefix = checkpoint or latest_checkpoint(run_dir)
    config = RunConfig.load(run_dir / CONFIG_FILE)
    # Float32 layers whatever precision the process trained in (a `fit` with --mixed-precision
    # leaves its global policy set): generation and every export compute in float32, and TFLite
    # converts no bfloat16 convs. The variables are float32 under every policy.
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        model = AffineGAN(
            config.model,
            use_local_discriminator=config.model.local_discriminator == "on",
            seed=config.train.seed,
            ema_decay=config.train.ema_decay,
        )
        model.build()
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    try:
        missing = _restore(_tracked(model.variables, "model"), prefix, partial=True, model=model)
    except (AssertionError, tf.errors.OpError, ValueError) as error:
        raise UserError(
            f"Checkpoint {prefix} does not match the model described by {run_dir / CONFIG_FILE} "
            f"({error.__class__.__name__}). Was the run folder edited by hand?"
        ) from error
    if STEP_KEY in missing:
        model.step.assign(checkpoint_step(prefix))
    return model, config
