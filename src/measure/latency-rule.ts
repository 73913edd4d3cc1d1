// The gate's absolute latency limits judged on the interval of the median of the timed runs, so that a
// busy runner's noise gives a warning ("not significant") rather than a red build.
import type { Limit } from "../config/schema.js";
import type { RuleResult } from "../gate/index.js";
import type { ModelRunMeasurement } from "./index.js";
import { judgeLatencyLimit } from "./latency-stats.js";

/** Confidence level of the median's interval for absolute latency limits. */
export const LATENCY_CONFIDENCE = 0.95;

/**
 * A "max" latency rule on raw samples: fail only when the interval's lower bound is above the fail limit,
 * warn when the interval straddles it (or the median is past the warning level).
 */
export function latencyLimitRule(
  rule: string,
  label: string,
  limit: Limit,
  samplesMs: readonly number[],
  basis?: string,
  level = LATENCY_CONFIDENCE,
  quantile = 0.5,
): RuleResult {
  const v = judgeLatencyLimit(samplesMs, limit, level, quantile);
  const p50 = `${v.p50.toFixed(3)} ms${basis ? ` ${basis}` : ""}`;
  const message =
    v.status === "fail"
      ? `${label} ${p50} breaks ${rule} (at most ${limit.fail} ms): ${v.reason}`
      : v.status === "warn"
        ? `${label} ${p50} is near ${rule}: ${v.reason}`
        : `${label} ${p50} within ${rule} (${v.reason})`;
  return { rule, label, unit: "ms", direction: "max", observed: v.p50, limit, status: v.status, message };
}

/** How the samples the rule judges were taken, for its message (on-CPU time where the wait for a core was measured). */
export function latencyBasis(run: ModelRunMeasurement): { samplesMs: number[]; basis?: string } {
  if (!run.onCpuMs || run.waitShare === undefined) return { samplesMs: run.latenciesMs };
  return {
    samplesMs: run.onCpuMs,
    basis: `on CPU (wall time less ${(run.waitShare * 100).toFixed(0)}% spent waiting for a core; wall p50 ${run.latency.p50Ms.toFixed(3)} ms)`,
  };
}

/**
 * forbid_slower_than_float on the per-round quantized/float ratios of the interleaved runs: fail only when
 * the interval of their median lies above 1 (slower in a significant way); straddling 1 warns.
 */
export function slowerThanFloatRule(ratioPerRound: readonly number[], level = LATENCY_CONFIDENCE): RuleResult {
  const rule = "forbid_slower_than_float";
  const label = "Latency vs float (quantized/float per interleaved round, p50)";
  const limit = { warn: undefined, fail: 1 };
  const v = judgeLatencyLimit(ratioPerRound, limit, level, 0.5, "x");
  const ratio = `${v.p50.toFixed(3)}x`;
  const message =
    v.status === "fail"
      ? `${label} ${ratio} breaks ${rule}: ${v.reason}`
      : v.status === "warn"
        ? `${label} ${ratio} is near ${rule}: ${v.reason}`
        : `${label} ${ratio} within ${rule} (${v.reason})`;
  return { rule, label, unit: "ratio", direction: "max", observed: v.p50, limit, status: v.status, message };
}
