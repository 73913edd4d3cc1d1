// Mixed precision in the pipeline: per-layer sensitivity from calibration statistics, then bits per
// layer to reach a bits-per-weight target (optimal-formats rule) or a quantization ratio Q_r.
import type { ActivationStats } from "../calibrate/index.js";
import { FORMAT_BITS, type IntFormat, type Recipe } from "../config/schema.js";
import { UserError } from "../errors.js";
import { activeKernels } from "../kernels/active.js";
import {
  allocateBits,
  fisherProxy,
  layerSensitivity,
  quantizationRatioPlan,
  uniformPlan,
  type FormatOption,
  type LayerSensitivityInput,
} from "./algorithms/mixed.js";
import { specFor, weightRowsNK, type WeightPlan } from "./index.js";

type Mixed = NonNullable<Recipe["mixed"]>;

/** Bits per weight of the packed artifact: codes, an fp32 scale per block, a zero point per block when asymmetric. */
export function formatBpw(format: IntFormat, blockSize: number, symmetric: boolean): number {
  const bits = FORMAT_BITS[format];
  return bits + 32 / blockSize + (symmetric ? 0 : bits / blockSize);
}

export interface MixedDecision {
  readonly name: string;
  readonly format: IntFormat;
  readonly sensitivity: number;
  readonly bpw: number;
}

/**
 * @param measuredKl for method "kl": the KL of the model with only that layer quantized to `mixed.low`.
 * The error model KL_i(b) = c_i 2^(-2b) gives c_i = KL_i(low) 2^(2 low), which replaces F_i P_i RMS_i^2.
 */
export function planMixedPrecision(
  plans: readonly WeightPlan[],
  stats: ReadonlyMap<string, ActivationStats> | undefined,
  mixed: Mixed,
  measuredKl?: ReadonlyMap<string, number>,
): { plans: WeightPlan[]; decisions: MixedDecision[] } {
  const layers: LayerSensitivityInput[] = plans.map((p) => {
    const w = weightRowsNK(p.site);
    let sq = 0;
    const raw = activeKernels();
    if (raw?.weightMoments) {
      const m = new Float64Array(3);
      raw.weightMoments(w, -1, m);
      sq = m[0]!;
    } else for (const v of w) sq += v * v;
    const rmsW = Math.sqrt(sq / w.length);
    if (mixed.method === "kl") {
      const kl = measuredKl?.get(p.site.name);
      if (kl === undefined) throw new Error(`internal: no measured KL for ${p.site.name}`);
      const c = Math.max(kl, 1e-12) * 2 ** (2 * FORMAT_BITS[mixed.low]);
      return { name: p.site.name, params: w.length, rmsW, meanFisher: c / (w.length * rmsW * rmsW) };
    }
    const s = stats?.get(p.site.node.input[0] ?? "");
    if (!s && mixed.method === "fisher")
      throw new UserError(`mixed precision by Fisher sensitivity needs calibration data for ${p.site.name}: set evaluation.calibration`);
    return { name: p.site.name, params: w.length, rmsW, meanFisher: s ? fisherProxy(s.meanSquare) : 1 };
  });
  const blockSize = plans[0]?.spec.blockSize ?? 64;
  const symmetric = plans[0]?.spec.symmetric ?? false;
  const byBits = new Map<number, IntFormat>();
  const options: FormatOption[] = mixed.formats.map((f) => {
    byBits.set(FORMAT_BITS[f], f);
    return { bits: FORMAT_BITS[f], bpw: formatBpw(f, blockSize, symmetric) };
  });
  let assignment;
  if (mixed.q_ratio !== undefined) {
    const option = (f: IntFormat): FormatOption => {
      byBits.set(FORMAT_BITS[f], f);
      return { bits: FORMAT_BITS[f], bpw: formatBpw(f, blockSize, symmetric) };
    };
    assignment = quantizationRatioPlan(
      layers.map((l) => ({ name: l.name, params: l.params, sensitivity: layerSensitivity(l) })),
      mixed.q_ratio,
      option(mixed.low),
      option(mixed.high),
    ).plan;
  } else if (mixed.method === "uniform") {
    // The widest format whose bpw fits the target, everywhere (the baseline Fisher allocation must beat).
    const fitting = options.filter((o) => o.bpw <= mixed.target_bpw + 1e-9).sort((a, b) => b.bpw - a.bpw);
    const option = fitting[0] ?? [...options].sort((a, b) => a.bpw - b.bpw)[0]!;
    assignment = uniformPlan(layers, option);
  } else {
    assignment = allocateBits(layers, mixed.target_bpw, options);
  }
  const decisions: MixedDecision[] = [];
  const out = plans.map((p, i) => {
    const a = assignment[i]!;
    const format = byBits.get(a.bits)!;
    decisions.push({ name: p.site.name, format, sensitivity: layerSensitivity(layers[i]!), bpw: a.bpw });
    return {
      ...p,
      format,
      spec: specFor(format, p.spec.blockSize, p.spec.symmetric, p.algorithm),
      overrides: [...p.overrides, `mixed:${mixed.method}${mixed.q_ratio !== undefined ? ` q_ratio ${mixed.q_ratio}` : ""}`],
    };
  });
  return { plans: out, decisions };
}
