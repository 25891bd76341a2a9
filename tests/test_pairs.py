"""prepare-pairs: names matched, the neutral photo cropped exactly as `generate` crops it, the
expression photo registered onto it on the eyes, bad pairs skipped with one warning."""

from __future__ import annotations

import importlib.util
import json
import shutil
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from affinegan_tf.errors import UserError
from affinegan_tf.pairs import (
    DATA_CARD_FILE,
    describe_transform,
    face_blend_weights,
    match_pairs,
    prepare_pairs,
    recipe_pair_options,
    similarity_from_eyes,
)

needs_dlib = pytest.mark.skipif(
    importlib.util.find_spec("dlib") is None, reason="the eval extra (dlib) is not installed"
)


def _touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"only names matter here")


def test_names_match_by_stem_then_by_person_id(tmp_path):
    _touch(tmp_path / "n", "001.jpg", "002.jpg", "005_03.jpg", "007.png", "009.jpg")
    _touch(tmp_path / "e", "001.jpg", "002.png", "005_08.jpg", "008.jpg", "notes.txt")
    pairs, unmatched = match_pairs(tmp_path / "n", tmp_path / "e")
    assert [(p.name, p.neutral.name, p.expression.name) for p in pairs] == [
        ("001", "001.jpg", "001.jpg"),
        ("002", "002.jpg", "002.png"),
        ("005", "005_03.jpg", "005_08.jpg"),
    ]
    assert sorted(Path(path).name for path, _ in unmatched) == ["007.png", "008.jpg", "009.jpg"]


def test_no_matching_name_is_a_clear_error(tmp_path):
    _touch(tmp_path / "n", "a.jpg")
    _touch(tmp_path / "e", "b.jpg")
    with pytest.raises(UserError, match="No photo of .* has a partner of the same name"):
        match_pairs(tmp_path / "n", tmp_path / "e")
    with pytest.raises(UserError, match="--expression .* is not a folder"):
        match_pairs(tmp_path / "n", tmp_path / "missing")


def test_similarity_from_eyes_maps_the_eyes_onto_the_reference():
    source = np.array([[100.0, 210.0], [180.0, 200.0]])
    target = np.array([[120.0, 190.0], [200.0, 192.0]])
    matrix = similarity_from_eyes(source, target)
    moved = source @ matrix[:, :2].T + matrix[:, 2]
    np.testing.assert_allclose(moved, target, atol=1e-9)
    facts = describe_transform(matrix, source)
    assert facts["scale"] == pytest.approx(np.hypot(80, 2) / np.hypot(80, -10), abs=1e-4)
    np.testing.assert_allclose(facts["eye_shift_pixels"], [20.0, -14.0], atol=0.01)


def test_face_blend_weights_cover_the_face_box_and_fade_out_around_it():
    # A 100 px face at (150, 150) in a 340 px crop square at (30, 30), written at 170 px: the
    # face is the 50 px box at (60, 60) of the crop.
    weights = face_blend_weights(170, (150, 150, 100, 100), (30, 30, 340))
    assert weights.shape == (170, 170, 1) and weights.dtype == np.float32
    assert weights.min() >= 0.0 and weights.max() <= 1.0
    assert weights[85, 85, 0] > 0.99  # the face centre
    assert weights[100, 85, 0] > 0.99  # mouth and chin, below the centre
    for row, col in ((5, 5), (5, 85), (165, 165), (85, 5), (85, 165)):  # corners, hair, sides
        assert weights[row, col, 0] < 0.01, (row, col)
    # Feathered: no step between neighbouring pixels on the way out.
    assert np.abs(np.diff(weights[85, :, 0])).max() < 0.2


def test_recipe_holds_out_12_fixed_people_and_trains_on_70(shared_data):
    options = recipe_pair_options("smile_frl")
    held = options["hold_out"]
    assert len(held) == len(set(held)) == 12
    people = {p.stem for p in (shared_data / "frl-london" / "neutral").glob("*.jpg")}
    assert set(held) <= people and len(people - set(held)) == 70
    assert options["licence"] == "CC BY 4.0" and "DeBruine" in options["attribution"]


def _frl_subset(shared_data: Path, root: Path, people: list[str]) -> tuple[Path, Path]:
    neutral, smiling = root / "neutral", root / "smiling"
    neutral.mkdir(parents=True)
    smiling.mkdir(parents=True)
    for person in people:
        shutil.copy(shared_data / "frl-london" / "neutral" / f"{person}.jpg", neutral)
        shutil.copy(shared_data / "frl-london" / "smiling" / f"{person}.jpg", smiling)
    return neutral, smiling


@needs_dlib
def test_pairs_are_cropped_like_generate_and_registered_on_the_eyes(shared_data, tmp_path):
    from affinegan_tf.data.faces import detect_face
    from affinegan_tf.data.images import read_image
    from affinegan_tf.data.square import prepare_photo, square_resize
    from affinegan_tf.pairs import find_eyes

    neutral, smiling = _frl_subset(shared_data, tmp_path, ["001", "002", "007"])
    # Bad entries: a pair with no face, a pair with two faces, and a name with no partner.
    cv2.imwrite(str(neutral / "blank.png"), np.full((300, 300, 3), 128, np.uint8))
    cv2.imwrite(str(smiling / "blank.png"), np.full((300, 300, 3), 128, np.uint8))
    two = np.hstack([cv2.imread(str(neutral / "001.jpg"))] * 2)
    cv2.imwrite(str(neutral / "twins.jpg"), two)
    cv2.imwrite(str(smiling / "twins.jpg"), two)
    shutil.copy(neutral / "001.jpg", neutral / "lonely.jpg")
    out = tmp_path / "data"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        card = prepare_pairs(
            neutral,
            smiling,
            out,
            size=128,
            hold_out=["007"],
            licence="CC BY 4.0",
            attribution="test photos",
        )
    messages = [str(w.message) for w in caught if "Skipped" in str(w.message)]
    assert len(messages) == 1, messages
    assert "no face found in blank.png" in messages[0]
    assert "2 faces in twins.jpg" in messages[0]
    assert "lonely.jpg" in messages[0]
    assert [item["name"] for item in card["train"]] == ["001", "002"]
    assert [item["name"] for item in card["test"]] == ["007"]
    assert json.loads((out / DATA_CARD_FILE).read_text())["crop"] == {
        "kind": "face",
        "detector": "opencv haarcascade_frontalface_alt2",
        "margin": 0.35,
    }
    for split, person in (("train", "001"), ("train", "002"), ("test", "007")):
        folder = out / split / "img" / person
        assert sorted(p.name for p in folder.iterdir()) == ["0000.png", "0001.png"]
        written = read_image(folder / "0000.png")
        # The neutral frame is exactly what `generate --face-crop` makes of the photo.
        np.testing.assert_array_equal(
            written, prepare_photo(neutral / f"{person}.jpg", 128, face_crop=True)
        )
    # Registration: in the written frames the eyes of the smile sit on those of the neutral
    # face; cut from the same box without registration they would be several pixels off.
    folder = out / "train" / "img" / "001"
    first, second = read_image(folder / "0000.png"), read_image(folder / "0001.png")
    eyes = [find_eyes(frame, detect_face(frame)) for frame in (first, second)]
    registered_error = np.abs(eyes[0] - eyes[1]).max()
    box = card["train"][0]["face_box"]
    unregistered = square_resize(read_image(smiling / "001.jpg"), 128, tuple(box))
    raw_error = np.abs(eyes[0] - find_eyes(unregistered, detect_face(unregistered))).max()
    assert registered_error < 1.5 < raw_error, (registered_error, raw_error)
    assert card["blend_face"] is False


@needs_dlib
def test_blend_face_keeps_the_smile_on_the_face_and_the_rest_from_the_neutral(
    shared_data, tmp_path
):
    from affinegan_tf.data.images import read_image

    neutral, smiling = _frl_subset(shared_data, tmp_path, ["001"])
    plain = prepare_pairs(neutral, smiling, tmp_path / "plain", size=128)
    blended = prepare_pairs(neutral, smiling, tmp_path / "blended", size=128, blend_face=True)
    assert blended["blend_face"] is True and "only its face kept" in blended["registration"]
    frames = {
        name: [
            read_image(tmp_path / name / "train" / "img" / "001" / f"{i:04d}.png") for i in (0, 1)
        ]
        for name in ("plain", "blended")
    }
    np.testing.assert_array_equal(frames["plain"][0], frames["blended"][0])  # neutral unchanged
    neutral_frame, smile, blend = frames["plain"][0], frames["plain"][1], frames["blended"][1]
    box = plain["train"][0]["face_box"]
    weights = face_blend_weights(128, blended["train"][0]["neutral_face"], tuple(box))[:, :, 0]
    face, outside = weights > 0.999, weights < 0.001
    assert face.sum() > 0.15 * 128 * 128 and outside.sum() > 0.3 * 128 * 128
    # The face is the registered smile (up to rounding), the rest the neutral photo.
    assert np.abs(blend[face].astype(int) - smile[face]).max() <= 1
    assert np.abs(blend[outside].astype(int) - neutral_frame[outside]).max() <= 1
    # And the smile did change the face while hair and shoulders moved outside it.
    assert np.abs(smile[face].astype(int) - neutral_frame[face]).mean() > 3
    assert np.abs(smile[outside].astype(int) - neutral_frame[outside]).mean() > 1


@needs_dlib
def test_unknown_held_out_name_and_foreign_out_folder_are_errors(shared_data, tmp_path):
    neutral, smiling = _frl_subset(shared_data, tmp_path, ["001"])
    with pytest.raises(UserError, match="Held-out name.* 999 match no photo pair"):
        prepare_pairs(neutral, smiling, tmp_path / "data", hold_out=["999"])
    foreign = tmp_path / "foreign"
    _touch(foreign, "keep.png")
    with pytest.raises(UserError, match="was not written by prepare-pairs"):
        prepare_pairs(neutral, smiling, foreign)
    assert (foreign / "keep.png").is_file()


@needs_dlib
def test_cli_prepare_pairs(shared_data, tmp_path):
    from cli_helpers import run_cli

    neutral, smiling = _frl_subset(shared_data, tmp_path, ["009", "010"])
    result = run_cli(
        "prepare-pairs",
        "--neutral",
        str(neutral),
        "--expression",
        str(smiling),
        "--out",
        "data",
        "--size",
        "64",
        "--hold-out",
        "010",
        "--expression-name",
        "smile",
        "--blend-face",
        "--inbetweens",
        "2",
        cwd=tmp_path,
    )
    assert "Wrote 1 training and 1 held-out smile pairs (64x64" in result.stdout
    card = json.loads((tmp_path / "data" / DATA_CARD_FILE).read_text())
    assert card["expression"] == "smile" and card["held_out"] == ["010"]
    assert card["blend_face"] is True
    # Training videos: neutral, 2 morphed frames, smile; held-out people: their 2 photos only.
    assert card["inbetweens"] == 2 and "2 morphed in-between frames" in card["kind"]
    trained = sorted(p.name for p in (tmp_path / "data" / "train" / "img" / "009").iterdir())
    held = sorted(p.name for p in (tmp_path / "data" / "test" / "img" / "010").iterdir())
    assert trained == ["0000.png", "0001.png", "0002.png", "0003.png"]
    assert held == ["0000.png", "0001.png"]
