"""`affinegan-tf evaluate`: the paper's ACD metrics, pixel metrics and intensity ranking.

Every video of the set (its `test` split, or all videos of a plain folder) is read with T frames
made square at the model size exactly as `intensity` does, scored (`scoring.py`: generated from
frame 0 at its inferred intensities, embedded, compared) and summarised; `report.py` writes the
report folder. Where `intensities.csv` exists (the synthetic set), inferred intensities are
ranked against the true ones per sequence kind.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np

from affinegan_tf.data.layout import find_videos
from affinegan_tf.data.square import square_resize
from affinegan_tf.data.video import read_frames_at, select_frames
from affinegan_tf.errors import UserError
from affinegan_tf.evaluation.curves import load_trained_model
from affinegan_tf.evaluation.embeddings import check_installed, upsample_count
from affinegan_tf.evaluation.report import clean, write_report
from affinegan_tf.evaluation.scoring import evaluate_video, summarise, video_record
from affinegan_tf.run_folder import intensity_apex

TRUTH_FILE = "intensities.csv"


# ----------------------------------------------------------------------------- inputs


def evaluation_videos(data_dir: str | Path):
    """The videos to evaluate: the test split of the authors' layout, else every video.

    Returns:
        The DatasetIndex of those videos.
    """
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
    frames = read_frames_at(source.path, transform=lambda frame: square_resize(frame, image_size))
    if max_frames is not None and len(frames) > max_frames:
        frames = frames[select_frames(len(frames), max_frames)]
    return frames


# ----------------------------------------------------------------------------- the set


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
    started = time.monotonic()
    check_installed()  # before any slow work
    model, run_config = load_trained_model(model_path)
    apex = intensity_apex(model_path)
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
        results.append(
            evaluate_video(model, source.name, frames, truth.get(source.name), apex=apex)
        )

    summary = summarise(results)
    report = {
        "model": str(Path(model_path)),
        "data": str(index.root),
        "videos": len(results),
        "skipped": [{"path": path, "reason": reason} for path, reason in index.skipped],
        "image_size": image_size,
        "intensity_mode": run_config.model.intensity,
        "intensity_apex": apex,
        "intensity_discriminator": run_config.model.intensity_discriminator,
        "embedding": (
            "dlib face-recognition ResNet v1, 128-D, 5-point alignment, HOG detection per frame "
            f"(upsample {upsample_count(image_size, image_size)}), raw L2 distances"
        ),
        **summary,
        "per_video": [video_record(result) for result in results],
        "seconds": time.monotonic() - started,
        "report_dir": None,
    }
    if out_dir is not None:
        report["report_dir"] = str(Path(out_dir))
        report = clean(report)
        write_report(report, results, Path(out_dir))
    return clean(report)
