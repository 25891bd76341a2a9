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
  figures from a shared machine can be judged.

    python benchmarks/train_speed.py [--sizes 64,128,256] [--local-d off,on] [--steps 20]
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

from affinegan_tf.machine_load import OtherProcessesCpu  # noqa: E402

PRESET_FOR_SIZE = {64: "tiny", 128: "small", 256: "paper"}


def conv_throughput() -> float:
    """GFLOP/s of a 3x3, 128 -> 128 channel convolution on 64 x 64 x 8 inputs (tf.function)."""
    import tensorflow as tf

    inputs = tf.random.uniform((8, 64, 64, 128))
    kernel = tf.random.uniform((3, 3, 128, 128))
    convolve = tf.function(lambda: tf.nn.conv2d(inputs, kernel, 1, "SAME"))
    flop = 2 * 8 * 64 * 64 * 128 * 128 * 9
    convolve().numpy()
    times = []
    for _ in range(10):
        started = time.perf_counter()
        convolve().numpy()
        times.append(time.perf_counter() - started)
    return flop / statistics.median(times) / 1e9


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


def measure_one(size: int, local_d: str, steps: int, blocks: int) -> dict:
    """Runs in a child process: builds, warms up and times one configuration."""
    import tensorflow as tf

    from affinegan_tf.config import RunConfig, preset, replace
    from affinegan_tf.speed import random_batch
    from affinegan_tf.training import build_model

    tf.config.optimizer.set_experimental_options({"remapping": False})
    model_config = replace(preset(PRESET_FOR_SIZE[size]), local_discriminator=local_d)
    run_config = replace(RunConfig(), preset=PRESET_FOR_SIZE[size], model=model_config)
    gflops_conv = conv_throughput()
    model = build_model(run_config, total_steps=100_000)
    batch = random_batch(run_config)
    gflop = step_gflop(model, batch)
    dataset = tf.data.Dataset.from_tensors(batch).repeat()
    model.fit(dataset, steps_per_epoch=3, epochs=1, verbose=0)
    rates = []
    with OtherProcessesCpu() as load:
        for _ in range(blocks):
            started = time.perf_counter()
            model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
            rates.append(steps / (time.perf_counter() - started))
    rate = statistics.median(rates)
    figures = {
        "benchmark": "train_speed",
        "image_size": size,
        "preset": PRESET_FOR_SIZE[size],
        "local_discriminator": local_d,
        "batch_size": 1,
        "steps_per_second": round(rate, 3),
        "seconds_per_step": round(1 / rate, 4),
        "peak_memory_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
        "conv_gflops": round(gflops_conv, 1),
        "gflop_per_step": None if gflop is None else round(gflop, 2),
        "other_processes_cpu_cores": None if load.cores is None else round(load.cores, 3),
        "threads": len(os.sched_getaffinity(0)),
        "tensorflow": tf.__version__,
    }
    if gflop is not None:
        floor = gflop / gflops_conv
        figures["floor_seconds_per_step"] = round(floor, 4)
        figures["ratio_to_floor"] = round((1 / rate) / floor, 2)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="64,128,256")
    parser.add_argument("--local-d", default="off,on")
    parser.add_argument("--steps", type=int, default=0, help="steps per timed block (0: by size)")
    parser.add_argument("--blocks", type=int, default=3, help="timed blocks (median reported)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # "size,local_d": child mode
    args = parser.parse_args()
    if args.one:
        size, local_d = args.one.split(",")
        print(json.dumps(measure_one(int(size), local_d, args.steps, args.blocks)), flush=True)
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
