// Shared fixtures for the kernel tests: deterministic data and the backends under test.
import { it } from "vitest";
import { loadKernels, type Kernels } from "../../src/kernels/index.js";

export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}

export type Dist = "gaussian" | "heavy" | "zeros" | "ties" | "tiny";

export function makeWeights(count: number, dist: Dist, seed = 1): Float32Array {
  const r = rng(seed);
  const gauss = (): number => Math.sqrt(-2 * Math.log(r() + 1e-300)) * Math.cos(2 * Math.PI * r());
  const w = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    if (dist === "gaussian") w[i] = gauss() * 0.05;
    else if (dist === "heavy")
      w[i] = (gauss() / (0.15 + r())) * 0.02; // Student-t-like tails
    else if (dist === "ties") w[i] = (Math.floor(r() * 9) - 4) * 0.25;
    else if (dist === "tiny")
      w[i] = gauss() * 1e-39; // subnormal floats
    else w[i] = 0;
  }
  if (dist === "gaussian" && count > 64) w.fill(0, 0, 40); // an all-zero block
  return w;
}

/**
 * The real backends. Where the native addon is absent its tests are reported as skipped, with the reason, in
 * the calling file (never silently missing); with QUANTGATE_REQUIRE_NATIVE=1 (CI, after building it) its
 * absence fails instead.
 */
export async function realBackends(): Promise<Kernels[]> {
  const out: Kernels[] = [];
  const native = await loadKernels({ prefer: "native" });
  if (native.backend === "native") out.push(native);
  else {
    const reason = native.fallbackReasons.find((r) => r.startsWith("native:")) ?? "native: not loaded";
    if (process.env.QUANTGATE_REQUIRE_NATIVE === "1") throw new Error(`QUANTGATE_REQUIRE_NATIVE=1 but the native kernels did not load: ${reason}`);
    const why = reason.startsWith("native: no addon") ? "native addon not built (npm run build:native)" : reason;
    it.skip(`native backend: every test of this file on the native kernels (${why})`, () => undefined);
  }
  const wasm = await loadKernels({ prefer: "wasm" });
  if (wasm.backend !== "wasm") throw new Error(`wasm kernels did not load: ${wasm.fallbackReasons.join("; ")}`);
  out.push(wasm);
  return out;
}

/** float64 y = x . W^T from a dequantized [n][k] weight, and sum |w x| for relative budgets. */
export function referenceGemm(w: Float32Array, n: number, k: number, x: Float32Array, m: number): { y: Float64Array; mag: Float64Array } {
  const y = new Float64Array(m * n),
    mag = new Float64Array(m * n);
  for (let mi = 0; mi < m; mi++)
    for (let r = 0; r < n; r++) {
      let s = 0,
        a = 0;
      for (let i = 0; i < k; i++) {
        const p = w[r * k + i]! * x[mi * k + i]!;
        s += p;
        a += Math.abs(p);
      }
      y[mi * n + r] = s;
      mag[mi * n + r] = a;
    }
  return { y, mag };
}

/** Index of the first element outside |y - ref| <= budget * (mag + 1e-30), or -1. */
export function firstOutside(y: Float32Array, ref: Float64Array, mag: Float64Array, budget: number): number {
  for (let i = 0; i < y.length; i++) if (!(Math.abs(y[i]! - ref[i]!) <= budget * (mag[i]! + 1e-30))) return i;
  return -1;
}
