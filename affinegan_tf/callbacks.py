"""The training callbacks: small Keras callbacks, one job each.

- `ProgressBar`: one line with the step, epoch, main losses, speed and ETA.
- `ScalarLogs`: TensorBoard scalars every `log_every` steps (means over the interval).
- `CheckpointAndSamples`: a checkpoint, a sample GIF and the intensity range every
  `checkpoint_every` steps and at the end.
- `SignalStop`: the first Ctrl-C / SIGTERM finishes the step, saves and stops; a second Ctrl-C
  stops at once.
- `NonFiniteGuard`: stops when a loss term became NaN or Inf (recorded in graph by the train
  step, `nonfinite.py`); nothing is saved after it.

Each is complete when constructed and uses only the standard hooks (`on_train_begin`,
`on_train_batch_end(batch, logs)`, `on_train_end`) and `self.model.stop_training`, so that
`model.fit` and a custom distributed loop (through `keras.callbacks.CallbackList`) drive them
alike. Batch b of a fit that starts at step `first_step` (non-zero when resuming) is training
step `first_step + b + 1`; with `steps_per_execution` > 1 Keras reports the last batch of each
execution, and every callback acts when its interval was crossed.

Host round trips: Keras 3's TensorFlow train loop waits for every execution itself (its train
function checks `has_value()` on the host), so the lever on how often the host and the device
meet is `steps_per_execution` (TrainConfig). On top of that, these callbacks add no per-step
conversions: `DeferredLogsCallbackList` hands them the log tensors as they are, and the logs are
read only when they are printed or written.
"""

from __future__ import annotations

import math
import signal
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from affinegan_tf.animation import write_animation
from affinegan_tf.calibration import apex_of
from affinegan_tf.checkpoints import TrainingCheckpoint
from affinegan_tf.nonfinite import NonFiniteStep
from affinegan_tf.rendering import generate_frames
from affinegan_tf.run_folder import sample_path, write_intensity_range
from affinegan_tf.samples import SAMPLE_FRAMES, training_intensities

# (log name, short label) of the terms on the progress line.
PROGRESS_TERMS = (
    ("g_reconstruction", "L1"),
    ("g_global_adversarial", "G"),
    ("d_global", "D"),
    ("d_intensity", "Da"),
    ("intensity_mean", "a"),
    ("intensity_std", "a_sd"),
    # Only in runs that penalise the attention mask (LossWeights.attention_mask).
    ("g_attention_mask", "mask"),
)


def say(message: str) -> None:
    """A line for the user, on stderr (stdout is kept for results)."""
    print(message, file=sys.stderr, flush=True)


def _crossed(previous_step: int, step: int, every: int) -> bool:
    """Whether a multiple of `every` lies in (previous_step, step]."""
    return step // every > previous_step // every


def _floats(logs) -> dict[str, float]:
    """Log values (tensors or numbers) as Python floats: a host sync, done only when needed."""
    return {name: float(np.asarray(value)) for name, value in (logs or {}).items()}


class DeferredLogsCallbackList(keras.callbacks.CallbackList):
    """Keras's CallbackList, minus the conversion of every log to a Python float every step.

    Keras converts every log (13 to 15) to a float (a device-to-host copy each) at every
    `on_train_batch_end` as soon as one callback defines that hook. Here the callbacks get the
    log tensors and read them only when they need a value.
    """

    def on_train_batch_end(self, batch, logs=None):
        for callback in self.callbacks:
            callback.on_train_batch_end(batch, logs)


def _format_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes:02d}:{seconds:02d}"


class ProgressBar(keras.callbacks.Callback):
    """`[####----] step s/N epoch e/E | L1 .. | x step/s | ETA mm:ss` on stderr.

    Rewritten in place twice a second on a terminal; one line every 30 s in a log file.

    Args:
        total_steps: The step the run ends at.
        first_step: The step this fit starts from.
        steps_per_epoch: Steps per pass over the training videos.
    """

    def __init__(self, total_steps: int, first_step: int, steps_per_epoch: int):
        super().__init__()
        self.total_steps = total_steps
        self.first_step = first_step
        self.steps_per_epoch = steps_per_epoch
        self.is_tty = sys.stderr.isatty()
        self.interval = 0.5 if self.is_tty else 30.0
        self.last_print = 0.0
        self.timed_from: tuple[int, float] | None = None
        self.latest: tuple[int, dict] | None = None

    def on_train_batch_end(self, batch, logs=None):
        step = self.first_step + batch + 1
        self.latest = (step, logs or {})
        now = time.monotonic()
        if now - self.last_print >= self.interval or self.timed_from is None:
            self._print(step, logs or {}, now)

    def on_train_end(self, logs=None):
        if self.latest is not None:
            self._print(*self.latest, time.monotonic())
        if self.is_tty:
            print(file=sys.stderr)

    def _print(self, step: int, logs: dict, now: float) -> None:
        self.last_print = now
        if self.timed_from is None:
            # The first step includes tracing; the rate counts from its end.
            self.timed_from = (step, now)
        done = step - self.timed_from[0]
        rate = done / max(now - self.timed_from[1], 1e-9) if done else 0.0
        eta = (self.total_steps - step) / rate if rate > 0 else 0.0
        width = 24
        filled = int(width * step / self.total_steps)
        bar = "#" * filled + "-" * (width - filled)
        values = _floats({name: logs[name] for name, _ in PROGRESS_TERMS if name in logs})
        terms = " ".join(
            f"{short} {values[name]:.3f}" for name, short in PROGRESS_TERMS if name in values
        )
        epoch = math.ceil(step / self.steps_per_epoch)
        total_epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        line = (
            f"[{bar}] step {step}/{self.total_steps} epoch {epoch}/{total_epochs} "
            f"| {terms} | {rate:.1f} step/s | ETA {_format_duration(eta)}"
        )
        if self.is_tty:
            print("\r" + line[:200].ljust(120), end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)


class ScalarLogs(keras.callbacks.Callback):
    """TensorBoard scalars of every logged term, every `every` steps and at the last step.

    Each value is the mean since the previous write: the model's metrics are reset after it.

    Args:
        writer: A tf.summary writer (`<run>/logs`).
        every: Steps between writes.
        first_step: The step this fit starts from.
        total_steps: The step the run ends at.
    """

    def __init__(self, writer, every: int, first_step: int, total_steps: int):
        super().__init__()
        self.writer = writer
        self.every = every
        self.first_step = first_step
        self.total_steps = total_steps
        self.previous_step = first_step
        self.latest: dict = {}

    def on_train_batch_end(self, batch, logs=None):
        step = self.first_step + batch + 1
        self.latest = logs or {}
        if _crossed(self.previous_step, step, self.every) or step >= self.total_steps:
            with self.writer.as_default(step=step):
                for name, value in _floats(self.latest).items():
                    tf.summary.scalar(name, value)
            self.model.reset_metrics()
        self.previous_step = step

    def values(self) -> dict[str, float]:
        """The terms of the last step, as floats (the means the last write or the end saw)."""
        return _floats(self.latest)


class NonFiniteGuard(keras.callbacks.Callback):
    """Stops training at the first step where a loss term was NaN or Inf, naming it and the terms.

    The train step records the first non-finite step in graph (`model.nonfinite_watch`); this
    callback reads that record (one int64) at the end of every execution, i.e. every
    `steps_per_execution` steps. Keras's own loop has already waited for the execution there (its
    train function checks `has_value()` on the host), so the read adds a copy of a few bytes, not
    a wait, and none of the losses are converted. `CheckpointAndSamples` never saves a model
    after such a step.
    """

    def __init__(self):
        super().__init__()
        self.failure: NonFiniteStep | None = None

    def on_train_batch_end(self, batch, logs=None):
        self._check()

    def on_train_end(self, logs=None):
        self._check()

    def _check(self) -> None:
        if self.failure is None:
            self.failure = self.model.nonfinite_watch.first_bad()
        if self.failure is not None:
            self.model.stop_training = True


class SignalStop(keras.callbacks.Callback):
    """First Ctrl-C / SIGTERM: finish the step, stop (the end-of-training checkpoint follows).
    A second Ctrl-C stops at once (KeyboardInterrupt).

    Use it as a context manager around training: the handlers are installed on entry and the
    previous ones restored on exit, whatever happens in between.
    """

    def __init__(self):
        super().__init__()
        self.requested = False
        self.previous_handlers: dict = {}

    def __enter__(self) -> SignalStop:
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                self.previous_handlers[signum] = signal.signal(signum, self._request)
            except ValueError:  # not the main thread: no handlers, nothing to restore
                pass
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self.previous_handlers.items():
            signal.signal(signum, handler)
        self.previous_handlers = {}

    def _request(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        say(f"\nReceived {signal.Signals(signum).name}: saving a checkpoint after this step...")

    def on_train_batch_end(self, batch, logs=None):
        if self.requested:
            self.model.stop_training = True


class CheckpointAndSamples(keras.callbacks.Callback):
    """Every `every` steps and at the end of training: a checkpoint, the sample GIF
    (`<run>/samples/`), TensorBoard images and histogram, and `<run>/intensity_range.json`.

    Nothing is saved once a loss term was NaN or Inf (the run keeps its last good checkpoint).

    Args:
        checkpoint: The run's TrainingCheckpoint.
        run_dir: The run folder.
        writer: A tf.summary writer (`<run>/logs`).
        every: Steps between checkpoints.
        first_step: The step this fit starts from.
        total_steps: The step the run ends at (saved by `on_train_end`).
        sample_face: uint8 [S, S, 3], the neutral face of the sample GIFs.
        range_videos: uint8 [T, S, S, 3] training clips whose inferred intensities make the
            intensity range (frame 0 of each is its neutral frame).
    """

    def __init__(
        self,
        checkpoint: TrainingCheckpoint,
        run_dir: Path,
        writer,
        every: int,
        first_step: int,
        total_steps: int,
        sample_face: np.ndarray,
        range_videos: list[np.ndarray],
    ):
        super().__init__()
        self.checkpoint = checkpoint
        self.run_dir = Path(run_dir)
        self.writer = writer
        self.every = every
        self.first_step = first_step
        self.total_steps = total_steps
        self.sample_face = sample_face
        self.range_videos = range_videos
        self.previous_step = first_step
        self.latest = checkpoint.latest
        self.last_sample: Path | None = None

    def on_train_batch_end(self, batch, logs=None):
        step = self.first_step + batch + 1
        if _crossed(self.previous_step, step, self.every) and step < self.total_steps:
            self.save()
        self.previous_step = step

    def on_train_end(self, logs=None):
        if self.previous_step > self.first_step:  # at least one step was trained
            self.save()

    def save(self) -> None:
        """Checkpoint + samples at the model's current step, unless a loss went non-finite."""
        if self.model.nonfinite_watch.first_bad() is not None:
            return
        self.latest = self.checkpoint.save()
        step = int(self.model.step.numpy())
        # The generator's weight average when the run keeps one (what load_model's users read).
        estimator = self.model.inference_estimator
        per_video = (
            training_intensities(estimator, self.range_videos) if estimator.reads_images else None
        )
        # The apex measured now (what a = 1 means) calibrates this checkpoint's sample GIF.
        seen = write_intensity_range(self.run_dir, step, per_video)
        sweep = np.linspace(0.0, 1.0, SAMPLE_FRAMES, dtype=np.float32)
        frames = generate_frames(
            self.model.inference_generator, self.sample_face, sweep, apex_of(seen)
        )
        self.last_sample = write_animation(frames, sample_path(self.run_dir, step), fps=10)
        with self.writer.as_default(step=step):
            if per_video is not None:
                tf.summary.histogram("inferred_intensity", np.concatenate(per_video))
            strip = np.concatenate(list(frames[:: max(1, SAMPLE_FRAMES // 8)]), axis=1)
            tf.summary.image("sample_0_to_1", strip[np.newaxis])
        self.writer.flush()
