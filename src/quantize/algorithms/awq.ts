// Activation-aware weight quantization (AWQ, Lin et al. 2023, "AWQ: Activation-aware Weight Quantization
// for LLM Compression and Acceleration"): a few input channels carry most of the activation energy, and
// their weights matter most. Scaling those weight columns up by s_j = mean|x_j|^alpha before block-wise
// quantization gives them a finer effective step; the grid search over alpha keeps the trade-off honest
// by measuring the layer's output error under the calibration statistics, and alpha = 0 is plain RTN.
//
// CONTRACT WITH THE EMITTER: the returned `q` quantizes W * diag(s) (row r, column j multiplied by
// s_j = channelScales[j]). The graph stays equivalent only if the MatMul's input is multiplied by
// `inverseScales` (= fround(1 / s_j), float32, shape [k]) first: y = (x * inverseScales) @ dequant(q)^T.
// Insert a Mul on the activation (or fold it into the producer: a LayerNorm's gamma/beta or the previous
// MatMul's output columns, at float32 rounding cost). The error reported here is computed with exactly
// those float32 inverse scales.
//
// Error measure: sum over output rows of d^T H d with d_j = w_j - deq_j / s_j, H = E[x x^T] when the Gram
// matrix is given, else diag(E[x^2]) (cross-channel terms ignored).

import { dequantizeBlockwise, type BlockwiseQuantized, type BlockwiseSpec } from "../blockwise.js";
import { activeKernels } from "../../kernels/active.js";
import { sumQuadraticForms } from "./linalg.js";

export interface AwqStats {
  /** Per input channel mean |x|, length k. */
  readonly meanAbs: Float64Array;
  /** Per input channel E[x^2], length k. */
  readonly meanSquare: Float64Array;
  /** E[x x^T], k*k, optional. */
  readonly gram?: Float64Array;
}

export interface AwqOptions {
  /** Grid points: alpha = i / grid for i = 0..grid-1 (AWQ's n_grid = 20, so alpha in [0, 0.95]). */
  readonly grid?: number;
  /**
   * How s is normalized: "minmax" divides by sqrt(max(s) * min(s)) (AWQ's code), "geomean" by the
   * geometric mean. Either leaves the product of scales near 1 so weights stay in range.
   */
  readonly normalize?: "minmax" | "geomean";
  /**
   * Output rows used during the search and for the reported errors (rows floor(i * n / searchRows)).
   * Block-wise quantization is row-independent, so this is exact for those rows. Default: all rows.
   * With a Gram matrix each grid point costs searchRows * k^2 / 2, so large layers want a cap
   * (k = 1024: 256 rows and 20 grid points take a few seconds on one core).
   */
  readonly searchRows?: number;
  /** Use only the diagonal of the statistics even when a Gram matrix is given. */
  readonly diagonalOnly?: boolean;
  /** Threads for the error sums in the C kernels (default 1; the result does not depend on it). */
  readonly threads?: number;
}

export type BlockwiseQuantizeFn = (wT: Float32Array, n: number, k: number, spec: BlockwiseSpec) => BlockwiseQuantized;

export interface AwqResult {
  readonly alpha: number;
  /** s, length k, float32. */
  readonly channelScales: Float32Array;
  /** fround(1 / s), length k: what the emitter multiplies the activation by. */
  readonly inverseScales: Float32Array;
  /** Quantization of W * diag(s), [n][k] block-wise. */
  readonly q: BlockwiseQuantized;
  /** Output error of the chosen alpha, summed over `errorRows` output rows. */
  readonly error: number;
  /** Output error of plain quantization (alpha = 0), the same rows. */
  readonly errorRtn: number;
  /** Output rows the errors are summed over (n unless searchRows was set). */
  readonly errorRows: number;
  /** The search curve (on the search rows). */
  readonly curve: readonly { alpha: number; error: number }[];
}

const f = Math.fround;

/** AWQ's per-channel scales for one alpha (float32), and their float32 inverses. */
export function awqChannelScales(
  meanAbs: Float64Array,
  alpha: number,
  normalize: "minmax" | "geomean" = "minmax",
): { scales: Float32Array; inverse: Float32Array } {
  const k = meanAbs.length;
  let max = 0;
  for (let j = 0; j < k; j++) if (meanAbs[j]! > max) max = meanAbs[j]!;
  const scales = new Float32Array(k).fill(1);
  const inverse = new Float32Array(k).fill(1);
  if (!(max > 0) || alpha === 0) return { scales, inverse };
  const floor = max * 1e-4; // dead channels: keep them finite and scale-invariant
  const s = new Float64Array(k);
  let lo = Infinity;
  let hi = 0;
  let logSum = 0;
  for (let j = 0; j < k; j++) {
    s[j] = Math.max(meanAbs[j]!, floor) ** alpha;
    lo = Math.min(lo, s[j]!);
    hi = Math.max(hi, s[j]!);
    logSum += Math.log(s[j]!);
  }
  const norm = normalize === "geomean" ? Math.exp(logSum / k) : Math.sqrt(hi * lo);
  for (let j = 0; j < k; j++) {
    scales[j] = f(s[j]! / norm);
    inverse[j] = f(1 / scales[j]!);
  }
  return { scales, inverse };
}

function pickRows(wT: Float32Array, n: number, k: number, rows: number): Float32Array {
  if (rows >= n) return wT;
  const out = new Float32Array(rows * k);
  for (let i = 0; i < rows; i++) {
    const r = Math.floor((i * n) / rows);
    out.set(wT.subarray(r * k, (r + 1) * k), i * k);
  }
  return out;
}

/** The quantization of the scaled rows and the rows' error W - Q(W s) / s (float64 [rows][k]), written into `d`. */
function scaledDifference(
  wT: Float32Array,
  rows: number,
  k: number,
  spec: BlockwiseSpec,
  quantize: BlockwiseQuantizeFn,
  scales: Float32Array,
  inverse: Float32Array,
  d: Float64Array,
): BlockwiseQuantized {
  const ws = new Float32Array(rows * k);
  for (let r = 0; r < rows; r++) for (let j = 0; j < k; j++) ws[r * k + j] = f(wT[r * k + j]! * scales[j]!);
  const q = quantize(ws, rows, k, spec);
  const deq = dequantizeBlockwise(q);
  for (let r = 0; r < rows; r++) for (let j = 0; j < k; j++) d[r * k + j] = wT[r * k + j]! - deq[r * k + j]! * inverse[j]!;
  return q;
}

/**
 * The output error of every grid point: each is sumQuadraticForms(h, d_alpha); with a Gram matrix and the
 * kernels loaded, grid points go to the kernels in batches (one pass over H per batch, the same sums).
 */
function gridErrors(
  wT: Float32Array,
  rows: number,
  k: number,
  spec: BlockwiseSpec,
  quantize: BlockwiseQuantizeFn,
  points: readonly { scales: Float32Array; inverse: Float32Array }[],
  h: Float64Array,
  threads: number,
): { q: BlockwiseQuantized; error: number }[] {
  const raw = activeKernels();
  const batched = raw?.sumQuadraticFormsSegments && h.length === k * k && k > 1 && rows % 8 === 0;
  // At most 2^24 float64 differences per batch (128 MiB), at least one grid point.
  const batch = batched ? Math.max(1, Math.min(points.length, Math.floor(2 ** 24 / (rows * k)))) : 1;
  const out: { q: BlockwiseQuantized; error: number }[] = [];
  for (let p0 = 0; p0 < points.length; p0 += batch) {
    const count = Math.min(batch, points.length - p0);
    const d = new Float64Array(count * rows * k);
    const qs = points
      .slice(p0, p0 + count)
      .map((p, i) => scaledDifference(wT, rows, k, spec, quantize, p.scales, p.inverse, d.subarray(i * rows * k, (i + 1) * rows * k)));
    if (batched && raw?.sumQuadraticFormsSegments) {
      const errors = new Float64Array(count);
      raw.sumQuadraticFormsSegments(h, d, count * rows, k, rows, errors, threads);
      qs.forEach((q, i) => out.push({ q, error: errors[i]! }));
    } else qs.forEach((q, i) => out.push({ q, error: sumQuadraticForms(h, d.subarray(i * rows * k, (i + 1) * rows * k), rows, k, threads) }));
  }
  return out;
}

export function awqSearch(
  wT: Float32Array,
  n: number,
  k: number,
  stats: AwqStats,
  spec: BlockwiseSpec,
  quantize: BlockwiseQuantizeFn,
  opts: AwqOptions = {},
): AwqResult {
  if (wT.length !== n * k) throw new RangeError(`awq: weight has ${wT.length} values, expected n*k = ${n * k}`);
  if (stats.meanAbs.length !== k || stats.meanSquare.length !== k)
    throw new RangeError(`awq: statistics have ${stats.meanAbs.length} channels, the weight has k = ${k}`);
  if (stats.gram && stats.gram.length !== k * k) throw new RangeError(`awq: Gram matrix has ${stats.gram.length} values, expected k*k = ${k * k}`);
  const grid = Math.max(1, Math.floor(opts.grid ?? 20));
  const normalize = opts.normalize ?? "minmax";
  const h = stats.gram && !opts.diagonalOnly ? stats.gram : stats.meanSquare;
  const searchRows = Math.max(1, Math.min(n, Math.floor(opts.searchRows ?? n)));
  const ws = pickRows(wT, n, k, searchRows);

  const curve: { alpha: number; error: number }[] = [];
  let best = { alpha: 0, error: Infinity, q: undefined as BlockwiseQuantized | undefined };
  let rtn: { q: BlockwiseQuantized; error: number } | undefined;
  const points = Array.from({ length: grid }, (_, i) => awqChannelScales(stats.meanAbs, i / grid, normalize));
  const results = gridErrors(ws, searchRows, k, spec, quantize, points, h, Math.max(1, Math.floor(opts.threads ?? 1)));
  for (let i = 0; i < grid; i++) {
    const alpha = i / grid;
    const r = results[i]!;
    curve.push({ alpha, error: r.error });
    if (i === 0) rtn = r;
    if (r.error < best.error) best = { alpha, error: r.error, q: r.q };
  }
  const { scales, inverse } = awqChannelScales(stats.meanAbs, best.alpha, normalize);
  let q = best.q!;
  if (searchRows < n) {
    const ws = new Float32Array(n * k);
    const raw = activeKernels();
    if (raw?.scaleColumns) raw.scaleColumns(wT, n, k, scales, ws, Math.max(1, Math.floor(opts.threads ?? 1)));
    else for (let r = 0; r < n; r++) for (let j = 0; j < k; j++) ws[r * k + j] = f(wT[r * k + j]! * scales[j]!);
    q = quantize(ws, n, k, spec);
  }
  return { alpha: best.alpha, channelScales: scales, inverseScales: inverse, q, error: best.error, errorRtn: rtn!.error, errorRows: searchRows, curve };
}
