"""Training speed and peak memory at 64, 128 and 256, beside a floor measured in the same run.

For each image size (64: `tiny`, 128: `small`, 256: `paper`) and local discriminator off/on, one
fresh subprocess trains on random data shaped like the pipeline's (batch 1, K = 5 targets) and
reports steps per second (median of several timed blocks after warm-up) and its peak resident
memory. Beside each figure, in the same JSON line:

- `gflop_per_step`: the multiply-adds of one training step x 2, counted by TensorFlow's profiler
  on the traced train step;
- `conv_gflops`: this machine's 3x3 convolution throughput, measured in the same run just before;
- `floor_seconds_per_step` = gflop_per_step / conv_gflops (the baseline: a step can only be
  this fast if every FLOP ran at conv peak) and `ratio_to_floor`;
- `other_processes_cpu_cores`: other processes' CPU use while timing (from /proc/stat), so that
  figures from a shared machine can be judged;
- `cpu_model` (with the bf16 / AMX flags the CPU has), `cpu_seconds_per_step` (this process's
  CPU time: less sensitive to other processes than wall time) beside `cpu_floor_seconds_per_step`
  (FLOPs / the conv's GFLOP per CPU second) and `cpu_ratio_to_floor`,
  `minor_page_faults_per_step` (fresh pages touched per step: an allocator that returns memory
  to the system pays them every step), and `conv_forms`: whether this machine's steps take the
  sub-pixel transposed convs (`affinegan_tf/conv_forms.py`; AFFINEGAN_TF_CONV_FORMS forces one).

    python benchmarks/train_speed.py [--sizes 64,128,256] [--local-d off,on] [--steps 20]
        [--mixed-precision bfloat16]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from affinegan_tf.machine_load import OtherProcessesCpu, cpu_model  # noqa: E402

PRESET_FOR_SIZE = {64: "tiny", 128: "small", 256: "paper"}


def conv_throughput() -> tuple[float, float]:
    """A 3x3, 128 -> 128 channel convolution on 64 x 64 x 8 inputs (tf.function).

    Returns:
        (GFLOP per second of wall time, GFLOP per second of this process's CPU time). The second
        is the floor for `cpu_seconds_per_step`: much less sensitive to other processes.
    """
    import tensorflow as tf

    inputs = tf.random.uniform((8, 64, 64, 128))
    kernel = tf.random.uniform((3, 3, 128, 128))
    convolve = tf.function(lambda: tf.nn.conv2d(inputs, kernel, 1, "SAME"))
    flop = 2 * 8 * 64 * 64 * 128 * 128 * 9
    convolve().numpy()
    times, cpu_times = [], []
    for _ in range(10):
        started, cpu_started = time.perf_counter(), time.process_time()
        convolve().numpy()
        times.append(time.perf_counter() - started)
        cpu_times.append(time.process_time() - cpu_started)
    return flop / statistics.median(times) / 1e9, flop / statistics.median(cpu_times) / 1e9


def step_gflop(model, batch) -> float | None:
    """FLOPs of one traced training step, from TensorFlow's graph profiler (None if unknown)."""
    import tensorflow as tf

    try:
        concrete = tf.function(model.train_step).get_concrete_function(batch)
        options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
        options["output"] = "none"
        profile = tf.compat.v1.profiler.profile(graph=concrete.graph, options=options)
        return profile.total_float_ops / 1e9
    except Exception:  # the profiler is best effort; the speed figures do not depend on it
        return None


def measure_one(
    size: int, local_d: str, steps: int, blocks: int, mixed_precision: str | None = None
) -> dict:
    """Runs in a child process: builds, warms up and times one configuration."""
    import keras
    import tensorflow as tf

    from affinegan_tf import conv_forms
    from affinegan_tf.compute_settings import apply_compute_settings
    from affinegan_tf.config import RunConfig, TrainConfig, preset, replace
    from affinegan_tf.speed import random_batch
    from affinegan_tf.training import build_model

    apply_compute_settings()
    model_config = replace(preset(PRESET_FOR_SIZE[size]), local_discriminator=local_d)
    train_config = TrainConfig(
        mixed_precision=mixed_precision is not None,
        mixed_precision_dtype=mixed_precision or "float16",
    )
    run_config = replace(
        RunConfig(), preset=PRESET_FOR_SIZE[size], model=model_config, train=train_config
    )
    keras.mixed_precision.set_global_policy(train_config.precision_policy)
    gflops_conv, gflops_conv_cpu = conv_throughput()
    model = build_model(run_config, total_steps=100_000)
    batch = random_batch(run_config)
    gflop = step_gflop(model, batch)
    dataset = tf.data.Dataset.from_tensors(batch).repeat()

    # Every timed block is one epoch of ONE fit call: with steps_per_epoch set, fit keeps one
    # data iterator across epochs. A fit call per block would build and destroy an iterator each
    # time, and destroying one waits for tf.data's background threads to wake (seen as the whole
    # process asleep for ~4-5 s inside TFE_DeleteTensorHandle -> ~IteratorResource -> the
    # UnboundedThreadPool's ~LogicalThreadWrapper): that stall, landing in some blocks and not
    # others, was the "two speeds" of this benchmark (0.25 or 0.51 s per step at 64 on a Zen 3).
    class BlockTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.rates, self.cpu_times, self.faults = [], [], []

        def on_epoch_begin(self, epoch, logs=None):
            self.faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            self.started, self.cpu_started = time.perf_counter(), time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:  # warm-up: tracing, first allocations
                return
            self.rates.append(steps / (time.perf_counter() - self.started))
            self.cpu_times.append((time.process_time() - self.cpu_started) / steps)
            faults_after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            self.faults.append((faults_after - self.faults_before) / steps)

    timer = BlockTimer()
    with OtherProcessesCpu() as load:
        model.fit(dataset, steps_per_epoch=steps, epochs=1 + blocks, verbose=0, callbacks=[timer])
    rates, cpu_times, faults = timer.rates, timer.cpu_times, timer.faults
    rate = statistics.median(rates)
    figures = {
        "benchmark": "train_speed",
        "image_size": size,
        "preset": PRESET_FOR_SIZE[size],
        "local_discriminator": local_d,
        "batch_size": 1,
        "precision": train_config.precision_policy,
        "steps_per_second": round(rate, 3),
        "seconds_per_step": round(1 / rate, 4),
        "cpu_seconds_per_step": round(statistics.median(cpu_times), 4),
        "minor_page_faults_per_step": round(statistics.median(faults)),
        "peak_memory_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
        "conv_gflops": round(gflops_conv, 1),
        "conv_gflop_per_cpu_second": round(gflops_conv_cpu, 1),
        "gflop_per_step": None if gflop is None else round(gflop, 2),
        "other_processes_cpu_cores": None if load.cores is None else round(load.cores, 3),
        "cpu_model": cpu_model(),
        "threads": len(os.sched_getaffinity(0)),
        "tensorflow": tf.__version__,
        "conv_forms": "subpixel" if conv_forms.use_subpixel_forms() else "standard",
    }
    if gflop is not None:
        floor = gflop / gflops_conv
        figures["floor_seconds_per_step"] = round(floor, 4)
        figures["ratio_to_floor"] = round((1 / rate) / floor, 2)
        cpu_floor = gflop / gflops_conv_cpu
        figures["cpu_floor_seconds_per_step"] = round(cpu_floor, 4)
        figures["cpu_ratio_to_floor"] = round(statistics.median(cpu_times) / cpu_floor, 2)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="64,128,256")
    parser.add_argument("--local-d", default="off,on")
    parser.add_argument("--steps", type=int, default=0, help="steps per timed block (0: by size)")
    parser.add_argument("--blocks", type=int, default=3, help="timed blocks (median reported)")
    parser.add_argument(
        "--mixed-precision", choices=("float16", "bfloat16"), help="default: float32"
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)  # "size,local_d": child mode
    args = parser.parse_args()
    if args.one:
        size, local_d = args.one.split(",")
        figures = measure_one(int(size), local_d, args.steps, args.blocks, args.mixed_precision)
        print(json.dumps(figures), flush=True)
        return
    for size in (int(value) for value in args.sizes.split(",")):
        if size not in PRESET_FOR_SIZE:
            parser.error(f"--sizes: {size} is not one of {sorted(PRESET_FOR_SIZE)}")
        steps = args.steps or {64: 40, 128: 10, 256: 3}[size]
        for local_d in args.local_d.split(","):
            command = [
                sys.executable,
                __file__,
                "--one",
                f"{size},{local_d}",
                "--steps",
                str(steps),
                "--blocks",
                str(args.blocks),
            ]
            if args.mixed_precision:
                command += ["--mixed-precision", args.mixed_precision]
            child = subprocess.run(command, capture_output=True, text=True)
            lines = [line for line in child.stdout.splitlines() if line.startswith("{")]
            if child.returncode or not lines:
                print(
                    json.dumps(
                        {
                            "benchmark": "train_speed",
                            "image_size": size,
                            "local_discriminator": local_d,
                            "error": child.stderr.strip().splitlines()[-1:],
                        }
                    ),
                    flush=True,
                )
                continue
            print(lines[-1], flush=True)


if __name__ == "__main__":
    main()
