// Kernel benchmark for the measure stage: GEMV (M = 1) time per layer shape and format on this
// machine, effective GB/s of weight bytes, and our float32 GEMV on the same shape for comparison.
import type { BlockwiseSpec } from "../quantize/blockwise.js";
import type { Kernels, TableFormat } from "./index.js";

export interface TableFormatSpec {
  readonly format: TableFormat;
  readonly blockSize: number;
}
export type BenchFormat = BlockwiseSpec | TableFormatSpec;

export interface KernelBenchRow {
  readonly layer: string;
  readonly n: number;
  readonly k: number;
  readonly format: string;
  readonly threads: number;
  /** Median GEMV time, M = 1. */
  readonly gemvMs: number;
  /** Bytes the GEMV reads for the weight: codes + scales (fp32 in the kernels) + zero points. */
  readonly weightBytes: number;
  readonly gbPerS: number;
  /** Median float32 GEMV time on the same shape (our own kernel). */
  readonly f32GemvMs: number;
  readonly speedupVsF32: number;
}

export interface KernelBenchTotal {
  readonly format: string;
  readonly gemvMs: number;
  readonly f32GemvMs: number;
  readonly weightBytes: number;
  readonly gbPerS: number;
  readonly speedupVsF32: number;
}

export interface KernelBenchResult {
  readonly backend: string;
  readonly isa: string;
  readonly threads: number;
  readonly rows: readonly KernelBenchRow[];
  readonly totals: readonly KernelBenchTotal[];
}

export function formatLabel(f: BenchFormat): string {
  if ("format" in f) return `${f.format}-b${f.blockSize}`;
  return `int${f.bits}-b${f.blockSize}-${f.symmetric ? "sym" : "asym"}${f.clipSearch ? "-clip" : ""}`;
}

/** Deterministic, fast pseudo-Gaussian weights (GEMV time does not depend on the values). */
function syntheticWeights(count: number, seed: number): Float32Array {
  const w = new Float32Array(count);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < count; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const a = s & 0xffff,
      b = s >>> 16;
    w[i] = ((a + b) / 65536 - 1) * 0.05;
  }
  return w;
}

export function medianMs(fn: () => void, runs: number, warmup: number): number {
  for (let i = 0; i < warmup; i++) fn();
  const times: number[] = [];
  for (let i = 0; i < Math.max(1, runs); i++) {
    const t0 = performance.now();
    fn();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return times[times.length >> 1]!;
}

/** A prepared GEMV for one format and shape: the closure runs y = W x once. */
export function prepareGemv(
  kernels: Kernels,
  format: BenchFormat,
  wT: Float32Array,
  n: number,
  k: number,
  threads: number,
): { run: () => void; weightBytes: number } {
  const x = syntheticWeights(k, 7);
  const y = new Float32Array(n);
  if ("format" in format) {
    const q = kernels.quantizeTable(format.format, wT, n, k, format.blockSize, { threads });
    const weightBytes = q.packed.byteLength + (q.scales?.byteLength ?? 0) + (q.table?.byteLength ?? 0);
    return { run: () => void kernels.gemmTable(q, x, 1, threads, y), weightBytes };
  }
  const p = kernels.packBlockwise(kernels.quantizeBlockwise(wT, n, k, format, threads));
  const weightBytes = p.packed.byteLength + p.scales.byteLength + (p.zeroPoints?.byteLength ?? 0);
  return { run: () => void kernels.gemmBlockwise(p, x, 1, threads, y), weightBytes };
}

export function benchmarkKernels(
  kernels: Kernels,
  shapes: { name: string; k: number; n: number }[],
  formats: BenchFormat[],
  opts: { threads: number; runs: number; warmup: number },
): KernelBenchResult {
  const rows: KernelBenchRow[] = [];
  const threads = Math.max(1, Math.floor(opts.threads));
  for (const [si, shape] of shapes.entries()) {
    const { n, k } = shape;
    const wT = syntheticWeights(n * k, si + 1);
    const x = syntheticWeights(k, 3);
    const y = new Float32Array(n);
    const f32GemvMs = medianMs(() => void kernels.gemmF32(wT, n, k, x, 1, threads, y), opts.runs, opts.warmup);
    for (const format of formats) {
      const label = formatLabel(format);
      if (!kernels.hasKernel("gemv", "format" in format ? format.format : (`int${format.bits}` as "int4"))) continue;
      const g = prepareGemv(kernels, format, wT, n, k, threads);
      const gemvMs = medianMs(g.run, opts.runs, opts.warmup);
      rows.push({
        layer: shape.name,
        n,
        k,
        format: label,
        threads,
        gemvMs,
        weightBytes: g.weightBytes,
        gbPerS: g.weightBytes / (gemvMs * 1e6),
        f32GemvMs,
        speedupVsF32: f32GemvMs / gemvMs,
      });
    }
  }
  const totals: KernelBenchTotal[] = [];
  for (const label of [...new Set(rows.map((r) => r.format))]) {
    const rs = rows.filter((r) => r.format === label);
    const gemvMs = rs.reduce((a, r) => a + r.gemvMs, 0);
    const f32GemvMs = rs.reduce((a, r) => a + r.f32GemvMs, 0);
    const weightBytes = rs.reduce((a, r) => a + r.weightBytes, 0);
    totals.push({ format: label, gemvMs, f32GemvMs, weightBytes, gbPerS: weightBytes / (gemvMs * 1e6), speedupVsF32: f32GemvMs / gemvMs });
  }
  return { backend: kernels.backend, isa: kernels.isa, threads, rows, totals };
}
