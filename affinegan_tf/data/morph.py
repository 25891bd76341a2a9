"""In-between frames of a photo pair by optical-flow morphing (`prepare-pairs --inbetweens`).

A photo pair gives the generator only a = 0 (neutral) and a = 1 (apex). Trained on those two
alone, it never sees a face between them, and its frames around a = 0.5 come out blurred and
doubled: a cross-fade of two mouths. Real expressions move: the mouth corners travel, the cheeks
rise. A morph reproduces that motion between the two registered photos:

- dense optical flow both ways (OpenCV's DIS, grey levels), smoothed so that skin texture
  cannot tear it;
- the frame at t in (0, 1): the neutral photo pushed a fraction t along its flow and the
  expression photo pulled back the remaining 1 - t along its own, then mixed (1 - t) : t.

Features travel along the flow instead of fading out in one place and in at another, so the
in-between mouth is one mouth. New content that has no match in the neutral photo (teeth) still
fades in. Both photos must already be registered (same size, eyes in the same place).
"""

from __future__ import annotations

import cv2
import numpy as np

# Gaussian smoothing of the flow, as a fraction of the frame side (3 px at 256): the motion of
# a smile is smooth on this scale, and the smoothing removes flow noise in flat skin.
_FLOW_SMOOTHING = 3 / 256


def _flow(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """[H, W, 2] displacement that carries `source` onto `target` (target(x + f) ~ source(x))."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flow = dis.calc(
        cv2.cvtColor(source, cv2.COLOR_RGB2GRAY), cv2.cvtColor(target, cv2.COLOR_RGB2GRAY), None
    )
    sigma = _FLOW_SMOOTHING * max(source.shape[:2])
    return cv2.GaussianBlur(flow, (0, 0), sigma)


def _pushed(image: np.ndarray, flow: np.ndarray, fraction: float) -> np.ndarray:
    """`image` moved `fraction` of the way along `flow` (backward sampling), as float32."""
    height, width = image.shape[:2]
    grid_x, grid_y = np.meshgrid(
        np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)
    )
    return cv2.remap(
        image,
        grid_x - fraction * flow[..., 0],
        grid_y - fraction * flow[..., 1],
        cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REPLICATE,
    ).astype(np.float32)


def inbetween_frames(neutral: np.ndarray, expression: np.ndarray, count: int) -> list[np.ndarray]:
    """`count` evenly spaced frames strictly between two registered photos.

    Args:
        neutral: [H, W, 3] uint8 RGB, the a = 0 photo.
        expression: [H, W, 3] uint8 RGB of the same size, the a = 1 photo registered onto it.
        count: How many frames; frame i (from 1) is at t = i / (count + 1).

    Returns:
        `count` [H, W, 3] uint8 frames, in order of t.
    """
    if neutral.shape != expression.shape or neutral.ndim != 3:
        raise ValueError(
            f"in-betweens need two registered RGB photos of one size, got {neutral.shape} "
            f"and {expression.shape}"
        )
    if count <= 0:
        return []
    forward = _flow(neutral, expression)
    backward = _flow(expression, neutral)
    frames = []
    for index in range(1, count + 1):
        t = index / (count + 1)
        mixed = (1.0 - t) * _pushed(neutral, forward, t) + t * _pushed(
            expression, backward, 1.0 - t
        )
        frames.append(np.clip(np.round(mixed), 0, 255).astype(np.uint8))
    return frames
