// Bootstrap confidence intervals: paired for accuracy deltas, unpaired for medians of latency samples.

export interface Interval {
  readonly lo: number;
  readonly hi: number;
  readonly level: number;
  readonly method: string;
}

/** Deterministic PRNG (mulberry32) so a gate decision does not change between re-runs of the same data. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function median(values: ArrayLike<number>): number {
  const s = Float64Array.from(values as ArrayLike<number>).sort();
  const n = s.length;
  if (n === 0) return NaN;
  return n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
}

function quantileSorted(s: Float64Array, q: number): number {
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo]! + (s[hi]! - s[lo]!) * (pos - lo);
}

function percentileInterval(stats: Float64Array, level: number, method: string): Interval {
  stats.sort();
  const alpha = (1 - level) / 2;
  return { lo: quantileSorted(stats, alpha), hi: quantileSorted(stats, 1 - alpha), level, method };
}

function resample(values: ArrayLike<number>, rand: () => number, out: Float64Array): Float64Array {
  for (let i = 0; i < out.length; i++) out[i] = values[Math.floor(rand() * values.length)]!;
  return out;
}

/**
 * Paired bootstrap of the accuracy drop in points, base minus current, from per-sample correctness
 * ('0'/'1' strings over the same samples): resampling indices keeps each sample's pair together.
 */
export function pairedAccuracyDropInterval(baseCorrect: string, currentCorrect: string, level: number, resamples: number, seed = 1): Interval {
  const n = baseCorrect.length;
  if (n === 0 || currentCorrect.length !== n) throw new Error("paired bootstrap needs correctness over the same samples");
  const diff = new Int8Array(n);
  for (let i = 0; i < n; i++) diff[i] = (baseCorrect.charCodeAt(i) === 49 ? 1 : 0) - (currentCorrect.charCodeAt(i) === 49 ? 1 : 0);
  const rand = seededRandom(seed);
  const stats = new Float64Array(resamples);
  for (let b = 0; b < resamples; b++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += diff[Math.floor(rand() * n)]!;
    stats[b] = (s / n) * 100;
  }
  return percentileInterval(stats, level, `paired bootstrap over ${n} samples`);
}

/** Normal-approximation interval of a difference of two proportions (when per-sample results are missing). */
export function unpairedAccuracyDropInterval(pBase: number, nBase: number, pCur: number, nCur: number, level: number): Interval {
  const z = normalQuantile(1 - (1 - level) / 2);
  const se = Math.sqrt((pBase * (1 - pBase)) / Math.max(1, nBase) + (pCur * (1 - pCur)) / Math.max(1, nCur));
  const d = (pBase - pCur) * 100;
  return { lo: d - z * se * 100, hi: d + z * se * 100, level, method: "normal approximation, unpaired (per-sample results not recorded)" };
}

/**
 * Bootstrap interval of the median latency change in percent. With float samples on both sides the
 * quantized median is divided by the float median of the same run first, which cancels runner speed.
 */
export function latencyIncreaseInterval(
  base: { quantized: readonly number[]; float?: readonly number[] },
  current: { quantized: readonly number[]; float?: readonly number[] },
  level: number,
  resamples: number,
  seed = 2,
): { point: number; interval: Interval; relativeToFloat: boolean } {
  const relative = !!(base.float?.length && current.float?.length);
  const value = (q: ArrayLike<number>, f: ArrayLike<number> | undefined): number => (relative ? median(q) / median(f!) : median(q));
  const point = (value(current.quantized, current.float) / value(base.quantized, base.float) - 1) * 100;
  const rand = seededRandom(seed);
  const buf = (n: number | undefined): Float64Array => new Float64Array(n ?? 0);
  const [bq, bf, cq, cf] = [buf(base.quantized.length), buf(base.float?.length), buf(current.quantized.length), buf(current.float?.length)];
  const stats = new Float64Array(resamples);
  for (let b = 0; b < resamples; b++) {
    const vb = value(resample(base.quantized, rand, bq), relative ? resample(base.float!, rand, bf) : undefined);
    const vc = value(resample(current.quantized, rand, cq), relative ? resample(current.float!, rand, cf) : undefined);
    stats[b] = (vc / vb - 1) * 100;
  }
  const n = `${base.quantized.length}+${current.quantized.length} runs`;
  return {
    point,
    interval: percentileInterval(stats, level, `bootstrap of medians (${n}${relative ? ", relative to the float model in the same run" : ""})`),
    relativeToFloat: relative,
  };
}

/** Inverse of the standard normal CDF (Acklam's rational approximation, |error| < 1.2e-9). */
export function normalQuantile(p: number): number {
  const a = [-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716, 2.506628277459239];
  const b = [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572];
  const c = [-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const lowP = 0.02425;
  if (p < lowP) {
    const q = Math.sqrt(-2 * Math.log(p));
    return (((((c[0]! * q + c[1]!) * q + c[2]!) * q + c[3]!) * q + c[4]!) * q + c[5]!) / ((((d[0]! * q + d[1]!) * q + d[2]!) * q + d[3]!) * q + 1);
  }
  if (p > 1 - lowP) return -normalQuantile(1 - p);
  const q = p - 0.5;
  const r = q * q;
  return (
    ((((((a[0]! * r + a[1]!) * r + a[2]!) * r + a[3]!) * r + a[4]!) * r + a[5]!) * q) / (((((b[0]! * r + b[1]!) * r + b[2]!) * r + b[3]!) * r + b[4]!) * r + 1)
  );
}

/** Paired bootstrap of mean(current - base) over the same samples (index resampling keeps pairs together). */
export function pairedMeanDiffInterval(base: ArrayLike<number>, current: ArrayLike<number>, level: number, resamples: number, seed = 3): Interval {
  const n = base.length;
  if (n === 0 || current.length !== n) throw new Error("paired bootstrap needs values over the same samples");
  const diff = new Float64Array(n);
  for (let i = 0; i < n; i++) diff[i] = current[i]! - base[i]!;
  const rand = seededRandom(seed);
  const stats = new Float64Array(resamples);
  for (let b = 0; b < resamples; b++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += diff[Math.floor(rand() * n)]!;
    stats[b] = s / n;
  }
  return percentileInterval(stats, level, `paired bootstrap over ${n} samples`);
}

/** Normal-approximation interval of a difference of two means (current - base) from counts and standard deviations. */
export function unpairedMeanDiffInterval(
  base: { mean: number; sd: number; n: number },
  current: { mean: number; sd: number; n: number },
  level: number,
): Interval {
  const z = normalQuantile(1 - (1 - level) / 2);
  const se = Math.sqrt((base.sd * base.sd) / Math.max(1, base.n) + (current.sd * current.sd) / Math.max(1, current.n));
  const d = current.mean - base.mean;
  return { lo: d - z * se, hi: d + z * se, level, method: "normal approximation, unpaired" };
}
