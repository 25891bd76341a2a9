"""The paper's ablations, trained by the same `fit` and measured by the same `evaluate_model`.

Variants (config switches trained by the same `training.fit`):
- affine        the method: intensity projected on Ed's direction, with the intensity D (D_a);
- mlp           intensity regressed from the image features by a small network (paper ablation);
- temporal      FAN-style labels a_t = t / (T - 1) from the frame position (no estimator, no D_a);
- affine_no_da  the method without the intensity discriminator (paper's "no D_a").
Each is then evaluated with `evaluate_model` on the held-out test videos (all four sequence kinds:
complete, incomplete, periodic, shuffled). One JSON line per variant goes to stdout; the markdown
table to `<out>/ablations.md`. Runs that already reached the step budget are reused, so an
interrupted benchmark resumes where it stopped. `benchmarks/ablations.py` is the command.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Iterator
from pathlib import Path

import keras
import tensorflow as tf

from affinegan_tf.errors import UserError
from affinegan_tf.evaluation.evaluate import evaluate_model
from affinegan_tf.machine_load import OtherProcessesCpu
from affinegan_tf.recipes import resolve_config
from affinegan_tf.toy import write_toy_dataset
from affinegan_tf.training import fit

VARIANTS = {
    "affine": {"intensity": "affine", "intensity_discriminator": True},
    "mlp": {"intensity": "mlp", "intensity_discriminator": True},
    "temporal": {"intensity": "temporal", "intensity_discriminator": False},
    "affine_no_da": {"intensity": "affine", "intensity_discriminator": False},
}
KINDS = ("complete", "incomplete", "periodic", "shuffled")
# At 4,000 steps of `tiny` the affine estimator had not learned the expression yet (held-out
# Spearman 0.20); it reached 0.97 at 12,000 (docs/RESULTS.md). 8,000 steps per variant take
# about 18 minutes on 2 CPU cores.
DEFAULT_STEPS = 8000
DEFAULT_VIDEOS = 48
# Held-out videos (a quarter of each kind): 3 per kind made the per-kind Spearman too noisy to
# read (one shuffled video in 15 is nearly in order by chance).
DEFAULT_TEST_VIDEOS = 24


def machine() -> dict:
    """What the numbers were measured on."""
    model_name = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model_name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model_name or platform.processor(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "gpus": len(tf.config.list_physical_devices("GPU")),
    }


def _code_version() -> str | None:
    """The git commit of the package (with "+changes" when the tree differs), if in a checkout."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "affinegan_tf"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+changes" if dirty else "")


def variant_config(
    name: str,
    data_dir: str | Path,
    steps: int,
    learning_rate: float = 1e-3,
    seed: int = 0,
    preset_name: str = "tiny",
):
    """The RunConfig of one variant: the preset plus the variant's two switches."""
    if name not in VARIANTS:
        raise UserError(f"Unknown ablation variant {name!r}; choose from {', '.join(VARIANTS)}.")
    return resolve_config(
        str(data_dir),
        preset_name=preset_name,
        model_overrides=VARIANTS[name],
        train_overrides={
            "steps": steps,
            "learning_rate": learning_rate,
            "seed": seed,
            "checkpoint_every": max(steps // 2, 1),
            "log_every": 100,
        },
    )


def fresh_names() -> None:
    """Restarts Keras's automatic model names (affine_gan, affine_gan_1, ...).

    checkpoints.py keys variables by a path that starts with the model's automatic name, so a
    run folder loads back only where the loading model gets the name the saving one had. Several
    runs in one process therefore restart the names before each fit and each load.
    """
    keras.backend.clear_session()


TRAINING_RECORD = "ablation_training.json"


def train_variant(name: str, data_dir: Path, run_dir: Path, **settings) -> dict:
    """Trains (or resumes, or reuses) one variant; returns its step count and timing.

    The timing of a finished training is kept in `<run>/ablation_training.json`, so a rerun that
    reuses the run (to re-evaluate it) still reports how long training took.
    """
    config = variant_config(name, data_dir, **settings)
    record_path = Path(run_dir) / TRAINING_RECORD
    fresh_names()
    with OtherProcessesCpu() as load:
        result = fit(config, run_dir)
    seconds = load.seconds
    if not result.logs and record_path.is_file():  # nothing was trained: the run was reused
        return {**json.loads(record_path.read_text()), "reused": True}
    share = load.cores if seconds > 1 else None
    record = {
        "steps": result.step,
        "train_seconds": round(seconds, 1),
        "steps_per_second": round(result.step / seconds, 2) if seconds > 0 else None,
        # Other processes' CPU use during training, in cores (the machine is shared).
        "other_processes_cores": None if share is None else round(share, 2),
    }
    if result.step >= config.train.steps and not result.interrupted:
        record_path.write_text(json.dumps(record))
    return record


def summarise_variant(name: str, report: dict, training: dict) -> dict:
    """The one JSON line of a variant."""
    rows = report["rows"]
    by_kind = (report.get("intensity") or {}).get("spearman_by_kind", {})
    return {
        "variant": name,
        **VARIANTS[name],
        **training,
        "acd_identity": rows["generated"]["acd_identity"],
        "acd_consistency": rows["generated"]["acd_consistency"],
        "acd_ground_truth": rows["generated"]["acd_ground_truth"],
        "l1": rows["generated"]["l1"],
        "psnr": rows["generated"]["psnr"],
        "ssim": rows["generated"]["ssim"],
        "spearman": {kind: by_kind.get(kind, {}).get("spearman") for kind in KINDS},
        # Videos whose intensities were constant (no ranking: Spearman undefined), per kind.
        "spearman_undefined": {kind: by_kind.get(kind, {}).get("undefined", 0) for kind in KINDS},
        "spearman_all": (report.get("intensity") or {}).get("spearman_all"),
        "largest_intensity_mean": _mean_largest_intensity(report),
        "by_kind": {
            kind: {
                "acd_ground_truth": entry["generated"]["acd_ground_truth"],
                "l1": entry["generated"]["l1"],
                "copy_input_l1": entry["copy_input"]["l1"],
            }
            for kind, entry in (report.get("by_kind") or {}).items()
        },
        "faces_missing_generated": report["faces"]["generated"]["missing"],
        "faces_generated": report["faces"]["generated"]["frames"],
        "reference_real": {key: rows["real"][key] for key in ("acd_identity", "acd_consistency")},
        "reference_copy_input": {
            key: rows["copy_input"][key] for key in ("acd_ground_truth", "l1", "psnr", "ssim")
        },
        "report": report["report_dir"],
        "eval_seconds": round(report["seconds"], 1),
    }


def _mean_largest_intensity(report: dict) -> float | None:
    """Mean over videos of the largest intensity used for a video (the scale each face gets)."""
    largest = [max(video["intensities"]) for video in report["per_video"] if video["intensities"]]
    return sum(largest) / len(largest) if largest else None


def _spearman_cell(line: dict, kind: str) -> str:
    value = line["spearman"][kind]
    if value is None and line.get("spearman_undefined", {}).get(kind):
        return "undefined (constant a)"
    return _cell(value, 2)


def _cell(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown_table(lines: list[dict], reference: dict | None, settings: dict) -> str:
    """The ablation table, paper style, with the real and copy-the-input reference rows."""
    header = (
        "| variant | ACD-I | ACD-C | ACD-G | L1 | SSIM | "
        + " | ".join(f"Spearman {kind}" for kind in KINDS)
        + " | largest a (mean) | faces missing (generated) |"
    )
    rule = "|" + "---|" * (6 + len(KINDS) + 2)
    table = [header, rule]
    for line in lines:
        spearman = " | ".join(_spearman_cell(line, kind) for kind in KINDS)
        table.append(
            f"| {line['variant']} | {_cell(line['acd_identity'])} | "
            f"{_cell(line['acd_consistency'])} | {_cell(line['acd_ground_truth'])} | "
            f"{_cell(line['l1'], 4)} | {_cell(line['ssim'])} | {spearman} | "
            f"{_cell(line['largest_intensity_mean'], 2)} | "
            f"{line['faces_missing_generated']} / {line['faces_generated']} |"
        )
    if reference is not None:
        rows, faces = reference["rows"], reference["faces"]
        blanks = " | ".join("" for _ in KINDS)
        table.append(
            f"| real videos (reference) | {_cell(rows['real']['acd_identity'])} | "
            f"{_cell(rows['real']['acd_consistency'])} | 0 | - | - | {blanks} | | "
            f"{faces['real']['missing']} / {faces['real']['frames']} (real) |"
        )
        table.append(
            f"| copy the input (baseline) | {_cell(rows['copy_input']['acd_identity'])} | "
            f"{_cell(rows['copy_input']['acd_consistency'])} | "
            f"{_cell(rows['copy_input']['acd_ground_truth'])} | "
            f"{_cell(rows['copy_input']['l1'], 4)} | {_cell(rows['copy_input']['ssim'])} | "
            f"{blanks} | | - |"
        )
    table += [
        "",
        "Per sequence kind: ACD-G and L1 of the generated videos against the real ones "
        "(copy-the-input L1 in brackets).",
        "",
        "| variant | " + " | ".join(f"ACD-G {kind} | L1 {kind}" for kind in KINDS) + " |",
        "|" + "---|" * (1 + 2 * len(KINDS)),
    ]
    for line in lines:
        cells = []
        for kind in KINDS:
            entry = line["by_kind"].get(kind, {})
            cells.append(_cell(entry.get("acd_ground_truth")))
            cells.append(f"{_cell(entry.get('l1'), 4)} ({_cell(entry.get('copy_input_l1'), 4)})")
        table.append(f"| {line['variant']} | " + " | ".join(cells) + " |")
    notes = (
        f"\nSettings: {json.dumps(settings, sort_keys=True)}\n\n"
        "ACD on raw dlib 128-D embeddings (L2; not the paper's unit-length OpenFace scale). "
        "ACD-I: generated frames 1..T-1 vs the input frame; ACD-C: all frame pairs; ACD-G: "
        "generated frame t vs real frame t. Spearman of the intensity each variant uses for "
        "frame t (inferred, or t/(T-1) for temporal) against the true intensity, frames 1..T-1, "
        "mean over held-out videos of each kind.\n"
    )
    return "\n".join(table) + "\n" + notes


def run_ablations(
    out: str | Path,
    steps: int = DEFAULT_STEPS,
    videos: int = DEFAULT_VIDEOS,
    test_videos: int = DEFAULT_TEST_VIDEOS,
    learning_rate: float = 1e-3,
    seed: int = 0,
    variants: list[str] | None = None,
) -> Iterator[dict]:
    """Trains and evaluates each variant on one synthetic set; yields one line per variant.

    The first line yielded is {"settings": ...}; then one summary per variant as it finishes.
    When all are done, `<out>/ablations.md` holds the table.

    Args:
        out: Folder for the data set (`data/`), the runs (`runs/<variant>`), the evaluation
            reports (`reports/<variant>`) and `ablations.md`.
        steps: Training steps per variant.
        videos: Synthetic training videos (people).
        test_videos: Held-out videos of other people, evaluated; kinds cycle through KINDS.
        learning_rate: Adam learning rate of every variant.
        seed: Seed of the data set and of every run.
        variants: Subset of VARIANTS, in order; None runs all four.
    """
    names = list(variants or VARIANTS)
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        raise UserError(
            f"Unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}."
        )
    out = Path(out)
    data_dir = out / "data"
    if not (data_dir / "intensities.csv").is_file():
        write_toy_dataset(data_dir, num_videos=videos, size=64, seed=seed, test_videos=test_videos)
    settings = {
        "preset": "tiny",
        "steps": steps,
        "learning_rate": learning_rate,
        "seed": seed,
        "videos": videos,
        "test_videos": test_videos,
        "code": _code_version(),
        "machine": machine(),
    }
    yield {"settings": settings}
    lines, reference = [], None
    for name in names:
        run_dir = out / "runs" / name
        training = train_variant(
            name, data_dir, run_dir, steps=steps, learning_rate=learning_rate, seed=seed
        )
        fresh_names()
        report = evaluate_model(run_dir, data_dir, out / "reports" / name)
        reference = reference or report
        line = summarise_variant(name, report, training)
        lines.append(line)
        yield line
    (out / "ablations.md").write_text(markdown_table(lines, reference, settings))
