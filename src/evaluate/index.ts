// The evaluate stage: the same samples through the float and the quantized session, metrics per task.
import type { ClassificationData, LmData } from "../data/index.js";
import { toOrtFeeds } from "../data/tensors.js";
import type { Ort, Session } from "../runtime/ort.js";
import type { FidelityEvaluationResult } from "./fidelity.js";
import { argmax, klDivergence, logSoftmax, macroF1, mean, percentile } from "./metrics.js";

export interface KlSummary {
  readonly mean: number;
  readonly p99: number;
  readonly max: number;
}

export interface LmEvaluationResult {
  readonly task: "language-modeling";
  readonly tokens: number;
  readonly perplexityFloat: number;
  readonly perplexityQuantized: number;
  readonly kl: KlSummary;
  readonly top1Agreement: number;
  readonly ms: number;
}

export interface ClassificationEvaluationResult {
  readonly task: "classification";
  readonly samples: number;
  readonly accuracyFloat: number | undefined;
  readonly accuracyQuantized: number | undefined;
  readonly macroF1Float: number | undefined;
  readonly macroF1Quantized: number | undefined;
  readonly top1Agreement: number;
  readonly kl: KlSummary;
  readonly ms: number;
  /** Per sample: float and quantized prediction correct (for paired bootstrap intervals); absent without labels. */
  readonly floatCorrect?: boolean[];
  readonly quantizedCorrect?: boolean[];
}

export type EvaluationResult = LmEvaluationResult | ClassificationEvaluationResult | FidelityEvaluationResult;

function outputOf(session: Session, result: Record<string, { data: unknown; dims: readonly number[] }>, name: string | undefined) {
  const key = name ?? session.outputNames[0]!;
  const t = result[key];
  if (!t) throw new Error(`model produced no output "${key}" (outputs: ${session.outputNames.join(", ")})`);
  if (!(t.data instanceof Float32Array)) throw new Error(`output "${key}" is not float32 logits`);
  return { data: t.data, dims: t.dims };
}

export async function evaluateLm(
  ort: Ort,
  float: Session,
  quant: Session,
  data: LmData,
  outputName: string | undefined,
  inputName: string,
): Promise<LmEvaluationResult> {
  const t0 = performance.now();
  let nllFloat = 0;
  let nllQuant = 0;
  let agree = 0;
  let count = 0;
  const kls: number[] = [];
  for (const batch of data.evalBatches) {
    const feeds = toOrtFeeds(ort, batch);
    const rf = outputOf(float, await float.run(feeds), outputName);
    const rq = outputOf(quant, await quant.run(feeds), outputName);
    const [b, t, v] = rf.dims as [number, number, number];
    if (rf.dims.length !== 3) throw new Error(`language-model output must be [batch, seq, vocab] logits, got [${rf.dims.join(", ")}]`);
    const ids = batch[inputName]!.data;
    const lpF = new Float64Array(v);
    const lpQ = new Float64Array(v);
    for (let i = 0; i < b; i++) {
      for (let pos = 0; pos < t - 1; pos++) {
        const offset = (i * t + pos) * v;
        logSoftmax(rf.data, offset, v, lpF);
        logSoftmax(rq.data, offset, v, lpQ);
        const target = Number(ids[i * t + pos + 1]);
        if (target < 0 || target >= v) throw new Error(`token id ${target} is outside the model's vocabulary of ${v}`);
        nllFloat -= lpF[target]!;
        nllQuant -= lpQ[target]!;
        kls.push(klDivergence(lpF, lpQ));
        if (argmax(rf.data, offset, v) === argmax(rq.data, offset, v)) agree++;
        count++;
      }
    }
  }
  return {
    task: "language-modeling",
    tokens: count,
    perplexityFloat: Math.exp(nllFloat / count),
    perplexityQuantized: Math.exp(nllQuant / count),
    kl: { mean: mean(kls), p99: percentile(kls, 99), max: Math.max(...kls) },
    top1Agreement: agree / count,
    ms: performance.now() - t0,
  };
}

export async function evaluateClassification(
  ort: Ort,
  float: Session,
  quant: Session,
  data: ClassificationData,
  outputName: string | undefined,
): Promise<ClassificationEvaluationResult> {
  const t0 = performance.now();
  const predF: number[] = [];
  const predQ: number[] = [];
  const labels: number[] = [];
  const kls: number[] = [];
  for (const sample of data.samples) {
    const feeds = toOrtFeeds(ort, sample.feeds);
    const rf = outputOf(float, await float.run(feeds), outputName);
    const rq = outputOf(quant, await quant.run(feeds), outputName);
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
    if (sample.label !== undefined) labels.push(sample.label);
  }
  const labelled = labels.length === predF.length;
  const acc = (pred: number[]): number => pred.filter((p, i) => p === labels[i]).length / pred.length;
  return {
    task: "classification",
    samples: predF.length,
    accuracyFloat: labelled ? acc(predF) : undefined,
    accuracyQuantized: labelled ? acc(predQ) : undefined,
    macroF1Float: labelled ? macroF1(labels, predF) : undefined,
    macroF1Quantized: labelled ? macroF1(labels, predQ) : undefined,
    top1Agreement: predF.filter((p, i) => p === predQ[i]).length / predF.length,
    kl: { mean: mean(kls), p99: percentile(kls, 99), max: Math.max(...kls) },
    ms: performance.now() - t0,
    floatCorrect: labelled ? predF.map((p, i) => p === labels[i]) : undefined,
    quantizedCorrect: labelled ? predQ.map((p, i) => p === labels[i]) : undefined,
  };
}
