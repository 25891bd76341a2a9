"""Quick scores of a trained model on held-out synthetic videos with known intensities.

What the demo reports and what `benchmarks/demo_levers.py` compares levers by, without the
face-embedding extra: per video of `<data>/test/img`,
- Spearman of the inferred intensity of frames 1..T-1 against the true one, by sequence kind;
- L1 (pixels in [0, 1]) of the frame generated at a = 0 to the input frame 0 (the identity);
- L1 of the frame generated at each frame's true intensity to that real frame, next to the L1 of
  simply copying frame 0 (a model must beat doing nothing);
- the inferred intensity of the last frame of `complete` videos, whose true intensity is 1 (how
  well a = 1 lands on the apex).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from affinegan_tf.data.pixels import to_model_range
from affinegan_tf.evaluation import metrics
from affinegan_tf.evaluation.curves import infer_frame_intensities, read_video_frames
from affinegan_tf.evaluation.evaluate import read_true_intensities
from affinegan_tf.rendering import generate_frames_from_model_range


def _to_unit(frames) -> np.ndarray:
    return (np.clip(np.asarray(frames, dtype=np.float32), -1.0, 1.0) + 1.0) / 2.0


def held_out_scores(model, data_dir: str | Path, apex: float = 1.0) -> dict:
    """Scores of `model` on every held-out video of a synthetic set that has `intensities.csv`.

    Args:
        model: A trained AffineGAN (affine or mlp intensity).
        data_dir: The synthetic set's root.
        apex: The model's raw intensity that means the apex (`run_folder.intensity_apex`): true
            intensities are generated and inferred ones reported on the calibrated scale.

    Returns:
        `spearman` (per kind and `all`), `l1_a0`, `l1_generated`, `l1_copy` (means over videos),
        `l1_generated_by_kind` / `l1_copy_by_kind`, `apex_inferred` (last frames of complete
        videos, calibrated) and `videos`.
    """
    data_dir = Path(data_dir)
    truth = read_true_intensities(data_dir, split="test")
    size = model.config.image_size
    per_video, a0, generated, copied, apex_values = [], [], {}, {}, []
    generator = model.inference_generator  # the weight average when the run keeps one
    for name in sorted(truth):
        kind, true_values = truth[name]
        frames, _ = read_video_frames(data_dir / "test" / "img" / name, size)
        true = np.asarray([true_values[index] for index in range(len(frames))], dtype=np.float32)
        inferred = infer_frame_intensities(model, frames[0], frames[1:], apex)
        per_video.append((kind, metrics.spearman(inferred, true[1:])))
        if kind == "complete":
            apex_values.append(float(inferred[-1]))
        face = to_model_range(frames[0][np.newaxis])
        requested = np.concatenate([[0.0], true[1:]]).astype(np.float32)
        fakes = _to_unit(generate_frames_from_model_range(generator, face, requested, apex))
        real = frames.astype(np.float32) / 255.0
        a0.append(float(np.abs(fakes[0] - real[0]).mean()))
        generated.setdefault(kind, []).append(float(np.abs(fakes[1:] - real[1:]).mean()))
        copied.setdefault(kind, []).append(float(np.abs(real[:1] - real[1:]).mean()))
    by_kind = metrics.spearman_by_kind(per_video)
    every = [value for values in generated.values() for value in values]
    every_copy = [value for values in copied.values() for value in values]
    return {
        "spearman": {
            "all": metrics.mean_defined(value for _, value in per_video),
            **{kind: entry["spearman"] for kind, entry in by_kind.items()},
        },
        "l1_a0": float(np.mean(a0)),
        "l1_a0_max": float(np.max(a0)),
        "l1_generated": float(np.mean(every)),
        "l1_copy": float(np.mean(every_copy)),
        "l1_generated_by_kind": {kind: float(np.mean(v)) for kind, v in generated.items()},
        "l1_copy_by_kind": {kind: float(np.mean(v)) for kind, v in copied.items()},
        "apex_inferred": apex_values,
        "videos": len(per_video),
    }
