"""What the generator's weight average (TrainConfig.ema_decay) adds to a training step.

Builds the same model twice in one process, without and with the average, and times them in
alternating blocks of `model.fit` steps on one random batch (so that both see the same load),
as benchmarks/train_speed.py does. Prints one JSON line: the median seconds and CPU seconds per
step of each, their ratios (with / without), other processes' CPU use meanwhile, and the CPU.

    python benchmarks/ema_cost.py [--preset tiny] [--steps 20] [--blocks 6] [--decay 0.999]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from affinegan_tf.machine_load import OtherProcessesCpu, cpu_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--steps", type=int, default=20, help="steps per timed block")
    parser.add_argument("--blocks", type=int, default=6, help="timed blocks of each model")
    parser.add_argument("--decay", type=float, default=0.999)
    args = parser.parse_args()

    import tensorflow as tf

    from affinegan_tf.compute_settings import apply_compute_settings
    from affinegan_tf.config import RunConfig, TrainConfig, preset, replace
    from affinegan_tf.speed import random_batch
    from affinegan_tf.training import build_model

    apply_compute_settings()
    models, datasets = {}, {}
    for name, decay in (("without", 0.0), ("with", args.decay)):
        run_config = replace(
            RunConfig(),
            preset=args.preset,
            model=replace(preset(args.preset), local_discriminator="off"),
            train=TrainConfig(ema_decay=decay),
        )
        models[name] = build_model(run_config, total_steps=100_000)
        datasets[name] = tf.data.Dataset.from_tensors(random_batch(run_config)).repeat()
        # Warm-up (tracing). shuffle=False: the stream is one batch repeated.
        models[name].fit(datasets[name], steps_per_epoch=3, epochs=1, verbose=0, shuffle=False)
    # One data iterator per model for the whole timing, steps run through the model's own train
    # function: a fit() call per block would build and destroy an iterator each time, and the
    # destructor waits up to ~5 s for tf.data's background threads (see train_speed.py).
    iterators = {name: iter(dataset) for name, dataset in datasets.items()}
    seconds = {name: [] for name in models}
    cpu_seconds = {name: [] for name in models}
    with OtherProcessesCpu() as load:
        for _ in range(args.blocks):
            for name, model in models.items():
                started, cpu_started = time.perf_counter(), time.process_time()
                for _ in range(args.steps):
                    logs = model.train_function(iterators[name])
                float(logs["g_total"])  # waits for the last step
                seconds[name].append((time.perf_counter() - started) / args.steps)
                cpu_seconds[name].append((time.process_time() - cpu_started) / args.steps)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    cpu_median = {name: statistics.median(values) for name, values in cpu_seconds.items()}
    averaged = sum(int(v.numpy().size) for v, _ in models["with"].weight_average.pairs)
    print(
        json.dumps(
            {
                "benchmark": "ema_cost",
                "preset": args.preset,
                "ema_decay": args.decay,
                "averaged_weights": averaged,
                "seconds_per_step": {name: round(value, 4) for name, value in median.items()},
                "cpu_seconds_per_step": {
                    name: round(value, 4) for name, value in cpu_median.items()
                },
                "ratio": round(median["with"] / median["without"], 3),
                "cpu_ratio": round(cpu_median["with"] / cpu_median["without"], 3),
                "other_processes_cpu_cores": None if load.cores is None else round(load.cores, 2),
                "cpu_model": cpu_model(),
                "tensorflow": tf.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
