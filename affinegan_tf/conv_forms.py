"""Faster forms of the U-Net's 4x4 stride-2 (transposed) convolutions, and when to use them.

TensorFlow's CPU transposed convolution (Conv2DBackpropInput, also the input gradient of every
strided conv) is slow on some CPUs and fine on others: the same sums as four small forward
convolutions interleaved by depth_to_space (`subpixel_conv_transpose`) took 0.26-0.46x its time
on a 2-core AMD Zen 3, but 1.05-1.7x on a 2-core Intel Xeon (Emerald Rapids), where the rewrite
made `tiny` training steps 1.2x slower. So the sub-pixel forms are used only where a short
measurement on this machine (`probe`, once per process) finds the standard op clearly slower;
`AFFINEGAN_TF_CONV_FORMS=subpixel|standard` forces the choice (default `auto`).
`benchmarks/conv_forms_speed.py` prints the per-level figures behind the decision.

Exports (SavedModel, TFLite, ONNX) keep the standard ops, which TF Serving, converters, GPU
delegates and mobile providers map natively, and which do not depend on the exporting machine:
they trace under `portable_graph()`.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import threading
import time

import tensorflow as tf
from keras import ops

from affinegan_tf.errors import UserError

# Output phase (row or column parity) -> {input offset: kernel tap} of a 4x4 stride-2 "same"
# transposed convolution: output row 2r + phase takes input rows r + offset through that tap.
TRANSPOSE_TAPS = {0: {0: 1, -1: 3}, 1: {0: 2, 1: 0}}

# Where the standard op is slow, it is slow on small maps with wide kernels: on a 2-core Zen 3,
# 16 frames through the paper decoder's 16x16 -> 32x32 level (1,024 -> 256 channels) took 864
# ms, 40 GFLOP/s, where the same sums as four 2x2 forward convolutions (one per output phase)
# interleaved by depth_to_space took 303 ms; 8x8: 359 -> 165 ms; 4x4: 322 -> 83;
# at 32x32 both were equal and from 64x64 up the transposed conv was faster. Its backward pass
# (a strided conv and a filter gradient) is fast as it is, while the backward of the four small
# convs was slower (fwd + bwd 1.5x), so training keeps that backward; the same slow op is the
# input gradient of a strided conv, which therefore takes the sub-pixel form too.
SUBPIXEL_CONV_TRANSPOSE = 16

_PORTABLE_GRAPH = contextvars.ContextVar("affinegan_tf_portable_graph", default=False)


@contextlib.contextmanager
def portable_graph():
    """Within: layers trace Conv2D / Conv2DTranspose only (no matrix-product or sub-pixel forms)."""
    token = _PORTABLE_GRAPH.set(True)
    try:
        yield
    finally:
        _PORTABLE_GRAPH.reset(token)


ENVIRONMENT_VARIABLE = "AFFINEGAN_TF_CONV_FORMS"
CHOICES = ("auto", "subpixel", "standard")
# The standard op must take this many times the sub-pixel form's time on the probe to lose: the
# machines measured so far were at 2.2-3.9x (AMD Zen 3, 4x4-16x16 maps) and 0.6-0.85x (the
# Emerald Rapids Xeon, on the probe's own shape).
PROBE_MARGIN = 1.4
_PROBE_LOCK = threading.Lock()


def is_portable() -> bool:
    """Whether layers are being traced for another runtime (inside `portable_graph()`)."""
    return _PORTABLE_GRAPH.get()


def use_subpixel_forms() -> bool:
    """Whether training and TensorFlow generation take the sub-pixel forms on this machine."""
    choice = os.environ.get(ENVIRONMENT_VARIABLE, "auto").strip().lower() or "auto"
    if choice not in CHOICES:
        raise UserError(
            f"{ENVIRONMENT_VARIABLE}={choice!r} is not one of {', '.join(CHOICES)}: unset it "
            "to let the machine decide."
        )
    if choice != "auto":
        return choice == "subpixel"
    with _PROBE_LOCK:
        return probe()["subpixel_is_faster"]


@functools.cache
def probe() -> dict:
    """Times the standard transposed conv and the sub-pixel form once on a decoder-like shape.

    The paper decoder's 8x8 -> 16x16 level (1,024 -> 512 channels), batch 2 (10-50 ms each on
    the CPUs measured); best of three alternated runs after one warm-up, run eagerly even while
    a tf.function is traced (0.7-0.9 s in all on a 2-core Xeon). Returns both times and the
    decision.
    """
    with tf.init_scope():
        inputs = tf.random.stateless_normal([2, 8, 8, 1024], seed=[0, 1])
        kernel = tf.random.stateless_normal([4, 4, 512, 1024], seed=[0, 2]) * 0.02
        forms = {  # as training and generation run them: traced, with grappler's rewrites
            "standard": tf.function(
                lambda: tf.nn.conv2d_transpose(inputs, kernel, [2, 16, 16, 512], 2, "SAME")
            ),
            "subpixel": tf.function(lambda: subpixel_conv_transpose(inputs, kernel)),
        }
        best = {"standard": float("inf"), "subpixel": float("inf")}
        for repeat in range(4):
            for name, form in forms.items():
                start = time.perf_counter()
                form().numpy()
                if repeat:  # the first round traces and warms up
                    best[name] = min(best[name], time.perf_counter() - start)
    return {
        "standard_seconds": best["standard"],
        "subpixel_seconds": best["subpixel"],
        "subpixel_is_faster": best["standard"] > PROBE_MARGIN * best["subpixel"],
    }


def subpixel_conv_transpose(inputs, kernel):
    """A 4x4 stride-2 "same" transposed convolution as four 2x2 convolutions + depth_to_space.

    Output pixel (2r + i, 2c + j) sees a 2x2 neighbourhood of input pixels through four of the 16
    taps (`TRANSPOSE_TAPS`); each phase (i, j) is one valid 2x2 convolution of the zero-padded
    input, and depth_to_space interleaves the four phases.

    Args:
        inputs: [N, H, W, C_in] with H and W known.
        kernel: [4, 4, C_out, C_in] (Keras's Conv2DTranspose layout; also the layout of a
            Conv2D kernel whose input gradient this is).

    Returns:
        [N, 2H, 2W, C_out], equal to the transposed convolution up to float rounding.
    """
    height, width = inputs.shape[1], inputs.shape[2]
    padded = ops.pad(inputs, ((0, 0), (1, 1), (1, 1), (0, 0)))
    taps = ops.transpose(kernel, (0, 1, 3, 2))  # [4, 4, C_in, C_out]: a forward conv's layout
    phases = []
    for row_phase in (0, 1):
        rows = sorted(TRANSPOSE_TAPS[row_phase].items())  # (input offset, tap), offset ascending
        for col_phase in (0, 1):
            cols = sorted(TRANSPOSE_TAPS[col_phase].items())
            phase_kernel = ops.stack(
                [ops.stack([taps[row_tap, col_tap] for _, col_tap in cols]) for _, row_tap in rows]
            )
            top, left = 1 + rows[0][0], 1 + cols[0][0]
            window = padded[:, top : top + height + 1, left : left + width + 1, :]
            phases.append(tf.nn.conv2d(window, phase_kernel, 1, "VALID"))
    return tf.nn.depth_to_space(ops.concatenate(phases, axis=-1), 2)


def _filter_gradient(inputs, kernel, upstream):
    """The kernel gradient of a 4x4 stride-2 "same" conv of `inputs` with output gradient
    `upstream` (for a transposed conv: inputs = its output gradient, upstream = its input)."""
    return tf.raw_ops.Conv2DBackpropFilter(
        input=inputs,
        filter_sizes=tf.shape(kernel),
        out_backprop=upstream,
        strides=[1, 2, 2, 1],
        padding="SAME",
    )


@tf.custom_gradient
def fast_conv_transpose(inputs, kernel):
    """`subpixel_conv_transpose` forward; the transposed conv's own (fast) backward."""

    def gradient(upstream):
        return (
            tf.nn.conv2d(upstream, kernel, 2, "SAME"),
            _filter_gradient(upstream, kernel, inputs),
        )

    return subpixel_conv_transpose(inputs, kernel), gradient


@tf.custom_gradient
def fast_strided_conv(inputs, kernel):
    """A 4x4 stride-2 "same" conv whose input gradient is `subpixel_conv_transpose`.

    `kernel` is [4, 4, C_in, C_out] (Conv2D layout); its output map must have a known size.
    """

    def gradient(upstream):
        return (
            subpixel_conv_transpose(upstream, kernel),
            _filter_gradient(inputs, kernel, upstream),
        )

    return tf.nn.conv2d(inputs, kernel, 2, "SAME"), gradient
