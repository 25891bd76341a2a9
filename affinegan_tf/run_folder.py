"""The run folder: the name of every file in it, the config check on resume, the intensity range.

    <run>/config.json            the resolved RunConfig, written first (it makes a folder a run)
    <run>/checkpoints/           model + optimiser state, numbered by step (checkpoints.py)
    <run>/samples/step_N.gif     the sample face at intensities 0..1, at every checkpoint
    <run>/logs/                  TensorBoard event files (scalars, sample strips, histograms)
    <run>/intensity_range.json   intensities inferred on training frames at the last checkpoint;
                                 `export` records it in the manifest

Every module that reads or writes one of these imports its name from here.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np

from affinegan_tf import calibration
from affinegan_tf.config import RunConfig
from affinegan_tf.errors import UserError
from affinegan_tf.files import write_text_atomic

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
SAMPLES_DIR = "samples"
LOGS_DIR = "logs"
INTENSITY_RANGE_FILE = "intensity_range.json"

# Settings that may change between a run and its resumption (how long to train, bookkeeping).
RESUMABLE_CHANGES = {
    "train": {
        "epochs",
        "steps",
        "checkpoint_every",
        "keep_checkpoints",
        "log_every",
        "steps_per_execution",
    },
    "data": {"strict", "cache_dir"},
}


def is_run_folder(path: str | Path) -> bool:
    """Whether `path` is a folder that `fit` wrote (it holds config.json)."""
    return (Path(path) / CONFIG_FILE).is_file()


def trained_intensity_formula(run_dir: str | Path | None) -> str | None:
    """The intensity formula the weights in a run folder were trained with (None: no run there).

    A property of the weights, like the architecture: resuming or fine-tuning a run (an imported
    one trained with the authors' formula, say) keeps it unless a flag or recipe names another.
    """
    if run_dir is None or not is_run_folder(run_dir):
        return None
    return RunConfig.load(Path(run_dir) / CONFIG_FILE).model.intensity_formula


def default_run_dir(data_dir: str) -> Path:
    """runs/<data set name>-<YYYYmmdd-HHMMSS>."""
    name = Path(data_dir).resolve().name or "data"
    return Path("runs") / f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def sample_path(run_dir: Path, step: int) -> Path:
    """Where the sample GIF of a step goes."""
    return Path(run_dir) / SAMPLES_DIR / f"step_{step:07d}.gif"


def config_differences(previous: RunConfig, config: RunConfig) -> list[str]:
    """The settings that differ between two configs, ignoring RESUMABLE_CHANGES."""
    return _differences(_comparable(previous), _comparable(config))


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


def prepare_run_dir(run_dir: Path, config: RunConfig, force: bool) -> bool:
    """Creates the run folder or checks it belongs to this config; returns True if resuming."""
    config_path = run_dir / CONFIG_FILE
    resuming = config_path.is_file()
    if resuming:
        changes = config_differences(RunConfig.load(config_path), config)
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
    write_text_atomic(config_path, config.to_json())
    return resuming


def write_intensity_range(run_dir: Path, step: int, per_video: list[np.ndarray] | None) -> dict:
    """`<run>/intensity_range.json` from the intensities inferred on training videos.

    Records the raw intensities' spread (min, max, p05, p95, mean), each video's largest
    intensity and the model's `apex`, their median (calibration.py: what a = 1 means).

    Args:
        run_dir: The run folder.
        step: The training step the intensities were inferred at.
        per_video: The inferred values of frames 1..T-1 of each training video, relative to its
            frame 0, or None for temporal labels (range 0..1 and apex 1 by construction).

    Returns:
        What was written.
    """
    if per_video is None:
        summary = {
            "min": 0.0,
            "max": 1.0,
            calibration.APEX_KEY: 1.0,
            "note": calibration.TEMPORAL_NOTE,
        }
    else:
        intensities = np.concatenate([np.reshape(values, -1) for values in per_video])
        maxima = calibration.video_maxima(per_video)
        summary = {
            "min": float(intensities.min()),
            "max": float(intensities.max()),
            "p05": float(np.percentile(intensities, 5)),
            "p95": float(np.percentile(intensities, 95)),
            "mean": float(intensities.mean()),
            "frames": int(intensities.size),
            "video_maxima": maxima,
            calibration.APEX_KEY: calibration.apex_from_maxima(maxima),
            "note": (
                "raw intensities inferred on frames of training videos, relative to each first "
                "frame; apex = the median of video_maxima, the raw intensity that a = 1 means"
            ),
        }
    summary["step"] = step
    write_text_atomic(Path(run_dir) / INTENSITY_RANGE_FILE, json.dumps(summary, indent=2))
    return summary


def intensity_apex(run_dir: str | Path) -> float:
    """The apex a run folder recorded (the raw intensity a = 1 means), else 1 (the raw scale)."""
    return calibration.apex_of(read_intensity_range(run_dir))


def read_intensity_range(run_dir: str | Path) -> dict | None:
    """`<run>/intensity_range.json` (the intensities inferred on the training data), if written."""
    path = Path(run_dir) / INTENSITY_RANGE_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"Cannot read {path}: {error}.") from None
