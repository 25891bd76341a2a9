"""Issue 14's figures for a smile model on the held-out people of a prepare-pairs data set.

Runs `generate` by the model's name (or path) on each held-out person's original neutral photo, at
intensities 0 and 1, and compares with that person's real smile (the registered expression frame
prepare-pairs wrote), all at the model's size:

- identity drift: dlib distance (5-point alignment, ResNet embeddings; the `eval` extra) between
  the a = 1 and a = 0 frames, against the distance between the real smile and the real neutral
  face; the goal is a ratio of at most 1.25;
- mouth widening: the width of OpenCV's `haarcascade_smile` box, divided by the dlib eye distance,
  at a = 1 minus at a = 0, against the same for real smile minus real neutral (goal: at least
  0.5). Frames are enlarged to 256 px for both detectors. There is no permissive mouth-corner
  model at hand (dlib's 5-point model has no mouth; the 68-point one is non-commercial), so this
  box width is a coarse measure: its noise shows in the per-person rows.
- mid-sweep: the mean absolute difference (grey levels) in the face region between the frame at
  a = 0, 0.25, 0.5, 0.75, 1 and the person's real pair morphed to the same t (`data.morph`; t = 0
  the real neutral, t = 1 the real smile), next to the same for copying the photo. A model whose
  in-between frames blur or cross-fade has a bump in the middle: `midsweep_bump` is the error at
  a = 0.5 minus the mean of the errors at a = 0 and a = 1 (about 0 or below when the in-between
  frames are as good as the ends).

    python benchmarks/smile_frl_figures.py --model smile-frl-128 --data data/smile-frl \
        --out runs/figures [--photo ../shared/data/lisa4.jpg]

Writes `<out>/figures.json`, the GIFs, and `<out>/sheet.png` (per person: real neutral, real
smile, a = 0, 0.25, 0.5, 0.75, 1).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

SIDE = 256
INTENSITIES = [0.0, 0.25, 0.5, 0.75, 1.0]
A0, A_MID, A1 = 0, 2, 4  # indices of a = 0, 0.5 and 1 in INTENSITIES


def _smile_cascade():
    import cv2

    return cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / "haarcascade_smile.xml"))


def _enlarged(frame: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.resize(frame, (SIDE, SIDE), interpolation=cv2.INTER_CUBIC)


def mouth_width(frame: np.ndarray) -> float | None:
    """Width of the largest smile-cascade box in the lower face, in pixels at SIDE."""
    import cv2

    image = _enlarged(frame)
    grey = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
    top, left = int(SIDE * 0.55), int(SIDE * 0.2)
    region = grey[top : int(SIDE * 0.9), left : int(SIDE * 0.8)]
    found = _smile_cascade().detectMultiScale(
        region, scaleFactor=1.05, minNeighbors=10, minSize=(int(SIDE * 0.12), int(SIDE * 0.05))
    )
    if len(found) == 0:
        return None
    return float(max(found, key=lambda box: box[2] * box[3])[2])


def eye_distance(frame: np.ndarray) -> float | None:
    """dlib 5-point eye-centre distance in pixels at SIDE."""
    from affinegan_tf.data.faces import detect_face
    from affinegan_tf.pairs import find_eyes

    image = _enlarged(frame)
    face = detect_face(image)
    if face is None:
        return None
    eyes = find_eyes(image, face)
    return float(np.linalg.norm(eyes[1] - eyes[0]))


def relative_mouth(frame: np.ndarray) -> float | None:
    width, eyes = mouth_width(frame), eye_distance(frame)
    return None if width is None or not eyes else width / eyes


def _distance(first: np.ndarray, second: np.ndarray) -> float:
    from affinegan_tf.evaluation.embeddings import embed_faces

    vectors = embed_faces(np.stack([first, second])).vectors
    return float(np.linalg.norm(vectors[0] - vectors[1]))


def _mean(values) -> float | None:
    values = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(values)) if values else None


def face_region(side: int) -> tuple[slice, slice]:
    """The lower two thirds of the face inside a face crop (rows 30-90 %, columns 25-75 %)."""
    return slice(int(0.3 * side), int(0.9 * side)), slice(int(0.25 * side), int(0.75 * side))


def midsweep_errors(frames: np.ndarray, real_neutral: np.ndarray, real_smile: np.ndarray):
    """(model, copy): face-region L1 of the frames at INTENSITIES, and of the photo itself, to
    the real pair morphed to the same t."""
    from affinegan_tf.data.morph import inbetween_frames

    middle = inbetween_frames(real_neutral, real_smile, len(INTENSITIES) - 2)
    region = face_region(real_neutral.shape[0])
    references = [item[region].astype(np.float64) for item in (real_neutral, *middle, real_smile)]
    model = [float(np.abs(f[region] - r).mean()) for f, r in zip(frames, references, strict=True)]
    copy = [float(np.abs(references[0] - r).mean()) for r in references]
    return model, copy


def generated_frames(model: str, photo: Path, out: Path, gif: Path) -> np.ndarray:
    """Frames at INTENSITIES through `generate` by name, plus a 16-frame ping-pong GIF."""
    from affinegan_tf.data.images import read_image
    from affinegan_tf.generation import generate_files

    (folder,) = generate_files(model, photo, f"{out}{os.sep}", intensities=INTENSITIES)
    generate_files(model, photo, gif, num_frames=16, loop="pingpong")
    return np.stack([read_image(path) for path in sorted(folder.glob("*.png"))])


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="shipped model name or export folder")
    parser.add_argument("--data", required=True, help="prepare-pairs output (with test/img/)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--photo", action="append", default=[], help="extra photos (no truth)")
    args = parser.parse_args(argv)

    import cv2

    from affinegan_tf.data.images import read_image
    from affinegan_tf.data.square import prepare_photo, square_resize
    from affinegan_tf.export.backends import load_backend
    from affinegan_tf.generation import expected_crop
    from affinegan_tf.models import resolve_model
    from affinegan_tf.pairs import read_data_card

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    card = read_data_card(args.data)
    if card.get("blend_face"):
        parser.error(
            f"{args.data} was prepared with --blend-face: its smiles are not the real photos. "
            "Prepare a copy with --no-blend-face for the figures."
        )
    backend = load_backend(resolve_model(args.model))
    size = backend.image_size
    _, margin = expected_crop(backend.manifest, None)
    rows, people, sheet = [], [], []
    for item in card["test"]:
        name = item["name"]
        photo = Path(card["sources"]["neutral"]) / item["neutral"]
        frames = generated_frames(args.model, photo, out / "frames" / name, out / f"{name}.gif")
        real_neutral = prepare_photo(photo, size, face_crop=True, face_margin=margin)
        real_smile = square_resize(
            read_image(Path(args.data) / "test/img" / name / "0001.png"), size
        )
        midsweep, copy = midsweep_errors(frames, real_neutral, real_smile)
        row = {
            "name": name,
            "midsweep_l1": midsweep,
            "copy_l1": copy,
            "drift_generated": _distance(frames[A1], frames[A0]),
            "drift_real": _distance(real_smile, real_neutral),
            "mouth_a0": relative_mouth(frames[A0]),
            "mouth_a1": relative_mouth(frames[A1]),
            "mouth_real_neutral": relative_mouth(real_neutral),
            "mouth_real_smile": relative_mouth(real_smile),
        }
        for key, first, second in (
            ("widening_generated", "mouth_a1", "mouth_a0"),
            ("widening_real", "mouth_real_smile", "mouth_real_neutral"),
        ):
            both = row[first] is not None and row[second] is not None
            row[key] = row[first] - row[second] if both else None
        rows.append(row)
        people.append(name)
        sheet.append(np.hstack([real_neutral, real_smile, *frames]))
        print(json.dumps(row), flush=True)
    summary = {
        "model": args.model,
        "image_size": size,
        "people": people,
        "drift_generated_mean": _mean(r["drift_generated"] for r in rows),
        "drift_real_mean": _mean(r["drift_real"] for r in rows),
        "widening_generated_mean": _mean(r["widening_generated"] for r in rows),
        "widening_real_mean": _mean(r["widening_real"] for r in rows),
        "mouth_measured": sum(r["widening_generated"] is not None for r in rows),
        "intensities": INTENSITIES,
        "midsweep_l1_mean": np.mean([r["midsweep_l1"] for r in rows], axis=0).round(2).tolist(),
        "copy_l1_mean": np.mean([r["copy_l1"] for r in rows], axis=0).round(2).tolist(),
    }
    errors = summary["midsweep_l1_mean"]
    summary["midsweep_bump"] = round(errors[A_MID] - (errors[A0] + errors[A1]) / 2, 2)
    if summary["drift_real_mean"]:
        summary["drift_ratio"] = summary["drift_generated_mean"] / summary["drift_real_mean"]
    if summary["widening_real_mean"] and summary["widening_generated_mean"] is not None:
        summary["widening_ratio"] = (
            summary["widening_generated_mean"] / summary["widening_real_mean"]
        )
    extras = []
    for photo in map(Path, args.photo):
        frames = generated_frames(
            args.model, photo, out / "frames" / photo.stem, out / f"{photo.stem}.gif"
        )
        extras.append(
            {
                "photo": str(photo),
                "drift_generated": _distance(frames[A1], frames[A0]),
                "widening_generated": (
                    None
                    if relative_mouth(frames[A1]) is None or relative_mouth(frames[A0]) is None
                    else relative_mouth(frames[A1]) - relative_mouth(frames[A0])
                ),
            }
        )
        sheet.append(np.hstack([frames[0], frames[0], *frames]))
    summary["extra_photos"] = extras
    summary["rows"] = rows
    (out / "figures.json").write_text(json.dumps(summary, indent=2))
    cv2.imwrite(str(out / "sheet.png"), np.vstack(sheet)[:, :, ::-1])
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
