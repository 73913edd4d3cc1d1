// Low-rank quantization-error correction (LQER, Zhang et al. 2024, "LQER: Low-Rank Quantization Error
// Reconstruction for LLMs", and its activation-weighted variant): the error E = W - Q of a quantized layer
// is not white noise under the calibration activations, so a small float branch that reconstructs its
// dominant activation-weighted directions removes much of the output error for r*(k+n) extra weights.
// This is the training-free counterpart of DL-QAT's low-rank direction update; `refineGroupScales` below
// is the counterpart of its group magnitudes.
//
// Layout (ONNX terms): the original op is y = x @ B with B = W^T of shape [k, n]; wT and deqT are W and
// Q as [n][k] row-major. The correction branch is y += (x @ a) @ b with a: [k, r] and b: [r, n], both
// row-major float32.
//
// Method: minimize E_x ||x (E^T - a b)||^2 = tr((E^T - C)^T H (E^T - C)) over rank-r C, H = E[x x^T]
// (or diag(E[x^2])). With H = L L^T this is Eckart-Young on L^T E^T, whose right singular vectors are the
// eigenvectors of G = E H E^T (n x n). The optimum is C = E^T V_r V_r^T, so a = E^T V_r and b = V_r^T:
// no inverse of L is needed, a singular H (few calibration rows, dead channels) is fine, and the error
// left is tr(G) minus the top-r eigenvalues. V_r comes from Jacobi on G (small n) or from randomized
// subspace iteration with a fixed-seed Gaussian sketch and Rayleigh-Ritz (large n), in float64.

import { roundHalfAway, type BlockwiseQuantized } from "../blockwise.js";
import { activeKernels } from "../../kernels/active.js";
import { gaussianSource, orthonormalize, sumQuadraticForms, sumQuadraticFormsRef, symmetricEigen } from "./linalg.js";

export interface LowRankStats {
  /** Per input channel E[x^2], length k (the weighting when no Gram matrix is given). */
  readonly meanSquare?: Float64Array;
  /** E[x x^T], k*k. */
  readonly gram?: Float64Array;
}

export interface LowRankOptions {
  /** "exact": Jacobi on the n x n matrix G; "randomized": subspace iteration; "auto": exact for n <= 128. */
  readonly method?: "auto" | "exact" | "randomized";
  /** Extra sketch vectors beyond the rank (default 8). */
  readonly oversample?: number;
  /** Subspace iterations on G (each is two passes over the weighted error; default 4). */
  readonly powerIterations?: number;
  /** Seed of the Gaussian sketch (default 1). */
  readonly seed?: number;
  /** Ignore the Gram matrix and weight by diag(E[x^2]) only. */
  readonly diagonalOnly?: boolean;
  /** Threads for the kernels' passes over E (native backend; the result does not depend on it). */
  readonly threads?: number;
  /** Run the TypeScript passes even when the kernels are loaded (tests: the oracle). */
  readonly reference?: boolean;
}

export interface LowRankCorrection {
  /** [k][rank] row-major float32: x @ a. */
  readonly a: Float32Array;
  /** [rank][n] row-major float32: (x @ a) @ b. */
  readonly b: Float32Array;
  readonly rank: number;
  /** tr(E H E^T): expected squared output error per row before the correction. */
  readonly errorBefore: number;
  /** The same after adding the branch (computed in float64 for the float64 factors). */
  readonly errorAfter: number;
  /** rank * (k + n) */
  readonly extraParams: number;
  /** Activation-weighted singular values of the error, the kept ones, descending. */
  readonly singularValues: Float64Array;
}

type Weighting = { kind: "diag"; h: Float64Array } | { kind: "full"; h: Float64Array };

function weighting(k: number, stats: LowRankStats, diagonalOnly: boolean): Weighting {
  if (stats.gram && !diagonalOnly) {
    if (stats.gram.length !== k * k) throw new RangeError(`lowrank: Gram matrix has ${stats.gram.length} values, expected k*k = ${k * k}`);
    return { kind: "full", h: stats.gram };
  }
  if (!stats.meanSquare) throw new RangeError("lowrank: needs meanSquare or gram statistics");
  if (stats.meanSquare.length !== k) throw new RangeError(`lowrank: meanSquare has ${stats.meanSquare.length} channels, expected k = ${k}`);
  return { kind: "diag", h: stats.meanSquare };
}

/** out (n) = E H E^T v for E [n][k] row-major. */
function applyG(e: Float64Array, n: number, k: number, w: Weighting, v: Float64Array, out: Float64Array, t: Float64Array, u: Float64Array): void {
  t.fill(0);
  for (let r = 0; r < n; r++) {
    const vr = v[r]!;
    if (vr === 0) continue;
    const base = r * k;
    for (let c = 0; c < k; c++) t[c]! += e[base + c]! * vr;
  }
  if (w.kind === "diag") {
    for (let c = 0; c < k; c++) u[c] = w.h[c]! * t[c]!;
  } else {
    for (let i = 0; i < k; i++) {
      const base = i * k;
      let s = 0;
      for (let j = 0; j < k; j++) s += w.h[base + j]! * t[j]!;
      u[i] = s;
    }
  }
  for (let r = 0; r < n; r++) {
    const base = r * k;
    let s = 0;
    for (let c = 0; c < k; c++) s += e[base + c]! * u[c]!;
    out[r] = s;
  }
}

/** E H as [n][k] (H symmetric). */
function weightedRows(e: Float64Array, n: number, k: number, w: Weighting, opts: LowRankOptions): Float64Array {
  const out = new Float64Array(n * k);
  const raw = opts.reference ? undefined : activeKernels();
  if (w.kind === "full" && raw?.lowrankWeightedRows) {
    raw.lowrankWeightedRows(e, n, k, w.h, out, opts.threads ?? 1);
    return out;
  }
  for (let r = 0; r < n; r++) {
    const base = r * k;
    if (w.kind === "diag") {
      for (let c = 0; c < k; c++) out[base + c] = e[base + c]! * w.h[c]!;
    } else {
      for (let c = 0; c < k; c++) {
        const ec = e[base + c]!;
        if (ec === 0) continue;
        const hb = c * k;
        for (let j = 0; j < k; j++) out[base + j]! += ec * w.h[hb + j]!;
      }
    }
  }
  return out;
}

/** Top `rank` eigenpairs of G: V as `rank` vectors of length n back to back, and their eigenvalues. */
function topEigen(e: Float64Array, n: number, k: number, w: Weighting, rank: number, opts: LowRankOptions): { v: Float64Array; values: Float64Array } {
  const method = opts.method ?? "auto";
  const sketch = Math.min(n, rank + Math.max(0, Math.floor(opts.oversample ?? 8)));
  if (method === "exact" || (method === "auto" && (n <= 128 || sketch >= n))) {
    const eh = weightedRows(e, n, k, w, opts);
    const g = new Float64Array(n * n);
    for (let r = 0; r < n; r++) {
      for (let s = 0; s <= r; s++) {
        let acc = 0;
        for (let c = 0; c < k; c++) acc += eh[r * k + c]! * e[s * k + c]!;
        g[r * n + s] = acc;
        g[s * n + r] = acc;
      }
    }
    const eig = symmetricEigen(g, n);
    const v = new Float64Array(rank * n);
    for (let j = 0; j < rank; j++) for (let r = 0; r < n; r++) v[j * n + r] = eig.vectors[r * n + j]!;
    return { v, values: eig.values.slice(0, rank) };
  }
  const rnd = gaussianSource(opts.seed ?? 1);
  const q = Float64Array.from({ length: sketch * n }, () => rnd());
  const y = new Float64Array(sketch * n);
  const t = new Float64Array(k);
  const u = new Float64Array(k);
  const raw = opts.reference ? undefined : activeKernels();
  const applyBlock = (src: Float64Array, dst: Float64Array): void => {
    // The kernels run applyG for every vector at once (the same sums in the same order).
    if (raw?.lowrankApplyG) raw.lowrankApplyG(e, n, k, w.h, w.kind === "diag", src, sketch, dst, opts.threads ?? 1);
    else for (let j = 0; j < sketch; j++) applyG(e, n, k, w, src.subarray(j * n, (j + 1) * n), dst.subarray(j * n, (j + 1) * n), t, u);
  };
  const iterations = Math.max(1, Math.floor(opts.powerIterations ?? 4));
  for (let it = 0; it < iterations; it++) {
    applyBlock(q, y);
    orthonormalize(y, n, sketch, (opts.seed ?? 1) + 1 + it);
    q.set(y);
  }
  // Rayleigh-Ritz on span(Q): T = Q^T G Q.
  applyBlock(q, y);
  const tm = new Float64Array(sketch * sketch);
  for (let i = 0; i < sketch; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let r = 0; r < n; r++) s += q[i * n + r]! * y[j * n + r]!;
      let s2 = 0;
      for (let r = 0; r < n; r++) s2 += q[j * n + r]! * y[i * n + r]!;
      tm[i * sketch + j] = (s + s2) / 2;
      tm[j * sketch + i] = (s + s2) / 2;
    }
  }
  const eig = symmetricEigen(tm, sketch);
  const v = new Float64Array(rank * n);
  for (let j = 0; j < rank; j++) {
    for (let i = 0; i < sketch; i++) {
      const sij = eig.vectors[i * sketch + j]!;
      for (let r = 0; r < n; r++) v[j * n + r]! += q[i * n + r]! * sij;
    }
  }
  return { v, values: eig.values.slice(0, rank) };
}

export function lowRankCorrection(
  wT: Float32Array,
  deqT: Float32Array,
  n: number,
  k: number,
  rank: number,
  stats: LowRankStats,
  opts: LowRankOptions = {},
): LowRankCorrection {
  if (wT.length !== n * k || deqT.length !== n * k) throw new RangeError(`lowrank: weight and dequantized weight must have n*k = ${n * k} values`);
  const w = weighting(k, stats, opts.diagonalOnly ?? false);
  const raw = opts.reference ? undefined : activeKernels();
  const threads = opts.threads ?? 1;
  const e = new Float64Array(n * k);
  if (raw?.subF32ToF64) raw.subF32ToF64(wT, deqT, e);
  else for (let i = 0; i < n * k; i++) e[i] = wT[i]! - deqT[i]!;
  const errorBefore = opts.reference ? sumQuadraticFormsRef(w.h, e, n, k) : sumQuadraticForms(w.h, e, n, k, threads);
  const r = Math.max(0, Math.min(Math.floor(rank), n, k));
  if (r === 0) {
    return {
      a: new Float32Array(0),
      b: new Float32Array(0),
      rank: 0,
      errorBefore,
      errorAfter: errorBefore,
      extraParams: 0,
      singularValues: new Float64Array(0),
    };
  }
  const { v, values } = topEigen(e, n, k, w, r, opts);
  let captured = 0;
  for (let j = 0; j < r; j++) captured += Math.max(0, values[j]!);
  // a = E^T V (k x r), b = V^T (r x n).
  const a = new Float32Array(k * r);
  const acc = new Float64Array(k);
  if (raw?.lowrankEtV) {
    // [k][r] in float64, the same sums as below, rounded to float32 by the copy.
    const at = new Float64Array(k * r);
    raw.lowrankEtV(e, n, k, v, r, at, threads);
    a.set(at);
  } else
    for (let j = 0; j < r; j++) {
      acc.fill(0);
      for (let row = 0; row < n; row++) {
        const vj = v[j * n + row]!;
        if (vj === 0) continue;
        const base = row * k;
        for (let c = 0; c < k; c++) acc[c]! += e[base + c]! * vj;
      }
      for (let c = 0; c < k; c++) a[c * r + j] = acc[c]!;
    }
  const b = Float32Array.from(v.subarray(0, r * n));
  return {
    a,
    b,
    rank: r,
    errorBefore,
    errorAfter: Math.max(0, errorBefore - captured),
    extraParams: r * (k + n),
    singularValues: values.map((x) => Math.sqrt(Math.max(0, x))),
  };
}

/** [n][k] float64 of Q + (a b)^T: the weight the graph computes with the branch added (W minus this is the error left). */
export function correctedWeight(deqT: Float32Array, n: number, k: number, c: LowRankCorrection): Float64Array {
  const out = Float64Array.from(deqT);
  const r = c.rank;
  for (let row = 0; row < n; row++) {
    for (let col = 0; col < k; col++) {
      let s = 0;
      for (let j = 0; j < r; j++) s += c.a[col * r + j]! * c.b[j * n + row]!;
      out[row * k + col]! += s;
    }
  }
  return out;
}

export interface RefineOptions {
  /**
   * Rounds of re-encoding: after the least-squares scale, re-round the codes with it (zero point kept)
   * and solve again, keeping a round only when the weighted error drops. Default 0: codes fixed.
   */
  readonly reencodeRounds?: number;
  /** Threads for the kernels (native backend; the result does not depend on it). */
  readonly threads?: number;
  /** Run the TypeScript loop even when the kernels are loaded (tests: the oracle). */
  readonly reference?: boolean;
}

const f = Math.fround;

/**
 * Per-block scale refinement on calibration data: with codes c_j - zp fixed, the scale minimizing the
 * activation-weighted error sum_j h_j (w_j - s c_j)^2 (h = E[x^2]) is s* = sum h w c / sum h c^2. A block
 * whose channels never fired falls back to h = 1; a block whose codes are all at the zero point keeps its
 * scale. A new scale is only taken when its float32 value lowers the block's weighted error.
 */
export function refineGroupScales(
  wT: Float32Array,
  q: BlockwiseQuantized,
  stats: { readonly meanSquare: Float64Array },
  opts: RefineOptions = {},
): BlockwiseQuantized {
  const { n, k, blocksPerRow } = q;
  const { blockSize, bits } = q.spec;
  const qmax = (1 << bits) - 1;
  if (wT.length !== n * k) throw new RangeError(`refineGroupScales: weight has ${wT.length} values, expected ${n * k}`);
  if (stats.meanSquare.length !== k) throw new RangeError(`refineGroupScales: meanSquare has ${stats.meanSquare.length} channels, expected k = ${k}`);
  const codes = Uint8Array.from(q.codes);
  const scales = Float32Array.from(q.scales);
  const rounds = Math.max(0, Math.floor(opts.reencodeRounds ?? 0));
  const raw = opts.reference ? undefined : activeKernels();
  if (raw?.refineScales && blockSize <= 256 && k >= 1) {
    raw.refineScales(wT, n, k, bits, blockSize, q.zeroPoints, stats.meanSquare, rounds, codes, scales, opts.threads ?? 1);
    return { ...q, codes, scales };
  }
  const trial = new Uint8Array(blockSize);
  for (let row = 0; row < n; row++) {
    for (let blk = 0; blk < blocksPerRow; blk++) {
      const bi = row * blocksPerRow + blk;
      const c0 = blk * blockSize;
      const len = Math.min(blockSize, k - c0);
      const zp = q.zeroPoints[bi]!;
      let hSum = 0;
      for (let t = 0; t < len; t++) hSum += stats.meanSquare[c0 + t]!;
      const h = (t: number): number => (hSum > 0 ? stats.meanSquare[c0 + t]! : 1);
      const blockErr = (s: number, cs: Uint8Array, off: number): number => {
        let err = 0;
        for (let t = 0; t < len; t++) {
          const d = wT[row * k + c0 + t]! - f((cs[off + t]! - zp) * s);
          err += h(t) * d * d;
        }
        return err;
      };
      const solve = (cs: Uint8Array, off: number): number | undefined => {
        let num = 0;
        let den = 0;
        for (let t = 0; t < len; t++) {
          const c = cs[off + t]! - zp;
          num += h(t) * wT[row * k + c0 + t]! * c;
          den += h(t) * c * c;
        }
        return den > 0 ? f(num / den) : undefined;
      };
      let best = scales[bi]!;
      let bestErr = blockErr(best, codes, bi * blockSize);
      const s1 = solve(codes, bi * blockSize);
      if (s1 !== undefined && blockErr(s1, codes, bi * blockSize) < bestErr) {
        best = s1;
        bestErr = blockErr(s1, codes, bi * blockSize);
      }
      for (let round = 0; round < rounds; round++) {
        if (best === 0) break;
        const inv = f(1 / best);
        for (let t = 0; t < len; t++) trial[t] = Math.min(qmax, Math.max(0, roundHalfAway(f(wT[row * k + c0 + t]! * inv)) + zp));
        const s = solve(trial, 0);
        if (s === undefined) break;
        const e = blockErr(s, trial, 0);
        if (!(e < bestErr)) break;
        best = s;
        bestErr = e;
        codes.set(trial.subarray(0, len), bi * blockSize);
      }
      scales[bi] = best;
    }
  }
  return { ...q, codes, scales };
}
