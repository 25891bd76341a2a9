"""Drawing one synthetic face at one expression intensity, and its mouth mask.

The intensity drives the drawing continuously and monotonically, from the neutral face at 0 to a
large, simple change at 1. Faces are drawn anti-aliased at four times the requested size and
shrunk with `INTER_AREA`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from affinegan_tf.errors import UserError
from affinegan_tf.toy.identity import Identity, mix, scaled
from affinegan_tf.toy.names import EXPRESSIONS, check_expression

MIN_SIZE = 16
MAX_SIZE = 1024
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
_TEETH = (238, 236, 226)
_MOUTH_INSIDE = (64, 16, 22)
_EYE_WHITE = (246, 246, 242)
_DARK = (30, 22, 22)


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
        scaled(skin, 0.8),
    )
    painter.polygon([(-0.32, 1.23), (0.32, 1.23), (0.0, 1.55)], scaled(skin, 0.8))
    if identity.hair_style != "long":
        for side in (-1, 1):
            axes = (0.11 * identity.ear_size, 0.2 * identity.ear_size)
            painter.ellipse((side * width * 0.98, -0.02), axes, scaled(skin, 0.9))


def _draw_front_hair(painter: _Painter, identity: Identity) -> None:
    style = identity.hair_style
    if style == "bald":
        return
    if style == "buzz":
        painter.polygon(_hair_cap(identity, 0.3, 0.0, 0.0), mix(identity.skin, identity.hair, 0.6))
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
        lid = mix(identity.skin, scaled(identity.skin, 0.8), pose.eye_closure)
        painter.polygon(np.concatenate([neutral_upper, upper[::-1]]), lid)
    painter.line(upper, _DARK, 0.035 + 0.03 * pose.eye_closure)
    painter.line(lower, scaled(identity.skin, 0.75), 0.015)


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
    shade = scaled(identity.skin, 0.72)
    width, tip = identity.nose_width, 0.02 + identity.nose_length
    painter.line([(0.03, -0.05), (0.05, tip - 0.1), (width * 0.6, tip - 0.02)], shade, 0.02)
    painter.line(_curve(width, 0.0, tip - 0.02, tip + 0.04, 0.7), shade, 0.028)
    for side in (-1, 1):
        painter.ellipse((side * width * 0.45, tip + 0.01), (0.028, 0.016), scaled(shade, 0.7))


def _draw_cheeks(painter: _Painter, identity: Identity, pose: _Pose) -> None:
    width = identity.face_width
    glow = min(1.0, identity.blush + pose.cheek_glow)
    if pose.cheek_bulge > 0:
        for side in (-1, 1):
            centre = (side * (width * 0.62 + pose.cheek_bulge * 0.5), 0.3)
            shade = scaled(identity.skin, 1.0 - 0.4 * pose.cheek_bulge)
            painter.ellipse(
                (centre[0] + side * 0.02, centre[1] + 0.06), (0.2 + pose.cheek_bulge, 0.22), shade
            )
            highlight = mix(identity.skin, (255, 236, 224), pose.cheek_bulge * 1.5)
            painter.ellipse(centre, (0.16 + 0.6 * pose.cheek_bulge, 0.18), highlight)
    if glow > 0:
        rosy = mix(identity.skin, (236, 110, 110), 0.5 * glow)
        for side in (-1, 1):
            centre = (side * width * 0.55, 0.24 - pose.cheek_lift)
            painter.ellipse(centre, (0.14, 0.09), rosy)
    if pose.folds > 0:
        fold = mix(identity.skin, scaled(identity.skin, 0.68), pose.folds)
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
    painter.line(upper, scaled(identity.lips, 0.45), 0.02)


def _draw_wrinkles(painter: _Painter, identity: Identity, pose: _Pose) -> None:
    if pose.wrinkles <= 0:
        return
    shade = mix(identity.skin, scaled(identity.skin, 0.72), pose.wrinkles)
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


def check_size(size: int) -> None:
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
    check_expression(expression)
    check_size(size)
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
        painter.ellipse(identity.mole, (0.022, 0.022), scaled(identity.skin, 0.45))
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
    check_expression(expression)
    check_size(size)
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
