"""`export --formats web`: the static page runs the exported model in headless Chromium.

The page is served from 127.0.0.1 by Python's plain static server (no COOP / COEP headers, like
`python -m http.server`), and driven by Playwright for Python with Debian's `chromium` (never a
downloaded browser). Its frames must equal `affinegan-tf generate`'s PNG frames within 1.5 uint8
levels on average, through the JS API and through the visible controls.

Everything but the format parsing is marked slow (an export, a `generate` run and a browser: a
minute or two on 2 cores); .ci/run runs it, after installing chromium.
"""

from __future__ import annotations

import base64
import functools
import http.server
import io
import json
import os
import re
import threading
import zipfile
from pathlib import Path

import cli_helpers
import export_helpers
import imageio.v3 as iio
import numpy as np
import pytest

from affinegan_tf.errors import UserError
from affinegan_tf.export import exporter
from affinegan_tf.export.web import HEADLESS_CHROMIUM_ARGS as CHROMIUM_ARGS

CHROMIUM = Path("/usr/bin/chromium")
INTENSITIES = [0.0, 0.5, 1.0]
# name -> (height, width): a landscape photo shrunk by 1.25 (INTER_AREA, uneven cells), a square
# one halved (OpenCV's 2x2 fast path), and a small portrait one enlarged (INTER_CUBIC).
PHOTOS = {"landscape": (80, 100), "halved": (128, 128), "small": (44, 40)}
MEAN_LEVELS = 1.5


def _photo(size: tuple[int, int], seed: int) -> np.ndarray:
    height, width = size
    return export_helpers.face_image(max(size), seed)[:height, :width]


@pytest.fixture(scope="module")
def web_export(tmp_path_factory) -> Path:
    """An untrained `tiny` run exported to SavedModel (what `generate` uses) and web."""
    out = tmp_path_factory.mktemp("web_export") / "tiny"
    export_helpers.fresh_names()
    exporter.export_model(export_helpers.tiny_run(tmp_path_factory), out, ["savedmodel", "web"])
    photos = out / "web" / "photos"
    photos.mkdir()
    for seed, (name, size) in enumerate(PHOTOS.items()):
        iio.imwrite(photos / f"{name}.png", _photo(size, seed))
    return out


@pytest.fixture(scope="module")
def generated(web_export, tmp_path_factory) -> dict[str, np.ndarray]:
    """`affinegan-tf generate` PNG frames at INTENSITIES, per photo: uint8 [N, S, S, 3]."""
    out = tmp_path_factory.mktemp("generated")
    cli_helpers.run_cli(
        "generate",
        "--model",
        str(web_export),
        "--image",
        str(web_export / "web" / "photos"),
        "--intensities",
        ",".join(str(value) for value in INTENSITIES),
        "--format",
        "png",
        "--out",
        f"{out}{os.sep}",
        cwd=out,
    )
    return {
        name: np.stack([iio.imread(path) for path in sorted((out / name).glob("*.png"))])
        for name in PHOTOS
    }


def _chromium():
    """Playwright's sync API and Debian's chromium, or a skip saying why (a failure in CI)."""
    reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "Playwright for Python is not installed (pip install '.[test]')"
    if reason is None and not CHROMIUM.is_file():
        reason = f"{CHROMIUM} is missing: apt-get install chromium (.ci/run installs it)"
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser test: {reason}")
        pytest.skip(reason)
    return sync_playwright


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *arguments):
        pass


@pytest.fixture(scope="module")
def site(web_export):
    """(browser, page URL): web/ served on 127.0.0.1 (a free port), headless Debian chromium."""
    sync_playwright = _chromium()
    handler = functools.partial(_QuietHandler, directory=str(web_export / "web"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            yield browser, f"http://127.0.0.1:{server.server_address[1]}/index.html"
            browser.close()
    finally:
        server.shutdown()
        server.server_close()


def _open(site, query: str = ""):
    """A fresh browser context (no service worker registered yet) with the page loaded."""
    browser, url = site
    web_page = browser.new_context(accept_downloads=True).new_page()
    web_page.errors = []
    web_page.on("pageerror", lambda error: web_page.errors.append(str(error)))
    web_page.goto(url + query)
    # The service worker reloads the page once to add the isolation headers.
    web_page.wait_for_function(
        "() => document.body && ['idle', 'failed'].includes(document.body.dataset.state)",
        timeout=180_000,
    )
    return web_page


@pytest.fixture(scope="module")
def page(site):
    return _open(site)


def _frames(page, script: str, *arguments) -> np.ndarray:
    """Runs `script` (resolving to {width, height, frames}) and returns uint8 [N, H, W, 4]."""
    result = page.evaluate(
        f"""async (args) => {{
            const result = await ({script})(...args);
            const encode = (rgba) => {{
                let text = '';
                for (let i = 0; i < rgba.length; i += 8192)
                    text += String.fromCharCode(...rgba.subarray(i, i + 8192));
                return btoa(text);
            }};
            return {{ width: result.width, height: result.height,
                      frames: result.frames.map(encode) }};
        }}""",
        list(arguments),
    )
    shape = (result["height"], result["width"], 4)
    return np.stack(
        [
            np.frombuffer(base64.b64decode(item), np.uint8).reshape(shape)
            for item in result["frames"]
        ]
    )


def _mean_levels(first, second) -> float:
    return float(np.mean(np.abs(np.asarray(first, float) - np.asarray(second, float))))


def test_all_formats_include_web_and_the_default_does_not():
    assert exporter._check_formats(["all"]) == ["savedmodel", "tflite", "onnx", "web"]
    assert exporter._check_formats(None) == ["savedmodel", "tflite", "onnx"]
    assert exporter._check_formats(["web", "ONNX"]) == ["web", "onnx"]
    with pytest.raises(UserError, match="or all"):
        exporter._check_formats(["html"])


@pytest.mark.slow
def test_web_folder_is_self_contained(web_export):
    web = web_export / "web"
    manifest = json.loads((web_export / "manifest.json").read_text())
    assert manifest["formats"] == ["savedmodel", "web"]
    paths = {entry["path"] for entry in manifest["files"]}
    for name in (
        "index.html",
        "model.json",
        "VENDORED.md",
        "models/encode.onnx",
        "models/decode.onnx",
        "vendor/onnxruntime-web/ort-wasm-simd-threaded.wasm",
        "vendor/onnxruntime-web/LICENSE",
        "vendor/gifenc/LICENSE.md",
    ):
        assert f"web/{name}" in paths
    [pair] = [item for item in manifest["parity"] if item["path"].startswith("web/")]
    assert pair["passed"] and pair["max_abs_difference"] <= 1e-4
    model = json.loads((web / "model.json").read_text())
    assert model["image_size"] == 64
    assert model["files"] == {"encode": "models/encode.onnx", "decode": "models/decode.onnx"}
    # Nothing is loaded from another host: every import and src is a relative path.
    references = [
        reference
        for source in [web / "index.html", *web.glob("*.js")]
        for reference in re.findall(
            r"""(?:src=|href=|from |import\(|fetch\(|register\()\s*["']([^"']+)""",
            source.read_text(),
        )
    ]
    assert {"affinegan.js", "./vendor/onnxruntime-web/ort.wasm.min.mjs", "model.json"} <= set(
        references
    )
    assert not [item for item in references if re.match(r"^(?:[a-z][a-z0-9+.-]*:)?//", item)]


@pytest.mark.slow
def test_page_loads_isolated_with_two_threads(page):
    info = page.evaluate("() => window.affinegan.ready")
    assert page.errors == []
    assert info["imageSize"] == 64
    # python's static server sends no COOP/COEP: the page's service worker added them.
    assert info["crossOriginIsolated"] is True
    assert info["threads"] == 2 or info["threads"] == min(os.cpu_count() or 1, 4)


@pytest.mark.slow
def test_page_without_service_worker_runs_on_one_thread(site, generated):
    """Where no service worker can add COOP/COEP (`?nosw=1` stands in), 1 thread, same frames."""
    web_page = _open(site, "?nosw=1")
    info = web_page.evaluate("() => window.affinegan.ready")
    assert info["crossOriginIsolated"] is False and info["threads"] == 1
    frames = _frames(web_page, "window.affinegan.frames", "photos/halved.png", INTENSITIES)
    assert _mean_levels(frames[..., :3], generated["halved"]) <= MEAN_LEVELS
    assert web_page.errors == []
    web_page.context.close()


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PHOTOS))
def test_api_frames_match_generate(page, generated, name):
    frames = _frames(page, "window.affinegan.frames", f"photos/{name}.png", INTENSITIES)
    assert frames.shape == (len(INTENSITIES), 64, 64, 4)
    assert (frames[..., 3] == 255).all()
    reference = generated[name]
    assert _mean_levels(frames[..., :3], reference) <= MEAN_LEVELS
    # The frames differ from one another, so the comparison above is not of blank images.
    assert _mean_levels(reference[0], reference[-1]) > 2 * MEAN_LEVELS


@pytest.mark.slow
def test_api_crop_box_matches_python_square_resize(page, web_export):
    """A face box reaching past the image: border pixels repeated, as square_resize does."""
    from affinegan_tf.data.images import read_image
    from affinegan_tf.data.square import square_resize
    from affinegan_tf.export.backends import load_backend

    box = {"x": -10, "y": 20, "side": 70}
    image = read_image(web_export / "web" / "photos" / "landscape.png")
    face = square_resize(image, 64, (box["x"], box["y"], box["side"]))
    reference = load_backend(web_export).generate(face, INTENSITIES)
    frames = _frames(
        page,
        "(url, values, box) => window.affinegan.frames(url, values, { box })",
        "photos/landscape.png",
        INTENSITIES,
        box,
    )
    assert _mean_levels(frames[..., :3], reference) <= MEAN_LEVELS


@pytest.mark.slow
def test_api_gif_has_the_requested_frames(page, generated):
    values = [0.0, 0.25, 0.5, 0.75, 1.0]
    data = page.evaluate(
        """async (values) => {
            const bytes = await window.affinegan.gif('photos/landscape.png', values, 5);
            let text = '';
            for (const byte of bytes) text += String.fromCharCode(byte);
            return btoa(text);
        }""",
        values,
    )
    gif = iio.imread(io.BytesIO(base64.b64decode(data)), index=None, extension=".gif")
    assert gif.shape[:3] == (len(values), 64, 64)
    # 256-colour palettes cost a few levels, no more.
    assert _mean_levels(gif[[0, 2, 4], ..., :3], generated["landscape"]) <= 4


@pytest.mark.slow
def test_visible_controls_make_the_same_frames(page, web_export, generated, tmp_path):
    """File input, intensity slider, save GIF and save frames, as a person would use them."""
    idle = "() => document.body.dataset.state === 'idle'"
    page.set_input_files("#photo", str(web_export / "web" / "photos" / "small.png"))
    page.wait_for_function("() => document.getElementById('result').dataset.intensity")
    page.wait_for_function(idle)
    for index, value in enumerate(INTENSITIES):
        page.fill("#intensity", str(value))
        page.wait_for_function(
            f"() => document.getElementById('result').dataset.intensity === '{value:g}'"
        )
        page.wait_for_function(idle)
        shown = _frames(
            page,
            """() => {
                const canvas = document.getElementById('result');
                const pixels = canvas.getContext('2d').getImageData(0, 0, 64, 64);
                return { width: 64, height: 64, frames: [pixels.data] };
            }""",
        )[0]
        assert _mean_levels(shown[..., :3], generated["small"][index]) <= MEAN_LEVELS
    page.fill("#frame-count", "3")
    page.fill("#intensity", "1")
    page.wait_for_function(idle)
    with page.expect_download() as download:
        page.click("#save-gif")
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    gif = iio.imread(path, index=None)
    assert path.suffix == ".gif" and gif.shape[:3] == (3, 64, 64)
    assert _mean_levels(gif[..., :3], generated["small"]) <= 4
    page.wait_for_function(idle)
    with page.expect_download() as download:
        page.click("#save-frames")
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        frames = np.stack([iio.imread(archive.read(name))[..., :3] for name in names])
    assert names == ["frame_0000.png", "frame_0001.png", "frame_0002.png"]
    assert _mean_levels(frames, generated["small"]) <= MEAN_LEVELS
    assert page.errors == []
