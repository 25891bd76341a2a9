"""Finding videos in the authors' layout and plain folders; bad input; inspect-data and its CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_data_fixtures import (
    coloured_frames,
    write_frame_folder,
    write_gif,
    write_masks,
    write_video,
)

from affinegan_tf.data.layout import (
    DataWarning,
    find_videos,
    format_inspection,
    inspect_data,
)
from affinegan_tf.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[1]


def _grey_frames(count: int) -> np.ndarray:
    """CK+-style frames: 8-bit grey (written as single-channel PNGs below)."""
    return coloured_frames(count, 49, 64)


def write_authors_layout(root: Path, videos: int = 3, frames: int = 5) -> Path:
    """<root>/train/img/<video>/ grey frames, train/patch/<video>/ masks, test/img/ items."""
    for index in range(videos):
        folder = root / "train" / "img" / f"S{index:03d}_001"
        folder.mkdir(parents=True)
        for number, frame in enumerate(_grey_frames(frames)):
            cv2.imwrite(str(folder / f"S{index:03d}_{number + 1:08d}.png"), frame[..., 0])
        names = [f"S{index:03d}_{number + 1:08d}" for number in range(frames)]
        write_masks(root / "train" / "patch" / folder.name, frames, 49, 64, names)
    test = root / "test" / "img"
    write_frame_folder(test / "T001", coloured_frames(3))
    write_frame_folder(test, coloured_frames(1), ".jpg", ["neutral_photo"])
    write_video(test / "clip.avi", coloured_frames(3), "MJPG")
    return root


# ----------------------------------------------------------------------------- layouts


def test_authors_layout_with_masks_and_test_split(tmp_path):
    root = write_authors_layout(tmp_path / "ckplus")
    index = find_videos(root)
    assert [video.name for video in index.videos] == ["S000_001", "S001_001", "S002_001"]
    assert index.layout == "authors" and index.with_masks and not index.skipped
    assert all(video.kind == "frame_folder" and video.frames == 5 for video in index.videos)
    assert (index.videos[0].width, index.videos[0].height) == (64, 49)
    assert index.videos[1].mask_dir == root / "train" / "patch" / "S001_001"
    assert sorted(path.name for path in index.test_items) == [
        "T001",
        "clip.avi",
        "neutral_photo.jpg",
    ]


@pytest.mark.parametrize("sub_path", ["train", "train/img"])
def test_authors_layout_from_its_sub_folders(tmp_path, sub_path):
    root = write_authors_layout(tmp_path / "ckplus", videos=2)
    index = find_videos(root / sub_path)
    assert [video.name for video in index.videos] == ["S000_001", "S001_001"]
    assert index.with_masks and index.layout == "authors"
    assert len(index.test_items) == 3


def test_mixed_folder_of_files_and_frame_folders(tmp_path):
    root = tmp_path / "phone"
    write_video(root / "a_clip.mp4", coloured_frames(4))
    write_video(root / "b_clip.avi", coloured_frames(3), "MJPG")
    write_gif(root / "c_clip.gif", coloured_frames(3))
    write_frame_folder(root / "d_frames", coloured_frames(5), ".jpg")
    (root / "notes.txt").write_text("recorded on a phone")
    (root / ".DS_Store").write_bytes(b"\0")
    write_frame_folder(root / ".hidden_video", coloured_frames(3))
    with pytest.warns(DataWarning, match="notes.txt"):
        index = find_videos(root)
    assert [video.name for video in index.videos] == ["a_clip", "b_clip", "c_clip", "d_frames"]
    assert [video.kind for video in index.videos] == ["video_file"] * 3 + ["frame_folder"]
    assert [video.frames for video in index.videos] == [4, 3, 3, 5]
    assert index.layout == "folder" and not index.with_masks and index.test_items == []
    assert [Path(path).name for path, _ in index.skipped] == ["notes.txt"]


def test_toy_mp4_layout(tmp_path):
    root = tmp_path / "toy"
    for index in range(2):
        write_video(root / "train" / "img" / f"video_{index:03d}.mp4", coloured_frames(4))
    index = find_videos(root)
    assert [video.name for video in index.videos] == ["video_000", "video_001"]
    assert index.layout == "authors" and not index.with_masks


def test_folder_of_frames_only_is_one_video(tmp_path):
    write_frame_folder(tmp_path / "my_video", coloured_frames(4))
    index = find_videos(tmp_path / "my_video")
    assert [(video.name, video.frames) for video in index.videos] == [("my_video", 4)]


def test_real_clip_in_a_folder(shared_data, tmp_path):
    with pytest.warns(DataWarning, match="lisa4.jpg: a single image"):
        index = find_videos(shared_data, cache_dir=tmp_path / "cache")
    assert [video.name for video in index.videos] == ["single_face"]
    assert (index.videos[0].frames, index.videos[0].width, index.videos[0].height) == (72, 640, 360)
    # The photos are listed as skipped (a single image is not a video), not silently dropped.
    # (Folders added to the shared data later, such as frl-london/, are skipped as well.)
    skipped_files = [Path(path) for path, _ in index.skipped if not Path(path).is_dir()]
    assert sorted(path.name for path in skipped_files) == ["SOURCES.md", "lisa2.jpg", "lisa4.jpg"]
    assert not (shared_data / ".affinegan_cache").exists()


def test_toy_data_set_if_available(request):
    pytest.importorskip("affinegan_tf.toy")
    root = request.getfixturevalue("toy_data")
    index = find_videos(root)
    assert len(index.videos) == 8 and index.with_masks and not index.skipped


# ----------------------------------------------------------------------------- bad input


def test_missing_folder(tmp_path):
    with pytest.raises(UserError, match="no_such_data does not exist"):
        find_videos(tmp_path / "no_such_data")


def test_file_instead_of_folder(tmp_path):
    path = write_video(tmp_path / "clip.mp4", coloured_frames(3))
    with pytest.raises(UserError, match="clip.mp4 is a file"):
        find_videos(path)


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".gitkeep").write_text("")
    with pytest.raises(UserError, match="empty is empty"):
        find_videos(tmp_path / "empty")


def test_no_usable_video_lists_every_reason(tmp_path):
    root = tmp_path / "bad"
    root.mkdir()
    (root / "broken.mp4").write_bytes(b"garbage bytes, not a video")
    write_video(root / "still.mp4", coloured_frames(1))
    write_frame_folder(root / "lonely", coloured_frames(1))
    with pytest.raises(UserError, match="No usable video") as raised:
        find_videos(root)
    message = str(raised.value)
    assert "broken.mp4" in message and "still.mp4 has 1 frame" in message
    assert "lonely has 1 frame" in message


def test_unusable_videos_are_skipped_with_one_warning(tmp_path):
    root = tmp_path / "some_bad"
    write_video(root / "good.mp4", coloured_frames(4))
    (root / "broken.mp4").write_bytes(b"\x00" * 64)
    write_video(root / "still.avi", coloured_frames(1), "MJPG")
    with pytest.warns(DataWarning) as record:
        index = find_videos(root)
    assert len(record) == 1
    message = str(record[0].message)
    assert "broken.mp4" in message and "still.avi" in message and "--strict" in message
    assert [video.name for video in index.videos] == ["good"]
    reasons = dict(index.skipped)
    assert "Cannot decode video" in reasons[str(root / "broken.mp4")]
    assert "at least 2" in reasons[str(root / "still.avi")]


def test_strict_makes_the_first_unusable_video_an_error(tmp_path):
    root = tmp_path / "some_bad"
    write_video(root / "good.mp4", coloured_frames(4))
    (root / "zz_broken.mp4").write_bytes(b"\x00" * 64)
    with pytest.raises(UserError, match="zz_broken.mp4.*--strict"):
        find_videos(root, strict=True)


def test_mask_count_mismatch_names_the_mask_folder(tmp_path):
    root = write_authors_layout(tmp_path / "ds", videos=2)
    patch = root / "train" / "patch" / "S001_001"
    sorted(patch.iterdir())[-1].unlink()
    with pytest.warns(DataWarning, match="S001_001"):
        index = find_videos(root)
    assert [video.name for video in index.videos] == ["S000_001"]
    (path, reason), *_ = index.skipped
    assert path.endswith("S001_001") and str(patch) in reason and "4 masks" in reason


def test_mask_name_mismatch_names_the_mask_folder(tmp_path):
    root = write_authors_layout(tmp_path / "ds", videos=2)
    patch = root / "train" / "patch" / "S000_001"
    first = sorted(patch.iterdir())[0]
    first.rename(patch / "renamed.png")
    with pytest.warns(DataWarning):
        index = find_videos(root)
    reason = dict(index.skipped)[str(root / "train" / "img" / "S000_001")]
    assert str(patch) in reason and "S000_00000001" in reason and "same file names" in reason


def test_missing_mask_folder_when_others_have_masks(tmp_path):
    root = write_authors_layout(tmp_path / "ds", videos=2)
    shutil.rmtree(root / "train" / "patch" / "S000_001")
    with pytest.warns(DataWarning, match="missing"):
        index = find_videos(root)
    assert [video.name for video in index.videos] == ["S001_001"] and index.with_masks


def test_masks_may_use_another_extension(tmp_path):
    root = tmp_path / "ds"
    write_frame_folder(root / "train" / "img" / "v1", coloured_frames(3), ".jpg")
    write_masks(root / "train" / "patch" / "v1", 3)  # .png masks for .jpg frames
    index = find_videos(root)
    assert index.with_masks and not index.skipped


# ----------------------------------------------------------------------------- inspect-data


REQUIRED_KEYS = {
    "videos",
    "frames",
    "with_masks",
    "skipped",
    "resolution",
    "layout",
    "test_items",
    "per_video",
}


def test_inspect_data_report(tmp_path):
    root = write_authors_layout(tmp_path / "ds", videos=2)
    (root / "train" / "img" / "broken").mkdir()
    (root / "train" / "img" / "broken" / "f1.png").write_bytes(b"not png")
    with pytest.warns(DataWarning, match="broken"):
        report = inspect_data(root)
    assert REQUIRED_KEYS <= set(report)
    assert report["videos"] == 2 and report["frames"] == 10 and report["with_masks"] is True
    assert report["resolution"] == {"min": [64, 49], "max": [64, 49]}
    assert report["layout"] == "authors" and report["test_items"] == 3
    assert [entry["path"] for entry in report["skipped"]] == [
        str(root / "train" / "img" / "broken")
    ]
    assert report["per_video"][0] == {
        "name": "S000_001",
        "path": str(root / "train" / "img" / "S000_001"),
        "kind": "frame_folder",
        "frames": 5,
        "width": 64,
        "height": 49,
        "masks": True,
    }
    json.dumps(report)  # JSON-ready
    text = format_inspection(report)
    assert "2 usable videos, 10 frames" in text and "broken" in text and "mouth masks: yes" in text


def test_inspect_data_resolution_range(tmp_path):
    write_video(tmp_path / "small.mp4", coloured_frames(3, 48, 64))
    write_video(tmp_path / "large.mp4", coloured_frames(3, 96, 160))
    report = inspect_data(tmp_path)
    assert report["resolution"] == {"min": [64, 48], "max": [160, 96]}


def test_inspect_data_face_crop(shared_data, tmp_path):
    root = tmp_path / "faces"
    root.mkdir()
    shutil.copy(shared_data / "single_face.mp4", root / "person.mp4")
    write_video(root / "wall.mp4", np.full((3, 120, 120, 3), 128, np.uint8))
    with pytest.warns(DataWarning, match="No face found"):
        report = inspect_data(root, face_crop=True)
    assert report["videos"] == 1 and report["per_video"][0]["name"] == "person"
    x, y, side = report["per_video"][0]["face_box"]
    assert 150 < side < 400 and 0 < x + side / 2 < 640
    assert [Path(entry["path"]).name for entry in report["skipped"]] == ["wall.mp4"]
    with pytest.raises(UserError, match="wall.mp4.*--strict"):
        inspect_data(root, face_crop=True, strict=True)


def _run_cli(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-m", "affinegan_tf", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_cli_inspect_data_json(tmp_path):
    root = write_authors_layout(tmp_path / "ds", videos=2)
    (root / "train" / "img" / "broken.mp4").write_bytes(b"garbage")
    result = _run_cli("inspect-data", "--data", str(root), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert REQUIRED_KEYS <= set(report)
    assert report["videos"] == 2 and report["with_masks"] is True
    assert report["skipped"][0]["path"].endswith("broken.mp4")
    assert "broken.mp4" in result.stderr  # the warning stays visible, off stdout


def test_cli_inspect_data_text_and_errors(tmp_path):
    write_video(tmp_path / "clips" / "one.mp4", coloured_frames(3))
    result = _run_cli("inspect-data", "--data", str(tmp_path / "clips"))
    assert result.returncode == 0, result.stderr
    assert "1 usable video, 3 frames" in result.stdout

    missing = _run_cli("inspect-data", "--data", str(tmp_path / "nowhere"))
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: ") and "nowhere does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr

    (tmp_path / "clips" / "bad.mp4").write_bytes(b"garbage")
    strict = _run_cli("inspect-data", "--data", str(tmp_path / "clips"), "--strict")
    assert strict.returncode == 2 and "bad.mp4" in strict.stderr
