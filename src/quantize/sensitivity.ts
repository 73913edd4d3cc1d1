// Measured layer sensitivity: quantize one layer at a time, run the model on calibration batches and
// measure the KL divergence of its output distribution from the float model's. Slower than the
// activation-statistics proxy, but it sees what the proxy cannot: how much each layer's error is
// amplified downstream (the output-gradient half of the Fisher information).
import type { Feeds } from "../data/tensors.js";
import { toOrtFeeds } from "../data/tensors.js";
import { emitModel } from "../emit/index.js";
import { klDivergence, logSoftmax } from "../evaluate/metrics.js";
import { serializeModel, type ModelProto } from "../onnx/model.js";
import { createSession, type Ort, type Session } from "../runtime/ort.js";
import { quantizeWeight, type QuantizeContext, type WeightPlan } from "./index.js";

/** Mean KL over every row of the last axis of the first output (logits or scores). */
async function meanKl(ort: Ort, reference: Session, candidate: Session, batches: readonly Feeds[]): Promise<number> {
  let sum = 0;
  let count = 0;
  for (const batch of batches) {
    const feeds = toOrtFeeds(ort, batch);
    const name = reference.outputNames[0]!;
    const a = (await reference.run(feeds))[name]!;
    const b = (await candidate.run(feeds))[name]!;
    const size = a.dims[a.dims.length - 1]!;
    const pa = new Float64Array(size);
    const pb = new Float64Array(size);
    const da = a.data as Float32Array;
    const db = b.data as Float32Array;
    for (let off = 0; off < da.length; off += size) {
      logSoftmax(da, off, size, pa);
      logSoftmax(db, off, size, pb);
      sum += klDivergence(pa, pb);
      count++;
    }
  }
  return count > 0 ? sum / count : 0;
}

/** KL of the model with only `plan`'s layer quantized (in the plan's format), per layer. */
export async function measureLayerKl(
  ort: Ort,
  model: ModelProto,
  plans: readonly WeightPlan[],
  ctx: QuantizeContext,
  batches: readonly Feeds[],
  threads: number,
): Promise<Map<string, number>> {
  const reference = await createSession(ort, serializeModel(model), threads);
  const out = new Map<string, number>();
  try {
    for (const plan of plans) {
      const q = quantizeWeight(plan, { ...ctx, recipe: { ...ctx.recipe, lowrank: { rank: 0, refine_scales: false } } });
      // Single-layer models use the subgraph forms: same values, no need to time forms per layer.
      const emitted = emitModel(model, [q], new Map(), 0);
      const session = await createSession(ort, serializeModel(emitted.proto), threads);
      try {
        out.set(plan.site.name, await meanKl(ort, reference, session, batches));
      } finally {
        await session.release();
      }
    }
  } finally {
    await reference.release();
  }
  return out;
}
