"""The training stream: cached frames -> AffineGAN samples, as an infinite tf.data pipeline.

Sample number i of the stream (i = step * batch_size + j) is a pure function of (seed, i): the
video is entry i % N of a permutation seeded by (seed, i // N), and the target frames, the crop,
the flip and the prior intensities come from stateless random ops seeded by (seed, i). So the
stream is the same on every run, and a run resumed at `start_step` continues it exactly, whatever
the number of replicas or the prefetching.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import warnings
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from affinegan_tf.config import DataConfig
from affinegan_tf.data.cache import FrameCache, resolve_cache_dir
from affinegan_tf.data.layout import DatasetIndex, DataWarning, find_videos, warn_skipped
from affinegan_tf.data.pixels import to_model_range
from affinegan_tf.errors import UserError

RNG_ALGORITHM = "philox"
# Fixed salts keep the permutation seeds apart from the per-sample seeds.
_PERMUTATION_SALT = 1
_SAMPLE_SALT = 2
# Threads of the stream's own pool: its work per sample is small next to a training step.
_STREAM_THREADS = 2
# Training frames (or masks) up to this size are copied into one tensor; larger sets are read from
# the cache files (see _crop_reader). Measured with 240 MB of frames: the copy peaks at about 3x
# the data while the stream starts, and the first batch took 20-30 s on 2 busy cores.
IN_MEMORY_BYTES = 256 * 1024**2


@dataclass
class TrainingSet:
    """Decoded training videos, at the load size, memory-mapped from the cache.

    Attributes:
        names: Video names, in the order of `frames`.
        frames: Per video, uint8 [T, L, L, 3] (read-only memmaps); frame 0 is the neutral.
        masks: Per video, uint8 [T, L, L, 1] with values 0/255, or None.
        with_masks: Whether every video has masks (the local discriminator can be used).
        index: What `find_videos` found (skipped entries, test items ...).
        load_size: L.
    """

    names: list[str]
    frames: list[np.ndarray]
    masks: list[np.ndarray | None]
    with_masks: bool
    index: DatasetIndex
    load_size: int = 0

    @property
    def frame_counts(self) -> list[int]:
        """Frames per video."""
        return [len(frames) for frames in self.frames]


def load_training_set(data_config: DataConfig, load_size: int, split: str = "train") -> TrainingSet:
    """Finds the videos and loads them through the frame cache (decoding only what is new).

    Args:
        data_config: Data folder, face crop, strictness, cache folder and max_frames.
        load_size: Side frames are resized to before the random crop (ModelConfig.load_size).
        split: Split of the authors' layout to read.

    Returns:
        The training set; videos that fail to decode (or, with face_crop, have no face) are
        skipped with a warning unless `data_config.strict`.

    Raises:
        UserError: No usable video, or (strict) any unusable one.
    """
    with warnings.catch_warnings():
        # Warned about below, together with the videos that fail to decode: one warning.
        warnings.simplefilter("ignore", DataWarning)
        index = find_videos(
            data_config.data_dir,
            split=split,
            strict=data_config.strict,
            cache_dir=data_config.cache_dir,
        )
    cache = FrameCache(resolve_cache_dir(index.root, data_config.cache_dir))
    options = {
        "load_size": load_size,
        "face_crop": data_config.face_crop,
        "face_margin": data_config.face_margin,
        "max_frames": data_config.max_frames,
    }
    to_decode = sum(not cache.is_cached(source, **options) for source in index.videos)
    progress = _Progress(to_decode, cache.folder)
    names, frames, masks, usable = [], [], [], []
    failed: list[tuple[str, str]] = []
    for source in index.videos:
        try:
            video_frames, video_masks = cache.load(source, **options)
        except UserError as error:
            if data_config.strict:
                raise UserError(f"{error} (--strict: every video must be usable)") from None
            failed.append((str(source.path), str(error)))
            continue
        finally:
            progress.update(cache.decoded_videos)
        names.append(source.name)
        frames.append(video_frames)
        masks.append(video_masks)
        usable.append(source)
    progress.close()
    warn_skipped(index.skipped + failed, index.videos_dir or index.root)
    if not usable:
        raise UserError(
            f"No usable video in {index.videos_dir}: "
            + "; ".join(f"{path}: {reason}" for path, reason in failed[:5])
        )
    index = dataclasses.replace(
        index,
        videos=usable,
        skipped=index.skipped + failed,
        with_masks=all(source.mask_dir is not None for source in usable),
    )
    return TrainingSet(
        names=names,
        frames=frames,
        masks=masks,
        with_masks=index.with_masks,
        index=index,
        load_size=load_size,
    )


class _Progress:
    """A one-line decoding progress report on stderr (only when something has to be decoded)."""

    def __init__(self, total: int, cache_folder):
        self.total = total
        self.shown = 0
        self.interactive = sys.stderr.isatty()
        if total:
            print(
                f"Decoding {total} video{'s' if total != 1 else ''} into the frame cache "
                f"{cache_folder} (once; later runs read the cache)...",
                file=sys.stderr,
                flush=True,
            )

    def update(self, done: int) -> None:
        if self.total and self.interactive and done != self.shown:
            self.shown = done
            print(f"\r  {done}/{self.total}", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.total and self.interactive:
            print(file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- augmentation


def crop_window(
    seed: tf.Tensor, height: tf.Tensor, width: tf.Tensor, image_size: int
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The random crop and flip of one sample: (top, left, flip), stateless in `seed`.

    Args:
        seed: Stateless seed, int32/int64 [2].
        height: Frame height (>= image_size).
        width: Frame width (>= image_size).
        image_size: S, side of the crop.

    Returns:
        top and left (int32 scalars) of the S x S window, and whether to flip it (bool scalar).
    """
    seed = tf.convert_to_tensor(seed)
    height = tf.cast(height, tf.int32)
    width = tf.cast(width, tf.int32)
    tf.debugging.assert_greater_equal(
        tf.minimum(height, width), image_size, message="frames are smaller than the crop size"
    )
    top = tf.random.stateless_uniform(
        [],
        _fold(seed, 0),
        minval=0,
        maxval=height - image_size + 1,
        dtype=tf.int32,
        alg=RNG_ALGORITHM,
    )
    left = tf.random.stateless_uniform(
        [],
        _fold(seed, 1),
        minval=0,
        maxval=width - image_size + 1,
        dtype=tf.int32,
        alg=RNG_ALGORITHM,
    )
    flip = tf.random.stateless_uniform([], _fold(seed, 2), alg=RNG_ALGORITHM) < 0.5
    return top, left, flip


def _maybe_flip(images: tf.Tensor, flip: tf.Tensor) -> tf.Tensor:
    return tf.cond(flip, lambda: tf.reverse(images, axis=[-2]), lambda: images)


def random_crop_and_flip(
    neutral: tf.Tensor,
    targets: tf.Tensor,
    masks: tf.Tensor | None,
    seed: tf.Tensor,
    image_size: int,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor | None]:
    """One random crop and one random horizontal flip, shared by neutral, targets and masks.

    Pure TF ops (works eagerly, in tf.function and in Dataset.map) and stateless: the same seed
    gives the same crop and flip, the one `make_dataset` reads for a sample with that seed.

    Args:
        neutral: [L, L, C] (any dtype).
        targets: [K, L, L, C].
        masks: [K, L, L, 1] or None.
        seed: Stateless seed, int32/int64 [2].
        image_size: S, side of the crop (<= L).

    Returns:
        (neutral [S, S, C], targets [K, S, S, C], masks [K, S, S, 1] or None).
    """
    neutral = tf.convert_to_tensor(neutral)
    targets = tf.convert_to_tensor(targets)
    masks = None if masks is None else tf.convert_to_tensor(masks)
    top, left, flip = crop_window(seed, tf.shape(neutral)[0], tf.shape(neutral)[1], image_size)

    def crop_and_flip(images: tf.Tensor) -> tf.Tensor:
        cropped = images[..., top : top + image_size, left : left + image_size, :]
        return tf.ensure_shape(
            _maybe_flip(cropped, flip),
            images.shape[:-3].concatenate([image_size, image_size, images.shape[-1]]),
        )

    return (
        crop_and_flip(neutral),
        crop_and_flip(targets),
        None if masks is None else crop_and_flip(masks),
    )


def _fold(seed: tf.Tensor, data) -> tf.Tensor:
    return tf.random.experimental.stateless_fold_in(
        seed, tf.cast(data, tf.int64), alg=RNG_ALGORITHM
    )


# ----------------------------------------------------------------------------- frame sources
#
# The stream reads frames with TF ops only: no tf.numpy_function / py_function, so tf.data's
# threads never need Python's lock. (With a Python callback in the map, a distributed iterator
# could deadlock: its prefetch threads wait for the GIL while the thread holding it waits for
# them, e.g. when the interpreter shuts down with elements in flight.)


class _CropReader:
    """Reads S x S crops of chosen frames of one video, as uint8 [n, S, S, C], copying only them."""

    def read(self, video: tf.Tensor, frames: tf.Tensor, top, left) -> tf.Tensor:
        raise NotImplementedError


class _TensorCropReader(_CropReader):
    """Frames held in one uint8 tensor (in-memory arrays): gathers the crop's rows."""

    def __init__(self, videos: list[np.ndarray], image_size: int):
        self.image_size = image_size
        self.side = videos[0].shape[1]
        self.channels = videos[0].shape[-1]
        counts = [len(video) for video in videos]
        self.first_frame = tf.constant(np.concatenate([[0], np.cumsum(counts)[:-1]]), tf.int64)
        # [frames * L, L, C]: one row of one frame per entry.
        rows = tf.concat([tf.constant(np.asarray(video)) for video in videos], axis=0)
        self.rows = tf.reshape(rows, [-1, self.side, self.channels])

    def read(self, video, frames, top, left):
        size = self.image_size
        frame_rows = (self.first_frame[video] + frames) * self.side + tf.cast(top, tf.int64)
        row_ids = tf.reshape(frame_rows[:, None] + tf.range(size, dtype=tf.int64)[None], [-1])
        rows = tf.gather(self.rows, row_ids)[:, left : left + size, :]
        return tf.reshape(rows, [-1, size, size, self.channels])


class _FileCropReader(_CropReader):
    """Frames in the cache's .npy files: reads the file, keeps only the crop's bytes.

    The files stay the only copy of the frames (the page cache shares them between processes),
    so data sets larger than memory train as before.
    """

    def __init__(self, videos: list[np.memmap], image_size: int):
        self.image_size = image_size
        self.side = videos[0].shape[1]
        self.channels = videos[0].shape[-1]
        self.paths = tf.constant([str(video.filename) for video in videos])
        self.offsets = tf.constant([int(video.offset) for video in videos], tf.int64)

    def read(self, video, frames, top, left):
        size, side, channels = self.image_size, self.side, self.channels
        contents = tf.io.read_file(self.paths[video])
        row_bytes = side * channels
        first_rows = (
            self.offsets[video]
            + frames * side * row_bytes
            + (tf.cast(top, tf.int64) * row_bytes + tf.cast(left, tf.int64) * channels)
        )
        positions = first_rows[:, None] + tf.range(size, dtype=tf.int64)[None] * row_bytes
        pieces = tf.strings.substr(
            contents,
            positions,
            tf.fill(tf.shape(positions), tf.constant(size * channels, tf.int64)),
        )
        return tf.reshape(tf.io.decode_raw(pieces, tf.uint8), [-1, size, size, channels])


def _is_cache_file(video: np.ndarray | None) -> bool:
    """Whether an array is a whole .npy file mapped by np.load (not a slice or a copy of one)."""
    filename = getattr(video, "filename", None)
    return (
        isinstance(video, np.memmap)
        and filename is not None
        and video.dtype == np.uint8
        and video.flags.c_contiguous
        and int(video.offset) + video.nbytes == os.path.getsize(filename)
    )


def _crop_reader(videos: list[np.ndarray], image_size: int) -> _CropReader:
    """Frames in one tensor while they fit IN_MEMORY_BYTES; larger cached sets are read as files.

    Reading from the tensor costs about 0.15 ms per 286 px sample, from the files about 2.5 ms
    (the whole .npy file is read to keep K + 1 crops; measured on 2 cores), both small next to a
    training step; the tensor costs memory.
    """
    total = sum(video.nbytes for video in videos)
    if total > IN_MEMORY_BYTES and all(_is_cache_file(video) for video in videos):
        return _FileCropReader(videos, image_size)
    return _TensorCropReader(videos, image_size)


# ----------------------------------------------------------------------------- the stream


def to_model_batch(batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """uint8 pixels and 0/255 masks -> the model's float32 [-1, 1] and {0, 1}; other keys as is.

    Runs once per batch at the end of the stream (one vectorised op per field), after the crop:
    every per-sample step before it moves uint8 crops only.
    """
    converted = dict(batch)
    converted["neutral"] = to_model_range(batch["neutral"])
    converted["targets"] = to_model_range(batch["targets"])
    for name in ("masks", "neutral_mask"):
        if name in batch:
            converted[name] = tf.cast(batch[name] > 127, tf.float32)
    return converted


def make_dataset(
    training_set: TrainingSet,
    image_size: int,
    load_size: int,
    num_targets: int,
    batch_size: int,
    seed: int,
    start_step: int = 0,
    shuffle: bool = True,
    include_masks: bool | None = None,
    part: tuple[int, int] = (0, 1),
) -> tf.data.Dataset:
    """The infinite, batched, prefetched stream of training samples.

    Sample i of step s is sample number s * batch_size + i of the stream. With `part=(p, n)`
    the dataset yields only part p of n of every global batch: samples
    s * batch_size + p * (batch_size / n) + j, j < batch_size / n (one worker's share under
    tf.distribute; the parts of a step together are exactly the undivided batch).

    Args:
        training_set: From `load_training_set` at `load_size`.
        image_size: S, the model's input side (random crop of the L x L frames).
        load_size: L; must match the training set's frames.
        num_targets: K target frames per sample, drawn with replacement from frames 1..T-1.
        batch_size: Global batch size (split across replicas by tf.distribute).
        seed: Seed of the whole stream.
        start_step: First step of the stream; resuming at step n continues the exact stream.
        shuffle: Visit videos in a per-epoch random order; False visits them in order.
        include_masks: Add the mouth masks (the local discriminator's); None: when the training
            set has them.
        part: (index, count): yield this part of every batch; batch_size must divide by count.

    Returns:
        A dataset of dicts: `neutral` [b, S, S, 3] and `targets` [b, K, S, S, 3] float32 in
        [-1, 1]; with masks, `masks` [b, K, S, S, 1] float32 in {0, 1} and the neutral
        frame's own `neutral_mask` [b, S, S, 1] (no keys without);
        `prior_intensities` [b, K] float32 Uniform(0, 1); `target_positions` [b, K] float32,
        frame index / (T - 1); `video_index` [b] int32. b = batch_size / part count.
    """
    num_videos = len(training_set.frames)
    if num_videos == 0:
        raise UserError("The training set has no videos.")
    if image_size > load_size:
        raise ValueError(f"image_size {image_size} is larger than load_size {load_size}.")
    for name, frames in zip(training_set.names, training_set.frames, strict=True):
        if tuple(frames.shape[1:]) != (load_size, load_size, 3):
            raise ValueError(
                f"Video {name} was loaded as {tuple(frames.shape[1:])}, not at load size "
                f"{load_size}; call load_training_set with load_size={load_size}."
            )
    with_masks = training_set.with_masks if include_masks is None else include_masks
    if with_masks and not training_set.with_masks:
        raise ValueError("include_masks: the training set has no masks.")
    part_index, part_count = part
    if not 0 <= part_index < part_count or batch_size % part_count:
        raise ValueError(
            f"part {part} does not divide a batch of {batch_size} (batch must divide by the count)."
        )
    part_size = batch_size // part_count

    frame_reader = _crop_reader(training_set.frames, image_size)
    mask_reader = _crop_reader(training_set.masks, image_size) if with_masks else None
    frame_counts = tf.constant(training_set.frame_counts, tf.int64)
    base_seed = tf.constant([seed & 0x7FFFFFFFFFFFFFFF, 0], tf.int64)
    permutation_seed = _fold(base_seed, _PERMUTATION_SALT)
    sample_base_seed = _fold(base_seed, _SAMPLE_SALT)

    def sample(local_index: tf.Tensor) -> dict[str, tf.Tensor]:
        step, slot = local_index // part_size, local_index % part_size
        index = step * batch_size + part_index * part_size + slot
        if shuffle:
            epoch_seed = _fold(permutation_seed, index // num_videos)
            order = tf.argsort(
                tf.random.stateless_uniform([num_videos], epoch_seed, alg=RNG_ALGORITHM)
            )
            video_index = tf.cast(order[index % num_videos], tf.int64)
        else:
            video_index = index % num_videos
        sample_seed = _fold(sample_base_seed, index)
        count = frame_counts[video_index]
        target_indices = 1 + tf.random.stateless_uniform(
            [num_targets],
            _fold(sample_seed, 0),
            minval=0,
            maxval=count - 1,
            dtype=tf.int64,
            alg=RNG_ALGORITHM,
        )
        top, left, flip = crop_window(_fold(sample_seed, 1), load_size, load_size, image_size)
        # Neutral (frame 0) and targets in one read: the same crop and flip for all of them.
        frames = frame_reader.read(video_index, tf.concat([[0], target_indices], axis=0), top, left)
        frames = tf.ensure_shape(
            _maybe_flip(frames, flip), [num_targets + 1, image_size, image_size, 3]
        )
        prior = tf.random.stateless_uniform([num_targets], _fold(sample_seed, 2), alg=RNG_ALGORITHM)
        positions = tf.cast(target_indices, tf.float32) / tf.cast(count - 1, tf.float32)
        result = {
            "neutral": frames[0],
            "targets": frames[1:],
            "prior_intensities": prior,
            "target_positions": positions,
            "video_index": tf.cast(video_index, tf.int32),
        }
        if with_masks:
            # The neutral frame's own mask first (the local D masks each frame with its own).
            masks = mask_reader.read(
                video_index, tf.concat([[0], target_indices], axis=0), top, left
            )
            masks = tf.ensure_shape(
                _maybe_flip(masks, flip), [num_targets + 1, image_size, image_size, 1]
            )
            result["neutral_mask"] = masks[0]
            result["masks"] = masks[1:]
        return result

    options = tf.data.Options()
    options.deterministic = True
    # Workers take their part of every batch by index (`part`), not by tf.distribute's sharding.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    # Per-sample work is a few small gathers: one thread per op, and a pool of its own so the
    # stream never waits on (or starves) the training step's inter-op threads.
    options.threading.max_intra_op_parallelism = 1
    options.threading.private_threadpool_size = _STREAM_THREADS
    dataset = tf.data.Dataset.counter(start=start_step * part_size, dtype=tf.int64)
    dataset = dataset.map(sample, num_parallel_calls=_STREAM_THREADS, deterministic=True)
    dataset = dataset.batch(part_size, drop_remainder=True)
    dataset = dataset.map(to_model_batch)
    return dataset.prefetch(2).with_options(options)


def describe(training_set: TrainingSet) -> str:
    """One line about a training set, for logs."""
    total = sum(training_set.frame_counts)
    masks = "with masks" if training_set.with_masks else "no masks"
    return (
        f"{len(training_set.names)} videos, {total} frames at {training_set.load_size}px, {masks}"
    )
