// The accuracy-level comparison builds the model at level 0 and level 4: the forms timed for the first
// level are kept at the second where the packed operator was chosen, so the two builds differ by the level alone.
import ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { recipeSchema } from "../src/config/schema.js";
import type { ExecForm } from "../src/emit/index.js";
import { resolveForms, type FormChoice } from "../src/emit/select.js";
import { loadModel } from "../src/onnx/model.js";
import type { Ort } from "../src/runtime/ort.js";
import { findWeights } from "../src/onnx/weights.js";
import { quantizeBlockwiseRef } from "../src/quantize/blockwise.js";
import { planWeights, quantizeWeights } from "../src/quantize/index.js";

async function int4Weights() {
  const r = recipeSchema.parse({ format: "int4", block_size: 32 });
  const model = await loadModel("examples/tiny-lm/model.onnx");
  const plans = planWeights(findWeights(model.graph, r).weights, r);
  return quantizeWeights(plans, { quantize: (wT, n, k, spec) => quantizeBlockwiseRef(wT, n, k, spec), stats: undefined, recipe: r, threads: 1 });
}

/** Evidence as a loaded runner could give it: int4 timed at level 0, `chosen` there. */
const level0Choice = (chosen: ExecForm): FormChoice => ({
  format: "int4",
  layer: "x",
  k: 64,
  n: 64,
  floatP50Ms: 0.01,
  candidates: [{ form: chosen, p50Ms: 0.01 }],
  chosen,
  slowerThanFloat: false,
  timedAtLevel: 0,
});

describe("forms across accuracy levels", () => {
  it("keeps a packed form chosen at the first level without re-timing it, and says at which level it was timed", async () => {
    const weights = await int4Weights();
    const earlier = [level0Choice("matmulnbits")];
    const r = await resolveForms(ort as unknown as Ort, weights, 4, 1, undefined, earlier);
    expect(r.formMap.get("int4")).toBe("matmulnbits");
    expect(r.choices).toEqual(earlier);
    expect(r.pinned).toEqual([]);
  });

  it("times a format again when the earlier level left the packed form", async () => {
    const weights = await int4Weights();
    const earlier = [level0Choice("dequant-subgraph")];
    const r = await resolveForms(ort as unknown as Ort, weights, 4, 1, undefined, earlier);
    expect(r.choices).toHaveLength(1);
    expect(r.choices[0]!.timedAtLevel).toBe(4);
    expect(r.choices[0]!.candidates.map((c) => c.form).sort()).toEqual(["dequant-subgraph", "matmulnbits"]);
  });
});
