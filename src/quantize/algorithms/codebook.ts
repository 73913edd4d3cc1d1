// Learned per-tensor codebooks (<= 16 levels) for the "codebook" format: a weight is table[index] times
// its block's absmax. Two ways to choose the table:
// - `lloydMax`: Lloyd-Max (Lloyd 1957/1982, Max 1960), i.e. 1-D k-means, the MSE-optimal fixed-length
//   quantizer for the empirical distribution. Lloyd only finds a local optimum (heavy tails make that
//   visible), so by default it starts from the exact optimum over partitions of up to 8192 equal-count bins
//   (1-D k-means is solvable exactly by dynamic programming) and polishes on the raw values; quantile and
//   uniform starts are available.
// - `studentTGrid`: the cube-root rule (Panter-Dite 1951; used for block-scaled weights by "Optimal
//   Formats for Weight Quantisation", Orr et al. 2025): for many levels the MSE-optimal point density is
//   proportional to p(x)^(1/3), so levels sit at the quantiles of p^(1/3). p is a Student-t fitted to the
//   (block-normalized) weights, which captures their heavy tails with one shape parameter and gives a
//   smooth table that does not overfit the sample.
// Tables are sorted ascending. Values are expected block-normalized (block absmax = 1), as the format
// stores them; `normalizeByBlock` produces them.

import { activeKernels } from "../../kernels/active.js";
import { dequantizeTable, quantizeTableRef } from "../tables.js";

const f = Math.fround;

export interface LloydMaxOptions {
  /** Maximum Lloyd iterations (default 100). */
  readonly iterations?: number;
  /**
   * Starting levels: "optimal" (default) the exact k-means optimum over up to 8192 equal-count bins of the
   * sorted data (dynamic programming); "quantile" the (i + 0.5) / levels quantiles; "uniform"
   * evenly spaced over the range.
   */
  readonly init?: "optimal" | "quantile" | "uniform";
  /** Per-value weights (e.g. E[x^2] of the value's input channel): minimizes sum w (x - q(x))^2. */
  readonly weights?: Float32Array | Float64Array;
  /** Stop when no level moves by more than this share of the data range (default 1e-9). */
  readonly tolerance?: number;
}

interface Sorted {
  readonly x: Float64Array;
  /** Prefix sums (length N + 1) of w, w x and w x^2. */
  readonly w: Float64Array;
  readonly wx: Float64Array;
  readonly wxx: Float64Array;
}

function sortWeighted(values: ArrayLike<number>, weights?: ArrayLike<number>): Sorted {
  const n = values.length;
  let x: Float64Array;
  let ws: Float64Array;
  const raw = activeKernels();
  if (!weights && raw?.sortPrefix && values instanceof Float32Array) {
    // The same sorted values and prefix sums, in the kernels (a radix sort; the sums in the same order).
    const out = { x: new Float64Array(n), w: new Float64Array(n + 1), wx: new Float64Array(n + 1), wxx: new Float64Array(n + 1) };
    if (!raw.sortPrefix(values, out.x, out.w, out.wx, out.wxx)) throw new RangeError("lloydMax: values must be finite");
    return out;
  }
  if (!weights) {
    x = Float64Array.from(values).sort();
    ws = new Float64Array(n).fill(1);
  } else {
    if (weights.length !== n) throw new RangeError(`lloydMax: ${weights.length} weights for ${n} values`);
    const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => values[a]! - values[b]! || a - b);
    x = Float64Array.from(order, (i) => values[i]!);
    ws = Float64Array.from(order, (i) => Math.max(0, weights[i]!));
  }
  const w = new Float64Array(n + 1);
  const wx = new Float64Array(n + 1);
  const wxx = new Float64Array(n + 1);
  for (let i = 0; i < n; i++) {
    if (!Number.isFinite(x[i]!)) throw new RangeError("lloydMax: values must be finite");
    w[i + 1] = w[i]! + ws[i]!;
    wx[i + 1] = wx[i]! + ws[i]! * x[i]!;
    wxx[i + 1] = wxx[i]! + ws[i]! * x[i]! * x[i]!;
  }
  return { x, w, wx, wxx };
}

/**
 * Exact k-means over partitions of the sorted values into `levels` runs of whole bins (equal-count bins,
 * at most 8192). The within-bin spread is included in the cost, so the result is the true optimum among
 * partitions at bin boundaries. The squared-error cost is Monge in 1-D, so the optimal split point is
 * monotone and each level's row is solved by divide and conquer: O(levels * bins * log bins).
 * Needs bins >= levels (callers handle fewer values than levels). Returns the group means, ascending.
 */
function binnedOptimum(s: Sorted, levels: number): Float64Array {
  const n = s.x.length;
  const bins = Math.min(n, 8192);
  const w = new Float64Array(bins + 1);
  const wx = new Float64Array(bins + 1);
  const wxx = new Float64Array(bins + 1);
  for (let b = 0; b <= bins; b++) {
    const e = Math.floor((b * n) / bins);
    w[b] = s.w[e]!;
    wx[b] = s.wx[e]!;
    wxx[b] = s.wxx[e]!;
  }
  const cost = (a: number, b: number): number => {
    const ww = w[b]! - w[a]!;
    if (!(ww > 0)) return 0;
    const x = wx[b]! - wx[a]!;
    return Math.max(0, wxx[b]! - wxx[a]! - (x * x) / ww);
  };
  // prev[i]: minimal cost of the first i bins in (l - 1) nonempty groups; args[l][i]: start of group l.
  let prev = Float64Array.from({ length: bins + 1 }, (_, i) => (i === 0 ? Infinity : cost(0, i)));
  const args: Int32Array[] = [new Int32Array(bins + 1), new Int32Array(bins + 1)];
  for (let l = 2; l <= levels; l++) {
    const cur = new Float64Array(bins + 1).fill(Infinity);
    const arg = new Int32Array(bins + 1);
    const solve = (lo: number, hi: number, optLo: number, optHi: number): void => {
      if (lo > hi) return;
      const mid = (lo + hi) >>> 1;
      let best = Infinity;
      let bestJ = optLo;
      for (let j = optLo; j <= Math.min(mid - 1, optHi); j++) {
        const v = prev[j]! + cost(j, mid);
        if (v < best) {
          best = v;
          bestJ = j;
        }
      }
      cur[mid] = best;
      arg[mid] = bestJ;
      solve(lo, mid - 1, optLo, bestJ);
      solve(mid + 1, hi, bestJ, optHi);
    };
    solve(l, bins, l - 1, bins - 1);
    args.push(arg);
    prev = cur;
  }
  const means = new Float64Array(levels);
  let end = bins;
  for (let l = levels; l >= 1; l--) {
    const start = l === 1 ? 0 : args[l]![end]!;
    const ww = w[end]! - w[start]!;
    const a = Math.floor((start * n) / bins);
    const b = Math.floor((end * n) / bins);
    means[l - 1] = ww > 0 ? (wx[end]! - wx[start]!) / ww : (s.x[a]! + s.x[b - 1]!) / 2;
    end = start;
  }
  return means.sort();
}

/** First index i with x[i] >= t (x ascending). */
function lowerBound(x: Float64Array, t: number): number {
  let lo = 0;
  let hi = x.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (x[mid]! < t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** 1-D k-means / Lloyd-Max: `levels` sorted float32 centroids minimizing (weighted) squared error. */
export function lloydMax(values: Float32Array, levels: number, opts: LloydMaxOptions = {}): Float32Array {
  if (!Number.isInteger(levels) || levels < 1 || levels > 256) throw new RangeError(`lloydMax: levels must be 1..256, got ${levels}`);
  if (values.length === 0) return new Float32Array(levels);
  const s = sortWeighted(values, opts.weights);
  const n = s.x.length;
  const total = s.w[n]!;
  const lo = s.x[0]!;
  const hi = s.x[n - 1]!;
  let c: Float64Array = new Float64Array(levels);
  const init = opts.init ?? "optimal";
  if (init === "uniform" || !(total > 0)) {
    for (let j = 0; j < levels; j++) c[j] = lo + ((j + 0.5) * (hi - lo)) / levels;
  } else if (n <= levels) {
    // No more values than levels: each value is a level (the rest repeat the largest).
    for (let j = 0; j < levels; j++) c[j] = s.x[Math.min(j, n - 1)]!;
  } else if (init === "optimal") {
    c = binnedOptimum(s, levels);
  } else {
    for (let j = 0; j < levels; j++) {
      // Weighted quantile (j + 0.5) / levels.
      const target = ((j + 0.5) / levels) * total;
      let a = 0;
      let b = n - 1;
      while (a < b) {
        const mid = (a + b) >>> 1;
        if (s.w[mid + 1]! < target) a = mid + 1;
        else b = mid;
      }
      c[j] = s.x[a]!;
    }
  }
  if (total > 0) {
    const tol = (opts.tolerance ?? 1e-9) * Math.max(hi - lo, 1e-300);
    const iterations = Math.max(0, Math.floor(opts.iterations ?? 100));
    for (let it = 0; it < iterations; it++) {
      let moved = 0;
      let start = 0;
      for (let j = 0; j < levels; j++) {
        const end = j === levels - 1 ? n : lowerBound(s.x, (c[j]! + c[j + 1]!) / 2);
        const wSum = s.w[end]! - s.w[start]!;
        // An empty cell keeps its level (it can refill as its neighbours move).
        if (wSum > 0) {
          const next = (s.wx[end]! - s.wx[start]!) / wSum;
          moved = Math.max(moved, Math.abs(next - c[j]!));
          c[j] = next;
        }
        start = Math.max(start, end);
      }
      c.sort();
      if (moved <= tol) break;
    }
  }
  return Float32Array.from(c, f).sort();
}

/** Mean (weighted) squared error of mapping each value to its nearest table entry. */
export function tableMse(values: Float32Array, table: Float32Array, weights?: Float32Array | Float64Array): number {
  const t = Float64Array.from(table).sort();
  let err = 0;
  let wSum = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    const j = lowerBound(t, v);
    const a = j > 0 ? Math.abs(v - t[j - 1]!) : Infinity;
    const b = j < t.length ? Math.abs(v - t[j]!) : Infinity;
    const d = Math.min(a, b);
    const w = weights ? weights[i]! : 1;
    err += w * d * d;
    wSum += w;
  }
  return wSum > 0 ? err / wSum : 0;
}

// ---- Student-t fit and the cube-root grid -------------------------------------------------------------

/** log Gamma(x) for x > 0 (Lanczos, g = 7, 9 terms; ~1e-15 relative). */
export function logGamma(x: number): number {
  const g = 7;
  const coef = [
    0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059, 12.507343278686905, -0.13857109526572012,
    9.9843695780195716e-6, 1.5056327351493116e-7,
  ];
  if (x < 0.5) return Math.log(Math.PI / Math.abs(Math.sin(Math.PI * x))) - logGamma(1 - x);
  const z = x - 1;
  let a = coef[0]!;
  const t = z + g + 0.5;
  for (let i = 1; i < g + 2; i++) a += coef[i]! / (z + i);
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(a);
}

export interface StudentTFit {
  /** Degrees of freedom (from the grid). */
  readonly nu: number;
  /** Scale sigma (location fixed at 0: weights are symmetric about zero). */
  readonly scale: number;
  /** Mean log-likelihood per value. */
  readonly logLikelihood: number;
}

export const STUDENT_T_NU_GRID: readonly number[] = [1.5, 2, 2.5, 3, 3.5, 4, 5, 6, 7, 8, 10, 12, 15, 20, 30, 50, 100, 1000];

/**
 * Maximum-likelihood Student-t (location 0) over a grid of nu; for each nu the scale solves the EM
 * fixed point sigma^2 = mean((nu + 1) x^2 / (nu + x^2 / sigma^2)). At most `maxSamples` values are used
 * (evenly strided) to bound the cost on large tensors.
 */
export function fitStudentT(values: ArrayLike<number>, nuGrid: readonly number[] = STUDENT_T_NU_GRID, maxSamples = 200_000): StudentTFit {
  const stride = Math.max(1, Math.ceil(values.length / maxSamples));
  const x2: number[] = [];
  for (let i = 0; i < values.length; i += stride) x2.push(values[i]! * values[i]!);
  const m = x2.length;
  let variance = 0;
  for (const v of x2) variance += v / Math.max(1, m);
  if (m === 0 || !(variance > 0)) return { nu: Infinity, scale: 0, logLikelihood: 0 };
  let best: StudentTFit = { nu: nuGrid[0]!, scale: Math.sqrt(variance), logLikelihood: -Infinity };
  let s2 = variance;
  for (const nu of nuGrid) {
    // Warm start from the previous nu; the fixed point converges linearly.
    if (!(s2 > 0) || !Number.isFinite(s2)) s2 = variance;
    for (let it = 0; it < 500; it++) {
      let acc = 0;
      for (const v of x2) acc += ((nu + 1) * v) / (nu + v / s2);
      const next = acc / m;
      const done = Math.abs(next - s2) <= 1e-10 * s2;
      s2 = next;
      if (done) break;
    }
    const c = logGamma((nu + 1) / 2) - logGamma(nu / 2) - 0.5 * Math.log(nu * Math.PI * s2);
    let ll = 0;
    for (const v of x2) ll += c - ((nu + 1) / 2) * Math.log1p(v / (nu * s2));
    ll /= m;
    if (ll > best.logLikelihood) best = { nu, scale: Math.sqrt(s2), logLikelihood: ll };
  }
  return best;
}

export interface StudentTGridOptions {
  /** Use this fit instead of fitting the values. */
  readonly fit?: Pick<StudentTFit, "nu" | "scale">;
  /** Half-width of the support the density is truncated to (default max |value|, i.e. 1 when block-normalized). */
  readonly range?: number;
  /**
   * Level placement: "midpoint" puts level i at the (i + 0.5) / levels quantile of p^(1/3) (the classical
   * companding grid); "endpoints" at i / (levels - 1), so +-range are levels (the block absmax, present
   * in every block, is then exact). Default "endpoints" (better on block-normalized data, see the tests).
   */
  readonly placement?: "midpoint" | "endpoints";
}

/** Levels at the quantiles of p(x)^(1/3) for a Student-t fit of `values`, truncated to [-range, range]. */
export function studentTGrid(values: Float32Array, levels: number, opts: StudentTGridOptions = {}): Float32Array {
  if (!Number.isInteger(levels) || levels < 2 || levels > 256) throw new RangeError(`studentTGrid: levels must be 2..256, got ${levels}`);
  let range = opts.range ?? 0;
  if (opts.range === undefined) for (let i = 0; i < values.length; i++) range = Math.max(range, Math.abs(values[i]!));
  if (!(range > 0)) return new Float32Array(levels);
  const fit = opts.fit ?? fitStudentT(values);
  const { nu, scale } = fit;
  // p^(1/3) up to a constant; nu = Infinity (or zero scale) falls back to the Gaussian / uniform limits.
  const density = (x: number): number => {
    if (!(scale > 0)) return 1;
    const z = (x * x) / (scale * scale);
    return Number.isFinite(nu) ? Math.pow(1 + z / nu, -(nu + 1) / 6) : Math.exp(-z / 6);
  };
  const steps = 8192;
  const xs = new Float64Array(steps + 1);
  const cdf = new Float64Array(steps + 1);
  for (let i = 0; i <= steps; i++) xs[i] = -range + (2 * range * i) / steps;
  for (let i = 1; i <= steps; i++) cdf[i] = cdf[i - 1]! + ((density(xs[i - 1]!) + density(xs[i]!)) / 2) * (xs[i]! - xs[i - 1]!);
  const totalMass = cdf[steps]!;
  const placement = opts.placement ?? "endpoints";
  const out = new Float32Array(levels);
  for (let j = 0; j < levels; j++) {
    const u = placement === "midpoint" ? (j + 0.5) / levels : j / (levels - 1);
    const target = u * totalMass;
    let i = 1;
    while (i < steps && cdf[i]! < target) i++;
    const span = cdf[i]! - cdf[i - 1]!;
    const t = span > 0 ? (target - cdf[i - 1]!) / span : 0;
    out[j] = f(xs[i - 1]! + t * (xs[i]! - xs[i - 1]!));
  }
  // Exact symmetry (the integration is symmetric only up to rounding).
  for (let j = 0; j < levels >> 1; j++) {
    const m = f((out[levels - 1 - j]! - out[j]!) / 2);
    out[j] = -m;
    out[levels - 1 - j] = m;
  }
  if (levels % 2 === 1) out[levels >> 1] = 0;
  return out.sort();
}

// ---- The format: indices + block absmax ---------------------------------------------------------------

/** Weights divided by their block's absmax ([n][k], blocks of `blockSize` along k; zero blocks stay 0). */
export function normalizeByBlock(wT: Float32Array, n: number, k: number, blockSize: number): Float32Array {
  const out = new Float32Array(n * k);
  const raw = activeKernels();
  if (raw?.normalizeBlocks && k >= 1 && blockSize >= 1 && wT.length === n * k) {
    raw.normalizeBlocks(wT, n, k, blockSize, out);
    return out;
  }
  for (let row = 0; row < n; row++) {
    for (let start = 0; start < k; start += blockSize) {
      const end = Math.min(k, start + blockSize);
      let absmax = 0;
      for (let c = start; c < end; c++) absmax = Math.max(absmax, Math.abs(wT[row * k + c]!));
      const inv = absmax === 0 ? 0 : f(1 / absmax);
      for (let c = start; c < end; c++) out[row * k + c] = f(wT[row * k + c]! * inv);
    }
  }
  return out;
}

export interface CodebookQuantized {
  readonly n: number;
  readonly k: number;
  readonly blockSize: number;
  readonly blocksPerRow: number;
  /** Sorted levels, block-normalized units. */
  readonly table: Float32Array;
  /** [n][blocksPerRow * blockSize]; padding past k holds the index of the level nearest 0. */
  readonly indices: Uint8Array;
  /** [n][blocksPerRow] block absmax (1 for an all-zero block). */
  readonly scales: Float32Array;
}

/**
 * Encode with a table: per (row, block) scale = absmax, index = nearest level to fround(w / scale), ties
 * to the lower index. Same codes, scales and padding as `quantizeTableRef(.., "codebook", ..)` in
 * ../tables.ts, which the emitter uses.
 */
export function quantizeCodebook(wT: Float32Array, n: number, k: number, blockSize: number, table: Float32Array): CodebookQuantized {
  if (wT.length !== n * k) throw new RangeError(`quantizeCodebook: weight has ${wT.length} values, expected ${n * k}`);
  if (table.length < 1 || table.length > 256) throw new RangeError(`quantizeCodebook: table must have 1..256 levels, got ${table.length}`);
  const q = quantizeTableRef(wT, n, k, "codebook", blockSize, table);
  return { n, k, blockSize, blocksPerRow: q.blocksPerRow, table: q.table, indices: q.codes, scales: q.scales };
}

/**
 * Per-value weights for fitting a table to block-normalized values so the fit minimizes the error in the
 * weight's own units: (w - scale * t)^2 = scale^2 (v - t)^2, so each value counts scale^2 (its block's
 * absmax squared). With `meanSquare` (E[x_j^2] per input channel) the error is activation-weighted too.
 * Pass as `lloydMax(normalizeByBlock(..), levels, { weights })`.
 */
export function codebookWeights(wT: Float32Array, n: number, k: number, blockSize: number, meanSquare?: Float64Array): Float64Array {
  if (meanSquare && meanSquare.length !== k) throw new RangeError(`codebookWeights: meanSquare has ${meanSquare.length} channels, expected k = ${k}`);
  const out = new Float64Array(n * k);
  for (let row = 0; row < n; row++) {
    for (let start = 0; start < k; start += blockSize) {
      const end = Math.min(k, start + blockSize);
      let absmax = 0;
      for (let c = start; c < end; c++) absmax = Math.max(absmax, Math.abs(wT[row * k + c]!));
      for (let c = start; c < end; c++) out[row * k + c] = absmax * absmax * (meanSquare ? meanSquare[c]! : 1);
    }
  }
  return out;
}

export function dequantizeCodebook(q: CodebookQuantized): Float32Array {
  return dequantizeTable({ ...q, format: "codebook", codes: q.indices, codeBits: Math.max(1, Math.ceil(Math.log2(q.table.length))), scaleBits: 32 });
}
