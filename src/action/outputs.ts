// Step outputs from the metric records: `metric-<key>-float` and `metric-<key>-quantized` for every record,
// and the named outputs of earlier versions (accuracy-float, kl-mean, ...) derived from the same records.
import type { MetricRecord } from "../tasks/types.js";
import { OUTPUTS } from "./io.js";

/** Named outputs kept for existing workflows: output -> the record and side it reads. */
export const NAMED_METRIC_OUTPUTS: Readonly<Record<string, { readonly metric: string; readonly side: "float" | "quantized" }>> = {
  [OUTPUTS.perplexityFloat]: { metric: "perplexity", side: "float" },
  [OUTPUTS.perplexityQuantized]: { metric: "perplexity", side: "quantized" },
  [OUTPUTS.accuracyFloat]: { metric: "accuracy", side: "float" },
  [OUTPUTS.accuracyQuantized]: { metric: "accuracy", side: "quantized" },
  [OUTPUTS.klMean]: { metric: "kl_mean", side: "quantized" },
  [OUTPUTS.top1Agreement]: { metric: "top1_agreement", side: "quantized" },
  [OUTPUTS.sizeBytes]: { metric: "model_size", side: "quantized" },
  [OUTPUTS.bitsPerWeight]: { metric: "bits_per_weight", side: "quantized" },
  [OUTPUTS.latencyP50Ms]: { metric: "latency_p50", side: "quantized" },
  [OUTPUTS.peakMemoryBytes]: { metric: "peak_memory", side: "quantized" },
};

/** The output name of a metric key: characters other than letters, digits, '_' and '-' become '-'. */
export const metricOutputName = (key: string, side: "float" | "quantized"): string => `metric-${key.replace(/[^A-Za-z0-9_-]+/g, "-")}-${side}`;

const show = (v: number): string => String(Number(v.toPrecision(6)));

/** Every metric output of a run, by output name (values as the step output strings). */
export function metricOutputs(records: readonly MetricRecord[]): Record<string, string> {
  const out: Record<string, string> = {};
  const byKey = new Map(records.map((r) => [r.key, r]));
  for (const r of records) {
    if (r.float !== undefined && Number.isFinite(r.float)) out[metricOutputName(r.key, "float")] = show(r.float);
    if (Number.isFinite(r.quantized)) out[metricOutputName(r.key, "quantized")] = show(r.quantized);
  }
  for (const [name, { metric, side }] of Object.entries(NAMED_METRIC_OUTPUTS)) {
    const v = byKey.get(metric)?.[side];
    if (v !== undefined && Number.isFinite(v)) out[name] = show(v);
  }
  return out;
}
