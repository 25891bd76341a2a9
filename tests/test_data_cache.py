"""The decoded-frame cache: hits skip decoding, changes invalidate, read-only data falls back."""

from __future__ import annotations

import os
import shutil
import stat

import numpy as np
import pytest
from test_data_fixtures import (
    coloured_frames,
    frame_number,
    write_frame_folder,
    write_masks,
    write_video,
)

from affinegan_tf.data.cache import CACHE_FOLDER_NAME, FrameCache, resolve_cache_dir
from affinegan_tf.data.layout import VideoSource, find_videos
from affinegan_tf.data.square import square_resize


def _frame_folder_source(tmp_path, count=5, with_masks=False) -> VideoSource:
    folder = tmp_path / "data" / "video"
    write_frame_folder(folder, coloured_frames(count))
    mask_dir = None
    if with_masks:
        mask_dir = tmp_path / "data" / "masks"
        write_masks(mask_dir, count)
    return VideoSource("video", folder, "frame_folder", mask_dir)


def _entries(folder) -> list[str]:
    return sorted(path.name for path in folder.glob("*.frames.npy"))


def test_frames_are_cached_at_the_load_size(tmp_path):
    source = _frame_folder_source(tmp_path, with_masks=True)
    cache = FrameCache(tmp_path / "cache")
    frames, masks = cache.load(source, load_size=36)
    assert isinstance(frames, np.memmap) and not frames.flags.writeable
    assert frames.shape == (5, 36, 36, 3) and frames.dtype == np.uint8
    assert [frame_number(frame) for frame in frames] == list(range(5))
    np.testing.assert_array_equal(frames[2], square_resize(coloured_frames(5)[2], 36))
    assert masks.shape == (5, 36, 36, 1) and set(np.unique(masks)) == {0, 255}
    assert not list((tmp_path / "cache").glob("*.tmp")) and not list(
        (tmp_path / "cache").glob(".*.tmp")
    )


def test_a_cache_hit_does_not_decode(tmp_path):
    source = _frame_folder_source(tmp_path)
    cache = FrameCache(tmp_path / "cache")
    cache.load(source, load_size=32)
    assert cache.decoded_videos == 1
    frames_path, _ = cache.entry_paths(source, 32, False, 0.35, None)
    # Replace the cached array with a marker: a second load must return it, not decode again.
    marker = np.full((5, 32, 32, 3), 7, np.uint8)
    np.save(frames_path, marker)
    again = FrameCache(tmp_path / "cache")
    assert again.is_cached(source, 32)
    frames, _ = again.load(source, load_size=32)
    np.testing.assert_array_equal(frames, marker)
    assert again.decoded_videos == 0


def test_rewriting_a_frame_invalidates_the_entry(tmp_path):
    source = _frame_folder_source(tmp_path)
    cache = FrameCache(tmp_path / "cache")
    before, _ = cache.load(source, load_size=32)
    assert frame_number(before[2]) == 2
    old_entries = _entries(cache.folder)
    write_frame_folder(source.path, coloured_frames(5)[4:], names=["frame2"])  # frame2 := frame 4
    after, _ = cache.load(source, load_size=32)
    assert frame_number(after[2]) == 4 and cache.decoded_videos == 2
    new_entries = _entries(cache.folder)
    assert len(new_entries) == 1 and new_entries != old_entries  # the stale entry is gone


def test_touching_a_frame_invalidates_the_entry(tmp_path):
    source = _frame_folder_source(tmp_path)
    cache = FrameCache(tmp_path / "cache")
    cache.load(source, load_size=32)
    frame = source.path / "frame3.png"
    later = frame.stat().st_mtime_ns + 5_000_000_000
    os.utime(frame, ns=(later, later))
    assert not cache.is_cached(source, 32)
    cache.load(source, load_size=32)
    assert cache.decoded_videos == 2


def test_changed_video_file_invalidates_the_entry(tmp_path):
    path = write_video(tmp_path / "data" / "clip.avi", coloured_frames(4), "MJPG")
    source = VideoSource("clip", path, "video_file", None)
    cache = FrameCache(tmp_path / "cache")
    first, _ = cache.load(source, load_size=24)
    write_video(path, coloured_frames(6)[2:], "MJPG")
    second, _ = cache.load(source, load_size=24)
    assert frame_number(first[0]) == 0 and frame_number(second[0]) == 2


def test_settings_have_separate_entries(tmp_path):
    source = _frame_folder_source(tmp_path, count=6)
    cache = FrameCache(tmp_path / "cache")
    small, _ = cache.load(source, load_size=16)
    large, _ = cache.load(source, load_size=40)
    subsampled, _ = cache.load(source, load_size=16, max_frames=3)
    assert small.shape == (6, 16, 16, 3) and large.shape == (6, 40, 40, 3)
    assert [frame_number(frame) for frame in subsampled] == [0, 2, 5]
    assert len(_entries(cache.folder)) == 3 and cache.decoded_videos == 3


def test_probe_is_remembered_until_the_file_changes(tmp_path):
    root = tmp_path / "data"
    write_video(root / "good.mp4", coloured_frames(3))
    broken = root / "broken.mp4"
    broken.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="broken.mp4"):
        find_videos(root)
    probes = sorted((root / CACHE_FOLDER_NAME).glob("*-probe-*.json"))
    assert len(probes) == 2
    write_video(broken, coloured_frames(4))  # repaired
    index = find_videos(root)
    assert [(video.name, video.frames) for video in index.videos] == [("broken", 4), ("good", 3)]
    assert len(sorted((root / CACHE_FOLDER_NAME).glob("*-probe-*.json"))) == 2


def test_face_crop_entry_from_the_real_clip(shared_data, tmp_path):
    path = tmp_path / "data" / "person.mp4"
    path.parent.mkdir()
    shutil.copy(shared_data / "single_face.mp4", path)
    source = VideoSource("person", path, "video_file", None)
    cache = FrameCache(tmp_path / "cache")
    faces, _ = cache.load(source, 32, face_crop=True, max_frames=8)
    centre, _ = cache.load(source, 32, face_crop=False, max_frames=8)
    assert faces.shape == centre.shape == (8, 32, 32, 3)
    assert np.abs(faces.astype(int) - centre.astype(int)).mean() > 10


def test_read_only_data_folder_uses_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user_cache"))
    data = tmp_path / "read_only"
    write_frame_folder(data / "video", coloured_frames(3))
    for folder in (data / "video", data):
        folder.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    try:
        folder = resolve_cache_dir(data)
        assert folder == tmp_path / "user_cache" / "affinegan_tf"
        index = find_videos(data)
        FrameCache(folder).load(index.videos[0], load_size=16)
        assert not (data / CACHE_FOLDER_NAME).exists()
        assert _entries(folder)
    finally:
        for folder in (data, data / "video"):
            folder.chmod(stat.S_IRWXU)


def test_writable_data_folder_gets_the_cache(tmp_path):
    assert resolve_cache_dir(tmp_path) == tmp_path.resolve() / CACHE_FOLDER_NAME
    assert resolve_cache_dir(tmp_path, tmp_path / "elsewhere") == tmp_path / "elsewhere"
