// A history entry: the trimmed result of one run (metric records, limits, per-layer precision), one line of the
// dashboard. Metrics are keyed by metric key; each keeps what the base-branch regression rules need.
import type { Limit } from "../config/schema.js";
import { REGRESSION_RULES } from "../gate/rules.js";
import type { Report } from "../report/types.js";
import type { MetricRecord, MetricUnit } from "../tasks/types.js";

export const HISTORY_SCHEMA = "quantgate.history/v1";

/**
 * Per-sample lists longer than this are not stored (count and standard deviation still are, for unpaired
 * intervals): numbers cost about 8 bytes each in every entry, 0/1 values one character.
 */
export const MAX_STORED_SAMPLES = 1024;
export const MAX_STORED_BINARY_SAMPLES = 16384;

export interface HistoryLayer {
  readonly format: string;
  readonly bits: number;
  readonly blockSize: number;
  readonly form: string;
  readonly bitsPerWeight: number;
  readonly relativeError: number;
}

export interface HistoryMetric {
  readonly label: string;
  readonly unit: MetricUnit;
  readonly direction: "higher" | "lower";
  readonly float?: number;
  readonly quantized: number;
  /** Of a mean over samples: how many, and their standard deviation (unpaired intervals). */
  readonly n?: number;
  readonly sd?: number;
  /**
   * The quantized model's per-sample values (paired bootstrap against a base run on the same data), for metrics
   * a regression rule reads: a '0'/'1' string when every value is 0 or 1, else numbers (5 significant digits).
   */
  readonly perSample?: string | readonly number[];
  /** Raw measurements whose median is the value (latency runs), quantized and float. */
  readonly raw?: { readonly quantized: readonly number[]; readonly float?: readonly number[] };
}

export type HistoryMetrics = Readonly<Record<string, HistoryMetric>>;

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
  /** Evaluated samples (the task's own count). */
  readonly samples?: number;
  readonly metrics: HistoryMetrics;
  /** Gate limits by rule, for the dashboard's limit lines. */
  readonly limits: Readonly<Record<string, Limit>>;
  readonly rules: readonly { readonly rule: string; readonly status: string }[];
  readonly layers: Readonly<Record<string, HistoryLayer>>;
  /**
   * Quantized over float latency of this run, per interleaved round and their median (report.latencyComparison):
   * the base-branch latency rule judges a change of this ratio against the spread of recent base runs.
   */
  readonly latencyRatio?: { readonly p50: number; readonly perRound?: readonly number[] };
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

const round = (x: number, digits = 6): number => (Number.isInteger(x) ? x : Number(x.toPrecision(digits)));
const finite = (x: unknown): x is number => typeof x === "number" && Number.isFinite(x);

/** Metric keys some regression rule reads: their per-sample values are kept. */
const REGRESSION_METRICS: ReadonlySet<string> = new Set(REGRESSION_RULES.map((r) => r.metric));

function compactSamples(values: readonly number[]): string | number[] | undefined {
  if (values.length === 0 || !values.every(finite)) return undefined;
  if (values.every((v) => v === 0 || v === 1))
    return values.length <= MAX_STORED_BINARY_SAMPLES ? values.map((v) => (v === 1 ? "1" : "0")).join("") : undefined;
  return values.length <= MAX_STORED_SAMPLES ? values.map((v) => round(v, 5)) : undefined;
}

/** A stored per-sample list as numbers. */
export function samplesOf(stored: string | readonly number[] | undefined): number[] | undefined {
  if (stored === undefined) return undefined;
  return typeof stored === "string" ? Array.from(stored, (c) => (c === "1" ? 1 : 0)) : [...stored];
}

export function historyMetric(r: MetricRecord): HistoryMetric | undefined {
  if (!finite(r.quantized)) return undefined;
  const q = r.perSample?.quantized;
  let stats: { n: number; sd: number } | undefined;
  if (q && q.length > 0) {
    const m = q.reduce((a, b) => a + b, 0) / q.length;
    const v = q.reduce((a, b) => a + (b - m) * (b - m), 0) / Math.max(1, q.length - 1);
    stats = { n: q.length, sd: round(Math.sqrt(v)) };
  }
  const perSample = q && REGRESSION_METRICS.has(r.key) ? compactSamples(q) : undefined;
  const clean = (xs: readonly number[] | undefined): number[] | undefined =>
    xs && xs.length > 0 && xs.length <= MAX_STORED_SAMPLES ? xs.filter(finite).map((x) => round(x, 5)) : undefined;
  const rawQ = clean(r.raw?.quantized);
  const rawF = clean(r.raw?.float);
  return {
    label: r.label,
    unit: r.unit,
    direction: r.direction,
    ...(finite(r.float) ? { float: round(r.float) } : {}),
    quantized: round(r.quantized),
    ...(stats ?? {}),
    ...(perSample !== undefined ? { perSample } : {}),
    ...(rawQ ? { raw: { quantized: rawQ, ...(rawF ? { float: rawF } : {}) } } : {}),
  };
}

export function toHistoryEntry(report: Report, meta: RunMeta, limits: Readonly<Record<string, Limit>>): HistoryEntry {
  const layers: Record<string, HistoryLayer> = {};
  for (const l of report.weights.quantized) {
    layers[l.name] = {
      format: l.format,
      bits: l.bits,
      blockSize: l.blockSize,
      form: l.form,
      bitsPerWeight: round(l.bitsPerWeight),
      relativeError: round(l.relativeError, 4),
    };
  }
  const metrics: Record<string, HistoryMetric> = {};
  for (const r of report.metrics ?? []) {
    const m = historyMetric(r);
    if (m) metrics[r.key] = m;
  }
  const samples = report.evaluation?.samples.evaluated;
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
    ...(report.evaluation?.task ? { task: report.evaluation.task } : {}),
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
    ...(samples !== undefined ? { samples } : {}),
    metrics,
    limits,
    rules: report.gate.rules.map((r) => ({ rule: r.rule, status: r.status })),
    layers,
    ...latencyRatioOf(report),
  };
}

function latencyRatioOf(report: Report): { latencyRatio?: HistoryEntry["latencyRatio"] } {
  const c = report.latencyComparison;
  if (!c || !finite(c.ratioP50)) return {};
  const rounds = c.ratioPerRound.filter(finite);
  const perRound = rounds.length > 0 && rounds.length <= MAX_STORED_SAMPLES ? rounds.map((x) => round(x, 5)) : undefined;
  return { latencyRatio: { p50: round(c.ratioP50), ...(perRound ? { perRound } : {}) } };
}

/**
 * The newest entries of a branch with a latency ratio measured on the same float model (newest first, at most
 * `max`): the runs whose spread is the run-to-run variance of the ratio.
 */
export function recentRatioEntries(file: HistoryFile | undefined, branch: string, model: string, max = 10): HistoryEntry[] {
  const out: HistoryEntry[] = [];
  const entries = file?.entries ?? [];
  for (let i = entries.length - 1; i >= 0 && out.length < max; i--) {
    const e = entries[i]!;
    if (e.branch === branch && e.hashes?.model === model && e.latencyRatio && finite(e.latencyRatio.p50) && e.latencyRatio.p50 > 0) out.push(e);
  }
  return out;
}

/** Entries written before metrics were keyed by metric key: flat fields mapped onto keyed metrics. */
const LEGACY: readonly [string, string | undefined, string, string, MetricUnit, "higher" | "lower"][] = [
  ["accuracy", "accuracyFloat", "accuracyQuantized", "Accuracy", "ratio", "higher"],
  ["perplexity", "perplexityFloat", "perplexityQuantized", "Perplexity", "perplexity", "lower"],
  ["kl_mean", undefined, "klMean", "KL divergence (mean)", "nats", "lower"],
  ["kl_p99", undefined, "klP99", "KL divergence (p99)", "nats", "lower"],
  ["top1_agreement", undefined, "top1Agreement", "Top-1 agreement", "ratio", "higher"],
  ["model_size", "sizeBytesFloat", "sizeBytes", "Model size", "bytes", "lower"],
  ["bits_per_weight", undefined, "bitsPerWeight", "Bits per weight", "bits", "lower"],
  ["peak_memory", "peakMemoryBytesFloat", "peakMemoryBytes", "Peak memory (RSS)", "bytes", "lower"],
  ["latency_p50", "latencyP50MsFloat", "latencyP50Ms", "Latency p50", "ms", "lower"],
  ["latency_p95", "latencyP95MsFloat", "latencyP95Ms", "Latency p95", "ms", "lower"],
];

/** Reads an entry of either layout into the keyed one. */
export function normalizeEntry(entry: HistoryEntry): HistoryEntry {
  const flat = entry.metrics as unknown as Record<string, unknown>;
  if (Object.values(flat).every((v) => typeof v === "object" && v !== null)) return entry;
  const old = entry as unknown as { latencySamplesMs?: { quantized?: number[]; float?: number[] }; quantizedCorrect?: string };
  const metrics: Record<string, HistoryMetric> = {};
  for (const [key, f, q, label, unit, direction] of LEGACY) {
    const value = flat[q];
    if (!finite(value)) continue;
    const fv = f ? flat[f] : undefined;
    metrics[key] = {
      label,
      unit,
      direction,
      ...(finite(fv) ? { float: fv } : {}),
      quantized: value,
      ...(key === "accuracy" && old.quantizedCorrect ? { perSample: old.quantizedCorrect, n: old.quantizedCorrect.length } : {}),
      ...(key === "accuracy" && !old.quantizedCorrect && finite(flat.samples) ? { n: flat.samples, sd: Math.sqrt(value * (1 - value)) } : {}),
      ...(key === "latency_p50" && old.latencySamplesMs?.quantized?.length
        ? { raw: { quantized: old.latencySamplesMs.quantized, ...(old.latencySamplesMs.float?.length ? { float: old.latencySamplesMs.float } : {}) } }
        : {}),
    };
  }
  const rest = { ...entry } as Record<string, unknown>;
  delete rest.latencySamplesMs;
  delete rest.quantizedCorrect;
  return { ...(rest as unknown as HistoryEntry), ...(finite(flat.samples) ? { samples: flat.samples } : {}), metrics };
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
  for (let i = entries.length - 1; i >= 0; i--) if (entries[i]!.branch === branch) return normalizeEntry(entries[i]!);
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
  return { ...(f as HistoryFile), entries: f.entries.map(normalizeEntry) };
}

export const serializeHistory = (file: HistoryFile): string => JSON.stringify(file, null, 1) + "\n";
