"""Scoring one evaluated video and summarising a set: the paper's ACD metrics, pixel metrics and
intensity ranking (computing only; `report.py` writes, `evaluate.py` is the command).

For one video of T frames at the model size (`evaluate_video`):
1. infer the intensity a_t of each real frame relative to frame 0, calibrated by the model's apex
   (a model trained with temporal labels uses its training labels instead, a_t = t / (T - 1));
2. generate G(frame 0, a_t) for every t: the generated video;
3. embed real and generated frames with dlib's face-recognition ResNet (same size, same colour
   order, detection per frame) and compute ACD-I, ACD-C, ACD-G (metrics.py) for three rows:
   - generated: the model's video;
   - real: the real video itself (the paper's reference row; ACD-G is 0 by definition);
   - copy_input: a "generator" that repeats frame 0 (ACD-I = ACD-C = 0, ACD-G = the real
     ACD-I), without which a low ACD-G cannot be judged (EVALUATION.md);
4. L1 / PSNR / SSIM of generated and copied frames against the real ones (frames 1..T-1);
5. where the true intensities are known (the synthetic set), the Spearman correlation of
   inferred against true intensity (frames 1..T-1).
`summarise` takes means over videos (each video weighs the same). Frames with no face are
counted per row and the pairs they would have entered are reported; they never silently leave a
mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from affinegan_tf.calibration import UNCALIBRATED_APEX
from affinegan_tf.errors import UserError
from affinegan_tf.evaluation import metrics
from affinegan_tf.evaluation.curves import infer_frame_intensities
from affinegan_tf.evaluation.embeddings import embed_faces
from affinegan_tf.rendering import generate_frames

ROWS = ("generated", "real", "copy_input")
ACD_NAMES = ("acd_identity", "acd_consistency", "acd_ground_truth")
PIXEL_NAMES = ("l1", "psnr", "ssim")


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
    model,
    name: str,
    frames: np.ndarray,
    truth: tuple[str, dict[int, float]] | None = None,
    apex: float = UNCALIBRATED_APEX,
) -> VideoResult:
    """Generates one video from its frame 0 at its inferred intensities and measures it.

    Args:
        model: A trained AffineGAN.
        name: The video's name (for the report).
        frames: uint8 [T, S, S, 3] at the model size, frame 0 neutral.
        truth: (kind, {frame: true intensity}) from intensities.csv, or None.
        apex: The model's raw intensity at the apex (`run_folder.intensity_apex`): intensities
            are inferred and generated on the calibrated scale (the same frames either way).

    Returns:
        The video's metrics, intensities and frames.
    """
    count = len(frames)
    if count < 2:
        raise UserError(f"Video {name} has {count} frame; evaluation needs at least 2.")
    if not model.inference_estimator.reads_images:
        intensities = np.arange(count, dtype=np.float32) / (count - 1)
    else:
        intensities = infer_frame_intensities(model, frames[0], frames, apex)
    generated = generate_frames(model.inference_generator, frames[0], intensities, apex)
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
        overall = metrics.mean_defined(value for _, value in with_truth)
        intensity = {
            "spearman_by_kind": metrics.spearman_by_kind(with_truth),
            "spearman_all": None if math.isnan(overall) else overall,
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


def video_record(result: VideoResult) -> dict:
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
