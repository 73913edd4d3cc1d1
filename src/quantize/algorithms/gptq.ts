// GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained
// Transformers"): quantize the input columns of W one at a time and push each column's rounding error
// onto the not-yet-quantized columns through the inverse Hessian of the layer's output error, so the
// output x @ W^T (not the weight) is what is preserved. It beats round-to-nearest wherever the inputs
// are correlated, which is the normal case in transformers.
//
// Layout and format: W is [n][k] row-major (MatMul's B transposed), H is the k x k input second moment
// E[x x^T] (any positive multiple works: damping is relative). The result is a plain BlockwiseQuantized
// (blocks of `blockSize` along k per row, value = (code - zeroPoint) * scale, float32 as the reference
// decodes it), so the MatMulNBits emitter writes it unchanged.
//
// Block parameters:
// - default ("dynamic groups", the reference implementation's behaviour): the scale and zero point of
//   block b of every row are computed when column b*blockSize is reached, from the weights as updated by
//   the error feedback so far, with the same rule as `quantizeBlockwiseRef` (including clip search).
//   Lazy batches are then aligned to whole blocks so a block's columns are current when it starts.
// - `actOrder` (columns processed by decreasing H_ii, the "desc_act" of the reference code): block
//   parameters are computed up front from the original W in the ORIGINAL column order ("static groups",
//   as in the GPTQ repository's --static-groups) and looked up by each column's original index. The codes
//   are written back at their original positions, so the result is still the ordinary MatMulNBits layout
//   and needs no g_idx / column permutation at inference. The cost: blocks do not adapt to the updated
//   weights, which is why act-order is not automatically better with small blocks.

import { activeKernels } from "../../kernels/active.js";
import { quantizeBlockwiseRef, roundHalfAway, type BlockwiseQuantized, type BlockwiseSpec } from "../blockwise.js";
import { upperCholeskyOfInverse, weightedSquaredError } from "./linalg.js";

export interface GptqOptions {
  /** Damping added to H's diagonal, as a share of its mean diagonal (default 0.01). */
  readonly dampRatio?: number;
  /** Columns per lazy batch update (default 128; rounded to whole blocks without actOrder). */
  readonly lazyBatch?: number;
  /** Process columns by decreasing H_ii, with static groups (see the header). Default false. */
  readonly actOrder?: boolean;
  /** Static groups without act-order (parameters from the original W). Default false. */
  readonly staticGroups?: boolean;
  /**
   * Zero the weights of dead input channels (H_ii = 0, never active in calibration), as the reference
   * code does. Default false: they keep their round-to-nearest value, which is safer when such a
   * channel does fire in deployment; either way they neither give nor take error feedback.
   */
  readonly zeroDeadColumns?: boolean;
  /** Threads for the C kernel (default 1). */
  readonly threads?: number;
}

const f = Math.fround;

/**
 * GPTQ in the C kernels once loaded (kernels/src/qg_gptq.c: blocked Cholesky and inverse, two-level lazy
 * batches, rows in parallel), else gptqQuantizeRef. The kernel reproduces the reference's codes, scales
 * and zero points bit for bit (test/algorithms/gptq-kernel.test.ts): its blocking keeps every element's
 * updates in the reference's order, so `lazyBatch` does not change the result in either.
 */
export function gptqQuantize(wT: Float32Array, n: number, k: number, hessian: Float64Array, spec: BlockwiseSpec, opts: GptqOptions = {}): BlockwiseQuantized {
  const raw = activeKernels();
  if (!raw || wT.length !== n * k || hessian.length !== k * k || k < 1) return gptqQuantizeRef(wT, n, k, hessian, spec, opts);
  const dampRatio = opts.dampRatio ?? 0.01;
  if (!(dampRatio >= 0) || !Number.isFinite(dampRatio)) throw new RangeError(`gptq: dampRatio must be >= 0, got ${dampRatio}`);
  const blocksPerRow = Math.ceil(k / spec.blockSize);
  const codes = new Uint8Array(n * blocksPerRow * spec.blockSize);
  const scales = new Float32Array(n * blocksPerRow);
  const zeroPoints = new Uint8Array(n * blocksPerRow);
  const actOrder = opts.actOrder ?? false;
  raw.gptq(
    wT,
    n,
    k,
    hessian,
    spec.bits,
    spec.blockSize,
    spec.symmetric,
    spec.clipSearch,
    dampRatio,
    actOrder,
    actOrder || (opts.staticGroups ?? false),
    opts.zeroDeadColumns ?? false,
    codes,
    scales,
    zeroPoints,
    Math.max(1, Math.floor(opts.threads ?? 1)),
  );
  return { spec, n, k, blocksPerRow, codes, scales, zeroPoints };
}

/** The TypeScript reference of GPTQ (the oracle of the C kernel). */
export function gptqQuantizeRef(
  wT: Float32Array,
  n: number,
  k: number,
  hessian: Float64Array,
  spec: BlockwiseSpec,
  opts: GptqOptions = {},
): BlockwiseQuantized {
  if (wT.length !== n * k) throw new RangeError(`gptq: weight has ${wT.length} values, expected n*k = ${n * k}`);
  if (hessian.length !== k * k) throw new RangeError(`gptq: Hessian has ${hessian.length} values, expected k*k = ${k * k}`);
  const dampRatio = opts.dampRatio ?? 0.01;
  if (!(dampRatio >= 0)) throw new RangeError(`gptq: dampRatio must be >= 0, got ${dampRatio}`);
  const { bits, blockSize } = spec;
  const qmax = (1 << bits) - 1;
  const blocksPerRow = Math.ceil(k / blockSize);
  const actOrder = opts.actOrder ?? false;
  const staticGroups = actOrder || (opts.staticGroups ?? false);

  // Dead channels: H_ii = 0 means the input never fired; give them a unit, uncoupled Hessian entry.
  const dead = new Uint8Array(k);
  const originalDiag = new Float64Array(k);
  const w = Float64Array.from(wT);
  let meanDiag = 0;
  for (let i = 0; i < k; i++) {
    const hii = hessian[i * k + i]!;
    if (hii > 0) {
      originalDiag[i] = hii;
      meanDiag += hii / k;
    } else {
      dead[i] = 1;
      meanDiag += 1 / k;
      if (opts.zeroDeadColumns) for (let r = 0; r < n; r++) w[r * k + i] = 0;
    }
  }

  const perm = Array.from({ length: k }, (_, i) => i);
  if (actOrder) perm.sort((a, b) => originalDiag[b]! - originalDiag[a]! || a - b);

  // Permuted, damped Hessian, factored in place (one k x k buffer). A PSD Hessian from few rows can fail
  // Cholesky at small damping: retry with more, as implementations do.
  const hp = new Float64Array(k * k);
  let u: Float64Array | undefined;
  let damp = dampRatio * meanDiag;
  for (let attempt = 0; attempt < 8 && !u; attempt++) {
    for (let i = 0; i < k; i++) {
      const pi = perm[i]!;
      for (let j = 0; j < k; j++) {
        const pj = perm[j]!;
        hp[i * k + j] = dead[pi] || dead[pj] ? (pi === pj ? 1 : 0) : hessian[pi * k + pj]!;
      }
      hp[i * k + i]! += damp;
    }
    u = upperCholeskyOfInverse(hp, k, true);
    damp = damp > 0 ? damp * 10 : 1e-6 * meanDiag || 1e-6;
  }
  if (!u) throw new RangeError("gptq: the damped Hessian is not positive definite (NaN or negative eigenvalues in the calibration statistics?)");

  // Work on the permuted weight, [n][k] row-major, float64.
  const wp = new Float64Array(n * k);
  for (let r = 0; r < n; r++) for (let i = 0; i < k; i++) wp[r * k + i] = w[r * k + perm[i]!]!;

  const codes = new Uint8Array(n * blocksPerRow * blockSize);
  const scales = new Float32Array(n * blocksPerRow);
  const zeroPoints = new Uint8Array(n * blocksPerRow);

  if (staticGroups) {
    const base = quantizeBlockwiseRef(Float32Array.from(w, f), n, k, spec);
    scales.set(base.scales);
    zeroPoints.set(base.zeroPoints);
  }

  let batch = Math.max(1, Math.floor(opts.lazyBatch ?? 128));
  if (!staticGroups) batch = Math.max(1, Math.floor(batch / blockSize)) * blockSize;
  const err = new Float64Array(n * batch);

  for (let i1 = 0; i1 < k; i1 += batch) {
    const i2 = Math.min(k, i1 + batch);
    const count = i2 - i1;
    for (let i = i1; i < i2; i++) {
      const col = perm[i]!;
      const block = Math.floor(col / blockSize);
      if (!staticGroups && col % blockSize === 0) {
        // Dynamic groups: parameters from the current (error-updated) weights of this block.
        const len = Math.min(blockSize, k - col);
        const cur = new Float32Array(n * len);
        for (let r = 0; r < n; r++) for (let t = 0; t < len; t++) cur[r * len + t] = f(wp[r * k + i + t]!);
        const p = quantizeBlockwiseRef(cur, n, len, { ...spec, blockSize: len });
        for (let r = 0; r < n; r++) {
          scales[r * blocksPerRow + block] = p.scales[r]!;
          zeroPoints[r * blocksPerRow + block] = p.zeroPoints[r]!;
        }
      }
      const ui = i * k;
      const d = u[ui + i]!;
      for (let r = 0; r < n; r++) {
        const bi = r * blocksPerRow + block;
        const scale = scales[bi]!;
        const zp = zeroPoints[bi]!;
        const inv = scale === 0 ? 0 : f(1 / scale);
        const x = wp[r * k + i]!;
        const code = Math.min(qmax, Math.max(0, roundHalfAway(f(f(x) * inv)) + zp));
        codes[bi * blockSize + (col % blockSize)] = code;
        const e = (x - f((code - zp) * scale)) / d;
        err[r * batch + (i - i1)] = e;
        if (e === 0) continue;
        const rowBase = r * k;
        for (let j = i + 1; j < i2; j++) wp[rowBase + j]! -= e * u[ui + j]!;
      }
    }
    // Lazy batch update of all later columns with this batch's errors.
    if (i2 < k) {
      for (let r = 0; r < n; r++) {
        const rowBase = r * k;
        for (let t = 0; t < count; t++) {
          const e = err[r * batch + t]!;
          if (e === 0) continue;
          const ut = (i1 + t) * k;
          for (let j = i2; j < k; j++) wp[rowBase + j]! -= e * u[ut + j]!;
        }
      }
    }
  }

  // Padding past k holds the zero point, as in quantizeBlockwiseRef.
  const tail = k - (blocksPerRow - 1) * blockSize;
  if (tail < blockSize) {
    for (let r = 0; r < n; r++) {
      const bi = r * blocksPerRow + blocksPerRow - 1;
      codes.fill(zeroPoints[bi]!, bi * blockSize + tail, (bi + 1) * blockSize);
    }
  }
  return { spec, n, k, blocksPerRow, codes, scales, zeroPoints };
}

/**
 * GPTQ's objective: sum over output rows of (w - q)^T H (w - q) = trace((W - Q) H (W - Q)^T), the
 * expected squared output error per input row when H = E[x x^T]. wT and deqT are [n][k]; H is k x k,
 * or its diagonal (length k) when `diagonal` is set.
 */
export function gptqObjective(wT: Float32Array, deqT: Float32Array, hessian: Float64Array, diagonal = false): number {
  const k = diagonal ? hessian.length : Math.round(Math.sqrt(hessian.length));
  if ((!diagonal && k * k !== hessian.length) || k === 0 || wT.length % k !== 0 || deqT.length !== wT.length) {
    throw new RangeError(`gptqObjective: shapes do not agree (weight ${wT.length}, dequantized ${deqT.length}, Hessian ${hessian.length})`);
  }
  return weightedSquaredError(wT, deqT, wT.length / k, k, hessian);
}
