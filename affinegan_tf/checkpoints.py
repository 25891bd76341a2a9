"""Saving and restoring training state; loading a trained generator from a run folder.

A checkpoint holds every variable of the model (weights, random-seed states) and of both
optimisers (moments, step counters), keyed by variable path, so a resumed run continues bit for
bit. Files are written by tf.train.CheckpointManager, which renames into place only when complete.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from affinegan_tf.config import RunConfig
from affinegan_tf.errors import UserError
from affinegan_tf.gan import AffineGAN
from affinegan_tf.run_folder import CHECKPOINT_DIR, CONFIG_FILE, is_run_folder


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


class TrainingCheckpoint:
    """Model + optimiser state of a run, in `<run>/checkpoints/`."""

    def __init__(self, model, run_dir: str | Path, keep: int = 3):
        tracked = _tracked(model.variables, "model")
        tracked.update(_tracked(model.generator_optimizer.variables, "generator_optimizer"))
        tracked.update(_tracked(model.discriminator_optimizer.variables, "discriminator_optimizer"))
        self.model = model
        self.checkpoint = tf.train.Checkpoint(**tracked)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, str(Path(run_dir) / CHECKPOINT_DIR), max_to_keep=keep
        )

    @property
    def latest(self) -> str | None:
        return self.manager.latest_checkpoint

    def restore_latest(self) -> int:
        """Restores the newest checkpoint if there is one; returns the step it was saved at."""
        if self.latest is None:
            return 0
        try:
            self.checkpoint.restore(self.latest).assert_existing_objects_matched()
        except (AssertionError, tf.errors.OpError, ValueError) as error:
            raise UserError(
                f"Checkpoint {self.latest} does not fit this model ({error.__class__.__name__}): "
                "the architecture changed since it was written. Train into a new --out folder."
            ) from error
        return int(self.model.step.numpy())

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
    """
    run_dir = Path(run_dir)
    prefix = checkpoint or latest_checkpoint(run_dir)
    config = RunConfig.load(run_dir / CONFIG_FILE)
    model = AffineGAN(
        config.model,
        use_local_discriminator=config.model.local_discriminator == "on",
        seed=config.train.seed,
    )
    model.build()
    restorer = tf.train.Checkpoint(**_tracked(model.variables, "model"))
    try:
        restorer.restore(prefix).expect_partial().assert_existing_objects_matched()
    except (AssertionError, tf.errors.OpError, ValueError) as error:
        raise UserError(
            f"Checkpoint {prefix} does not match the model described by {run_dir / CONFIG_FILE} "
            f"({error.__class__.__name__}). Was the run folder edited by hand?"
        ) from error
    return model, config
