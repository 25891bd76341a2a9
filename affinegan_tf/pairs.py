"""`affinegan-tf prepare-pairs`: neutral + expression photos of the same people -> training data.

Each pair becomes a two-frame video in the authors' layout (`<out>/train/img/<name>/0000.png` the
neutral photo, `0001.png` the expression photo; held-out people go to `<out>/test/img/`):

- Names are matched by file stem (`neutral/001.jpg` with `smiling/001.jpg`); names whose stems
  differ are matched by their person id, the stem's text before the first `_` or `-`
  (`001_03.jpg` with `001_08.jpg`), when that id names one photo in each folder.
- The neutral photo is cropped with `data.square.crop_to_face`, the very function `generate`
  uses on a user's photo, so training and generation cannot drift apart.
- The expression photo is first registered onto the neutral one (the head moves between shots):
  a similarity transform (rotation, scale, shift) maps its two eye centres onto the neutral
  photo's, then the neutral photo's face box is cut from it. Eyes come from dlib's 5-point
  landmark model (the `eval` extra; never the 68-point model, whose training data forbids
  commercial use).
- Pairs with no face, two faces or eyes that cannot be registered are skipped with one warning
  listing each. `<out>/pairs.json` (the data card) records the crop, every pair's transform, what
  was skipped, and the licence and attribution of the photos; `export` copies the crop and the
  attribution into the model's manifest.
- With `blend_face` the expression frame keeps only the expression photo's face: a feathered
  ellipse over the neutral photo's face box is taken from the registered expression photo and
  the rest (hair, ears, shoulders, background) from the neutral photo. Eye registration aligns
  the faces, not the hair or the shoulders, which move between shots; left in, those moves are
  a change the generator cannot predict from the neutral photo, and it learns to smear them.
- With `inbetweens` N > 0 each training video gets N frames between the two photos, morphed
  along the optical flow (`data.morph`), so that `temporal` intensities see faces between
  a = 0 and a = 1 (trained on the two photos alone, the generator's mid-sweep frames are a
  blurred cross-fade). Held-out people keep their two real photos only.
"""

from __future__ import annotations

import functools
import json
import math
import shutil
import tempfile
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from affinegan_tf.data.faces import detect_faces, face_blend_weights
from affinegan_tf.data.images import read_image
from affinegan_tf.data.media_files import is_hidden, is_image_file, natural_sort_key
from affinegan_tf.data.morph import inbetween_frames
from affinegan_tf.data.square import crop_to_face, square_resize
from affinegan_tf.errors import DataWarning, UserError
from affinegan_tf.files import replace_folder
from affinegan_tf.recipes import load_pipeline

DATA_CARD_FILE = "pairs.json"
DATA_CARD_VERSION = 1
# The options of `prepare_pairs` a recipe's [pairs] table (and the CLI's flags) may set.
PAIR_OPTIONS = tuple(
    "size margin hold_out expression licence attribution blend_face inbetweens".split()
)
DEFAULT_SIZE = 256
DEFAULT_MARGIN = 0.35
CROP_DETECTOR = "opencv haarcascade_frontalface_alt2"
# A second detection at least this fraction of the largest face's side counts as a second person.
_SECOND_FACE_FRACTION = 0.5
# Registration is refused beyond these (a wrong eye, not a moved head).
_MAX_SCALE_CHANGE = 1.25
_MAX_ROTATION_DEGREES = 20.0
_MIN_EYE_DISTANCE_FRACTION = 0.15  # of the face box side


@dataclass(frozen=True)
class PhotoPair:
    """One person's neutral and expression photos."""

    name: str
    neutral: Path
    expression: Path


# ----------------------------------------------------------------------------- matching


def _person_id(stem: str) -> str:
    for separator in ("_", "-"):
        stem = stem.split(separator, 1)[0]
    return stem


def _photos(folder: Path, role: str) -> list[Path]:

    if not folder.is_dir():
        raise UserError(f"--{role} {folder} is not a folder. Give the folder of {role} photos.")
    photos = sorted(
        (p for p in folder.iterdir() if p.is_file() and not is_hidden(p) and is_image_file(p)),
        key=lambda p: natural_sort_key(p.name),
    )
    if not photos:
        raise UserError(f"--{role} {folder} holds no photos (.jpg, .png, .bmp, .webp).")
    return photos


def match_pairs(
    neutral_dir: str | Path, expression_dir: str | Path
) -> tuple[list[PhotoPair], list[tuple[str, str]]]:
    """Pairs photos of two folders by name (stem, else person id before the first `_`/`-`).

    Returns:
        (pairs in natural name order, unmatched [(path, reason)]).

    Raises:
        UserError: A folder is missing or holds no photos, or no name matches at all.
    """
    neutral = _photos(Path(neutral_dir), "neutral")
    expression = _photos(Path(expression_dir), "expression")
    pairs: dict[str, PhotoPair] = {}
    by_stem = {p.stem: p for p in expression}
    left_neutral = []
    for photo in neutral:
        partner = by_stem.pop(photo.stem, None)
        if partner is None:
            left_neutral.append(photo)
        else:
            pairs[photo.stem] = PhotoPair(photo.stem, photo, partner)
    left_expression = list(by_stem.values())

    def unique_ids(photos: list[Path]) -> dict[str, Path]:
        counts: dict[str, list[Path]] = {}
        for photo in photos:
            counts.setdefault(_person_id(photo.stem), []).append(photo)
        return {key: value[0] for key, value in counts.items() if len(value) == 1}

    neutral_ids, expression_ids = unique_ids(left_neutral), unique_ids(left_expression)
    unmatched: list[tuple[str, str]] = []
    for key in sorted(set(neutral_ids) & set(expression_ids)):
        if key in pairs:
            continue
        pairs[key] = PhotoPair(key, neutral_ids[key], expression_ids[key])
    used = {p.neutral for p in pairs.values()} | {p.expression for p in pairs.values()}
    for photo in left_neutral:
        if photo not in used:
            unmatched.append((str(photo), f"no expression photo named {photo.stem}.*"))
    for photo in left_expression:
        if photo not in used:
            unmatched.append((str(photo), f"no neutral photo named {photo.stem}.*"))
    if not pairs:
        raise UserError(
            f"No photo of {neutral_dir} has a partner of the same name in {expression_dir}. "
            "Name each person's two photos alike (001.jpg and 001.jpg, or 001_a.jpg and "
            "001_b.jpg)."
        )

    ordered = sorted(pairs.values(), key=lambda pair: natural_sort_key(pair.name))
    return ordered, unmatched


# ----------------------------------------------------------------------------- eyes


@functools.lru_cache(maxsize=1)
def _landmark_models():
    from affinegan_tf.errors import require_extra

    require_extra("eval", "prepare-pairs (eye registration with dlib's 5-point model)")
    import dlib

    from affinegan_tf.evaluation.embeddings import SHAPE_PREDICTOR_FILE, model_folder

    predictor = dlib.shape_predictor(str(model_folder() / SHAPE_PREDICTOR_FILE))
    return dlib, dlib.get_frontal_face_detector(), predictor


def find_eyes(image_rgb: np.ndarray, face: tuple[int, int, int, int]) -> np.ndarray:
    """The two eye centres, image-left first, with dlib's 5-point landmark model.

    Args:
        image_rgb: uint8 [H, W, 3] RGB.
        face: The (x, y, w, h) Haar box of the face, used when dlib's own detector finds none.

    Returns:
        float64 [2, 2]: (x, y) of the image-left eye, then of the image-right eye.
    """
    dlib, detector, predictor = _landmark_models()
    image = np.ascontiguousarray(image_rgb, dtype=np.uint8)
    from affinegan_tf.evaluation.embeddings import upsample_count

    detections = list(detector(image, upsample_count(*image.shape[:2])))
    x, y, w, h = face
    haar_centre = np.array([x + w / 2.0, y + h / 2.0])
    if detections:
        # The detection nearest the Haar face: both detectors must be looking at one person.
        def distance(rect) -> float:
            centre = np.array([(rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2])
            return float(np.linalg.norm(centre - haar_centre))

        rect = min(detections, key=distance)
    else:
        rect = dlib.rectangle(int(x), int(y), int(x + w), int(y + h))
    shape = predictor(image, rect)
    points = np.array([[shape.part(i).x, shape.part(i).y] for i in range(5)], np.float64)
    eyes = np.stack([points[0:2].mean(axis=0), points[2:4].mean(axis=0)])
    return eyes[np.argsort(eyes[:, 0])]


def similarity_from_eyes(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x3 similarity transform (rotation, uniform scale, shift) taking source eyes to target.

    Args:
        source: [2, 2] eye centres (image-left first) in the photo to move.
        target: [2, 2] eye centres in the reference photo.
    """
    source_vector = source[1] - source[0]
    target_vector = target[1] - target[0]
    scale = np.linalg.norm(target_vector) / max(np.linalg.norm(source_vector), 1e-9)
    angle = math.atan2(target_vector[1], target_vector[0]) - math.atan2(
        source_vector[1], source_vector[0]
    )
    cosine, sine = scale * math.cos(angle), scale * math.sin(angle)
    rotation = np.array([[cosine, -sine], [sine, cosine]])
    shift = target.mean(axis=0) - rotation @ source.mean(axis=0)
    return np.hstack([rotation, shift[:, np.newaxis]])


def describe_transform(matrix: np.ndarray, source: np.ndarray) -> dict:
    """Scale, rotation (degrees) and how far the eyes' midpoint moves (pixels) under a 2x3
    similarity transform applied to eyes `source` [2, 2]."""
    scale = float(math.hypot(matrix[0, 0], matrix[1, 0]))
    middle = source.mean(axis=0)
    moved = matrix[:, :2] @ middle + matrix[:, 2] - middle
    return {
        "scale": round(scale, 4),
        "rotation_degrees": round(math.degrees(math.atan2(matrix[1, 0], matrix[0, 0])), 3),
        "eye_shift_pixels": [round(float(moved[0]), 2), round(float(moved[1]), 2)],
    }


# ----------------------------------------------------------------------------- one pair


class _Skip(Exception):
    """This pair cannot be used; the message says why."""


def _one_face(image: np.ndarray, path: Path) -> tuple[int, int, int, int]:

    faces = detect_faces(image)
    if not faces:
        raise _Skip(f"no face found in {path.name}")
    largest = max(faces[0][2], faces[0][3])
    others = [f for f in faces[1:] if max(f[2], f[3]) >= _SECOND_FACE_FRACTION * largest]
    if others:
        raise _Skip(f"{1 + len(others)} faces in {path.name}")
    return faces[0]


def register_pair(
    pair: PhotoPair, size: int, margin: float, blend_face: bool = False
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Both photos of a pair as [size, size, 3] crops: the neutral one exactly as `generate`
    crops it, the expression one registered onto it on the eyes and cut from the same box
    (with `blend_face`, only its face, blended into the neutral crop: see the module notes).

    Returns:
        (neutral crop, expression crop, facts for the data card).

    Raises:
        _Skip: No face, two faces, or eyes that give an implausible transform.
    """

    neutral = read_image(pair.neutral)
    expression = read_image(pair.expression)
    neutral_face = _one_face(neutral, pair.neutral)
    expression_face = _one_face(expression, pair.expression)
    try:
        neutral_crop, box = crop_to_face(neutral, size, margin, str(pair.neutral))
    except UserError:
        raise _Skip(f"no face found in {pair.neutral.name}") from None
    neutral_eyes = find_eyes(neutral, neutral_face)
    expression_eyes = find_eyes(expression, expression_face)
    eye_distance = float(np.linalg.norm(neutral_eyes[1] - neutral_eyes[0]))
    if eye_distance < _MIN_EYE_DISTANCE_FRACTION * max(neutral_face[2:]):
        raise _Skip(f"eyes not found in {pair.neutral.name} (eye distance {eye_distance:.0f} px)")
    matrix = similarity_from_eyes(expression_eyes, neutral_eyes)
    facts = describe_transform(matrix, expression_eyes)
    if (
        not (1 / _MAX_SCALE_CHANGE <= facts["scale"] <= _MAX_SCALE_CHANGE)
        or abs(facts["rotation_degrees"]) > _MAX_ROTATION_DEGREES
    ):
        raise _Skip(
            f"eyes of {pair.expression.name} do not match {pair.neutral.name} "
            f"(scale {facts['scale']}, rotation {facts['rotation_degrees']} degrees)"
        )
    height, width = neutral.shape[:2]
    registered = cv2.warpAffine(
        expression,
        matrix,
        (width, height),
        flags=cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REPLICATE,
    )
    expression_crop = square_resize(registered, size, box)
    if blend_face:
        weights = face_blend_weights(size, neutral_face, box)
        blended = weights * expression_crop + (1.0 - weights) * neutral_crop
        expression_crop = np.clip(np.round(blended), 0, 255).astype(np.uint8)
    facts.update(
        {
            "neutral": pair.neutral.name,
            "expression": pair.expression.name,
            "face_box": [int(value) for value in box],  # the crop square (x, y, side)
            "neutral_face": [int(value) for value in neutral_face],  # the detection (x, y, w, h)
            "eye_distance_pixels": round(eye_distance, 2),
        }
    )
    return neutral_crop, expression_crop, facts


# ----------------------------------------------------------------------------- the data set


def _check_target(out: Path) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder name for the data set.")
    if any(out.iterdir()) and not (out / DATA_CARD_FILE).is_file():
        raise UserError(
            f"--out {out} already exists and was not written by prepare-pairs (no "
            f"{DATA_CARD_FILE}). Choose another folder or remove it."
        )


def read_data_card(data_dir: str | Path) -> dict | None:
    """`<data>/pairs.json` of a prepared data set (or the folder above a train/ split), if any."""
    for folder in (Path(data_dir), Path(data_dir).parent):
        path = folder / DATA_CARD_FILE
        if path.is_file():
            try:
                return json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as error:
                raise UserError(f"Cannot read data card {path}: {error}.") from None
    return None


def crop_spec(margin: float) -> dict:
    """How photos must be cropped for a model trained on prepared pairs (goes into manifests)."""
    return {"kind": "face", "detector": CROP_DETECTOR, "margin": float(margin)}


def prepare_pairs(
    neutral_dir: str | Path,
    expression_dir: str | Path,
    out: str | Path,
    size: int = DEFAULT_SIZE,
    margin: float = DEFAULT_MARGIN,
    hold_out: Iterable[str] = (),
    expression: str | None = None,
    licence: str | None = None,
    attribution: str | None = None,
    blend_face: bool = False,
    inbetweens: int = 0,
) -> dict:
    """Writes the pairs of two photo folders as a data set of short videos; returns the card.

    Args:
        neutral_dir: Folder of neutral photos.
        expression_dir: Folder of expression photos, named like the neutral ones.
        out: Data set folder to write (replaced if it holds an earlier prepare-pairs output).
        size: Side of the written frames (use the model's image size or more).
        margin: Face crop margin (see `data.faces.face_box`); the model's manifest records it.
        hold_out: Pair names written to `test/img/` instead of `train/img/`.
        expression: What the expression is called (default: the expression folder's name).
        licence: Licence of the photos, recorded in the card and in exported manifests.
        attribution: Attribution the licence requires, recorded likewise.
        blend_face: Keep only the expression photo's face in the expression frame, the rest
            from the neutral photo (see the module notes).
        inbetweens: Morphed frames between the two photos of each training video.

    Raises:
        UserError: Missing folders, no matching names, held-out names that are not photos,
            or no usable pair.
    """

    out = Path(out)
    if size < 16:
        raise UserError(f"--size must be >= 16, got {size}.")
    if margin < 0:
        raise UserError(f"--margin must be >= 0, got {margin}.")
    if not 0 <= inbetweens <= 98:
        raise UserError(f"--inbetweens must be between 0 and 98, got {inbetweens}.")
    pairs, skipped = match_pairs(neutral_dir, expression_dir)
    held = [str(name) for name in hold_out]
    names = {pair.name for pair in pairs}
    unknown = [name for name in held if name not in names]
    if unknown:
        raise UserError(
            f"Held-out name(s) {', '.join(unknown)} match no photo pair of {neutral_dir} and "
            f"{expression_dir}; held-out names are pair names such as {pairs[0].name}."
        )
    _check_target(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    written: dict[str, list[dict]] = {"train": [], "test": []}
    try:
        for pair in pairs:
            try:
                neutral, smile, facts = register_pair(pair, size, margin, blend_face)
            except _Skip as reason:
                skipped.append((str(pair.neutral), str(reason)))
                continue
            split = "test" if pair.name in held else "train"
            folder = staging / split / "img" / pair.name
            folder.mkdir(parents=True)
            middle = inbetween_frames(neutral, smile, inbetweens) if split == "train" else []
            for index, frame in enumerate((neutral, *middle, smile)):
                if not cv2.imwrite(str(folder / f"{index:04d}.png"), frame[:, :, ::-1]):
                    raise UserError(f"Cannot write {folder / f'{index:04d}.png'}.")
            written[split].append({"name": pair.name, **facts})
        if not written["train"]:
            raise UserError(
                f"No usable training pair in {neutral_dir} and {expression_dir}: "
                + "; ".join(f"{path}: {reason}" for path, reason in skipped[:5])
            )
        card = {
            "format_version": DATA_CARD_VERSION,
            "kind": "photo pairs (two-frame videos: 0000 neutral, 0001 expression)"
            if not inbetweens
            else f"photo pairs (training videos: 0000 neutral, {inbetweens} morphed in-between "
            f"frames, {inbetweens + 1:04d} expression; held-out: 0000 and 0001 as photographed)",
            "expression": expression or Path(expression_dir).resolve().name,
            "size": size,
            "crop": crop_spec(margin),
            "registration": "expression photo mapped onto the neutral one by a similarity "
            "transform from the two eye centres (dlib 5-point landmarks), then cut from the "
            "neutral photo's face box"
            + (
                "; only its face kept (a feathered ellipse over the neutral face box), the "
                "rest of the frame from the neutral photo"
                if blend_face
                else ""
            ),
            "blend_face": blend_face,
            "inbetweens": inbetweens,
            "sources": {
                "neutral": str(Path(neutral_dir).resolve()),
                "expression": str(Path(expression_dir).resolve()),
            },
            "licence": licence,
            "attribution": attribution,
            "held_out": held,
            "train": written["train"],
            "test": written["test"],
            "skipped": [{"path": path, "reason": reason} for path, reason in skipped],
        }
        (staging / DATA_CARD_FILE).write_text(json.dumps(card, indent=2, sort_keys=True))
        replace_folder(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if skipped:
        lines = "\n".join(f"  {path}: {reason}" for path, reason in skipped)
        warnings.warn(
            f"Skipped {len(skipped)} photo(s) or pair(s):\n{lines}", DataWarning, stacklevel=2
        )
    return card


def format_summary(card: dict, out: str | Path) -> str:
    """A few lines about a prepared data set, for the CLI."""
    rotations = [abs(item["rotation_degrees"]) for item in card["train"] + card["test"]]
    scales = [abs(item["scale"] - 1.0) for item in card["train"] + card["test"]]
    return (
        f"Wrote {len(card['train'])} training and {len(card['test'])} held-out "
        f"{card['expression']} pairs ({card['size']}x{card['size']}, face crop margin "
        f"{card['crop']['margin']}) to {out}; {len(card['skipped'])} skipped.\n"
        f"Eye registration: largest rotation {max(rotations):.1f} degrees, largest scale change "
        f"{100 * max(scales):.1f} %. Data card: {Path(out) / DATA_CARD_FILE}"
    )


def recipe_pair_options(pipeline: str | Path) -> dict:
    """The `[pairs]` table of a recipe as `prepare_pairs` keyword arguments."""

    table = load_pipeline(pipeline).get("pairs", {})
    known = set(PAIR_OPTIONS)
    unknown = sorted(set(table) - known)
    if unknown:
        raise UserError(
            f"Unknown setting(s) {', '.join(unknown)} in [pairs] of {pipeline}; "
            f"known: {', '.join(sorted(known))}."
        )
    return dict(table)
