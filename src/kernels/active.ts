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

/** Bytes from which a fresh buffer that the kernels fill asks for transparent huge pages. */
export const HUGE_PAGE_MIN_BYTES = 4 << 20;

/**
 * A zeroed Float32Array for the kernels to fill. Large ones ask the native addon for transparent huge pages
 * first: a fresh large ArrayBuffer is untouched memory whose 4 KiB pages fault in one by one on first write
 * (a 64 MiB transpose output: 16,384 faults, 30 of the transpose's 50 ms on a 2-core runner).
 */
export function freshFloat32(len: number, raw: RawKernels | undefined = active?.raw): Float32Array {
  if (!raw?.adviseHugePages || len * 4 < HUGE_PAGE_MIN_BYTES) return new Float32Array(len);
  const bytes = new Uint8Array(len * 4);
  raw.adviseHugePages(bytes);
  return new Float32Array(bytes.buffer, 0, len);
}

/** freshFloat32's Uint8Array. */
export function freshBytes(len: number, raw: RawKernels | undefined = active?.raw): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(len);
  if (raw?.adviseHugePages && len >= HUGE_PAGE_MIN_BYTES) raw.adviseHugePages(bytes);
  return bytes;
}
