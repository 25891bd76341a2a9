"""The built-in synthetic face videos: determinism, the expression's visibility, the layout."""

from __future__ import annotations

import csv
import hashlib
import subprocess
import sys
import time
from itertools import combinations
from pathlib import Path

import cv2
import numpy as np
import pytest

from affinegan_tf import toy
from affinegan_tf.errors import UserError
from affinegan_tf.toy import (
    EXPRESSIONS,
    KINDS,
    intensity_schedule,
    mouth_mask,
    random_identity,
    render_face,
    write_toy_dataset,
)

SWEEP = np.linspace(0.0, 1.0, 6)


def identities(count: int, seed: int = 0) -> list[toy.Identity]:
    rng = np.random.default_rng(seed)
    return [random_identity(rng) for _ in range(count)]


def folder_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def read_rows(root: Path) -> list[dict[str, str]]:
    with open(root / "intensities.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


# ----------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_files_and_another_seed_different_ones(tmp_path):
    arguments = {"num_videos": 4, "size": 48, "frames_per_video": 5, "test_videos": 2}
    write_toy_dataset(tmp_path / "first", seed=3, **arguments)
    write_toy_dataset(tmp_path / "second", seed=3, **arguments)
    write_toy_dataset(tmp_path / "other", seed=4, **arguments)
    assert folder_digest(tmp_path / "first") == folder_digest(tmp_path / "second")
    # Frames differ; masks, snapped to 8x8 blocks, may coincide.
    first_frames = sorted((tmp_path / "first").rglob("img/*/*.jpg"))
    other_frames = sorted((tmp_path / "other").rglob("img/*/*.jpg"))
    assert [path.name for path in first_frames] == [path.name for path in other_frames]
    differing = [
        left for left, right in zip(first_frames, other_frames, strict=True)
        if left.read_bytes() != right.read_bytes()
    ]  # fmt: skip
    assert len(differing) == len(first_frames)


def test_render_face_is_a_pure_function_of_its_arguments():
    (identity,) = identities(1)
    first = render_face(identity, 0.5, "smile", 64, (0.5, -1.0), np.random.default_rng(1))
    second = render_face(identity, 0.5, "smile", 64, (0.5, -1.0), np.random.default_rng(1))
    np.testing.assert_array_equal(first, second)
    assert identities(3, seed=7) == identities(3, seed=7)


# ----------------------------------------------------------------------------- the expression


def _region(expression: str, identity: toy.Identity, size: int) -> np.ndarray:
    """Where each expression's change is expected, as a boolean [size, size] mask."""
    if expression in ("smile", "surprise"):
        return mouth_mask(identity, 1.0, expression, size) > 0
    rows, columns = np.mgrid[0:size, 0:size] / size
    if expression == "close_eyes":
        return (rows > 0.38) & (rows < 0.5)
    return (rows > 0.5) & (rows < 0.72)  # puff_cheeks: the cheeks' band, face edges included


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_the_change_grows_strictly_with_intensity(expression):
    size, changed = 64, []
    for identity in identities(4, seed=11):
        neutral = render_face(identity, 0.0, expression, size).astype(np.float64)
        region = _region(expression, identity, size)
        inside, everywhere = [], []
        for intensity in SWEEP:
            image = render_face(identity, intensity, expression, size).astype(np.float64)
            difference = np.abs(image - neutral).mean(axis=2)
            inside.append(difference[region].mean())
            everywhere.append(difference.mean())
        assert inside[0] == 0.0
        assert np.all(np.diff(inside) > 0.5), (expression, np.round(inside, 2))
        assert np.all(np.diff(everywhere) > 0.0), (expression, np.round(everywhere, 3))
        # Large at the apex: the whole region moves by several grey levels on average...
        assert inside[-1] > 5.0, (expression, inside[-1])
        changed.append(int((difference > 40).sum()))
    # ... and dozens of pixels by more than 40.
    assert np.median(changed) >= 40, (expression, changed)


def test_smile_shows_more_teeth_and_more_open_mouth_with_intensity():
    for identity in identities(4, seed=5):
        neutral = render_face(identity, 0.0, "smile", 64).astype(np.int32)
        teeth, dark = [], []
        for intensity in SWEEP:
            image = render_face(identity, intensity, "smile", 64).astype(np.int32)
            change = (image - neutral).sum(axis=2)
            # Teeth: pixels that turned bright; the mouth's inside: pixels that turned dark.
            teeth.append(int(((image.min(axis=2) > 170) & (change > 45)).sum()))
            dark.append(int(((image.max(axis=2) < 110) & (change < -90)).sum()))
        assert teeth[0] == 0 and np.all(np.diff(teeth) >= 0) and teeth[-1] > teeth[3] > 0, teeth
        assert dark[0] == 0 and np.all(np.diff(dark) >= 0) and dark[-1] > dark[2] > 0, dark


def test_close_eyes_hides_the_eye_whites():
    # At 128 pixels: at 64 an eye's white is a few pixels, each mixed with the iris or a lid.
    for identity in identities(4, seed=6):
        whites = []
        for intensity in SWEEP:
            image = render_face(identity, intensity, "close_eyes", 128).astype(np.int32)
            distance = np.abs(image - np.array(toy.drawing._EYE_WHITE)).sum(axis=2)
            whites.append(int((distance < 40).sum()))
        closing = whites[: whites.index(0) + 1] if 0 in whites else whites
        assert whites[0] >= 15 and np.all(np.diff(closing) < 0) and whites[-1] == 0, whites


def test_puffed_cheeks_widen_the_face():
    for identity in identities(4, seed=8):
        neutral = render_face(identity, 0.0, "puff_cheeks", 64).astype(np.int32)
        beside_face = np.abs(neutral - np.array(identity.skin)).sum(axis=2) > 60
        covered = []
        for intensity in SWEEP:
            image = render_face(identity, intensity, "puff_cheeks", 64).astype(np.int32)
            covered.append(int(((np.abs(image - neutral).sum(axis=2) > 60) & beside_face).sum()))
        assert covered[0] == 0 and np.all(np.diff(covered) > 5) and covered[-1] >= 50, covered


# ----------------------------------------------------------------------------- identities


def test_identities_differ_far_more_than_frames_of_one_video():
    size = 64
    people = identities(8, seed=2)
    rng = np.random.default_rng(0)
    faces = [
        render_face(person, 0.0, "smile", size, rng=rng).astype(np.float64) for person in people
    ]
    between = np.mean([np.abs(a - b).mean() for a, b in combinations(faces, 2)])
    within = []
    for person in people:
        first = render_face(person, 0.0, "smile", size, (0.0, 0.0), rng)
        second = render_face(person, 0.0, "smile", size, (1.0, -1.0), rng, head_scale=1.01)
        within.append(np.abs(first.astype(np.float64) - second).mean())
    assert between > 5 * np.mean(within), (between, np.mean(within))
    assert len({person.hair_style for person in identities(16, seed=2)}) >= 5


@pytest.mark.parametrize("size", [32, 33, 64, 100, 256])
def test_every_size_renders(size):
    (identity,) = identities(1)
    image = render_face(identity, 0.7, "surprise", size, rng=np.random.default_rng(0))
    mask = mouth_mask(identity, 0.7, "surprise", size)
    assert image.shape == (size, size, 3) and image.dtype == np.uint8
    assert mask.shape == (size, size) and set(np.unique(mask)) == {0, 255}


# ----------------------------------------------------------------------------- sequence kinds


def test_each_kind_has_its_shape():
    for seed in range(20):
        rng = np.random.default_rng(seed)
        for num_frames in (4, 6, 12, 16, 20):
            complete = intensity_schedule("complete", num_frames, rng)
            assert complete[0] == 0.0 and complete[-1] == 1.0 and np.all(np.diff(complete) > 0)
            incomplete = intensity_schedule("incomplete", num_frames, rng)
            assert incomplete[0] == 0.0 and np.all(np.diff(incomplete) > 0)
            assert 0.4 <= incomplete.max() <= 0.7 < 0.8
            periodic = intensity_schedule("periodic", num_frames, rng)
            assert periodic[0] == 0.0 and periodic.max() == 1.0
            trough = int(np.argmax(periodic))
            while trough + 1 < num_frames and periodic[trough + 1] < periodic[trough]:
                trough += 1
            assert periodic[trough] <= 0.15 and periodic[trough:].max() >= 0.75
            shuffled = intensity_schedule("shuffled", num_frames, rng)
            assert shuffled[0] == 0.0 and shuffled.max() == 1.0
            assert not np.all(np.diff(shuffled) > 0) and np.all(shuffled[1:] > 0)
            assert len(np.unique(shuffled)) == num_frames


def test_bad_arguments_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="Unknown expression"):
        write_toy_dataset(tmp_path / "a", expression="frown")
    with pytest.raises(UserError, match="size"):
        write_toy_dataset(tmp_path / "a", size=8)
    with pytest.raises(UserError, match="Unknown format"):
        write_toy_dataset(tmp_path / "a", video_format="gif")
    with pytest.raises(UserError, match="even"):
        write_toy_dataset(tmp_path / "a", size=33, video_format="mp4")
    with pytest.raises(UserError, match="at least 4 frames"):
        write_toy_dataset(tmp_path / "a", frames_per_video=2)
    with pytest.raises(ValueError, match="kind"):
        intensity_schedule("sideways", 8, np.random.default_rng(0))
    assert not (tmp_path / "a").exists()


# ----------------------------------------------------------------------------- files


def test_layout_masks_and_csv_match_the_files(toy_data):
    rows = read_rows(toy_data)
    train_videos = sorted(path.name for path in (toy_data / "train" / "img").iterdir())
    test_videos = sorted(path.name for path in (toy_data / "test" / "img").iterdir())
    assert len(train_videos) == 8 and len(test_videos) == 4
    for videos in (train_videos, test_videos):
        assert sorted(name.rsplit("_", 1)[0] for name in videos) == sorted(
            KINDS * (len(videos) // 4)
        )
    assert sorted(path.name for path in (toy_data / "train" / "patch").iterdir()) == train_videos
    assert not (toy_data / "test" / "patch").exists()
    assert (toy_data / "README.txt").read_text().startswith(toy.README_MARKER)
    assert {row["file"] for row in rows} == {
        path.relative_to(toy_data).as_posix() for path in toy_data.rglob("img/*/*.jpg")
    }
    for row in rows:
        assert row["video"].startswith(row["kind"] + "_") and row["split"] in ("train", "test")
        assert (
            row["file"]
            == f"{row['split']}/img/{row['video']}/frame_{int(row['frame']) + 1:04d}.jpg"
        )
        if row["frame"] == "0":
            assert float(row["intensity"]) == 0.0
    for video in train_videos:
        frames = sorted(path.name for path in (toy_data / "train" / "img" / video).iterdir())
        masks = sorted(path.name for path in (toy_data / "train" / "patch" / video).iterdir())
        assert frames == masks and len(frames) == 16
        truth = [float(row["intensity"]) for row in rows if row["video"] == video]
        assert len(truth) == 16
        apex = int(np.argmax(truth))
        neutral_mask = cv2.imread(str(toy_data / "train/patch" / video / frames[0]), 0)
        apex_mask = cv2.imread(str(toy_data / "train/patch" / video / frames[apex]), 0)
        for mask in (neutral_mask, apex_mask):
            # Exactly binary despite JPEG, around the lower middle of the face.
            assert set(np.unique(mask)) == {0, 255}
            rows_in, columns_in = np.nonzero(mask)
            assert 24 < columns_in.mean() < 40 and 34 < rows_in.mean() < 54
        assert apex_mask.sum() >= neutral_mask.sum()
        # The smile's change (apex vs neutral) is concentrated in the mouth mask.
        change = np.abs(
            read_rgb(toy_data / "train/img" / video / frames[apex]).astype(np.int32)
            - read_rgb(toy_data / "train/img" / video / frames[0])
        ).sum(axis=2)
        if max(truth) > 0.9:
            # (Outside the mask, head motion and noise change pixels too.)
            assert change[apex_mask > 0].mean() > 2 * change[apex_mask == 0].mean()


def test_masks_cover_the_open_mouth():
    counted = 0
    for identity in identities(6, seed=9):
        for offset in ((0.0, 0.0), (1.5, -1.0)):
            neutral = render_face(identity, 0.0, "smile", 64, offset).astype(np.int32)
            apex = render_face(identity, 1.0, "smile", 64, offset).astype(np.int32)
            mask = mouth_mask(identity, 1.0, "smile", 64, offset) > 0
            change = (apex - neutral).sum(axis=2)
            # Below the nose (the smile also narrows the eyes, outside the mouth mask).
            lower_face = np.arange(64)[:, np.newaxis] >= 36
            teeth = (apex.min(axis=2) > 170) & (change > 45) & lower_face
            inside = (apex.max(axis=2) < 110) & (change < -90) & lower_face
            assert not ((teeth | inside) & ~mask).any()
            counted += int((teeth | inside).sum())
    assert counted > 200


def test_mp4_format_decodes_to_the_listed_frames(tmp_path):
    out = tmp_path / "mp4"
    summary = write_toy_dataset(out, num_videos=4, size=64, video_format="mp4", frames_per_video=7)
    assert summary["format"] == "mp4" and summary["frames"] == 28
    rows = read_rows(out)
    files = sorted({row["file"] for row in rows})
    assert files == sorted(path.relative_to(out).as_posix() for path in out.rglob("*.mp4"))
    assert len(files) == 8 and not (out / "train" / "patch").exists()
    for file in files:
        capture = cv2.VideoCapture(str(out / file))
        frames = []
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame)
        capture.release()
        assert len(frames) == sum(row["file"] == file for row in rows) == 7
        assert frames[0].shape == (64, 64, 3)


def test_rewrites_a_toy_set_but_refuses_other_folders(tmp_path):
    out = tmp_path / "toy"
    write_toy_dataset(out, num_videos=4, size=32, frames_per_video=4, test_videos=0)
    write_toy_dataset(out, num_videos=5, size=32, frames_per_video=4, test_videos=0)
    assert len(list((out / "train" / "img").iterdir())) == 5
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("do not delete")
    with pytest.raises(UserError, match="not empty"):
        write_toy_dataset(precious, num_videos=4, size=32)
    assert [path.name for path in precious.iterdir()] == ["thesis.tex"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["precious", "toy"]


def test_cli_make_toy_data(tmp_path):
    out = tmp_path / "cli_toy"
    command = [sys.executable, "-m", "affinegan_tf", "make-toy-data", "--out", str(out)]
    result = subprocess.run(
        [*command, "--videos", "8", "--size", "32", "--expression", "surprise", "--seed", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "8 surprise videos" in result.stdout
    assert len(list((out / "train" / "img").iterdir())) == 8
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    refused = subprocess.run(
        [*command[:-1], str(tmp_path / "other")], capture_output=True, text=True, timeout=120
    )
    assert refused.returncode == 2 and "refusing" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_default_size_set_speed(tmp_path):
    """Not a timed test: prints how long the default 32-video 64x64 set takes here."""
    started = time.perf_counter()
    summary = write_toy_dataset(tmp_path / "default")
    seconds = time.perf_counter() - started
    assert summary["videos"] == 32 and summary["frames"] == 512 and summary["test_videos"] == 8
    print(f"\n32 videos + 8 test videos at 64x64: {seconds:.2f} s")
