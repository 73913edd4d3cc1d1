// Mixed precision: give each layer the bits its sensitivity earns under a bits-per-weight budget.
//
// - `allocateBits` follows "Optimal Formats for Weight Quantisation" (Orr, Ribar, Luschi 2025): with a
//   per-layer error model E_i = P_i * F_i * RMS(W_i)^2 * 2^(-2 b_i) (P params, F mean diagonal Fisher),
//   minimizing sum E_i subject to sum P_i b_i = P * b_target gives b_i = b_target + d_i - mean_P(d) with
//   d_i = log2 RMS(W_i) + 0.5 log2 mean(F_i). The continuous answer is turned into a choice among the
//   formats on offer (see AllocateOptions.rounding) and repaired so the params-weighted mean bits per
//   weight (scales included) stays within the budget and uses it as fully as the formats allow.
// - `quantizationRatioPlan` is the Q_r knob of the mixed-quantization scaling-law work ("Scaling Laws
//   for Mixed Quantization", Cao et al. 2024): the share of weights held in the low format, filled with
//   the least sensitive layers first.

export interface LayerSensitivityInput {
  readonly name: string;
  /** Weights in the layer. */
  readonly params: number;
  /** Root mean square of the layer's weights. */
  readonly rmsW: number;
  /** Mean diagonal Fisher proxy of those weights (see `fisherProxy`). */
  readonly meanFisher: number;
}

export interface FormatOption {
  /** Code width (what sets the error, 2^(-2 bits)). */
  readonly bits: number;
  /** Real stored bits per weight including scales and zero points (what costs). */
  readonly bpw: number;
}

export interface BitAssignment {
  readonly name: string;
  readonly bits: number;
  readonly bpw: number;
}

/**
 * The per-layer diagonal Fisher proxy from activation statistics: mean_j E[x_j^2].
 * For y = x W^T the gradient of the loss w.r.t. W[i][j] is g_i x_j (g = dL/dy), so the diagonal Fisher is
 * E[g_i^2 x_j^2] ~ E[g_i^2] E[x_j^2] under the K-FAC independence assumption. Without a backward pass
 * the output-gradient factor E[g^2] is taken equal across layers, leaving F_ij proportional to E[x_j^2]
 * and the layer mean to mean_j E[x_j^2]. It ranks layers by how strongly their inputs drive the output;
 * a measured per-layer KL (quantize one layer, compare logits) can replace it where that is affordable.
 */
export function fisherProxy(meanSquare: Float64Array): number {
  if (meanSquare.length === 0) return 0;
  let s = 0;
  for (let j = 0; j < meanSquare.length; j++) s += meanSquare[j]!;
  return s / meanSquare.length;
}

/** d_i = log2 RMS(W_i) + 0.5 log2 mean(F_i); -Infinity for a layer with zero weights or zero Fisher. */
export function layerSensitivity(layer: Pick<LayerSensitivityInput, "rmsW" | "meanFisher">): number {
  if (!(layer.rmsW > 0) || !(layer.meanFisher > 0)) return -Infinity;
  return Math.log2(layer.rmsW) + 0.5 * Math.log2(layer.meanFisher);
}

/** The error model the allocation minimizes: sum_i F_i P_i RMS_i^2 2^(-2 b_i). */
export function expectedError(layers: readonly LayerSensitivityInput[], plan: readonly BitAssignment[]): number {
  let s = 0;
  layers.forEach((l, i) => {
    s += l.meanFisher * l.params * l.rmsW * l.rmsW * 2 ** (-2 * plan[i]!.bits);
  });
  return s;
}

/** Params-weighted mean bits per weight of a plan. */
export function meanBpw(layers: readonly { readonly params: number }[], plan: readonly BitAssignment[]): number {
  let p = 0;
  let b = 0;
  layers.forEach((l, i) => {
    p += l.params;
    b += l.params * plan[i]!.bpw;
  });
  return p > 0 ? b / p : 0;
}

function sortedOptions(options: readonly FormatOption[]): FormatOption[] {
  if (options.length === 0) throw new RangeError("allocateBits: no format options");
  for (const o of options) if (!(o.bpw > 0) || !(o.bits > 0)) throw new RangeError(`allocateBits: bad format option ${JSON.stringify(o)}`);
  return [...options].sort((a, b) => a.bpw - b.bpw || a.bits - b.bits);
}

const EPS = 1e-12;

export interface AllocateOptions {
  /**
   * How the continuous rule becomes a choice among the formats on offer.
   * - "lagrangian" (default): each layer takes the format minimizing P_i (F_i RMS_i^2 2^(-2 bits) +
   *   lambda * bpw), lambda bisected to the largest spend within the budget. With a continuum of formats
   *   this IS b_i = b_target + d_i - mean_P(d); with a few coarse formats (int2/3/4/8) it rounds where
   *   the error model says, not to the nearest bpw, and a big layer is not stranded one step low. Then
   *   the leftover budget goes to the promotions with the largest error drop per bit.
   * - "nearest": the rule's b_i rounded to the nearest format bpw, then the budget repaired by demoting
   *   the smallest d first and promoting the largest d while it fits.
   * Both keep bits monotone in d and the params-weighted mean bpw <= target.
   */
  readonly rounding?: "lagrangian" | "nearest";
}

export function allocateBits(
  layers: readonly LayerSensitivityInput[],
  targetBpw: number,
  options: readonly FormatOption[],
  allocate: AllocateOptions = {},
): BitAssignment[] {
  const opts = sortedOptions(options);
  const m = layers.length;
  if (m === 0) return [];
  const total = layers.reduce((s, l) => s + l.params, 0);
  if (!(total > 0)) throw new RangeError("allocateBits: layers have no parameters");
  if (targetBpw < opts[0]!.bpw - EPS) {
    throw new RangeError(`allocateBits: target ${targetBpw} bits per weight is below the smallest format (${opts[0]!.bpw})`);
  }
  const d = layers.map(layerSensitivity);
  const active = d.map(Number.isFinite);
  // Error mass per weight, c_i = F_i RMS_i^2 = 2^(2 d_i) (0 for inert layers).
  const c = d.map((x) => (Number.isFinite(x) ? 2 ** (2 * x) : 0));
  const budget = targetBpw * total * (1 + EPS);
  const spend = (idx: readonly number[]): number => layers.reduce((s, l, i) => s + l.params * opts[idx[i]!]!.bpw, 0);
  // Ascending sensitivity, ties by position.
  const order = layers.map((_, i) => i).sort((a, b) => (d[a] === d[b] ? a - b : d[a]! - d[b]!));
  const ceilingOf = (pos: number): number => {
    const i = order[pos]!;
    let ceiling = opts.length - 1;
    for (let q = pos + 1; q < order.length; q++) if (d[order[q]!]! > d[i]!) ceiling = Math.min(ceiling, idx[order[q]!]!);
    return ceiling;
  };

  let idx: number[];
  if ((allocate.rounding ?? "lagrangian") === "lagrangian") {
    const pick = (lambda: number): number[] =>
      c.map((ci) => {
        let best = 0;
        let bestCost = Infinity;
        opts.forEach((o, j) => {
          const cost = ci * 2 ** (-2 * o.bits) + lambda * o.bpw;
          if (cost < bestCost - 1e-300) {
            best = j;
            bestCost = cost;
          }
        });
        return best;
      });
    // Bisect log(lambda): spend decreases as lambda grows.
    const maxC = Math.max(...c, 1e-300);
    let lo = Math.log(maxC) - 200; // spends everything (or is the cheapest beyond which nothing changes)
    let hi = Math.log(maxC) + 50; // all at the smallest format
    if (spend(pick(Math.exp(lo))) <= budget) hi = lo;
    for (let it = 0; it < 200 && hi - lo > 1e-12; it++) {
      const mid = (lo + hi) / 2;
      if (spend(pick(Math.exp(mid))) <= budget) hi = mid;
      else lo = mid;
    }
    idx = pick(Math.exp(hi));
  } else {
    let activeParams = 0;
    let dMean = 0;
    layers.forEach((l, i) => {
      if (!active[i]) return;
      activeParams += l.params;
      dMean += l.params * d[i]!;
    });
    dMean = activeParams > 0 ? dMean / activeParams : 0;
    // Inert layers take the smallest format; the rest share the budget.
    const activeTarget = activeParams > 0 ? (targetBpw * total - (total - activeParams) * opts[0]!.bpw) / activeParams : targetBpw;
    idx = layers.map((_, i) => {
      if (!active[i]) return 0;
      const want = activeTarget + d[i]! - dMean;
      let best = 0;
      for (let o = 1; o < opts.length; o++) if (Math.abs(opts[o]!.bpw - want) < Math.abs(opts[best]!.bpw - want) - EPS) best = o;
      return best;
    });
    // Demote the least sensitive first (the first layer above the lowest format has only lowest-format
    // layers below it, so the order stays monotone).
    let used = spend(idx);
    while (used > budget) {
      const i = order.find((j) => idx[j]! > 0);
      if (i === undefined) break;
      used -= layers[i]!.params * (opts[idx[i]!]!.bpw - opts[idx[i]! - 1]!.bpw);
      idx[i]!--;
    }
  }

  // Spend what is left on promotions that keep bits monotone in d: most sensitive first ("nearest"), or
  // largest error drop per extra bit ("lagrangian").
  let used = spend(idx);
  for (;;) {
    let chosen = -1;
    let bestGain = -Infinity;
    for (let p = order.length - 1; p >= 0; p--) {
      const i = order[p]!;
      if (!active[i] || idx[i]! >= opts.length - 1 || idx[i]! + 1 > ceilingOf(p)) continue;
      const extra = layers[i]!.params * (opts[idx[i]! + 1]!.bpw - opts[idx[i]!]!.bpw);
      if (used + extra > budget) continue;
      if (allocate.rounding === "nearest") {
        chosen = i;
        break;
      }
      const gain = (layers[i]!.params * c[i]! * (2 ** (-2 * opts[idx[i]!]!.bits) - 2 ** (-2 * opts[idx[i]! + 1]!.bits))) / extra;
      if (gain > bestGain) {
        bestGain = gain;
        chosen = i;
      }
    }
    if (chosen < 0) break;
    used += layers[chosen]!.params * (opts[idx[chosen]! + 1]!.bpw - opts[idx[chosen]!]!.bpw);
    idx[chosen]!++;
  }
  if ((allocate.rounding ?? "lagrangian") === "lagrangian") exchange(layers, opts, d, c, idx, budget);
  return layers.map((l, i) => ({ name: l.name, bits: opts[idx[i]!]!.bits, bpw: opts[idx[i]!]!.bpw }));
}

function isMonotoneIn(d: readonly number[], idx: readonly number[]): boolean {
  const order = d.map((_, i) => i).sort((a, b) => d[a]! - d[b]!);
  let prevD = -Infinity;
  let maxBelow = 0; // largest index among strictly smaller d
  let groupMax = 0;
  for (let p = 0; p < order.length; p++) {
    const i = order[p]!;
    if (d[i]! > prevD) {
      maxBelow = Math.max(maxBelow, groupMax);
      groupMax = 0;
      prevD = d[i]!;
    }
    if (idx[i]! < maxBelow) return false;
    groupMax = Math.max(groupMax, idx[i]!);
  }
  return true;
}

/**
 * Pairwise exchange after the Lagrangian choice: promote one layer a step and demote another (or only
 * promote) when that lowers the modelled error, fits the budget and keeps bits monotone in d. Large
 * layers make the budget lumpy, and the Lagrangian solution only reaches points on the convex hull.
 */
function exchange(
  layers: readonly LayerSensitivityInput[],
  opts: readonly FormatOption[],
  d: readonly number[],
  c: readonly number[],
  idx: number[],
  budget: number,
): void {
  const m = layers.length;
  const err = (i: number, o: number): number => layers[i]!.params * c[i]! * 2 ** (-2 * opts[o]!.bits);
  const cost = (i: number, o: number): number => layers[i]!.params * opts[o]!.bpw;
  let used = layers.reduce((s, l, i) => s + cost(i, idx[i]!), 0);
  for (let round = 0; round < 4 * m * opts.length; round++) {
    let bestGain = 1e-12;
    let move: [number, number] | undefined;
    for (let i = 0; i < m; i++) {
      if (idx[i]! >= opts.length - 1 || c[i] === 0) continue;
      const up = err(i, idx[i]!) - err(i, idx[i]! + 1);
      const upCost = cost(i, idx[i]! + 1) - cost(i, idx[i]!);
      for (let j = -1; j < m; j++) {
        if (j === i || (j >= 0 && idx[j]! === 0)) continue;
        const down = j >= 0 ? err(j, idx[j]! - 1) - err(j, idx[j]!) : 0;
        const downCost = j >= 0 ? cost(j, idx[j]!) - cost(j, idx[j]! - 1) : 0;
        const gain = up - down;
        if (gain <= bestGain || used + upCost - downCost > budget) continue;
        idx[i]!++;
        if (j >= 0) idx[j]!--;
        const ok = isMonotoneIn(d, idx);
        idx[i]!--;
        if (j >= 0) idx[j]!++;
        if (!ok) continue;
        bestGain = gain;
        move = [i, j];
      }
    }
    if (!move) return;
    const [i, j] = move;
    used += cost(i, idx[i]! + 1) - cost(i, idx[i]!);
    idx[i]!++;
    if (j >= 0) {
      used -= cost(j, idx[j]!) - cost(j, idx[j]! - 1);
      idx[j]!--;
    }
  }
}

export interface RatioLayer {
  readonly name: string;
  readonly params: number;
  /** Any sensitivity where larger means more harm from low precision (d_i, or measured KL). */
  readonly sensitivity: number;
}

/**
 * Q_r plan: the least sensitive layers go to `low` (ties by position) as long as the share of weights in
 * low precision stays at or below `qr`; the rest, the most sensitive, stay `high`. The low set is always
 * a prefix of the sensitivity order, so no layer is low while a less sensitive one is high.
 */
export function quantizationRatioPlan(
  layers: readonly RatioLayer[],
  qr: number,
  low: FormatOption,
  high: FormatOption,
): { plan: BitAssignment[]; lowShare: number } {
  if (!(qr >= 0 && qr <= 1)) throw new RangeError(`quantizationRatioPlan: qr must be in [0, 1], got ${qr}`);
  const total = layers.reduce((s, l) => s + l.params, 0);
  const order = layers.map((_, i) => i).sort((a, b) => layers[a]!.sensitivity - layers[b]!.sensitivity || a - b);
  const isLow = new Array<boolean>(layers.length).fill(false);
  let lowParams = 0;
  for (const i of order) {
    if (total === 0 || (lowParams + layers[i]!.params) / total > qr + EPS) break;
    lowParams += layers[i]!.params;
    isLow[i] = true;
  }
  return {
    plan: layers.map((l, i) => ({ name: l.name, bits: isLow[i] ? low.bits : high.bits, bpw: isLow[i] ? low.bpw : high.bpw })),
    lowShare: total > 0 ? lowParams / total : 0,
  };
}

/** Every layer in the same format (the comparison baseline). */
export function uniformPlan(layers: readonly { readonly name: string }[], option: FormatOption): BitAssignment[] {
  return layers.map((l) => ({ name: l.name, bits: option.bits, bpw: option.bpw }));
}
