// The rule registry: every gate and regression rule is declared once, as a limit on one metric key, and
// judged the same way wherever it is configured. A new metric's rules are one entry here each.
import type { Limit } from "../config/schema.js";
import { judgeLatencyLimit } from "../measure/latency-stats.js";
import type { MetricRecord, MetricUnit } from "../tasks/types.js";
import type { RuleResult } from "./index.js";

/**
 * How a rule reads a metric, `value` being the quantized value and `ref` the reference (the float model's
 * value for gate rules, the base branch's quantized value for regression rules):
 * - value_max / value_min: the value itself, at most / at least the limit;
 * - drop_points: (ref - value) * 100, for ratios where higher is better (accuracy, IoU);
 * - drop_pct: (ref - value) / ref * 100;
 * - increase_points: (value - ref) * 100, for ratios where lower is better (CER, WER);
 * - increase: value - ref, in the metric's own unit;
 * - decrease: ref - value, in the metric's own unit;
 * - increase_pct: (value / ref - 1) * 100;
 * - ratio_max: value / ref.
 */
export type RuleKind = "value_max" | "value_min" | "drop_points" | "drop_pct" | "increase_points" | "increase" | "decrease" | "increase_pct" | "ratio_max";

/** The value parser a rule's limit takes in the config (zod schema built from it). */
export type LimitValue = "number" | "signed" | "percent" | "bytes" | "ms";

export interface RuleDef {
  /** The config key under `gate:` (or `regression:` for regression rules). */
  readonly key: string;
  /** The metric record it reads. */
  readonly metric: string;
  readonly kind: RuleKind;
  readonly label: string;
  /** Unit of the observed number (the drop/increase, not the metric). */
  readonly unit: MetricUnit;
  readonly value: LimitValue;
  readonly description: string;
  /**
   * Regression rules: "interval" fails only when the bootstrap interval of the change clears the limit (noisy
   * measurements such as latency); "point" judges the point estimate (with its interval shown). Gate rules: "interval"
   * judges the distribution-free interval of the median of the record's raw samples (judgeIntervalRule).
   */
  readonly judge?: "point" | "interval";
}

/** Rules judged on this run alone (quantized against float). */
export const GATE_RULES = [
  {
    key: "max_accuracy_drop",
    metric: "accuracy",
    kind: "drop_points",
    label: "Accuracy drop",
    unit: "points",
    value: "number",
    description: "Accuracy drop of the quantized model from the float one, in percentage points.",
  },
  {
    key: "max_accuracy_drop_pct",
    metric: "accuracy",
    kind: "drop_pct",
    label: "Accuracy drop (relative)",
    unit: "%",
    value: "percent",
    description: "Accuracy drop relative to the float model's accuracy.",
  },
  {
    key: "max_perplexity_increase_pct",
    metric: "perplexity",
    kind: "increase_pct",
    label: "Perplexity increase",
    unit: "%",
    value: "percent",
    description: "Perplexity increase of the quantized model over the float one.",
  },
  {
    key: "max_kl_mean",
    metric: "kl_mean",
    kind: "value_max",
    label: "KL divergence (mean)",
    unit: "nats",
    value: "number",
    description: "Mean KL(float || quantized).",
  },
  { key: "max_kl_p99", metric: "kl_p99", kind: "value_max", label: "KL divergence (p99)", unit: "nats", value: "number", description: "99th percentile KL." },
  {
    key: "min_top1_agreement",
    metric: "top1_agreement",
    kind: "value_min",
    label: "Top-1 agreement",
    unit: "ratio",
    value: "number",
    description: "Share of positions where the quantized model's top-1 equals the float model's.",
  },
  {
    key: "max_model_size",
    metric: "model_size",
    kind: "value_max",
    label: "Model size",
    unit: "bytes",
    value: "bytes",
    description: "Size of the quantized ONNX file.",
  },
  {
    key: "max_bits_per_weight",
    metric: "bits_per_weight",
    kind: "value_max",
    label: "Bits per weight",
    unit: "bits",
    value: "number",
    description: "Bits per quantized weight as the emitted ONNX file stores them (codes, scales, zero points, tables and padding counted).",
  },
  {
    key: "max_peak_memory",
    metric: "peak_memory",
    kind: "value_max",
    label: "Peak memory",
    unit: "bytes",
    value: "bytes",
    description: "Peak RSS of a process that loads and runs the quantized model.",
  },
  { key: "max_latency_p50_ms", metric: "latency_p50", kind: "value_max", label: "Latency p50", unit: "ms", value: "ms", description: "Median latency." },
  {
    key: "max_latency_p95_ms",
    metric: "latency_p95",
    kind: "value_max",
    label: "Latency p95",
    unit: "ms",
    value: "ms",
    description: "95th percentile latency.",
  },
  {
    key: "max_kernel_gemv_ms",
    metric: "kernel_gemv",
    kind: "value_max",
    label: "Kernel GEMV time (all layers, M=1)",
    unit: "ms",
    value: "ms",
    description: "Our kernels' GEMV time summed over the model's layer shapes (measure.kernel_benchmark).",
  },
  // Task metrics of src/metrics (text recognition, segmentation, decisions from scores, recall@k).
  {
    key: "max_cer",
    metric: "cer",
    kind: "value_max",
    label: "Character error rate",
    unit: "ratio",
    value: "number",
    description: "Quantized character error rate against the labels (a ratio: 0.05 is 5%).",
  },
  {
    key: "max_cer_increase",
    metric: "cer",
    kind: "increase_points",
    label: "Character error rate increase",
    unit: "points",
    value: "number",
    description: "Character error rate increase of the quantized model over the float one against the labels, in points.",
  },
  {
    key: "max_wer",
    metric: "wer",
    kind: "value_max",
    label: "Word error rate",
    unit: "ratio",
    value: "number",
    description: "Quantized word error rate against the labels (a ratio).",
  },
  {
    key: "max_wer_increase",
    metric: "wer",
    kind: "increase_points",
    label: "Word error rate increase",
    unit: "points",
    value: "number",
    description: "Word error rate increase of the quantized model over the float one against the labels, in points.",
  },
  {
    key: "max_cer_vs_float",
    metric: "cer_vs_float",
    kind: "value_max",
    label: "Character error rate vs float",
    unit: "ratio",
    value: "number",
    description: "Character error rate of the quantized transcripts with the float transcripts as reference.",
  },
  {
    key: "max_wer_vs_float",
    metric: "wer_vs_float",
    kind: "value_max",
    label: "Word error rate vs float",
    unit: "ratio",
    value: "number",
    description: "Word error rate of the quantized transcripts with the float transcripts as reference.",
  },
  {
    key: "min_iou",
    metric: "iou",
    kind: "value_min",
    label: "IoU",
    unit: "ratio",
    value: "number",
    description: "Quantized mean IoU per image against the label masks.",
  },
  {
    key: "max_iou_drop",
    metric: "iou",
    kind: "drop_points",
    label: "IoU drop",
    unit: "points",
    value: "number",
    description: "Mean IoU drop of the quantized model from the float one against the label masks, in points.",
  },
  {
    key: "min_dice",
    metric: "dice",
    kind: "value_min",
    label: "Dice",
    unit: "ratio",
    value: "number",
    description: "Quantized mean Dice per image against the label masks.",
  },
  {
    key: "max_dice_drop",
    metric: "dice",
    kind: "drop_points",
    label: "Dice drop",
    unit: "points",
    value: "number",
    description: "Mean Dice drop of the quantized model from the float one against the label masks, in points.",
  },
  {
    key: "min_iou_pooled",
    metric: "iou_pooled",
    kind: "value_min",
    label: "IoU (pooled)",
    unit: "ratio",
    value: "number",
    description: "Quantized IoU pooled over the evaluation set against the label masks.",
  },
  {
    key: "max_iou_pooled_drop",
    metric: "iou_pooled",
    kind: "drop_points",
    label: "IoU drop (pooled)",
    unit: "points",
    value: "number",
    description: "Pooled IoU drop of the quantized model from the float one, in points.",
  },
  {
    key: "min_dice_pooled",
    metric: "dice_pooled",
    kind: "value_min",
    label: "Dice (pooled)",
    unit: "ratio",
    value: "number",
    description: "Quantized Dice pooled over the evaluation set against the label masks.",
  },
  {
    key: "max_dice_pooled_drop",
    metric: "dice_pooled",
    kind: "drop_points",
    label: "Dice drop (pooled)",
    unit: "points",
    value: "number",
    description: "Pooled Dice drop of the quantized model from the float one, in points.",
  },
  {
    key: "min_iou_vs_float",
    metric: "iou_vs_float",
    kind: "value_min",
    label: "IoU vs float",
    unit: "ratio",
    value: "number",
    description: "Mean IoU per image of the quantized masks with the float masks as reference.",
  },
  {
    key: "min_dice_vs_float",
    metric: "dice_vs_float",
    kind: "value_min",
    label: "Dice vs float",
    unit: "ratio",
    value: "number",
    description: "Mean Dice per image of the quantized masks with the float masks as reference.",
  },
  {
    key: "min_pixel_agreement",
    metric: "pixel_agreement",
    kind: "value_min",
    label: "Pixel agreement with float",
    unit: "ratio",
    value: "number",
    description: "Share of pixels whose quantized class equals the float class.",
  },
  {
    key: "min_decision_agreement",
    metric: "decision_agreement",
    kind: "value_min",
    label: "Decision agreement with float",
    unit: "ratio",
    value: "number",
    description: "Share of thresholded decisions of the quantized model equal to the float model's.",
  },
  {
    key: "min_decision_accuracy",
    metric: "decision_accuracy",
    kind: "value_min",
    label: "Decision accuracy",
    unit: "ratio",
    value: "number",
    description: "Accuracy of the quantized model's thresholded decisions against 0/1 labels.",
  },
  {
    key: "max_decision_accuracy_drop",
    metric: "decision_accuracy",
    kind: "drop_points",
    label: "Decision accuracy drop",
    unit: "points",
    value: "number",
    description: "Decision accuracy drop of the quantized model from the float one against the labels, in points.",
  },
  {
    key: "max_score_change",
    metric: "score_max_abs_change",
    kind: "value_max",
    label: "Largest score change",
    unit: "value",
    value: "number",
    description: "Largest |quantized - float| score of a decision output.",
  },
  {
    key: "max_score_mean_change",
    metric: "score_mean_abs_change",
    kind: "value_max",
    label: "Mean score change",
    unit: "value",
    value: "number",
    description: "Mean |quantized - float| score of a decision output.",
  },
  {
    key: "min_recall_at_k",
    metric: "recall_at_k",
    kind: "value_min",
    label: "Recall@k of float's neighbours",
    unit: "ratio",
    value: "number",
    description: "Mean share of each sample's k nearest neighbours under the float embeddings kept under the quantized ones.",
  },
  {
    key: "max_time_to_first_token_ms",
    metric: "ttft_ms",
    kind: "value_max",
    label: "Time to first token",
    unit: "ms",
    value: "ms",
    description: "Median time to first token of the quantized LLM over the measure.decode prompts (prefill of prompt_tokens, KV-cache models).",
  },
  {
    key: "max_decode_ms_per_token",
    metric: "decode_ms_per_token_p50",
    kind: "value_max",
    label: "Decode ms/token p50",
    unit: "ms",
    value: "ms",
    description: "Median latency of one greedy decode step of the quantized LLM, its KV cache fed back (measure.decode).",
  },
  {
    key: "min_decode_tokens_per_second",
    metric: "decode_tokens_per_second",
    kind: "value_min",
    label: "Decode tokens/s",
    unit: "tokens/s",
    value: "number",
    description: "Greedy decode steps per second of the quantized LLM (prefill excluded, measure.decode).",
  },
  {
    key: "max_decode_slowdown_vs_float",
    metric: "decode_slowdown_vs_float",
    kind: "value_max",
    label: "Decode ms/token vs float (quantized/float per interleaved round, p50)",
    unit: "ratio",
    value: "number",
    judge: "interval",
    description:
      "Quantized over float decode ms/token, one ratio per interleaved round (1.0 = as fast; measure.decode); fails only when the 95% interval of the median ratio lies above the limit, warns when it straddles it.",
  },
] as const satisfies readonly RuleDef[];

/** `gate.forbid_slower_than_float: true` is this rule with a fixed limit of 1. */
export const SLOWER_THAN_FLOAT: RuleDef = {
  key: "forbid_slower_than_float",
  metric: "latency_p50",
  kind: "ratio_max",
  label: "Latency vs float (p50 ratio)",
  unit: "ratio",
  value: "number",
  description: "Fail when the quantized model is slower than the float one (p50).",
};

/** Rules against the base branch's latest history entry (quantized value of this run vs the base's). */
export const REGRESSION_RULES = [
  {
    key: "max_accuracy_drop",
    metric: "accuracy",
    kind: "drop_points",
    label: "Accuracy drop vs base",
    unit: "points",
    value: "number",
    judge: "point",
    description: "Quantized accuracy drop against the base branch, in points.",
  },
  {
    key: "max_perplexity_increase_pct",
    metric: "perplexity",
    kind: "increase_pct",
    label: "Perplexity increase vs base",
    unit: "%",
    value: "percent",
    judge: "point",
    description: "Quantized perplexity increase against the base branch.",
  },
  {
    key: "max_kl_increase",
    metric: "kl_mean",
    kind: "increase",
    label: "KL (mean) increase vs base",
    unit: "nats",
    value: "number",
    judge: "point",
    description: "Increase of the mean KL divergence against the base branch (nats).",
  },
  {
    key: "max_top1_agreement_drop",
    metric: "top1_agreement",
    kind: "drop_points",
    label: "Top-1 agreement drop vs base",
    unit: "points",
    value: "number",
    judge: "point",
    description: "Top-1 agreement drop against the base branch, in points.",
  },
  {
    key: "max_latency_increase_pct",
    metric: "latency_p50",
    kind: "increase_pct",
    label: "Latency p50 increase vs base",
    unit: "%",
    value: "percent",
    judge: "interval",
    description: "Median latency increase against the base branch; fails only when the confidence interval clears the limit.",
  },
  {
    key: "max_size_increase_pct",
    metric: "model_size",
    kind: "increase_pct",
    label: "Model size increase vs base",
    unit: "%",
    value: "percent",
    judge: "point",
    description: "Quantized model size increase against the base branch.",
  },
  {
    key: "max_cer_increase",
    metric: "cer",
    kind: "increase_points",
    label: "Character error rate increase vs base",
    unit: "points",
    value: "number",
    judge: "point",
    description: "Quantized character error rate increase against the base branch, in points (paired on the same lines).",
  },
  {
    key: "max_wer_increase",
    metric: "wer",
    kind: "increase_points",
    label: "Word error rate increase vs base",
    unit: "points",
    value: "number",
    judge: "point",
    description: "Quantized word error rate increase against the base branch, in points.",
  },
  {
    key: "max_iou_drop",
    metric: "iou",
    kind: "drop_points",
    label: "IoU drop vs base",
    unit: "points",
    value: "number",
    judge: "point",
    description: "Quantized mean IoU drop against the base branch, in points (paired on the same images).",
  },
  {
    key: "max_dice_drop",
    metric: "dice",
    kind: "drop_points",
    label: "Dice drop vs base",
    unit: "points",
    value: "number",
    judge: "point",
    description: "Quantized mean Dice drop against the base branch, in points.",
  },
  {
    key: "max_decision_accuracy_drop",
    metric: "decision_accuracy",
    kind: "drop_points",
    label: "Decision accuracy drop vs base",
    unit: "points",
    value: "number",
    judge: "point",
    description: "Quantized decision accuracy drop against the base branch, in points.",
  },
] as const satisfies readonly RuleDef[];

/**
 * `regression.metrics.<key>.max_worse` / `max_worse_pct`: a regression rule on any metric, "worse" taken from the
 * metric's direction (an increase where lower is better, a decrease where higher is better).
 */
export function worseRule(metric: string, which: "max_worse" | "max_worse_pct", direction: "higher" | "lower", label: string, unit: MetricUnit): RuleDef {
  const pct = which === "max_worse_pct";
  return {
    key: `metrics.${metric}.${which}`,
    metric,
    kind: pct ? (direction === "lower" ? "increase_pct" : "drop_pct") : direction === "lower" ? "increase" : "decrease",
    label: `${label} ${direction === "lower" ? "increase" : "decrease"} vs base`,
    unit: pct ? "%" : unit,
    value: pct ? "percent" : "number",
    judge: "point",
    description: `How much worse than the base branch ${metric} may get.`,
  };
}

/** Direction of a rule's limit: the observed number must stay at or below ("max") or at or above ("min"). */
export const ruleDirection = (kind: RuleKind): "max" | "min" => (kind === "value_min" ? "min" : "max");

/** The number a rule judges, from the value and its reference; undefined where either is missing. */
export function observe(kind: RuleKind, value: number | undefined, ref: number | undefined): number | undefined {
  const ok = (x: number | undefined): x is number => x !== undefined && Number.isFinite(x);
  if (!ok(value)) return undefined;
  if (kind === "value_max" || kind === "value_min") return value;
  if (!ok(ref)) return undefined;
  switch (kind) {
    case "drop_points":
      return (ref - value) * 100;
    case "drop_pct":
      return ref > 0 ? ((ref - value) / ref) * 100 : undefined;
    case "increase_points":
      return (value - ref) * 100;
    case "increase":
      return value - ref;
    case "decrease":
      return ref - value;
    case "increase_pct":
      return ref !== 0 ? (value / ref - 1) * 100 : undefined;
    case "ratio_max":
      return ref !== 0 ? value / ref : undefined;
  }
}

/** The gate rule keys that read a metric (what a record's `rules` lists by default). */
export function gateRulesFor(metric: string): string[] {
  return (GATE_RULES as readonly RuleDef[]).filter((r) => r.metric === metric).map((r) => r.key);
}

/** A task's own rule on one of its records (per-output limits, user-metric limits), judged like the gate's. */
export interface TaskRule {
  /** Unique id, also the dotted config key that set it (e.g. "outputs.logits.min_cosine"). */
  readonly rule: string;
  readonly metric: string;
  readonly kind: RuleKind;
  readonly label: string;
  readonly unit: MetricUnit;
  readonly limit: { readonly warn?: number | undefined; readonly fail?: number | undefined };
}

/** The record a rule reads, by key. */
export const recordOf = (records: readonly MetricRecord[], key: string): MetricRecord | undefined => records.find((r) => r.key === key);

/** Confidence level of the interval that "interval" gate rules judge. */
export const INTERVAL_RULE_CONFIDENCE = 0.95;

/**
 * A "max" gate rule judged on the interval of the median of noisy samples (per-round ratios): fail only when the whole
 * interval lies above the fail limit, warn when it straddles it or the median is past the warning level, pass otherwise.
 */
export function judgeIntervalRule(def: RuleDef, limit: Limit, samples: readonly number[], level = INTERVAL_RULE_CONFIDENCE): RuleResult {
  const unit = def.unit === "ratio" ? "x" : def.unit;
  const v = judgeLatencyLimit(samples, limit, level, 0.5, unit);
  const shown = `${v.p50.toFixed(3)}${unit === "x" ? "x" : ` ${unit}`}`;
  const message =
    v.status === "fail"
      ? `${def.label} ${shown} breaks ${def.key}: ${v.reason}`
      : v.status === "warn"
        ? `${def.label} ${shown} is near ${def.key}: ${v.reason}`
        : `${def.label} ${shown} within ${def.key} (${v.reason})`;
  return { rule: def.key, label: def.label, unit: def.unit, direction: "max", observed: v.p50, limit, status: v.status, message, metric: def.metric };
}
