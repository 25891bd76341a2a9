"""The evaluation metrics as pure numpy functions: ACD-I/C/G, L1, PSNR, SSIM and Spearman.

ACD (average content distance, AFFINEGAN.md "Evaluation in the paper") on face embeddings, one row
per frame, L2 distances. A frame where no face was found has a row of NaN: every pair involving it
is left out of the mean and COUNTED (`MeanDistance.skipped_pairs`), so the report can say how many
comparisons a number rests on.

Frame sets, fixed so that the three rows of the report (generated, real, "copy the input") use the
same frames (EVALUATION.md):
- ACD-I: mean distance of frames 1..T-1 to the input photo (frame 0 is the input itself).
- ACD-C: mean distance over all pairs i < j of the T frames of one video.
- ACD-G: mean distance of generated frame t to real frame t, t = 1..T-1.
A generator that copies its input then gets ACD-I = ACD-C = 0 and ACD-G = the real ACD-I.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import cv2
import numpy as np

# PSNR of identical images is infinite; per-frame values are capped here so means stay finite.
PSNR_CAP_DB = 100.0

# SSIM constants of Wang et al. 2004 (and tf.image.ssim): 11x11 Gaussian window, sigma 1.5.
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


class MeanDistance(NamedTuple):
    """A mean of L2 distances and how many pairs it rests on.

    Attributes:
        value: Mean over the pairs where both frames have a face; NaN when there is none.
        pairs: Pairs that entered the mean.
        skipped_pairs: Pairs left out because a frame had no face (NaN embedding).
    """

    value: float
    pairs: int
    skipped_pairs: int


def _mean_distance(first: np.ndarray, second: np.ndarray) -> MeanDistance:
    """Mean L2 distance between matching rows of two [N, D] arrays, skipping NaN rows."""
    first = np.asarray(first, np.float64)
    second = np.asarray(second, np.float64)
    if first.shape != second.shape or first.ndim != 2:
        raise ValueError(
            f"expected two [N, D] arrays of one shape, got {first.shape}, {second.shape}"
        )
    valid = ~(np.isnan(first).any(axis=1) | np.isnan(second).any(axis=1))
    count = int(valid.sum())
    skipped = int(first.shape[0] - count)
    if count == 0:
        return MeanDistance(math.nan, 0, skipped)
    distances = np.linalg.norm(first[valid] - second[valid], axis=1)
    return MeanDistance(float(distances.mean()), count, skipped)


def acd_identity(frame_embeddings: np.ndarray, input_embedding: np.ndarray) -> MeanDistance:
    """ACD-I: mean distance of frames 1..T-1 to the input photo's embedding.

    Args:
        frame_embeddings: [T, D] embeddings of one video (generated or real); row 0 is the frame
            at the input's position and is not used.
        input_embedding: [D] embedding of the input (neutral) photo.

    Returns:
        The mean over frames 1..T-1 with a face (NaN rows skipped and counted).
    """
    frames = np.asarray(frame_embeddings, np.float64)[1:]
    reference = np.broadcast_to(np.asarray(input_embedding, np.float64), frames.shape)
    return _mean_distance(frames, reference)


def acd_consistency(frame_embeddings: np.ndarray) -> MeanDistance:
    """ACD-C: mean distance over all pairs i < j of a video's frames.

    Args:
        frame_embeddings: [T, D] embeddings of one video.

    Returns:
        The mean over pairs where both frames have a face.
    """
    frames = np.asarray(frame_embeddings, np.float64)
    first, second = np.triu_indices(frames.shape[0], k=1)
    return _mean_distance(frames[first], frames[second])


def acd_ground_truth(generated_embeddings: np.ndarray, real_embeddings: np.ndarray) -> MeanDistance:
    """ACD-G: mean distance of generated frame t to real frame t of the same intensity, t >= 1.

    Args:
        generated_embeddings: [T, D], generated at the intensities inferred from the real frames.
        real_embeddings: [T, D], the real frames.

    Returns:
        The mean over frames 1..T-1 where both have a face.
    """
    return _mean_distance(
        np.asarray(generated_embeddings, np.float64)[1:],
        np.asarray(real_embeddings, np.float64)[1:],
    )


def mean_of_means(values: list[MeanDistance]) -> MeanDistance:
    """Average of per-video means (each video weighs the same), with the pair counts summed.

    Videos whose mean is NaN (no usable pair) do not enter the average; their skipped pairs are
    still counted.
    """
    usable = [value.value for value in values if not math.isnan(value.value)]
    return MeanDistance(
        float(np.mean(usable)) if usable else math.nan,
        sum(value.pairs for value in values),
        sum(value.skipped_pairs for value in values),
    )


# ----------------------------------------------------------------------------- pixel metrics


def _as_float_pixels(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {images.dtype}")
    return images.astype(np.float64)


def l1_distance(first: np.ndarray, second: np.ndarray) -> float:
    """Mean absolute difference of two uint8 images (or stacks), pixels scaled to [0, 1]."""
    return float(np.mean(np.abs(_as_float_pixels(first) - _as_float_pixels(second))) / 255.0)


def psnr(first: np.ndarray, second: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 images (peak 255), capped at PSNR_CAP_DB."""
    error = np.mean((_as_float_pixels(first) - _as_float_pixels(second)) ** 2)
    if error == 0:
        return PSNR_CAP_DB
    return float(min(10.0 * math.log10(255.0**2 / error), PSNR_CAP_DB))


def _gaussian_window() -> np.ndarray:
    kernel = cv2.getGaussianKernel(SSIM_WINDOW, SSIM_SIGMA, cv2.CV_64F)
    return kernel @ kernel.T


def _filter_valid(channel: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Correlation with `window` over the positions where it fits entirely ('valid')."""
    margin = window.shape[0] // 2
    filtered = cv2.filter2D(channel, cv2.CV_64F, window, borderType=cv2.BORDER_CONSTANT)
    return filtered[margin:-margin, margin:-margin]


def ssim(first: np.ndarray, second: np.ndarray) -> float:
    """Structural similarity of two uint8 RGB (or grey) images, averaged over channels.

    Wang et al. 2004 with an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, peak 255,
    statistics taken only where the window fits inside the image (as tf.image.ssim does).

    Args:
        first: uint8 [H, W] or [H, W, C], H and W >= 11.
        second: Same shape.

    Returns:
        The mean SSIM over positions and channels; 1.0 for identical images.
    """
    first, second = _as_float_pixels(first), _as_float_pixels(second)
    if first.shape != second.shape:
        raise ValueError(f"images differ in shape: {first.shape} vs {second.shape}")
    if first.ndim == 2:
        first, second = first[..., np.newaxis], second[..., np.newaxis]
    if min(first.shape[:2]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW} pixels, got {first.shape}")
    window = _gaussian_window()
    stability_mean = (SSIM_K1 * 255.0) ** 2
    stability_variance = (SSIM_K2 * 255.0) ** 2
    values = []
    for channel in range(first.shape[2]):
        x, y = first[..., channel], second[..., channel]
        mean_x, mean_y = _filter_valid(x, window), _filter_valid(y, window)
        variance_x = _filter_valid(x * x, window) - mean_x**2
        variance_y = _filter_valid(y * y, window) - mean_y**2
        covariance = _filter_valid(x * y, window) - mean_x * mean_y
        luminance = (2 * mean_x * mean_y + stability_mean) / (
            mean_x**2 + mean_y**2 + stability_mean
        )
        structure = (2 * covariance + stability_variance) / (
            variance_x + variance_y + stability_variance
        )
        values.append(np.mean(luminance * structure))
    return float(np.mean(values))


def pixel_metrics(generated: np.ndarray, real: np.ndarray) -> dict[str, float]:
    """L1, PSNR and SSIM of frames 1..T-1 (generated vs real), each the mean over frames.

    Args:
        generated: uint8 [T, S, S, 3].
        real: uint8 [T, S, S, 3].

    Returns:
        {"l1", "psnr", "ssim"}; NaN when the video has a single frame.
    """
    pairs = list(zip(generated[1:], real[1:], strict=True))
    if not pairs:
        return {"l1": math.nan, "psnr": math.nan, "ssim": math.nan}
    return {
        "l1": float(np.mean([l1_distance(a, b) for a, b in pairs])),
        "psnr": float(np.mean([psnr(a, b) for a, b in pairs])),
        "ssim": float(np.mean([ssim(a, b) for a, b in pairs])),
    }


# ----------------------------------------------------------------------------- intensity


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1, ties sharing the mean of their ranks (as scipy.stats.rankdata)."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), np.float64)
    ranks[order] = np.arange(len(values))
    unique, inverse = np.unique(values, return_inverse=True)
    sums = np.bincount(inverse, weights=ranks, minlength=len(unique))
    counts = np.bincount(inverse, minlength=len(unique))
    return (sums / counts)[inverse]


def spearman(inferred: np.ndarray, true: np.ndarray) -> float:
    """Spearman rank correlation of inferred against true intensities of one video.

    The Pearson correlation of average ranks (ties share their mean rank), computed with numpy
    alone so that the demo needs no scipy.

    Returns:
        The correlation, or NaN when either sequence is constant (no ranking to compare).
    """
    inferred = np.asarray(inferred, np.float64)
    true = np.asarray(true, np.float64)
    if inferred.shape != true.shape or inferred.ndim != 1:
        raise ValueError(
            f"expected two 1-D arrays of one length, got {inferred.shape}, {true.shape}"
        )
    if inferred.size < 2 or np.ptp(inferred) == 0 or np.ptp(true) == 0:
        return math.nan
    first, second = _average_ranks(inferred), _average_ranks(true)
    first, second = first - first.mean(), second - second.mean()
    return float((first @ second) / math.sqrt((first @ first) * (second @ second)))


def mean_defined(values) -> float:
    """Mean of the values that are not NaN (a constant sequence has a NaN Spearman); NaN if none."""
    defined = [float(value) for value in values if not math.isnan(value)]
    return float(np.mean(defined)) if defined else math.nan


def spearman_by_kind(per_video: list[tuple[str, float]]) -> dict[str, dict]:
    """Mean Spearman per sequence kind from (kind, value) per video.

    Returns:
        {kind: {"spearman": mean over videos with a defined value, "videos": count,
        "undefined": videos whose value was NaN}}, kinds in sorted order.
    """
    table: dict[str, dict] = {}
    for kind in sorted({kind for kind, _ in per_video}):
        values = [value for name, value in per_video if name == kind]
        undefined = sum(math.isnan(value) for value in values)
        table[kind] = {
            "spearman": mean_defined(values),
            "videos": len(values),
            "undefined": undefined,
        }
    return table
