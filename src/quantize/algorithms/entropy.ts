// Entropy-coded size of quantized codes: the empirical Shannon entropy (the bound any lossless coder of
// independent codes approaches) and the average length of a real Huffman code (what a simple per-tensor
// variable-length coder achieves), reported as compressed bits per weight. The optimal-formats paper
// (Orr et al. 2025) argues that good formats win by effectively exploiting such variable-length codes;
// this makes that gap visible per tensor.

import { activeKernels } from "../../kernels/active.js";
import type { BlockwiseQuantized } from "../blockwise.js";

export interface CodeEntropy {
  /** Empirical Shannon entropy, bits per code. */
  readonly entropyBits: number;
  /** Average Huffman code length, bits per code (1 when a single symbol occurs, 0 for no codes). */
  readonly huffmanBits: number;
  /** Occurrences of each symbol, length `alphabet`. */
  readonly histogram: Uint32Array;
  /** Huffman code length per symbol (0 for symbols that do not occur). */
  readonly codeLengths: Uint8Array;
  /** Bits to store the code lengths once per tensor (canonical Huffman): alphabet * bits per length. */
  readonly huffmanTableBits: number;
}

/**
 * Huffman code lengths for a histogram. Deterministic: the two lightest nodes merge first, ties broken by
 * node id (symbols are ids 0..alphabet-1 in order, merged nodes get increasing ids after them).
 */
export function huffmanCodeLengths(histogram: ArrayLike<number>): Uint8Array {
  const a = histogram.length;
  const lengths = new Uint8Array(a);
  const weight: number[] = [];
  const parent: number[] = [];
  const active: number[] = [];
  for (let s = 0; s < a; s++) {
    weight.push(histogram[s]!);
    parent.push(-1);
    if (histogram[s]! > 0) active.push(s);
  }
  if (active.length === 0) return lengths;
  if (active.length === 1) {
    lengths[active[0]!] = 1;
    return lengths;
  }
  const popLightest = (): number => {
    let best = 0;
    for (let i = 1; i < active.length; i++) {
      const x = active[i]!;
      const y = active[best]!;
      if (weight[x]! < weight[y]! || (weight[x] === weight[y] && x < y)) best = i;
    }
    return active.splice(best, 1)[0]!;
  };
  while (active.length > 1) {
    const x = popLightest();
    const y = popLightest();
    const id = weight.length;
    weight.push(weight[x]! + weight[y]!);
    parent.push(-1);
    parent[x] = id;
    parent[y] = id;
    active.push(id);
  }
  for (let s = 0; s < a; s++) {
    if (!(histogram[s]! > 0)) continue;
    let depth = 0;
    for (let node = s; parent[node]! >= 0; node = parent[node]!) depth++;
    lengths[s] = depth;
  }
  return lengths;
}

export function codeEntropy(codes: Uint8Array, alphabet: number): CodeEntropy {
  if (!Number.isInteger(alphabet) || alphabet < 1 || alphabet > 256) throw new RangeError(`codeEntropy: alphabet must be 1..256, got ${alphabet}`);
  const histogram = new Uint32Array(alphabet);
  const raw = activeKernels();
  const counted = raw ? new Float64Array(alphabet) : undefined;
  if (raw && counted && raw.histogramU8(codes, alphabet, counted)) histogram.set(counted);
  else {
    for (let i = 0; i < codes.length; i++) {
      const c = codes[i]!;
      if (c >= alphabet) throw new RangeError(`codeEntropy: code ${c} at ${i} is outside an alphabet of ${alphabet}`);
      histogram[c]!++;
    }
  }
  const total = codes.length;
  const codeLengths = huffmanCodeLengths(histogram);
  let entropyBits = 0;
  let huffmanSum = 0;
  let maxLength = 0;
  for (let s = 0; s < alphabet; s++) {
    const count = histogram[s]!;
    if (count === 0) continue;
    const p = count / total;
    entropyBits -= p * Math.log2(p);
    huffmanSum += count * codeLengths[s]!;
    maxLength = Math.max(maxLength, codeLengths[s]!);
  }
  return {
    entropyBits: total > 0 ? Math.max(0, entropyBits) : 0,
    huffmanBits: total > 0 ? huffmanSum / total : 0,
    histogram,
    codeLengths,
    huffmanTableBits: alphabet * Math.max(1, Math.ceil(Math.log2(maxLength + 1))),
  };
}

/** The codes of a block-wise weight without the padding past k (what entropy should be measured on). */
export function blockwiseCodes(q: BlockwiseQuantized): Uint8Array {
  const { n, k, blocksPerRow } = q;
  const { blockSize } = q.spec;
  const out = new Uint8Array(n * k);
  // A row's blocks are contiguous: its first k codes are the row without the padding.
  const rowCodes = blocksPerRow * blockSize;
  if (rowCodes === k) out.set(q.codes.subarray(0, n * k));
  else for (let row = 0; row < n; row++) out.set(q.codes.subarray(row * rowCodes, row * rowCodes + k), row * k);
  return out;
}
