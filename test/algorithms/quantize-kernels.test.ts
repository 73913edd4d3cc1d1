// The quantize stage with the compiled kernels installed against the same stage on the TypeScript
// references alone: identical codes, scales, zero points, AWQ scales and error figures for every
// algorithm (RTN, importance-weighted MSE, AWQ, GPTQ), on a weight whose sizes fit no tile evenly.
import { afterAll, describe, expect, it } from "vitest";
import { setActiveKernels } from "../../src/kernels/active.js";
import { recipeSchema } from "../../src/config/schema.js";
import { planWeights, quantizeWeight, type QuantizeContext } from "../../src/quantize/index.js";
import { quantizeBlockwiseRef } from "../../src/quantize/blockwise.js";
import type { WeightSite } from "../../src/onnx/weights.js";
import { realBackends } from "../kernels/helpers.js";
import { activations, heavyTailWeights, statsOf } from "./synthetic.js";

const backends = await realBackends();
afterAll(() => setActiveKernels(undefined));

const K = 136,
  N = 70;
const values = heavyTailWeights(K, N, 9); // [K][N] as a MatMul's B
const x = activations(96, K, 4);
const s = statsOf(x, 96, K);
const stats = new Map([["x", { rows: 96, meanAbs: s.meanAbs, meanSquare: s.meanSquare, gram: s.gram, gramRows: 96 }]]);
const site = {
  name: "w",
  node: { input: ["x"], output: ["y"] },
  nodeIndex: 0,
  nodeName: "mm",
  opType: "MatMul",
  opKind: "matmul",
  kind: "product",
  inputIndex: 1,
  k: K,
  n: N,
  transposed: false,
  alpha: 1,
  values,
  dims: [K, N],
  origin: "initializer",
  chainNodes: [],
  readers: [],
  graphPath: [],
} as unknown as WeightSite;

describe.each(backends.map((b) => [b.backend, b] as const))("quantize stage on %s kernels", (_name, kernels) => {
  it.each(["rtn", "mse", "awq", "gptq"] as const)("%s: same weight and error figures as the TypeScript references", (algorithm) => {
    const recipe = recipeSchema.parse({ format: "int4", block_size: 32, symmetric: false, algorithm });
    const [plan] = planWeights([site], recipe);
    const refCtx: QuantizeContext = { quantize: (w, n, k, spec) => quantizeBlockwiseRef(w, n, k, spec), stats, recipe, threads: 1 };
    setActiveKernels(undefined);
    const ref = quantizeWeight(plan!, refCtx);
    setActiveKernels(kernels.raw);
    let got;
    try {
      got = quantizeWeight(plan!, { ...refCtx, quantize: (w, n, k, spec, t) => kernels.quantizeBlockwise(w, n, k, spec, t), threads: 2 });
    } finally {
      setActiveKernels(undefined);
    }
    expect(got.q).toEqual(ref.q);
    expect(got.inputScales).toEqual(ref.inputScales);
    expect(got.error).toEqual(ref.error);
    expect(got.entropy).toEqual(ref.entropy);
    expect(got.notes).toEqual(ref.notes);
  });
});
