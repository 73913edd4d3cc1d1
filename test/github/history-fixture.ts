// A deterministic history of a classifier config: `count` runs on main with slowly drifting metrics.
import { HISTORY_SCHEMA, type HistoryEntry, type HistoryFile } from "../../src/history/entry.js";

export function historyEntry(i: number, over: Partial<HistoryEntry> = {}): HistoryEntry {
  const sha = (i + 1).toString(16).padStart(7, "0").repeat(6).slice(0, 40);
  const wobble = Math.sin(i * 1.7);
  return {
    schema: HISTORY_SCHEMA,
    config: "classifier",
    commit: sha,
    branch: "main",
    runId: String(9000 + i),
    runUrl: `https://github.com/acme/models/actions/runs/${9000 + i}`,
    message: `commit number ${i}`,
    createdAt: new Date(Date.UTC(2025, 0, 1 + i)).toISOString(),
    verdict: i === 13 ? "fail" : "pass",
    task: "classification",
    tool: "0.1.0",
    onnxruntime: "1.30.0",
    cpu: "test cpu",
    hashes: { model: "m".repeat(64), recipe: "r".repeat(64), data: "d".repeat(64) },
    recipe: { format: i < 10 ? "int4" : "int3", blockSize: 32, algorithm: "rtn" },
    samples: 256,
    metrics: {
      accuracy: { label: "Accuracy", unit: "ratio", direction: "higher", float: 0.9, quantized: 0.88 - i * 0.001 + wobble * 0.004, n: 256, sd: 0.32 },
      kl_mean: { label: "KL divergence (mean)", unit: "nats", direction: "lower", quantized: 0.01 + i * 0.0004 },
      kl_p99: { label: "KL divergence (p99)", unit: "nats", direction: "lower", quantized: 0.05 + i * 0.001 },
      top1_agreement: { label: "Top-1 agreement", unit: "ratio", direction: "higher", quantized: 0.97 },
      model_size: { label: "Model size", unit: "bytes", direction: "lower", float: 40_000, quantized: i < 10 ? 7000 : 5800 },
      bits_per_weight: { label: "Bits per weight", unit: "bits", direction: "lower", float: 32, quantized: i < 10 ? 5.125 : 4.125 },
      peak_memory: { label: "Peak memory (RSS)", unit: "bytes", direction: "lower", float: 82 * 1048576, quantized: 80 * 1048576 + i * 20_000 },
      latency_p50: { label: "Latency p50", unit: "ms", direction: "lower", float: 0.04, quantized: 0.05 + wobble * 0.004 },
      latency_p95: { label: "Latency p95", unit: "ms", direction: "lower", quantized: 0.07 + wobble * 0.006 },
    },
    limits: { max_kl_mean: { fail: 0.03, warn: 0.02 }, max_bits_per_weight: { fail: 5.5 }, max_accuracy_drop: { fail: 5 }, max_latency_p50_ms: { fail: 0.08 } },
    rules: [],
    layers: { "fc1.weight": { format: "int4", bits: 4, blockSize: 32, form: "matmulnbits", bitsPerWeight: 5.125, relativeError: 0.08 } },
    ...over,
  };
}

export function historyFixture(count: number, config = "classifier"): HistoryFile {
  return { schema: HISTORY_SCHEMA, config, entries: Array.from({ length: count }, (_, i) => historyEntry(i, { config })) };
}
