// The measure stage: file size, bits per weight from what is stored, and latency and peak memory
// of a child process that loads and runs each model with a fixed thread count.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { MeasureSettings } from "../config/schema.js";
import { feedsToJson, type Feeds } from "../data/tensors.js";
import type { EmittedLayer } from "../emit/index.js";
import { percentile } from "../evaluate/metrics.js";
import type { ChildRequest, ChildResult } from "./child-main.js";

const execFileAsync = promisify(execFile);

export interface LatencyStats {
  readonly p50Ms: number;
  readonly p95Ms: number;
  readonly minMs: number;
  readonly runs: number;
}

export interface ModelRunMeasurement {
  readonly latency: LatencyStats;
  /** Every timed run, for noise-aware comparison against the base branch. */
  readonly latenciesMs: number[];
  readonly peakRssBytes: number;
  readonly loadMs: number;
}

export interface StorageSummary {
  readonly quantizedWeights: number;
  readonly floatBytes: number;
  readonly storedBytes: number;
  readonly packedBytes: number;
  /**
   * Bits per quantized weight of the deployable, densely packed artifact: codes at their true width,
   * scales and zero points counted (int3 counts 3 bits though ONNX Runtime runs it in a 4-bit container).
   */
  readonly bitsPerWeight: number;
  /** Bits per quantized weight as the emitted ONNX file stores them (containers and 8-bit subgraph codes included). */
  readonly storedBitsPerWeight: number;
  /** Float bytes over stored bytes of the quantized weights. */
  readonly compression: number;
  /** Bits per weight with every tensor's codes at their empirical entropy / Huffman-coded. */
  readonly entropyBitsPerWeight?: number;
  readonly huffmanBitsPerWeight?: number;
}

export function summarizeStorage(layers: readonly EmittedLayer[]): StorageSummary {
  const floatBytes = layers.reduce((a, l) => a + l.floatBytes, 0);
  const storedBytes = layers.reduce((a, l) => a + l.storedBytes, 0);
  const packedBytes = layers.reduce((a, l) => a + l.packedBytes, 0);
  const weights = floatBytes / 4;
  return {
    quantizedWeights: weights,
    floatBytes,
    storedBytes,
    packedBytes,
    bitsPerWeight: weights > 0 ? (packedBytes * 8) / weights : 0,
    storedBitsPerWeight: weights > 0 ? (storedBytes * 8) / weights : 0,
    compression: storedBytes > 0 ? floatBytes / storedBytes : 1,
  };
}

export function latencyStats(samples: readonly number[]): LatencyStats {
  return { p50Ms: percentile(samples, 50), p95Ms: percentile(samples, 95), minMs: Math.min(...samples), runs: samples.length };
}

/** The child script, next to this module (lib/) or beside the bundle (dist/). */
function childScript(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const candidates = [path.join(here, "child-main.js"), path.join(here, "measure-child.js"), path.resolve(here, "../../lib/measure/child-main.js")];
  const found = candidates.find((c) => existsSync(c));
  if (!found) throw new Error(`internal: measuring child script not found (looked in ${candidates.join(", ")})`);
  return found;
}

export async function measureModelRun(modelPath: string, feeds: Feeds, settings: MeasureSettings, ortDir?: string): Promise<ModelRunMeasurement> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "quantgate-measure-"));
  try {
    const feedsPath = path.join(dir, "feeds.json");
    await writeFile(feedsPath, feedsToJson(feeds));
    const request: ChildRequest = { modelPath, feedsPath, threads: settings.threads, warmup: settings.warmup, runs: settings.runs, ortDir };
    const { stdout } = await execFileAsync(process.execPath, [childScript()], {
      env: { ...process.env, QUANTGATE_MEASURE_REQUEST: JSON.stringify(request) },
      maxBuffer: 16 * 1024 * 1024,
    }).catch((err: { stderr?: string; message: string }) => {
      throw new Error(`measuring ${path.basename(modelPath)} failed: ${err.stderr?.trim() || err.message}`);
    });
    const result = JSON.parse(stdout) as ChildResult;
    return { latency: latencyStats(result.latenciesMs), latenciesMs: result.latenciesMs, peakRssBytes: result.peakRssBytes, loadMs: result.loadMs };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
