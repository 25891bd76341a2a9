// The page's controls, on top of window.affinegan (affinegan.js): pick or take a photo, place the
// square crop, drag the intensity slider (encode once per photo and crop, decode per position),
// save a GIF or the frames as PNGs. document.body.dataset.state is "busy" while working.
import './affinegan.js';
import { centreBox } from './resize.js';
import { zipStored } from './zip.js';

const $ = (id) => document.getElementById(id);
const api = window.affinegan;
const state = { pixels: null, bitmap: null, box: null, encoded: null, wanted: null, showing: null };

function setStatus(text) {
  $('status').textContent = text;
}

function setBusy(busy) {
  document.body.dataset.state = busy ? 'busy' : 'idle';
}

function download(bytes, name, type) {
  const url = URL.createObjectURL(new Blob([bytes], { type }));
  const link = document.createElement('a');
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// ------------------------------------------------------------------------------- crop box

function drawSource() {
  const canvas = $('source');
  const context = canvas.getContext('2d');
  context.clearRect(0, 0, canvas.width, canvas.height);
  if (!state.bitmap) return;
  const scale = Math.min(canvas.width / state.pixels.width, canvas.height / state.pixels.height);
  context.drawImage(state.bitmap, 0, 0, state.pixels.width * scale, state.pixels.height * scale);
  const { x, y, side } = state.box;
  context.strokeStyle = '#ff3b30';
  context.lineWidth = 2;
  context.strokeRect(x * scale, y * scale, side * scale, side * scale);
  state.scale = scale;
}

function boxFromSize(centreX, centreY) {
  const { width, height } = state.pixels;
  const side = Math.max(1, Math.round((Math.min(width, height) * $('crop-size').value) / 100));
  if ($('crop-size').value === '100' && centreX === undefined) return centreBox(width, height);
  const clamp = (value, limit) => Math.min(Math.max(value, 0), Math.max(limit - side, 0));
  return {
    x: Math.round(clamp(centreX - side / 2, width)),
    y: Math.round(clamp(centreY - side / 2, height)),
    side,
  };
}

async function detectFace() {
  // The Shape Detection API, where the browser has it (e.g. Chrome on Android / macOS); the
  // square is 1.7 face sides, like --face-crop's margin of 0.35 on each side.
  if (!('FaceDetector' in window)) return null;
  try {
    const faces = await new window.FaceDetector({ maxDetectedFaces: 1 }).detect(state.bitmap);
    if (!faces.length) return null;
    const { x, y, width, height } = faces[0].boundingBox;
    const side = Math.round(Math.max(width, height) * 1.7);
    return { x: Math.round(x + width / 2 - side / 2), y: Math.round(y + height / 2 - side / 2), side };
  } catch {
    return null;
  }
}

// ------------------------------------------------------------------------------- model

async function encode() {
  setBusy(true);
  state.encoded = null;
  const started = performance.now();
  state.encoded = await api.encodePhoto(state.pixels, state.box);
  setStatus(`${state.info.status} | encoded in ${(performance.now() - started).toFixed(0)} ms`);
  state.showing = null;
  await showIntensity();
}

async function showIntensity() {
  // Slider moves arriving while a frame decodes are coalesced: only the latest is decoded next.
  const intensity = Number($('intensity').value);
  $('intensity-value').textContent = intensity.toFixed(2);
  state.wanted = intensity;
  if (!state.encoded || state.decoding) return;
  state.decoding = true;
  setBusy(true);
  try {
    while (state.encoded && state.wanted !== state.showing) {
      const target = state.wanted;
      const started = performance.now();
      const rgba = await state.encoded.frame(target);
      const result = $('result');
      result.getContext('2d').putImageData(new ImageData(rgba, result.width, result.height), 0, 0);
      result.dataset.intensity = String(target);
      state.showing = target;
      setStatus(`${state.info.status} | frame in ${(performance.now() - started).toFixed(0)} ms`);
    }
  } finally {
    state.decoding = false;
    setBusy(false);
  }
}

function sweep() {
  const count = Math.max(1, Math.floor(Number($('frame-count').value) || 16));
  const top = Number($('intensity').value);
  if (count === 1) return [top];
  return Array.from({ length: count }, (_, index) => (top * index) / (count - 1));
}

async function renderSweep() {
  setBusy(true);
  const frames = [];
  for (const intensity of sweep()) frames.push(await state.encoded.frame(intensity));
  return { width: state.encoded.width, height: state.encoded.height, frames };
}

async function pngBytes(rgba, size) {
  const canvas = new OffscreenCanvas(size, size);
  canvas.getContext('2d').putImageData(new ImageData(rgba, size, size), 0, 0);
  const blob = await canvas.convertToBlob({ type: 'image/png' });
  return new Uint8Array(await blob.arrayBuffer());
}

// ------------------------------------------------------------------------------- wiring

async function choosePhoto(file) {
  setBusy(true);
  try {
    state.pixels = await api.readPixels(file);
    state.bitmap?.close();
    state.bitmap = await createImageBitmap(file, { imageOrientation: 'from-image' });
    $('crop-size').value = '100';
    state.box = (await detectFace()) || centreBox(state.pixels.width, state.pixels.height);
    drawSource();
    await encode();
    $('save-gif').disabled = false;
    $('save-frames').disabled = false;
  } catch (error) {
    setStatus(`Cannot use this photo: ${error.message}`);
    setBusy(false);
  }
}

function wireCrop() {
  const canvas = $('source');
  let dragging = false;
  const centreAt = (event) => {
    const bounds = canvas.getBoundingClientRect();
    const scale = state.scale * (bounds.width / canvas.width);
    return [(event.clientX - bounds.left) / scale, (event.clientY - bounds.top) / scale];
  };
  canvas.addEventListener('pointerdown', (event) => {
    if (!state.pixels) return;
    dragging = true;
    canvas.setPointerCapture(event.pointerId);
    state.box = boxFromSize(...centreAt(event));
    drawSource();
  });
  canvas.addEventListener('pointermove', (event) => {
    if (!dragging) return;
    state.box = boxFromSize(...centreAt(event));
    drawSource();
  });
  canvas.addEventListener('pointerup', () => {
    if (!dragging) return;
    dragging = false;
    encode();
  });
  $('crop-size').addEventListener('change', () => {
    if (!state.pixels) return;
    const { x, y, side } = state.box;
    state.box = boxFromSize(x + side / 2, y + side / 2);
    drawSource();
    encode();
  });
}

async function main() {
  setBusy(true);
  try {
    state.info = await api.ready;
  } catch (error) {
    setStatus(`The model did not load: ${error.message}`);
    document.body.dataset.state = 'failed';
    return;
  }
  const threads = `${state.info.threads} thread${state.info.threads > 1 ? 's' : ''}`;
  const isolation = state.info.crossOriginIsolated ? '' : ' (no cross-origin isolation)';
  state.info.status = `${state.info.imageSize}x${state.info.imageSize} model, ${state.info.backend}, ${threads}${isolation}`;
  setStatus(`${state.info.status} | choose a photo`);
  const [low, high] = state.info.intensityRange;
  Object.assign($('intensity'), { min: String(low), max: String(high) });
  $('result').width = state.info.imageSize;
  $('result').height = state.info.imageSize;
  $('photo').addEventListener('change', (event) => {
    if (event.target.files.length) choosePhoto(event.target.files[0]);
  });
  $('intensity').addEventListener('input', showIntensity);
  $('save-gif').addEventListener('click', async () => {
    const result = await renderSweep();
    download(api.encodeGif(result, Number($('fps').value) || 10), 'expression.gif', 'image/gif');
    setBusy(false);
  });
  $('save-frames').addEventListener('click', async () => {
    const result = await renderSweep();
    const files = [];
    for (const [index, rgba] of result.frames.entries()) {
      const name = `frame_${String(index).padStart(4, '0')}.png`;
      files.push({ name, bytes: await pngBytes(rgba, result.width) });
    }
    download(zipStored(files), 'expression_frames.zip', 'application/zip');
    setBusy(false);
  });
  wireCrop();
  setBusy(false);
}

main();
