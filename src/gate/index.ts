// The gate stage: every configured rule yields pass/warn/fail with its numbers; errors fail closed.
// Rules read metric records by key (src/gate/rules.ts); a rule whose metric is missing fails.
import type { GateLimits, Limit } from "../config/schema.js";
import type { MetricRecord, MetricUnit } from "../tasks/types.js";
import { latencyLimitRule, slowerThanFloatRule } from "../measure/latency-rule.js";
import { GATE_RULES, judgeIntervalRule, observe, recordOf, ruleDirection, SLOWER_THAN_FLOAT, type RuleDef, type TaskRule } from "./rules.js";

export type RuleStatus = "pass" | "warn" | "fail";
export type Verdict = "pass" | "fail";
export type Unit = MetricUnit;

/** Timing evidence from the measure stage: latency limits are judged on the interval of their percentile. */
export interface LatencyEvidence {
  /** The quantized model's timed runs (on-CPU time where the platform tells it). */
  readonly samplesMs?: readonly number[];
  /** How those samples were taken, for the rule's message. */
  readonly basis?: string;
  /** Quantized/float latency per interleaved round. */
  readonly ratioPerRound?: readonly number[];
}

export interface RuleResult {
  /** The config key, e.g. "max_kl_mean", "regression.max_accuracy_drop", "outputs.logits.min_cosine". */
  readonly rule: string;
  readonly label: string;
  readonly unit: Unit;
  /** "max": observed must stay at or below the limit; "min": at or above. */
  readonly direction: "max" | "min";
  readonly observed: number | undefined;
  readonly limit: Limit;
  readonly status: RuleStatus;
  readonly message: string;
  /** The metric record the rule read. */
  readonly metric?: string;
}

export interface GateResult {
  readonly verdict: Verdict;
  readonly rules: RuleResult[];
  /** Stage errors that failed the gate regardless of rules. */
  readonly errors: string[];
}

/** Direction-aware: true when `value` is within `limit`. */
export function within(direction: "max" | "min", value: number, limit: number): boolean {
  return direction === "max" ? value <= limit : value >= limit;
}

export interface RuleSpec {
  readonly label: string;
  readonly unit: Unit;
  readonly direction: "max" | "min";
  readonly metric?: string;
}

export function evaluateRule(rule: string, def: RuleSpec, limit: Limit, observed: number | undefined, why?: string): RuleResult {
  const base = { rule, label: def.label, unit: def.unit, direction: def.direction, observed, limit, ...(def.metric ? { metric: def.metric } : {}) };
  if (observed === undefined || !Number.isFinite(observed)) {
    return {
      ...base,
      observed: undefined,
      status: "fail",
      message: `${rule}: no measurement to check (${why ?? "the task or an earlier stage did not produce it"})`,
    };
  }
  const word = def.direction === "max" ? "at most" : "at least";
  if (limit.fail !== undefined && !within(def.direction, observed, limit.fail)) {
    return { ...base, status: "fail", message: `${def.label} ${fmt(observed, def.unit)} breaks ${rule} (${word} ${fmt(limit.fail, def.unit)})` };
  }
  if (limit.warn !== undefined && !within(def.direction, observed, limit.warn)) {
    return {
      ...base,
      status: "warn",
      message: `${def.label} ${fmt(observed, def.unit)} is past the warning level of ${rule} (${word} ${fmt(limit.warn, def.unit)})`,
    };
  }
  return { ...base, status: "pass", message: `${def.label} ${fmt(observed, def.unit)} within ${rule}` };
}

export function fmt(value: number, unit: Unit): string {
  if (!Number.isFinite(value)) return String(value);
  switch (unit) {
    case "bytes":
      return Math.abs(value) >= 1024 * 1024 ? `${(value / 1024 / 1024).toFixed(2)} MiB` : `${(value / 1024).toFixed(1)} KiB`;
    case "ms":
      return `${value.toFixed(3)} ms`;
    case "%":
      return `${value.toFixed(2)}%`;
    case "points":
      return `${value.toFixed(2)} pts`;
    case "bits":
      return `${value.toFixed(3)} bits`;
    case "nats":
      return value.toPrecision(4);
    case "ratio":
      return value.toFixed(4);
    case "perplexity":
      return value.toFixed(3);
    case "tokens/s":
      return `${value.toFixed(1)} tok/s`;
    case "count":
      return String(Math.round(value));
    case "value":
      return Math.abs(value) >= 1e4 || (value !== 0 && Math.abs(value) < 1e-3) ? value.toExponential(3) : value.toPrecision(4);
  }
}

/** Judges one rule definition against the records: the metric's quantized value against its float value. */
export function judgeRule(def: RuleDef | TaskRule, limit: Limit, records: readonly MetricRecord[]): RuleResult {
  const key = "key" in def ? def.key : def.rule;
  const spec = { label: def.label, unit: def.unit, direction: ruleDirection(def.kind), metric: def.metric };
  const record = recordOf(records, def.metric);
  if (!record) return evaluateRule(key, spec, limit, undefined, `no "${def.metric}" metric was produced by the task or the measure stage`);
  const observed = observe(def.kind, record.quantized, record.float);
  const why =
    observe(def.kind, record.quantized, 0) !== undefined && record.float === undefined
      ? `"${def.metric}" has no float value to compare with (for example: no labels)`
      : `"${def.metric}" is not a finite number`;
  return evaluateRule(key, spec, limit, observed, why);
}

/**
 * Every configured gate rule, the task's own rules, and `forbid_slower_than_float`, over the metric records.
 * A rule whose metric is missing fails closed.
 */
export function evaluateGate(
  limits: GateLimits,
  records: readonly MetricRecord[],
  errors: readonly string[] = [],
  taskRules: readonly TaskRule[] = [],
  latency?: LatencyEvidence,
): GateResult {
  const rules: RuleResult[] = [];
  const configured = limits as unknown as Record<string, Limit | boolean | undefined>;
  for (const def of GATE_RULES) {
    const limit = configured[def.key];
    if (!limit || typeof limit !== "object") continue;
    if ((def.key === "max_latency_p50_ms" || def.key === "max_latency_p95_ms") && latency?.samplesMs?.length) {
      const q = def.key === "max_latency_p50_ms" ? 0.5 : 0.95;
      rules.push({ ...latencyLimitRule(def.key, def.label, limit, latency.samplesMs, latency.basis, undefined, q), metric: def.metric });
      continue;
    }
    const raw = (def as RuleDef).judge === "interval" ? recordOf(records, def.metric)?.raw?.quantized : undefined;
    rules.push(raw && raw.length > 0 ? judgeIntervalRule(def, limit, raw) : judgeRule(def, limit, records));
  }
  if (limits.forbid_slower_than_float) {
    rules.push(
      latency?.ratioPerRound?.length
        ? { ...slowerThanFloatRule(latency.ratioPerRound), metric: SLOWER_THAN_FLOAT.metric }
        : judgeRule(SLOWER_THAN_FLOAT, { warn: undefined, fail: 1 }, records),
    );
  }
  for (const r of taskRules) rules.push(judgeRule(r, r.limit, records));
  const failed = errors.length > 0 || rules.some((r) => r.status === "fail");
  return { verdict: failed ? "fail" : "pass", rules, errors: [...errors] };
}
