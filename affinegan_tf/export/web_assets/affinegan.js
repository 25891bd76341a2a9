// window.affinegan: photo -> expression frames and GIFs with the exported encode / decode ONNX
// models, run by ONNX Runtime Web (wasm) entirely in this browser. The page's controls (app.js)
// and the tests use only this API.
import * as ort from './vendor/onnxruntime-web/ort.wasm.min.mjs';
import { GIFEncoder, quantize, applyPalette } from './vendor/gifenc/gifenc.esm.js';
import { centreBox, cropAndResize } from './resize.js';

const parameters = new URLSearchParams(location.search);

/** How many wasm threads: 1 without cross-origin isolation (no SharedArrayBuffer). */
function chooseThreads() {
  if (!self.crossOriginIsolated) return 1;
  const asked = Number(parameters.get('threads'));
  if (asked >= 1) return Math.floor(asked);
  return Math.max(1, Math.min(navigator.hardwareConcurrency || 1, 4));
}

async function loadModel() {
  const response = await fetch('model.json');
  if (!response.ok) throw new Error(`model.json: HTTP ${response.status}`);
  const model = await response.json();
  ort.env.wasm.wasmPaths = new URL('vendor/onnxruntime-web/', location.href).href;
  ort.env.wasm.numThreads = chooseThreads();
  ort.env.wasm.proxy = false;
  // Idle worker threads sleep instead of spinning: on a busy 2-core machine spinning made 2
  // threads 4x slower than 1 at 64 x 64 (README, In the browser).
  const options = {
    executionProviders: ['wasm'],
    graphOptimizationLevel: 'all',
    extra: { session: { intra_op: { allow_spinning: '0' } } },
  };
  const [encode, decode] = await Promise.all([
    ort.InferenceSession.create(model.files.encode, options),
    ort.InferenceSession.create(model.files.decode, options),
  ]);
  return {
    model,
    encode,
    decode,
    info: {
      imageSize: model.image_size,
      backend: 'onnxruntime-web wasm',
      threads: ort.env.wasm.numThreads,
      crossOriginIsolated: Boolean(self.crossOriginIsolated),
      intensityRange: model.intensity_slider,
    },
  };
}

// isolate.js decides first whether the page reloads under the service worker's headers.
const loading = (window.affineganIsolation || Promise.resolve()).then(loadModel);

/** Decodes an image (URL, Blob or File) to RGBA pixels, EXIF orientation applied, no colour
 * conversion (OpenCV's imread does none either). */
export async function readPixels(source) {
  const blob = source instanceof Blob ? source : await (await fetch(source)).blob();
  const bitmap = await createImageBitmap(blob, {
    imageOrientation: 'from-image',
    premultiplyAlpha: 'none',
    colorSpaceConversion: 'none',
  });
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const context = canvas.getContext('2d', { willReadFrequently: true });
  context.drawImage(bitmap, 0, 0);
  const pixels = context.getImageData(0, 0, bitmap.width, bitmap.height);
  bitmap.close();
  return pixels;
}

/** The model's input tensor [1, S, S, 3] in [0, 1] from RGBA pixels and a square crop box. */
function faceTensor(pixels, box, size) {
  const rgb = cropAndResize(pixels, box || centreBox(pixels.width, pixels.height), size);
  const values = new Float32Array(rgb.length);
  for (let index = 0; index < rgb.length; index++) values[index] = rgb[index] / 255;
  return new ort.Tensor('float32', values, [1, size, size, 3]);
}

/** float [1, S, S, 3] in [0, 1] -> RGBA bytes (clip, * 255, round: export's to_uint8). */
function toRgba(frame, size) {
  const rgba = new Uint8ClampedArray(size * size * 4);
  for (let pixel = 0; pixel < size * size; pixel++) {
    for (let channel = 0; channel < 3; channel++) {
      const value = frame[pixel * 3 + channel];
      rgba[pixel * 4 + channel] = Math.round(Math.min(Math.max(value, 0), 1) * 255);
    }
    rgba[pixel * 4 + 3] = 255;
  }
  return rgba;
}

/**
 * Encodes one photo (once); the returned object decodes frames at any intensity.
 * @param {string|Blob} source Image URL, Blob or File.
 * @param {{x:number, y:number, side:number}} [box] Square crop (default: the centre square).
 */
export async function encodePhoto(source, box) {
  const { encode, decode, model } = await loading;
  const size = model.image_size;
  const pixels = source instanceof ImageData ? source : await readPixels(source);
  const features = await encode.run({ image: faceTensor(pixels, box, size) });
  let queue = Promise.resolve();
  return {
    width: size,
    height: size,
    /** RGBA Uint8ClampedArray of the frame at `intensity` (runs serialised). */
    frame(intensity) {
      const run = queue.then(async () => {
        const inputs = { ...features, intensity: new ort.Tensor('float32', [intensity], [1]) };
        const output = await decode.run(inputs);
        return toRgba(output.frames.data, size);
      });
      queue = run.catch(() => undefined);
      return run;
    },
  };
}

async function frames(source, intensities, options = {}) {
  const encoded = await encodePhoto(source, options.box);
  const list = [];
  for (const intensity of intensities) list.push(await encoded.frame(Number(intensity)));
  return { width: encoded.width, height: encoded.height, frames: list };
}

/** An animated, looping GIF (gifenc, one palette per frame) of RGBA frames. */
export function encodeGif(result, fps = 10) {
  const encoder = GIFEncoder();
  const delay = 1000 / fps;
  for (const rgba of result.frames) {
    const palette = quantize(rgba, 256);
    const indexed = applyPalette(rgba, palette);
    encoder.writeFrame(indexed, result.width, result.height, { palette, delay, repeat: 0 });
  }
  encoder.finish();
  return encoder.bytes();
}

async function gif(source, intensities, fps = 10, options = {}) {
  return encodeGif(await frames(source, intensities, options), fps);
}

/** Times encode and decode on one photo after a warm-up (wasm code tiers up over the first
 * calls): {encodeMs, decodeMsMedian, decodeMsMean, frames, threads}. */
async function benchmark(source, repeats = 10) {
  const { info } = await loading;
  const pixels = await readPixels(source);
  const warm = await encodePhoto(pixels);
  for (let index = 0; index < 3; index++) await warm.frame(index / 3);
  const started = performance.now();
  const encoded = await encodePhoto(pixels);
  const encodeMs = performance.now() - started;
  const times = [];
  for (let index = 0; index < repeats; index++) {
    const frameStarted = performance.now();
    await encoded.frame(index / repeats);
    times.push(performance.now() - frameStarted);
  }
  const sorted = [...times].sort((a, b) => a - b);
  return {
    encodeMs,
    decodeMsMedian: sorted[Math.floor(sorted.length / 2)],
    decodeMsMean: times.reduce((total, time) => total + time, 0) / times.length,
    frames: repeats,
    threads: info.threads,
  };
}

window.affinegan = {
  ready: loading.then((loaded) => loaded.info),
  frames,
  gif,
  benchmark,
  encodePhoto,
  readPixels,
  encodeGif,
};
