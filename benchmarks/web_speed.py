"""Time per frame of the browser page (`export --formats web`) in headless Chromium.

Serves each export's web/ folder on 127.0.0.1, opens it in Debian's chromium through Playwright
(as tests/test_export_web.py does) and times `window.affinegan.benchmark`: one encode, then
`--repeats` decodes (one per intensity, as the slider does; median reported), with 1 and 2 wasm
threads, after a warm-up. The same
decode.onnx run by native ONNX Runtime (Python, same threads) in the same run is the baseline, so
the ratio holds on a busy machine. Prints one JSON line per (export, threads):

    python benchmarks/web_speed.py exported/tiny exported/paper --repeats 20
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import threading
import time
from pathlib import Path

import numpy as np

from affinegan_tf.export.web import HEADLESS_CHROMIUM_ARGS as CHROMIUM_ARGS
from affinegan_tf.machine_load import cpu_model


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *arguments):
        pass


def native_decode_ms(web: Path, threads: int, repeats: int) -> float:
    """Median ms per decode.onnx call in native ONNX Runtime (CPU provider), after a warm-up."""
    from affinegan_tf.export import onnx as onnx_export

    encode = onnx_export.session(web / "models" / "encode.onnx", num_threads=threads)
    decode = onnx_export.session(web / "models" / "decode.onnx", num_threads=threads)
    size = encode.get_inputs()[0].shape[1]
    image = np.random.default_rng(0).random((1, size, size, 3), np.float32)
    names = [item.name for item in encode.get_outputs()]
    features = dict(zip(names, encode.run(None, {"image": image}), strict=True))
    for index in range(3):
        decode.run(None, {**features, "intensity": np.full(1, index / 3, np.float32)})
    times = []
    for index in range(repeats):
        started = time.perf_counter()
        decode.run(None, {**features, "intensity": np.full(1, index / repeats, np.float32)})
        times.append(time.perf_counter() - started)
    return float(np.median(times)) * 1000


def browser_timings(web: Path, photo: Path, threads: int, repeats: int) -> dict:
    from playwright.sync_api import sync_playwright

    handler = functools.partial(_QuietHandler, directory=str(web))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
            )
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/index.html?threads={threads}")
            page.wait_for_function(
                "() => document.body && document.body.dataset.state === 'idle'", timeout=600_000
            )
            info = page.evaluate("() => window.affinegan.ready")
            started = time.perf_counter()
            result = page.evaluate(
                "([url, repeats]) => window.affinegan.benchmark(url, repeats)",
                [f"/{photo.name}", repeats],
            )
            result["wall_s"] = time.perf_counter() - started
            result["crossOriginIsolated"] = info["crossOriginIsolated"]
            result["chromium"] = browser.version
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    return result


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import imageio.v3 as iio

    from affinegan_tf.machine_load import OtherProcessesCpu

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("exports", nargs="+", help="export folders written with --formats web")
    parser.add_argument("--repeats", type=int, default=20, help="decodes timed per run")
    parser.add_argument("--threads", default="1,2", help="comma-separated wasm thread counts")
    args = parser.parse_args(argv)
    for export in args.exports:
        web = Path(export) / "web"
        size = json.loads((web / "model.json").read_text())["image_size"]
        photo = web / "benchmark_photo.png"
        rows, cols = np.mgrid[0:size, 0:size] / size
        iio.imwrite(photo, (np.stack([rows, cols, rows * cols], -1) * 255).astype(np.uint8))
        try:
            for threads in (int(value) for value in args.threads.split(",")):
                with OtherProcessesCpu() as before:
                    time.sleep(2.0)
                load_average = os.getloadavg()[0]
                result = browser_timings(web, photo, threads, args.repeats)
                native = native_decode_ms(web, threads, args.repeats)
                result.update(
                    export=str(export),
                    image_size=size,
                    native_onnxruntime_decode_ms=native,
                    browser_over_native=result["decodeMsMedian"] / native,
                    other_processes_cores_before=before.cores,
                    load_average_1min=load_average,
                    cpu=cpu_model(),
                    cores=os.cpu_count(),
                )
                print(json.dumps(result), flush=True)
        finally:
            photo.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
