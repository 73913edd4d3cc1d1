// Hardware-aware per-matrix choice (QuantX-style): for each weight matrix, candidate formats are drawn
// from its statistics (a non-uniform grid only where the weights are heavy-tailed, smaller blocks where
// outliers are common), each candidate is quantized and its activation-weighted error measured, and a
// Lagrangian choice meets the bits-per-weight target. Measured kernel cost per format (when the kernel
// benchmark ran) removes formats slower than max_cost_ratio x int4 per weight byte on this runner.
import type { ActivationStats } from "../calibrate/index.js";
import { FORMAT_BITS, type Recipe, type WeightFormat } from "../config/schema.js";
import { activeKernels } from "../kernels/active.js";
import { dequantize, quantizeWeight, specFor, weightRowsNK, type QuantizeContext, type WeightPlan } from "./index.js";
import { formatBpw } from "./mixed-plan.js";

type QuantX = NonNullable<Recipe["quantx"]>;

export interface WeightStatistics {
  /** Excess-free kurtosis E[w^4]/E[w^2]^2 (3 for a Gaussian). */
  readonly kurtosis: number;
  /** Share of weights beyond 4 standard deviations. */
  readonly outlierShare: number;
}

export function weightStatistics(w: Float32Array): WeightStatistics {
  const raw = activeKernels();
  if (raw?.weightMoments && w.length > 0) {
    // The same float64 sums in the same order, then the outliers past 4 standard deviations, in the kernels.
    const out = new Float64Array(3);
    raw.weightMoments(w, -1, out);
    const m2 = out[0]! / w.length;
    const m4 = out[1]! / w.length;
    const threshold = 4 * Math.sqrt(m2);
    raw.weightMoments(w, Number.isFinite(threshold) ? threshold : -1, out); // NaN / infinite: nothing is above it
    return { kurtosis: m2 > 0 ? m4 / (m2 * m2) : 0, outlierShare: out[2]! / w.length };
  }
  let m2 = 0;
  let m4 = 0;
  for (const v of w) {
    const s = v * v;
    m2 += s;
    m4 += s * s;
  }
  m2 /= w.length;
  m4 /= w.length;
  const sd = Math.sqrt(m2);
  let outliers = 0;
  for (const v of w) if (Math.abs(v) > 4 * sd) outliers++;
  return { kurtosis: m2 > 0 ? m4 / (m2 * m2) : 0, outlierShare: outliers / w.length };
}

interface Candidate {
  readonly format: WeightFormat;
  readonly blockSize: number;
  readonly bpw: number;
  readonly error: number;
}

export interface QuantxDecision {
  readonly name: string;
  readonly stats: WeightStatistics;
  readonly chosen: { format: WeightFormat; blockSize: number; bpw: number };
  readonly candidates: Candidate[];
}

/** Candidate formats for a matrix from its statistics. */
export function candidateFormats(stats: WeightStatistics, symmetric: boolean): { format: WeightFormat; blockSize: number; bpw: number }[] {
  const blocks = stats.outlierShare > 1e-3 ? [32, 64] : [64, 128];
  const out: { format: WeightFormat; blockSize: number; bpw: number }[] = [];
  for (const b of blocks) {
    out.push({ format: "int3", blockSize: b, bpw: formatBpw("int3", b, symmetric) });
    out.push({ format: "int4", blockSize: b, bpw: formatBpw("int4", b, symmetric) });
    out.push({ format: "int2", blockSize: b, bpw: formatBpw("int2", b, symmetric) });
    // A non-uniform grid pays where the distribution is far from uniform within a block (heavy tails).
    if (stats.kurtosis > 3.5) out.push({ format: "nf4", blockSize: b, bpw: FORMAT_BITS.nf4 + 32 / b });
  }
  return out;
}

export function planQuantx(
  plans: readonly WeightPlan[],
  ctx: QuantizeContext,
  quantx: QuantX,
  kernelCostRatio?: ReadonlyMap<WeightFormat, number>,
): { plans: WeightPlan[]; decisions: QuantxDecision[] } {
  const perLayer = plans.map((plan) => {
    const w = weightRowsNK(plan.site);
    const stats = weightStatistics(w);
    const act: ActivationStats | undefined = ctx.stats?.get(plan.site.node.input[0] ?? "");
    const candidates: Candidate[] = candidateFormats(stats, plan.spec.symmetric)
      .filter((c) => (kernelCostRatio?.get(c.format) ?? 1) <= quantx.max_cost_ratio)
      .map((c) => {
        const trial: WeightPlan = {
          ...plan,
          format: c.format,
          spec: specFor(c.format, c.blockSize, plan.spec.symmetric, plan.algorithm === "gptq" || plan.algorithm === "awq" ? "mse" : plan.algorithm),
        };
        const q = quantizeWeight(trial, { ...ctx, recipe: { ...ctx.recipe, lowrank: { rank: 0, refine_scales: false } } });
        // Activation-weighted squared error of the whole layer (not relative), so layers compete fairly.
        const deq = dequantize(q.q);
        let err = 0;
        const { n, k } = plan.site;
        const raw = activeKernels();
        if (raw?.weightedSquaredError && (!act || act.meanSquare.length === k)) {
          const out = new Float64Array(1);
          raw.weightedSquaredError(w, deq, n, k, act ? act.meanSquare : new Float64Array(0), out);
          return { ...c, error: out[0]! };
        }
        for (let row = 0; row < n; row++) {
          for (let col = 0; col < k; col++) {
            const d = w[row * k + col]! - deq[row * k + col]!;
            err += (act ? act.meanSquare[col]! : 1) * d * d;
          }
        }
        return { ...c, error: err };
      });
    return { plan, stats, candidates, params: plan.site.n * plan.site.k };
  });
  const total = perLayer.reduce((a, l) => a + l.params, 0);
  const choose = (lambda: number): Candidate[] =>
    perLayer.map((l) => l.candidates.reduce((best, c) => (c.error + lambda * c.bpw * l.params < best.error + lambda * best.bpw * l.params ? c : best)));
  const bpwOf = (choice: Candidate[]): number => choice.reduce((a, c, i) => a + c.bpw * perLayer[i]!.params, 0) / total;
  // Bisect lambda (price of a bit) to the largest spend within the target.
  let lo = 0;
  let hi = 1;
  while (bpwOf(choose(hi)) > quantx.target_bpw && hi < 1e12) hi *= 10;
  for (let i = 0; i < 60; i++) {
    const mid = (lo + hi) / 2;
    if (bpwOf(choose(mid)) > quantx.target_bpw) lo = mid;
    else hi = mid;
  }
  const choice = choose(hi);
  const decisions: QuantxDecision[] = [];
  const out = perLayer.map((l, i) => {
    const c = choice[i]!;
    decisions.push({ name: l.plan.site.name, stats: l.stats, chosen: { format: c.format, blockSize: c.blockSize, bpw: c.bpw }, candidates: l.candidates });
    const algorithm = c.format === "nf4" ? "rtn" : l.plan.algorithm;
    return {
      ...l.plan,
      format: c.format,
      algorithm,
      spec: specFor(c.format, c.blockSize, l.plan.spec.symmetric, algorithm),
      overrides: [...l.plan.overrides, `quantx: kurtosis ${l.stats.kurtosis.toFixed(1)}`],
    };
  });
  return { plans: out, decisions };
}
