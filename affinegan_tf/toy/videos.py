"""Synthetic videos: who, which kind of sequence, the true intensity of every frame, the frames.

Videos come in four kinds, cycled so that each has about a quarter of the set (see
`intensity_schedule`): `complete` (neutral -> apex), `incomplete` (stops short of the apex),
`periodic` (the expression comes and goes) and `shuffled` (a complete video with every frame but
the first in random order). Each video adds a pixel or two of head motion and image noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from affinegan_tf.toy.drawing import mouth_mask, render_face
from affinegan_tf.toy.identity import random_identity
from affinegan_tf.toy.names import KINDS


def intensity_schedule(kind: str, num_frames: int, rng: np.random.Generator) -> np.ndarray:
    """The ground-truth intensity of every frame of one video of the given kind.

    Args:
        kind: `complete` (rises strictly from 0 to exactly 1), `incomplete` (rises strictly from 0
            to a maximum in [0.4, 0.7]), `periodic` (from 0 up to exactly 1, back down to at most
            0.15, up again to 0.75..1 and, given frames, down to 0.1..0.5), or `shuffled` (a
            complete video whose frames after the first are in random, unsorted order).
        num_frames: Frames in the video, at least 4.
        rng: The random generator to draw from.

    Returns:
        float64 [num_frames], rounded to 6 decimals; element 0 is exactly 0.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if num_frames < 4:
        raise ValueError(f"a video needs at least 4 frames to show its kind, got {num_frames}")
    if kind == "periodic":
        # Key frames: neutral -> apex (1) -> nearly neutral -> a second peak -> going down.
        last = num_frames - 1
        peak = max(1, round(last * rng.uniform(0.2, 0.3)))
        trough = min(max(peak + 1, round(last * rng.uniform(0.45, 0.55))), last - 1)
        second = min(max(trough + 1, round(last * rng.uniform(0.72, 0.85))), last)
        keys = [0, peak, trough, second, last]
        levels = [0.0, 1.0, rng.uniform(0.0, 0.15), rng.uniform(0.75, 1.0), rng.uniform(0.1, 0.5)]
        if second == last:
            keys, levels = keys[:-1], levels[:-1]
        frames = np.arange(num_frames)
        segment = np.clip(np.searchsorted(keys, frames, side="right") - 1, 0, len(keys) - 2)
        start, end = np.asarray(keys)[segment], np.asarray(keys)[segment + 1]
        progress = 0.5 - 0.5 * np.cos(math.pi * (frames - start) / (end - start))
        low, high = np.asarray(levels)[segment], np.asarray(levels)[segment + 1]
        values = low + (high - low) * progress
    else:
        steps = rng.uniform(0.4, 1.6, size=num_frames - 1)
        values = np.concatenate([[0.0], np.cumsum(steps) / steps.sum()])
        if kind == "incomplete":
            values *= rng.uniform(0.4, 0.7)
        if kind == "shuffled" and num_frames > 2:
            order = np.arange(1, num_frames)
            while np.all(np.diff(order) > 0):
                order = 1 + rng.permutation(num_frames - 1)
            values = np.concatenate([[0.0], values[order]])
    values = np.round(values, 6)
    values[0] = 0.0
    return values


@dataclass(frozen=True)
class ToyVideo:
    """One synthetic video: frames, masks and the truth behind them."""

    name: str
    kind: str
    intensities: np.ndarray
    frames: np.ndarray
    masks: np.ndarray


def video_name(kind: str, number: int, total: int) -> str:
    """`<kind>_<number>`, zero-padded to fit `total` videos (at least three digits).

    For example `periodic_002`. Numbers run on from the training videos into the test videos, so
    a name is unique in the whole data set.
    """
    return f"{kind}_{number:0{max(3, len(str(max(total - 1, 0))))}d}"


def make_video(
    seed: int,
    split: str,
    index: int,
    expression: str,
    size: int,
    num_frames: int,
    name: str | None = None,
) -> ToyVideo:
    """Draws one video; the same arguments always give the same pixels.

    Args:
        seed: Data set seed.
        split: `train` or `test` (different people for the same index).
        index: Video index in its split; its kind is `KINDS[index % 4]`.
        expression: One of `EXPRESSIONS`.
        size: Frame side in pixels.
        num_frames: Frames in the video (at least 4).
        name: The video's name; default `video_name(kind, index, index + 1)`.
    """
    split_code = {"train": 0, "test": 1}[split]
    rng = np.random.Generator(
        np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(split_code, index)))
    )
    identity = random_identity(rng)
    kind = KINDS[index % len(KINDS)]
    intensities = intensity_schedule(kind, num_frames, rng)
    # Small smooth head motion in time order (a shuffled video shuffles it with its frames).
    times = np.linspace(0.0, 1.0, num_frames)
    amplitude = rng.uniform(0.3, 1.5, size=2) * size / 64
    phase = rng.uniform(0, 2 * math.pi, size=2)
    speed = rng.uniform(0.5, 1.5, size=2)
    offsets = amplitude * np.sin(2 * math.pi * speed * times[:, np.newaxis] + phase)
    scales = 1.0 + rng.uniform(-0.015, 0.015) * np.sin(2 * math.pi * times + rng.uniform(0, 6))
    if kind == "shuffled":
        order = np.argsort(np.argsort(intensities[1:])) + 1
        offsets[1:], scales[1:] = offsets[order].copy(), scales[order].copy()
    frames, masks = [], []
    for frame_index, intensity in enumerate(intensities):
        offset = tuple(offsets[frame_index])
        frames.append(
            render_face(identity, intensity, expression, size, offset, rng, scales[frame_index])
        )
        masks.append(mouth_mask(identity, intensity, expression, size, offset, scales[frame_index]))
    name = video_name(kind, index, index + 1) if name is None else name
    return ToyVideo(name, kind, intensities, np.stack(frames), np.stack(masks))
