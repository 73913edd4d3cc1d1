// The fidelity task: any model's selected outputs compared between the float and the quantized model, on
// inputs read from JSONL, .npy/.npz, images or WAV; stateful models are fed chunk by chunk (with hop and
// context), each carrying its own state. Per-output limits and user-metric limits become task rules.
import path from "node:path";
import type { FidelityEvaluation, FidelityOutputSpec } from "../config/schema.js";
import type { ModelInputInfo } from "../data/index.js";
import { hashFiles, readSource, toFeed, zeros, type SourceOptions, type SourceRecord } from "../data/records.js";
import { rawNumbers } from "../data/formats.js";
import type { Feeds } from "../data/tensors.js";
import { UserError } from "../errors.js";
import { compareSessions, mergeOutputFidelity, type ComparedSample, type ComparisonResult, type OutputFidelity } from "../evaluate/fidelity.js";
import { loadUserMetric, runUserMetric } from "../evaluate/user-metric.js";
import { gateRulesFor, type RuleKind, type TaskRule } from "../gate/rules.js";
import { labelsFor, readLabels } from "../data/labels.js";
import { decisionMetrics, hasSingleClass, isScalarPerSample, scalarOutputError } from "../metrics/decisions.js";
import { recallAtK } from "../metrics/retrieval.js";
import { constantFeeds, hits, meanRecord, valueRecord } from "./common.js";
import type { OutputTensor } from "../evaluate/user-metric.js";
import {
  sliceRange,
  type MetricRecord,
  type SampleCount,
  type Task,
  type TaskData,
  type TaskEvalContext,
  type TaskEvaluation,
  type TaskPartial,
} from "./types.js";

export type FidelitySample = ComparedSample;

export interface FidelityData extends TaskData {
  readonly samples: FidelitySample[];
  /** Stateful models: state input -> the output that feeds it on the next chunk. */
  readonly state: readonly { readonly input: string; readonly output: string }[];
  /** The user metric module, resolved inside the workspace. */
  readonly metricFile?: string;
  readonly count: SampleCount;
  /** 0/1 labels per evaluated sample from `outputs[].decision.labels`, by output name. */
  readonly decisionLabels?: Readonly<Record<string, readonly number[]>>;
}

function sourceOptions(cfg: FidelityEvaluation): SourceOptions {
  return {
    format: cfg.format,
    input: cfg.input,
    inputsField: cfg.inputs_field,
    labelField: cfg.label_field,
    preprocess: cfg.preprocess,
    audio: cfg.audio,
    sequences: cfg.stateful !== undefined,
    skipInputs: new Set([...(cfg.stateful?.state ?? []).map((s) => s.input), ...Object.keys(cfg.constant_inputs)]),
  };
}

interface Chunked {
  readonly samples: FidelitySample[];
  readonly chunks: number;
  /** Elements at the end of sequences shorter than a whole chunk. */
  readonly dropped: number;
}

/**
 * Cuts each record's chunk input along its time axis: window k covers [k*hop - context, k*hop + size) of the
 * sequence (zeros before its start), so the model input is context + size long; state inputs start at zero.
 */
function chunkRecords(records: readonly SourceRecord[], cfg: FidelityEvaluation, inputs: readonly ModelInputInfo[], format: string, constants: Feeds): Chunked {
  const spec = cfg.stateful!;
  const byName = new Map(inputs.map((i) => [i.name, i]));
  for (const s of spec.state) {
    if (!byName.has(s.input)) throw new UserError(`evaluation.stateful.state input "${s.input}" is not an input of the model`);
  }
  const stateNames = new Set(spec.state.map((s) => s.input));
  const fed = inputs.filter((i) => !stateNames.has(i.name) && !(i.name in constants));
  const chunkName = spec.chunk_input ?? (fed.length === 1 ? fed[0]!.name : undefined);
  if (!chunkName || !byName.has(chunkName))
    throw new UserError(`evaluation.stateful.chunk_input must name the model input cut into chunks (inputs: ${fed.map((i) => i.name).join(", ")})`);
  const chunkInput = byName.get(chunkName)!;
  const rank = chunkInput.rank ?? 2;
  const axis = spec.axis < 0 ? spec.axis + rank : spec.axis;
  const declared = chunkInput.dims?.[axis];
  const context = spec.context;
  const size = format === "wav" ? cfg.audio.chunk_samples : (spec.chunk_size ?? (declared !== undefined ? declared - context : undefined));
  if (!size || size <= 0)
    throw new UserError(
      `evaluation.stateful.chunk_size is needed: model input "${chunkName}" has no fixed size on axis ${spec.axis} (minus context ${context})`,
    );
  const hop = spec.hop ?? size;
  const samples: FidelitySample[] = [];
  let dropped = 0;
  records.forEach((record, sequence) => {
    const seq = record.tensors[chunkName];
    if (!seq) throw new UserError(`${record.where}: no data for the chunk input "${chunkName}"`);
    // The sequence's own axes are the model input's without the leading batch axes; time is axis - (rank - seq rank).
    const timeAxis = axis - (rank - seq.dims.length);
    if (timeAxis < 0) throw new UserError(`${record.where}: array of shape [${seq.dims.join(", ")}] has no axis ${spec.axis} of input "${chunkName}"`);
    const length = seq.dims[timeAxis]!;
    const outer = seq.dims.slice(0, timeAxis).reduce((a, b) => a * b, 1);
    const inner = seq.dims.slice(timeAxis + 1).reduce((a, b) => a * b, 1);
    const values = rawNumbers(seq);
    const window = context + size;
    let c = 0;
    // Whole chunks only: a partial tail would need padding the model never saw in training.
    for (; c * hop + size <= length; c++) {
      const start = c * hop - context;
      const part = new Float64Array(outer * window * inner);
      for (let o = 0; o < outer; o++) {
        for (let t = 0; t < window; t++) {
          const src = start + t;
          if (src < 0) continue;
          for (let i = 0; i < inner; i++) part[(o * window + t) * inner + i] = values[(o * length + src) * inner + i]!;
        }
      }
      const dims = [...seq.dims.slice(0, timeAxis), window, ...seq.dims.slice(timeAxis + 1)];
      const feeds: Feeds = { ...constants, [chunkName]: toFeed({ dims, values: part }, chunkInput, `${record.where} chunk ${c}`) };
      for (const s of spec.state) feeds[s.input] = zeros(byName.get(s.input)!, s.shape);
      for (const other of fed) {
        if (other.name !== chunkName) {
          const t = record.tensors[other.name];
          if (!t) throw new UserError(`${record.where}: no data for model input "${other.name}"`);
          feeds[other.name] = toFeed(t, other, `${record.where} ${other.name}`);
        }
      }
      samples.push({ feeds, label: record.label, sequence, chunk: c });
    }
    const covered = c === 0 ? 0 : (c - 1) * hop + size;
    dropped += length - covered;
  });
  if (samples.length === 0)
    throw new UserError(`the dataset has no whole chunk of ${size} along axis ${spec.axis} of "${chunkName}" (hop ${hop}, context ${context})`);
  return { samples, chunks: samples.length, dropped };
}

async function loadSamples(
  file: string,
  cfg: FidelityEvaluation,
  inputs: readonly ModelInputInfo[],
  limit: number,
  constants: Feeds,
): Promise<{ samples: FidelitySample[]; files: string[]; count: SampleCount; format: string; sources: string[] }> {
  const { records, files, format } = await readSource(file, sourceOptions(cfg), inputs);
  const sources = records.map((r) => r.where);
  const used = records.slice(0, limit);
  const past = records.length - used.length;
  const pastNote = past > 0 ? `${past} sample(s) past evaluation.samples (${limit})` : undefined;
  if (cfg.stateful) {
    const c = chunkRecords(used, cfg, inputs, format, constants);
    const droppedNote = c.dropped > 0 ? `${c.dropped} trailing element(s) shorter than a whole chunk` : undefined;
    const leftOut = [pastNote, droppedNote].filter(Boolean).join("; ");
    return {
      samples: c.samples,
      files,
      format,
      sources,
      count: { evaluated: used.length, total: records.length, sequences: c.chunks, sequenceUnit: "chunks", ...(leftOut ? { leftOut } : {}) },
    };
  }
  const samples = used.map((r, i) => {
    const feeds: Feeds = { ...constants };
    for (const input of inputs) {
      if (input.name in constants) continue;
      const t = r.tensors[input.name];
      if (!t) throw new UserError(`${r.where}: no tensor for model input "${input.name}"`, file);
      feeds[input.name] = toFeed(t, input, `${r.where} ${input.name}`);
    }
    return { feeds, label: r.label, sequence: i, chunk: 0 };
  });
  if (samples.length === 0) throw new UserError(`${file}: dataset has no samples`, file);
  return { samples, files, format, sources, count: { evaluated: used.length, total: records.length, ...(pastNote ? { leftOut: pastNote } : {}) } };
}

export async function loadFidelityData(
  cfg: FidelityEvaluation,
  resolve: (p: string, key: string) => string,
  inputs: readonly ModelInputInfo[],
): Promise<FidelityData> {
  const constants = constantFeeds(cfg.constant_inputs, inputs);
  const datasetPath = resolve(cfg.dataset, "evaluation.dataset");
  const display = (f: string): string => path.join(cfg.dataset, path.relative(datasetPath, f)) || cfg.dataset;
  const evalSet = await loadSamples(datasetPath, cfg, inputs, cfg.samples, constants);
  const files = await hashFiles(evalSet.files, display);
  const decisionLabels: Record<string, number[]> = {};
  for (const [i, spec] of cfg.outputs.entries()) {
    const d = spec.decision;
    if (!d?.labels) continue;
    const key = `evaluation.outputs[${i}].decision.labels`;
    if (evalSet.format !== "images" || cfg.stateful)
      throw new UserError(
        `${key}: a labels file names sample files, so it needs an image dataset without stateful chunks (this one is ${cfg.stateful ? "stateful" : evalSet.format}); give the labels in the dataset instead (label_field, or class folders)`,
      );
    const labelsFile = resolve(d.labels, key);
    const table = await readLabels(labelsFile, "class", { fileField: d.labels_fields.file, valueField: d.labels_fields.label });
    const labels = labelsFor<number>(table, evalSet.sources).slice(0, evalSet.samples.length);
    const bad = labels.findIndex((l) => l !== 0 && l !== 1);
    if (bad >= 0)
      throw new UserError(
        `${d.labels}: the label of ${evalSet.sources[bad]} is class ${labels[bad]}${table.classes ? ` ("${table.classes[labels[bad]!]}")` : ""}, but decision labels are 0 or 1 (or two class names) (${key})`,
        labelsFile,
      );
    decisionLabels[spec.name] = labels;
    files.push(...(await hashFiles([labelsFile], () => d.labels!)));
  }
  let calibrationBatches: Feeds[] = [];
  if (cfg.calibration) {
    const calibPath = resolve(cfg.calibration, "evaluation.calibration");
    if (calibPath === datasetPath)
      throw new UserError(
        `evaluation.calibration and evaluation.dataset are the same (${calibPath}); calibration data must be kept apart from evaluation data`,
      );
    const calib = await loadSamples(calibPath, cfg, inputs, cfg.calibration_samples, constants);
    calibrationBatches = calib.samples.map((s) => s.feeds);
    files.push(...(await hashFiles(calib.files, (f) => path.join(cfg.calibration!, path.relative(calibPath, f)) || cfg.calibration!)));
  }
  // The metric module changes the result: it is part of the data the cache key hashes.
  let metricFile: string | undefined;
  if (cfg.metric) {
    metricFile = resolve(cfg.metric.module, "evaluation.metric.module");
    files.push(...(await hashFiles([metricFile], () => cfg.metric!.module)));
  }
  return {
    task: "fidelity",
    samples: evalSet.samples,
    calibrationBatches,
    files,
    measureFeeds: evalSet.samples[0]!.feeds,
    state: cfg.stateful?.state ?? [],
    ...(metricFile ? { metricFile } : {}),
    count: evalSet.count,
    decisionLabels,
  };
}

/** Per-output limit keys of the config, the metric each reads and how. */
const OUTPUT_LIMITS: readonly { key: keyof FidelityOutputSpec; metric: string; kind: RuleKind; label: string; unit: MetricRecord["unit"] }[] = [
  { key: "min_cosine", metric: "cosine", kind: "value_min", label: "cosine similarity (mean)", unit: "ratio" },
  { key: "max_relative_l2", metric: "relative_l2", kind: "value_max", label: "relative L2 error", unit: "ratio" },
  { key: "max_abs_error", metric: "max_abs_error", kind: "value_max", label: "max |error|", unit: "value" },
  { key: "min_top1_agreement", metric: "top1_agreement", kind: "value_min", label: "top-1 agreement", unit: "ratio" },
  { key: "max_kl_mean", metric: "kl_mean", kind: "value_max", label: "KL mean", unit: "nats" },
  { key: "max_kl_p99", metric: "kl_p99", kind: "value_max", label: "KL p99", unit: "nats" },
];

/** The task rules a config sets on its outputs and its user metric. */
export function fidelityRules(cfg: Pick<FidelityEvaluation, "outputs" | "metric">): TaskRule[] {
  const rules: TaskRule[] = [];
  for (const spec of cfg.outputs) {
    for (const l of OUTPUT_LIMITS) {
      const limit = spec[l.key] as TaskRule["limit"] | undefined;
      if (limit && typeof limit === "object")
        rules.push({
          rule: `outputs.${spec.name}.${l.key}`,
          metric: `output.${spec.name}.${l.metric}`,
          kind: l.kind,
          label: `${spec.name} ${l.label}`,
          unit: l.unit,
          limit,
        });
    }
  }
  for (const [name, limits] of Object.entries(cfg.metric?.limits ?? {})) {
    if (limits.max)
      rules.push({ rule: `metric.${name}.max`, metric: `metric.${name}`, kind: "value_max", label: `metric ${name}`, unit: "value", limit: limits.max });
    if (limits.min)
      rules.push({ rule: `metric.${name}.min`, metric: `metric.${name}`, kind: "value_min", label: `metric ${name}`, unit: "value", limit: limits.min });
  }
  return rules;
}

/** Whether an output's values are one score per sample (cosine meaningless) or one per frame (top-1 and KL meaningless). */
function scoreShape(o: OutputFidelity, axis: number): { scalar: boolean; singleClass: boolean } {
  const scalar = o.dims.length === 0 || isScalarPerSample(o.dims);
  return { scalar, singleClass: scalar || hasSingleClass(o.dims, axis) };
}

function outputRecords(o: OutputFidelity, axis: number, rulesOf: (metric: string) => string[]): MetricRecord[] {
  const k = (m: string): string => `output.${o.name}.${m}`;
  const x = (m: string): { rules: string[]; note: string } => ({ rules: rulesOf(k(m)), note: `output ${o.name} vs float` });
  const shape = scoreShape(o, axis);
  // The cosine of one number is always 1 and top-1 over one class always agrees: no record rather than a reassuring one.
  const out: MetricRecord[] = shape.scalar
    ? []
    : [
        meanRecord(k("cosine"), `${o.name}: cosine similarity (mean)`, "ratio", "higher", o.cosines, undefined, x("cosine")),
        valueRecord(k("cosine_min"), `${o.name}: cosine similarity (worst sample)`, "ratio", "higher", o.cosineMin, undefined, x("cosine_min")),
      ];
  out.push(
    valueRecord(k("relative_l2"), `${o.name}: relative L2 error`, "ratio", "lower", o.relativeL2, undefined, x("relative_l2")),
    valueRecord(k("max_abs_error"), `${o.name}: max |error|`, "value", "lower", o.maxAbsError, undefined, x("max_abs_error")),
  );
  if (!shape.singleClass && o.top1Agreement !== undefined && o.agreements.length > 0)
    out.push(meanRecord(k("top1_agreement"), `${o.name}: top-1 agreement`, "ratio", "higher", o.agreements, undefined, x("top1_agreement")));
  if (o.kl && !shape.singleClass) {
    out.push(meanRecord(k("kl_mean"), `${o.name}: KL divergence (mean)`, "nats", "lower", o.kls, undefined, x("kl_mean")));
    out.push(valueRecord(k("kl_p99"), `${o.name}: KL divergence (p99)`, "nats", "lower", o.kl.p99, undefined, x("kl_p99")));
  }
  return out;
}

/** Cosine, top-1 and KL asked of an output of one score per sample (or per frame) fail with the error that proposes decisions. */
function refuseScalarMetrics(specs: readonly FidelityOutputSpec[], outputs: readonly OutputFidelity[]): void {
  specs.forEach((spec, i) => {
    const asked = [
      ...(["min_cosine", "min_top1_agreement", "max_kl_mean", "max_kl_p99"] as const).filter((k) => spec[k] !== undefined),
      ...(spec.kind !== "values" ? [spec.kind] : []),
    ];
    const dims = outputs[i]!.dims;
    const error = scalarOutputError(spec.name, asked, dims.length === 0 ? [1] : dims, spec.axis);
    if (error) throw new UserError(`evaluation.outputs[${i}]: ${error} For example: decision: { threshold: 0.5 } on this output.`);
  });
}

/** The per-sample values of one output as one flat array per sample. */
function perSample(outputs: readonly Record<string, { data: Float32Array }>[], name: string): Float32Array[] {
  return outputs.map((o) => o[name]!.data);
}

function concat(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * Decision records of the outputs with `decision`, recall@k of those with `recall_at_k`. The first output with
 * each gives the run's keys (what the gate's rules read); later ones are keyed `output.<name>.<key>`.
 */
function scoreRecords(
  specs: readonly FidelityOutputSpec[],
  r: ComparisonResult,
  decisionLabels: FidelityData["decisionLabels"],
  warnings: string[],
): MetricRecord[] {
  const out: MetricRecord[] = [];
  let firstDecision = true;
  let firstRecall = true;
  const rename = (rec: MetricRecord, name: string, first: boolean): MetricRecord => ({
    ...rec,
    note: `output ${name}, ${rec.note ?? ""}`,
    ...(first ? {} : { key: `output.${name}.${rec.key}`, label: `${name}: ${rec.label}`, rules: [] }),
  });
  specs.forEach((spec, i) => {
    if (spec.decision) {
      const f = perSample(r.floatOutputs, spec.name);
      const q = perSample(r.quantizedOutputs, spec.name);
      const perItem = f[0]!.length;
      let labels = decisionLabels?.[spec.name];
      let from = `evaluation.outputs[${i}].decision.labels`;
      if (!labels && r.labels.length > 0 && r.labels.every((l) => l !== undefined)) {
        const dataset = r.labels as number[];
        if (dataset.every((l) => l === 0 || l === 1)) {
          labels = dataset;
          from = "the dataset's labels";
        } else
          warnings.push(
            `output ${spec.name}: the dataset's labels are not 0/1 (classes up to ${Math.max(...dataset)}), so decision_accuracy is not measured; give 0/1 labels in evaluation.outputs[${i}].decision.labels`,
          );
      }
      if (labels && perItem !== 1)
        throw new UserError(
          `evaluation.outputs[${i}].decision: output "${spec.name}" has ${perItem} scores per sample (shape [${r.outputs[i]!.dims.join(", ")}]), but ${from} give one label per sample`,
        );
      let records: MetricRecord[];
      try {
        records = decisionMetrics(concat(f), concat(q), { threshold: spec.decision.threshold, perFrame: perItem > 1, ...(labels ? { labels } : {}) });
      } catch (err) {
        throw new UserError(`evaluation.outputs[${i}].decision on output "${spec.name}": ${(err as Error).message}`);
      }
      out.push(...records.map((rec) => rename(rec, spec.name, firstDecision)));
      firstDecision = false;
    }
    if (spec.recall_at_k !== undefined) {
      let rec: MetricRecord;
      try {
        rec = recallAtK(perSample(r.floatOutputs, spec.name), perSample(r.quantizedOutputs, spec.name), spec.recall_at_k);
      } catch (err) {
        throw new UserError(`evaluation.outputs[${i}].recall_at_k on output "${spec.name}": ${(err as Error).message}`);
      }
      out.push(rename(rec, spec.name, firstRecall));
      firstRecall = false;
    }
  });
  return out;
}

export const fidelityTask: Task<FidelityEvaluation, FidelityData> = {
  name: "fidelity",
  load: (cfg, ctx) => loadFidelityData(cfg, ctx.resolve, ctx.inputs),

  async evaluate(cfg, data, ctx) {
    const t0 = performance.now();
    const { specs, r, userMetric } = await compareFidelity(cfg, data, ctx);
    const userValues = userMetric ? await runUserMetric(userMetric, r.floatOutputs, r.quantizedOutputs, r.labels) : undefined;
    return fidelityEvaluation(cfg, data.count, specs, r, data.decisionLabels, userValues, performance.now() - t0);
  },

  slice(data, index, count) {
    // Whole sequences only: the chunks of one sequence carry each model's state from one to the next.
    const starts = data.samples.flatMap((s, i) => (i === 0 || s.sequence !== data.samples[i - 1]!.sequence ? [i] : []));
    const [a, b] = sliceRange(starts.length, index, count);
    const start = a < starts.length ? starts[a]! : data.samples.length;
    const end = b < starts.length ? starts[b]! : data.samples.length;
    // Decision labels files need unchunked data: one label per sample, in sample order.
    const decisionLabels = data.decisionLabels
      ? Object.fromEntries(Object.entries(data.decisionLabels).map(([name, labels]) => [name, labels.slice(start, end)]))
      : undefined;
    return { ...data, samples: data.samples.slice(start, end), ...(decisionLabels ? { decisionLabels } : {}) };
  },

  async partial(cfg, data, ctx) {
    if (data.metricFile) throw new UserError("evaluation.metric: a user metric reads every sample's outputs at once and cannot be sharded; use mode check");
    const t0 = performance.now();
    const { specs, r } = await compareFidelity(cfg, data, ctx);
    // Decisions and recall@k read every sample's scores or embeddings: the partial keeps them (as float32 bytes).
    const kept = specs
      .filter((s) => s.decision !== undefined || s.recall_at_k !== undefined)
      .map((s) => ({
        name: s.name,
        dims: r.floatOutputs.map((o) => [...o[s.name]!.dims]),
        float: r.floatOutputs.map((o) => toBase64(o[s.name]!.data)),
        quantized: r.quantizedOutputs.map((o) => toBase64(o[s.name]!.data)),
      }));
    const partial: FidelityPartial = {
      task: "fidelity",
      specs,
      outputs: r.outputs,
      predFloat: r.predFloat,
      predQuantized: r.predQuantized,
      labels: r.labels.map((l) => l ?? null),
      classOutput: r.classOutput,
      kept,
      decisionLabels: data.decisionLabels ?? {},
      count: data.count,
      ms: performance.now() - t0,
    };
    return partial;
  },

  merge(cfg, partials) {
    const parts = partials as readonly FidelityPartial[];
    // Slices with no samples (more shards than sequences) carry no comparison of their own.
    const full = parts.filter((p) => p.labels.length > 0);
    const first = full[0];
    if (!first) throw new UserError("no shard evaluated any sample");
    const samples = full.reduce((a, p) => a + p.labels.length, 0);
    const floatOutputs: Record<string, OutputTensor>[] = Array.from({ length: samples }, () => ({}));
    const quantizedOutputs: Record<string, OutputTensor>[] = Array.from({ length: samples }, () => ({}));
    let at = 0;
    for (const p of full) {
      for (const k of p.kept) {
        k.float.forEach((b, i) => (floatOutputs[at + i]![k.name] = { dims: k.dims[i]!, data: fromBase64(b) }));
        k.quantized.forEach((b, i) => (quantizedOutputs[at + i]![k.name] = { dims: k.dims[i]!, data: fromBase64(b) }));
      }
      at += p.labels.length;
    }
    const kept = first.kept.length > 0;
    const r: ComparisonResult = {
      outputs: first.specs.map((_, i) => mergeOutputFidelity(full.map((p) => p.outputs[i]!))),
      predFloat: full.flatMap((p) => p.predFloat),
      predQuantized: full.flatMap((p) => p.predQuantized),
      labels: full.flatMap((p) => p.labels).map((l) => l ?? undefined),
      classOutput: first.classOutput,
      floatOutputs: kept ? floatOutputs : [],
      quantizedOutputs: kept ? quantizedOutputs : [],
    };
    const decisionLabels: Record<string, number[]> = {};
    for (const name of Object.keys(first.decisionLabels)) decisionLabels[name] = full.flatMap((p) => p.decisionLabels[name] ?? []);
    return fidelityEvaluation(
      cfg,
      first.count,
      first.specs,
      r,
      decisionLabels,
      undefined,
      parts.reduce((a, p) => a + p.ms, 0),
    );
  },
};

/** Mergeable state of a slice of samples: per-output comparisons with their sums, predictions and labels. */
interface FidelityPartial extends TaskPartial {
  readonly specs: FidelityOutputSpec[];
  readonly outputs: OutputFidelity[];
  readonly predFloat: number[];
  readonly predQuantized: number[];
  readonly labels: (number | null)[];
  readonly classOutput: number;
  /** Per-sample outputs of the outputs with decision or recall_at_k (float32 bytes, base64), in sample order. */
  readonly kept: { readonly name: string; readonly dims: number[][]; readonly float: string[]; readonly quantized: string[] }[];
  readonly decisionLabels: Readonly<Record<string, readonly number[]>>;
  readonly count: SampleCount;
  readonly ms: number;
}

function toBase64(a: Float32Array): string {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString("base64");
}

function fromBase64(s: string): Float32Array {
  const b = Buffer.from(s, "base64");
  const out = new Float32Array(b.length / 4);
  new Uint8Array(out.buffer).set(b);
  return out;
}

async function compareFidelity(
  cfg: FidelityEvaluation,
  data: FidelityData,
  { ort, float, quantized }: TaskEvalContext,
): Promise<{ specs: FidelityOutputSpec[]; r: ComparisonResult; userMetric: Awaited<ReturnType<typeof loadUserMetric>> | undefined }> {
  const stateOutputs = new Set(data.state.map((s) => s.output));
  const specs: FidelityOutputSpec[] = cfg.outputs.length
    ? cfg.outputs
    : float.outputNames.filter((n) => !stateOutputs.has(n)).map((name) => ({ name, axis: -1, kind: "values" as const }));
  for (const s of specs) {
    if (!float.outputNames.includes(s.name))
      throw new UserError(`evaluation.outputs: the model has no output "${s.name}" (outputs: ${float.outputNames.join(", ")})`);
  }
  const userMetric = data.metricFile ? await loadUserMetric(data.metricFile) : undefined;
  const keep = userMetric !== undefined || specs.some((s) => s.decision !== undefined || s.recall_at_k !== undefined);
  const r = await compareSessions(ort, float, quantized, data.samples, data.state, specs, keep);
  // An empty slice (more shards than sequences) has no output shapes to judge.
  if (data.samples.length > 0) refuseScalarMetrics(specs, r.outputs);
  return { specs, r, userMetric };
}

function fidelityEvaluation(
  cfg: FidelityEvaluation,
  count: SampleCount,
  specs: readonly FidelityOutputSpec[],
  r: ComparisonResult,
  decisionLabels: FidelityData["decisionLabels"],
  userValues: Record<string, number> | undefined,
  ms: number,
): TaskEvaluation {
  const rules = fidelityRules(cfg);
  const rulesOf = (metric: string): string[] => [...gateRulesFor(metric), ...rules.filter((x) => x.metric === metric).map((x) => x.rule)];
  const metrics: MetricRecord[] = [];
  const labelled = r.classOutput >= 0 && r.labels.length > 0 && r.labels.every((l) => l !== undefined) && r.predFloat.length === r.labels.length;
  if (labelled) {
    const labels = r.labels as number[];
    const out = specs[r.classOutput]!.name;
    metrics.push(
      meanRecord("accuracy", "Accuracy", "ratio", "higher", hits(r.predQuantized, labels), hits(r.predFloat, labels), {
        note: `argmax of ${out} vs labels`,
        rules: rulesOf("accuracy"),
      }),
    );
  }
  const klSource = r.outputs.find((o, i) => o.kl !== undefined && !scoreShape(o, specs[i]!.axis).singleClass);
  if (klSource?.kl) {
    const note = `output ${klSource.name} vs float`;
    metrics.push(
      meanRecord("kl_mean", "KL divergence (mean)", "nats", "lower", klSource.kls, undefined, { note, rules: rulesOf("kl_mean") }),
      valueRecord("kl_p99", "KL divergence (p99)", "nats", "lower", klSource.kl.p99, undefined, { note, rules: rulesOf("kl_p99") }),
      valueRecord("kl_max", "KL divergence (max)", "nats", "lower", klSource.kl.max, undefined, { note, rules: rulesOf("kl_max") }),
    );
  }
  const top1Source = (r.classOutput >= 0 ? [r.outputs[r.classOutput]!] : r.outputs).find(
    (o) => o.top1Agreement !== undefined && !scoreShape(o, specs[r.outputs.indexOf(o)]!.axis).singleClass,
  );
  if (top1Source?.top1Agreement !== undefined && top1Source.agreements.length > 0)
    metrics.push(
      meanRecord("top1_agreement", "Top-1 agreement", "ratio", "higher", top1Source.agreements, undefined, {
        note: `output ${top1Source.name} vs float`,
        rules: rulesOf("top1_agreement"),
      }),
    );
  for (const [i, o] of r.outputs.entries()) metrics.push(...outputRecords(o, specs[i]!.axis, rulesOf));
  const warnings: string[] = [];
  metrics.push(...scoreRecords(specs, r, decisionLabels, warnings));
  if (userValues) {
    for (const [name, value] of Object.entries(userValues)) {
      const limits = cfg.metric?.limits[name];
      const direction = limits?.min && !limits.max ? "higher" : "lower";
      metrics.push(
        valueRecord(`metric.${name}`, `metric ${name}`, "value", direction, value, undefined, { rules: rulesOf(`metric.${name}`), note: "user metric" }),
      );
    }
  }
  return {
    task: "fidelity",
    metrics,
    samples: count,
    ms,
    rules,
    warnings,
    details: {
      outputs: r.outputs.map((o) => ({
        name: o.name,
        kind: o.kind,
        dims: o.dims,
        cosineMean: o.cosineMean,
        cosineMin: o.cosineMin,
        relativeL2: o.relativeL2,
        maxAbsError: o.maxAbsError,
        top1Agreement: o.top1Agreement,
        kl: o.kl,
        positions: o.positions,
      })),
    },
  };
}
