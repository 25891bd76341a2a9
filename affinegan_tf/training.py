"""fit(): resolve the config, pick the distribution strategy, train with checkpoints and resume.

Training is `model.fit` on an infinite, index-based tf.data stream: sample i of the stream is a pure
function of (seed, i), so a run resumed at step s reads exactly the samples an uninterrupted run
would have read from step s on.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from affinegan_tf import config as config_module
from affinegan_tf.checkpoints import CONFIG_FILE, TrainingCheckpoint
from affinegan_tf.config import DataConfig, RunConfig, TrainConfig
from affinegan_tf.errors import UserError

# Settings that may change between a run and its resumption (how long to train, bookkeeping).
RESUMABLE_CHANGES = {
    "train": {"epochs", "steps", "checkpoint_every", "keep_checkpoints", "log_every"},
    "data": {"strict", "cache_dir"},
}
SAMPLE_FRAMES = 16
# Training videos and frames per video whose inferred intensities are summarised at each
# checkpoint (TensorBoard histogram, intensity_range.json).
RANGE_VIDEOS = 16
RANGE_FRAMES = 16


# ----------------------------------------------------------------------------- configuration


def builtin_pipelines() -> dict[str, Path]:
    """The recipes shipped in the package (the repository's pipelines/ folder), by name."""
    from importlib import resources

    try:
        # A namespace package (no __init__.py): files() gives a MultiplexedPath, whose str() is
        # no path, but whose entries are real paths.
        items = list(resources.files("affinegan_tf.pipelines").iterdir())
    except ModuleNotFoundError:  # running from a checkout that was not pip-installed
        items = list((Path(__file__).resolve().parents[1] / "pipelines").iterdir())
    return {
        Path(item.name).stem: Path(str(item))
        for item in sorted(items, key=lambda item: item.name)
        if item.name.endswith(".toml")
    }


def find_pipeline(name_or_path: str | Path) -> Path:
    """A recipe file: a path that exists, else a built-in recipe by name or file name.

    `--pipeline toy`, `--pipeline toy.toml` and `--pipeline pipelines/toy.toml` all work from an
    installed package, where the repository's pipelines/ folder is not beside the user.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    builtin = builtin_pipelines()
    if path.stem in builtin and path.suffix in ("", ".toml"):
        return builtin[path.stem]
    raise UserError(
        f"Pipeline recipe {path} does not exist. Give a TOML file, or one of the built-in "
        f"recipes: {', '.join(sorted(builtin))}."
    )


def load_pipeline(path: str | Path) -> dict:
    """Reads a TOML recipe: optional `preset`, and [model], [data], [train] tables."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    path = find_pipeline(path)
    try:
        recipe = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"Pipeline recipe {path} is not valid TOML: {error}.") from error
    # [pairs] is read by `prepare-pairs --pipeline` (pairs.py), not by fit.
    unknown = sorted(set(recipe) - {"preset", "model", "data", "train", "description", "pairs"})
    if unknown:
        raise UserError(
            f"Pipeline recipe {path}: unknown section(s) {', '.join(unknown)}; "
            "expected preset, description, [model], [data], [train]."
        )
    return recipe


def resolve_config(
    data: str,
    pipeline: str | None = None,
    preset_name: str | None = None,
    model_overrides: dict | None = None,
    data_overrides: dict | None = None,
    train_overrides: dict | None = None,
) -> RunConfig:
    """Preset < pipeline recipe < command-line flags (None means 'not given')."""
    recipe = load_pipeline(pipeline) if pipeline else {}
    name = preset_name or recipe.get("preset") or config_module.DEFAULT_PRESET
    model = config_module.preset(name)
    values = {
        "model": {**dataclasses.asdict(model), **recipe.get("model", {})},
        "data": {**dataclasses.asdict(DataConfig()), **recipe.get("data", {})},
        "train": {**dataclasses.asdict(TrainConfig()), **recipe.get("train", {})},
        "preset": name,
    }
    for section, overrides in (
        ("model", model_overrides),
        ("data", data_overrides),
        ("train", train_overrides),
    ):
        values[section].update({k: v for k, v in (overrides or {}).items() if v is not None})
    if (train_overrides or {}).get("epochs") is not None:
        values["train"]["steps"] = None
    values["data"]["data_dir"] = str(Path(data).resolve())
    return RunConfig.from_dict(values)


def default_run_dir(data_dir: str) -> Path:
    """runs/<data set name>-<YYYYmmdd-HHMMSS>."""
    name = Path(data_dir).resolve().name or "data"
    return Path("runs") / f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def _comparable(config: RunConfig) -> dict:
    values = config.to_dict()
    for section, names in RESUMABLE_CHANGES.items():
        for name in names:
            values[section].pop(name, None)
    return values


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    changes = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if isinstance(before, dict) and isinstance(after, dict):
            changes += _differences(before, after, f"{prefix}{key}.")
        elif before != after:
            changes.append(f"{prefix}{key}: {before!r} -> {after!r}")
    return changes


def _write_json_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def prepare_run_dir(run_dir: Path, config: RunConfig, force: bool) -> bool:
    """Creates the run folder or checks it belongs to this config; returns True if resuming."""
    config_path = run_dir / CONFIG_FILE
    resuming = config_path.is_file()
    if resuming:
        previous = RunConfig.load(config_path)
        changes = _differences(_comparable(previous), _comparable(config))
        if changes and not force:
            raise UserError(
                f"{run_dir} holds a run with a different config ({'; '.join(changes[:6])}). "
                "Use another --out, or --force to continue it with the new settings."
            )
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise UserError(
            f"{run_dir} exists, is not empty and is not a run folder (no {CONFIG_FILE}). "
            "Choose another --out."
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_json_atomic(config_path, config.to_json())
    return resuming


# ----------------------------------------------------------------------------- model setup


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

    def get_config(self):
        return {
            "base_rate": self.base_rate,
            "total_steps": self.total_steps,
            "decay_steps": self.decay_steps,
        }


def distribution_strategy():
    """MultiWorkerMirroredStrategy under TF_CONFIG, MirroredStrategy on >1 GPU, else default."""
    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _refuse_multi_worker_fit(strategy) -> None:
    """Keras 3's model.fit fails under MultiWorkerMirroredStrategy with several workers.

    Measured here (TF 2.21, Keras 3.15, two workers on localhost): fit raises "Attempt to
    convert a value ({... PerReplica ...}) to a Tensor" on the first batch; upstream:
    keras-team/keras#20585, tensorflow/tensorflow#72388. Say so before any work is done.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return
    cluster = resolver.cluster_spec().as_dict()
    if sum(len(cluster.get(job, [])) for job in ("chief", "worker")) > 1:
        raise UserError(
            "TF_CONFIG describes several workers, but Keras 3's model.fit does not run under "
            "MultiWorkerMirroredStrategy (keras-team/keras#20585). Train on one machine: "
            "unset TF_CONFIG; several GPUs there are used through MirroredStrategy."
        )


def build_model(run_config: RunConfig, total_steps: int):
    """The compiled AffineGAN for a resolved config (call inside the strategy scope)."""
    from affinegan_tf.gan import AffineGAN

    model_config, train = run_config.model, run_config.train
    decay_steps = int(round(total_steps * train.decay_fraction))

    def optimizer(name):
        rate = ConstantThenLinearDecay(train.learning_rate, total_steps, decay_steps)
        adam = keras.optimizers.Adam(rate, beta_1=train.beta_1, beta_2=train.beta_2, name=name)
        return keras.optimizers.LossScaleOptimizer(adam) if train.mixed_precision else adam

    model = AffineGAN(
        model_config,
        use_local_discriminator=model_config.local_discriminator == "on",
        seed=train.seed,
    )
    model.compile(
        generator_optimizer=optimizer("generator_adam"),
        discriminator_optimizer=optimizer("discriminator_adam"),
        loss_weights=train.loss_weights,
    )
    return model


def random_batch(run_config: RunConfig) -> dict:
    """One batch shaped like the data pipeline's, with random values (speed measurements)."""
    model_config = run_config.model
    size, targets = model_config.image_size, model_config.num_targets
    batch_size = run_config.train.batch_size
    return {
        "neutral": tf.random.uniform((batch_size, size, size, 3), -1, 1),
        "targets": tf.random.uniform((batch_size, targets, size, size, 3), -1, 1),
        "masks": tf.ones((batch_size, targets, size, size, 1)),
        "prior_intensities": tf.random.uniform((batch_size, targets)),
        "target_positions": tf.random.uniform((batch_size, targets)),
    }


def measure_steps_per_second(run_config: RunConfig, steps: int = 40, warmup: int = 5) -> float:
    """Training steps per second of a config on this machine (random data, after warm-up).

    Timed between batch ends inside one fit() call, so fit's own start-up is not counted.
    The local discriminator is used when the config says "on" (resolve "auto" first).
    """
    tf.config.optimizer.set_experimental_options({"remapping": False})
    model = build_model(run_config, total_steps=10_000)
    dataset = tf.data.Dataset.from_tensors(random_batch(run_config)).repeat()
    marks: dict[int, float] = {}

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch in (warmup - 1, warmup + steps - 1):
                marks[batch] = time.perf_counter()

    model.fit(dataset, steps_per_epoch=warmup + steps, epochs=1, verbose=0, callbacks=[Clock()])
    return steps / (marks[warmup + steps - 1] - marks[warmup - 1])


# ----------------------------------------------------------------------------- callbacks


def _format_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes:02d}:{seconds:02d}"


PROGRESS_TERMS = (
    ("g_reconstruction", "L1"),
    ("g_global_adversarial", "G"),
    ("d_global", "D"),
    ("d_intensity", "Da"),
    ("intensity_mean", "a"),
    ("intensity_std", "a_sd"),
)


class TrainingMonitor(keras.callbacks.Callback):
    """Progress bar, TensorBoard scalars, checkpoints + sample GIFs, NaN guard, signals."""

    def __init__(self, runner: _Runner):
        super().__init__()
        self.runner = runner
        self.timed_from: tuple[int, float] | None = None
        self.last_print = 0.0
        self.bad_term: str | None = None
        self.interrupted = False
        self.first_step = runner.start_step
        self.is_tty = sys.stderr.isatty()

    def on_train_batch_end(self, batch, logs=None):
        runner = self.runner
        step = runner.start_step + batch + 1
        logs = logs or {}
        values = {}
        for name, value in logs.items():
            value = float(np.asarray(value))
            values[name] = value
            if not math.isfinite(value) and self.bad_term is None:
                self.bad_term = name
        if self.bad_term is not None:
            self.bad_step = step
            self.model.stop_training = True
            return
        runner.last_logs = values
        if step % runner.config.train.log_every == 0 or step == runner.total_steps:
            runner.write_scalars(step, values)
            self.model.reset_metrics()
        if step % runner.config.train.checkpoint_every == 0 and step < runner.total_steps:
            runner.save(step)
        self._progress(step, values)
        if runner.stop_requested:
            self.interrupted = True
            self.model.stop_training = True

    def _progress(self, step: int, values: dict, final: bool = False) -> None:
        now = time.monotonic()
        interval = 0.5 if self.is_tty else 30.0
        if not final and now - self.last_print < interval and step != self.first_step + 1:
            return
        self.last_print = now
        runner = self.runner
        if self.timed_from is None:
            # The first step includes tracing; the rate counts from its end.
            self.timed_from = (step, now)
        done = step - self.timed_from[0]
        rate = done / max(now - self.timed_from[1], 1e-9) if done else 0.0
        eta = (runner.total_steps - step) / rate if rate > 0 else 0.0
        width = 24
        filled = int(width * step / runner.total_steps)
        bar = "#" * filled + "-" * (width - filled)
        terms = " ".join(
            f"{short} {values[name]:.3f}" for name, short in PROGRESS_TERMS if name in values
        )
        epoch = math.ceil(step / runner.steps_per_epoch)
        line = (
            f"[{bar}] step {step}/{runner.total_steps} epoch {epoch}/{runner.total_epochs} "
            f"| {terms} | {rate:.1f} step/s | ETA {_format_duration(eta)}"
        )
        if self.is_tty:
            print("\r" + line[:200].ljust(120), end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    def on_train_end(self, logs=None):
        if self.is_tty:
            print(file=sys.stderr)


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


class _Runner:
    """State shared by fit() and its callback."""

    def __init__(self, run_config: RunConfig, run_dir: Path, training_set, total_steps: int):
        from affinegan_tf.config import steps_per_epoch

        self.config = run_config
        self.run_dir = run_dir
        self.training_set = training_set
        self.total_steps = total_steps
        self.steps_per_epoch = steps_per_epoch(len(training_set.names), run_config.train.batch_size)
        self.total_epochs = math.ceil(total_steps / self.steps_per_epoch)
        self.start_step = 0
        self.stop_requested = False
        self.last_logs: dict = {}
        self.sample_face: np.ndarray | None = None
        self.model = None
        self.checkpoint: TrainingCheckpoint | None = None
        self.writer = None
        self.last_sample: Path | None = None

    def write_scalars(self, step: int, values: dict) -> None:
        with self.writer.as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(name, value)

    def save(self, step: int) -> str:
        path = self.checkpoint.save()
        self.write_sample(step)
        return path

    def write_sample(self, step: int) -> None:
        """A GIF of the sample face at intensities 0..1, TensorBoard images and histogram, and
        the intensity range of the training videos."""
        from affinegan_tf.generation import generate_frames, write_animation

        intensities = self.training_intensities()
        with self.writer.as_default(step=step):
            if intensities is not None:
                tf.summary.histogram("inferred_intensity", intensities, step=step)
            if self.sample_face is not None:
                sweep = np.linspace(0.0, 1.0, SAMPLE_FRAMES, dtype=np.float32)
                frames = generate_frames(self.model.generator, self.sample_face, sweep)
                samples = self.run_dir / "samples"
                self.last_sample = write_animation(frames, samples / f"step_{step:07d}.gif", fps=10)
                strip = np.concatenate(list(frames[:: max(1, SAMPLE_FRAMES // 8)]), axis=1)
                tf.summary.image("sample_0_to_1", strip[np.newaxis], step=step)
        self.writer.flush()
        self.write_intensity_range(step, intensities)

    def training_intensities(self) -> np.ndarray | None:
        """Inferred intensities of frames 1..T-1 of up to RANGE_VIDEOS training videos.

        Each video's frames (up to RANGE_FRAMES, evenly spaced) are taken relative to its own
        first frame. None for temporal labels, which have no estimator.
        """
        from affinegan_tf.data.video import square_resize
        from affinegan_tf.evaluation.curves import infer_frame_intensities

        if self.config.model.intensity == "temporal":
            return None
        values = []
        videos = self.training_set.frames
        for index in np.linspace(0, len(videos) - 1, min(RANGE_VIDEOS, len(videos))).astype(int):
            frames = videos[index]
            chosen = np.unique(np.linspace(0, len(frames) - 1, RANGE_FRAMES).astype(int))
            faces = square_resize(np.asarray(frames[chosen]), self.config.model.image_size)
            values.append(infer_frame_intensities(self.model, faces[0], faces[1:]))
        return np.concatenate(values)

    def write_intensity_range(self, step: int, intensities: np.ndarray | None) -> None:
        """`<run>/intensity_range.json`: what `export` records as the intensity range seen."""
        from affinegan_tf.export.exporter import INTENSITY_RANGE_FILE

        if intensities is None:
            summary = {"min": 0.0, "max": 1.0, "note": "temporal labels t / T, by construction"}
        else:
            summary = {
                "min": float(intensities.min()),
                "max": float(intensities.max()),
                "p05": float(np.percentile(intensities, 5)),
                "p95": float(np.percentile(intensities, 95)),
                "mean": float(intensities.mean()),
                "frames": int(intensities.size),
                "note": "inferred on frames of training videos, relative to each first frame",
            }
        summary["step"] = step
        _write_json_atomic(self.run_dir / INTENSITY_RANGE_FILE, json.dumps(summary, indent=2))


def _sample_face(training_set, image_size: int, face_crop: bool, margin: float) -> np.ndarray:
    """The neutral face shown in sample GIFs: the first test item, else the first video."""
    from affinegan_tf.data.video import prepare_photo, read_frames, read_image, square_resize

    index = training_set.index
    for item in getattr(index, "test_items", [])[:1]:
        try:
            path = Path(item)
            if path.is_file() and path.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp", ".webp"):
                image = read_image(path)
            else:
                image = read_frames(path, max_frames=2)[0]
            return prepare_photo(image, image_size, face_crop=face_crop, face_margin=margin)
        except UserError:
            break
    return square_resize(np.asarray(training_set.frames[0][0]), image_size)


# ----------------------------------------------------------------------------- fit


def fit(run_config: RunConfig, run_dir: str | Path, force: bool = False) -> FitResult:
    """Trains (or resumes) a run. See the module docstring for the resume guarantee."""
    from affinegan_tf.data.pipeline import load_training_set, make_dataset

    run_dir = Path(run_dir)
    model_config = run_config.model
    training_set = load_training_set(run_config.data, model_config.load_size)
    local = model_config.local_discriminator
    if local == "auto":
        local = "on" if training_set.with_masks else "off"
    elif local == "on" and not training_set.with_masks:
        raise UserError(
            f"--local-d on needs mouth masks, but {run_config.data.data_dir} has none "
            "(expected <root>/train/patch/<video>/ with one mask per frame). Use --local-d off."
        )
    run_config = dataclasses.replace(
        run_config, model=dataclasses.replace(model_config, local_discriminator=local)
    )
    total_steps = run_config.train.total_steps(len(training_set.names))

    # Grappler's remapper fails on this graph (LeakyReluGrad reads a BiasAdd it fuses away), logs
    # an error and leaves the graph unchanged, so switching it off loses nothing (measured) and
    # keeps the output clean.
    tf.config.optimizer.set_experimental_options({"remapping": False})
    if run_config.train.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    strategy = distribution_strategy()
    _refuse_multi_worker_fit(strategy)
    resuming = prepare_run_dir(run_dir, run_config, force)
    with strategy.scope():
        model = build_model(run_config, total_steps)
    runner = _Runner(run_config, run_dir, training_set, total_steps)
    runner.model = model
    runner.checkpoint = TrainingCheckpoint(model, run_dir, keep=run_config.train.keep_checkpoints)
    runner.start_step = runner.checkpoint.restore_latest() if resuming else 0
    runner.writer = tf.summary.create_file_writer(str(run_dir / "logs"))
    runner.sample_face = _sample_face(
        training_set,
        model_config.image_size,
        run_config.data.face_crop,
        run_config.data.face_margin,
    )
    _say(
        f"{'Resuming' if runner.start_step else 'Starting'} {run_dir} at step "
        f"{runner.start_step}/{total_steps}: {len(training_set.names)} videos, preset "
        f"{run_config.preset} ({model_config.image_size}px), local D {local}, "
        f"batch {run_config.train.batch_size}, {strategy.num_replicas_in_sync} replica(s)."
    )
    if runner.start_step >= total_steps:
        _say(f"Nothing to do: the run already reached step {runner.start_step}.")
        return FitResult(
            run_dir, runner.start_step, total_steps, runner.checkpoint.latest, None, False, {}
        )

    dataset = make_dataset(
        training_set,
        image_size=model_config.image_size,
        load_size=model_config.load_size,
        num_targets=model_config.num_targets,
        batch_size=run_config.train.batch_size,
        seed=run_config.train.seed,
        start_step=runner.start_step,
    )
    monitor = TrainingMonitor(runner)
    previous_handlers = _install_stop_handlers(runner)
    try:
        model.fit(
            dataset,
            epochs=1,
            steps_per_epoch=total_steps - runner.start_step,
            verbose=0,
            shuffle=False,  # the stream is shuffled by its own seed
            callbacks=[monitor],
        )
    finally:
        _restore_handlers(previous_handlers)

    step = int(model.step.numpy())
    if monitor.bad_term is not None:
        kept = runner.checkpoint.latest
        raise UserError(
            f"Training stopped at step {monitor.bad_step}: the loss term '{monitor.bad_term}' "
            f"became NaN or Inf. Nothing was saved after it; the last good checkpoint is "
            f"{kept or 'none (no checkpoint had been written yet)'}. Lower --learning-rate, "
            "check the data for broken frames, or resume from that checkpoint."
        )
    path = runner.save(step)
    monitor._progress(step, runner.last_logs, final=True)
    if monitor.interrupted:
        _say(f"\nStopped at step {step}/{total_steps}; saved {path}. Rerun the command to resume.")
    else:
        _say(f"\nDone: step {step}/{total_steps}; checkpoint {path}; sample {runner.last_sample}.")
    return FitResult(
        run_dir, step, total_steps, path, runner.last_sample, monitor.interrupted, runner.last_logs
    )


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _install_stop_handlers(runner: _Runner) -> dict:
    """First Ctrl-C / SIGTERM: finish the step, save, stop. A second Ctrl-C stops at once."""
    previous = {}

    def request_stop(signum, frame):
        if runner.stop_requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        runner.stop_requested = True
        _say(f"\nReceived {signal.Signals(signum).name}: saving a checkpoint after this step...")

    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[signum] = signal.signal(signum, request_stop)
        except ValueError:  # not the main thread
            pass
    return previous


def _restore_handlers(previous: dict) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def fit_from_flags(
    data: str,
    out: str | None = None,
    pipeline: str | None = None,
    preset_name: str | None = None,
    epochs: int | None = None,
    steps: int | None = None,
    batch_size: int | None = None,
    local_d: str | None = None,
    face_crop: bool | None = None,
    seed: int | None = None,
    learning_rate: float | None = None,
    checkpoint_every: int | None = None,
    mixed_precision: bool | None = None,
    intensity: str | None = None,
    intensity_discriminator: str | None = None,
    strict: bool | None = None,
    force: bool = False,
) -> FitResult:
    """`affinegan-tf fit`: flags override the recipe, which overrides the preset."""
    if not Path(data).exists():
        raise UserError(f"Data folder {data} does not exist.")
    run_config = resolve_config(
        data,
        pipeline=pipeline,
        preset_name=preset_name,
        model_overrides={
            "local_discriminator": local_d,
            "intensity": intensity,
            "intensity_discriminator": None
            if intensity_discriminator is None
            else intensity_discriminator == "on",
        },
        data_overrides={"face_crop": face_crop, "strict": strict},
        train_overrides={
            "epochs": epochs,
            "steps": steps,
            "batch_size": batch_size,
            "seed": seed,
            "learning_rate": learning_rate,
            "checkpoint_every": checkpoint_every,
            "mixed_precision": mixed_precision,
        },
    )
    run_dir = Path(out) if out else default_run_dir(data)
    return fit(run_config, run_dir, force=force)
