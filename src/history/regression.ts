// Regression rules against the base branch's latest history entry, from the rule registry: point rules with
// paired-bootstrap intervals where per-sample values were kept, noise-aware rules for latency (fail only when
// the bootstrap interval clears the limit), the change of every metric, and per-layer precision changes.
import type { Limit, RegressionSettings } from "../config/schema.js";
import { evaluateRule, fmt, within, type RuleResult, type Unit } from "../gate/index.js";
import { observe, REGRESSION_RULES, ruleDirection, worseRule, type RuleDef } from "../gate/rules.js";
import { samplesOf, type HistoryEntry, type HistoryLayer, type HistoryMetric } from "./entry.js";
import { compareRatioToBase, MIN_BASE_RUNS_FOR_SPREAD } from "../measure/latency-stats.js";
import { latencyIncreaseInterval, pairedMeanDiffInterval, unpairedMeanDiffInterval, type Interval } from "./stats.js";

export interface Comparison {
  /** The metric key. */
  readonly metric: string;
  readonly label: string;
  readonly unit: Unit;
  readonly base: number | undefined;
  readonly current: number | undefined;
  /** Change as the rule measures it (points, %, nats), or as the unit reads best without a rule. */
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

const showInterval = (i: Interval, unit: Unit): string => `${Math.round(i.level * 100)}% CI [${fmt(i.lo, unit)}, ${fmt(i.hi, unit)}]`;
/** Units whose change reads best as a relative change when no rule says otherwise. */
const RELATIVE_UNITS: ReadonlySet<Unit> = new Set<Unit>(["bytes", "ms", "perplexity", "tokens/s", "count"]);

/**
 * Latency: fail only when the interval's lower bound is past the fail limit; a point estimate past a
 * limit whose interval still reaches it is a warning ("not significant"). Without raw samples, a warning at most.
 */
export function latencyRule(limit: Limit, point: number, interval: Interval | undefined, baseSha: string): RuleResult {
  const def = (REGRESSION_RULES as readonly RuleDef[]).find((d) => d.key === "max_latency_increase_pct")!;
  return intervalRule(def, limit, point, interval, baseSha);
}

/** A noise-aware rule (judge "interval"): see latencyRule. */
export function intervalRule(def: RuleDef, limit: Limit, point: number, interval: Interval | undefined, baseSha: string): RuleResult {
  const id = `regression.${def.key}`;
  const label = def.label;
  const base = { rule: id, label, unit: def.unit, direction: "max" as const, observed: point, limit, metric: def.metric };
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

/** The change of a metric without a rule: relative for sizes and times, points for ratios, else absolute. */
function defaultChange(unit: Unit, base: number | undefined, current: number | undefined): { change: number | undefined; changeUnit: Unit } {
  if (base === undefined || current === undefined) return { change: undefined, changeUnit: unit };
  if (RELATIVE_UNITS.has(unit)) return { change: observe("increase_pct", current, base), changeUnit: "%" };
  if (unit === "ratio") return { change: (current - base) * 100, changeUnit: "points" };
  return { change: current - base, changeUnit: unit };
}

/** Interval of a difference-kind rule's observed change from per-sample values (paired on the same data) or counts. */
function meanChangeInterval(def: RuleDef, b: HistoryMetric, c: HistoryMetric, sameData: boolean, settings: RegressionSettings): Interval | undefined {
  const scale =
    def.kind === "drop_points" ? -100 : def.kind === "increase_points" ? 100 : def.kind === "increase" ? 1 : def.kind === "decrease" ? -1 : undefined;
  if (scale === undefined) return undefined;
  const bs = samplesOf(b.perSample);
  const cs = samplesOf(c.perSample);
  let diff: Interval | undefined;
  if (sameData && bs && cs && bs.length === cs.length && bs.length > 1) diff = pairedMeanDiffInterval(bs, cs, settings.confidence, settings.bootstrap_samples);
  else if (b.n && c.n && b.sd !== undefined && c.sd !== undefined)
    diff = unpairedMeanDiffInterval({ mean: b.quantized, sd: b.sd, n: b.n }, { mean: c.quantized, sd: c.sd, n: c.n }, settings.confidence);
  if (!diff) return undefined;
  const [lo, hi] = scale > 0 ? [diff.lo * scale, diff.hi * scale] : [diff.hi * scale, diff.lo * scale];
  return { ...diff, lo, hi };
}

/** A point rule: the change of this run's quantized value against the base's; missing in this run fails closed. */
function pointRule(def: RuleDef, limit: Limit, b: HistoryMetric | undefined, c: HistoryMetric | undefined, sha: string, interval?: Interval): RuleResult {
  const id = `regression.${def.key}`;
  const spec = { label: def.label, unit: def.unit, direction: ruleDirection(def.kind), metric: def.metric };
  if (!c) return evaluateRule(id, spec, limit, undefined, `this run produced no "${def.metric}" metric`);
  if (!b) {
    return {
      ...evaluateRule(id, spec, limit, undefined),
      status: "warn",
      message: `${id}: the base entry ${sha} has no "${def.metric}" metric; not compared`,
    };
  }
  const observed = observe(def.kind, c.quantized, b.quantized);
  const r = evaluateRule(id, spec, limit, observed, `"${def.metric}" cannot be compared with the base (${b.quantized} → ${c.quantized})`);
  return observed === undefined
    ? r
    : { ...r, message: `${r.message} against ${sha}${interval ? ` (${showInterval(interval, def.unit)}, ${interval.method})` : ""}` };
}

/** Base runs whose latency ratios are read (newest first): enough to see the spread, recent enough to be relevant. */
export const MAX_BASE_RATIO_RUNS = 10;

/**
 * The latency rule on the quantized/float ratio: this run's per-round ratios against the median ratios of
 * recent base runs of the same float model, judged against the spread those runs show between themselves
 * (compareRatioToBase). Undefined when this run has too few rounds or fewer than MIN_BASE_RUNS_FOR_SPREAD base
 * runs have a ratio; the caller then falls back to the two-entry comparison and says so.
 */
function ratioAgainstBase(current: HistoryEntry, baseRuns: readonly HistoryEntry[], confidence: number): { change: number; interval: Interval } | undefined {
  const rounds = current.latencyRatio?.perRound;
  if (!rounds || rounds.length < 3) return undefined;
  const ratios = baseRuns
    .filter((e) => e.hashes?.model === current.hashes.model && e.latencyRatio && Number.isFinite(e.latencyRatio.p50) && e.latencyRatio.p50 > 0)
    .slice(0, MAX_BASE_RATIO_RUNS)
    .map((e) => ({ ratioP50: e.latencyRatio!.p50 }));
  if (ratios.length < MIN_BASE_RUNS_FOR_SPREAD) return undefined;
  const r = compareRatioToBase(rounds, ratios, confidence);
  return { change: r.point, interval: { lo: r.interval.lo, hi: r.interval.hi, level: r.interval.level, method: r.interval.method } };
}

/**
 * `baseRuns`: recent entries of the base branch, newest first (the latest is `base`); with 3 or more of them
 * carrying a latency ratio of the same float model, the latency rule judges the ratio against their spread.
 */
export function evaluateRegression(
  current: HistoryEntry,
  base: HistoryEntry,
  settings: RegressionSettings,
  baseRuns: readonly HistoryEntry[] = [base],
): RegressionResult {
  const rules: RuleResult[] = [];
  const notes: string[] = [];
  const sha = base.commit.slice(0, 7);
  const c = current.metrics;
  const b = base.metrics;
  const sameData = base.hashes.data === current.hashes.data;
  const byMetric = new Map<string, Comparison>();
  const configured = settings as unknown as Record<string, Limit | undefined>;
  const relative = settings.latency_relative_to_float && base.hashes.model === current.hashes.model;

  // The registry's rules, then `regression.metrics.<key>` rules on any metric (direction from the metric itself).
  const defs: { def: RuleDef; limit: Limit | undefined }[] = (REGRESSION_RULES as readonly RuleDef[]).map((def) => ({ def, limit: configured[def.key] }));
  for (const [key, limits] of Object.entries(settings.metrics ?? {})) {
    const m = c[key] ?? b[key];
    for (const which of ["max_worse", "max_worse_pct"] as const) {
      if (limits[which]) defs.push({ def: worseRule(key, which, m?.direction ?? "higher", m?.label ?? key, m?.unit ?? "value"), limit: limits[which] });
    }
  }
  for (const { def, limit } of defs) {
    if (!limit || typeof limit !== "object") continue;
    const cm = c[def.metric];
    const bm = b[def.metric];
    let rule: RuleResult;
    let interval: Interval | undefined;
    let change = cm && bm ? observe(def.kind, cm.quantized, bm.quantized) : undefined;
    let note: string | undefined;
    const byRatio =
      def.judge === "interval" && cm && bm && relative && def.metric === "latency_p50" ? ratioAgainstBase(current, baseRuns, settings.confidence) : undefined;
    if (def.judge === "interval" && cm && bm && relative && def.metric === "latency_p50" && !byRatio) {
      const withRatio = baseRuns.filter((e) => e.hashes?.model === current.hashes.model && e.latencyRatio).length;
      notes.push(
        current.latencyRatio?.perRound && current.latencyRatio.perRound.length >= 3
          ? `${withRatio} base run(s) of this float model have a latency ratio (${MIN_BASE_RUNS_FOR_SPREAD} needed to learn the run-to-run spread): latency compared with the latest base entry alone`
          : `this run has no per-round latency ratio: latency compared with the latest base entry alone`,
      );
    }
    if (byRatio) {
      change = byRatio.change;
      interval = byRatio.interval;
      note = byRatio.interval.method;
      rule = intervalRule(def, limit, change, interval, sha);
    } else if (def.judge === "interval" && cm && bm) {
      // Noisy measurements: bootstrap of medians of the raw runs, relative to the float model when it is unchanged.
      const bq = bm.raw?.quantized;
      const cq = cm.raw?.quantized;
      if (bq && cq && bq.length >= 3 && cq.length >= 3) {
        const r = latencyIncreaseInterval(
          { quantized: bq, float: relative ? bm.raw?.float : undefined },
          { quantized: cq, float: relative ? cm.raw?.float : undefined },
          settings.confidence,
          settings.bootstrap_samples,
        );
        change = r.point;
        interval = r.interval;
        note = r.interval.method;
      } else {
        const useFloat = relative && cm.float && bm.float;
        change = useFloat ? observe("increase_pct", cm.quantized / cm.float!, bm.quantized / bm.float!) : observe("increase_pct", cm.quantized, bm.quantized);
        note = `point estimate${useFloat ? " relative to the float model in the same run" : ""}; raw samples not recorded`;
      }
      rule = change === undefined ? pointRule(def, limit, bm, cm, sha) : intervalRule(def, limit, change, interval, sha);
    } else {
      if (cm && bm) {
        interval = meanChangeInterval(def, bm, cm, sameData, settings);
        note = interval?.method;
      }
      rule = pointRule(def, limit, bm, cm, sha, interval);
    }
    rules.push(rule);
    if (cm || bm) {
      byMetric.set(def.metric, {
        metric: def.metric,
        label: cm?.label ?? bm?.label ?? def.metric,
        unit: (cm ?? bm)!.unit,
        base: bm?.quantized,
        current: cm?.quantized,
        change,
        changeUnit: def.unit,
        ...(interval ? { interval } : {}),
        rule: rule.rule,
        ...(note ? { note } : {}),
      });
    }
  }
  if (!sameData) notes.push(`the evaluation data changed since ${sha}: metrics are compared across different samples`);

  const comparisons: Comparison[] = [];
  const keys = [...Object.keys(c), ...Object.keys(b).filter((k) => !(k in c))];
  for (const key of keys) {
    const ruled = byMetric.get(key);
    if (ruled) {
      comparisons.push(ruled);
      continue;
    }
    const m = c[key] ?? b[key]!;
    comparisons.push({
      metric: key,
      label: m.label,
      unit: m.unit,
      base: b[key]?.quantized,
      current: c[key]?.quantized,
      ...defaultChange(m.unit, b[key]?.quantized, c[key]?.quantized),
    });
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
