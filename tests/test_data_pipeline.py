"""The tf.data training stream: shared crop/flip, sampling, determinism, resume, graph mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from test_data_fixtures import coloured_frames, write_frame_folder, write_masks

from affinegan_tf.config import DataConfig
from affinegan_tf.data.layout import DatasetIndex
from affinegan_tf.data.pipeline import (
    TrainingSet,
    load_training_set,
    make_dataset,
    random_crop_and_flip,
)
from affinegan_tf.data.pixels import to_model_range, to_uint8

REPO_ROOT = Path(__file__).resolve().parents[1]
LOAD, SIZE, K = 20, 16, 3


def coded_video(video: int, count: int, load: int = LOAD) -> tuple[np.ndarray, np.ndarray]:
    """Frames whose pixels say where they came from: R = 10 x, G = 10 y, B = 40 video + 5 t.

    The mask of frame t is a stripe pattern in x that also depends on t, so a mask cropped,
    flipped or picked differently from its frame is detected.
    """
    y, x = np.mgrid[0:load, 0:load]
    frames = np.zeros((count, load, load, 3), np.uint8)
    masks = np.zeros((count, load, load, 1), np.uint8)
    for t in range(count):
        frames[t, ..., 0] = 10 * x
        frames[t, ..., 1] = 10 * y
        frames[t, ..., 2] = 40 * video + 5 * t
        masks[t, ..., 0] = 255 * (((x // 2) + t) % 2)
    return frames, masks


def coded_training_set(counts=(4, 6, 5), with_masks=True) -> TrainingSet:
    videos = [coded_video(index, count) for index, count in enumerate(counts)]
    return TrainingSet(
        names=[f"video{index}" for index in range(len(counts))],
        frames=[frames for frames, _ in videos],
        masks=[masks if with_masks else None for _, masks in videos],
        with_masks=with_masks,
        index=DatasetIndex(root=Path("."), videos=[]),
        load_size=LOAD,
    )


def dataset(training_set=None, **overrides) -> tf.data.Dataset:
    arguments = dict(
        image_size=SIZE, load_size=LOAD, num_targets=K, batch_size=2, seed=3, start_step=0
    )
    arguments.update(overrides)
    return make_dataset(training_set or coded_training_set(), **arguments)


def batches(data: tf.data.Dataset, count: int) -> list[dict[str, np.ndarray]]:
    return [{key: value.numpy() for key, value in batch.items()} for batch in data.take(count)]


def check_alignment(neutral, targets, masks) -> tuple[int, int, bool]:
    """Asserts that targets and masks were cropped and flipped exactly like the neutral frame.

    Returns:
        (top, left, flipped) recovered from the neutral frame's coordinates.
    """
    neutral, targets, masks = (np.asarray(array).astype(int) for array in (neutral, targets, masks))
    source_x, source_y = neutral[..., 0] // 10, neutral[..., 1] // 10
    top, flipped = int(source_y[0, 0]), bool(source_x[0, 0] > source_x[0, -1])
    left = int(source_x[0, -1] if flipped else source_x[0, 0])
    expected_x = left + np.arange(SIZE)[::-1] if flipped else left + np.arange(SIZE)
    np.testing.assert_array_equal(source_x, np.broadcast_to(expected_x, (SIZE, SIZE)))
    np.testing.assert_array_equal(
        source_y, np.broadcast_to((top + np.arange(SIZE))[:, None], (SIZE, SIZE))
    )
    for target, mask in zip(targets, masks, strict=True):
        np.testing.assert_array_equal(target[..., :2], neutral[..., :2])
        t = (target[0, 0, 2] % 40) // 5
        np.testing.assert_array_equal(mask[..., 0], 255 * (((source_x // 2) + t) % 2))
    return top, left, flipped


# ----------------------------------------------------------------------------- crop and flip


def test_crop_and_flip_are_shared_eagerly():
    frames, masks = coded_video(1, 5)
    seen = set()
    for seed in range(24):
        neutral, targets, cropped_masks = random_crop_and_flip(
            frames[0], frames[[1, 3, 4]], masks[[1, 3, 4]], tf.constant([seed, 9]), SIZE
        )
        assert neutral.shape == (SIZE, SIZE, 3) and targets.shape == (3, SIZE, SIZE, 3)
        assert cropped_masks.shape == (3, SIZE, SIZE, 1) and neutral.dtype == tf.uint8
        seen.add(check_alignment(neutral, targets, cropped_masks))
    assert {flipped for _, _, flipped in seen} == {False, True}
    assert len({(top, left) for top, left, _ in seen}) > 5


def test_crop_and_flip_in_graph_mode_and_dataset_map_equal_eager():
    frames, masks = coded_video(0, 4)
    seed = tf.constant([5, 1], tf.int64)
    eager = random_crop_and_flip(frames[0], frames[1:], masks[1:], seed, SIZE)

    graph = tf.function(lambda n, t, m, s: random_crop_and_flip(n, t, m, s, SIZE))
    traced = graph(frames[0], frames[1:], masks[1:], seed)

    mapped = tf.data.Dataset.from_tensors((frames[0], frames[1:], masks[1:], seed)).map(
        lambda n, t, m, s: random_crop_and_flip(n, t, m, s, SIZE)
    )
    from_map = next(iter(mapped))
    for result in (traced, from_map):
        for expected, actual in zip(eager, result, strict=True):
            np.testing.assert_array_equal(expected.numpy(), actual.numpy())
    check_alignment(*from_map)


def test_crop_and_flip_without_masks():
    frames, _ = coded_video(0, 3)
    neutral, targets, masks = random_crop_and_flip(frames[0], frames[1:], None, [1, 2], SIZE)
    assert masks is None and targets.shape == (2, SIZE, SIZE, 3)


def test_pixel_conversion_round_trips():
    pixels = np.arange(256, dtype=np.uint8)
    values = to_model_range(pixels)
    assert values.dtype == tf.float32
    assert float(values[0]) == -1.0 and float(values[-1]) == 1.0
    np.testing.assert_array_equal(to_uint8(values).numpy(), pixels)
    np.testing.assert_array_equal(to_uint8([-3.0, 3.0]).numpy(), [0, 255])


# ----------------------------------------------------------------------------- samples


def test_sample_structure_ranges_and_alignment():
    training_set = coded_training_set()
    (batch,) = batches(dataset(training_set), 1)
    assert batch["neutral"].shape == (2, SIZE, SIZE, 3) and batch["neutral"].dtype == np.float32
    assert batch["targets"].shape == (2, K, SIZE, SIZE, 3)
    assert batch["masks"].shape == (2, K, SIZE, SIZE, 1)
    assert batch["prior_intensities"].shape == (2, K) and batch["target_positions"].shape == (2, K)
    assert batch["video_index"].shape == (2,) and batch["video_index"].dtype == np.int32
    assert -1.0 <= batch["neutral"].min() and batch["neutral"].max() <= 1.0
    assert set(np.unique(batch["masks"])) <= {0.0, 1.0}
    assert ((batch["prior_intensities"] >= 0) & (batch["prior_intensities"] < 1)).all()
    for j in range(2):
        neutral = to_uint8(batch["neutral"][j]).numpy()
        targets = to_uint8(batch["targets"][j]).numpy()
        masks = (batch["masks"][j] * 255).astype(np.uint8)
        check_alignment(neutral, targets, masks)
        # The neutral frame's own mask (frame 0's), cropped and flipped like the frame.
        neutral_mask = (batch["neutral_mask"][j] * 255).astype(np.uint8)
        check_alignment(neutral, neutral[np.newaxis], neutral_mask[np.newaxis])
        video = int(batch["video_index"][j])
        assert neutral[0, 0, 2] == 40 * video  # the neutral is frame 0 of that video
        count = training_set.frame_counts[video]
        frame_indices = (targets[:, 0, 0, 2].astype(int) - 40 * video) // 5
        assert ((frame_indices >= 1) & (frame_indices <= count - 1)).all()
        np.testing.assert_allclose(batch["target_positions"][j], frame_indices / (count - 1))


def test_no_masks_key_without_masks_or_when_not_asked_for():
    (batch,) = batches(dataset(coded_training_set(with_masks=False)), 1)
    assert "masks" not in batch and "neutral_mask" not in batch
    assert batch["targets"].shape == (2, K, SIZE, SIZE, 3)
    with_masks = coded_training_set()
    (without,) = batches(dataset(with_masks, include_masks=False), 1)
    (full,) = batches(dataset(with_masks), 1)
    assert "masks" not in without and "neutral_mask" not in without
    for key in without:  # leaving the masks out changes nothing else
        np.testing.assert_array_equal(without[key], full[key])
    with pytest.raises(ValueError, match="no masks"):
        dataset(coded_training_set(with_masks=False), include_masks=True)


def test_every_video_once_per_epoch_and_in_order_without_shuffle():
    training_set = coded_training_set(counts=(3, 3, 3, 3, 3))
    shuffled = np.concatenate(
        [b["video_index"] for b in batches(dataset(training_set, batch_size=1), 15)]
    )
    for epoch in range(3):
        assert sorted(shuffled[5 * epoch : 5 * epoch + 5]) == [0, 1, 2, 3, 4]
    assert len({tuple(shuffled[5 * epoch : 5 * epoch + 5]) for epoch in range(3)}) > 1
    ordered = np.concatenate(
        [b["video_index"] for b in batches(dataset(training_set, shuffle=False), 4)]
    )
    np.testing.assert_array_equal(ordered, [0, 1, 2, 3, 4, 0, 1, 2])


def test_same_seed_same_stream_and_resume_continues_it():
    training_set = coded_training_set()
    first = batches(dataset(training_set), 6)
    again = batches(dataset(training_set), 6)
    resumed = batches(dataset(training_set, start_step=3), 3)
    other_seed = batches(dataset(training_set, seed=4), 6)
    for expected, actual in zip(first, again, strict=True):
        for key in expected:
            np.testing.assert_array_equal(expected[key], actual[key])
    for expected, actual in zip(first[3:], resumed, strict=True):
        for key in expected:
            np.testing.assert_array_equal(expected[key], actual[key])
    assert any(
        not np.array_equal(a["targets"], b["targets"])
        for a, b in zip(first, other_seed, strict=True)
    )


def test_parts_of_a_batch_are_the_undivided_batch_and_resume_too():
    """A worker's part (`part=(p, n)`) is its slice of every global batch, also after resuming."""
    training_set = coded_training_set()
    whole = batches(dataset(training_set, batch_size=4, start_step=2), 3)
    parts = [
        batches(dataset(training_set, batch_size=4, start_step=2, part=(p, 2)), 3) for p in (0, 1)
    ]
    for step, expected in enumerate(whole):
        assert parts[0][step]["targets"].shape[0] == 2
        for key in expected:
            joined = np.concatenate([parts[0][step][key], parts[1][step][key]])
            np.testing.assert_array_equal(joined, expected[key])
    with pytest.raises(ValueError, match="divide"):
        dataset(training_set, batch_size=3, part=(0, 2))


def test_large_cached_sets_are_read_as_files_and_give_the_same_stream(tmp_path, monkeypatch):
    """Past IN_MEMORY_BYTES, memory-mapped .npy files (the frame cache) are read by TF file ops."""
    from affinegan_tf.data import pipeline
    from affinegan_tf.data.pipeline import _crop_reader, _FileCropReader, _TensorCropReader

    in_memory = coded_training_set()
    on_disk = coded_training_set()
    for index in range(len(in_memory.frames)):
        np.save(tmp_path / f"frames{index}.npy", in_memory.frames[index])
        np.save(tmp_path / f"masks{index}.npy", in_memory.masks[index])
    on_disk.frames = [np.load(tmp_path / f"frames{i}.npy", mmap_mode="r") for i in range(3)]
    on_disk.masks = [np.load(tmp_path / f"masks{i}.npy", mmap_mode="r") for i in range(3)]
    assert isinstance(_crop_reader(on_disk.frames, SIZE), _TensorCropReader)  # small: in memory
    monkeypatch.setattr(pipeline, "IN_MEMORY_BYTES", 1000)
    assert isinstance(_crop_reader(on_disk.frames, SIZE), _FileCropReader)
    # A slice of a mapped file is not the whole file: read from memory instead.
    assert isinstance(_crop_reader([on_disk.frames[0][1:]], SIZE), _TensorCropReader)
    memory_batches, file_batches = batches(dataset(in_memory), 4), batches(dataset(on_disk), 4)
    for expected, actual in zip(memory_batches, file_batches, strict=True):
        for key in expected:
            np.testing.assert_array_equal(expected[key], actual[key])


def test_dataset_consumed_inside_a_tf_function():
    data = dataset()

    @tf.function
    def mean_of_two_batches(stream):
        total = tf.constant(0.0)
        for batch in stream.take(2):
            total += tf.reduce_mean(batch["targets"]) + tf.reduce_mean(batch["masks"])
        return total

    expected = sum(
        float(np.mean(b["targets"], dtype=np.float32)) + float(np.mean(b["masks"]))
        for b in batches(data, 2)
    )
    assert float(mean_of_two_batches(data)) == pytest.approx(expected, abs=1e-5)


def test_wrong_load_size_is_refused():
    with pytest.raises(ValueError, match="load size 24"):
        dataset(load_size=24, image_size=16)


# ----------------------------------------------------------------------------- from files


def test_load_training_set_from_files_reads_through_the_cache(tmp_path, capfd):
    root = tmp_path / "ds"
    for index in range(2):
        name = f"v{index}"
        write_frame_folder(root / "train" / "img" / name, coloured_frames(4 + index), ".jpg")
        write_masks(root / "train" / "patch" / name, 4 + index)
    config = DataConfig(data_dir=str(root), max_frames=None)
    training_set = load_training_set(config, load_size=LOAD)
    assert training_set.names == ["v0", "v1"] and training_set.with_masks
    assert [frames.shape for frames in training_set.frames] == [
        (4, LOAD, LOAD, 3),
        (5, LOAD, LOAD, 3),
    ]
    assert all(isinstance(frames, np.memmap) for frames in training_set.frames)
    assert training_set.masks[1].shape == (5, LOAD, LOAD, 1)
    assert "Decoding 2 videos" in capfd.readouterr().err
    entries = sorted((root / ".affinegan_cache").glob("*.npy"))
    stamps = [path.stat().st_mtime_ns for path in entries]

    again = load_training_set(config, load_size=LOAD)
    assert "Decoding" not in capfd.readouterr().err
    assert [path.stat().st_mtime_ns for path in entries] == stamps
    (batch,) = batches(make_dataset(again, SIZE, LOAD, K, batch_size=2, seed=0), 1)
    assert batch["masks"].mean() > 0 and (batch["masks"].max() == 1.0)


def test_load_training_set_skips_a_video_without_a_face(shared_data, tmp_path):
    import shutil

    from test_data_fixtures import write_video

    from affinegan_tf.data.layout import DataWarning
    from affinegan_tf.errors import UserError

    root = tmp_path / "faces"
    root.mkdir()
    shutil.copy(shared_data / "single_face.mp4", root / "person.mp4")
    write_video(root / "wall.avi", np.full((3, 100, 100, 3), 90, np.uint8), "MJPG")
    (root / "broken.mp4").write_bytes(b"garbage")
    config = DataConfig(data_dir=str(root), face_crop=True, max_frames=6)
    with pytest.warns(DataWarning) as record:
        training_set = load_training_set(config, load_size=LOAD)
    # One warning lists what find_videos skipped and what failed while decoding.
    assert len(record) == 1
    assert "broken.mp4" in str(record[0].message) and "wall.avi" in str(record[0].message)
    assert training_set.names == ["person"]
    skipped = [Path(path).name for path, _ in training_set.index.skipped]
    assert skipped == ["broken.mp4", "wall.avi"]
    strict = DataConfig(data_dir=str(root), face_crop=True, strict=True)
    with pytest.raises(UserError, match="broken.mp4.*--strict"):
        load_training_set(strict, LOAD)
    (root / "broken.mp4").unlink()
    with pytest.raises(UserError, match="No face found in the neutral frame of .*wall.avi"):
        load_training_set(strict, LOAD)


def test_toy_data_set_if_available(request):
    pytest.importorskip("affinegan_tf.toy")
    root = request.getfixturevalue("toy_data")
    training_set = load_training_set(DataConfig(data_dir=str(root)), load_size=72)
    (batch,) = batches(make_dataset(training_set, 64, 72, 5, batch_size=2, seed=0), 1)
    assert batch["targets"].shape == (2, 5, 64, 64, 3) and training_set.with_masks


# ----------------------------------------------------------------------------- tf.distribute

DISTRIBUTED_SCRIPT = textwrap.dedent(
    """
    import faulthandler, json, sys
    # Should the run ever hang, say where (every thread's stack) instead of just timing out.
    faulthandler.dump_traceback_later(240, exit=True)
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
    sys.path.insert(0, sys.argv[1])
    from test_data_pipeline import coded_training_set, LOAD, SIZE, K
    from affinegan_tf.data.pipeline import make_dataset

    def stream():
        return make_dataset(coded_training_set(), SIZE, LOAD, K, batch_size=4, seed=1)

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    distributed = iter(strategy.experimental_distribute_dataset(stream()))

    @tf.function
    def step(batch):
        def replica(local):
            return tf.shape(local["targets"])[0], tf.reduce_sum(local["targets"])
        return strategy.run(replica, args=(batch,))

    plain = [b["targets"].numpy().sum() for b in stream().take(2)]
    sums, sizes = [], []
    for _ in range(2):
        size, total = step(next(distributed))
        sizes.append([int(v) for v in strategy.experimental_local_results(size)])
        sums.append(float(sum(v.numpy() for v in strategy.experimental_local_results(total))))
    print(json.dumps({"replicas": strategy.num_replicas_in_sync, "sizes": sizes,
                      "sums": sums, "plain": [float(v) for v in plain]}))
    """
)


def test_under_mirrored_strategy_with_two_logical_cpus():
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, "-c", DISTRIBUTED_SCRIPT, str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    assert report["sizes"] == [[2, 2], [2, 2]]
    np.testing.assert_allclose(report["sums"], report["plain"], rtol=1e-5)
