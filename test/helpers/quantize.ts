// Quantize a model in-process with QuantGate's own stages (find weights, plan, quantize, emit), without the gate.
import { recipeSchema } from "../../src/config/schema.js";
import { emitModel, type ExecForm } from "../../src/emit/index.js";
import { loadModel, serializeModel } from "../../src/onnx/model.js";
import { findWeights } from "../../src/onnx/weights.js";
import { quantizeBlockwiseRef } from "../../src/quantize/blockwise.js";
import { planWeights, quantizeWeights } from "../../src/quantize/index.js";
import type { WeightFormat } from "../../src/config/schema.js";

/** The quantized model's bytes and how many weights were quantized; `recipe` is a quantgate.yml recipe section. */
export async function quantizeModel(modelPath: string, recipe: Record<string, unknown>): Promise<{ bytes: Uint8Array; quantized: number }> {
  const r = recipeSchema.parse(recipe);
  const model = await loadModel(modelPath);
  const plans = planWeights(findWeights(model.graph, r).weights, r);
  const weights = quantizeWeights(plans, { quantize: (wT, n, k, spec) => quantizeBlockwiseRef(wT, n, k, spec), stats: undefined, recipe: r, threads: 1 });
  // The dequantizing subgraph is exact for every int format: no timing needed to pick it.
  const forms = new Map<WeightFormat, ExecForm>(weights.map((w) => [w.plan.format, "dequant-subgraph"]));
  return { bytes: serializeModel(emitModel(model.proto, weights, forms, 0).proto), quantized: weights.length };
}
