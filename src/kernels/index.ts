// Low-bit kernels for the quantizer and the measure stage: loads the native addon, else the
// WebAssembly module, else the TypeScript reference, and records why each faster one was skipped.
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import type { BlockwiseQuantized, BlockwiseSpec } from "../quantize/blockwise.js";
import { FORMAT_IDS, KERNEL_OPS, type FormatName, type KernelOp, type TableFormat } from "./formats.js";
import type { RawKernels } from "./raw.js";
import { instantiateWasmKernels } from "./wasm.js";
import { jsRawKernels } from "./js.js";
import { freshBytes, installActiveKernels } from "./active.js";

export type KernelBackendName = "native" | "wasm" | "js";
export type { FormatName, KernelOp, TableFormat } from "./formats.js";
export type KernelImpl = "simd" | "reference" | "none";

/** A blockwise integer weight in its deployable form (MatMulNBits layout; int3 dense). */
export interface PackedBlockwise {
  readonly spec: BlockwiseSpec;
  readonly n: number;
  readonly k: number;
  readonly blocksPerRow: number;
  /** [n][blocksPerRow][blockSize*bits/8], LSB-first codes within each block. */
  readonly packed: Uint8Array;
  /** [n][blocksPerRow] float32. */
  readonly scales: Float32Array;
  /** [n][blocksPerRow] unpacked, undefined when symmetric (2^(bits-1)). */
  readonly zeroPoints: Uint8Array | undefined;
  /** The int4 GEMV's own row-interleaved copy of `packed` (prepareGemvInt8), where the backend has a kernel for it. */
  readonly gemvLayout?: Uint8Array;
}

/** NF4 / FP4 / MXFP4 / FP8 / codebook weight: packed codes + per-block scale (+ table). */
export interface TableQuantized {
  readonly format: TableFormat;
  readonly n: number;
  readonly k: number;
  readonly blockSize: number;
  readonly blocksPerRow: number;
  /** [n][blocksPerRow][blockSize*codeBits/8]; 4-bit codes LSB-first (low nibble first), FP8 one byte each. */
  readonly packed: Uint8Array;
  /** [n][blocksPerRow]; MXFP4 scales are exact powers of two (E8M0 = float exponent field); absent for codebook. */
  readonly scales: Float32Array | undefined;
  /** Codebook levels (16 floats; unused entries repeat the last), codebook format only. */
  readonly table: Float32Array | undefined;
}

export interface Kernels {
  readonly backend: KernelBackendName;
  /** The low-level surface underneath (tests compare its per-element passes with the TypeScript references). */
  readonly raw: RawKernels;
  /** Why each faster backend was not used (empty when native loaded). */
  readonly fallbackReasons: readonly string[];
  /** Instruction set the dispatch picked ("avx2", "simd128", "scalar", "typescript"). */
  readonly isa: string;
  /** Whether `op` exists for `format` on this backend (reference or SIMD). */
  hasKernel(op: KernelOp, format: FormatName): boolean;
  kernelImpl(op: KernelOp, format: FormatName): KernelImpl;
  quantizeBlockwise(wT: Float32Array, n: number, k: number, spec: BlockwiseSpec, threads?: number): BlockwiseQuantized;
  packBlockwise(q: BlockwiseQuantized): PackedBlockwise;
  dequantizeBlockwise(p: PackedBlockwise): Float32Array;
  /** y[m][n] = x[m][k] . W^T, computed on the packed codes. */
  gemmBlockwise(p: PackedBlockwise, x: Float32Array, m: number, threads?: number, out?: Float32Array): Float32Array;
  /**
   * int4 GEMV (M = 1) with the activations quantized to int8 with one scale per weight block (blockSize
   * values), the trade ONNX Runtime's MatMulNBits makes at accuracy_level 4, with the same numbers up to
   * float summation order: integer dot products, about 3x less work, and an error of a few 1e-3 of sum |w x|. Needs blockSize % 32 == 0; kernelImpl("gemv-int8-act", "int4") says whether SIMD.
   */
  gemvBlockwiseInt8(p: PackedBlockwise, x: Float32Array, threads?: number, out?: Float32Array): Float32Array;
  /**
   * `p` with the int4 GEMV's own weight layout added (as ONNX Runtime prepacks MatMulNBits weights when a session
   * is created): rows in tiles of four, interleaved per 64 bytes, so that the GEMV reads one sequential stream from
   * memory. gemvBlockwiseInt8 then reads it, with the same numbers bit for bit. `p` itself where no kernel reads
   * the layout (wasm, AVX2, arm64, a row ending in a partial 128-code group).
   */
  prepareGemvInt8(p: PackedBlockwise): PackedBlockwise;
  /**
   * int4 GEMM (y[m][n]) with every activation row quantized to int8 per weight block as gemvBlockwiseInt8 does (row
   * by row the same numbers), the product ONNX Runtime's MatMulNBits computes at accuracy_level 4 for
   * prefill and batches. Needs blockSize % 32 == 0; kernelImpl("gemm-int8-act", "int4") says whether SIMD.
   */
  gemmBlockwiseInt8(p: PackedBlockwise, x: Float32Array, m: number, threads?: number, out?: Float32Array): Float32Array;
  packBits(codes: Uint8Array, bits: number, groupLength: number): Uint8Array;
  unpackBits(packed: Uint8Array, bits: number, groupLength: number, groups: number): Uint8Array;
  quantizeTable(
    format: TableFormat,
    wT: Float32Array,
    n: number,
    k: number,
    blockSize: number,
    opts?: { codebook?: Float32Array; threads?: number },
  ): TableQuantized;
  dequantizeTable(q: TableQuantized): Float32Array;
  gemmTable(q: TableQuantized, x: Float32Array, m: number, threads?: number, out?: Float32Array): Float32Array;
  /** Lloyd-Max levels (<= 16) fitted to the values of w. */
  fitCodebook(w: Float32Array, entries: number, iterations?: number): Float32Array;
  /** y[m][n] = x[m][k] . W^T for a float32 W given as [n][k]. */
  gemmF32(wT: Float32Array, n: number, k: number, x: Float32Array, m: number, threads?: number, out?: Float32Array): Float32Array;
  f32ToF16(values: Float32Array): Uint16Array;
  f16ToF32(halves: Uint16Array): Float32Array;
  /** Sum of a buffer, read at full speed: the memory-bandwidth probe. */
  readSum(buffer: Float32Array, threads?: number): number;
  /** Route every call to the scalar references (tests and benchmarks); false restores SIMD. */
  forceReference(on: boolean): void;
}

const TABLE_FORMAT_IDS: Record<TableFormat, number> = {
  nf4: FORMAT_IDS.nf4,
  fp4: FORMAT_IDS.fp4,
  mxfp4: FORMAT_IDS.mxfp4,
  fp8: FORMAT_IDS.fp8,
  codebook: FORMAT_IDS.codebook,
};

function intFormat(bits: number): FormatName {
  return bits === 8 ? "int8" : bits === 4 ? "int4" : bits === 3 ? "int3" : "int2";
}

function checkSpec(fn: string, spec: BlockwiseSpec, n: number, k: number, length: number): void {
  if (![2, 3, 4, 8].includes(spec.bits)) throw new RangeError(`${fn}: bits must be 2, 3, 4 or 8, not ${spec.bits}`);
  if (!Number.isInteger(spec.blockSize) || spec.blockSize < 8 || spec.blockSize > 256 || spec.blockSize % 8)
    throw new RangeError(`${fn}: blockSize must be a multiple of 8 in 8..256, not ${spec.blockSize}`);
  if (!Number.isSafeInteger(n) || n < 0 || !Number.isSafeInteger(k) || k < 1) throw new RangeError(`${fn}: bad shape n=${n} k=${k}`);
  if (length !== n * k) throw new RangeError(`${fn}: weight has ${length} values, expected n*k = ${n * k}`);
}

/** The high-level kernels over any RawKernels implementation. */
export function kernelsFromRaw(raw: RawKernels, backend: KernelBackendName, fallbackReasons: readonly string[]): Kernels {
  const impl = (op: KernelOp, format: FormatName): KernelImpl => {
    const v = raw.kernelImpl(KERNEL_OPS[op], FORMAT_IDS[format]);
    return v === 2 ? "simd" : v === 1 ? "reference" : "none";
  };
  const threadsOf = (t: number | undefined): number => Math.max(1, Math.min(64, Math.floor(t ?? 1)));
  const isa = raw.isa();
  // What the GEMV/GEMM kernels stream (packed codes, scales, zero points) starts on a cache line where the
  // backend can say where that is (alignOffset, native only): large ArrayBuffers come 16 bytes past a page
  // boundary, and a 64-byte load then straddles two lines (int4 GEMV at block 128, hot: 1.11x slower).
  const alignedBytes = (bytes: number): { buffer: ArrayBuffer; offset: number } | null => {
    if (!raw.alignOffset || bytes < 4096) return null;
    const u8 = freshBytes(bytes + 63, raw);
    const offset = raw.alignOffset(u8, 64);
    return offset % 4 === 0 ? { buffer: u8.buffer, offset } : null;
  };
  const alignedU8 = (len: number): Uint8Array => {
    const a = alignedBytes(len);
    return a ? new Uint8Array(a.buffer, a.offset, len) : new Uint8Array(len);
  };
  const alignedF32 = (len: number): Float32Array => {
    const a = alignedBytes(len * 4);
    return a ? new Float32Array(a.buffer, a.offset, len) : new Float32Array(len);
  };
  return {
    backend,
    raw,
    fallbackReasons,
    isa,
    hasKernel: (op, format) => impl(op, format) !== "none",
    kernelImpl: impl,
    quantizeBlockwise(wT, n, k, spec, threads) {
      checkSpec("quantizeBlockwise", spec, n, k, wT.length);
      const blocksPerRow = Math.ceil(k / spec.blockSize);
      const codes = freshBytes(n * blocksPerRow * spec.blockSize, raw);
      const scales = alignedF32(n * blocksPerRow);
      const zeroPoints = alignedU8(n * blocksPerRow);
      raw.quantizeInt(wT, n, k, spec.bits, spec.blockSize, spec.symmetric, spec.clipSearch, codes, scales, zeroPoints, threadsOf(threads));
      return { spec, n, k, blocksPerRow, codes, scales, zeroPoints };
    },
    packBlockwise(q) {
      const { bits, blockSize, symmetric } = q.spec;
      const packed = alignedU8(q.n * q.blocksPerRow * Math.ceil((blockSize * bits) / 8));
      raw.packBits(q.codes, bits, blockSize, packed);
      return { spec: q.spec, n: q.n, k: q.k, blocksPerRow: q.blocksPerRow, packed, scales: q.scales, zeroPoints: symmetric ? undefined : q.zeroPoints };
    },
    dequantizeBlockwise(p) {
      const out = new Float32Array(p.n * p.k);
      raw.dequantizeInt(p.packed, p.scales, p.zeroPoints ?? null, p.n, p.k, p.spec.bits, p.spec.blockSize, out);
      return out;
    },
    gemmBlockwise(p, x, m, threads, out) {
      const y = out ?? new Float32Array(m * p.n);
      raw.gemmInt(p.packed, p.scales, p.zeroPoints ?? null, p.n, p.k, p.spec.bits, p.spec.blockSize, x, m, y, threadsOf(threads));
      return y;
    },
    gemvBlockwiseInt8(p, x, threads, out) {
      if (p.spec.bits !== 4) throw new RangeError(`gemvBlockwiseInt8: int4 only, not int${p.spec.bits}`);
      const y = out ?? new Float32Array(p.n);
      // the layout's kernel can be gone since p was prepared (forceRef, an ISA cap): then the plain copy serves
      if (p.gemvLayout && raw.gemvInt4Q8Prepacked && (raw.prepackInt4Q8Bytes?.(p.n, p.k, p.spec.blockSize) ?? 0) > 0)
        raw.gemvInt4Q8Prepacked(p.gemvLayout, p.scales, p.zeroPoints ?? null, p.n, p.k, p.spec.blockSize, x, y, threadsOf(threads));
      else raw.gemvInt4Q8(p.packed, p.scales, p.zeroPoints ?? null, p.n, p.k, p.spec.blockSize, x, y, threadsOf(threads));
      return y;
    },
    prepareGemvInt8(p) {
      const bytes = p.spec.bits === 4 && raw.prepackInt4Q8 ? (raw.prepackInt4Q8Bytes?.(p.n, p.k, p.spec.blockSize) ?? 0) : 0;
      if (bytes <= 0 || !raw.prepackInt4Q8) return p;
      const gemvLayout = alignedU8(bytes);
      raw.prepackInt4Q8(p.packed, p.n, p.k, p.spec.blockSize, gemvLayout);
      return { ...p, gemvLayout };
    },
    gemmBlockwiseInt8(p, x, m, threads, out) {
      if (p.spec.bits !== 4) throw new RangeError(`gemmBlockwiseInt8: int4 only, not int${p.spec.bits}`);
      const y = out ?? new Float32Array(m * p.n);
      raw.gemmInt4Q8(p.packed, p.scales, p.zeroPoints ?? null, p.n, p.k, p.spec.blockSize, x, m, y, threadsOf(threads));
      return y;
    },
    packBits(codes, bits, groupLength) {
      const out = new Uint8Array((codes.length / groupLength) * Math.ceil((groupLength * bits) / 8));
      raw.packBits(codes, bits, groupLength, out);
      return out;
    },
    unpackBits(packed, bits, groupLength, groups) {
      const out = new Uint8Array(groups * groupLength);
      raw.unpackBits(packed, bits, groupLength, groups, out);
      return out;
    },
    quantizeTable(format, wT, n, k, blockSize, opts = {}) {
      if (format === "mxfp4" && blockSize !== 32) throw new RangeError("quantizeTable: MXFP4 blocks are 32 weights");
      if (wT.length !== n * k) throw new RangeError(`quantizeTable: weight has ${wT.length} values, expected ${n * k}`);
      const blocksPerRow = Math.ceil(k / blockSize);
      const codeBits = format === "fp8" ? 8 : 4;
      const packed = alignedU8(n * blocksPerRow * Math.ceil((blockSize * codeBits) / 8));
      let table: Float32Array | undefined;
      if (format === "codebook") {
        const given = opts.codebook ?? this.fitCodebook(wT, 16, 12);
        if (given.length < 1 || given.length > 16) throw new RangeError("quantizeTable: a codebook has 1 to 16 entries");
        table = new Float32Array(16).fill(given[given.length - 1]!);
        table.set(given);
        const scalesNone = null;
        raw.quantizeLut(TABLE_FORMAT_IDS[format], wT, n, k, blockSize, table, given.length, packed, scalesNone, threadsOf(opts.threads));
        return { format, n, k, blockSize, blocksPerRow, packed, scales: undefined, table };
      }
      const scales = alignedF32(n * blocksPerRow);
      raw.quantizeLut(TABLE_FORMAT_IDS[format], wT, n, k, blockSize, null, 0, packed, scales, threadsOf(opts.threads));
      return { format, n, k, blockSize, blocksPerRow, packed, scales, table: undefined };
    },
    dequantizeTable(q) {
      const out = new Float32Array(q.n * q.k);
      raw.dequantizeLut(TABLE_FORMAT_IDS[q.format], q.packed, q.scales ?? null, q.table ?? null, q.n, q.k, q.blockSize, out);
      return out;
    },
    gemmTable(q, x, m, threads, out) {
      const y = out ?? new Float32Array(m * q.n);
      raw.gemmLut(TABLE_FORMAT_IDS[q.format], q.packed, q.scales ?? null, q.table ?? null, q.n, q.k, q.blockSize, x, m, y, threadsOf(threads));
      return y;
    },
    fitCodebook(w, entries, iterations = 12) {
      const table = new Float32Array(16);
      raw.codebookFit(w, entries, iterations, table);
      return table.slice(0, entries);
    },
    gemmF32(wT, n, k, x, m, threads, out) {
      const y = out ?? new Float32Array(m * n);
      raw.gemmF32(wT, n, k, x, m, y, threadsOf(threads));
      return y;
    },
    f32ToF16(values) {
      const out = new Uint16Array(values.length);
      raw.f32ToF16(values, out);
      return out;
    },
    f16ToF32(halves) {
      const out = new Float32Array(halves.length);
      raw.f16ToF32(halves, out);
      return out;
    },
    readSum: (buffer, threads) => raw.readSum(buffer, threadsOf(threads)),
    forceReference: (on) => raw.forceRef(on),
  };
}

// ---------------------------------------------------------------- artifact resolution

const NATIVE_NAME = "quantgate_kernels.node";
const WASM_NAME = "quantgate_kernels.wasm";

/**
 * Package roots to try: from lib/kernels/index.js (and src/kernels/index.ts under vitest) the root
 * is two levels up; from the ncc bundle dist/index.js it is one level up.
 */
function packageRoots(): URL[] {
  const here = import.meta.url;
  return [new URL("../../", here), new URL("../", here)];
}

function unique(paths: string[]): string[] {
  return [...new Set(paths)];
}

/** The node-gyp dev builds, tried before the prebuilt addons. */
function devBuildCandidates(): string[] {
  return unique(packageRoots().map((root) => fileURLToPath(new URL(`kernels/build/Release/${NATIVE_NAME}`, root))));
}

/** The prebuilt addons committed under dist/kernels/<platform>-<arch>/ (kernels/build-prebuilt.sh). */
function prebuiltCandidates(): string[] {
  const plat = `${process.platform}-${process.arch}`;
  const list = packageRoots().map((root) => fileURLToPath(new URL(`dist/kernels/${plat}/${NATIVE_NAME}`, root)));
  list.push(fileURLToPath(new URL(`./kernels/${plat}/${NATIVE_NAME}`, import.meta.url)));
  return unique(list);
}

/** Addon files in the order tried: QUANTGATE_KERNELS_NATIVE, the dev build, the prebuilt for this platform-arch. */
export function nativeCandidates(): string[] {
  const env = process.env.QUANTGATE_KERNELS_NATIVE;
  return unique([...(env ? [env] : []), ...devBuildCandidates(), ...prebuiltCandidates()]);
}

export function wasmCandidates(): string[] {
  const list: string[] = [];
  const env = process.env.QUANTGATE_KERNELS_WASM;
  if (env) list.push(env);
  for (const root of packageRoots()) list.push(fileURLToPath(new URL(`dist/kernels/${WASM_NAME}`, root)));
  list.push(fileURLToPath(new URL(`./kernels/${WASM_NAME}`, import.meta.url)));
  return unique(list);
}

function loadNative(reasons: string[]): RawKernels | undefined {
  const candidates = nativeCandidates();
  const found = candidates.filter((p) => existsSync(p));
  if (found.length === 0) {
    reasons.push(`native: no dev build and no prebuilt addon for ${process.platform}-${process.arch} (looked at ${candidates.join(", ")})`);
    return undefined;
  }
  const req = createRequire(import.meta.url);
  for (const file of found) {
    try {
      // A computed path, so bundlers leave the .node file alone.
      const mod = req(String(file)) as RawKernels;
      if (typeof mod.quantizeInt !== "function") throw new Error("not a QuantGate kernels addon");
      if (prebuiltCandidates().includes(file)) {
        // Logged with the other reasons: which addon runs, and why not the dev build.
        const dev = devBuildCandidates().some((p) => existsSync(p)) ? "the dev build did not load" : "no dev build (kernels/build/Release)";
        reasons.push(`native: ${dev}; using the prebuilt ${process.platform}-${process.arch} addon ${file}`);
      }
      return mod;
    } catch (e) {
      reasons.push(`native: ${file}: ${(e as Error).message.split("\n")[0]}`);
    }
  }
  return undefined;
}

async function loadWasm(reasons: string[]): Promise<RawKernels | undefined> {
  const candidates = wasmCandidates();
  const found = candidates.filter((p) => existsSync(p));
  if (found.length === 0) {
    reasons.push(`wasm: no module at ${candidates.join(", ")}`);
    return undefined;
  }
  for (const file of found) {
    try {
      return await instantiateWasmKernels(readFileSync(file));
    } catch (e) {
      reasons.push(`wasm: ${file}: ${(e as Error).message.split("\n")[0]}`);
    }
  }
  return undefined;
}

const cache = new Map<KernelBackendName, Promise<Kernels>>();

/**
 * Kernels from the fastest backend that loads: native, then wasm, then js (the TypeScript
 * reference). `prefer` starts the search lower (QUANTGATE_KERNELS_BACKEND does the same).
 * Cached per preference after the first call.
 */
export function loadKernels(opts: { prefer?: KernelBackendName } = {}): Promise<Kernels> {
  const envPrefer = process.env.QUANTGATE_KERNELS_BACKEND as KernelBackendName | undefined;
  const prefer = opts.prefer ?? (envPrefer && ["native", "wasm", "js"].includes(envPrefer) ? envPrefer : "native");
  let p = cache.get(prefer);
  if (!p) {
    p = (async () => {
      const reasons: string[] = [];
      if (prefer === "native") {
        const raw = loadNative(reasons);
        if (raw) {
          installActiveKernels(raw, 2);
          return kernelsFromRaw(raw, "native", reasons);
        }
      } else reasons.push(`native: skipped (prefer=${prefer})`);
      if (prefer !== "js") {
        const raw = await loadWasm(reasons);
        if (raw) {
          installActiveKernels(raw, 1);
          return kernelsFromRaw(raw, "wasm", reasons);
        }
      } else reasons.push(`wasm: skipped (prefer=js)`);
      return kernelsFromRaw(jsRawKernels(), "js", reasons);
    })();
    cache.set(prefer, p);
  }
  return p;
}

export { intFormat };
