"""ONNX Runtime Web (the page's runtime) against LiteRT.js on the same models, in turns.

How the runtime of `export --formats web` was chosen (README, In the browser). LiteRT.js is not
vendored; fetch it from the npm registry first:

    mkdir /tmp/litert && cd /tmp/litert && npm pack @litertjs/core@2.5.3 @litertjs/wasm-utils@2.5.3
    for f in *.tgz; do mkdir -p "${f%.tgz}" && tar xzf "$f" -C "${f%.tgz}"; done
    affinegan-tf export --model RUN --out /tmp/e64 --formats web,tflite     # and a 256 model
    python benchmarks/web_runtimes.py --litert /tmp/litert /tmp/e64 /tmp/e256

For each export and thread count it times the page's `window.affinegan.benchmark` (ONNX Runtime
Web, encode.onnx / decode.onnx) and then a LiteRT.js page (XNNPACK on wasm, encode.tflite /
decode.tflite), each in a fresh headless Chromium, and prints one JSON line.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path

from web_speed import CHROMIUM_ARGS, _QuietHandler

_LITERT_PAGE = """<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,">
<script type="importmap">{"imports": {"@litertjs/wasm-utils": "./wasm-utils/index.js",
  "@litertjs/core": "./core/index.js"}}</script>
<script src="isolate.js"></script><script type="module" src="bench.js"></script>
</head><body data-state="loading"></body></html>"""

_LITERT_BENCH = """import { loadLiteRt, loadAndCompile, Tensor } from '@litertjs/core';
await window.affineganIsolation;
const threads = Number(new URLSearchParams(location.search).get('threads') || 1);
await loadLiteRt(new URL('./wasm/', location.href).href,
                 { threads: threads > 1 && self.crossOriginIsolated });
window.bench = async (dir, size, repeats) => {
  const options = { accelerator: 'wasm', cpuOptions: { numThreads: threads } };
  const encode = await loadAndCompile(`${dir}/encode.tflite`, options);
  const decode = await loadAndCompile(`${dir}/decode.tflite`, options);
  const pixels = Float32Array.from({ length: size * size * 3 }, (_, i) => ((i * 7919) % 256) / 255);
  const image = new Tensor(pixels, [1, size, size, 3]);
  for (let i = 0; i < 2; i++) await encode.run({ image });
  let started = performance.now();
  const features = await encode.run({ image });
  const encodeMs = performance.now() - started;
  const times = [];
  for (let i = 0; i < 3 + repeats; i++) {
    const intensity = new Tensor(new Float32Array([i / repeats]), [1]);
    started = performance.now();
    const out = await decode.run({ ...features, intensity });
    out.frames.toTypedArray();
    if (i >= 3) times.push(performance.now() - started);
    out.frames.delete();
    intensity.delete();
  }
  times.sort((a, b) => a - b);
  return { encodeMs, decodeMsMedian: times[Math.floor(times.length / 2)], threads };
};
document.body.dataset.state = 'idle';
"""


def _serve(folder: Path) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _run(playwright, server, threads: int, script: str, argument) -> dict:
    browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
    try:
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/index.html?threads={threads}")
        page.wait_for_function(
            "() => document.body && document.body.dataset.state === 'idle'", timeout=600_000
        )
        return page.evaluate(script, argument)
    finally:
        browser.close()


def main(argv: list[str] | None = None) -> int:
    import imageio.v3 as iio
    import numpy as np
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("exports", nargs="+", help="exports written with --formats web,tflite")
    parser.add_argument("--litert", required=True, help="folder with the unpacked npm packages")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    litert = Path(args.litert)
    with tempfile.TemporaryDirectory() as temporary:
        page = Path(temporary)
        shutil.copytree(next(litert.glob("litertjs-core-*/package")) / "dist", page / "core")
        shutil.copytree(next(litert.glob("litertjs-core-*/package")) / "wasm", page / "wasm")
        shutil.copytree(
            next(litert.glob("litertjs-wasm-utils-*/package")) / "dist", page / "wasm-utils"
        )
        assets = Path(__file__).resolve().parents[1] / "affinegan_tf" / "export" / "web_assets"
        for name in ("isolate.js", "coi-serviceworker.js"):
            shutil.copyfile(assets / name, page / name)
        (page / "index.html").write_text(_LITERT_PAGE)
        (page / "bench.js").write_text(_LITERT_BENCH)
        sizes = {}
        for index, export in enumerate(args.exports):
            web = Path(export) / "web"
            sizes[export] = json.loads((web / "model.json").read_text())["image_size"]
            (page / f"m{index}").mkdir()
            for name in ("encode.tflite", "decode.tflite"):
                shutil.copyfile(Path(export) / name, page / f"m{index}" / name)
            size = sizes[export]
            rows, cols = np.mgrid[0:size, 0:size] / size
            iio.imwrite(
                web / "benchmark_photo.png",
                (np.stack([rows, cols, rows * cols], -1) * 255).astype(np.uint8),
            )
        litert_server = _serve(page)
        try:
            with sync_playwright() as playwright:
                for round_index in range(args.rounds):
                    for threads in (1, 2):
                        for index, export in enumerate(args.exports):
                            ort_server = _serve(Path(export) / "web")
                            load = os.getloadavg()[0]
                            ort = _run(
                                playwright,
                                ort_server,
                                threads,
                                "([url, n]) => window.affinegan.benchmark(url, n)",
                                ["benchmark_photo.png", args.repeats],
                            )
                            ort_server.shutdown()
                            ort_server.server_close()
                            lite = _run(
                                playwright,
                                litert_server,
                                threads,
                                "([dir, size, n]) => window.bench(dir, size, n)",
                                [f"m{index}", sizes[export], args.repeats],
                            )
                            print(
                                json.dumps(
                                    {
                                        "round": round_index,
                                        "export": export,
                                        "image_size": sizes[export],
                                        "threads": threads,
                                        "load_average_1min": load,
                                        "ort_web_decode_ms": ort["decodeMsMedian"],
                                        "litert_js_decode_ms": lite["decodeMsMedian"],
                                        "ort_web_encode_ms": ort["encodeMs"],
                                        "litert_js_encode_ms": lite["encodeMs"],
                                    }
                                ),
                                flush=True,
                            )
        finally:
            litert_server.shutdown()
            litert_server.server_close()
            for export in args.exports:
                (Path(export) / "web" / "benchmark_photo.png").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
