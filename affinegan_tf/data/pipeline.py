"""The training stream: cached frames -> AffineGAN samples, as an infinite tf.data pipeline.

Sample number i of the stream (i = step * batch_size + j) is a pure function of (seed, i): the
video is entry i % N of a permutation seeded by (seed, i // N), and the target frames, the crop,
the flip and the prior intensities come from stateless random ops seeded by (seed, i). So the
stream is the same on every run, and a run resumed at `start_step` continues it exactly, whatever
the number of replicas or the prefetching.
"""

from __future__ import annotations

import dataclasses
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


def random_crop_and_flip(
    neutral: tf.Tensor,
    targets: tf.Tensor,
    masks: tf.Tensor | None,
    seed: tf.Tensor,
    image_size: int,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor | None]:
    """One random crop and one random horizontal flip, shared by neutral, targets and masks.

    Pure TF ops (works eagerly, in tf.function and in Dataset.map) and stateless: the same seed
    gives the same crop and flip.

    Args:
        neutral: [L, L, C] (any dtype).
        targets: [K, L, L, C].
        masks: [M, L, L, 1] (any number of masks) or None.
        seed: Stateless seed, int32/int64 [2].
        image_size: S, side of the crop (<= L).

    Returns:
        (neutral [S, S, C], targets [K, S, S, C], masks [K, S, S, 1] or None).
    """
    seed = tf.convert_to_tensor(seed)
    neutral = tf.convert_to_tensor(neutral)
    targets = tf.convert_to_tensor(targets)
    masks = None if masks is None else tf.convert_to_tensor(masks)
    height = tf.shape(neutral)[0]
    width = tf.shape(neutral)[1]
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

    def crop_and_flip(images: tf.Tensor) -> tf.Tensor:
        cropped = images[..., top : top + image_size, left : left + image_size, :]
        flipped = tf.cond(flip, lambda: tf.reverse(cropped, axis=[-2]), lambda: cropped)
        return tf.ensure_shape(
            flipped, images.shape[:-3].concatenate([image_size, image_size, images.shape[-1]])
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


# ----------------------------------------------------------------------------- the stream


def make_dataset(
    training_set: TrainingSet,
    image_size: int,
    load_size: int,
    num_targets: int,
    batch_size: int,
    seed: int,
    start_step: int = 0,
    shuffle: bool = True,
) -> tf.data.Dataset:
    """The infinite, batched, prefetched stream of training samples.

    Args:
        training_set: From `load_training_set` at `load_size`.
        image_size: S, the model's input side (random crop of the L x L frames).
        load_size: L; must match the training set's frames.
        num_targets: K target frames per sample, drawn with replacement from frames 1..T-1.
        batch_size: Global batch size (split across replicas by tf.distribute).
        seed: Seed of the whole stream.
        start_step: First step of the stream; resuming at step n continues the exact stream.
        shuffle: Visit videos in a per-epoch random order; False visits them in order.

    Returns:
        A dataset of dicts: `neutral` [B, S, S, 3] and `targets` [B, K, S, S, 3] float32 in
        [-1, 1]; `masks` [B, K, S, S, 1] float32 in {0, 1} (ones without masks) and the neutral
        frame's own `neutral_mask` [B, S, S, 1];
        `prior_intensities` [B, K] float32 Uniform(0, 1); `target_positions` [B, K] float32,
        frame index / (T - 1); `video_index` [B] int32.
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
    with_masks = training_set.with_masks
    frame_counts = tf.constant(training_set.frame_counts, tf.int64)
    base_seed = tf.constant([seed & 0x7FFFFFFFFFFFFFFF, 0], tf.int64)
    permutation_seed = _fold(base_seed, _PERMUTATION_SALT)
    sample_base_seed = _fold(base_seed, _SAMPLE_SALT)

    def read_frames(video_index: np.ndarray, frame_indices: np.ndarray):
        video_index = int(video_index)
        frames = training_set.frames[video_index]
        neutral = np.array(frames[0])
        targets = np.array(frames[frame_indices])
        if not with_masks:
            return neutral, targets
        # The neutral frame's mask first, then the targets'.
        indices = np.concatenate([[0], frame_indices])
        return neutral, targets, np.array(training_set.masks[video_index][indices])

    def sample(index: tf.Tensor) -> dict[str, tf.Tensor]:
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
        outputs = [tf.uint8, tf.uint8] + ([tf.uint8] if with_masks else [])
        loaded = tf.numpy_function(
            read_frames, [video_index, target_indices], outputs, stateful=False
        )
        neutral = tf.ensure_shape(loaded[0], [load_size, load_size, 3])
        targets = tf.ensure_shape(loaded[1], [num_targets, load_size, load_size, 3])
        masks = (
            tf.ensure_shape(loaded[2], [num_targets + 1, load_size, load_size, 1])
            if with_masks
            else None
        )
        neutral, targets, masks = random_crop_and_flip(
            neutral, targets, masks, _fold(sample_seed, 1), image_size
        )
        if masks is None:
            masks = tf.ones([num_targets + 1, image_size, image_size, 1], tf.float32)
        else:
            masks = tf.cast(masks > 127, tf.float32)
        prior = tf.random.stateless_uniform([num_targets], _fold(sample_seed, 2), alg=RNG_ALGORITHM)
        positions = tf.cast(target_indices, tf.float32) / tf.cast(count - 1, tf.float32)
        return {
            "neutral": to_model_range(neutral),
            "targets": to_model_range(targets),
            "masks": masks[1:],
            "neutral_mask": masks[0],
            "prior_intensities": prior,
            "target_positions": positions,
            "video_index": tf.cast(video_index, tf.int32),
        }

    options = tf.data.Options()
    options.deterministic = True
    # numpy_function cannot be sharded by file; each worker gets the whole stream (one worker here).
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    dataset = tf.data.Dataset.counter(start=start_step * batch_size, dtype=tf.int64)
    dataset = dataset.map(sample, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.batch(batch_size, drop_remainder=True)
    return dataset.prefetch(tf.data.AUTOTUNE).with_options(options)


def describe(training_set: TrainingSet) -> str:
    """One line about a training set, for logs."""
    total = sum(training_set.frame_counts)
    masks = "with masks" if training_set.with_masks else "no masks"
    return (
        f"{len(training_set.names)} videos, {total} frames at {training_set.load_size}px, {masks}"
    )
