// A history entry: the trimmed result of one run (metrics, limits, per-layer precision), one line of the dashboard.
import type { Limit } from "../config/schema.js";
import type { Report } from "../report/types.js";

export const HISTORY_SCHEMA = "quantgate.history/v1";

export interface HistoryLayer {
  readonly format: string;
  readonly bits: number;
  readonly blockSize: number;
  readonly form: string;
  readonly bitsPerWeight: number;
  readonly relativeError: number;
}

export interface HistoryMetrics {
  readonly accuracyFloat?: number;
  readonly accuracyQuantized?: number;
  readonly perplexityFloat?: number;
  readonly perplexityQuantized?: number;
  readonly klMean?: number;
  readonly klP99?: number;
  readonly top1Agreement?: number;
  readonly sizeBytesFloat?: number;
  readonly sizeBytes?: number;
  readonly bitsPerWeight?: number;
  readonly peakMemoryBytes?: number;
  readonly peakMemoryBytesFloat?: number;
  readonly latencyP50Ms?: number;
  readonly latencyP95Ms?: number;
  readonly latencyP50MsFloat?: number;
  readonly latencyP95MsFloat?: number;
  /** Evaluation samples (classification) or tokens (language modelling). */
  readonly samples?: number;
}

export interface HistoryEntry {
  readonly schema: typeof HISTORY_SCHEMA;
  readonly config: string;
  readonly commit: string;
  readonly branch?: string;
  readonly runId?: string;
  readonly runUrl?: string;
  readonly message?: string;
  readonly createdAt: string;
  readonly verdict: "pass" | "fail";
  readonly task?: string;
  readonly tool: string;
  readonly onnxruntime: string;
  readonly cpu: string;
  readonly hashes: { readonly model: string; readonly recipe: string; readonly data: string };
  readonly recipe: { readonly format: string; readonly blockSize: number; readonly algorithm: string };
  readonly metrics: HistoryMetrics;
  /** Raw latency samples, when the report kept them (noise-aware regression needs them). */
  readonly latencySamplesMs?: { readonly quantized?: readonly number[]; readonly float?: readonly number[] };
  /** Per-sample correctness of the quantized model as a '0'/'1' string (paired bootstrap). */
  readonly quantizedCorrect?: string;
  /** Gate limits by rule, for the dashboard's limit lines. */
  readonly limits: Readonly<Record<string, Limit>>;
  readonly rules: readonly { readonly rule: string; readonly status: string }[];
  readonly layers: Readonly<Record<string, HistoryLayer>>;
}

export interface HistoryFile {
  readonly schema: typeof HISTORY_SCHEMA;
  readonly config: string;
  /** Oldest first. */
  readonly entries: HistoryEntry[];
}

export interface RunMeta {
  readonly config: string;
  readonly commit: string;
  readonly branch?: string;
  readonly runId?: string;
  readonly runUrl?: string;
  readonly message?: string;
}

const finite = (x: unknown): number | undefined => (typeof x === "number" && Number.isFinite(x) ? x : undefined);
const round = (x: number | undefined, digits = 6): number | undefined => (x === undefined ? undefined : Number(x.toPrecision(digits)));

/** Raw latency samples, under whichever name the measurement keeps them. */
export function latencySamplesOf(run: unknown): number[] | undefined {
  const r = (run ?? {}) as { latenciesMs?: unknown; samplesMs?: unknown };
  const samples = Array.isArray(r.latenciesMs) ? r.latenciesMs : Array.isArray(r.samplesMs) ? r.samplesMs : undefined;
  const clean = samples?.filter((x): x is number => typeof x === "number" && Number.isFinite(x));
  return clean && clean.length > 0 ? clean.map((x) => round(x, 5)!) : undefined;
}

/** Per-sample correctness of the quantized model, when the evaluation kept it. */
export function correctnessOf(evaluation: unknown): string | undefined {
  const e = (evaluation ?? {}) as { quantizedCorrect?: unknown; perSample?: { quantizedCorrect?: unknown } };
  const v = e.quantizedCorrect ?? e.perSample?.quantizedCorrect;
  if (!Array.isArray(v) || v.length === 0) return undefined;
  return v.map((x) => (x === true || x === 1 ? "1" : "0")).join("");
}

export function toHistoryEntry(report: Report, meta: RunMeta, limits: Readonly<Record<string, Limit>>): HistoryEntry {
  const e = report.evaluation;
  const qRun = report.quantized?.run;
  const fRun = report.float.run;
  const layers: Record<string, HistoryLayer> = {};
  for (const l of report.weights.quantized) {
    layers[l.name] = {
      format: l.format,
      bits: l.bits,
      blockSize: l.blockSize,
      form: l.form,
      bitsPerWeight: round(l.bitsPerWeight)!,
      relativeError: round(l.relativeError, 4)!,
    };
  }
  const metrics: HistoryMetrics = {
    ...(e?.task === "language-modeling"
      ? { perplexityFloat: round(e.perplexityFloat), perplexityQuantized: round(e.perplexityQuantized), samples: e.tokens }
      : e?.task === "classification"
        ? { accuracyFloat: round(finite(e.accuracyFloat)), accuracyQuantized: round(finite(e.accuracyQuantized)), samples: e.samples }
        : {}),
    klMean: round(finite(e?.kl.mean)),
    klP99: round(finite(e?.kl.p99)),
    top1Agreement: round(finite(e?.top1Agreement)),
    sizeBytesFloat: finite(report.float.sizeBytes),
    sizeBytes: finite(report.quantized?.sizeBytes),
    bitsPerWeight: round(finite(report.storage?.bitsPerWeight)),
    peakMemoryBytes: finite(qRun?.peakRssBytes),
    peakMemoryBytesFloat: finite(fRun?.peakRssBytes),
    latencyP50Ms: round(finite(qRun?.latency.p50Ms)),
    latencyP95Ms: round(finite(qRun?.latency.p95Ms)),
    latencyP50MsFloat: round(finite(fRun?.latency.p50Ms)),
    latencyP95MsFloat: round(finite(fRun?.latency.p95Ms)),
  };
  const qSamples = latencySamplesOf(qRun);
  const fSamples = latencySamplesOf(fRun);
  const correct = correctnessOf(e);
  return {
    schema: HISTORY_SCHEMA,
    config: meta.config,
    commit: meta.commit,
    ...(meta.branch ? { branch: meta.branch } : {}),
    ...(meta.runId ? { runId: meta.runId } : {}),
    ...(meta.runUrl ? { runUrl: meta.runUrl } : {}),
    ...(meta.message ? { message: meta.message } : {}),
    createdAt: report.createdAt,
    verdict: report.verdict,
    task: e?.task,
    tool: report.tool.version,
    onnxruntime: report.runtime.onnxruntime,
    cpu: report.runtime.cpu,
    hashes: {
      model: report.hashes.model,
      recipe: report.hashes.recipe,
      data: report.hashes.data
        .map((d) => d.sha256)
        .sort()
        .join(","),
    },
    recipe: { format: report.recipe.format, blockSize: report.recipe.block_size, algorithm: report.recipe.algorithm },
    metrics: JSON.parse(JSON.stringify(metrics)) as HistoryMetrics,
    ...(qSamples || fSamples ? { latencySamplesMs: { quantized: qSamples, float: fSamples } } : {}),
    ...(correct ? { quantizedCorrect: correct } : {}),
    limits,
    rules: report.gate.rules.map((r) => ({ rule: r.rule, status: r.status })),
    layers,
  };
}

/** Appends and keeps the newest `maxEntries`; a re-run of the same commit and run replaces its entry. */
export function appendEntry(file: HistoryFile | undefined, entry: HistoryEntry, maxEntries: number): HistoryFile {
  const kept = (file?.entries ?? []).filter((e) => !(e.commit === entry.commit && e.runId === entry.runId && e.branch === entry.branch));
  const entries = [...kept, entry].slice(-maxEntries);
  return { schema: HISTORY_SCHEMA, config: entry.config, entries };
}

/** The newest entry of a branch (history is appended in time order). */
export function latestOf(file: HistoryFile | undefined, branch: string): HistoryEntry | undefined {
  const entries = file?.entries ?? [];
  for (let i = entries.length - 1; i >= 0; i--) if (entries[i]!.branch === branch) return entries[i];
  return undefined;
}

export function parseHistoryFile(text: string, where: string): HistoryFile {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new Error(`${where}: not JSON (${(err as Error).message})`);
  }
  const f = data as Partial<HistoryFile>;
  if (f.schema !== HISTORY_SCHEMA || !Array.isArray(f.entries)) throw new Error(`${where}: not a ${HISTORY_SCHEMA} file`);
  return f as HistoryFile;
}

export const serializeHistory = (file: HistoryFile): string => JSON.stringify(file, null, 1) + "\n";
