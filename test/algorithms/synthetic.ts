// Synthetic layers with the structure the quantization literature reports for transformers: heavy-tailed
// weights, correlated activations with a few large, sign-consistent outlier channels. Seeded throughout.
import { gaussianSource, uniformSource } from "../../src/quantize/algorithms/linalg.js";

export function studentTSource(seed: number, nu: number): () => number {
  const g = gaussianSource(seed);
  return () => {
    let chi2 = 0;
    for (let i = 0; i < nu; i++) chi2 += g() ** 2;
    return g() / Math.sqrt(chi2 / nu);
  };
}

/** [n][k] weights, Student-t(nu) entries times `scale`, with a mild per-row scale spread. */
export function heavyTailWeights(n: number, k: number, seed: number, nu = 4, scale = 0.02): Float32Array {
  const t = studentTSource(seed, nu);
  const g = gaussianSource(seed + 101);
  const out = new Float32Array(n * k);
  for (let r = 0; r < n; r++) {
    const rowScale = scale * Math.exp(0.25 * g());
    for (let c = 0; c < k; c++) out[r * k + c] = t() * rowScale;
  }
  return out;
}

export interface ActivationOptions {
  /** Number of outlier channels. */
  readonly outliers?: number;
  /** Their magnitude relative to the others. */
  readonly outlierScale?: number;
  /** Shared latent factors (correlation between channels). */
  readonly factors?: number;
  /** Share of each channel's variance from the shared factors (0..1). */
  readonly shared?: number;
  /** Seed of the samples; the structure (mixing, scales, outliers) comes from `seed`. Default seed + 1. */
  readonly sampleSeed?: number;
}

/** rows x k activations (row-major float64). */
export function activations(rows: number, k: number, seed: number, opts: ActivationOptions = {}): Float64Array {
  const { outliers = 4, outlierScale = 20, factors = 8, shared = 0.7 } = opts;
  const g = gaussianSource(seed);
  const u = uniformSource(seed + 7);
  const mix = Float64Array.from({ length: factors * k }, () => g() / Math.sqrt(factors));
  const chanScale = Float64Array.from({ length: k }, () => Math.exp(0.4 * g()));
  const chanMean = new Float64Array(k);
  const picked = new Set<number>();
  while (picked.size < Math.min(outliers, k)) picked.add(Math.floor(u() * k));
  for (const j of picked) {
    chanScale[j]! *= outlierScale;
    chanMean[j] = (u() < 0.5 ? -1 : 1) * chanScale[j]! * 0.8;
  }
  const x = new Float64Array(rows * k);
  const gs = gaussianSource(opts.sampleSeed ?? seed + 1);
  const z = new Float64Array(factors);
  const a = Math.sqrt(shared);
  const b = Math.sqrt(1 - shared);
  for (let r = 0; r < rows; r++) {
    for (let f = 0; f < factors; f++) z[f] = gs();
    for (let j = 0; j < k; j++) {
      let s = 0;
      for (let f = 0; f < factors; f++) s += z[f]! * mix[f * k + j]!;
      x[r * k + j] = chanMean[j]! + chanScale[j]! * (a * s + b * gs());
    }
  }
  return x;
}

export interface Stats {
  readonly meanAbs: Float64Array;
  readonly meanSquare: Float64Array;
  readonly gram: Float64Array;
}

export function statsOf(x: Float64Array, rows: number, k: number): Stats {
  const meanAbs = new Float64Array(k);
  const meanSquare = new Float64Array(k);
  const gram = new Float64Array(k * k);
  for (let r = 0; r < rows; r++) {
    const base = r * k;
    for (let i = 0; i < k; i++) {
      const xi = x[base + i]!;
      meanAbs[i]! += Math.abs(xi) / rows;
      meanSquare[i]! += (xi * xi) / rows;
      for (let j = 0; j <= i; j++) gram[i * k + j]! += (xi * x[base + j]!) / rows;
    }
  }
  for (let i = 0; i < k; i++) for (let j = 0; j < i; j++) gram[j * k + i] = gram[i * k + j]!;
  return { meanAbs, meanSquare, gram };
}

/** Mean squared output error per row of x @ W^T vs x @ V^T, measured on the samples themselves. */
export function sampleOutputError(x: Float64Array, rows: number, k: number, wT: ArrayLike<number>, vT: ArrayLike<number>, n: number): number {
  let total = 0;
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < n; o++) {
      let s = 0;
      for (let j = 0; j < k; j++) s += x[r * k + j]! * (wT[o * k + j]! - vT[o * k + j]!);
      total += s * s;
    }
  }
  return total / rows;
}
