// The measure stage's numbers as metric records (size, bits per weight, memory, latency, kernel time), so the
// gate, summary, outputs, history and dashboard treat them like the task's metrics.
import type { KernelBenchResult } from "../kernels/bench.js";
import type { ModelRunMeasurement, StorageSummary } from "../measure/index.js";
import { valueRecord } from "./common.js";
import type { MetricRecord } from "./types.js";

export interface Measurements {
  readonly floatSizeBytes?: number | undefined;
  readonly quantizedSizeBytes?: number | undefined;
  readonly storage?: StorageSummary | undefined;
  readonly floatRun?: ModelRunMeasurement | undefined;
  readonly quantizedRun?: ModelRunMeasurement | undefined;
  readonly kernelBench?: KernelBenchResult | undefined;
}

export function measurementRecords(m: Measurements): MetricRecord[] {
  const out: MetricRecord[] = [];
  if (m.quantizedSizeBytes !== undefined)
    out.push(valueRecord("model_size", "Model size", "bytes", "lower", m.quantizedSizeBytes, m.floatSizeBytes || undefined));
  if (m.storage) {
    // What the emitted file stores per quantized weight (what max_bits_per_weight judges); the densely
    // packed figure a native kernel reads (int3 at 3 bits, no padding) is its own record beside it.
    out.push(valueRecord("bits_per_weight", "Bits per weight, stored", "bits", "lower", m.storage.storedBitsPerWeight, 32));
    out.push(valueRecord("bits_per_weight_packed", "Bits per weight, packed (MatMulNBits)", "bits", "lower", m.storage.bitsPerWeight, 32));
    if (m.storage.huffmanBitsPerWeight !== undefined)
      out.push(valueRecord("bits_per_weight_huffman", "Bits per weight, Huffman-coded", "bits", "lower", m.storage.huffmanBitsPerWeight, 32));
  }
  const q = m.quantizedRun;
  const f = m.floatRun;
  if (q) {
    out.push(valueRecord("peak_memory", "Peak memory (RSS)", "bytes", "lower", q.peakRssBytes, f?.peakRssBytes));
    // Raw latencies ride along: the regression rule bootstraps their medians.
    out.push({
      ...valueRecord("latency_p50", "Latency p50", "ms", "lower", q.latency.p50Ms, f?.latency.p50Ms),
      rules: ["max_latency_p50_ms", "forbid_slower_than_float"],
      ...(q.latenciesMs.length > 0 ? { raw: { quantized: q.latenciesMs, ...(f && f.latenciesMs.length > 0 ? { float: f.latenciesMs } : {}) } } : {}),
    });
    out.push(valueRecord("latency_p95", "Latency p95", "ms", "lower", q.latency.p95Ms, f?.latency.p95Ms));
  }
  const kb = m.kernelBench;
  if (kb && kb.totals.length > 0) {
    const totals = kb.totals;
    const sum = (pick: (t: (typeof totals)[number]) => number): number => totals.reduce((a, t) => a + pick(t), 0);
    out.push(
      valueRecord(
        "kernel_gemv",
        "Kernel GEMV, all layers",
        "ms",
        "lower",
        sum((t) => t.gemvMs),
        sum((t) => t.f32GemvMs),
        { note: `${kb.backend} ${kb.isa}, M=1` },
      ),
    );
  }
  return out;
}
