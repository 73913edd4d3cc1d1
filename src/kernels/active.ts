// The compiled kernels the synchronous helpers of src/quantize/ hand their per-element loops to
// (transposes, packing, decoding, error sums, histograms). loadKernels() installs the fastest backend
// that loaded (native over wasm); until then, or with the js backend, the TypeScript references run.
import type { RawKernels } from "./raw.js";

let active: { raw: RawKernels; rank: number } | undefined;

/** Install `raw` unless a faster backend is already installed (rank: native 2, wasm 1). */
export function installActiveKernels(raw: RawKernels, rank: number): void {
  if (!active || rank > active.rank) active = { raw, rank };
}

/** The installed kernels, or undefined (then callers run their TypeScript reference). */
export function activeKernels(): RawKernels | undefined {
  return active?.raw;
}

/** Tests: run the TypeScript references again (undefined) or install a given backend. */
export function setActiveKernels(raw: RawKernels | undefined): void {
  active = raw ? { raw, rank: 99 } : undefined;
}
