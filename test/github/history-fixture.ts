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
    metrics: {
      accuracyFloat: 0.9,
      accuracyQuantized: 0.88 - i * 0.001 + wobble * 0.004,
      klMean: 0.01 + i * 0.0004,
      klP99: 0.05 + i * 0.001,
      top1Agreement: 0.97,
      sizeBytesFloat: 40_000,
      sizeBytes: i < 10 ? 7000 : 5800,
      bitsPerWeight: i < 10 ? 5.125 : 4.125,
      peakMemoryBytes: 80 * 1048576 + i * 20_000,
      peakMemoryBytesFloat: 82 * 1048576,
      latencyP50Ms: 0.05 + wobble * 0.004,
      latencyP95Ms: 0.07 + wobble * 0.006,
      latencyP50MsFloat: 0.04,
      samples: 256,
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
