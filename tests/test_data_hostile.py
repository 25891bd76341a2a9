"""Hostile media through every reader: sizes from headers, the pixel limit, libjpeg's noise.

Each oversized file is header-only (a few hundred bytes claiming 40,000 x 40,000 pixels): the
readers must refuse it from the header with our own message naming the file, never with
OpenCV's CV_IO_MAX_IMAGE_PIXELS error or an allocation.
"""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from hostile_media import (
    face_like_frames,
    oversized_jpeg,
    oversized_png,
    premature_end_jpeg,
    write_frames,
    write_mp4,
)
from PIL import Image

from affinegan_tf.data import image_header
from affinegan_tf.data.cache import FrameCache
from affinegan_tf.data.image_header import MAX_IMAGE_PIXELS, header_size
from affinegan_tf.data.images import read_image
from affinegan_tf.data.layout import find_videos, inspect_data
from affinegan_tf.data.native_stderr import captured_native_stderr
from affinegan_tf.data.sources import VideoSource
from affinegan_tf.data.square import prepare_photo
from affinegan_tf.data.video import iter_frames, probe_clip, read_frames, read_frames_at
from affinegan_tf.errors import DataWarning, UserError

OVERSIZED = {"png": oversized_png, "jpeg": oversized_jpeg}


# ----------------------------------------------------------------------------- header sizes


@pytest.mark.parametrize(
    "extension, options",
    [
        (".png", []),
        (".jpg", []),
        (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
        (".bmp", []),
        (".webp", [cv2.IMWRITE_WEBP_QUALITY, 80]),  # lossy: VP8
        (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]),  # lossless: VP8L
        (".tiff", []),
    ],
)
def test_header_size_matches_the_decoded_size(tmp_path, extension, options):
    image = np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    path = tmp_path / f"image{extension}"
    assert cv2.imwrite(str(path), image, options)
    assert header_size(path) == (53, 37)
    assert read_image(path).shape == (37, 53, 3)


def test_header_size_of_gif_webp_with_alpha_and_a_pillow_only_format(tmp_path):
    rgba = Image.new("RGBA", (41, 29), (10, 20, 30, 128))
    rgba.save(tmp_path / "alpha.webp")  # alpha makes Pillow write the extended (VP8X) header
    assert (tmp_path / "alpha.webp").read_bytes()[12:16] == b"VP8X"
    rgba.convert("RGB").save(tmp_path / "image.gif")
    rgba.convert("RGB").save(tmp_path / "image.ppm")
    for name in ("alpha.webp", "image.gif", "image.ppm"):
        assert header_size(tmp_path / name) == (41, 29), name


def test_header_size_of_junk_is_none(tmp_path):
    path = tmp_path / "junk.png"
    path.write_bytes(np.random.default_rng(0).integers(0, 255, 300, dtype=np.uint8).tobytes())
    assert header_size(path) is None
    with pytest.raises(UserError, match="junk.png"):
        read_image(path)


def test_the_limit_is_below_opencvs_own():
    assert 10_000_000 < MAX_IMAGE_PIXELS < 2**30


# ----------------------------------------------------------------------------- every reader


def _assert_too_large(error: pytest.ExceptionInfo, path: Path) -> None:
    message = str(error.value)
    assert str(path) in message and "over the limit" in message, message
    assert "CV_IO_MAX_IMAGE_PIXELS" not in message and "\n" not in message


@pytest.mark.parametrize("kind", sorted(OVERSIZED))
def test_oversized_image_is_refused_by_read_image_and_prepare_photo(tmp_path, kind):
    path = OVERSIZED[kind](tmp_path / f"huge.{kind}")
    assert path.stat().st_size < 2000 and header_size(path) == (40_000, 40_000)
    for reader in (read_image, lambda file: prepare_photo(file, 64)):
        with pytest.raises(UserError) as error:
            reader(path)
        _assert_too_large(error, path)


@pytest.mark.parametrize("kind", sorted(OVERSIZED))
def test_oversized_frame_is_refused_by_the_frame_readers(tmp_path, kind):
    folder = tmp_path / "clip"
    files = write_frames(folder, face_like_frames(4), ".png" if kind == "png" else ".jpg")
    OVERSIZED[kind](files[2])
    for reader in (read_frames, probe_clip, lambda path: read_frames_at(path, [0, 2])):
        with pytest.raises(UserError) as error:
            reader(folder)
        _assert_too_large(error, files[2])
    assert [index for index, _ in iter_frames(folder, [0, 1])] == [0, 1]  # the good frames


def test_oversized_image_through_the_pillow_fallback(tmp_path):
    path = tmp_path / "huge.ppm"  # a format read through the header of Pillow, not ours
    path.write_bytes(b"P6 40000 40000 255\n" + b"\x00" * 30)
    with pytest.raises(UserError) as error:
        read_image(path)
    _assert_too_large(error, path)


def test_oversized_gif_canvas_is_refused_as_image_and_as_video(tmp_path):
    path = tmp_path / "huge.gif"
    Image.new("RGB", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    data[6:10] = struct.pack("<HH", 60_000, 60_000)  # the logical screen size
    path.write_bytes(bytes(data))
    for reader in (read_image, read_frames):
        with pytest.raises(UserError) as error:
            reader(path)
        _assert_too_large(error, path)


def test_video_frame_size_is_checked_from_the_container(tmp_path, monkeypatch):
    path = write_mp4(tmp_path / "clip.mp4", face_like_frames(4))
    monkeypatch.setattr(image_header, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(UserError, match=r"clip.mp4: video frame of 64x64 pixels"):
        read_frames(path)


def test_oversized_frame_is_a_skip_reason_in_the_data_set(tmp_path):
    root = tmp_path / "data"
    write_frames(root / "good", face_like_frames(3))
    files = write_frames(root / "huge", face_like_frames(3), ".png")
    oversized_png(files[1])
    with pytest.warns(DataWarning, match="huge"):
        index = find_videos(root, cache_dir=tmp_path / "cache")
    assert [video.name for video in index.videos] == ["good"]
    (path, reason), *_ = index.skipped
    assert path == str(root / "huge") and str(files[1]) in reason and "over the limit" in reason


# ----------------------------------------------------------------------------- libjpeg's noise


def test_captured_native_stderr_takes_fd_2_and_gives_it_back(capfd):
    import os

    with captured_native_stderr() as output:
        os.write(2, b"from C\n")
    os.write(2, b"after\n")
    assert output.text == "from C\n"
    assert capfd.readouterr().err == "after\n"


def test_corrupt_jpeg_is_unreadable_and_libjpeg_stays_quiet(tmp_path, capfd):
    path = write_frames(tmp_path, face_like_frames(1))[0]
    premature_end_jpeg(path)
    with pytest.raises(UserError, match="Corrupt JPEG data: premature end of data segment"):
        read_image(path)
    assert capfd.readouterr().err == ""


def test_frame_folder_with_a_corrupt_jpeg_is_skipped_by_probe_and_inspect_alike(tmp_path, capfd):
    root = tmp_path / "data"
    write_frames(root / "good", face_like_frames(3))
    files = write_frames(root / "bad", face_like_frames(5))
    premature_end_jpeg(files[3])  # not the first frame: a first-frame probe would pass it
    cache = FrameCache(tmp_path / "cache")
    with pytest.raises(UserError, match=r"frame_0004.jpg.*Corrupt JPEG"):
        cache.probe(VideoSource("bad", root / "bad", "frame_folder"))
    with pytest.warns(DataWarning):
        report = inspect_data(root, cache_dir=tmp_path / "cache")
    assert report["videos"] == 1
    assert [entry["path"] for entry in report["skipped"]] == [str(root / "bad")]
    assert "Corrupt JPEG" not in capfd.readouterr().err


# ----------------------------------------------------------------------------- one verdict


def test_inspect_and_training_set_agree_with_and_without_face_crop(shared_data, tmp_path):
    import shutil

    from affinegan_tf.config import DataConfig
    from affinegan_tf.data.pipeline import load_training_set

    root = tmp_path / "data"
    root.mkdir()
    shutil.copy(shared_data / "single_face.mp4", root / "person.mp4")
    write_mp4(root / "no_face.mp4", face_like_frames(4))
    files = write_frames(root / "late_corrupt_frame", face_like_frames(5))
    premature_end_jpeg(files[4])
    (root / "empty.mp4").write_bytes(b"")
    for face_crop in (False, True):
        cache = tmp_path / f"cache_{face_crop}"
        with pytest.warns(DataWarning):
            report = inspect_data(root, face_crop=face_crop, cache_dir=cache)
        config = DataConfig(data_dir=str(root), face_crop=face_crop, cache_dir=str(cache))
        with pytest.warns(DataWarning) as warned:
            training_set = load_training_set(config, load_size=32)
        assert len(warned) == 1
        inspected = [(entry["path"], entry["reason"]) for entry in report["skipped"]]
        assert inspected == training_set.index.skipped
        assert [entry["name"] for entry in report["per_video"]] == training_set.names
        assert training_set.names == (["person"] if face_crop else ["no_face", "person"])
