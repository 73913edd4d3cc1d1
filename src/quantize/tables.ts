// Non-uniform (table) formats: a weight is table[code] * blockScale. NF4 and bitsandbytes FP4 (QLoRA),
// FP4 E2M1 and MXFP4 (OCP MX: E2M1 codes + one E8M0 power-of-two scale per 32), FP8 E4M3 per block,
// and learned per-tensor codebooks. quantizeTable / dequantizeTable run in the kernels once loadKernels()
// has loaded them; quantizeTableRef / dequantizeTableRef are the TypeScript references (the oracles the
// kernels are tested against, byte for byte); float32 arithmetic throughout.
import { activeKernels } from "../kernels/active.js";

const f = Math.fround;

/** NF4: quantiles of N(0,1) normalized to [-1, 1] (Dettmers et al., QLoRA, 2023), code order as bitsandbytes. */
export const NF4_TABLE = Float32Array.from([
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
  0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]);

/** FP4 E2M1 (OCP MX): sign bit 3, exponent bits 2-1, mantissa bit 0; magnitudes 0, 0.5, 1, 1.5, 2, 3, 4, 6. */
export const E2M1_TABLE = Float32Array.from([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0, -0.5, -1, -1.5, -2, -3, -4, -6]);

/**
 * bitsandbytes' FP4 (MatMulBnb4 quant_type 0), normalized to absmax 1. It is not E2M1: its smallest
 * magnitude is 0.0052 of absmax (E2M1's is 0.5/6).
 */
export const BNB_FP4_TABLE = Float32Array.from([
  0.0, 0.0052083333, 0.6666667, 1.0, 0.33333334, 0.5, 0.16666667, 0.25, -0.0, -0.0052083333, -0.6666667, -1.0, -0.33333334, -0.5, -0.16666667, -0.25,
]);

/** FP8 E4M3 (OCP, "fn": no infinities, 0x7f/0xff are NaN, max 448), all 256 codes. NaN codes decode to 0 here and are never produced. */
export const E4M3_TABLE = Float32Array.from({ length: 256 }, (_, code) => {
  const sign = code & 0x80 ? -1 : 1;
  const exp = (code >> 3) & 0xf;
  const man = code & 0x7;
  if (exp === 0xf && man === 0x7) return 0;
  if (exp === 0) return sign * (man / 8) * 2 ** -6;
  return sign * (1 + man / 8) * 2 ** (exp - 7);
});

export type TableFormat = "nf4" | "fp4" | "bnb-fp4" | "mxfp4" | "fp8" | "codebook";

export interface TableQuantized {
  readonly format: TableFormat;
  readonly n: number;
  readonly k: number;
  readonly blockSize: number;
  readonly blocksPerRow: number;
  /** Bits per code in the packed artifact. */
  readonly codeBits: number;
  /** Bits per stored block scale: 32 (fp32) or 8 (E8M0 exponent for MXFP4). */
  readonly scaleBits: number;
  readonly table: Float32Array;
  /** [n][blocksPerRow * blockSize]; padding past K holds the code of 0. */
  readonly codes: Uint8Array;
  /** [n][blocksPerRow] */
  readonly scales: Float32Array;
}

/** The largest magnitude in the table: block absmax maps to it. */
function tableMax(table: Float32Array): number {
  let m = 0;
  for (const v of table) m = Math.max(m, Math.abs(v));
  return m;
}

/** Index of the nearest table entry; ties go to the lower index (deterministic). */
export function nearestCode(table: Float32Array, x: number): number {
  let best = 0;
  let bestDist = Infinity;
  for (let i = 0; i < table.length; i++) {
    const d = Math.abs(f(x - table[i]!));
    if (d < bestDist) {
      bestDist = d;
      best = i;
    }
  }
  return best;
}

/** E8M0 scale for an MX block: 2^(floor(log2 absmax) - emax of E2M1 (2)), so absmax lands in [4, 8). */
export function mxScale(absmax: number): number {
  if (absmax === 0) return 1;
  const e = Math.floor(Math.log2(absmax)) - 2;
  return 2 ** Math.max(-127, Math.min(127, e));
}

export function tableFor(format: Exclude<TableFormat, "codebook">): Float32Array {
  switch (format) {
    case "nf4":
      return NF4_TABLE;
    case "fp4":
    case "mxfp4":
      return E2M1_TABLE;
    case "bnb-fp4":
      return BNB_FP4_TABLE;
    case "fp8":
      return E4M3_TABLE;
  }
}

/**
 * quantizeTableRef in the kernels when loaded (byte-identical: same codes, scales and padding), with
 * `threads` threads on the native backend.
 */
export function quantizeTable(
  wT: Float32Array,
  n: number,
  k: number,
  format: TableFormat,
  blockSize: number,
  codebook?: Float32Array,
  threads = 1,
): TableQuantized {
  const raw = activeKernels();
  const table = format === "codebook" ? codebook : tableFor(format);
  if (!raw?.quantizeTable || !table || !(table instanceof Float32Array) || table.length < 1 || table.length > 256 || k < 1 || wT.length !== n * k)
    return quantizeTableRef(wT, n, k, format, blockSize, codebook);
  if (format === "mxfp4" && blockSize !== 32) throw new RangeError("MXFP4 uses blocks of 32");
  const blocksPerRow = Math.ceil(k / blockSize);
  const codes = new Uint8Array(n * blocksPerRow * blockSize);
  const scales = new Float32Array(n * blocksPerRow);
  const scaleMode = format === "mxfp4" ? 1 : format === "codebook" ? 2 : 0;
  // FP8 goes to the kernels' direct E4M3 encoder (the same codes as the scan over its 256 values).
  raw.quantizeTable(wT, n, k, blockSize, format === "fp8" ? null : table, format === "fp8" ? 0 : table.length, scaleMode, codes, scales, threads);
  const codeBits = format === "fp8" ? 8 : Math.ceil(Math.log2(table.length));
  return { format, n, k, blockSize, blocksPerRow, codeBits, scaleBits: format === "mxfp4" ? 8 : 32, table, codes, scales };
}

export function quantizeTableRef(wT: Float32Array, n: number, k: number, format: TableFormat, blockSize: number, codebook?: Float32Array): TableQuantized {
  if (format === "mxfp4" && blockSize !== 32) throw new RangeError("MXFP4 uses blocks of 32");
  const table = format === "codebook" ? codebook : tableFor(format);
  if (!table) throw new RangeError("the codebook format needs a table");
  const maxAbs = tableMax(table);
  const zeroCode = nearestCode(table, 0);
  const blocksPerRow = Math.ceil(k / blockSize);
  const codes = new Uint8Array(n * blocksPerRow * blockSize).fill(zeroCode);
  const scales = new Float32Array(n * blocksPerRow);
  for (let row = 0; row < n; row++) {
    for (let b = 0; b < blocksPerRow; b++) {
      const start = row * k + b * blockSize;
      const end = row * k + Math.min(k, (b + 1) * blockSize);
      let absmax = 0;
      for (let i = start; i < end; i++) absmax = Math.max(absmax, Math.abs(wT[i]!));
      // Codebooks are fitted to block-absmax-normalized weights, so their scale is the absmax itself.
      const scale = format === "mxfp4" ? mxScale(absmax) : absmax === 0 ? 1 : format === "codebook" ? absmax : f(absmax / maxAbs);
      const inv = f(1 / scale);
      const blockIndex = row * blocksPerRow + b;
      scales[blockIndex] = scale;
      for (let i = start; i < end; i++) codes[blockIndex * blockSize + (i - start)] = nearestCode(table, f(wT[i]! * inv));
    }
  }
  const codeBits = format === "fp8" ? 8 : Math.ceil(Math.log2(table.length));
  return { format, n, k, blockSize, blocksPerRow, codeBits, scaleBits: format === "mxfp4" ? 8 : 32, table, codes, scales };
}

/** Back to [n][k] float32 (in the kernels when loaded). */
export function dequantizeTable(q: TableQuantized): Float32Array {
  const raw = activeKernels();
  if (!raw?.dequantizeTable || q.k < 1 || q.table.length < 1 || q.table.length > 256) return dequantizeTableRef(q);
  const out = new Float32Array(q.n * q.k);
  raw.dequantizeTable(q.codes, q.scales, q.table, q.n, q.k, q.blockSize, out);
  return out;
}

/** The TypeScript reference of dequantizeTable. */
export function dequantizeTableRef(q: TableQuantized): Float32Array {
  const out = new Float32Array(q.n * q.k);
  for (let row = 0; row < q.n; row++) {
    for (let col = 0; col < q.k; col++) {
      const blockIndex = row * q.blocksPerRow + Math.floor(col / q.blockSize);
      out[row * q.k + col] = f(q.table[q.codes[blockIndex * q.blockSize + (col % q.blockSize)]!]! * q.scales[blockIndex]!);
    }
  }
  return out;
}

/** Bytes of the densely packed form: codes at codeBits, scales at scaleBits, the table once per tensor. */
export function tablePackedBytes(q: TableQuantized): number {
  const blocks = q.n * q.blocksPerRow;
  const tableBytes = q.format === "codebook" ? q.table.length * 4 : 0;
  return Math.ceil((q.n * q.k * q.codeBits) / 8) + Math.ceil((blocks * q.scaleBits) / 8) + tableBytes;
}
