"""`affinegan-tf demo`: the whole method on built-in data, on a CPU, in minutes.

Steps, each reused when its output is already there: make the synthetic set -> measure this
machine's training speed -> train the `tiny` preset for as many steps as fit the budget -> export
every format -> GIFs for held-out faces -> intensity plot of a held-out periodic video -> Spearman
of inferred against true intensity on held-out videos.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from affinegan_tf.animation import write_animation
from affinegan_tf.checkpoints import load_model
from affinegan_tf.config import RunConfig
from affinegan_tf.data.square import square_resize
from affinegan_tf.data.video import read_frames
from affinegan_tf.errors import UserError, missing_modules
from affinegan_tf.evaluation.curves import (
    intensity_curve,
)
from affinegan_tf.evaluation.held_out import held_out_scores
from affinegan_tf.export.exporter import export_model
from affinegan_tf.generation import intensity_sweep
from affinegan_tf.recipes import resolve_config
from affinegan_tf.rendering import generate_frames
from affinegan_tf.run_folder import CONFIG_FILE, intensity_apex, is_run_folder
from affinegan_tf.speed import config_for_masked_data, measure_steps_per_second
from affinegan_tf.toy import write_toy_dataset
from affinegan_tf.training import fit

TOY_VIDEOS = 48
TOY_SIZE = 64
# Time kept for everything but training (data, calibration, export, GIFs, evaluation), in
# minutes: measured 0.6 min on 2 cores (demo total 7.6 min with 7.0 min of training planned).
OVERHEAD_MINUTES = 1.0
MIN_STEPS = 200
# A real run trains at this share of the speed probe's rate (random data, no checkpoints, sample
# GIFs or callbacks): measured 0.88 (8.0 against 9.1 steps/s, a default demo on a 2-core Xeon,
# which overran its 9 minutes by 0.8 when planned at the probe's rate) and 0.94 (7.2 against 7.7).
FIT_SPEED_SHARE = 0.9
OVERVIEW_FACES = 6
# The steps at which the recipe ranked held-out videos at 0.92-0.93 (2 idle Zen 5 cores, 9
# minutes; docs/RESULTS.md). Far fewer steps rank much worse: 1,271 steps (9 minutes on 2 Zen 3
# cores without AVX-512) ranked them at 0.40.
REFERENCE_STEPS = 5800
PIPELINE = "toy"  # the built-in recipe (pipelines/toy.toml, shipped in the package)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _toy_data(out_dir: Path, expression: str, seed: int) -> Path:
    data_dir = out_dir / "data"
    if (data_dir / "intensities.csv").is_file():
        _say(f"[1/6] Reusing the synthetic data set in {data_dir}")
        return data_dir
    _say(f"[1/6] Drawing {TOY_VIDEOS} synthetic {expression} videos into {data_dir} ...")
    write_toy_dataset(
        data_dir, num_videos=TOY_VIDEOS, size=TOY_SIZE, expression=expression, seed=seed
    )
    return data_dir


def budget_advice(rate: float, steps: int) -> str | None:
    """What to tell a user whose machine trains well under REFERENCE_STEPS, else None.

    Args:
        rate: Steps per second the run is expected at (plan_steps).
        steps: Steps the budget allows.
    """
    if steps >= 0.8 * REFERENCE_STEPS:
        return None
    minutes = REFERENCE_STEPS / rate / 60 + OVERHEAD_MINUTES
    return (
        f"this machine trains {steps} steps in the budget, where the recipe's best figures "
        f"(docs/RESULTS.md) used {REFERENCE_STEPS}; expect a weaker model (intensities ranked "
        f"less well, fainter expressions). `--minutes {math.ceil(minutes)}` trains "
        f"{REFERENCE_STEPS} steps here."
    )


def plan_steps(probe_rate: float, minutes: float, cap: int | None) -> tuple[int, float]:
    """Steps that fill the demo's training minutes, and the steps/s a real run is expected at.

    Args:
        probe_rate: Steps per second measured by the speed probe.
        minutes: The whole demo's budget (OVERHEAD_MINUTES of it is kept for the rest).
        cap: The recipe's step count (no more is trained), or None.
    """
    rate = probe_rate * FIT_SPEED_SHARE
    budget = max(minutes - OVERHEAD_MINUTES, 0.5) * 60
    steps = max(MIN_STEPS, int(rate * budget))
    return min(steps, cap or steps), rate


def _train(out_dir: Path, data_dir: Path, minutes: float, seed: int, steps: int | None):
    run_dir = out_dir / "run"
    if is_run_folder(run_dir):
        previous = RunConfig.load(run_dir / CONFIG_FILE)
        _say(f"[2/6] Found the run in {run_dir}: resuming or reusing it (not retraining).")
        return fit(previous, run_dir)
    config = resolve_config(str(data_dir), pipeline=PIPELINE, train_overrides={"seed": seed})
    if steps is None:
        _say("[2/6] Measuring training speed on this machine ...")
        # The toy set has masks, so training uses the local D: measure with it.
        probe_rate = measure_steps_per_second(config_for_masked_data(config))
        steps, rate = plan_steps(probe_rate, minutes, config.train.steps)
        planned = (
            f"{probe_rate:.1f} steps/s measured (~{rate:.1f} with checkpoints and samples) -> "
            f"training {steps} steps (~{steps / rate / 60:.1f} min)"
        )
        advice = budget_advice(rate, steps)
        if advice:
            _say(f"[2/6] Note: {advice}")
    else:
        planned = f"training {steps} steps (--steps)"
    checkpoint_every = max(1, min(1000, steps // 5 or 1))
    _say(
        f"[2/6] {planned}; a checkpoint and a sample GIF every {checkpoint_every} steps in "
        f"{run_dir}/samples."
    )
    config = resolve_config(
        str(data_dir),
        pipeline=PIPELINE,
        train_overrides={"seed": seed, "steps": steps, "checkpoint_every": checkpoint_every},
    )
    return fit(config, run_dir)


def _export_is_current(export_dir: Path, checkpoint: str | None) -> bool:
    """Whether an earlier demo's export was made from this checkpoint (else export again)."""
    try:
        manifest = json.loads((export_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return (
        checkpoint is not None
        and manifest.get("source", {}).get("checkpoint") == Path(checkpoint).name
    )


def _held_out_videos(data_dir: Path) -> list[Path]:
    return sorted(path for path in (data_dir / "test" / "img").iterdir() if path.is_dir())


def run_demo(
    out_dir: str | Path = "demo",
    expression: str = "smile",
    minutes: float = 9.0,
    seed: int = 0,
    steps: int | None = None,
) -> dict:
    """Runs the demo end to end; returns a summary (also printed)."""
    started = time.monotonic()
    out_dir = Path(out_dir)
    if minutes <= 0:
        raise UserError(f"--minutes must be > 0, got {minutes}.")
    data_dir = _toy_data(out_dir, expression, seed)
    if steps is not None and steps < 1:
        raise UserError(f"--steps must be >= 1, got {steps}.")
    result = _train(out_dir, data_dir, minutes, seed, steps)
    run_dir = result.run_dir

    export_dir = out_dir / "exported"
    if _export_is_current(export_dir, result.checkpoint):
        _say(f"[3/6] Reusing the export in {export_dir}")
    else:
        available = [name for name in ("tflite", "onnx") if not missing_modules(name)]
        formats = ["savedmodel", *available]
        _say(f"[3/6] Exporting {', '.join(formats)} to {export_dir} ...")
        if len(formats) < 3:
            _say("      (TFLite/ONNX need the export extra: pip install 'affinegan-tf[export]')")
        export_model(model_path=str(run_dir), out_dir=str(export_dir), formats=formats, fp16=True)

    model, config = load_model(run_dir)
    size = config.model.image_size
    videos = _held_out_videos(data_dir)
    gifs_dir = out_dir / "gifs"
    # Calibrated intensities: 1 is the apex of the expression (calibration.py).
    apex = intensity_apex(run_dir)
    _say(
        f"[4/6] GIFs of {len(videos)} held-out faces (never seen in training), intensity 0 -> "
        f"1 (the apex; raw {apex:.3g}) -> 0 -> {gifs_dir}"
    )
    sweep = intensity_sweep(16, 1.0, "pingpong")
    gifs = []
    animations = []
    for video in videos:
        neutral = square_resize(read_frames(video, max_frames=2)[0], size)
        frames = generate_frames(model.inference_generator, neutral, sweep, apex)
        gifs.append(write_animation(frames, gifs_dir / f"{video.name}.gif", fps=12))
        animations.append(frames)
    # One animated row of up to OVERVIEW_FACES held-out faces, side by side.
    overview = np.concatenate(animations[:OVERVIEW_FACES], axis=2)
    gifs.append(write_animation(overview, gifs_dir / "overview.gif", fps=12))

    periodic = next((video for video in videos if video.name.startswith("periodic")), videos[0])
    plot = out_dir / f"intensity_{periodic.name}.png"
    _say(f"[5/6] Intensity curve of held-out {periodic.name} -> {plot}")
    intensity_curve(model_path=str(run_dir), video=str(periodic), neutral=None, plot_path=str(plot))

    _say("[6/6] Held-out scores: inferred vs true intensity (Spearman), L1 to the real frames ...")
    scores = held_out_scores(model, data_dir, apex)
    spearman = {kind: value for kind, value in scores["spearman"].items() if kind != "all"}

    summary = {
        "run": str(run_dir),
        "steps": result.step,
        "export": str(export_dir),
        "gifs": [str(path) for path in gifs],
        "intensity_plot": str(plot),
        "spearman_held_out": scores["spearman"],
        # Pixels in [0, 1]: the frame at a = 0 against the input, and frames generated at each
        # held-out frame's true intensity against that real frame, next to copying the input.
        "l1_at_zero_intensity": scores["l1_a0"],
        "l1_generated": scores["l1_generated"],
        "l1_copy_input": scores["l1_copy"],
        "apex_of_complete_videos": scores["apex_inferred"],
        "minutes": (time.monotonic() - started) / 60,
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\nDemo finished in {summary['minutes']:.1f} min.")
    print(f"  trained model    {run_dir}  ({result.step} steps; samples in {run_dir}/samples)")
    formats = json.loads((export_dir / "manifest.json").read_text()).get("formats", [])
    print(f"  exported         {export_dir}  ({', '.join(formats)}; manifest.json)")
    print(f"  held-out GIFs    {gifs_dir}/  (overview.gif shows them side by side)")
    print(f"  intensity plot   {plot}")
    print(f"  summary          {out_dir / 'summary.json'}")
    kinds = ", ".join(f"{kind} {value:.2f}" for kind, value in spearman.items())
    overall = scores["spearman"]["all"]
    print(f"  Spearman(inferred, true intensity) on held-out videos: {overall:.2f} ({kinds})")
    print(
        f"  L1 to the real frames (pixels 0..1): generated {scores['l1_generated']:.4f}, copying "
        f"the input {scores['l1_copy']:.4f}; a = 0 vs the input {scores['l1_a0']:.4f}"
    )
    return summary
