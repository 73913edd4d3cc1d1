// The measure stage: file size, bits per weight from what is stored, and latency and peak memory
// of fresh child processes that load and run the models with a fixed thread count.
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { MeasureSettings } from "../config/schema.js";
import { feedsToJson, type Feeds } from "../data/tensors.js";
import type { EmittedLayer } from "../emit/index.js";
import { percentile } from "../evaluate/metrics.js";
import { runSupervisedChild, type ChildTimeouts } from "../runtime/child.js";
import type { ChildMessage, ChildRequest, LatencyRequest, LatencyResult, MemoryRequest, MemoryResult } from "./child-main.js";
import { medianInterval, medianOf, ratioPerRound, type ConfidenceInterval } from "./latency-stats.js";
import type { MemorySource } from "./memory.js";

export interface LatencyStats {
  readonly p50Ms: number;
  readonly p95Ms: number;
  readonly minMs: number;
  readonly runs: number;
}

export interface ModelRunMeasurement {
  readonly latency: LatencyStats;
  /** Every timed run (interleaved with the other model's), for noise-aware comparison against the base branch. */
  readonly latenciesMs: number[];
  /** Distribution-free interval of the median latency (order statistics); absolute latency limits are judged on it. */
  readonly latencyP50Interval?: ConfidenceInterval;
  /**
   * Each run's wall time less the time the measuring thread waited for a core (Linux schedstat): what the
   * run took on a CPU of its own. A busy runner's other processes lengthen wall time, not this. Absolute
   * latency limits are judged on these samples where they exist.
   */
  readonly onCpuMs?: number[];
  readonly onCpu?: LatencyStats;
  readonly onCpuP50Interval?: ConfidenceInterval;
  /** Share of the timed runs' wall time spent waiting for a core (0 on an idle runner). */
  readonly waitShare?: number;
  /** Timed runs during which another process preempted the measuring process. */
  readonly preemptedRuns?: number;
  /** Per timed run: whether it was preempted (the process was involuntarily switched out during it). */
  readonly preempted?: boolean[];
  /** Peak resident memory of the model's own process (Node + ONNX Runtime + this model): the larger of the two below. */
  readonly peakRssBytes: number;
  /** Peak by the end of the load. */
  readonly loadPeakBytes?: number;
  /** Peak while running, after the load's peak was reset (Linux); without the reset it equals peakRssBytes. */
  readonly runPeakBytes?: number;
  /** VmHWM (this process alone) or maxrss (may include the parent's peak where /proc is missing). */
  readonly memorySource?: MemorySource;
  readonly loadMs: number;
}

/** The float and quantized models timed in the same child, round by round. */
export interface LatencyComparison {
  /** False when the two models were too big to hold in one process and were timed one after the other. */
  readonly interleaved?: boolean;
  readonly rounds: number;
  /** Quantized latency over float latency per round (below 1: the quantized model is faster); on-CPU times where measured. */
  readonly ratioPerRound: number[];
  readonly ratioP50: number;
  readonly ratioInterval: ConfidenceInterval;
  /** Rounds in which either run was preempted by another process. */
  readonly preemptedRounds: number;
}

export interface MeasuredModels {
  readonly float: ModelRunMeasurement;
  readonly quantized: ModelRunMeasurement;
  readonly comparison: LatencyComparison;
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

/** Bytes of one stored weight beyond the emitted layers (a tied embedding stored once for its Gather and its LM head). */
export interface StoredWeightBytes {
  /** The weight in float32. */
  readonly floatBytes: number;
  /** What the emitted file stores for it (codes, scales, zero points, shape tensors), counted once. */
  readonly storedBytes: number;
  /** Its deployable, densely packed bytes. */
  readonly packedBytes: number;
}

/**
 * Stored bytes and bits per weight over every quantized weight: the emitted layers and `extra` (tied embeddings,
 * emitted after the layers and read by two nodes, stored and counted once).
 */
export function summarizeStorage(layers: readonly EmittedLayer[], extra: readonly StoredWeightBytes[] = []): StorageSummary {
  const all: readonly StoredWeightBytes[] = [...layers, ...extra];
  const floatBytes = all.reduce((a, l) => a + l.floatBytes, 0);
  const storedBytes = all.reduce((a, l) => a + l.storedBytes, 0);
  const packedBytes = all.reduce((a, l) => a + l.packedBytes, 0);
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

/** Load and warm-up limit when measure.timeout is not set (a multi-GB model loads in well under this). */
export const LOAD_LIMIT_MS = 10 * 60_000;
/** After the warm-up, the timed runs may take this many times their measured warm-up time... */
export const RUN_LIMIT_FACTOR = 10;
/** ...but never less than this (a hiccup on a tiny model must not kill the measurement). */
export const MIN_RUN_LIMIT_MS = 60_000;
/** Both models are timed in one process while their two peaks together stay under this share of the machine's memory. */
export const INTERLEAVE_MEMORY_SHARE = 0.5;

function joinLatency(a: LatencyResult, b: LatencyResult): LatencyResult {
  return {
    kind: "latency",
    latenciesMs: [...a.latenciesMs, ...b.latenciesMs],
    preempted: [...a.preempted, ...b.preempted],
    loadMs: [...a.loadMs, ...b.loadMs],
    ...(a.waitMs && b.waitMs ? { waitMs: [...a.waitMs, ...b.waitMs] } : {}),
  };
}

/** Runs after load whose peak is the run peak: the first grows ONNX Runtime's arenas, the rest confirm it. */
export const MEMORY_RUNS = 3;

/** Time left to a child once its warm-up measured `perRunMs` per round and `remainingRuns` rounds remain. */
export function runLimitMs(perRunMs: number, remainingRuns: number): number {
  return Math.max(MIN_RUN_LIMIT_MS, RUN_LIMIT_FACTOR * perRunMs * remainingRuns);
}

/** measure.timeout (ms) is a hard limit on each child's whole life; without it the limit follows the warm-up. */
export function childTimeouts(timeoutMs: number | undefined): ChildTimeouts {
  if (timeoutMs !== undefined) return { startMs: timeoutMs, after: () => undefined };
  return {
    startMs: LOAD_LIMIT_MS,
    after: (message) => {
      const m = message as ChildMessage;
      if (m.type === "loaded") return LOAD_LIMIT_MS;
      if (m.type === "warm") return runLimitMs(m.perRunMs, m.remainingRuns);
      return undefined;
    },
  };
}

async function runChild<R extends MemoryResult | LatencyResult>(request: ChildRequest, label: string, timeoutMs: number | undefined): Promise<R> {
  const child = runSupervisedChild<R>(
    childScript(),
    { ...process.env, QUANTGATE_MEASURE_REQUEST: JSON.stringify(request), QUANTGATE_PARENT_PID: String(process.pid) },
    label,
    childTimeouts(timeoutMs),
    (m) => ((m as ChildMessage).type === "result" ? (m as { result: R }).result : undefined),
    (m) => ((m as ChildMessage).type === "error" ? (m as { message: string }).message : undefined),
  );
  return child.done;
}

/** Peak memory of one model in a fresh process: after load, and while running (see MemoryResult). */
export async function measureModelMemory(modelPath: string, feedsPath: string, settings: MeasureSettings, ortDir?: string): Promise<MemoryResult> {
  const request: MemoryRequest = { kind: "memory", modelPath, feedsPath, threads: settings.threads, runs: MEMORY_RUNS, ortDir };
  return runChild<MemoryResult>(request, `measuring the memory of ${path.basename(modelPath)}`, settings.timeout);
}

/** Latency of several models in one fresh process, timed in interleaved rounds. */
export async function measureInterleavedLatency(
  modelPaths: readonly string[],
  feedsPath: string,
  settings: MeasureSettings,
  ortDir?: string,
): Promise<LatencyResult> {
  const request: LatencyRequest = { kind: "latency", modelPaths, feedsPath, threads: settings.threads, warmup: settings.warmup, runs: settings.runs, ortDir };
  return runChild<LatencyResult>(request, `timing ${modelPaths.map((p) => path.basename(p)).join(" and ")}`, settings.timeout);
}

function runMeasurement(latenciesMs: number[], preempted: boolean[], waitMs: number[] | undefined, memory: MemoryResult, loadMs: number): ModelRunMeasurement {
  const onCpuMs = waitMs?.map((w, i) => Math.max(0, latenciesMs[i]! - w));
  const wall = latenciesMs.reduce((a, b) => a + b, 0);
  return {
    latency: latencyStats(latenciesMs),
    latenciesMs,
    latencyP50Interval: medianInterval(latenciesMs),
    ...(onCpuMs && waitMs
      ? {
          onCpuMs,
          onCpu: latencyStats(onCpuMs),
          onCpuP50Interval: medianInterval(onCpuMs),
          waitShare: wall > 0 ? waitMs.reduce((a, b) => a + b, 0) / wall : 0,
        }
      : {}),
    preemptedRuns: preempted.filter(Boolean).length,
    preempted,
    peakRssBytes: memory.peakBytes,
    loadPeakBytes: memory.loadPeakBytes,
    runPeakBytes: memory.runPeakBytes,
    memorySource: memory.source,
    loadMs,
  };
}

/**
 * The measure stage's runs: each model's peak memory in its own fresh process, then both models timed in
 * one more process in interleaved rounds (float, quantized; quantized, float; ...), so that the runner's
 * load at any moment weighs on both alike and the per-round ratio cancels it (models too big to share a
 * process are timed in one each).
 */
export async function measureModels(
  floatPath: string,
  quantizedPath: string,
  feeds: Feeds,
  settings: MeasureSettings,
  ortDir?: string,
): Promise<MeasuredModels> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "quantgate-measure-"));
  try {
    const feedsPath = path.join(dir, "feeds.json");
    await writeFile(feedsPath, feedsToJson(feeds));
    const floatMemory = await measureModelMemory(floatPath, feedsPath, settings, ortDir);
    const quantMemory = await measureModelMemory(quantizedPath, feedsPath, settings, ortDir);
    // Both models in one process need both peaks at once: where that would crowd the machine's memory,
    // each model is timed in a process of its own and rounds are paired by index instead.
    const interleaved = floatMemory.peakBytes + quantMemory.peakBytes <= os.totalmem() * INTERLEAVE_MEMORY_SHARE;
    const timed = interleaved
      ? await measureInterleavedLatency([floatPath, quantizedPath], feedsPath, settings, ortDir)
      : joinLatency(
          await measureInterleavedLatency([floatPath], feedsPath, settings, ortDir),
          await measureInterleavedLatency([quantizedPath], feedsPath, settings, ortDir),
        );
    const [fMs, qMs] = timed.latenciesMs as [number[], number[]];
    const [fPre, qPre] = timed.preempted as [boolean[], boolean[]];
    const [fWait, qWait] = (timed.waitMs ?? []) as [number[] | undefined, number[] | undefined];
    const float = runMeasurement(fMs, fPre, fWait, floatMemory, floatMemory.loadMs);
    const quantized = runMeasurement(qMs, qPre, qWait, quantMemory, quantMemory.loadMs);
    const ratios = ratioPerRound(float.onCpuMs ?? fMs, quantized.onCpuMs ?? qMs);
    return {
      float,
      quantized,
      comparison: {
        interleaved,
        rounds: ratios.length,
        ratioPerRound: ratios,
        ratioP50: medianOf(ratios),
        ratioInterval: medianInterval(ratios),
        preemptedRounds: fPre.filter((p, i) => p || qPre[i]).length,
      },
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A warning when the quantized model is slower than float in this run's rounds (the whole interval of the ratio above 1.1). */
export function slowerThanFloatWarning(m: MeasuredModels): string | undefined {
  const c = m.comparison;
  if (c.ratioInterval.lo <= 1.1) return undefined;
  return (
    `the quantized model is slower than the float one: ${c.ratioP50.toFixed(2)}x the float latency per interleaved round ` +
    `(${Math.round(c.ratioInterval.level * 100)}% interval ${c.ratioInterval.lo.toFixed(2)}-${c.ratioInterval.hi.toFixed(2)}x; p50 ` +
    `${m.quantized.latency.p50Ms.toFixed(3)} ms vs ${m.float.latency.p50Ms.toFixed(3)} ms)`
  );
}

/**
 * Median latency of each model (on-CPU time where the runner exposes the wait for a core), timed in
 * interleaved rounds of one fresh process; for comparing candidate builds of the same model.
 */
export async function timeModels(modelPaths: readonly string[], feeds: Feeds, settings: MeasureSettings, ortDir?: string): Promise<number[]> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "quantgate-time-"));
  try {
    const feedsPath = path.join(dir, "feeds.json");
    await writeFile(feedsPath, feedsToJson(feeds));
    const timed = await measureInterleavedLatency(modelPaths, feedsPath, settings, ortDir);
    return timed.latenciesMs.map((ms, i) => {
      const wait = timed.waitMs?.[i];
      return medianOf(wait ? ms.map((x, j) => Math.max(0, x - wait[j]!)) : ms);
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * The single-step form of a batch of token ids ([B, T] -> [1, 1]: the first token), for timing M=1 (decoding
 * one token); undefined when any input is not a rank-2 [batch, sequence] tensor.
 */
export function singleTokenFeeds(feeds: Feeds): Feeds | undefined {
  const out: Feeds = {};
  for (const [name, t] of Object.entries(feeds)) {
    if (t.dims.length !== 2 || t.dims[1]! <= 1) return undefined;
    out[name] = { type: t.type, dims: [1, 1], data: t.data.slice(0, 1) as typeof t.data };
  }
  return out;
}
