// Block-wise integer quantization: the TypeScript reference (oracle) of the C kernels.
// Arithmetic is float32 at every step (Math.fround), rounding is to nearest with ties away
// from zero (C's roundf), so the kernels in kernels/ can match it byte for byte.
// The per-element helpers (transpose, packBits, unpackBits, dequantizeBlockwise, weight error sums)
// run in the compiled kernels once loadKernels() has loaded them (src/kernels/active.ts); their
// TypeScript bodies stay here as the *Ref oracles the tests compare the kernels with.
import { activeKernels, freshBytes, freshFloat32 } from "../kernels/active.js";

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

/** Dequantize back to [n][k] float32 (in the kernels when loaded). */
export function dequantizeBlockwise(q: BlockwiseQuantized): Float32Array {
  const out = new Float32Array(q.n * q.k);
  const raw = activeKernels();
  if (raw && q.k > 0) raw.dequantizeCodes(q.codes, q.scales, q.zeroPoints, q.n, q.k, q.spec.blockSize, out, 1);
  else dequantizeCodesRef(q.codes, q.scales, q.zeroPoints, q.n, q.k, q.spec.blockSize, out);
  return out;
}

/** The TypeScript reference of dequantizeBlockwise. */
export function dequantizeBlockwiseRef(q: BlockwiseQuantized): Float32Array {
  const out = new Float32Array(q.n * q.k);
  dequantizeCodesRef(q.codes, q.scales, q.zeroPoints, q.n, q.k, q.spec.blockSize, out);
  return out;
}

/** out[n][k] = (code - zeroPoint) * scale from unpacked codes [n][blocksPerRow * blockSize]. */
export function dequantizeCodesRef(
  codes: Uint8Array,
  scales: Float32Array,
  zeroPoints: Uint8Array,
  n: number,
  k: number,
  blockSize: number,
  out: Float32Array,
): void {
  const blocksPerRow = Math.ceil(k / blockSize);
  for (let row = 0; row < n; row++) {
    for (let col = 0; col < k; col++) {
      const b = Math.floor(col / blockSize);
      const blockIndex = row * blocksPerRow + b;
      const code = codes[blockIndex * blockSize + (col % blockSize)]!;
      out[row * k + col] = f((code - zeroPoints[blockIndex]!) * scales[blockIndex]!);
    }
  }
}

/**
 * float64 error sums of d = w - deq over [n][k]: sums = [sum d^2, sum w^2, max |d|], and per column
 * sum d^2 (colErr) and sum w^2 (colNorm), in row-major element order (in the kernels when loaded).
 */
export function weightErrorSums(w: Float32Array, deq: Float32Array, n: number, k: number): { sums: Float64Array; colErr: Float64Array; colNorm: Float64Array } {
  const sums = new Float64Array(3);
  const colErr = new Float64Array(k);
  const colNorm = new Float64Array(k);
  const raw = activeKernels();
  if (raw && k > 0) raw.weightError(w, deq, n, k, sums, colErr, colNorm);
  else weightErrorRef(w, deq, n, k, sums, colErr, colNorm);
  return { sums, colErr, colNorm };
}

/** weightErrorSums(w, dequantizeBlockwise(q)) without the dequantized buffer (in the kernels when loaded). */
export function weightErrorSumsOfCodes(w: Float32Array, q: BlockwiseQuantized): { sums: Float64Array; colErr: Float64Array; colNorm: Float64Array } {
  const raw = activeKernels();
  if (!raw || q.k < 1 || w.length !== q.n * q.k) return weightErrorSums(w, dequantizeBlockwise(q), q.n, q.k);
  const sums = new Float64Array(3);
  const colErr = new Float64Array(q.k);
  const colNorm = new Float64Array(q.k);
  raw.weightErrorCodes(w, q.codes, q.scales, q.zeroPoints, q.n, q.k, q.spec.blockSize, sums, colErr, colNorm);
  return { sums, colErr, colNorm };
}

/** The TypeScript reference of weightErrorSums (outputs written into the given arrays). */
export function weightErrorRef(
  w: Float32Array,
  deq: Float32Array,
  n: number,
  k: number,
  sums: Float64Array,
  colErr: Float64Array,
  colNorm: Float64Array,
): void {
  let errSq = 0;
  let normSq = 0;
  let maxAbs = 0;
  colErr.fill(0, 0, k);
  colNorm.fill(0, 0, k);
  for (let row = 0; row < n; row++) {
    for (let col = 0; col < k; col++) {
      const v = w[row * k + col]!;
      const d = v - deq[row * k + col]!;
      errSq += d * d;
      normSq += v * v;
      colErr[col]! += d * d;
      colNorm[col]! += v * v;
      if (Math.abs(d) > maxAbs) maxAbs = Math.abs(d);
    }
  }
  sums[0] = errSq;
  sums[1] = normSq;
  sums[2] = maxAbs;
}

/**
 * quantizeBlockwiseRef with an importance per input channel (the clip search minimizes the weighted
 * error), in the kernels when loaded; byte-identical to the reference.
 */
export function quantizeBlockwiseWeighted(
  wT: Float32Array,
  n: number,
  k: number,
  spec: BlockwiseSpec,
  importance: Float32Array,
  threads = 1,
): BlockwiseQuantized {
  const raw = activeKernels();
  if (!raw || importance.length !== k || wT.length !== n * k || k < 1) return quantizeBlockwiseRef(wT, n, k, spec, importance);
  const blocksPerRow = Math.ceil(k / spec.blockSize);
  const codes = freshBytes(n * blocksPerRow * spec.blockSize, raw);
  const scales = new Float32Array(n * blocksPerRow);
  const zeroPoints = new Uint8Array(n * blocksPerRow);
  raw.quantizeIntWeighted(wT, n, k, spec.bits, spec.blockSize, spec.symmetric, spec.clipSearch, importance, codes, scales, zeroPoints, threads);
  return { spec, n, k, blocksPerRow, codes, scales, zeroPoints };
}

/** [rows][cols] -> [cols][rows] (in the kernels when loaded). */
export function transpose(w: Float32Array, rows: number, cols: number): Float32Array {
  const raw = activeKernels();
  if (!raw || w.length !== rows * cols) return transposeRef(w, rows, cols);
  const out = freshFloat32(rows * cols, raw);
  raw.transposeF32(w, rows, cols, out, 1);
  return out;
}

/** The TypeScript reference of transpose. */
export function transposeRef(w: Float32Array, rows: number, cols: number): Float32Array {
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
  const raw = activeKernels();
  if (!raw || !Number.isInteger(bits) || bits < 1 || bits > 8 || !(groupLength >= 1) || codes.length % groupLength !== 0)
    return packBitsRef(codes, bits, groupLength);
  const out = new Uint8Array((codes.length / groupLength) * Math.ceil((groupLength * bits) / 8));
  raw.packBits(codes, bits, groupLength, out);
  return out;
}

/** The TypeScript reference of packBits (bit by bit). */
export function packBitsRef(codes: Uint8Array, bits: number, groupLength: number): Uint8Array {
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
  const raw = activeKernels();
  if (!raw || !Number.isInteger(bits) || bits < 1 || bits > 8 || !(groupLength >= 1) || packed.length < groups * Math.ceil((groupLength * bits) / 8))
    return unpackBitsRef(packed, bits, groupLength, groups);
  const out = new Uint8Array(groups * groupLength);
  raw.unpackBits(packed, bits, groupLength, groups, out);
  return out;
}

/** The TypeScript reference of unpackBits. */
export function unpackBitsRef(packed: Uint8Array, bits: number, groupLength: number, groups: number): Uint8Array {
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
