// Latency statistics that hold up on a busy runner: distribution-free intervals of the median, limit
// verdicts judged on those intervals, and the quantized/float ratio compared with the base branch's spread.
import type { Limit } from "../config/schema.js";

export interface ConfidenceInterval {
  readonly lo: number;
  readonly hi: number;
  /** Coverage actually achieved (order-statistic intervals are discrete). */
  readonly level: number;
  readonly method: string;
}

export type LatencyStatus = "pass" | "warn" | "fail";

export interface LatencyVerdict {
  readonly status: LatencyStatus;
  /** The judged percentile's value (the median unless another quantile was asked for). */
  readonly p50: number;
  readonly interval: ConfidenceInterval;
  /** Why the status is what it is, in words (no markup). */
  readonly reason: string;
}

export function medianOf(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const n = s.length;
  if (n === 0) return NaN;
  return n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
}

/**
 * Lower binomial tail P(B <= k) for B ~ Binomial(n, 1/2), computed in log space so that n in the
 * thousands neither underflows nor loses the small tail.
 */
export function binomialHalfCdf(n: number, k: number): number {
  if (k < 0) return 0;
  if (k >= n) return 1;
  const log2n = n * Math.LN2;
  let logC = 0;
  let sum = 0;
  for (let i = 0; i <= k; i++) {
    if (i > 0) logC += Math.log(n - i + 1) - Math.log(i);
    sum += Math.exp(logC - log2n);
  }
  return Math.min(1, sum);
}

/** Lower binomial tail P(B <= k) for B ~ Binomial(n, p), in log space. */
export function binomialCdf(n: number, k: number, p: number): number {
  if (k < 0) return 0;
  if (k >= n) return 1;
  if (p <= 0) return 1;
  if (p >= 1) return 0;
  const lp = Math.log(p);
  const lq = Math.log1p(-p);
  let logC = 0;
  let sum = 0;
  for (let i = 0; i <= k; i++) {
    if (i > 0) logC += Math.log(n - i + 1) - Math.log(i);
    sum += Math.exp(logC + i * lp + (n - i) * lq);
  }
  return Math.min(1, sum);
}

/**
 * Distribution-free confidence interval of the q-quantile from order statistics: the lower bound is the
 * largest rank l with P(B <= l-1) <= (1-level)/2 for B ~ Binomial(n, q), the upper the smallest rank u with
 * P(B >= u) <= (1-level)/2. Where the samples are too few for a bound on one side (p95 of 20 runs has no
 * upper one), that side is the extreme sample and the stated coverage is what the ranks actually give.
 */
export function quantileInterval(samples: readonly number[], q: number, level = 0.95): ConfidenceInterval {
  const n = samples.length;
  if (n === 0) throw new Error("internal: quantile interval of no samples");
  if (q === 0.5) return medianInterval(samples, level);
  const s = [...samples].sort((a, b) => a - b);
  const tail = (1 - level) / 2;
  let l = 1;
  while (l + 1 <= n && binomialCdf(n, l, q) <= tail) l++;
  let u = n;
  while (u - 1 >= l && 1 - binomialCdf(n, u - 2, q) <= tail) u--;
  const coverage = binomialCdf(n, u - 1, q) - binomialCdf(n, l - 1, q);
  return { lo: s[l - 1]!, hi: s[u - 1]!, level: coverage, method: `order statistics ${l} and ${u} of ${n} runs` };
}

/**
 * Distribution-free confidence interval of the median from order statistics: [x(l), x(n+1-l)] with the
 * largest l whose coverage 1 - 2 P(B <= l-1) still reaches `level`. Latency samples are skewed and
 * have outliers (a preempted run); this interval assumes neither normality nor symmetry.
 * Below 6 samples no pair of order statistics reaches 95%: the full range is returned with its coverage.
 */
export function medianInterval(samples: readonly number[], level = 0.95): ConfidenceInterval {
  const n = samples.length;
  if (n === 0) throw new Error("internal: median interval of no samples");
  const s = [...samples].sort((a, b) => a - b);
  let l = 1;
  while (l + 1 <= Math.floor((n + 1) / 2) && 1 - 2 * binomialHalfCdf(n, l) >= level) l++;
  const coverage = 1 - 2 * binomialHalfCdf(n, l - 1);
  return { lo: s[l - 1]!, hi: s[n - l]!, level: coverage, method: `order statistics ${l} and ${n + 1 - l} of ${n} runs` };
}

/**
 * Judges a "max" latency limit on the interval of the median (or another quantile), not on the point estimate:
 * fail only when the whole interval is above the fail limit (the lower bound exceeds it); warn when the
 * interval straddles the fail limit or the median is past the warning level; pass otherwise.
 */
export function judgeLatencyLimit(samples: readonly number[], limit: Limit, level = 0.95, quantile = 0.5, unit = "ms"): LatencyVerdict {
  const value = quantileOf(samples, quantile);
  const interval = quantileInterval(samples, quantile, level);
  const what = quantile === 0.5 ? "the median" : `p${Math.round(quantile * 100)}`;
  const u = unit === "ms" ? " ms" : unit === "x" ? "x" : ` ${unit}`;
  const ci = `${Math.round(interval.level * 1000) / 10}% interval ${interval.lo.toFixed(3)}-${interval.hi.toFixed(3)}${u}`;
  if (limit.fail !== undefined && interval.lo > limit.fail) {
    return { status: "fail", p50: value, interval, reason: `the ${ci} of ${what} lies entirely above ${limit.fail}${u}` };
  }
  if (limit.fail !== undefined && interval.hi > limit.fail) {
    return { status: "warn", p50: value, interval, reason: `the ${ci} of ${what} straddles ${limit.fail}${u}: not significant, not failed` };
  }
  if (limit.warn !== undefined && value > limit.warn) {
    return { status: "warn", p50: value, interval, reason: `${what} is past the warning level ${limit.warn}${u} (${ci})` };
  }
  return { status: "pass", p50: value, interval, reason: `${ci}` };
}

/** The q-quantile by nearest rank, as the report's p50 and p95 are computed (so the rule shows the same figure). */
export function quantileOf(values: readonly number[], q: number): number {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
}

/**
 * Quantized latency relative to float, one value per interleaved round (quantized / float; below 1 is
 * faster). Both runs of a round share the runner's state at that moment, so the ratio cancels most
 * of the runner's speed and of slow drifts.
 */
export function ratioPerRound(floatMs: readonly number[], quantizedMs: readonly number[]): number[] {
  if (floatMs.length !== quantizedMs.length) throw new Error("internal: interleaved rounds differ in length");
  return quantizedMs.map((q, i) => q / floatMs[i]!);
}

/** A base-branch entry's median ratio (quantized / float) of one run, newest first. */
export interface BaseRatio {
  readonly ratioP50: number;
}

export interface RatioComparison {
  /** Change of the median ratio against the base branch, in percent (positive: the quantized model got slower relative to float). */
  readonly point: number;
  readonly interval: ConfidenceInterval;
  /** Robust standard deviation of log ratio between the base entries' runs (undefined with fewer than 3). */
  readonly betweenRunSd: number | undefined;
  /** Standard deviation of the current run's log median ratio from its own rounds. */
  readonly withinRunSd: number;
  readonly baseRuns: number;
  readonly note?: string;
}

/** Inverse standard normal CDF (Acklam's rational approximation, |error| < 1.2e-9). */
export function normalQuantile(p: number): number {
  const a = [-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716, 2.506628277459239];
  const b = [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572];
  const c = [-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  if (p <= 0 || p >= 1) throw new Error(`internal: normal quantile of ${p}`);
  if (p < 0.02425) {
    const q = Math.sqrt(-2 * Math.log(p));
    return (((((c[0]! * q + c[1]!) * q + c[2]!) * q + c[3]!) * q + c[4]!) * q + c[5]!) / ((((d[0]! * q + d[1]!) * q + d[2]!) * q + d[3]!) * q + 1);
  }
  if (p > 1 - 0.02425) return -normalQuantile(1 - p);
  const q = p - 0.5;
  const r = q * q;
  return (
    ((((((a[0]! * r + a[1]!) * r + a[2]!) * r + a[3]!) * r + a[4]!) * r + a[5]!) * q) / (((((b[0]! * r + b[1]!) * r + b[2]!) * r + b[3]!) * r + b[4]!) * r + 1)
  );
}

/** Fewest base entries whose spread is trusted as the run-to-run variance. */
export const MIN_BASE_RUNS_FOR_SPREAD = 3;

/**
 * Compares this run's per-round ratios with the median ratios of recent base-branch runs. The change is
 * judged against the run-to-run variance the base branch itself shows (a robust SD of its log ratios,
 * from MAD), never less than this run's own within-run noise, plus the uncertainty of the base level
 * (sd^2 / m). One run's rounds alone understate the variance between runs: that is what made a
 * same-commit pair fail.
 */
export function compareRatioToBase(currentRatios: readonly number[], base: readonly BaseRatio[], level = 0.95): RatioComparison {
  const baseLogs = base
    .map((b) => b.ratioP50)
    .filter((r) => Number.isFinite(r) && r > 0)
    .map(Math.log);
  if (currentRatios.length === 0 || baseLogs.length === 0) throw new Error("internal: ratio comparison needs current rounds and at least one base run");
  const z = normalQuantile(1 - (1 - level) / 2);
  const current = medianOf(currentRatios);
  const within = medianInterval(currentRatios, level);
  const withinRunSd = (Math.log(within.hi) - Math.log(within.lo)) / (2 * normalQuantile(1 - (1 - within.level) / 2));
  const baseLevel = medianOf(baseLogs);
  const m = baseLogs.length;
  let betweenRunSd: number | undefined;
  let sd: number;
  let note: string | undefined;
  if (m >= MIN_BASE_RUNS_FOR_SPREAD) {
    betweenRunSd = 1.4826 * medianOf(baseLogs.map((x) => Math.abs(x - baseLevel)));
    const perRun = Math.max(betweenRunSd, withinRunSd);
    // The base level is a median of m runs: its own uncertainty (about 1.25 sd / sqrt(m)) adds on.
    sd = Math.sqrt(perRun * perRun + (1.5708 * betweenRunSd * betweenRunSd) / m);
  } else {
    // No spread to learn from: assume the base run was as noisy as this one.
    sd = withinRunSd * Math.SQRT2;
    note = `fewer than ${MIN_BASE_RUNS_FOR_SPREAD} base runs with ratios: run-to-run spread unknown, this run's own spread used for both sides`;
  }
  const d = Math.log(current) - baseLevel;
  const interval: ConfidenceInterval = {
    lo: (Math.exp(d - z * sd) - 1) * 100,
    hi: (Math.exp(d + z * sd) - 1) * 100,
    level,
    method: `quantized/float ratio per interleaved round, median of ${currentRatios.length} vs median of ${m} base run(s)${betweenRunSd !== undefined ? ", run-to-run spread from the base runs" : ""}`,
  };
  return { point: (Math.exp(d) - 1) * 100, interval, betweenRunSd, withinRunSd, baseRuns: m, ...(note ? { note } : {}) };
}
