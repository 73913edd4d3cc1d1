// TypeScript mirror of kernels/include/qg_formats.h: format ids, per-format fields, and the byte
// size of each block struct. test/kernels/formats.test.ts checks it against the built kernels.

export const FORMAT_IDS = {
  int8: 0,
  int4: 1,
  int3: 2,
  int2: 3,
  nf4: 4,
  fp4: 5,
  mxfp4: 6,
  fp8: 7,
  codebook: 8,
  f32: 9,
} as const;

export type FormatName = keyof typeof FORMAT_IDS;
export type TableFormat = "nf4" | "fp4" | "mxfp4" | "fp8" | "codebook";
export const TABLE_FORMATS: readonly TableFormat[] = ["nf4", "fp4", "mxfp4", "fp8", "codebook"];

export interface FormatInfo {
  readonly codeBits: number;
  readonly hasScale: boolean;
  /** Bits the artifact stores per scale (fp16 scales; E8M0 for MXFP4). */
  readonly scaleBits: number;
  readonly hasZeroPoint: boolean;
  /** Block size the format fixes (MXFP4: 32), 0 when any of 16/32/64/128/256 is allowed. */
  readonly fixedBlock: number;
}

/** Same order and values as QG_FORMAT_TABLE. */
export const FORMAT_INFO: Readonly<Record<FormatName, FormatInfo>> = {
  int8: { codeBits: 8, hasScale: true, scaleBits: 16, hasZeroPoint: true, fixedBlock: 0 },
  int4: { codeBits: 4, hasScale: true, scaleBits: 16, hasZeroPoint: true, fixedBlock: 0 },
  int3: { codeBits: 3, hasScale: true, scaleBits: 16, hasZeroPoint: true, fixedBlock: 0 },
  int2: { codeBits: 2, hasScale: true, scaleBits: 16, hasZeroPoint: true, fixedBlock: 0 },
  nf4: { codeBits: 4, hasScale: true, scaleBits: 16, hasZeroPoint: false, fixedBlock: 0 },
  fp4: { codeBits: 4, hasScale: true, scaleBits: 16, hasZeroPoint: false, fixedBlock: 0 },
  mxfp4: { codeBits: 4, hasScale: true, scaleBits: 8, hasZeroPoint: false, fixedBlock: 32 },
  fp8: { codeBits: 8, hasScale: true, scaleBits: 16, hasZeroPoint: false, fixedBlock: 0 },
  codebook: { codeBits: 4, hasScale: false, scaleBits: 0, hasZeroPoint: false, fixedBlock: 0 },
  f32: { codeBits: 32, hasScale: false, scaleBits: 0, hasZeroPoint: false, fixedBlock: 0 },
};

/** sizeof() of each block struct, in qg_struct_sizes() order. */
export const BLOCK_STRUCT_SIZES: readonly { readonly name: string; readonly bytes: number }[] = [
  { name: "qg_block_i8x32_f32_sym", bytes: 36 },
  { name: "qg_block_i8x32_f16_asym", bytes: 35 },
  { name: "qg_block_i4x32_f16_sym", bytes: 18 },
  { name: "qg_block_i4x32_f16_asym", bytes: 19 },
  { name: "qg_block_i4x32_f32_asym", bytes: 21 },
  { name: "qg_block_i3x32_f16_sym", bytes: 14 },
  { name: "qg_block_i3x32_f16_asym", bytes: 15 },
  { name: "qg_block_i2x32_f16_sym", bytes: 10 },
  { name: "qg_block_i2x32_f16_asym", bytes: 11 },
  { name: "qg_block_i4x16_f16_sym", bytes: 10 },
  { name: "qg_block_i4x64_f16_sym", bytes: 34 },
  { name: "qg_block_i4x128_f16_sym", bytes: 66 },
  { name: "qg_block_i3x128_f16_sym", bytes: 50 },
  { name: "qg_block_i2x128_f16_sym", bytes: 34 },
  { name: "qg_block_nf4x32", bytes: 18 },
  { name: "qg_block_fp4x32", bytes: 18 },
  { name: "qg_block_mxfp4", bytes: 17 },
  { name: "qg_block_fp8x32", bytes: 34 },
  { name: "qg_block_cb4x32", bytes: 16 },
];

/** Bytes one block of `blockSize` weights occupies in the artifact (codes + scale + zero point). */
export function blockBytes(format: FormatName, blockSize: number, opts: { zeroPoint?: boolean; scaleBits?: number } = {}): number {
  const info = FORMAT_INFO[format];
  const codeBytes = Math.ceil((blockSize * info.codeBits) / 8);
  const scaleBytes = info.hasScale ? (opts.scaleBits ?? info.scaleBits) / 8 : 0;
  const zpBytes = info.hasZeroPoint && opts.zeroPoint ? 1 : 0;
  return codeBytes + scaleBytes + zpBytes;
}

/** Bytes of the dense code stream of one block (MatMulNBits layout for 2/4/8 bits; int3 dense LSB-first). */
export function codeBytesPerBlock(bits: number, blockSize: number): number {
  return Math.ceil((blockSize * bits) / 8);
}

export const KERNEL_OPS = { quantize: 0, dequantize: 1, pack: 2, gemv: 3, gemm: 4, "gemv-int8-act": 5, "gemm-int8-act": 6 } as const;
export type KernelOp = keyof typeof KERNEL_OPS;
