// The classification task: JSONL rows of named input tensors and integer labels; accuracy and macro-F1 of
// both models against the labels, KL and top-1 agreement of the quantized model against the float one.
import { checkFeedShapes, checkJsonlLabels } from "../data/checks.js";
import path from "node:path";
import type { ClassificationEvaluation } from "../config/schema.js";
import { hashFiles, readSource, toFeed, type SourceRecord } from "../data/records.js";
import { toOrtFeeds, type Feeds } from "../data/tensors.js";
import type { ModelInputInfo } from "../data/index.js";
import { UserError } from "../errors.js";
import { argmax, klDivergence, logSoftmax, macroF1 } from "../evaluate/metrics.js";
import { constantFeeds, dataInputs, hits, klRecords, meanRecord, valueRecord } from "./common.js";
import { float32Output } from "./outputs.js";
import { sliceRange, type MetricRecord, type Task, type TaskData, type TaskEvalContext, type TaskEvaluation, type TaskPartial } from "./types.js";

export interface ClassificationSample {
  readonly feeds: Feeds;
  readonly label: number | undefined;
}

export interface ClassificationData extends TaskData {
  readonly samples: ClassificationSample[];
  /** Rows in the evaluation file. */
  readonly total: number;
}

async function readRows(file: string, cfg: ClassificationEvaluation, inputs: readonly ModelInputInfo[]): Promise<SourceRecord[]> {
  const { records } = await readSource(
    file,
    {
      format: "jsonl",
      inputsField: cfg.inputs_field,
      labelField: cfg.label_field,
      preprocess: { scale: 1, mean: [0], std: [1], layout: "NCHW", channels: "rgb" },
      audio: { sample_rate: 16000, chunk_samples: 16000 },
      sequences: false,
      skipInputs: new Set(Object.keys(cfg.constant_inputs)),
    },
    inputs.filter((i) => !(i.name in cfg.constant_inputs)),
  );
  if (records.length === 0) throw new UserError(`${file}: dataset has no rows`, file);
  for (const r of records) {
    if (r.label !== undefined && !Number.isInteger(r.label))
      throw new UserError(`${r.where}: "${cfg.label_field}" must be an integer class index, got ${r.label}`, file, Number(r.where.split(":").pop()));
  }
  return records;
}

function samplesOf(records: readonly SourceRecord[], inputs: readonly ModelInputInfo[], constants: Feeds): ClassificationSample[] {
  return records.map((r) => {
    const feeds: Feeds = { ...constants };
    for (const input of inputs) if (!(input.name in constants)) feeds[input.name] = toFeed(r.tensors[input.name]!, input, `${r.where} ${input.name}`);
    return { feeds, label: r.label };
  });
}

export const classificationTask: Task<ClassificationEvaluation, ClassificationData> = {
  name: "classification",

  async load(cfg, ctx) {
    const constants = constantFeeds(cfg.constant_inputs, ctx.inputs);
    dataInputs(cfg.constant_inputs, ctx.inputs);
    const datasetPath = ctx.resolve(cfg.dataset, "evaluation.dataset");
    const rows = await readRows(datasetPath, cfg, ctx.inputs);
    const samples = samplesOf(rows.slice(0, cfg.samples), ctx.inputs, constants);
    checkFeedShapes(
      samples.map((x) => x.feeds),
      ctx.inputs,
      (i) => `${cfg.dataset}: sample ${i}`,
    );
    // Labels past the model's classes would be scored as always wrong: name the line instead.
    await checkJsonlLabels(datasetPath, cfg.label_field, ctx.classesOf?.(cfg.output_name));
    const files = await hashFiles([datasetPath], () => cfg.dataset);
    let calibrationBatches: Feeds[] = [];
    if (cfg.calibration) {
      const calibPath = ctx.resolve(cfg.calibration, "evaluation.calibration");
      if (calibPath === datasetPath)
        throw new UserError(
          `evaluation.calibration and evaluation.dataset are the same file (${calibPath}); calibration data must be kept apart from evaluation data`,
        );
      calibrationBatches = samplesOf((await readRows(calibPath, cfg, ctx.inputs)).slice(0, cfg.calibration_samples), ctx.inputs, constants).map((s) => s.feeds);
      files.push(...(await hashFiles([calibPath], () => cfg.calibration ?? path.basename(calibPath))));
    }
    return { task: "classification", samples, calibrationBatches, files, measureFeeds: samples[0]!.feeds, total: rows.length };
  },

  async evaluate(cfg, data, ctx) {
    return mergeClassification(cfg, [await partialClassification(data, ctx, cfg.output_name)]);
  },

  slice(data, index, count) {
    const [start, end] = sliceRange(data.samples.length, index, count);
    return { ...data, samples: data.samples.slice(start, end) };
  },
  partial: (cfg, data, ctx) => partialClassification(data, ctx, cfg.output_name),
  merge: (cfg, partials) => mergeClassification(cfg, partials as readonly ClassificationPartial[]),
};

/** Mergeable state of a slice of rows: per-row predictions, labels and KL, and the counts. */
interface ClassificationPartial extends TaskPartial {
  readonly predF: number[];
  readonly predQ: number[];
  /** Labels of the rows that have one; null where a sample has none. */
  readonly labels: (number | null)[];
  readonly kls: number[];
  readonly evaluated: number;
  readonly total: number;
  readonly ms: number;
}

async function partialClassification(
  data: ClassificationData,
  { ort, float, quantized }: TaskEvalContext,
  outputName?: string,
): Promise<ClassificationPartial> {
  const t0 = performance.now();
  const predF: number[] = [];
  const predQ: number[] = [];
  const labels: (number | null)[] = [];
  const kls: number[] = [];
  for (const sample of data.samples) {
    const feeds = toOrtFeeds(ort, sample.feeds);
    const rf = float32Output(float, await float.run(feeds), outputName);
    const rq = float32Output(quantized, await quantized.run(feeds), outputName);
    const classes = rf.dims[rf.dims.length - 1]!;
    const rows = rf.data.length / classes;
    const lpF = new Float64Array(classes);
    const lpQ = new Float64Array(classes);
    for (let r = 0; r < rows; r++) {
      predF.push(argmax(rf.data, r * classes, classes));
      predQ.push(argmax(rq.data, r * classes, classes));
      logSoftmax(rf.data, r * classes, classes, lpF);
      logSoftmax(rq.data, r * classes, classes, lpQ);
      kls.push(klDivergence(lpF, lpQ));
    }
    labels.push(sample.label ?? null);
  }
  return { task: "classification", predF, predQ, labels, kls, evaluated: data.samples.length, total: data.total, ms: performance.now() - t0 };
}

function mergeClassification(cfg: ClassificationEvaluation, partials: readonly ClassificationPartial[]): TaskEvaluation {
  const predF = partials.flatMap((p) => p.predF);
  const predQ = partials.flatMap((p) => p.predQ);
  const kls = partials.flatMap((p) => p.kls);
  const labels = partials.flatMap((p) => p.labels).filter((l): l is number => l !== null);
  const evaluated = partials.reduce((a, p) => a + p.evaluated, 0);
  const total = partials[0]?.total ?? 0;
  const labelled = labels.length === predF.length;
  const metrics: MetricRecord[] = [];
  if (labelled) {
    metrics.push(meanRecord("accuracy", "Accuracy", "ratio", "higher", hits(predQ, labels), hits(predF, labels), { note: "vs labels" }));
    metrics.push(valueRecord("macro_f1", "Macro-F1", "ratio", "higher", macroF1(labels, predQ), macroF1(labels, predF), { note: "vs labels" }));
  }
  metrics.push(...klRecords(kls), meanRecord("top1_agreement", "Top-1 agreement", "ratio", "higher", hits(predQ, predF), undefined, { note: "vs float" }));
  const left = total - evaluated;
  return {
    task: "classification",
    metrics,
    samples: {
      evaluated,
      total,
      ...(left > 0 ? { leftOut: `${left} row(s) past evaluation.samples (${cfg.samples})` } : {}),
    },
    ms: partials.reduce((a, p) => a + p.ms, 0),
    ...(labelled ? {} : { warnings: ["the classification dataset has no labels on every row: accuracy and macro-F1 are not measured"] }),
  };
}
