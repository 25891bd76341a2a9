"""Input-pipeline throughput: samples/s and CPU seconds per sample of `make_dataset`.

Frames are synthetic, written as .npy files and memory-mapped like the frame cache's. With
`--baseline FILE` (another pipeline.py, e.g. `git show REV:affinegan_tf/data/pipeline.py > old.py`)
both are timed in the same run, alternately, and each line says which. One JSON line per
measurement, with other processes' CPU use over it (affinegan_tf.machine_load).

    python benchmarks/pipeline_speed.py --load-size 286 --image-size 256 --baseline old.py
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from affinegan_tf.data import pipeline
from affinegan_tf.data.layout import DatasetIndex
from affinegan_tf.machine_load import OtherProcessesCpu, cpu_model


def synthetic_set(folder: Path, videos: int, frames: int, load_size: int, masks: bool):
    rng = np.random.default_rng(0)
    frame_arrays, mask_arrays = [], []
    for index in range(videos):
        np.save(
            folder / f"frames{index}.npy",
            rng.integers(0, 256, (frames, load_size, load_size, 3), dtype=np.uint8),
        )
        frame_arrays.append(np.load(folder / f"frames{index}.npy", mmap_mode="r"))
        if masks:
            mask = 255 * rng.integers(0, 2, (frames, load_size, load_size, 1), dtype=np.uint8)
            np.save(folder / f"masks{index}.npy", mask)
            mask_arrays.append(np.load(folder / f"masks{index}.npy", mmap_mode="r"))
        else:
            mask_arrays.append(None)
    return pipeline.TrainingSet(
        names=[f"video{index}" for index in range(videos)],
        frames=frame_arrays,
        masks=mask_arrays,
        with_masks=masks,
        index=DatasetIndex(root=folder, videos=[]),
        load_size=load_size,
    )


def measure(module, training_set, arguments, batches: int) -> dict:
    dataset = module.make_dataset(
        training_set,
        image_size=arguments.image_size,
        load_size=arguments.load_size,
        num_targets=arguments.targets,
        batch_size=arguments.batch_size,
        seed=0,
    )
    iterator = iter(dataset)
    for _ in range(5):  # warm-up: tracing, first reads
        next(iterator)
    with OtherProcessesCpu() as load:
        cpu_start = time.process_time()
        for _ in range(batches):
            batch = next(iterator)
        _ = batch["targets"].numpy()
        cpu = time.process_time() - cpu_start
    samples = batches * arguments.batch_size
    return {
        "samples_per_second": samples / load.seconds,
        "cpu_seconds_per_sample": cpu / samples,
        "other_processes_cpu_cores": load.cores,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load-size", type=int, default=286)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--targets", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--masks", action="store_true", help="with masks (local D on)")
    parser.add_argument("--baseline", type=Path, help="another pipeline.py to time alongside")
    arguments = parser.parse_args()
    modules = {"current": pipeline}
    if arguments.baseline:
        spec = importlib.util.spec_from_file_location("baseline_pipeline", arguments.baseline)
        baseline = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = baseline  # dataclasses look their module up
        spec.loader.exec_module(baseline)
        modules = {"baseline": baseline, "current": pipeline}
    with tempfile.TemporaryDirectory() as folder:
        training_set = synthetic_set(
            Path(folder), arguments.videos, arguments.frames, arguments.load_size, arguments.masks
        )
        for round_index in range(arguments.rounds):
            for name, module in modules.items():
                figures = measure(module, training_set, arguments, arguments.batches)
                print(
                    json.dumps(
                        {
                            "pipeline": name,
                            "round": round_index,
                            "load_size": arguments.load_size,
                            "image_size": arguments.image_size,
                            "targets": arguments.targets,
                            "batch_size": arguments.batch_size,
                            "masks": arguments.masks,
                            "cpu_model": cpu_model(),
                            "tensorflow": tf.__version__,
                            **figures,
                        }
                    ),
                    flush=True,
                )


if __name__ == "__main__":
    main()
