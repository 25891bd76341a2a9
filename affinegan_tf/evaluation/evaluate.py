"""`affinegan-tf evaluate`: the paper's ACD metrics, pixel metrics and intensity ranking.

For every video of the set (its `test` split, or all videos of a plain folder), with T frames made
square at the model size exactly as `intensity` does:
1. infer the intensity a_t of each real frame relative to frame 0 (a model trained with temporal
   labels uses its training labels instead, a_t = t / (T - 1));
2. generate G(frame 0, a_t) for every t: the generated video;
3. embed real and generated frames with dlib's face-recognition ResNet (same size, same colour
   order, detection per frame) and compute ACD-I, ACD-C, ACD-G (metrics.py) for three rows:
   - generated: the model's video;
   - real: the real video itself (the paper's reference row; ACD-G is 0 by definition);
   - copy_input: a "generator" that repeats frame 0 (ACD-I = ACD-C = 0, ACD-G = the real
     ACD-I), without which a low ACD-G cannot be judged (EVALUATION.md);
4. L1 / PSNR / SSIM of generated and copied frames against the real ones (frames 1..T-1);
5. where `intensities.csv` exists (the synthetic set), the Spearman correlation of inferred
   against true intensity (frames 1..T-1) per sequence kind.
Means are over videos (each video weighs the same). Frames with no face are counted per row and
the pairs they would have entered are reported; they never silently leave a mean.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from affinegan_tf.errors import UserError
from affinegan_tf.evaluation import metrics

ROWS = ("generated", "real", "copy_input")
ACD_NAMES = ("acd_identity", "acd_consistency", "acd_ground_truth")
PIXEL_NAMES = ("l1", "psnr", "ssim")
TRUTH_FILE = "intensities.csv"
SHEET_VIDEOS = 4
SHEET_COLUMNS = 8


@dataclass
class VideoResult:
    """Everything measured on one video."""

    name: str
    kind: str | None
    frames: int
    intensities: list[float]
    true_intensities: list[float] | None
    spearman: float | None
    missing_faces: dict[str, int]
    acd: dict[str, dict[str, metrics.MeanDistance]]
    pixels: dict[str, dict[str, float]]
    real_frames: np.ndarray = field(repr=False)
    generated_frames: np.ndarray = field(repr=False)


# ----------------------------------------------------------------------------- inputs


def evaluation_videos(data_dir: str | Path):
    """The videos to evaluate: the test split of the authors' layout, else every video.

    Returns:
        The DatasetIndex of those videos.
    """
    from affinegan_tf.data.layout import find_videos

    root = Path(data_dir)
    if not root.is_dir():
        raise UserError(f"Data folder {root} does not exist or is not a folder. Check --data.")
    if (root / "train" / "img").is_dir() and not (root / "test" / "img").is_dir():
        raise UserError(
            f"{root} has a train split but no test/img/ folder of held-out videos. Add one, or "
            f"pass --data {root / 'train' / 'img'} to evaluate on the training videos."
        )
    return find_videos(root, split="test")


def read_true_intensities(root: Path, split: str | None) -> dict[str, tuple[str, dict[int, float]]]:
    """video -> (kind, {frame index: true intensity}) from `intensities.csv`, if there is one.

    The file is looked for in the data folder and up to two folders above it (so that
    `--data ROOT/test/img` still finds `ROOT/intensities.csv`).
    """
    for folder in (root, root.parent, root.parent.parent):
        path = folder / TRUTH_FILE
        if path.is_file():
            break
    else:
        return {}
    table: dict[str, tuple[str, dict[int, float]]] = {}
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            needed = {"video", "kind", "frame", "intensity"}
            if not needed <= set(reader.fieldnames or ()):
                raise UserError(
                    f"{path} lacks the column(s) {', '.join(sorted(needed))}; it is not the "
                    "synthetic set's ground truth. Rename or remove it."
                )
            for row in reader:
                if split is not None and row.get("split", split) != split:
                    continue
                kind, values = table.setdefault(row["video"], (row["kind"], {}))
                values[int(row["frame"])] = float(row["intensity"])
    except (OSError, ValueError) as error:
        raise UserError(f"Cannot read {path}: {error}.") from error
    return table


def _read_video(source, image_size: int, max_frames: int | None) -> np.ndarray:
    from affinegan_tf.data.square import square_resize
    from affinegan_tf.data.video import read_frames_at, select_frames

    frames = read_frames_at(source.path, transform=lambda frame: square_resize(frame, image_size))
    if max_frames is not None and len(frames) > max_frames:
        frames = frames[select_frames(len(frames), max_frames)]
    return frames


# ----------------------------------------------------------------------------- one video


def _row_metrics(
    frame_embeddings: np.ndarray, input_embedding: np.ndarray, real_embeddings: np.ndarray
) -> dict[str, metrics.MeanDistance]:
    return {
        "acd_identity": metrics.acd_identity(frame_embeddings, input_embedding),
        "acd_consistency": metrics.acd_consistency(frame_embeddings),
        "acd_ground_truth": metrics.acd_ground_truth(frame_embeddings, real_embeddings),
    }


def evaluate_video(
    model, name: str, frames: np.ndarray, truth: tuple[str, dict[int, float]] | None = None
) -> VideoResult:
    """Generates one video from its frame 0 at its inferred intensities and measures it.

    Args:
        model: A trained AffineGAN.
        name: The video's name (for the report).
        frames: uint8 [T, S, S, 3] at the model size, frame 0 neutral.
        truth: (kind, {frame: true intensity}) from intensities.csv, or None.

    Returns:
        The video's metrics, intensities and frames.
    """
    from affinegan_tf.evaluation.curves import infer_frame_intensities
    from affinegan_tf.evaluation.embeddings import embed_faces
    from affinegan_tf.generation import generate_frames

    count = len(frames)
    if count < 2:
        raise UserError(f"Video {name} has {count} frame; evaluation needs at least 2.")
    if model.config.intensity == "temporal":
        intensities = np.arange(count, dtype=np.float32) / (count - 1)
    else:
        intensities = infer_frame_intensities(model, frames[0], frames)
    generated = generate_frames(model.generator, frames[0], intensities)
    copied = np.repeat(frames[:1], count, axis=0)

    real_embeddings = embed_faces(frames)
    generated_embeddings = embed_faces(generated)
    input_embedding = real_embeddings.vectors[0]
    copied_vectors = np.repeat(real_embeddings.vectors[:1], count, axis=0)
    acd = {
        "generated": _row_metrics(
            generated_embeddings.vectors, input_embedding, real_embeddings.vectors
        ),
        "real": _row_metrics(real_embeddings.vectors, input_embedding, real_embeddings.vectors),
        "copy_input": _row_metrics(copied_vectors, input_embedding, real_embeddings.vectors),
    }
    pixels = {
        "generated": metrics.pixel_metrics(generated, frames),
        "copy_input": metrics.pixel_metrics(copied, frames),
    }
    missing = {
        "generated": generated_embeddings.missing,
        "real": real_embeddings.missing,
        "copy_input": count * int(not real_embeddings.found[0]),
    }

    kind = true_values = spearman = None
    if truth is not None:
        kind, by_frame = truth
        if all(index in by_frame for index in range(count)):
            true_values = [by_frame[index] for index in range(count)]
            spearman = metrics.spearman(intensities[1:], np.asarray(true_values[1:]))
    return VideoResult(
        name=name,
        kind=kind,
        frames=count,
        intensities=[float(value) for value in intensities],
        true_intensities=true_values,
        spearman=spearman,
        missing_faces=missing,
        acd=acd,
        pixels=pixels,
        real_frames=frames,
        generated_frames=generated,
    )


# ----------------------------------------------------------------------------- the whole set


def _finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _clean(value):
    """NaN/inf -> None, recursively, so metrics.json is strict JSON."""
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(item) for item in value]
    if isinstance(value, (np.floating, float)):
        return _finite_or_none(float(value))
    if isinstance(value, np.integer):
        return int(value)
    return value


def summarise(results: list[VideoResult]) -> dict:
    """The report's tables from per-video results (means over videos, counts summed)."""
    rows: dict[str, dict] = {}
    pairs: dict[str, dict] = {}
    for row in ROWS:
        rows[row] = {}
        pairs[row] = {}
        for name in ACD_NAMES:
            mean = metrics.mean_of_means([result.acd[row][name] for result in results])
            rows[row][name] = mean.value
            pairs[row][name] = {"pairs": mean.pairs, "skipped_pairs": mean.skipped_pairs}
        for name in PIXEL_NAMES:
            values = [result.pixels[row][name] for result in results if row in result.pixels]
            values = [value for value in values if math.isfinite(value)]
            rows[row][name] = float(np.mean(values)) if values else None
    faces = {
        row: {
            "frames": sum(result.frames for result in results),
            "missing": sum(result.missing_faces[row] for result in results),
        }
        for row in ROWS
    }
    with_truth = [
        (result.kind, result.spearman)
        for result in results
        if result.kind is not None and result.spearman is not None
    ]
    intensity = None
    if with_truth:
        by_kind = metrics.spearman_by_kind(with_truth)
        defined = [value for _, value in with_truth if not math.isnan(value)]
        intensity = {
            "spearman_by_kind": by_kind,
            "spearman_all": float(np.mean(defined)) if defined else None,
            "videos": len(with_truth),
        }
    return {
        "rows": rows,
        "pairs": pairs,
        "faces": faces,
        "by_kind": _by_kind(results),
        "intensity": intensity,
    }


def _by_kind(results: list[VideoResult]) -> dict | None:
    """Generated-row metrics per sequence kind (None without kinds): where temporal labels
    should fail (shuffled, periodic) shows here as a larger ACD-G and L1."""
    kinds = sorted({result.kind for result in results if result.kind is not None})
    if not kinds:
        return None
    table = {}
    for kind in kinds:
        members = [result for result in results if result.kind == kind]
        entry: dict = {"videos": len(members)}
        for row in ("generated", "copy_input"):
            entry[row] = {
                name: metrics.mean_of_means([result.acd[row][name] for result in members]).value
                for name in ACD_NAMES
            }
            for name in PIXEL_NAMES:
                values = [result.pixels[row][name] for result in members]
                values = [value for value in values if math.isfinite(value)]
                entry[row][name] = float(np.mean(values)) if values else None
        table[kind] = entry
    return table


def evaluate_model(
    model_path: str | Path,
    data_dir: str | Path,
    out_dir: str | Path | None = None,
    max_frames: int | None = None,
) -> dict:
    """Evaluates a trained model on a data set (see the module docstring).

    Args:
        model_path: A training run folder.
        data_dir: A data set root with test/img/, or a plain folder of videos.
        out_dir: Report folder to write (metrics.json, summary.md, contact_sheet.png, gifs/), or
            None for no files.
        max_frames: Evaluate at most this many evenly spaced frames per video (frame 0 always
            kept); None keeps every frame.

    Returns:
        The report as a dict (strict-JSON values: NaN becomes None).
    """
    from affinegan_tf.evaluation.curves import load_trained_model
    from affinegan_tf.evaluation.embeddings import check_installed, upsample_count

    started = time.monotonic()
    check_installed()  # before any slow work
    model, run_config = load_trained_model(model_path)
    image_size = run_config.model.image_size
    index = evaluation_videos(data_dir)
    split = None
    if index.layout == "authors" and index.videos_dir is not None:
        split = index.videos_dir.parent.name
    truth = read_true_intensities(index.root, split)
    if max_frames is not None and truth:
        raise UserError(
            "max_frames cannot be used with intensities.csv (frame indices must match)."
        )

    results = []
    for source in index.videos:
        frames = _read_video(source, image_size, max_frames)
        results.append(evaluate_video(model, source.name, frames, truth.get(source.name)))

    summary = summarise(results)
    report = {
        "model": str(Path(model_path)),
        "data": str(index.root),
        "videos": len(results),
        "skipped": [{"path": path, "reason": reason} for path, reason in index.skipped],
        "image_size": image_size,
        "intensity_mode": run_config.model.intensity,
        "intensity_discriminator": run_config.model.intensity_discriminator,
        "embedding": (
            "dlib face-recognition ResNet v1, 128-D, 5-point alignment, HOG detection per frame "
            f"(upsample {upsample_count(image_size, image_size)}), raw L2 distances"
        ),
        **summary,
        "per_video": [_video_record(result) for result in results],
        "seconds": time.monotonic() - started,
        "report_dir": None,
    }
    if out_dir is not None:
        report["report_dir"] = str(Path(out_dir))
        report = _clean(report)
        write_report(report, results, Path(out_dir))
    return _clean(report)


def _video_record(result: VideoResult) -> dict:
    record = {
        "name": result.name,
        "kind": result.kind,
        "frames": result.frames,
        "missing_faces": result.missing_faces,
        "intensities": result.intensities,
        "spearman": result.spearman,
    }
    if result.true_intensities is not None:
        record["true_intensities"] = result.true_intensities
    for row in ROWS:
        record[row] = {name: result.acd[row][name].value for name in ACD_NAMES}
        record[row].update(result.pixels.get(row, {}))
    return record


# ----------------------------------------------------------------------------- the report


def _number(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"


ROW_TITLES = {
    "generated": "generated (this model)",
    "real": "real videos (reference)",
    "copy_input": "copy the input (baseline)",
}


def format_report(report: dict) -> str:
    """The report as markdown text (also summary.md)."""
    rows, faces = report["rows"], report["faces"]
    lines = [
        f"# Evaluation of {report['model']}",
        "",
        f"{report['videos']} videos of {report['data']} at {report['image_size']}px; intensity "
        f"mode {report['intensity_mode']}, intensity discriminator "
        f"{'on' if report['intensity_discriminator'] else 'off'}.",
        f"Embedding: {report['embedding']}.",
        "",
        "| row | ACD-I | ACD-C | ACD-G | L1 | PSNR (dB) | SSIM | frames without a face |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in ROWS:
        values = rows[row]
        lines.append(
            f"| {ROW_TITLES[row]} | {_number(values['acd_identity'])} | "
            f"{_number(values['acd_consistency'])} | {_number(values['acd_ground_truth'])} | "
            f"{_number(values['l1'], 4)} | {_number(values['psnr'], 2)} | "
            f"{_number(values['ssim'])} | {faces[row]['missing']} / {faces[row]['frames']} |"
        )
    skipped = {
        row: sum(report["pairs"][row][name]["skipped_pairs"] for name in ACD_NAMES) for row in ROWS
    }
    lines += [
        "",
        "ACD-I: frames 1..T-1 vs the input frame; ACD-C: all frame pairs of a video; ACD-G: "
        "generated vs real frame t (t >= 1). Means over videos; L1 on pixels in [0, 1].",
    ]
    if any(skipped.values()):
        lines.append(
            "Comparisons left out because a frame had no face: "
            + ", ".join(f"{row} {count}" for row, count in skipped.items())
            + " (see metrics.json `pairs`)."
        )
    by_kind = report.get("by_kind")
    if by_kind:
        lines += [
            "",
            "Generated videos per sequence kind (copy-the-input baseline in brackets):",
            "",
            "| kind | videos | ACD-I | ACD-C | ACD-G | L1 | SSIM |",
            "|---|---|---|---|---|---|---|",
        ]
        for kind, entry in by_kind.items():
            generated, copied = entry["generated"], entry["copy_input"]
            lines.append(
                f"| {kind} | {entry['videos']} | {_number(generated['acd_identity'])} | "
                f"{_number(generated['acd_consistency'])} | "
                f"{_number(generated['acd_ground_truth'])} "
                f"({_number(copied['acd_ground_truth'])}) | {_number(generated['l1'], 4)} "
                f"({_number(copied['l1'], 4)}) | {_number(generated['ssim'])} "
                f"({_number(copied['ssim'])}) |"
            )
    intensity = report.get("intensity")
    if intensity:
        lines += [
            "",
            "Inferred vs true intensity (Spearman over frames 1..T-1, mean over videos):",
            "",
            "| kind | Spearman | videos |",
            "|---|---|---|",
        ]
        for kind, entry in intensity["spearman_by_kind"].items():
            undefined = f" ({entry['undefined']} undefined)" if entry["undefined"] else ""
            lines.append(
                f"| {kind} | {_number(entry['spearman'])} | {entry['videos']}{undefined} |"
            )
        lines.append(f"| all | {_number(intensity['spearman_all'])} | {intensity['videos']} |")
    if report.get("skipped"):
        lines += ["", f"Skipped {len(report['skipped'])} unusable entries (see metrics.json)."]
    if report.get("report_dir"):
        lines += ["", f"Report folder: {report['report_dir']}"]
    return "\n".join(lines)


def _sheet_videos(results: list[VideoResult]) -> list[VideoResult]:
    """A few videos for the contact sheet: one per kind first, then in order."""
    chosen: list[VideoResult] = []
    seen_kinds: set[str] = set()
    for result in results:
        if result.kind is not None and result.kind not in seen_kinds:
            chosen.append(result)
            seen_kinds.add(result.kind)
    for result in results:
        if len(chosen) >= SHEET_VIDEOS:
            break
        if result not in chosen:
            chosen.append(result)
    return chosen[:SHEET_VIDEOS]


def _stack_videos(videos: list[np.ndarray]) -> np.ndarray:
    """Videos [T_i, H, W, 3] one above the other; shorter ones hold their last frame."""
    length = max(len(video) for video in videos)
    padded = [
        np.concatenate([video, np.repeat(video[-1:], length - len(video), axis=0)])
        for video in videos
    ]
    return np.concatenate(padded, axis=1)


def write_report(report: dict, results: list[VideoResult], out_dir: Path) -> None:
    """metrics.json, summary.md, contact_sheet.png and GIFs of real | generated side by side
    (one per contact-sheet video and `gifs/overview.gif` with them all).

    Everything is written into a temporary folder first and moved into `out_dir` when complete.
    """
    from affinegan_tf.evaluation.plots import contact_sheet, write_png
    from affinegan_tf.generation import write_animation

    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is a file; give a folder for the report.")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        (temporary / "metrics.json").write_text(json.dumps(report, indent=2, allow_nan=False))
        (temporary / "summary.md").write_text(format_report(report) + "\n")
        chosen = _sheet_videos(results)
        rows = []
        for result in chosen:
            label = f"{result.name}\n{result.kind or ''}".strip()
            rows.append((f"{label}\nreal", result.real_frames))
            rows.append(("generated", result.generated_frames))
        if rows:
            write_png(contact_sheet(rows, columns=SHEET_COLUMNS), temporary / "contact_sheet.png")
        pairs = [
            np.concatenate([result.real_frames, result.generated_frames], axis=2)
            for result in chosen
        ]
        for result, pair in zip(chosen, pairs, strict=True):
            write_animation(pair, temporary / "gifs" / f"{result.name}.gif", fps=8)
        if pairs:
            write_animation(_stack_videos(pairs), temporary / "gifs" / "overview.gif", fps=8)
        out_dir.mkdir(parents=True, exist_ok=True)
        for item in temporary.rglob("*"):
            if item.is_file():
                target = out_dir / item.relative_to(temporary)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(item, target)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
