// Decisions from scores (voice activity, wake word, binary classifiers): thresholded agreement, accuracy and the
// largest score change, and the check that refuses vector metrics on an output of one number per sample.
import { gateRulesFor } from "../gate/rules.js";
import type { MetricRecord } from "../tasks/types.js";

export interface DecisionOptions {
  /** A score above the threshold is a positive decision (`score > threshold`, as torchmetrics' binary metrics). */
  readonly threshold: number;
  /** 0/1 labels, one per score (per frame when the scores are per frame). */
  readonly labels?: readonly number[];
  /** The scores are frames (several per sample): the notes say frames instead of samples. */
  readonly perFrame?: boolean;
}

function toNumbers(scores: Float32Array | readonly number[], what: string): ArrayLike<number> {
  for (let i = 0; i < scores.length; i++) {
    if (!Number.isFinite(scores[i]!)) throw new RangeError(`${what} score ${i} is ${scores[i]}: decisions need finite scores`);
  }
  return scores;
}

/**
 * Decision records of a score output.
 * - `decision_agreement`: share of items where the quantized decision equals the float decision (per-item 1/0 kept).
 * - `decision_accuracy` (with labels): accuracy of each model's decisions against the labels.
 * - `score_max_abs_change`: the largest |quantized - float| score over all items.
 * - `score_mean_abs_change`: the mean |quantized - float| score (per-item values kept).
 */
export function decisionMetrics(
  floatScores: Float32Array | readonly number[],
  quantScores: Float32Array | readonly number[],
  opts: DecisionOptions,
): MetricRecord[] {
  const f = toNumbers(floatScores, "float");
  const q = toNumbers(quantScores, "quantized");
  const n = f.length;
  if (q.length !== n) throw new RangeError(`${n} float scores but ${q.length} quantized scores`);
  if (n === 0) throw new RangeError("no scores to decide on");
  if (!Number.isFinite(opts.threshold)) throw new RangeError(`decision threshold ${opts.threshold} is not a number`);
  const items = `${n.toLocaleString("en-US")} ${opts.perFrame ? "frame" : "sample"}${n === 1 ? "" : "s"}`;
  const at = `threshold ${opts.threshold}`;
  const agree: number[] = [];
  const change: number[] = [];
  let maxChange = 0;
  for (let i = 0; i < n; i++) {
    agree.push(f[i]! > opts.threshold === q[i]! > opts.threshold ? 1 : 0);
    const d = Math.abs(q[i]! - f[i]!);
    change.push(d);
    if (d > maxChange) maxChange = d;
  }
  const mean = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
  const out: MetricRecord[] = [
    {
      key: "decision_agreement",
      label: "Decision agreement with float",
      unit: "ratio",
      direction: "higher",
      quantized: mean(agree),
      perSample: { quantized: agree },
      rules: gateRulesFor("decision_agreement"),
      note: `${at}, ${items}`,
    },
  ];
  if (opts.labels) {
    const labels = opts.labels;
    if (labels.length !== n) throw new RangeError(`${labels.length} labels for ${items}`);
    labels.forEach((l, i) => {
      if (l !== 0 && l !== 1) throw new RangeError(`label ${i} is ${l}: decision labels are 0 or 1`);
    });
    const fc = labels.map((l, i) => (f[i]! > opts.threshold === (l === 1) ? 1 : 0));
    const qc = labels.map((l, i) => (q[i]! > opts.threshold === (l === 1) ? 1 : 0));
    out.push({
      key: "decision_accuracy",
      label: "Decision accuracy",
      unit: "ratio",
      direction: "higher",
      float: mean(fc),
      quantized: mean(qc),
      perSample: { float: fc, quantized: qc },
      rules: gateRulesFor("decision_accuracy"),
      note: `vs labels, ${at}, ${items}`,
    });
  }
  out.push(
    {
      key: "score_max_abs_change",
      label: "Largest score change",
      unit: "value",
      direction: "lower",
      quantized: maxChange,
      rules: gateRulesFor("score_max_abs_change"),
      note: `max |quantized - float| over ${items}`,
    },
    {
      key: "score_mean_abs_change",
      label: "Mean score change",
      unit: "value",
      direction: "lower",
      quantized: mean(change),
      perSample: { quantized: change },
      rules: gateRulesFor("score_mean_abs_change"),
      note: `mean |quantized - float| over ${items}`,
    },
  );
  return out;
}

/** True when each sample of an output holds one number: every axis but a leading batch axis has size 1. */
export function isScalarPerSample(dims: readonly number[]): boolean {
  return dims.slice(1).every((d) => d === 1);
}

/** True when the class axis of an output has size 1 (a score per frame, not a distribution over classes). */
export function hasSingleClass(dims: readonly number[], axis = -1): boolean {
  const a = axis < 0 ? axis + dims.length : axis;
  return dims.length > 0 && dims[a] === 1;
}

/**
 * The error for vector metrics asked of a score output, or undefined when none applies. `metrics` are the
 * requested metric or rule names (min_cosine, max_relative_l2, min_top1_agreement, max_kl_mean, max_kl_p99, or
 * kind logits / probabilities, which ask for KL). On a single number per sample (the default when `dims` is not
 * given) cosine, top-1 and KL are meaningless; on a score per frame (class axis of size 1) top-1 and KL are.
 */
export function scalarOutputError(outputName: string, metrics: readonly string[], dims?: readonly number[], axis = -1): string | undefined {
  const scalar = dims === undefined || isScalarPerSample(dims);
  if (!scalar && !hasSingleClass(dims, axis)) return undefined;
  const refused = metrics.filter((m) => /top1|(^|_)kl(_|$)|^logits$|^probabilities$/.test(m) || (scalar && /cosine/.test(m)));
  if (refused.length === 0) return undefined;
  const shape = dims ? ` (shape [${dims.join(", ")}])` : "";
  const what = scalar ? "one score per sample" : "one score per frame (a class axis of size 1)";
  const why = scalar
    ? "the cosine of one number is always 1, and top-1 agreement and KL divergence over a single class are always 100% and 0"
    : "top-1 agreement and KL divergence over a single class are always 100% and 0";
  return (
    `output ${JSON.stringify(outputName)} holds ${what}${shape}: ${refused.join(", ")} cannot judge it (${why}). ` +
    `Use the decision metrics instead: set a decision threshold and the rules min_decision_agreement (thresholded decisions ` +
    `equal to float's), max_score_change (largest |quantized - float| score) and, with 0/1 labels, max_decision_accuracy_drop.`
  );
}
