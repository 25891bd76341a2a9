"""Frames per second of `generate` (16 intensities, one photo) across runtimes and sizes.

Prints one JSON line per (image size, runtime) with the median time of 16 frames, frames per
second, and the other processes' CPU use during that measurement (from /proc/stat, in cores), so
that figures taken on a shared machine can be judged. Then one line per size with the speed-up of
encode-once / decode-batched over running the full generator once per intensity.

Models are preset-like (64: tiny, 128: small, 256: paper) with random weights: speed does not
depend on the weights.

    python benchmarks/generate_speed.py [--sizes 64,128,256] [--threads 2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from affinegan_tf.machine_load import OtherProcessesCpu  # noqa: E402

PRESET_FOR_SIZE = {64: "tiny", 128: "small", 256: "paper"}
NUM_INTENSITIES = 16


def measure(function, repeats: int) -> dict:
    """Median wall time of `function()` after one warm-up call, and others' CPU use meanwhile."""
    function()
    times = []
    with OtherProcessesCpu() as load:
        for _ in range(repeats):
            start = time.perf_counter()
            function()
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {
        "seconds_per_16_frames": round(median, 4),
        "frames_per_second": round(NUM_INTENSITIES / median, 2),
        "other_processes_cpu_cores": None if load.cores is None else round(load.cores, 3),
    }


def build_runtimes(generator, folder: Path, threads: int) -> dict:
    """name -> callable(face_uint8, face_unit, intensities) for every runtime measured."""
    import tensorflow as tf

    from affinegan_tf.export import onnx as onnx_export
    from affinegan_tf.export import saved_model, signature, tflite

    generate = signature.make_generate(generator)
    saved_dir = saved_model.export_saved_model(generator, folder)
    loaded, saved_generate = saved_model.load_generate(saved_dir)
    tflite_files = tflite.export_tflite(generator, folder, fp16=True)
    onnx_files = onnx_export.export_onnx(generator, folder)
    runners = {
        path.stem: tflite.interpreter(path, num_threads=threads).get_signature_runner()
        for path in tflite_files
    }
    sessions = {path.stem: onnx_export.session(path, num_threads=threads) for path in onnx_files}

    def keras_eager(face, face_unit, intensities):
        model_face = signature.resize_to_model(face, generator.config.image_size)[tf.newaxis]
        signature.generate_frames_from_model_range(generator, model_face, intensities).numpy()

    def tf_function(face, face_unit, intensities):
        generate(face, intensities)["frames"].numpy()

    def saved(face, face_unit, intensities):
        saved_model.generate_with_saved_model(saved_generate, face, intensities)

    def tflite_one(suffix):
        runner = runners[f"generate_one{suffix}"]

        def run(face, face_unit, intensities):
            for index in range(len(intensities)):
                runner(image=face_unit, intensity=intensities[index : index + 1])

        return run

    def tflite_pair(suffix):
        encode, decode = runners[f"encode{suffix}"], runners[f"decode{suffix}"]

        def run(face, face_unit, intensities):
            features = encode(image=face_unit)
            for index in range(len(intensities)):
                decode(**features, intensity=intensities[index : index + 1])

        return run

    def onnx_run(name):
        session = sessions[name]

        def run(face, face_unit, intensities):
            onnx_export.run_onnx(session, face_unit, intensities)

        return run

    runtimes = {
        "keras_eager": keras_eager,
        "tf_function": tf_function,
        "saved_model": saved,
        "tflite_fp32_generate_one": tflite_one(""),
        "tflite_fp16_generate_one": tflite_one("_fp16"),
        "tflite_fp32_encode_decode": tflite_pair(""),
        "tflite_fp16_encode_decode": tflite_pair("_fp16"),
        "onnxruntime_batched": onnx_run("generate_frames"),
        "onnxruntime_generate_one": onnx_run("generate_one"),
    }
    runtimes["_keep_alive"] = loaded
    return runtimes


def full_generator_per_intensity(generator):
    """The baseline: the whole generator (both encoders + decoder) once per intensity, with the
    standard Conv2D / Conv2DTranspose ops throughout (the authors' path, in TensorFlow)."""
    import tensorflow as tf

    from affinegan_tf.conv_forms import portable_graph

    size = generator.config.image_size

    @tf.function(
        input_signature=[
            tf.TensorSpec([1, size, size, 3], tf.float32),
            tf.TensorSpec([1], tf.float32),
        ]
    )
    def one_frame(face, intensity):
        return generator((face, intensity), training=False)

    with portable_graph():  # traced once here, so later calls run this trace
        one_frame.get_concrete_function()

    def run(face, face_unit, intensities):
        model_face = tf.constant(face_unit * 2.0 - 1.0)
        for index in range(len(intensities)):
            one_frame(model_face, tf.constant(intensities[index : index + 1])).numpy()

    return run


def benchmark_size(size: int, threads: int, repeats: int) -> None:
    """Prints the JSON lines of one image size."""
    import tensorflow as tf

    from affinegan_tf.config import PRESETS
    from affinegan_tf.export import signature
    from affinegan_tf.networks import AffineGenerator

    preset = PRESET_FOR_SIZE[size]
    generator = AffineGenerator(PRESETS[preset], seed=0)
    generator.build()
    intensities = np.linspace(0.0, 1.0, NUM_INTENSITIES).astype(np.float32)
    face = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    face_unit = signature.model_range_to_unit(
        signature.resize_to_model(face, size)[tf.newaxis]
    ).numpy()
    with tempfile.TemporaryDirectory() as temporary:
        runtimes = build_runtimes(generator, Path(temporary), threads)
        loaded = runtimes.pop("_keep_alive")
        runtimes["full_generator_per_intensity"] = full_generator_per_intensity(generator)
        results = {}
        for name, run in runtimes.items():
            results[name] = measure(lambda run=run: run(face, face_unit, intensities), repeats)
            line = {"size": size, "preset": preset, "runtime": name, "threads": threads}
            print(json.dumps({**line, **results[name]}), flush=True)
        del loaded

    def seconds(name: str) -> float:
        return results[name]["seconds_per_16_frames"]

    print(
        json.dumps(
            {
                "size": size,
                "preset": preset,
                "speedup_encode_once_decode_batched_vs_full_generator_per_intensity": round(
                    seconds("full_generator_per_intensity") / seconds("tf_function"), 2
                ),
                "speedup_tflite_fp32_encode_decode_vs_generate_one": round(
                    seconds("tflite_fp32_generate_one") / seconds("tflite_fp32_encode_decode"), 2
                ),
                "speedup_tflite_fp16_encode_decode_vs_generate_one": round(
                    seconds("tflite_fp16_generate_one") / seconds("tflite_fp16_encode_decode"), 2
                ),
                "speedup_onnxruntime_batched_vs_generate_one": round(
                    seconds("onnxruntime_generate_one") / seconds("onnxruntime_batched"), 2
                ),
            }
        ),
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,128,256")
    parser.add_argument("--threads", type=int, default=2, help="TF / TFLite / ORT CPU threads")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    for size in [int(part) for part in args.sizes.split(",")]:
        benchmark_size(size, args.threads, args.repeats if size < 256 else max(2, args.repeats - 2))


if __name__ == "__main__":
    main()
