import ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { calibrate } from "../src/calibrate/index.js";
import { parseConfig } from "../src/config/load.js";
import { emitModel, type ExecForm } from "../src/emit/index.js";
import { floatToHalf, halfToFloat, serializeModel } from "../src/onnx/model.js";
import { findWeights } from "../src/onnx/weights.js";
import { effectiveWeightNK, planWeights, quantizeWeights } from "../src/quantize/index.js";
import { quantizeBlockwiseRef, type BlockwiseSpec } from "../src/quantize/blockwise.js";
import { planMixedPrecision } from "../src/quantize/mixed-plan.js";
import { planQuantx } from "../src/quantize/quantx.js";
import type { Ort } from "../src/runtime/ort.js";
import { buildMlp, gaussian } from "./helpers/models.js";
import type { WeightFormat } from "../src/config/schema.js";

function recipeOf(yaml: string) {
  return parseConfig(`model: m.onnx\nevaluation:\n  task: classification\n  dataset: d.jsonl\nrecipe:\n${yaml}\n  min_elements: 64\n`, "quantgate.yml").recipe;
}

/** ReLU MLP forward in float64 with [n][k] weights per layer (fc2 has a bias). */
function forward(x: Float32Array, rows: number, w1: Float32Array, w2: Float32Array, bias: Float32Array, d: [number, number, number]): Float64Array {
  const [d0, d1, d2] = d;
  const out = new Float64Array(rows * d2);
  for (let r = 0; r < rows; r++) {
    const h = new Float64Array(d1);
    for (let j = 0; j < d1; j++) {
      let s = 0;
      for (let i = 0; i < d0; i++) s += x[r * d0 + i]! * w1[j * d0 + i]!;
      h[j] = Math.max(0, s);
    }
    for (let c = 0; c < d2; c++) {
      let s = bias[c]!;
      for (let j = 0; j < d1; j++) s += h[j]! * w2[c * d1 + j]!;
      out[r * d2 + c] = s;
    }
  }
  return out;
}

const dims: [number, number, number] = [64, 128, 16];
const mlp = buildMlp(...dims, 21);
// GPTQ needs many more calibration rows than input channels, or it fits the calibration subspace only.
const CALIB_ROWS = 1024;
const g = gaussian(4);
// Activations with a few strong channels, as real models have (what AWQ and GPTQ exploit).
const calibX = Float32Array.from({ length: CALIB_ROWS * dims[0] }, (_, i) => g() * (i % dims[0] < 4 ? 8 : 1));
const evalX = Float32Array.from({ length: 8 * dims[0] }, (_, i) => g() * (i % dims[0] < 4 ? 8 : 1));
const bias = (() => {
  const t = mlp.proto.graph!.initializer.find((x) => x.name === "fc2.bias")!;
  return new Float32Array(t.rawData.buffer.slice(t.rawData.byteOffset, t.rawData.byteOffset + t.rawData.byteLength));
})();

async function run(recipeYaml: string, forms: Partial<Record<WeightFormat, ExecForm>> = {}) {
  const recipe = recipeOf(recipeYaml);
  const sites = findWeights(mlp.proto.graph!, recipe).weights;
  const cal = await calibrate(ort as unknown as Ort, mlp.proto, ["x", "h_relu"], [{ x: { type: "float32", dims: [CALIB_ROWS, dims[0]], data: calibX } }], 1, {
    names: new Set(["x", "h_relu"]),
    maxRows: 4096,
  });
  const ctx = {
    quantize: (wT: Float32Array, n: number, k: number, spec: BlockwiseSpec) => quantizeBlockwiseRef(wT, n, k, spec),
    stats: cal.stats,
    recipe,
    threads: 1,
  };
  let plans = planWeights(sites, recipe);
  if (recipe.mixed) plans = planMixedPrecision(plans, cal.stats, recipe.mixed).plans;
  if (recipe.quantx) plans = planQuantx(plans, ctx, recipe.quantx).plans;
  const weights = quantizeWeights(plans, ctx);
  const emitted = emitModel(mlp.proto, weights, new Map(Object.entries(forms)) as Map<WeightFormat, ExecForm>, 0);
  const session = await ort.InferenceSession.create(serializeModel(emitted.proto), { intraOpNumThreads: 1 });
  const y = (await session.run({ x: new ort.Tensor("float32", evalX, [8, dims[0]]) })).logits!.data as Float32Array;
  await session.release();
  const ref = forward(evalX, 8, effectiveWeightNK(weights[0]!), effectiveWeightNK(weights[1]!), bias, dims);
  const float = forward(
    evalX,
    8,
    Float32Array.from({ length: dims[1] * dims[0] }, (_, i) => mlp.w1[(i % dims[0]) * dims[1] + Math.floor(i / dims[0])]!),
    mlp.w2,
    bias,
    dims,
  );
  let maxDiff = 0;
  let outErr = 0;
  for (let i = 0; i < y.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(y[i]! - ref[i]!));
    outErr += (ref[i]! - float[i]!) ** 2;
  }
  return { weights, emitted, maxDiff, outErr };
}

describe("recipes end to end on a small MLP: ONNX Runtime computes exactly the weights the recipe reports", () => {
  const recipes: Record<string, string> = {
    "int4 rtn": "  format: int4\n  block_size: 32",
    "int3 gptq": "  format: int3\n  block_size: 32\n  algorithm: gptq",
    "int3 awq": "  format: int3\n  block_size: 32\n  algorithm: awq",
    "int3 mse + rank-8 low-rank branch": "  format: int3\n  block_size: 32\n  algorithm: mse\n  lowrank:\n    rank: 8",
    "int4 refined scales": "  format: int4\n  block_size: 32\n  lowrank:\n    refine_scales: true",
    nf4: "  preset: nf4",
    mxfp4: "  preset: mxfp4",
    fp8: "  format: fp8\n  block_size: 64",
    "codebook lloyd-max": "  format: codebook\n  block_size: 32\n  codebook:\n    levels: 8",
    "codebook student-t": "  format: codebook\n  block_size: 32\n  codebook:\n    levels: 16\n    method: student-t",
    "mixed fisher 3.6 bpw": "  format: int4\n  block_size: 32\n  mixed:\n    target_bpw: 3.6",
    "quantx 3.6 bpw": "  preset: int3-quantx\n  block_size: 32",
  };
  for (const [name, yaml] of Object.entries(recipes)) {
    it(name, async () => {
      const r = await run(yaml);
      // float32 accumulation order differs from the float64 reference: a few ulps of the output magnitude.
      expect(r.maxDiff).toBeLessThan(2e-4);
      for (const w of r.weights) {
        expect(w.entropy.entropyBits).toBeLessThanOrEqual(w.entropy.codeBits + 1e-9);
        expect(w.entropy.huffmanBits).toBeGreaterThanOrEqual(w.entropy.entropyBits - 1e-9);
      }
    });
  }

  it("GPTQ and AWQ lower the output error of int3 below round-to-nearest, and the low-rank branch lowers it further", async () => {
    const rtn = await run("  format: int3\n  block_size: 32");
    const gptq = await run("  format: int3\n  block_size: 32\n  algorithm: gptq");
    const awq = await run("  format: int3\n  block_size: 32\n  algorithm: awq");
    const lowrank = await run("  format: int3\n  block_size: 32\n  lowrank:\n    rank: 8");
    expect(gptq.outErr).toBeLessThan(rtn.outErr);
    expect(awq.outErr).toBeLessThan(rtn.outErr);
    expect(lowrank.outErr).toBeLessThan(rtn.outErr);
  });

  it("mixed precision meets its bits-per-weight target", async () => {
    const r = await run("  format: int4\n  block_size: 32\n  mixed:\n    target_bpw: 3.6");
    const params = r.weights.reduce((a, w) => a + w.q.n * w.q.k, 0);
    const packed = r.emitted.layers.reduce((a, l) => a + l.packedBytes * 8, 0);
    expect(packed / params).toBeLessThanOrEqual(3.6 + 1e-9);
    expect(new Set(r.weights.map((w) => w.plan.format)).size).toBeGreaterThanOrEqual(1);
  });

  it("stores float16 exactly and rounds to nearest even", () => {
    for (const v of [0, 1, -2, 0.5, 65504, 6.103515625e-5, 5.960464477539063e-8]) expect(halfToFloat(floatToHalf(v))).toBe(v);
    expect(halfToFloat(floatToHalf(1 + 2 ** -11))).toBe(1); // tie -> even
    expect(halfToFloat(floatToHalf(1 + 3 * 2 ** -11))).toBe(1 + 2 ** -9);
    expect(halfToFloat(floatToHalf(1e6))).toBe(Infinity);
  });
});
