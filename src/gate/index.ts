// The gate stage: every configured rule yields pass/warn/fail with its numbers; errors fail closed.
import type { GateLimits, Limit } from "../config/schema.js";
import { latencyLimitRule, slowerThanFloatRule } from "../measure/latency-rule.js";

export type RuleStatus = "pass" | "warn" | "fail";
export type Verdict = "pass" | "fail";

/** The numbers the rules read; undefined where the task or a stage did not produce them. */
export interface GateMetrics {
  readonly accuracyFloat?: number;
  readonly accuracyQuantized?: number;
  readonly perplexityFloat?: number;
  readonly perplexityQuantized?: number;
  readonly klMean?: number;
  readonly klP99?: number;
  readonly top1Agreement?: number;
  readonly modelSizeBytesFloat?: number;
  readonly modelSizeBytes?: number;
  readonly bitsPerWeight?: number;
  readonly peakMemoryBytesFloat?: number;
  readonly peakMemoryBytes?: number;
  readonly latencyP50MsFloat?: number;
  readonly latencyP50Ms?: number;
  readonly latencyP95MsFloat?: number;
  readonly latencyP95Ms?: number;
  /** The quantized model's timed runs: max_latency_p50_ms / _p95_ms are judged on the interval of that percentile when present. */
  readonly latencySamplesMs?: readonly number[];
  /** How those samples were taken (e.g. on-CPU time), for the rule's message. */
  readonly latencySamplesBasis?: string;
  /** Quantized/float latency per interleaved round: forbid_slower_than_float is judged on their median's interval when present. */
  readonly latencyRatioPerRound?: readonly number[];
  /** Sum over the model's layer shapes and the recipe's formats of our kernels' GEMV time (M = 1). */
  readonly kernelGemvMsFloat?: number;
  readonly kernelGemvMs?: number;
}

export type Unit = "points" | "%" | "nats" | "bytes" | "bits" | "ms" | "ratio";

export interface RuleResult {
  /** The config key, e.g. "max_kl_mean". */
  readonly rule: string;
  readonly label: string;
  readonly unit: Unit;
  /** "max": observed must stay at or below the limit; "min": at or above. */
  readonly direction: "max" | "min";
  readonly observed: number | undefined;
  readonly limit: Limit;
  readonly status: RuleStatus;
  readonly message: string;
}

export interface GateResult {
  readonly verdict: Verdict;
  readonly rules: RuleResult[];
  /** Stage errors that failed the gate regardless of rules. */
  readonly errors: string[];
}

interface RuleDef {
  readonly label: string;
  readonly unit: Unit;
  readonly direction: "max" | "min";
  readonly observe: (m: GateMetrics) => number | undefined;
}

const defined = (...xs: (number | undefined)[]): boolean => xs.every((x) => x !== undefined && Number.isFinite(x));

export const RULES: Record<Exclude<keyof GateLimits, "forbid_slower_than_float">, RuleDef> = {
  max_accuracy_drop: {
    label: "Accuracy drop",
    unit: "points",
    direction: "max",
    observe: (m) => (defined(m.accuracyFloat, m.accuracyQuantized) ? (m.accuracyFloat! - m.accuracyQuantized!) * 100 : undefined),
  },
  max_accuracy_drop_pct: {
    label: "Accuracy drop (relative)",
    unit: "%",
    direction: "max",
    observe: (m) =>
      defined(m.accuracyFloat, m.accuracyQuantized) && m.accuracyFloat! > 0 ? ((m.accuracyFloat! - m.accuracyQuantized!) / m.accuracyFloat!) * 100 : undefined,
  },
  max_perplexity_increase_pct: {
    label: "Perplexity increase",
    unit: "%",
    direction: "max",
    observe: (m) => (defined(m.perplexityFloat, m.perplexityQuantized) ? (m.perplexityQuantized! / m.perplexityFloat! - 1) * 100 : undefined),
  },
  max_kl_mean: { label: "KL divergence (mean)", unit: "nats", direction: "max", observe: (m) => m.klMean },
  max_kl_p99: { label: "KL divergence (p99)", unit: "nats", direction: "max", observe: (m) => m.klP99 },
  min_top1_agreement: { label: "Top-1 agreement", unit: "ratio", direction: "min", observe: (m) => m.top1Agreement },
  max_model_size: { label: "Model size", unit: "bytes", direction: "max", observe: (m) => m.modelSizeBytes },
  max_bits_per_weight: { label: "Bits per weight", unit: "bits", direction: "max", observe: (m) => m.bitsPerWeight },
  max_peak_memory: { label: "Peak memory", unit: "bytes", direction: "max", observe: (m) => m.peakMemoryBytes },
  max_latency_p50_ms: { label: "Latency p50", unit: "ms", direction: "max", observe: (m) => m.latencyP50Ms },
  max_latency_p95_ms: { label: "Latency p95", unit: "ms", direction: "max", observe: (m) => m.latencyP95Ms },
  max_kernel_gemv_ms: { label: "Kernel GEMV time (all layers, M=1)", unit: "ms", direction: "max", observe: (m) => m.kernelGemvMs },
};

/** Direction-aware: true when `value` is within `limit`. */
export function within(direction: "max" | "min", value: number, limit: number): boolean {
  return direction === "max" ? value <= limit : value >= limit;
}

export function evaluateRule(rule: string, def: RuleDef, limit: Limit, observed: number | undefined): RuleResult {
  const base = { rule, label: def.label, unit: def.unit, direction: def.direction, observed, limit };
  if (observed === undefined || !Number.isFinite(observed)) {
    return { ...base, status: "fail", message: `${rule}: no measurement to check (the task or an earlier stage did not produce it)` };
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
  switch (unit) {
    case "bytes":
      return value >= 1024 * 1024 ? `${(value / 1024 / 1024).toFixed(2)} MiB` : `${(value / 1024).toFixed(1)} KiB`;
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
  }
}

/** @param extraRules rules evaluated elsewhere (the fidelity task's per-output limits), judged with the rest. */
export function evaluateGate(limits: GateLimits, metrics: GateMetrics, errors: readonly string[] = [], extraRules: readonly RuleResult[] = []): GateResult {
  const rules: RuleResult[] = [];
  for (const [rule, def] of Object.entries(RULES)) {
    const limit = limits[rule as keyof typeof RULES];
    if (!limit) continue;
    if ((rule === "max_latency_p50_ms" || rule === "max_latency_p95_ms") && metrics.latencySamplesMs?.length) {
      const q = rule === "max_latency_p50_ms" ? 0.5 : 0.95;
      rules.push(latencyLimitRule(rule, def.label, limit, metrics.latencySamplesMs, metrics.latencySamplesBasis, undefined, q));
      continue;
    }
    rules.push(evaluateRule(rule, def, limit, def.observe(metrics)));
  }
  if (limits.forbid_slower_than_float && metrics.latencyRatioPerRound?.length) {
    rules.push(slowerThanFloatRule(metrics.latencyRatioPerRound));
  } else if (limits.forbid_slower_than_float) {
    const slower = defined(metrics.latencyP50Ms, metrics.latencyP50MsFloat) ? metrics.latencyP50Ms! / metrics.latencyP50MsFloat! : undefined;
    rules.push(
      evaluateRule(
        "forbid_slower_than_float",
        { label: "Latency vs float (p50 ratio)", unit: "ratio", direction: "max", observe: () => slower },
        { warn: undefined, fail: 1 },
        slower,
      ),
    );
  }
  rules.push(...extraRules);
  const failed = errors.length > 0 || rules.some((r) => r.status === "fail");
  return { verdict: failed ? "fail" : "pass", rules, errors: [...errors] };
}
