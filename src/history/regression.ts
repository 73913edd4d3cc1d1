// Regression rules against the base branch's latest history entry: point rules for accuracy, KL and size,
// noise-aware latency (fails only when the bootstrap interval clears the limit), per-layer precision changes.
import type { Limit, RegressionSettings } from "../config/schema.js";
import { evaluateRule, fmt, within, type RuleResult, type Unit } from "../gate/index.js";
import type { HistoryEntry, HistoryLayer } from "./entry.js";
import { latencyIncreaseInterval, pairedAccuracyDropInterval, unpairedAccuracyDropInterval, type Interval } from "./stats.js";

export interface Comparison {
  readonly metric: string;
  readonly unit: Unit;
  readonly base: number | undefined;
  readonly current: number | undefined;
  /** Change as the rule measures it (points, %, nats). */
  readonly change: number | undefined;
  readonly changeUnit: Unit;
  readonly interval?: Interval;
  readonly rule?: string;
  readonly note?: string;
}

export interface LayerDiff {
  readonly name: string;
  readonly change: "added" | "removed" | "changed";
  readonly before?: HistoryLayer;
  readonly after?: HistoryLayer;
  readonly fields: string[];
}

export interface RegressionResult {
  readonly base: { readonly commit: string; readonly branch?: string; readonly createdAt: string; readonly runUrl?: string };
  readonly rules: RuleResult[];
  readonly comparisons: Comparison[];
  readonly layers: LayerDiff[];
  readonly notes: string[];
}

export const REGRESSION_RULES = [
  "max_accuracy_drop",
  "max_perplexity_increase_pct",
  "max_kl_increase",
  "max_latency_increase_pct",
  "max_size_increase_pct",
] as const;

const pct = (cur: number | undefined, base: number | undefined): number | undefined =>
  cur !== undefined && base !== undefined && base !== 0 ? (cur / base - 1) * 100 : undefined;
const sub = (a: number | undefined, b: number | undefined): number | undefined => (a !== undefined && b !== undefined ? a - b : undefined);
const showInterval = (i: Interval, unit: Unit): string => `${Math.round(i.level * 100)}% CI [${fmt(i.lo, unit)}, ${fmt(i.hi, unit)}]`;

function pointRule(id: string, label: string, unit: Unit, limit: Limit | undefined, observed: number | undefined, suffix: string): RuleResult | undefined {
  if (!limit) return undefined;
  const r = evaluateRule(`regression.${id}`, { label, unit, direction: "max", observe: () => observed }, limit, observed);
  return observed === undefined
    ? { ...r, status: "warn", message: `regression.${id}: the base entry or this run lacks the measurement; not compared` }
    : { ...r, message: r.message + suffix };
}

/**
 * Latency: fail only when the interval's lower bound is past the fail limit; a point estimate past a
 * limit whose interval still reaches it is a warning ("not significant"). Without raw samples, a warning at most.
 */
export function latencyRule(limit: Limit, point: number, interval: Interval | undefined, baseSha: string): RuleResult {
  const id = "regression.max_latency_increase_pct";
  const label = "Latency p50 increase vs base";
  const base = { rule: id, label, unit: "%" as Unit, direction: "max" as const, observed: point, limit };
  const failLimit = limit.fail;
  const warnLimit = limit.warn ?? limit.fail;
  const ci = interval ? ` (${showInterval(interval, "%")}, ${interval.method})` : "";
  if (!interval) {
    const over = warnLimit !== undefined && !within("max", point, warnLimit);
    return {
      ...base,
      status: over ? "warn" : "pass",
      message: `${label} ${fmt(point, "%")} against ${baseSha}${over ? ` is past ${id} (at most ${fmt(warnLimit!, "%")})` : ` within ${id}`}; raw latency samples were not recorded, so a point estimate never fails the gate`,
    };
  }
  if (failLimit !== undefined && interval.lo > failLimit) {
    return { ...base, status: "fail", message: `${label} ${fmt(point, "%")} against ${baseSha} breaks ${id} (at most ${fmt(failLimit, "%")})${ci}` };
  }
  if (limit.warn !== undefined && interval.lo > limit.warn) {
    return {
      ...base,
      status: "warn",
      message: `${label} ${fmt(point, "%")} against ${baseSha} is past the warning level of ${id} (at most ${fmt(limit.warn, "%")})${ci}`,
    };
  }
  if (warnLimit !== undefined && point > warnLimit) {
    return {
      ...base,
      status: "warn",
      message: `${label} ${fmt(point, "%")} against ${baseSha} is past ${id} (at most ${fmt(warnLimit, "%")}) but within measurement noise${ci}`,
    };
  }
  return { ...base, status: "pass", message: `${label} ${fmt(point, "%")} against ${baseSha} within ${id}${ci}` };
}

export function diffLayers(base: Readonly<Record<string, HistoryLayer>>, current: Readonly<Record<string, HistoryLayer>>): LayerDiff[] {
  const fields: (keyof HistoryLayer)[] = ["format", "bits", "blockSize", "form"];
  const out: LayerDiff[] = [];
  for (const [name, after] of Object.entries(current)) {
    const before = base[name];
    if (!before) out.push({ name, change: "added", after, fields: [] });
    else {
      const changed = fields.filter((f) => before[f] !== after[f]);
      if (changed.length > 0) out.push({ name, change: "changed", before, after, fields: changed });
    }
  }
  for (const [name, before] of Object.entries(base)) if (!current[name]) out.push({ name, change: "removed", before, fields: [] });
  return out;
}

export function evaluateRegression(current: HistoryEntry, base: HistoryEntry, settings: RegressionSettings): RegressionResult {
  const rules: RuleResult[] = [];
  const comparisons: Comparison[] = [];
  const notes: string[] = [];
  const sha = base.commit.slice(0, 7);
  const suffix = ` against ${sha}`;
  const c = current.metrics;
  const b = base.metrics;
  const push = (r: RuleResult | undefined): void => {
    if (r) rules.push(r);
  };

  if (c.accuracyQuantized !== undefined || b.accuracyQuantized !== undefined) {
    const diff = sub(b.accuracyQuantized, c.accuracyQuantized);
    const drop = diff === undefined ? undefined : diff * 100;
    let interval: Interval | undefined;
    if (drop !== undefined) {
      const sameData = base.hashes.data === current.hashes.data;
      if (base.quantizedCorrect && current.quantizedCorrect && sameData && base.quantizedCorrect.length === current.quantizedCorrect.length) {
        interval = pairedAccuracyDropInterval(base.quantizedCorrect, current.quantizedCorrect, settings.confidence, settings.bootstrap_samples);
      } else if (b.samples && c.samples) {
        interval = unpairedAccuracyDropInterval(b.accuracyQuantized!, b.samples, c.accuracyQuantized!, c.samples, settings.confidence);
      }
      if (!sameData) notes.push(`the evaluation data changed since ${sha}: accuracy is compared across different samples`);
    }
    comparisons.push({
      metric: "Accuracy (quantized)",
      unit: "ratio",
      base: b.accuracyQuantized,
      current: c.accuracyQuantized,
      change: drop === undefined ? undefined : -drop,
      changeUnit: "points",
      interval: interval ? { ...interval, lo: -interval.hi, hi: -interval.lo } : undefined,
      rule: settings.max_accuracy_drop ? "regression.max_accuracy_drop" : undefined,
    });
    push(
      pointRule(
        "max_accuracy_drop",
        "Accuracy drop vs base",
        "points",
        settings.max_accuracy_drop,
        drop,
        suffix + (interval ? ` (${showInterval(interval, "points")}, ${interval.method})` : ""),
      ),
    );
  }
  if (c.perplexityQuantized !== undefined || b.perplexityQuantized !== undefined) {
    const inc = pct(c.perplexityQuantized, b.perplexityQuantized);
    comparisons.push({
      metric: "Perplexity (quantized)",
      unit: "ratio",
      base: b.perplexityQuantized,
      current: c.perplexityQuantized,
      change: inc,
      changeUnit: "%",
      rule: settings.max_perplexity_increase_pct ? "regression.max_perplexity_increase_pct" : undefined,
    });
    push(pointRule("max_perplexity_increase_pct", "Perplexity increase vs base", "%", settings.max_perplexity_increase_pct, inc, suffix));
  }
  const klInc = sub(c.klMean, b.klMean);
  comparisons.push({
    metric: "KL divergence (mean)",
    unit: "nats",
    base: b.klMean,
    current: c.klMean,
    change: klInc,
    changeUnit: "nats",
    rule: settings.max_kl_increase ? "regression.max_kl_increase" : undefined,
  });
  push(pointRule("max_kl_increase", "KL (mean) increase vs base", "nats", settings.max_kl_increase, klInc, suffix));

  const sizeInc = pct(c.sizeBytes, b.sizeBytes);
  comparisons.push({
    metric: "Model size",
    unit: "bytes",
    base: b.sizeBytes,
    current: c.sizeBytes,
    change: sizeInc,
    changeUnit: "%",
    rule: settings.max_size_increase_pct ? "regression.max_size_increase_pct" : undefined,
  });
  push(pointRule("max_size_increase_pct", "Model size increase vs base", "%", settings.max_size_increase_pct, sizeInc, suffix));
  comparisons.push({
    metric: "Bits per weight",
    unit: "bits",
    base: b.bitsPerWeight,
    current: c.bitsPerWeight,
    change: sub(c.bitsPerWeight, b.bitsPerWeight),
    changeUnit: "bits",
  });
  comparisons.push({
    metric: "Peak memory",
    unit: "bytes",
    base: b.peakMemoryBytes,
    current: c.peakMemoryBytes,
    change: pct(c.peakMemoryBytes, b.peakMemoryBytes),
    changeUnit: "%",
  });

  // Latency: bootstrap over raw samples when both runs kept them, relative to the float model when it is unchanged.
  const bq = base.latencySamplesMs?.quantized;
  const cq = current.latencySamplesMs?.quantized;
  const sameFloat = base.hashes.model === current.hashes.model;
  const relative = settings.latency_relative_to_float && sameFloat;
  let latencyPoint: number | undefined;
  let latencyInterval: Interval | undefined;
  let latencyNote: string | undefined;
  if (bq?.length && cq?.length && bq.length >= 3 && cq.length >= 3) {
    const bf = relative ? base.latencySamplesMs?.float : undefined;
    const cf = relative ? current.latencySamplesMs?.float : undefined;
    const r = latencyIncreaseInterval({ quantized: bq, float: bf }, { quantized: cq, float: cf }, settings.confidence, settings.bootstrap_samples);
    latencyPoint = r.point;
    latencyInterval = r.interval;
  } else if (c.latencyP50Ms !== undefined && b.latencyP50Ms !== undefined) {
    const useFloat = relative && c.latencyP50MsFloat && b.latencyP50MsFloat;
    latencyPoint = useFloat ? pct(c.latencyP50Ms / c.latencyP50MsFloat!, b.latencyP50Ms / b.latencyP50MsFloat!) : pct(c.latencyP50Ms, b.latencyP50Ms);
    latencyNote = `point estimate${useFloat ? " relative to the float model in the same run" : ""}; raw samples not recorded`;
  }
  comparisons.push({
    metric: "Latency p50",
    unit: "ms",
    base: b.latencyP50Ms,
    current: c.latencyP50Ms,
    change: latencyPoint,
    changeUnit: "%",
    interval: latencyInterval,
    rule: settings.max_latency_increase_pct ? "regression.max_latency_increase_pct" : undefined,
    note: latencyInterval?.method ?? latencyNote,
  });
  if (settings.max_latency_increase_pct) {
    push(
      latencyPoint === undefined
        ? pointRule("max_latency_increase_pct", "Latency p50 increase vs base", "%", settings.max_latency_increase_pct, undefined, suffix)
        : latencyRule(settings.max_latency_increase_pct, latencyPoint, latencyInterval, sha),
    );
  }
  if (base.cpu !== current.cpu)
    notes.push(
      `the base entry was measured on another CPU (${base.cpu}); latency is ${relative ? "compared relative to the float model" : "not directly comparable"}`,
    );
  if (base.onnxruntime !== current.onnxruntime) notes.push(`ONNX Runtime changed since ${sha}: ${base.onnxruntime} → ${current.onnxruntime}`);

  return {
    base: { commit: base.commit, branch: base.branch, createdAt: base.createdAt, runUrl: base.runUrl },
    rules,
    comparisons,
    layers: diffLayers(base.layers, current.layers),
    notes,
  };
}
