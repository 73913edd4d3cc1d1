// Block-wise integer quantization: the TypeScript reference (oracle) of the C kernels.
// Arithmetic is float32 at every step (Math.fround), rounding is to nearest with ties away
// from zero (C's roundf), so the kernels in kernels/ can match it byte for byte.

export type IntBits = 2 | 3 | 4 | 8;

export interface BlockwiseSpec {
  readonly bits: IntBits;
  /** Weights per block along K (the reduction axis). */
  readonly blockSize: number;
  readonly symmetric: boolean;
  /** Search a per-block clip ratio that minimizes squared error (instead of plain absmax/minmax). */
  readonly clipSearch: boolean;
}

/**
 * Codes for a weight stored the way MatMulNBits reads it: N rows (output channels), each split
 * into blocks of `blockSize` along K. Codes are unsigned; value = (code - zeroPoint) * scale.
 */
export interface BlockwiseQuantized {
  readonly spec: BlockwiseSpec;
  readonly n: number;
  readonly k: number;
  readonly blocksPerRow: number;
  /** [n][blocksPerRow * blockSize] unpacked codes; padding past K holds the zero point. */
  readonly codes: Uint8Array;
  /** [n][blocksPerRow] */
  readonly scales: Float32Array;
  /** [n][blocksPerRow] unpacked zero points (2^(bits-1) when symmetric). */
  readonly zeroPoints: Uint8Array;
}

const f = Math.fround;

/** Round to nearest, ties away from zero (C roundf). */
export function roundHalfAway(x: number): number {
  return x < 0 ? -Math.floor(-x + 0.5) : Math.floor(x + 0.5);
}

/** Clip ratios tried by the MSE search, in order; the first best wins ties. */
export const CLIP_RATIOS: readonly number[] = Array.from({ length: 16 }, (_, i) => f(1 - i * 0.03125));

interface BlockParams {
  scale: number;
  zeroPoint: number;
}

function blockParams(w: Float32Array, start: number, end: number, bits: IntBits, symmetric: boolean, ratio: number): BlockParams {
  const qmax = (1 << bits) - 1;
  if (symmetric) {
    const mid = 1 << (bits - 1);
    // Signed extreme maps to code 0, so the full negative range is used (as ORT's quantizer does).
    let extreme = 0;
    for (let i = start; i < end; i++) {
      const v = w[i]!;
      if (Math.abs(v) > Math.abs(extreme)) extreme = v;
    }
    return { scale: f(f(extreme * ratio) / -mid), zeroPoint: mid };
  }
  let lo = 0;
  let hi = 0;
  for (let i = start; i < end; i++) {
    const v = w[i]!;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  lo = f(lo * ratio);
  hi = f(hi * ratio);
  const scale = f(f(hi - lo) / qmax);
  if (scale === 0) return { scale: 0, zeroPoint: 0 };
  const inv = f(1 / scale);
  const zp = Math.min(qmax, Math.max(0, roundHalfAway(f(-lo * inv))));
  return { scale, zeroPoint: zp };
}

function encodeBlock(
  w: Float32Array,
  start: number,
  end: number,
  p: BlockParams,
  qmax: number,
  out: Uint8Array,
  outStart: number,
  importance?: Float32Array,
  colStart = 0,
): number {
  const inv = p.scale === 0 ? 0 : f(1 / p.scale);
  let err = 0;
  for (let i = start; i < end; i++) {
    const v = w[i]!;
    const q = Math.min(qmax, Math.max(0, roundHalfAway(f(v * inv)) + p.zeroPoint));
    out[outStart + (i - start)] = q;
    const d = f(v - f((q - p.zeroPoint) * p.scale));
    const d2 = f(d * d);
    err = f(err + (importance ? f(importance[colStart + (i - start)]! * d2) : d2));
  }
  return err;
}

/**
 * Quantize a weight given as [n][k] row-major (that is, MatMul's B transposed).
 * Deterministic: the same input gives the same bytes.
 * @param importance per input channel (length k): the clip search then minimizes sum_k importance_k * err_k^2,
 *   the output error under activations with E[x_k^2] = importance_k (an importance matrix), instead of the
 *   plain weight error. Only the TypeScript path takes it; the kernels search the unweighted error.
 */
export function quantizeBlockwiseRef(wT: Float32Array, n: number, k: number, spec: BlockwiseSpec, importance?: Float32Array): BlockwiseQuantized {
  if (wT.length !== n * k) throw new RangeError(`weight has ${wT.length} values, expected n*k = ${n * k}`);
  const { bits, blockSize, symmetric } = spec;
  const qmax = (1 << bits) - 1;
  const blocksPerRow = Math.ceil(k / blockSize);
  const codes = new Uint8Array(n * blocksPerRow * blockSize);
  const scales = new Float32Array(n * blocksPerRow);
  const zeroPoints = new Uint8Array(n * blocksPerRow);
  const scratch = new Uint8Array(blockSize);
  const ratios = spec.clipSearch ? CLIP_RATIOS : [1];
  for (let row = 0; row < n; row++) {
    for (let b = 0; b < blocksPerRow; b++) {
      const start = row * k + b * blockSize;
      const end = row * k + Math.min(k, (b + 1) * blockSize);
      const blockIndex = row * blocksPerRow + b;
      const outStart = blockIndex * blockSize;
      let best = blockParams(wT, start, end, bits, symmetric, ratios[0]!);
      const colStart = b * blockSize;
      let bestErr = encodeBlock(wT, start, end, best, qmax, codes, outStart, importance, colStart);
      for (let r = 1; r < ratios.length; r++) {
        const p = blockParams(wT, start, end, bits, symmetric, ratios[r]!);
        const e = encodeBlock(wT, start, end, p, qmax, scratch, 0, importance, colStart);
        if (e < bestErr) {
          bestErr = e;
          best = p;
          codes.set(scratch.subarray(0, end - start), outStart);
        }
      }
      scales[blockIndex] = best.scale;
      zeroPoints[blockIndex] = best.zeroPoint;
      codes.fill(best.zeroPoint, outStart + (end - start), outStart + blockSize);
    }
  }
  return { spec, n, k, blocksPerRow, codes, scales, zeroPoints };
}

/** Dequantize back to [n][k] float32. */
export function dequantizeBlockwise(q: BlockwiseQuantized): Float32Array {
  const { n, k, blocksPerRow } = q;
  const { blockSize } = q.spec;
  const out = new Float32Array(n * k);
  for (let row = 0; row < n; row++) {
    for (let col = 0; col < k; col++) {
      const b = Math.floor(col / blockSize);
      const blockIndex = row * blocksPerRow + b;
      const code = q.codes[blockIndex * blockSize + (col % blockSize)]!;
      out[row * k + col] = f((code - q.zeroPoints[blockIndex]!) * q.scales[blockIndex]!);
    }
  }
  return out;
}

/** [rows][cols] -> [cols][rows]. */
export function transpose(w: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let c = 0; c < cols; c++) out[c * rows + r] = w[base + c]!;
  }
  return out;
}

/**
 * Pack codes LSB-first into `bits`-wide fields, `perGroup` codes per independent byte group
 * (MatMulNBits packs each block on its own, and each row of zero points on its own).
 */
export function packBits(codes: Uint8Array, bits: number, groupLength: number): Uint8Array {
  const groups = codes.length / groupLength;
  const groupBytes = Math.ceil((groupLength * bits) / 8);
  const out = new Uint8Array(groups * groupBytes);
  for (let g = 0; g < groups; g++) {
    let bitPos = 0;
    const base = g * groupBytes;
    for (let i = 0; i < groupLength; i++) {
      const v = codes[g * groupLength + i]!;
      for (let bit = 0; bit < bits; bit++, bitPos++) {
        if ((v >> bit) & 1) out[base + (bitPos >> 3)]! |= 1 << (bitPos & 7);
      }
    }
  }
  return out;
}

export function unpackBits(packed: Uint8Array, bits: number, groupLength: number, groups: number): Uint8Array {
  const groupBytes = Math.ceil((groupLength * bits) / 8);
  const out = new Uint8Array(groups * groupLength);
  for (let g = 0; g < groups; g++) {
    let bitPos = 0;
    for (let i = 0; i < groupLength; i++) {
      let v = 0;
      for (let bit = 0; bit < bits; bit++, bitPos++) {
        v |= ((packed[g * groupBytes + (bitPos >> 3)]! >> (bitPos & 7)) & 1) << bit;
      }
      out[g * groupLength + i] = v;
    }
  }
  return out;
}

/** The tensors of com.microsoft.MatMulNBits for a quantized weight. */
export interface MatMulNBitsTensors {
  /** uint8 [n][blocksPerRow][blockSize * bits / 8] */
  readonly b: Uint8Array;
  /** float32 [n * blocksPerRow] */
  readonly scales: Float32Array;
  /** uint8 [n][ceil(blocksPerRow * bits / 8)], absent when symmetric (ORT's default is 2^(bits-1)). */
  readonly zeroPoints: Uint8Array | undefined;
}

/** The MatMulNBits bit width that holds codes of `bits`: ORT runs 2, 4 and 8; int3 codes go in a 4-bit container. */
export function containerBits(bits: IntBits): 2 | 4 | 8 {
  return bits === 3 ? 4 : bits;
}

/**
 * MatMulNBits tensors. Codes narrower than the container keep their values (int3 codes 0..7 with
 * zero point 4 in a 4-bit container compute exactly the same products); the zero point is then always
 * stored, since ORT's default would be the container's midpoint.
 */
export function toMatMulNBits(q: BlockwiseQuantized): MatMulNBitsTensors {
  const { bits, blockSize, symmetric } = q.spec;
  const container = containerBits(bits);
  const needZeroPoints = !symmetric || container !== bits;
  return {
    b: packBits(q.codes, container, blockSize),
    scales: q.scales,
    zeroPoints: needZeroPoints ? packBits(q.zeroPoints, container, q.blocksPerRow) : undefined,
  };
}
