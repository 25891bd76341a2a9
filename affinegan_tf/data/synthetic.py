"""The built-in synthetic data set: procedurally drawn faces showing one expression per set.

Every video starts from a neutral face (intensity 0) and shows ONE expression (`smile`,
`surprise`, `close_eyes` or `puff_cheeks`) at a ground-truth intensity per frame. The intensity
drives the drawing continuously and monotonically, from the neutral face at 0 to a large, simple
change at 1, so that a model trained for a few minutes can learn it and a test can measure it.

Identities differ in skin tone, face shape, hair style and colour, eyes, brows, nose, lips, ears,
clothes, background and lighting; each video adds a pixel or two of head motion and image noise.
Faces are drawn anti-aliased at four times the requested size and shrunk with `INTER_AREA`.

Videos come in four kinds, cycled so that each has about a quarter of the set (see
`intensity_schedule`): `complete` (neutral -> apex), `incomplete` (stops short of the apex),
`periodic` (the expression comes and goes) and `shuffled` (a complete video with every frame but the
first in random order).

`write_toy_dataset` writes the authors' layout::

    out/train/img/<video>/frame_0001.jpg ...    frames (JPEG, quality 95)
    out/train/patch/<video>/frame_0001.jpg ...  mouth masks, the SAME file names as the frames
    out/test/img/<video>/frame_0001.jpg ...     held-out people; frame 1 is the neutral photo
    out/intensities.csv                         split, video, kind, frame, file, intensity
    out/README.txt

Masks are single-channel JPEGs with the frames' names. Their rectangles are snapped outwards to
JPEG's 8x8 pixel blocks, so every block is all 0 or all 255 and decodes back exactly: the masks
stay strictly binary despite the lossy format. Test videos have no masks.

Video names are `<kind>_<number>` (`complete_000`, `periodic_002`, ...), numbered on from the
training videos into the test videos so that every name is unique. In `intensities.csv`, `frame`
counts from 0 and `file` is the path relative to `out`. With `video_format="mp4"` each video is
one H.264 file, `out/{train,test}/img/<video>.mp4` (no masks), and `file` names that file.
"""

from __future__ import annotations

import csv
import functools
import math
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from affinegan_tf.errors import UserError
from affinegan_tf.files import replace_folder

EXPRESSIONS = ("smile", "surprise", "close_eyes", "puff_cheeks")
KINDS = ("complete", "incomplete", "periodic", "shuffled")
VIDEO_FORMATS = ("frames", "mp4")
MIN_SIZE = 16
MAX_SIZE = 1024
README_MARKER = "AffineGAN-TF synthetic toy data set"
CSV_COLUMNS = ("split", "video", "kind", "frame", "file", "intensity")
JPEG_QUALITY = 95
MP4_FPS = 10

# Drawing happens at SUPERSAMPLE times the output size; OpenCV's drawing functions take
# coordinates with SHIFT fractional bits, so features move smoothly by fractions of a pixel.
SUPERSAMPLE = 4
_SHIFT = 4
_ONE = 1 << _SHIFT
# Face layout in the image: the face's half-height in image heights, and its centre.
_FACE_HALF_HEIGHT = 0.33
_FACE_CENTRE = (0.5, 0.5)
# Masks are snapped to JPEG's 8x8 blocks so they decode back exactly binary.
_MASK_BLOCK = 8

_SKIN_TONES = np.array(
    [
        (255, 226, 204),
        (243, 200, 170),
        (226, 176, 136),
        (200, 140, 100),
        (164, 108, 74),
        (120, 78, 52),
        (84, 56, 40),
    ],
    dtype=np.float64,
)
_HAIR_COLOURS = (
    (22, 20, 20),
    (58, 38, 26),
    (105, 70, 42),
    (150, 72, 34),
    (214, 178, 110),
    (168, 166, 160),
    (236, 230, 214),
    (52, 70, 150),
    (170, 60, 120),
)
_HAIR_WEIGHTS = (0.16, 0.16, 0.14, 0.1, 0.14, 0.1, 0.06, 0.07, 0.07)
_EYE_COLOURS = ((70, 44, 28), (40, 28, 22), (70, 120, 170), (80, 120, 70), (120, 96, 50))
HAIR_STYLES = ("bald", "buzz", "short", "side_part", "fringe", "long", "curly", "bun")
_TEETH = (238, 236, 226)
_MOUTH_INSIDE = (64, 16, 22)
_EYE_WHITE = (246, 246, 242)
_DARK = (30, 22, 22)


@dataclass(frozen=True)
class Identity:
    """The look of one synthetic person: everything that stays fixed over their videos.

    Lengths are in face units: the face's half-height is 1. Colours are RGB in 0..255.
    """

    skin: tuple[float, float, float]
    lips: tuple[float, float, float]
    hair: tuple[float, float, float]
    brows: tuple[float, float, float]
    iris: tuple[float, float, float]
    shirt: tuple[float, float, float]
    background_top: tuple[float, float, float]
    background_bottom: tuple[float, float, float]
    hair_style: str
    head_scale: float
    face_width: float
    chin_shape: float
    eye_spacing: float
    eye_width: float
    eye_height: float
    eye_tilt: float
    brow_thickness: float
    brow_arch: float
    brow_height: float
    nose_width: float
    nose_length: float
    mouth_width: float
    lip_thickness: float
    blush: float
    ear_size: float
    hairline: float
    mole: tuple[float, float] | None
    background_angle: float
    light_angle: float
    light_strength: float
    noise: float


def _rgb(values) -> tuple[float, float, float]:
    return tuple(float(min(max(value, 0.0), 255.0)) for value in values)


def _mix(first, second, amount: float) -> tuple[float, float, float]:
    first, second = np.asarray(first, np.float64), np.asarray(second, np.float64)
    return _rgb(first + (second - first) * amount)


def _scaled(colour, factor: float) -> tuple[float, float, float]:
    return _rgb(np.asarray(colour, np.float64) * factor)


def _random_colour(rng: np.random.Generator, saturation, value) -> tuple[float, float, float]:
    hsv = np.array(
        [[[rng.uniform(0, 180), rng.uniform(*saturation) * 255, rng.uniform(*value) * 255]]]
    )
    return _rgb(cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0])


def random_identity(rng: np.random.Generator) -> Identity:
    """Draws a random person.

    Args:
        rng: The random generator to draw from (e.g. `np.random.default_rng(seed)`).

    Returns:
        A new `Identity`; the same generator state gives the same identity.
    """
    tone = rng.uniform(0, len(_SKIN_TONES) - 1)
    low = int(math.floor(tone))
    high = min(low + 1, len(_SKIN_TONES) - 1)
    skin = _SKIN_TONES[low] + (_SKIN_TONES[high] - _SKIN_TONES[low]) * (tone - low)
    skin = skin * rng.uniform(0.95, 1.05, size=3)
    lips = _mix(_scaled(skin, 0.82), (196, 84, 96), rng.uniform(0.3, 0.6))
    hair = np.asarray(_HAIR_COLOURS[rng.choice(len(_HAIR_COLOURS), p=_HAIR_WEIGHTS)])
    hair = _rgb(hair * rng.uniform(0.85, 1.15))
    brows = _scaled(hair, 0.7) if sum(hair) < 450 else _mix(hair, (90, 70, 50), 0.6)
    background_top = _random_colour(rng, (0.1, 0.75), (0.3, 0.95))
    if rng.uniform() < 0.5:
        background_bottom = _scaled(background_top, rng.uniform(0.55, 0.85))
    else:
        background_bottom = _random_colour(rng, (0.1, 0.75), (0.3, 0.95))
    mole = None
    if rng.uniform() < 0.3:
        mole = (float(rng.choice([-1, 1]) * rng.uniform(0.3, 0.5)), float(rng.uniform(0.1, 0.6)))
    return Identity(
        skin=_rgb(skin),
        lips=lips,
        hair=hair,
        brows=brows,
        iris=_rgb(np.asarray(_EYE_COLOURS[rng.integers(len(_EYE_COLOURS))])),
        shirt=_random_colour(rng, (0.2, 0.9), (0.25, 0.95)),
        background_top=background_top,
        background_bottom=background_bottom,
        hair_style=HAIR_STYLES[rng.integers(len(HAIR_STYLES))],
        head_scale=float(rng.uniform(0.9, 1.06)),
        face_width=float(rng.uniform(0.68, 0.88)),
        chin_shape=float(rng.uniform(0.75, 1.5)),
        eye_spacing=float(rng.uniform(0.3, 0.38)),
        eye_width=float(rng.uniform(0.15, 0.18)),
        eye_height=float(rng.uniform(0.075, 0.095)),
        eye_tilt=float(rng.uniform(-0.02, 0.03)),
        brow_thickness=float(rng.uniform(0.035, 0.07)),
        brow_arch=float(rng.uniform(0.0, 0.06)),
        brow_height=float(rng.uniform(0.15, 0.2)),
        nose_width=float(rng.uniform(0.08, 0.14)),
        nose_length=float(rng.uniform(0.22, 0.3)),
        mouth_width=float(rng.uniform(0.22, 0.28)),
        lip_thickness=float(rng.uniform(0.035, 0.06)),
        blush=float(rng.uniform(0.0, 0.2)),
        ear_size=float(rng.uniform(0.85, 1.15)),
        hairline=float(rng.uniform(-0.8, -0.68)),
        mole=mole,
        background_angle=float(rng.uniform(0, 2 * math.pi)),
        light_angle=float(rng.uniform(0, 2 * math.pi)),
        light_strength=float(rng.uniform(0.0, 0.22)),
        noise=float(rng.uniform(1.5, 3.5)),
    )


# ----------------------------------------------------------------------------- intensities


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


# ----------------------------------------------------------------------------- drawing


class _Painter:
    """Draws in face units on a supersampled RGB canvas (the face's half-height is 1)."""

    def __init__(self, canvas: np.ndarray, centre: tuple[float, float], unit: float):
        self.canvas = canvas
        self.centre = np.asarray(centre, np.float64)
        self.unit = unit

    def pixels(self, points) -> np.ndarray:
        """Face units -> fixed-point canvas pixels, shaped for OpenCV."""
        points = np.asarray(points, np.float64).reshape(-1, 2)
        return np.round((self.centre + points * self.unit) * _ONE).astype(np.int32)

    def polygon(self, points, colour) -> None:
        cv2.fillPoly(self.canvas, [self.pixels(points)], colour, cv2.LINE_AA, _SHIFT)

    def line(self, points, colour, thickness: float) -> None:
        width = max(1, round(thickness * self.unit))
        cv2.polylines(self.canvas, [self.pixels(points)], False, colour, width, cv2.LINE_AA, _SHIFT)

    def ellipse(self, centre, axes, colour, angle: float = 0.0) -> None:
        (x, y), (width, height) = self.pixels(centre)[0], np.asarray(axes) * self.unit
        axes_px = (max(1, round(width * _ONE)), max(1, round(height * _ONE)))
        cv2.ellipse(self.canvas, (x, y), axes_px, angle, 0, 360, colour, -1, cv2.LINE_AA, _SHIFT)


def _curve(half_width: float, centre_x: float, corner_y: float, middle_y: float, power: float):
    """Points of a symmetric arc from (-w, corner) through (0, middle) to (w, corner)."""
    xs = np.linspace(-1.0, 1.0, 25)
    bulge = np.clip(1.0 - xs**2, 0.0, 1.0) ** power
    return np.stack([centre_x + xs * half_width, corner_y + (middle_y - corner_y) * bulge], axis=1)


@dataclass(frozen=True)
class _Pose:
    """Everything the expression changes, derived from the identity and the intensity."""

    mouth_width: float
    mouth_y: float
    corner_lift: float
    upper_open: float
    lower_open: float
    mouth_power: float
    teeth: float
    lip_scale: float
    eye_open_up: float
    eye_open_down: float
    eye_width: float
    eye_closure: float
    brow_raise: float
    brow_arch: float
    cheek_lift: float
    cheek_glow: float
    folds: float
    cheek_bulge: float
    chin_drop: float
    wrinkles: float


def _pose(identity: Identity, intensity: float, expression: str) -> _Pose:
    a = float(intensity)
    width, eye_up, eye_down = identity.mouth_width, identity.eye_height, identity.eye_height * 0.8
    neutral = {
        "mouth_width": width,
        "mouth_y": 0.5,
        "corner_lift": 0.0,
        "upper_open": 0.0,
        "lower_open": 0.0,
        "mouth_power": 1.0,
        "teeth": 0.0,
        "lip_scale": 1.0,
        "eye_open_up": eye_up,
        "eye_open_down": eye_down,
        "eye_width": identity.eye_width,
        "eye_closure": 0.0,
        "brow_raise": 0.0,
        "brow_arch": identity.brow_arch,
        "cheek_lift": 0.0,
        "cheek_glow": 0.0,
        "folds": 0.0,
        "cheek_bulge": 0.0,
        "chin_drop": 0.0,
        "wrinkles": 0.0,
    }
    if expression == "smile":
        neutral.update(
            mouth_width=width * (1 + 0.45 * a),
            corner_lift=0.16 * a,
            upper_open=-0.03 * a,
            lower_open=0.32 * a,
            mouth_power=0.85,
            teeth=0.11 * a,
            lip_scale=1 - 0.45 * a,
            eye_open_down=eye_down * (1 - 0.55 * a),
            eye_open_up=eye_up * (1 - 0.15 * a),
            cheek_lift=0.1 * a,
            cheek_glow=0.45 * a,
            folds=a,
            chin_drop=0.05 * a,
        )
    elif expression == "surprise":
        neutral.update(
            mouth_width=width * (1 - 0.3 * a),
            upper_open=0.1 * a,
            lower_open=0.3 * a,
            mouth_power=0.5,
            lip_scale=1 - 0.2 * a,
            eye_open_up=eye_up * (1 + 0.9 * a),
            eye_open_down=eye_down * (1 + 0.45 * a),
            eye_width=identity.eye_width * (1 + 0.1 * a),
            brow_raise=0.15 * a,
            brow_arch=identity.brow_arch + 0.06 * a,
            chin_drop=0.1 * a,
            wrinkles=a,
        )
    elif expression == "close_eyes":
        neutral.update(
            # At 1 the upper lid lies on the (slightly raised) lower one: a closed, curved line.
            # The lid moves as a**1.4: covering the iris changes the image most, so the lid
            # slows down early and the visible change grows more evenly with the intensity.
            eye_open_down=eye_down * (1 - 0.3 * a),
            eye_open_up=eye_up - (eye_up + eye_down * (1 - 0.3 * a)) * max(a, 0.0) ** 1.4,
            eye_closure=a,
            brow_raise=-0.03 * a,
            cheek_lift=0.02 * a,
        )
    elif expression == "puff_cheeks":
        neutral.update(
            mouth_width=width * (1 - 0.35 * a),
            lip_scale=1 - 0.3 * a,
            eye_open_down=eye_down * (1 - 0.3 * a),
            cheek_glow=0.35 * a,
            cheek_bulge=0.2 * a,
            cheek_lift=-0.04 * a,
        )
    else:
        raise ValueError(f"expression must be one of {', '.join(EXPRESSIONS)}, got {expression!r}")
    return _Pose(**neutral)


def _face_outline(identity: Identity, pose: _Pose) -> np.ndarray:
    """The face contour (x, y) in face units, clockwise from the top."""
    angles = np.linspace(0.0, math.pi, 48)
    sines = np.sin(angles)
    lower = angles > math.pi / 2
    heights = np.where(lower, 1.0 + pose.chin_drop, 0.95)
    half_widths = identity.face_width * np.where(lower, sines**identity.chin_shape, sines)
    ys = -np.cos(angles) * heights
    # Puffed cheeks push the contour out around the cheekbones.
    half_widths = half_widths + pose.cheek_bulge * np.exp(-(((ys - 0.3) / 0.25) ** 2))
    right = np.stack([half_widths, ys], axis=1)
    left = right[::-1] * np.array([-1.0, 1.0])
    return np.concatenate([right, left[1:-1]])


def _hair_cap(identity: Identity, dip: float, tilt: float, wave: float) -> np.ndarray:
    """The hair on top of the head: between the skull outline and a hairline."""
    half_width = identity.face_width * 1.06
    xs = np.linspace(-1.0, 1.0, 41)
    skull = -0.05 - 1.02 * np.sqrt(np.clip(1 - xs**2, 0.0, 1.0))
    hairline = identity.hairline + dip * xs**2 + tilt * xs + wave * np.abs(np.sin(xs * 9.0))
    # Only where there is hair: a sliver of zero width would still leave an anti-aliased line.
    keep = hairline > skull + 0.01
    top = np.stack([xs * half_width, skull], axis=1)[keep]
    bottom = np.stack([xs * half_width, hairline], axis=1)[keep][::-1]
    return np.concatenate([top, bottom])


def _draw_back(painter: _Painter, identity: Identity) -> None:
    """Everything behind the face: long hair, shirt, neck and ears."""
    width, skin = identity.face_width, identity.skin
    if identity.hair_style == "long":
        painter.ellipse((0.0, -0.15), (width * 1.3, 1.12), identity.hair)
        painter.polygon(
            [(-width * 1.3, -0.15), (width * 1.3, -0.15), (width * 1.2, 1.1), (-width * 1.2, 1.1)],
            identity.hair,
        )
    elif identity.hair_style == "curly":
        for index in range(13):
            angle = math.pi * (0.92 + index / 12 * 1.16)
            centre = (math.cos(angle) * width * 1.1, -0.1 + math.sin(angle) * 1.0)
            painter.ellipse(centre, (0.26, 0.26), identity.hair)
    elif identity.hair_style == "bun":
        painter.ellipse((0.0, -1.12), (0.3, 0.26), identity.hair)
    painter.ellipse((0.0, 1.95), (1.75, 0.72), identity.shirt)
    painter.polygon(
        [(-width * 0.42, 0.4), (width * 0.42, 0.4), (width * 0.46, 1.4), (-width * 0.46, 1.4)],
        _scaled(skin, 0.8),
    )
    painter.polygon([(-0.32, 1.23), (0.32, 1.23), (0.0, 1.55)], _scaled(skin, 0.8))
    if identity.hair_style != "long":
        for side in (-1, 1):
            axes = (0.11 * identity.ear_size, 0.2 * identity.ear_size)
            painter.ellipse((side * width * 0.98, -0.02), axes, _scaled(skin, 0.9))


def _draw_front_hair(painter: _Painter, identity: Identity) -> None:
    style = identity.hair_style
    if style == "bald":
        return
    if style == "buzz":
        painter.polygon(_hair_cap(identity, 0.3, 0.0, 0.0), _mix(identity.skin, identity.hair, 0.6))
    elif style == "side_part":
        painter.polygon(_hair_cap(identity, 0.35, 0.12, 0.0), identity.hair)
    elif style == "fringe":
        painter.polygon(_hair_cap(identity, 0.25, 0.0, 0.04), identity.hair)
    else:
        painter.polygon(_hair_cap(identity, 0.4, 0.0, 0.0), identity.hair)


def _eye_lid(identity: Identity, width: float, side: int, opening: float) -> np.ndarray:
    """One lid edge of an eye: `opening` above (positive) or below (negative) the eye's axis."""
    centre_x, centre_y = side * identity.eye_spacing, -0.12
    edge = _curve(width, centre_x, centre_y, centre_y - opening, 0.6)
    # The outer corner sits a little higher (or lower) than the inner one.
    edge[:, 1] -= (edge[:, 0] - centre_x) * side * identity.eye_tilt / width
    return edge


def _draw_eye(painter: _Painter, identity: Identity, pose: _Pose, side: int) -> None:
    centre_x, centre_y, width = side * identity.eye_spacing, -0.12, pose.eye_width
    lower = _eye_lid(identity, width, side, -pose.eye_open_down)
    upper = _eye_lid(identity, width, side, pose.eye_open_up)
    upper[:, 1] = np.minimum(upper[:, 1], lower[:, 1])
    painter.polygon(np.concatenate([upper, lower[::-1]]), _EYE_WHITE)
    iris = 0.056
    painter.ellipse((centre_x, centre_y + 0.005), (iris, iris), identity.iris)
    painter.ellipse((centre_x, centre_y + 0.005), (iris * 0.45, iris * 0.45), _DARK)
    # Skin over whatever of the iris lies outside the opening.
    reach = max(pose.eye_open_up, pose.eye_open_down, iris) + 0.03
    far = [(centre_x + width, centre_y - reach), (centre_x - width, centre_y - reach)]
    painter.polygon(np.concatenate([upper, far]), identity.skin)
    far = [(centre_x + width, centre_y + reach), (centre_x - width, centre_y + reach)]
    painter.polygon(np.concatenate([lower, far]), identity.skin)
    if pose.eye_closure > 0:
        # The closing lid: a darker fold where the open eye was.
        neutral_upper = _eye_lid(identity, width, side, identity.eye_height)
        lid = _mix(identity.skin, _scaled(identity.skin, 0.8), pose.eye_closure)
        painter.polygon(np.concatenate([neutral_upper, upper[::-1]]), lid)
    painter.line(upper, _DARK, 0.035 + 0.03 * pose.eye_closure)
    painter.line(lower, _scaled(identity.skin, 0.75), 0.015)


def _draw_brows(painter: _Painter, identity: Identity, pose: _Pose) -> None:
    for side in (-1, 1):
        xs = np.linspace(0.0, 1.0, 12)
        inner = identity.eye_spacing - identity.eye_width * 1.0
        outer = identity.eye_spacing + identity.eye_width * 1.25
        base_y = -0.12 - identity.brow_height - pose.brow_raise
        centre_x = side * (inner + (outer - inner) * xs)
        centre_y = base_y - pose.brow_arch * np.sin(xs * math.pi) + 0.03 * xs
        thickness = identity.brow_thickness * (1.0 - 0.45 * xs)
        top = np.stack([centre_x, centre_y - thickness / 2], axis=1)
        bottom = np.stack([centre_x, centre_y + thickness / 2], axis=1)[::-1]
        painter.polygon(np.concatenate([top, bottom]), identity.brows)


def _draw_nose(painter: _Painter, identity: Identity) -> None:
    shade = _scaled(identity.skin, 0.72)
    width, tip = identity.nose_width, 0.02 + identity.nose_length
    painter.line([(0.03, -0.05), (0.05, tip - 0.1), (width * 0.6, tip - 0.02)], shade, 0.02)
    painter.line(_curve(width, 0.0, tip - 0.02, tip + 0.04, 0.7), shade, 0.028)
    for side in (-1, 1):
        painter.ellipse((side * width * 0.45, tip + 0.01), (0.028, 0.016), _scaled(shade, 0.7))


def _draw_cheeks(painter: _Painter, identity: Identity, pose: _Pose) -> None:
    width = identity.face_width
    glow = min(1.0, identity.blush + pose.cheek_glow)
    if pose.cheek_bulge > 0:
        for side in (-1, 1):
            centre = (side * (width * 0.62 + pose.cheek_bulge * 0.5), 0.3)
            shade = _scaled(identity.skin, 1.0 - 0.4 * pose.cheek_bulge)
            painter.ellipse(
                (centre[0] + side * 0.02, centre[1] + 0.06), (0.2 + pose.cheek_bulge, 0.22), shade
            )
            highlight = _mix(identity.skin, (255, 236, 224), pose.cheek_bulge * 1.5)
            painter.ellipse(centre, (0.16 + 0.6 * pose.cheek_bulge, 0.18), highlight)
    if glow > 0:
        rosy = _mix(identity.skin, (236, 110, 110), 0.5 * glow)
        for side in (-1, 1):
            centre = (side * width * 0.55, 0.24 - pose.cheek_lift)
            painter.ellipse(centre, (0.14, 0.09), rosy)
    if pose.folds > 0:
        fold = _mix(identity.skin, _scaled(identity.skin, 0.68), pose.folds)
        corner_y = pose.mouth_y - pose.corner_lift
        for side in (-1, 1):
            start = np.array([side * (identity.nose_width + 0.05), identity.nose_length])
            end = np.array([side * (pose.mouth_width + 0.05), corner_y + 0.06])
            control = np.array([side * (pose.mouth_width + 0.12), (start[1] + end[1]) / 2])
            steps = np.linspace(0.0, 1.0, 12)[:, np.newaxis]
            points = (1 - steps) ** 2 * start + 2 * steps * (1 - steps) * control + steps**2 * end
            painter.line(points, fold, 0.03)


def _mouth_curves(pose: _Pose) -> tuple[np.ndarray, np.ndarray]:
    """The upper and lower edges of the mouth opening (equal while the mouth is closed)."""
    corner_y = pose.mouth_y - pose.corner_lift
    upper_power = 1.0 if pose.mouth_power >= 1.0 else 0.6
    upper = _curve(pose.mouth_width, 0.0, corner_y, pose.mouth_y - pose.upper_open, upper_power)
    lower_y = pose.mouth_y + pose.lower_open
    lower = _curve(pose.mouth_width, 0.0, corner_y, lower_y, pose.mouth_power)
    return upper, lower


def _draw_mouth(painter: _Painter, identity: Identity, pose: _Pose) -> None:
    upper, lower = _mouth_curves(pose)
    lips = identity.lip_thickness * pose.lip_scale
    bulge = np.clip(1.0 - (upper[:, 0] / pose.mouth_width) ** 2, 0.0, 1.0) ** 0.6
    upper_lip = upper.copy()
    upper_lip[:, 1] -= lips * 0.8 * bulge + 0.006
    lower_lip = lower.copy()
    lower_lip[:, 1] += lips * 1.15 * bulge + 0.006
    painter.polygon(np.concatenate([upper_lip, lower_lip[::-1]]), identity.lips)
    gap = lower[:, 1] - upper[:, 1]
    if gap.max() > 0.004:
        painter.polygon(np.concatenate([upper, lower[::-1]]), _MOUTH_INSIDE)
        if pose.teeth > 0:
            teeth = upper.copy()
            teeth[:, 1] = np.minimum(upper[:, 1] + pose.teeth, lower[:, 1])
            inner = np.abs(upper[:, 0]) < pose.mouth_width * 0.86
            painter.polygon(np.concatenate([upper[inner], teeth[inner][::-1]]), _TEETH)
    painter.line(upper, _scaled(identity.lips, 0.45), 0.02)


def _draw_wrinkles(painter: _Painter, identity: Identity, pose: _Pose) -> None:
    if pose.wrinkles <= 0:
        return
    shade = _mix(identity.skin, _scaled(identity.skin, 0.72), pose.wrinkles)
    for offset in (0.0, 0.09):
        y = -0.12 - identity.brow_height - 0.17 - offset
        painter.line(_curve(0.22, 0.0, y + 0.02, y, 1.0), shade, 0.02)


def _mouth_box(identity: Identity, pose: _Pose) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) of the mouth with its lips, in face units."""
    upper, lower = _mouth_curves(pose)
    lips = identity.lip_thickness * pose.lip_scale
    top = min(upper[:, 1].min() - lips, pose.mouth_y - pose.corner_lift)
    bottom = lower[:, 1].max() + lips * 1.2
    return -pose.mouth_width, top, pose.mouth_width, bottom


@functools.lru_cache(maxsize=16)
def _background(identity: Identity, size: int) -> np.ndarray:
    """The background gradient at the drawing resolution (read-only; copy before drawing)."""
    coordinates = np.linspace(-1.0, 1.0, size)
    direction = (math.cos(identity.background_angle), math.sin(identity.background_angle))
    amount = coordinates[np.newaxis, :] * direction[0] + coordinates[:, np.newaxis] * direction[1]
    amount = np.clip(amount / math.sqrt(2) * 0.5 + 0.5, 0.0, 1.0)[..., np.newaxis]
    top = np.asarray(identity.background_top, np.float32)
    bottom = np.asarray(identity.background_bottom, np.float32)
    image = np.round(top + (bottom - top) * amount).astype(np.uint8)
    image.setflags(write=False)
    return image


@functools.lru_cache(maxsize=16)
def _lighting(identity: Identity, size: int) -> np.ndarray:
    coordinates = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    direction = (math.cos(identity.light_angle), math.sin(identity.light_angle))
    gradient = coordinates[np.newaxis, :] * direction[0] + coordinates[:, np.newaxis] * direction[1]
    factor = (1.0 + identity.light_strength * gradient / math.sqrt(2))[..., np.newaxis]
    factor.setflags(write=False)
    return factor


def _check_expression(expression: str) -> None:
    if expression not in EXPRESSIONS:
        raise UserError(
            f"Unknown expression {expression!r}: choose one of {', '.join(EXPRESSIONS)}."
        )


def _check_size(size: int) -> None:
    if not isinstance(size, (int, np.integer)) or not MIN_SIZE <= size <= MAX_SIZE:
        raise UserError(f"Image size must be an integer from {MIN_SIZE} to {MAX_SIZE}, got {size}.")


def _face_geometry(size: int, head_offset, head_scale: float, identity: Identity):
    drawing_size = size * SUPERSAMPLE
    centre = (
        (_FACE_CENTRE[0] * size + head_offset[0]) * SUPERSAMPLE,
        (_FACE_CENTRE[1] * size + head_offset[1]) * SUPERSAMPLE,
    )
    unit = _FACE_HALF_HEIGHT * drawing_size * identity.head_scale * head_scale
    return centre, unit


def render_face(
    identity: Identity,
    intensity: float,
    expression: str,
    size: int,
    head_offset: tuple[float, float] = (0.0, 0.0),
    rng: np.random.Generator | None = None,
    head_scale: float = 1.0,
) -> np.ndarray:
    """Draws one face at one expression intensity.

    Args:
        identity: Who to draw (see `random_identity`).
        intensity: Expression intensity; 0 is the neutral face, 1 the apex. Values outside [0, 1]
            extrapolate the geometry and are allowed, but only [0, 1] is meant to look natural.
        expression: One of `EXPRESSIONS`.
        size: Side of the square image in pixels (16 to 1024).
        head_offset: (dx, dy) shift of the head in output pixels (small head motion).
        rng: Generator for the image noise; None draws a noise-free image.
        head_scale: Extra scale of the head (e.g. 0.99..1.01 for motion towards the camera).

    Returns:
        uint8 [size, size, 3] RGB image.
    """
    _check_expression(expression)
    _check_size(size)
    pose = _pose(identity, intensity, expression)
    drawing_size = size * SUPERSAMPLE
    canvas = _background(identity, drawing_size).copy()
    centre, unit = _face_geometry(size, head_offset, head_scale, identity)
    painter = _Painter(canvas, centre, unit)
    _draw_back(painter, identity)
    painter.polygon(_face_outline(identity, pose), identity.skin)
    _draw_cheeks(painter, identity, pose)
    _draw_wrinkles(painter, identity, pose)
    for side in (-1, 1):
        _draw_eye(painter, identity, pose, side)
    _draw_brows(painter, identity, pose)
    _draw_nose(painter, identity)
    _draw_mouth(painter, identity, pose)
    if identity.mole is not None:
        painter.ellipse(identity.mole, (0.022, 0.022), _scaled(identity.skin, 0.45))
    _draw_front_hair(painter, identity)
    image = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    image *= _lighting(identity, size)
    if rng is not None:
        image += rng.standard_normal(image.shape, dtype=np.float32) * identity.noise
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def mouth_mask(
    identity: Identity,
    intensity: float,
    expression: str,
    size: int,
    head_offset: tuple[float, float] = (0.0, 0.0),
    head_scale: float = 1.0,
    margin: float = 0.1,
) -> np.ndarray:
    """The binary mouth mask of the face `render_face` draws with the same arguments.

    The mouth's box (lips included) grows by `margin` face units on every side and then outwards
    to whole 8x8 pixel blocks, so the mask survives JPEG compression exactly.

    Returns:
        uint8 [size, size] with values 0 and 255.
    """
    _check_expression(expression)
    _check_size(size)
    pose = _pose(identity, intensity, expression)
    centre, unit = _face_geometry(size, head_offset, head_scale, identity)
    left, top, right, bottom = _mouth_box(identity, pose)
    corners = np.array([[left - margin, top - margin], [right + margin, bottom + margin]])
    pixels = (np.asarray(centre) + corners * unit) / SUPERSAMPLE
    x0, y0 = (np.floor(pixels[0] / _MASK_BLOCK) * _MASK_BLOCK).astype(int)
    x1, y1 = (np.ceil(pixels[1] / _MASK_BLOCK) * _MASK_BLOCK).astype(int)
    mask = np.zeros((size, size), np.uint8)
    mask[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = 255
    return mask


# ----------------------------------------------------------------------------- videos


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


def _write_image(path: Path, image: np.ndarray) -> None:
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise OSError(f"could not encode {path}")
    path.write_bytes(encoded.tobytes())


def _write_mp4(path: Path, frames: np.ndarray) -> None:
    """H.264 with imageio-ffmpeg's own ffmpeg; OpenCV's mp4v when that is unavailable."""
    try:
        import imageio_ffmpeg

        executable = imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        executable = None
    height, width = frames.shape[1:3]
    if executable is not None:
        command = [
            executable, "-y", "-loglevel", "error",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
            "-r", str(MP4_FPS), "-i", "-",
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "16", "-pix_fmt", "yuv420p",
            "-threads", "1", "-fflags", "+bitexact", "-flags:v", "+bitexact",
            "-map_metadata", "-1", "-movflags", "+faststart", str(path),
        ]  # fmt: skip
        result = subprocess.run(
            command, input=np.ascontiguousarray(frames).tobytes(), capture_output=True
        )
        if result.returncode == 0:
            return
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), MP4_FPS, (width, height))
    if not writer.isOpened():
        raise UserError(f"Cannot write {path}: neither ffmpeg nor OpenCV can encode mp4 here.")
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def _readme_text(expression: str, size: int, seed: int, video_format: str) -> str:
    if video_format == "mp4":
        files = (
            "train/img holds the training videos as H.264 mp4 files (no mouth masks), test/img "
            "videos of other people whose first frame is the neutral photo to generate from."
        )
    else:
        files = (
            "train/img holds the training videos as folders of JPEG frames, train/patch one mouth "
            "mask per frame under the frame's own file name (binary JPEGs, exact because the boxes "
            "follow JPEG's 8x8 blocks), test/img videos of other people whose first frame is the "
            "neutral photo to generate from."
        )
    return (
        f"{README_MARKER} ({expression}, {size}x{size}, {video_format}, seed {seed}), written "
        "by `affinegan-tf make-toy-data`. Procedurally drawn faces, one person per video, each "
        f"video starting from the neutral face and showing the {expression} expression at a "
        f"known intensity per frame (0 = neutral, 1 = apex). {files} Video names give the "
        "sequence kind: complete (neutral to apex), incomplete (stops short of the apex), "
        "periodic (the expression comes and goes) and shuffled (frames after the first out of "
        "order). intensities.csv has the true intensity of every frame (split, video, kind, "
        "frame index from 0, file relative to this folder, intensity). Running make-toy-data "
        "again on this folder replaces it.\n"
    )


def _is_toy_dataset(path: Path) -> bool:
    readme = path / "README.txt"
    try:
        return readme.is_file() and readme.read_text(errors="replace").startswith(README_MARKER)
    except OSError:
        return False


def _check_destination(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file: give --out a folder (new, empty or a previous toy set).")
    if out.is_dir() and any(out.iterdir()) and not _is_toy_dataset(out):
        raise UserError(
            f"{out} is not empty and is not a toy data set written by make-toy-data; refusing "
            "to overwrite it. Choose a new or empty folder."
        )


def write_toy_dataset(
    out: str | Path,
    num_videos: int = 32,
    size: int = 64,
    expression: str = "smile",
    video_format: str = "frames",
    seed: int = 0,
    frames_per_video: int = 16,
    test_videos: int | None = None,
) -> dict:
    """Writes the synthetic data set in the authors' layout (see the module docstring).

    The set is built in a temporary folder beside `out` and renamed into place, so `out` is
    either the complete new set or left as it was. An existing `out` may be empty or a previous
    toy set (which is replaced); anything else is refused.

    Args:
        out: Destination folder.
        num_videos: Training videos (people); kinds cycle complete, incomplete, periodic, shuffled.
        size: Frame side in pixels (16 to 1024).
        expression: One of `EXPRESSIONS`.
        video_format: `frames` (JPEG frame folders plus mouth masks) or `mp4` (one H.264 file per
            video, no masks).
        seed: Seed of everything random; the same arguments give byte-identical files.
        frames_per_video: Frames in every video, at least 4 (so every kind shows its shape).
        test_videos: Held-out videos of other people; default max(4, num_videos // 4).

    Returns:
        A summary: `out`, `videos` (training videos), `frames` (training frames), `size`,
        `expression`, `format`, `test_videos`.

    Raises:
        UserError: A bad argument, or `out` exists and is not empty nor a previous toy set.
    """
    out = Path(out)
    _check_expression(expression)
    _check_size(size)
    if video_format not in VIDEO_FORMATS:
        choices = ", ".join(VIDEO_FORMATS)
        raise UserError(f"Unknown format {video_format!r}: choose one of {choices}.")
    if video_format == "mp4" and size % 2:
        raise UserError(f"mp4 (H.264, 4:2:0) needs an even frame size, got {size}.")
    if num_videos < 1:
        raise UserError(f"The toy set needs at least 1 training video, got {num_videos}.")
    if frames_per_video < 4:
        raise UserError(f"Videos need at least 4 frames, got frames_per_video={frames_per_video}.")
    test_videos = max(4, num_videos // 4) if test_videos is None else test_videos
    if test_videos < 0:
        raise UserError(f"test_videos cannot be negative, got {test_videos}.")
    _check_destination(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    try:
        total = num_videos + test_videos
        jobs = [("train", index, index) for index in range(num_videos)]
        jobs += [("test", index, num_videos + index) for index in range(test_videos)]

        def draw_and_write(job: tuple[str, int, int]) -> tuple[str, ToyVideo, list[str]]:
            split, index, number = job
            name = video_name(KINDS[index % len(KINDS)], number, total)
            video = make_video(seed, split, index, expression, size, frames_per_video, name)
            return split, video, _write_video(building, split, video, video_format)

        # Videos are independent (each has its own seeded generator), so threads (OpenCV, NumPy
        # and ffmpeg release the GIL) change the speed, never the bytes.
        rows, train_frames = [], 0
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as executor:
            for split, video, files in executor.map(draw_and_write, jobs):
                if split == "train":
                    train_frames += len(video.frames)
                truth = zip(files, video.intensities, strict=True)
                for frame_index, (file, intensity) in enumerate(truth):
                    rows.append(
                        (split, video.name, video.kind, frame_index, file, f"{intensity:.6f}")
                    )
        with open(building / "intensities.csv", "w", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(CSV_COLUMNS)
            writer.writerows(rows)
        (building / "README.txt").write_text(_readme_text(expression, size, seed, video_format))
        _replace(building, out)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return {
        "out": str(out),
        "videos": num_videos,
        "frames": train_frames,
        "size": size,
        "expression": expression,
        "format": video_format,
        "test_videos": test_videos,
    }


def _write_video(root: Path, split: str, video: ToyVideo, video_format: str) -> list[str]:
    """Writes one video's files; returns their paths relative to `root`, one per frame."""
    image_dir = root / split / "img"
    if video_format == "mp4":
        image_dir.mkdir(parents=True, exist_ok=True)
        _write_mp4(image_dir / f"{video.name}.mp4", video.frames)
        return [f"{split}/img/{video.name}.mp4"] * len(video.frames)
    frame_dir = image_dir / video.name
    frame_dir.mkdir(parents=True)
    mask_dir = root / split / "patch" / video.name
    if split == "train":
        mask_dir.mkdir(parents=True)
    files = []
    for frame_index, (frame, mask) in enumerate(zip(video.frames, video.masks, strict=True)):
        name = f"frame_{frame_index + 1:04d}.jpg"
        _write_image(frame_dir / name, frame)
        if split == "train":
            _write_image(mask_dir / name, mask)
        files.append(f"{split}/img/{video.name}/{name}")
    return files


def _replace(building: Path, out: Path) -> None:
    """Moves the finished set into place: `out` is the old set or the new one, never half."""
    if out.exists():
        _check_destination(out)
    replace_folder(building, out)
