"""What a = 1 means: the intensity scale of a model, calibrated so that 1 is the apex.

The learnt scale is not pinned to 1 at the apex: D_a matches the intensities of each sample's K
frames to Uniform(0, 1), not the apex of each video, so the raw intensity a model gives a full
expression can be 0.7 on one run and 1.4 on the next. Each model is therefore calibrated on its
own training videos (never on held-out data): every training video starts neutral and shows the
expression, so its apex is the frame with the largest inferred intensity (relative to the video's
first frame). The model's `apex` is the median over training videos of those per-video maxima;
with temporal labels (a = t / T) it is 1 by construction.

Every intensity a user sees or gives is calibrated: `to_raw` turns it into what the decoder takes
(raw = a * apex), `to_calibrated` turns an inferred raw intensity back (a = raw / apex). Those two
are the only places the scale is applied (`rendering.decode_features` for generation and every
export traced from it; `evaluation.curves` for inferred intensities).

Pure functions on numbers and arrays; `run_folder.py` records the apex in
`<run>/intensity_range.json`, which `apex_of` reads.
"""

from __future__ import annotations

import math

import numpy as np

APEX_KEY = "apex"
# The apex of a model whose intensities are not calibrated: the raw scale.
UNCALIBRATED_APEX = 1.0
MEANING = (
    "intensity 1 is the apex of the expression: the model's raw intensity is multiplied by "
    "`apex`, the median over its training videos of each video's largest inferred intensity "
    "(relative to the video's first frame); 0 is the input face, values above 1 exaggerate"
)
TEMPORAL_NOTE = "temporal labels t / T: 1 is the last (apex) frame by construction"
MISSING_NOTE = (
    "no apex recorded (the run predates intensity calibration, or has no intensity_range.json): "
    "intensities are on the model's raw scale, where 1 may stop short of or overshoot the apex; "
    "resume training with a larger --steps to record it at the next checkpoint"
)


def video_maxima(per_video: list[np.ndarray]) -> list[float]:
    """The largest inferred intensity of each video (videos without frames are left out).

    Args:
        per_video: One array per training video: the intensities of its frames 1..T-1 relative
            to its frame 0.
    """
    return [float(np.max(values)) for values in per_video if np.size(values)]


def apex_from_maxima(maxima) -> float:
    """The model's apex: the median of the per-video maxima (robust to a video or two whose
    maximum is far off); `UNCALIBRATED_APEX` when there is none or it is not a positive number."""
    values = np.asarray(maxima, np.float64).reshape(-1)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return UNCALIBRATED_APEX
    apex = float(np.median(values))
    return apex if apex > 0 else UNCALIBRATED_APEX


def apex_of(intensity_range: dict | None) -> float:
    """The apex recorded in an intensity range (`<run>/intensity_range.json`, an export's
    `intensity_range`), else `UNCALIBRATED_APEX` (old runs: the raw scale)."""
    value = (intensity_range or {}).get(APEX_KEY)
    if value is None:
        return UNCALIBRATED_APEX
    value = float(value)
    return value if math.isfinite(value) and value > 0 else UNCALIBRATED_APEX


def is_calibrated(intensity_range: dict | None) -> bool:
    """Whether an intensity range records an apex (False for runs older than calibration)."""
    return (intensity_range or {}).get(APEX_KEY) is not None


def to_raw(intensities, apex: float):
    """Calibrated intensities (1 = the apex) -> the model's raw scale: a * apex.

    Works on Python numbers, NumPy arrays and tensors; apex 1 returns the input unchanged (no op
    is added to a traced graph).
    """
    return intensities if apex == UNCALIBRATED_APEX else intensities * apex


def to_calibrated(raw, apex: float):
    """The model's raw intensities (as inferred from frames) -> calibrated: raw / apex."""
    return raw if apex == UNCALIBRATED_APEX else raw / apex
