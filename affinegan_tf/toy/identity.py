"""Synthetic people: the look that stays fixed over one person's videos, drawn at random."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

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


def rgb(values) -> tuple[float, float, float]:
    return tuple(float(min(max(value, 0.0), 255.0)) for value in values)


def mix(first, second, amount: float) -> tuple[float, float, float]:
    first, second = np.asarray(first, np.float64), np.asarray(second, np.float64)
    return rgb(first + (second - first) * amount)


def scaled(colour, factor: float) -> tuple[float, float, float]:
    return rgb(np.asarray(colour, np.float64) * factor)


def _random_colour(rng: np.random.Generator, saturation, value) -> tuple[float, float, float]:
    hsv = np.array(
        [[[rng.uniform(0, 180), rng.uniform(*saturation) * 255, rng.uniform(*value) * 255]]]
    )
    return rgb(cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0])


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
    lips = mix(scaled(skin, 0.82), (196, 84, 96), rng.uniform(0.3, 0.6))
    hair = np.asarray(_HAIR_COLOURS[rng.choice(len(_HAIR_COLOURS), p=_HAIR_WEIGHTS)])
    hair = rgb(hair * rng.uniform(0.85, 1.15))
    brows = scaled(hair, 0.7) if sum(hair) < 450 else mix(hair, (90, 70, 50), 0.6)
    background_top = _random_colour(rng, (0.1, 0.75), (0.3, 0.95))
    if rng.uniform() < 0.5:
        background_bottom = scaled(background_top, rng.uniform(0.55, 0.85))
    else:
        background_bottom = _random_colour(rng, (0.1, 0.75), (0.3, 0.95))
    mole = None
    if rng.uniform() < 0.3:
        mole = (float(rng.choice([-1, 1]) * rng.uniform(0.3, 0.5)), float(rng.uniform(0.1, 0.6)))
    return Identity(
        skin=rgb(skin),
        lips=lips,
        hair=hair,
        brows=brows,
        iris=rgb(np.asarray(_EYE_COLOURS[rng.integers(len(_EYE_COLOURS))])),
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
