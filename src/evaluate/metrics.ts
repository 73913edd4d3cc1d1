// Numeric core of the evaluation: log-softmax, KL divergence, argmax, percentiles (pure functions).

/** log-softmax of logits[offset .. offset+size) into out (float64). */
export function logSoftmax(logits: Float32Array, offset: number, size: number, out: Float64Array): void {
  let max = -Infinity;
  for (let i = 0; i < size; i++) max = Math.max(max, logits[offset + i]!);
  let sum = 0;
  for (let i = 0; i < size; i++) sum += Math.exp(logits[offset + i]! - max);
  const logZ = max + Math.log(sum);
  for (let i = 0; i < size; i++) out[i] = logits[offset + i]! - logZ;
}

/** KL(P || Q) from log-probabilities. */
export function klDivergence(logP: Float64Array, logQ: Float64Array): number {
  let kl = 0;
  for (let i = 0; i < logP.length; i++) {
    const lp = logP[i]!;
    if (lp === -Infinity) continue;
    kl += Math.exp(lp) * (lp - logQ[i]!);
  }
  return Math.max(0, kl);
}

export function argmax(values: ArrayLike<number>, offset = 0, size = values.length): number {
  let best = 0;
  let bestValue = -Infinity;
  for (let i = 0; i < size; i++) {
    const v = values[offset + i]!;
    if (v > bestValue) {
      bestValue = v;
      best = i;
    }
  }
  return best;
}

/** Percentile by nearest rank on a copy (p in [0, 100]). */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

export function mean(values: readonly number[]): number {
  return values.length === 0 ? NaN : values.reduce((a, b) => a + b, 0) / values.length;
}

export function macroF1(labels: readonly number[], predictions: readonly number[]): number {
  const classes = new Set([...labels, ...predictions]);
  let total = 0;
  for (const c of classes) {
    let tp = 0;
    let fp = 0;
    let fn = 0;
    for (let i = 0; i < labels.length; i++) {
      const isP = predictions[i] === c;
      const isL = labels[i] === c;
      if (isP && isL) tp++;
      else if (isP) fp++;
      else if (isL) fn++;
    }
    total += tp === 0 ? 0 : (2 * tp) / (2 * tp + fp + fn);
  }
  return classes.size === 0 ? NaN : total / classes.size;
}
