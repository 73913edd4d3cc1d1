// Fits a per-tensor codebook (<= 16 levels) to the block-absmax-normalized weights.
import { lloydMax, normalizeByBlock, studentTGrid } from "./algorithms/codebook.js";

/** Sorted table of `levels` values in [-1, 1], in block-normalized units. */
export function fitCodebook(wT: Float32Array, k: number, blockSize: number, levels: number, method: "lloyd-max" | "student-t"): Float32Array {
  const values = normalizeByBlock(wT, wT.length / k, k, blockSize);
  return method === "student-t" ? studentTGrid(values, levels) : lloydMax(values, levels);
}
