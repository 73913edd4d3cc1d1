// Quantization interleaved with calibration passes (src/calibrate/passes.ts): each pass's Gram matrices quantize the
// weights that read them, then are released before the next pass runs. Every weight is quantized by quantizeWeight
// with the same statistics as in a single pass, so the results are the same, in the plans' order.
import type { ActivationStats, CalibrationResult } from "../calibrate/index.js";
import type { GramItem } from "../calibrate/passes.js";
import { quantizeWeight, type QuantizeContext, type QuantizedWeight, type WeightPlan } from "./index.js";

export interface PassedQuantization {
  readonly weights: QuantizedWeight[];
  /** The statistics of the activations in `keep` (a tied embedding's LM head input, quantized at emit). */
  readonly kept: Map<string, ActivationStats>;
  /** Calibration passes run, and their time. */
  readonly passes: number;
  readonly calibrationMs: number;
}

/** The key of the pass item a plan reads: its product's activation, or a GPTQ Conv weight's own name. */
function itemKeyOf(plan: WeightPlan): string {
  return plan.site.kind === "product" ? (plan.site.node.input[0] ?? "") : plan.site.name;
}

/**
 * Runs `runPass` for each group in turn and quantizes the plans whose activation (or Conv weight) the group holds
 * with its Gram matrices over `ctx`'s statistics (a pass may stop once its Grams are full, so its channel statistics
 * are not used where `ctx` has them); plans in no group are quantized with `ctx` alone at the end.
 */
export async function quantizeInPasses(
  plans: readonly WeightPlan[],
  ctx: QuantizeContext,
  groups: readonly (readonly GramItem[])[],
  runPass: (group: readonly GramItem[], index: number) => Promise<CalibrationResult>,
  keep: ReadonlySet<string> = new Set(),
): Promise<PassedQuantization> {
  const out = new Array<QuantizedWeight | undefined>(plans.length);
  const kept = new Map<string, ActivationStats>();
  let calibrationMs = 0;
  for (const [index, group] of groups.entries()) {
    const keys = new Set(group.map((g) => g.key));
    let pass: CalibrationResult | undefined = await runPass(group, index);
    calibrationMs += pass.ms;
    const stats = new Map(ctx.stats ?? []);
    for (const [name, s] of pass.stats) {
      const base = stats.get(name);
      stats.set(name, base && s.gram ? { ...base, gram: s.gram, gramRows: s.gramRows } : s);
    }
    const convStats = new Map([...(ctx.convStats ?? []), ...(pass.convStats ?? [])]);
    for (const name of keep) if (pass.stats.has(name)) kept.set(name, stats.get(name)!);
    pass = undefined;
    const passCtx: QuantizeContext = { ...ctx, stats, convStats };
    plans.forEach((plan, i) => {
      if (out[i] === undefined && keys.has(itemKeyOf(plan))) out[i] = quantizeWeight(plan, passCtx);
    });
  }
  const weights = plans.map((plan, i) => out[i] ?? quantizeWeight(plan, ctx));
  return { weights, kept, passes: groups.length, calibrationMs };
}
