// The gate rules that judge the task metrics of src/metrics: rule key -> metric key, how the observed number is
// taken from the metric record, label and unit. Data only; the gate applies it.

/**
 * value_max / value_min: the quantized value must stay at or below / at or above the limit.
 * drop_points: how much worse the quantized value is than the float one, in points (x100), in the metric's
 * direction: higher-is-better metrics (IoU) observe (float - quantized) x 100, lower-is-better ones (CER)
 * observe (quantized - float) x 100; at or below the limit passes.
 */
export type MetricRuleKind = "value_max" | "value_min" | "drop_points" | "drop_pct" | "increase_pct";

export interface MetricRuleDefinition {
  readonly rule: string;
  readonly metric: string;
  readonly kind: MetricRuleKind;
  readonly label: string;
  /** Unit of the limit and the observed number. */
  readonly unit: "ratio" | "points" | "value";
}

export const TASK_METRIC_RULES: readonly MetricRuleDefinition[] = [
  { rule: "max_cer", metric: "cer", kind: "value_max", label: "Character error rate", unit: "ratio" },
  { rule: "max_cer_increase", metric: "cer", kind: "drop_points", label: "Character error rate increase", unit: "points" },
  { rule: "max_wer", metric: "wer", kind: "value_max", label: "Word error rate", unit: "ratio" },
  { rule: "max_wer_increase", metric: "wer", kind: "drop_points", label: "Word error rate increase", unit: "points" },
  { rule: "max_cer_vs_float", metric: "cer_vs_float", kind: "value_max", label: "Character error rate vs float", unit: "ratio" },
  { rule: "max_wer_vs_float", metric: "wer_vs_float", kind: "value_max", label: "Word error rate vs float", unit: "ratio" },
  { rule: "min_iou", metric: "iou", kind: "value_min", label: "IoU", unit: "ratio" },
  { rule: "max_iou_drop", metric: "iou", kind: "drop_points", label: "IoU drop", unit: "points" },
  { rule: "min_dice", metric: "dice", kind: "value_min", label: "Dice", unit: "ratio" },
  { rule: "max_dice_drop", metric: "dice", kind: "drop_points", label: "Dice drop", unit: "points" },
  { rule: "min_iou_pooled", metric: "iou_pooled", kind: "value_min", label: "IoU (pooled)", unit: "ratio" },
  { rule: "max_iou_pooled_drop", metric: "iou_pooled", kind: "drop_points", label: "IoU drop (pooled)", unit: "points" },
  { rule: "min_dice_pooled", metric: "dice_pooled", kind: "value_min", label: "Dice (pooled)", unit: "ratio" },
  { rule: "max_dice_pooled_drop", metric: "dice_pooled", kind: "drop_points", label: "Dice drop (pooled)", unit: "points" },
  { rule: "min_iou_vs_float", metric: "iou_vs_float", kind: "value_min", label: "IoU vs float", unit: "ratio" },
  { rule: "min_dice_vs_float", metric: "dice_vs_float", kind: "value_min", label: "Dice vs float", unit: "ratio" },
  { rule: "min_pixel_agreement", metric: "pixel_agreement", kind: "value_min", label: "Pixel agreement with float", unit: "ratio" },
  { rule: "min_decision_agreement", metric: "decision_agreement", kind: "value_min", label: "Decision agreement with float", unit: "ratio" },
  { rule: "min_decision_accuracy", metric: "decision_accuracy", kind: "value_min", label: "Decision accuracy", unit: "ratio" },
  { rule: "max_decision_accuracy_drop", metric: "decision_accuracy", kind: "drop_points", label: "Decision accuracy drop", unit: "points" },
  { rule: "max_score_change", metric: "score_max_abs_change", kind: "value_max", label: "Largest score change", unit: "value" },
  { rule: "max_score_mean_change", metric: "score_mean_abs_change", kind: "value_max", label: "Mean score change", unit: "value" },
  { rule: "min_recall_at_k", metric: "recall_at_k", kind: "value_min", label: "Recall@k of float's neighbours", unit: "ratio" },
];
