"""The standard transposed conv against its sub-pixel form, per decoder level, on this machine.

`affinegan_tf/conv_forms.py` uses the sub-pixel forms only where a short probe finds the
standard op more than `PROBE_MARGIN` times slower. This prints what that decision rests on: one
JSON line per level of the paper decoder (input map 1x1 .. 32x32, its channel widths) with the
median milliseconds of both forms, forward at batch 16 (16 frames of one photo) and forward +
backward at batch 6 (a training step's 1 neutral + 5 targets), their ratio, and last one line
with the probe's own figures and decision, the CPU model and the thread count.

    python benchmarks/conv_forms_speed.py [--repeats 5] [--levels 1,2,4,8,16,32]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from affinegan_tf.machine_load import cpu_model  # noqa: E402

# Input map size -> (channels in, channels out) of the paper decoder (ngf 64; skips concatenated).
PAPER_DECODER = {1: (512, 512), 2: (1024, 512), 4: (1024, 512), 8: (1024, 512), 16: (1024, 256)}
PAPER_DECODER[32] = (512, 128)


def median_ms(function, repeats: int) -> float:
    """Median wall milliseconds of `function()` after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def level_figures(size: int, repeats: int) -> dict:
    import tensorflow as tf

    from affinegan_tf import conv_forms

    channels_in, channels_out = PAPER_DECODER[size]
    kernel = tf.Variable(tf.random.normal([4, 4, channels_out, channels_in]) * 0.02)

    def standard(values, kernel):
        shape = [values.shape[0], 2 * size, 2 * size, channels_out]
        return tf.nn.conv2d_transpose(values, kernel, shape, 2, "SAME")

    def forward(form, batch):
        values = tf.random.normal([batch, size, size, channels_in])
        traced = tf.function(lambda: form(values, kernel))
        return lambda: traced().numpy()

    def training(form, batch):
        values = tf.random.normal([batch, size, size, channels_in])

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                tape.watch(values)
                outputs = form(values, kernel)
                loss = tf.reduce_sum(outputs * outputs)
            return tape.gradient(loss, [values, kernel])

        return lambda: [gradient.numpy() for gradient in step()]

    figures = {"input_map": size, "channels_in": channels_in, "channels_out": channels_out}
    for name, make, form, batch in (
        ("forward_b16", forward, conv_forms.subpixel_conv_transpose, 16),
        ("train_b6", training, conv_forms.fast_conv_transpose, 6),
    ):
        standard_ms = median_ms(make(standard, batch), repeats)
        subpixel_ms = median_ms(make(form, batch), repeats)
        figures[f"{name}_standard_ms"] = round(standard_ms, 2)
        figures[f"{name}_subpixel_ms"] = round(subpixel_ms, 2)
        figures[f"{name}_standard_over_subpixel"] = round(standard_ms / subpixel_ms, 2)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--levels", default="1,2,4,8,16,32", help="input map sizes")
    args = parser.parse_args()
    import tensorflow as tf

    from affinegan_tf import conv_forms

    tf.config.threading.set_inter_op_parallelism_threads(1)
    for size in (int(part) for part in args.levels.split(",")):
        print(json.dumps({"benchmark": "conv_forms_speed", **level_figures(size, args.repeats)}))
    probe = conv_forms.probe()
    print(
        json.dumps(
            {
                "benchmark": "conv_forms_speed",
                "probe_standard_ms": round(1000 * probe["standard_seconds"], 2),
                "probe_subpixel_ms": round(1000 * probe["subpixel_seconds"], 2),
                "probe_margin": conv_forms.PROBE_MARGIN,
                "subpixel_is_faster": probe["subpixel_is_faster"],
                "cpu_model": cpu_model(),
                "threads": len(os.sched_getaffinity(0)),
                "tensorflow": tf.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
