// The photo -> model input step of `affinegan-tf generate`, in JavaScript.
//
// Python (affinegan_tf/data/video.py, square_resize) crops a square - the centre square, or a
// face box that may reach past the image, where border pixels are repeated - and resizes it with
// OpenCV: INTER_AREA when shrinking, INTER_CUBIC when enlarging. This file does the same on RGBA
// pixels so that the page feeds the model the pixels `generate` would (within rounding).

/** The largest centred square, as Python's square_resize picks it: {x, y, side}. */
export function centreBox(width, height) {
  const side = Math.min(width, height);
  return { x: Math.floor((width - side) / 2), y: Math.floor((height - side) / 2), side };
}

/**
 * Crops `box` out of an RGBA image (border pixels repeated outside) and resizes it to size x size.
 * @param {{width:number, height:number, data:Uint8ClampedArray}} image RGBA pixels.
 * @param {{x:number, y:number, side:number}} box The square to crop.
 * @param {number} size The model's side.
 * @returns {Uint8ClampedArray} RGB, size * size * 3.
 */
export function cropAndResize(image, box, size) {
  const x0 = Math.round(box.x);
  const y0 = Math.round(box.y);
  const side = Math.round(box.side);
  if (side < 1) throw new Error(`crop box side must be >= 1, got ${side}`);
  if (x0 + side <= 0 || y0 + side <= 0 || x0 >= image.width || y0 >= image.height) {
    throw new Error(`crop box lies outside the ${image.width}x${image.height} image`);
  }
  const square = new Uint8ClampedArray(side * side * 3);
  for (let row = 0; row < side; row++) {
    const sourceRow = Math.min(Math.max(y0 + row, 0), image.height - 1);
    for (let col = 0; col < side; col++) {
      const sourceCol = Math.min(Math.max(x0 + col, 0), image.width - 1);
      const from = (sourceRow * image.width + sourceCol) * 4;
      const to = (row * side + col) * 3;
      square[to] = image.data[from];
      square[to + 1] = image.data[from + 1];
      square[to + 2] = image.data[from + 2];
    }
  }
  if (side === size) return square;
  return side > size ? resizeArea(square, side, size) : resizeCubic(square, side, size);
}

// Round half to even, like OpenCV's saturate_cast<uchar>(float) (cvRound).
function roundEven(value) {
  const rounded = Math.round(value);
  return Math.abs(value % 1) === 0.5 && rounded % 2 !== 0 ? rounded - 1 : rounded;
}

function clip(value) {
  return value < 0 ? 0 : value > 255 ? 255 : value;
}

// OpenCV's computeResizeAreaTab: (source index, weight) lists per output index.
function areaTable(source, target) {
  const scale = source / target;
  const table = [];
  for (let index = 0; index < target; index++) {
    const start = index * scale;
    const end = start + scale;
    const first = Math.ceil(start);
    const last = Math.floor(end);
    const cell = Math.min(scale, source - start);
    const entries = [];
    if (first - start > 1e-3) entries.push([first - 1, (first - start) / cell]);
    for (let position = first; position < last; position++) entries.push([position, 1 / cell]);
    if (end - last > 1e-3 && last < source) {
      entries.push([last, Math.min(Math.min(end - last, 1), cell) / cell]);
    }
    table.push(entries);
  }
  return table;
}

/** INTER_AREA shrink of a square RGB image (side -> size). */
export function resizeArea(square, side, size) {
  const table = areaTable(side, size);
  const scale = side / size;
  const integer = Math.abs(scale - Math.round(scale)) < Number.EPSILON;
  const out = new Uint8ClampedArray(size * size * 3);
  for (let row = 0; row < size; row++) {
    for (let col = 0; col < size; col++) {
      for (let channel = 0; channel < 3; channel++) {
        let sum = 0;
        for (const [sourceRow, rowWeight] of table[row]) {
          let rowSum = 0;
          for (const [sourceCol, colWeight] of table[col]) {
            rowSum += square[(sourceRow * side + sourceCol) * 3 + channel] * colWeight;
          }
          sum += rowSum * rowWeight;
        }
        // Integer factors take OpenCV's fast path: 2x2 adds 2 and shifts (round half up).
        const value = integer && Math.round(scale) === 2 ? Math.floor(sum + 0.5) : roundEven(sum);
        out[(row * size + col) * 3 + channel] = clip(value);
      }
    }
  }
  return out;
}

// OpenCV's interpolateCubic with A = -0.75, as 11-bit fixed point (INTER_RESIZE_COEF_SCALE).
function cubicTable(source, target) {
  const scale = source / target;
  const A = -0.75;
  const table = [];
  for (let index = 0; index < target; index++) {
    let position = (index + 0.5) * scale - 0.5;
    const base = Math.floor(position);
    const x = position - base;
    position = base;
    const c0 = ((A * (x + 1) - 5 * A) * (x + 1) + 8 * A) * (x + 1) - 4 * A;
    const c1 = ((A + 2) * x - (A + 3)) * x * x + 1;
    const c2 = ((A + 2) * (1 - x) - (A + 3)) * (1 - x) * (1 - x) + 1;
    const c3 = 1 - c0 - c1 - c2;
    const weights = [c0, c1, c2, c3].map((c) => Math.round(c * 2048));
    const indices = [-1, 0, 1, 2].map((k) => Math.min(Math.max(base + k, 0), source - 1));
    table.push([indices, weights]);
  }
  return table;
}

/** INTER_CUBIC enlargement of a square RGB image (side -> size), OpenCV's fixed-point maths. */
export function resizeCubic(square, side, size) {
  const table = cubicTable(side, size);
  const horizontal = new Int32Array(side * size * 3);
  for (let row = 0; row < side; row++) {
    for (let col = 0; col < size; col++) {
      const [indices, weights] = table[col];
      for (let channel = 0; channel < 3; channel++) {
        let sum = 0;
        for (let k = 0; k < 4; k++) sum += square[(row * side + indices[k]) * 3 + channel] * weights[k];
        horizontal[(row * size + col) * 3 + channel] = sum;
      }
    }
  }
  const out = new Uint8ClampedArray(size * size * 3);
  for (let row = 0; row < size; row++) {
    const [indices, weights] = table[row];
    for (let col = 0; col < size; col++) {
      for (let channel = 0; channel < 3; channel++) {
        let sum = 0;
        for (let k = 0; k < 4; k++) sum += horizontal[(indices[k] * size + col) * 3 + channel] * weights[k];
        out[(row * size + col) * 3 + channel] = clip(Math.floor((sum + (1 << 21)) / (1 << 22)));
      }
    }
  }
  return out;
}
