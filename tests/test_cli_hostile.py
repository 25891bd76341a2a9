"""A data folder after a bad copy through the installed CLI: inspect-data, fit, generate, intensity.

The folder (built here, a few entries of every broken kind among real clips) must never make a
command crash or hang; `inspect-data` and `fit` must give the same verdict with the same reasons;
stderr carries our own skip message once and no decoder noise; a failed command leaves no
partial output.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import run_cli
from conftest import SHARED_DATA
from hostile_media import (
    build_hostile_folder,
    face_like_frames,
    oversized_png,
    premature_end_jpeg,
    write_frames,
)

from affinegan_tf.toy import write_toy_dataset

TIMEOUT = 300
# Anywhere on stderr: a crash, OpenCV's own size error, Python's warning format and source line.
NOISE = ("Traceback", "cv2.error", "CV_IO_MAX_IMAGE_PIXELS", "DataWarning", "load_training_set(")
# At the start of a line: what libjpeg, FFmpeg and OpenCV's logger write themselves (our own
# messages may quote libjpeg's words, inside a sentence naming the file).
RAW_LINES = ("Corrupt JPEG", "Premature end", "libpng", "[mov,mp4", "[h264", "[ WARN", "[ERROR")


def _good_clips(folder: Path, count: int) -> list[Path]:
    write_toy_dataset(folder, num_videos=count, size=64, video_format="mp4", test_videos=0)
    clips = sorted((folder / "train" / "img").glob("*.mp4"))
    if (SHARED_DATA / "single_face.mp4").is_file():
        clips.insert(0, SHARED_DATA / "single_face.mp4")
    return clips


def _skip_lines(stderr: str) -> list[str]:
    """The entries of our one skip message (`  path: reason` lines after `warning: Skipped`)."""
    lines = stderr.splitlines()
    starts = [index for index, line in enumerate(lines) if line.startswith("warning: Skipped")]
    assert len(starts) == 1, stderr[-3000:]
    entries = []
    for line in lines[starts[0] + 1 :]:
        if not line.startswith("  "):
            break
        entries.append(line)
    return entries


def _assert_quiet(stderr: str) -> None:
    for noise in NOISE:
        assert noise not in stderr, f"{noise!r} on stderr:\n{stderr[-3000:]}"
    for line in stderr.splitlines():
        assert not line.startswith(RAW_LINES), f"decoder noise on stderr: {line}"


def _inspect_and_fit(tmp_path: Path, per_kind: int, good_clips: int) -> tuple[dict, dict, Path]:
    clips = _good_clips(tmp_path / "toy", good_clips)
    data = tmp_path / "data"
    expected = build_hostile_folder(data, clips, per_kind=per_kind)

    inspected = run_cli(
        "inspect-data", "--data", str(data), "--json", cwd=tmp_path, timeout=TIMEOUT
    )
    report = json.loads(inspected.stdout)
    skipped = [entry["path"] for entry in report["skipped"]]
    used = [entry["path"] for entry in report["per_video"]]
    assert len(skipped) == len(set(skipped)), "an entry is listed twice"
    assert set(expected["bad"]) <= set(skipped)
    assert set(expected["good"]) <= set(used)
    assert set(skipped) | set(used) == set(expected["good"] + expected["bad"] + expected["either"])
    assert all(entry["reason"].strip() for entry in report["skipped"])
    # stderr: our one message, listing every skipped entry with its reason, and nothing else.
    listed = [f"  {entry['path']}: {entry['reason']}" for entry in report["skipped"]]
    assert inspected.stderr.splitlines()[1:] == listed
    assert inspected.stderr.startswith(f"warning: Skipped {len(skipped)} entries of {data}")

    run = tmp_path / "run"
    fitted = run_cli(
        "fit", "--data", str(data), "--out", str(run), "--preset", "tiny", "--steps", "2",
        cwd=tmp_path, timeout=TIMEOUT,
    )  # fmt: skip
    _assert_quiet(fitted.stderr)
    assert _skip_lines(fitted.stderr) == listed  # the same verdict, the same reasons
    assert f"at step 0/2: {report['videos']} videos" in fitted.stderr
    return report, expected, run


@pytest.mark.slow  # every command in its own process: ~35 s
def test_hostile_folder_through_every_command(tmp_path):
    report, expected, run = _inspect_and_fit(tmp_path, per_kind=1, good_clips=2)

    # generate: every photo is read before anything is written, so the good photo before the
    # bad ones gets no output either; the first bad photo is the one error line.
    photos = tmp_path / "photos"
    good = write_frames(photos / "good", face_like_frames(1, size=256))[0]
    huge = oversized_png(photos / "huge.png")
    corrupt = premature_end_jpeg(write_frames(photos / "corrupt", face_like_frames(1))[0])
    out = tmp_path / "out"
    result = run_cli(
        "generate", "--model", str(run), "--image", str(good), str(huge), str(corrupt),
        "--out", f"{out}/", cwd=tmp_path, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-3000:]
    _assert_quiet(result.stderr)
    last = result.stderr.splitlines()[-1]
    assert last.startswith("error: ") and str(huge) in last and "over the limit" in last
    assert not out.exists() or not any(out.iterdir()), "a partial output was left"

    huge_frames = next(path for path in expected["bad"] if path.endswith("huge_png_frames"))
    result = run_cli(
        "intensity", "--model", str(run), "--video", huge_frames, "--json",
        cwd=tmp_path, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    assert result.returncode == 2 and result.stdout == "", result.stderr[-3000:]
    _assert_quiet(result.stderr)
    last = result.stderr.splitlines()[-1]
    assert last.startswith("error: ") and "frame_0003.png" in last and "over the limit" in last


@pytest.mark.slow
def test_large_hostile_folder_inspect_and_fit_agree(tmp_path):
    """The issue's scale: 4 real clips among about 170 broken entries."""
    report, _, _ = _inspect_and_fit(tmp_path, per_kind=10, good_clips=3)
    assert len(report["skipped"]) >= 160
