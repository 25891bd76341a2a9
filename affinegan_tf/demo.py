"""`affinegan-tf demo`: the whole method on built-in data, on a CPU, in minutes.

Steps, each reused when its output is already there: make the synthetic set -> measure this
machine's training speed -> train the `tiny` preset for as many steps as fit the budget -> export
every format -> GIFs for held-out faces -> intensity plot of a held-out periodic video -> Spearman
of inferred against true intensity on held-out videos.
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

import numpy as np

from affinegan_tf.checkpoints import CONFIG_FILE
from affinegan_tf.config import RunConfig
from affinegan_tf.errors import UserError

TOY_VIDEOS = 48
TOY_SIZE = 64
# Time kept for everything but training (data, export, GIFs, evaluation), in minutes.
OVERHEAD_MINUTES = 1.5
MIN_STEPS = 200
PIPELINE = Path(__file__).resolve().parents[1] / "pipelines" / "toy.toml"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _toy_data(out_dir: Path, expression: str, seed: int) -> Path:
    from affinegan_tf.data.synthetic import write_toy_dataset

    data_dir = out_dir / "data"
    if (data_dir / "intensities.csv").is_file():
        _say(f"[1/6] Reusing the synthetic data set in {data_dir}")
        return data_dir
    _say(f"[1/6] Drawing {TOY_VIDEOS} synthetic {expression} videos into {data_dir} ...")
    write_toy_dataset(
        data_dir, num_videos=TOY_VIDEOS, size=TOY_SIZE, expression=expression, seed=seed
    )
    return data_dir


def measure_steps_per_second(run_config: RunConfig, steps: int = 30) -> float:
    """Training steps per second of this config on this machine (random data, after warm-up)."""
    import tensorflow as tf

    from affinegan_tf.training import build_model

    model_config = run_config.model
    model = build_model(run_config, total_steps=10_000)
    size, targets = model_config.image_size, model_config.num_targets
    batch_size = run_config.train.batch_size
    batch = {
        "neutral": tf.random.uniform((batch_size, size, size, 3), -1, 1),
        "targets": tf.random.uniform((batch_size, targets, size, size, 3), -1, 1),
        "masks": tf.ones((batch_size, targets, size, size, 1)),
        "prior_intensities": tf.random.uniform((batch_size, targets)),
        "target_positions": tf.random.uniform((batch_size, targets)),
    }
    dataset = tf.data.Dataset.from_tensors(batch).repeat()
    model.fit(dataset, steps_per_epoch=5, epochs=1, verbose=0)
    started = time.monotonic()
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
    return steps / (time.monotonic() - started)


def _train(out_dir: Path, data_dir: Path, minutes: float, seed: int):
    from affinegan_tf.training import fit, resolve_config

    run_dir = out_dir / "run"
    if (run_dir / CONFIG_FILE).is_file():
        previous = RunConfig.load(run_dir / CONFIG_FILE)
        _say(f"[2/6] Found the run in {run_dir}: resuming or reusing it (not retraining).")
        return fit(previous, run_dir)
    config = resolve_config(str(data_dir), pipeline=str(PIPELINE), train_overrides={"seed": seed})
    _say("[2/6] Measuring training speed on this machine ...")
    # The local D only exists when masks do; the toy set has them.
    rate = measure_steps_per_second(config)
    budget = max(minutes - OVERHEAD_MINUTES, 0.5) * 60
    steps = max(MIN_STEPS, int(rate * budget))
    steps = min(steps, config.train.steps or steps)
    checkpoint_every = max(100, steps // 5)
    _say(
        f"      {rate:.1f} steps/s -> training {steps} steps (~{steps / rate / 60:.1f} min); "
        f"a checkpoint and a sample GIF every {checkpoint_every} steps in {run_dir}/samples."
    )
    config = resolve_config(
        str(data_dir),
        pipeline=str(PIPELINE),
        train_overrides={"seed": seed, "steps": steps, "checkpoint_every": checkpoint_every},
    )
    return fit(config, run_dir)


def _held_out_videos(data_dir: Path) -> list[Path]:
    return sorted(path for path in (data_dir / "test" / "img").iterdir() if path.is_dir())


def _true_intensities(data_dir: Path) -> dict[str, tuple[str, list[float]]]:
    """video name -> (kind, ground-truth intensity per frame) for the test split."""
    table: dict[str, tuple[str, list[float]]] = {}
    with open(data_dir / "intensities.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get("split", "test") != "test":
                continue
            kind, values = table.setdefault(row["video"], (row["kind"], []))
            values.append(float(row["intensity"]))
    return table


def run_demo(
    out_dir: str | Path = "demo", expression: str = "smile", minutes: float = 8.0, seed: int = 0
) -> dict:
    """Runs the demo end to end; returns a summary (also printed)."""
    from scipy.stats import spearmanr

    from affinegan_tf.checkpoints import load_model
    from affinegan_tf.data.pixels import to_model_range
    from affinegan_tf.data.video import read_frames, square_resize
    from affinegan_tf.evaluation.curves import intensity_curve
    from affinegan_tf.export.exporter import export_model
    from affinegan_tf.generation import generate_frames, intensity_sweep, write_animation

    started = time.monotonic()
    out_dir = Path(out_dir)
    if minutes <= 0:
        raise UserError(f"--minutes must be > 0, got {minutes}.")
    data_dir = _toy_data(out_dir, expression, seed)
    result = _train(out_dir, data_dir, minutes, seed)
    run_dir = result.run_dir

    export_dir = out_dir / "exported"
    if (export_dir / "manifest.json").is_file():
        _say(f"[3/6] Reusing the export in {export_dir}")
    else:
        _say(f"[3/6] Exporting SavedModel, TFLite and ONNX to {export_dir} ...")
        export_model(model_path=str(run_dir), out_dir=str(export_dir), formats=None, fp16=True)

    model, config = load_model(run_dir)
    size = config.model.image_size
    videos = _held_out_videos(data_dir)
    gifs_dir = out_dir / "gifs"
    _say(f"[4/6] GIFs of {len(videos)} held-out faces (never seen in training) -> {gifs_dir}")
    sweep = intensity_sweep(16, 1.0, "pingpong")
    gifs = []
    strips = []
    for video in videos:
        neutral = square_resize(read_frames(video, max_frames=2)[0], size)
        frames = generate_frames(model.generator, neutral, sweep)
        gifs.append(write_animation(frames, gifs_dir / f"{video.name}.gif", fps=12))
        strips.append(np.concatenate(list(frames[:16:3]), axis=1))
    write_animation(np.concatenate(strips[:6], axis=0)[np.newaxis], gifs_dir / "overview.gif")

    periodic = next((video for video in videos if video.name.startswith("periodic")), videos[0])
    plot = out_dir / f"intensity_{periodic.name}.png"
    _say(f"[5/6] Intensity curve of held-out {periodic.name} -> {plot}")
    intensity_curve(model_path=str(run_dir), video=str(periodic), neutral=None, plot_path=str(plot))

    _say("[6/6] Inferred vs true intensity on held-out videos (Spearman) ...")
    truth = _true_intensities(data_dir)
    per_kind: dict[str, list[float]] = {}
    for video in videos:
        if video.name not in truth:
            continue
        kind, true_values = truth[video.name]
        frames = to_model_range(square_resize(read_frames(video), size))
        inferred = model.infer_intensities(frames[:1], frames[1:]).numpy()
        correlation = spearmanr(inferred, true_values[1 : len(inferred) + 1]).statistic
        if np.isfinite(correlation):
            per_kind.setdefault(kind, []).append(float(correlation))
    spearman = {kind: float(np.mean(values)) for kind, values in sorted(per_kind.items())}
    overall = float(np.mean([v for values in per_kind.values() for v in values]))

    summary = {
        "run": str(run_dir),
        "steps": result.step,
        "export": str(export_dir),
        "gifs": [str(path) for path in gifs],
        "intensity_plot": str(plot),
        "spearman_held_out": {"all": overall, **spearman},
        "minutes": (time.monotonic() - started) / 60,
    }
    print(f"\nDemo finished in {summary['minutes']:.1f} min.")
    print(f"  trained model    {run_dir}  ({result.step} steps; samples in {run_dir}/samples)")
    print(f"  exported         {export_dir}  (SavedModel, TFLite, ONNX; manifest.json)")
    print(f"  held-out GIFs    {gifs_dir}/  (overview.gif shows them side by side)")
    print(f"  intensity plot   {plot}")
    kinds = ", ".join(f"{kind} {value:.2f}" for kind, value in spearman.items())
    print(f"  Spearman(inferred, true intensity) on held-out videos: {overall:.2f} ({kinds})")
    return summary
