"""Pictures for reports, drawn with OpenCV (no plotting library needed): a line plot and a
contact sheet. Files are written under a temporary name and renamed into place.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from affinegan_tf.errors import UserError

_WHITE = (255, 255, 255)
_BLACK = (0, 0, 0)
_GREY = (215, 215, 215)
_LINE = (40, 90, 200)  # RGB: blue
_SERIES_COLOURS = (_LINE, (220, 110, 30), (40, 160, 70), (170, 50, 160))
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def write_png(image_rgb: np.ndarray, path: str | Path) -> Path:
    """Writes a uint8 RGB image as PNG, atomically (temporary sibling, then rename)."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise UserError(f"Cannot write {path}: give a file name ending in .png.")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(handle)
    # mkstemp makes the file private (0600); give the PNG the permissions a plain file gets.
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(temporary, 0o666 & ~mask)
    try:
        bgr = cv2.cvtColor(np.ascontiguousarray(image_rgb, np.uint8), cv2.COLOR_RGB2BGR)
        if not cv2.imwrite(temporary, bgr):
            raise UserError(f"Cannot write {path}: OpenCV failed to encode the PNG.")
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)
    return path


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (steps of 1, 2 or 5 times a power of ten) covering [low, high].

    The step is the round value nearest to (high - low) / (count - 1), so about `count` ticks.
    """
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"cannot place ticks on [{low}, {high}]")
    if high <= low:
        high = low + 1.0
    raw_step = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw_step))
    step = min((m * magnitude for m in (1, 2, 5, 10)), key=lambda value: abs(value - raw_step))
    start = math.floor(low / step) * step
    ticks = []
    value = start
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, 10))
    return ticks


def _format_tick(value: float) -> str:
    return f"{value:g}"


def _text(canvas, text, origin, scale=0.45, color=_BLACK, thickness=1):
    cv2.putText(canvas, text, origin, _FONT, scale, color, thickness, cv2.LINE_AA)


def _text_size(text: str, scale: float = 0.45) -> tuple[int, int]:
    (width, height), _ = cv2.getTextSize(text, _FONT, scale, 1)
    return width, height


def line_plot(
    x_values: Sequence[float],
    y_values: Sequence[float],
    title: str,
    x_label: str,
    y_label: str,
    width: int = 720,
    height: int = 400,
    label: str | None = None,
    extra_series: Sequence[tuple[str, Sequence[float]]] = (),
) -> np.ndarray:
    """A line plot with axes, tick labels, axis labels and a title, as uint8 RGB [H, W, 3].

    Non-finite y values break the line (nothing is drawn for them).

    Args:
        x_values: X of every point.
        y_values: Y of the main line, one per x.
        title: Drawn centred above the plot.
        x_label: Below the x axis.
        y_label: Left of the y axis, reading upwards.
        width: Image width in pixels.
        height: Image height in pixels.
        label: Legend text of the main line (a legend is drawn when any series has a label).
        extra_series: (label, y values) of further lines over the same x, in other colours.
    """
    x_values = np.asarray(x_values, np.float64)
    y_values = np.asarray(y_values, np.float64)
    if x_values.shape != y_values.shape or x_values.size == 0:
        raise ValueError("line_plot needs equally long, non-empty x and y")
    series = [(label, y_values)] + [
        (name, np.asarray(values, np.float64)) for name, values in extra_series
    ]
    if any(values.shape != x_values.shape for _, values in series):
        raise ValueError("every series needs one y value per x")
    canvas = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 70, 20, 40, 55
    all_y = np.concatenate([values for _, values in series])
    finite_y = all_y[np.isfinite(all_y)]
    y_low = min(0.0, float(finite_y.min())) if finite_y.size else 0.0
    y_high = float(finite_y.max()) if finite_y.size else 1.0
    y_ticks = nice_ticks(y_low, max(y_high, y_low + 1e-6))
    x_ticks = nice_ticks(float(x_values.min()), float(x_values.max()), count=8)
    x_range = (x_ticks[0], x_ticks[-1])
    y_range = (y_ticks[0], y_ticks[-1])

    def to_pixel(x: float, y: float) -> tuple[int, int]:
        px = left + (x - x_range[0]) / (x_range[1] - x_range[0]) * (width - left - right)
        py = (
            height - bottom - (y - y_range[0]) / (y_range[1] - y_range[0]) * (height - top - bottom)
        )
        return int(round(px)), int(round(py))

    for tick in y_ticks:
        x0, y = to_pixel(x_range[0], tick)
        x1, _ = to_pixel(x_range[1], tick)
        cv2.line(canvas, (x0, y), (x1, y), _GREY, 1)
        label = _format_tick(tick)
        label_width, label_height = _text_size(label)
        _text(canvas, label, (x0 - 8 - label_width, y + label_height // 2))
    for tick in x_ticks:
        x, y0 = to_pixel(tick, y_range[0])
        cv2.line(canvas, (x, y0), (x, y0 + 5), _BLACK, 1)
        label = _format_tick(tick)
        label_width, label_height = _text_size(label)
        _text(canvas, label, (x - label_width // 2, y0 + 10 + label_height))
    origin = to_pixel(x_range[0], y_range[0])
    cv2.line(canvas, origin, to_pixel(x_range[1], y_range[0]), _BLACK, 1)
    cv2.line(canvas, origin, to_pixel(x_range[0], y_range[1]), _BLACK, 1)

    for index, (name, values) in enumerate(series):
        colour = _SERIES_COLOURS[index % len(_SERIES_COLOURS)]
        segment: list[tuple[int, int]] = []
        for x, y in zip(x_values, values, strict=True):
            if math.isfinite(y):
                segment.append(to_pixel(x, y))
                continue
            _draw_segment(canvas, segment, colour)
            segment = []
        _draw_segment(canvas, segment, colour)
        if any(name for name, _ in series):
            legend_x, legend_y = width - right - 210, top + 8 + 18 * index
            cv2.line(
                canvas, (legend_x, legend_y), (legend_x + 24, legend_y), colour, 2, cv2.LINE_AA
            )
            _text(canvas, name or "", (legend_x + 30, legend_y + 5))

    title_width, _ = _text_size(title, 0.55)
    _text(canvas, title, ((width - title_width) // 2, 24), scale=0.55)
    label_width, _ = _text_size(x_label)
    _text(canvas, x_label, (left + (width - left - right - label_width) // 2, height - 10))
    # The y label is drawn horizontally into a strip, then rotated to read bottom-to-top.
    label_width, label_height = _text_size(y_label)
    strip = np.full((label_height + 8, label_width + 4, 3), 255, np.uint8)
    _text(strip, y_label, (2, label_height + 2))
    strip = cv2.rotate(strip, cv2.ROTATE_90_COUNTERCLOCKWISE)
    y0 = max(0, (height - strip.shape[0]) // 2)
    canvas[y0 : y0 + strip.shape[0], 4 : 4 + strip.shape[1]] = strip[: height - y0]
    return canvas


def _draw_segment(
    canvas: np.ndarray, points: list[tuple[int, int]], colour: tuple[int, int, int]
) -> None:
    if len(points) > 1:
        cv2.polylines(canvas, [np.asarray(points, np.int32)], False, colour, 2, cv2.LINE_AA)
    for point in points:
        cv2.circle(canvas, point, 3, colour, -1, cv2.LINE_AA)


def contact_sheet(
    rows: Sequence[tuple[str, np.ndarray]], columns: int = 8, label_width: int = 150
) -> np.ndarray:
    """Rows of frames side by side, each row labelled on the left, as uint8 RGB.

    Args:
        rows: (label, uint8 [N, S, S, 3]) per row; up to `columns` evenly spaced frames are shown
            (always the first and the last). All frames must share one size.
        columns: Frames per row at most.
        label_width: Pixels reserved for the labels.

    Returns:
        uint8 [rows * (S + 4), label_width + columns * (S + 4), 3].
    """
    if not rows:
        raise ValueError("contact_sheet needs at least one row")
    side = rows[0][1].shape[1]
    cell = side + 4
    sheet = np.full((len(rows) * cell, label_width + columns * cell, 3), 255, np.uint8)
    for row, (label, frames) in enumerate(rows):
        frames = np.asarray(frames, np.uint8)
        if frames.shape[1:] != (side, side, 3):
            raise ValueError(
                f"contact sheet frames must be [N, {side}, {side}, 3], got {frames.shape}"
            )
        picks = np.unique(np.round(np.linspace(0, len(frames) - 1, min(columns, len(frames)))))
        top = row * cell + 2
        for column, index in enumerate(picks.astype(int)):
            left = label_width + column * cell + 2
            sheet[top : top + side, left : left + side] = frames[index]
        # Labels are drawn on their own strip so that long ones never cover a frame.
        strip = np.full((side, label_width, 3), 255, np.uint8)
        for line, text in enumerate(label.split("\n")):
            _text(strip, text, (4, 14 + 16 * line), scale=0.4)
        sheet[top : top + side, :label_width] = strip
    return sheet
