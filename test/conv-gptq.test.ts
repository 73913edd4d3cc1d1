// GPTQ on Conv through the im2col view (issue 10, item 6): the patch statistics match what ONNX Runtime's
// Conv computes (pads, strides, dilations, groups, 1-D and 2-D), and GPTQ with them lowers the Conv's
// output error below round-to-nearest on the calibration distribution.
import ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { calibrate, convPatchSpecOf } from "../src/calibrate/index.js";
import { parseConfig } from "../src/config/load.js";
import { emitModel } from "../src/emit/index.js";
import { DataType, makeAttribute, makeNode, makeTensor, makeValueInfo, serializeModel, type ModelProto } from "../src/onnx/model.js";
import { findWeights } from "../src/onnx/weights.js";
import { quantizeBlockwiseRef, type BlockwiseSpec } from "../src/quantize/blockwise.js";
import { planWeights, quantizeWeights } from "../src/quantize/index.js";
import type { Ort } from "../src/runtime/ort.js";
import { model, randomMatrix } from "./helpers/models.js";

interface Case {
  name: string;
  cin: number;
  cout: number;
  kernel: number[];
  spatial: number[];
  attrs: ReturnType<typeof makeAttribute>[];
  groups: number;
}

const cases: Case[] = [
  { name: "2-D, pads 1", cin: 6, cout: 8, kernel: [3, 3], spatial: [7, 6], attrs: [makeAttribute("pads", [1, 1, 1, 1])], groups: 1 },
  {
    name: "2-D, stride 2, dilation 2, asymmetric pads, 2 groups",
    cin: 6,
    cout: 8,
    kernel: [3, 2],
    spatial: [9, 8],
    attrs: [makeAttribute("pads", [1, 0, 2, 1]), makeAttribute("strides", [2, 1]), makeAttribute("dilations", [2, 2]), makeAttribute("group", 2)],
    groups: 2,
  },
  {
    name: "2-D depthwise, SAME_UPPER",
    cin: 5,
    cout: 5,
    kernel: [3, 3],
    spatial: [6, 6],
    attrs: [makeAttribute("auto_pad", "SAME_UPPER"), makeAttribute("group", 5)],
    groups: 5,
  },
  {
    name: "1-D, pads 2, stride 3",
    cin: 4,
    cout: 6,
    kernel: [5],
    spatial: [17],
    attrs: [makeAttribute("pads", [2, 2]), makeAttribute("strides", [3])],
    groups: 1,
  },
];

function convModel(c: Case, w: Float32Array): ModelProto {
  return model(
    [makeNode("Relu", ["x"], ["a"], [], { name: "pre" }), makeNode("Conv", ["a", "w"], ["y"], c.attrs, { name: "conv" })],
    [makeTensor("w", DataType.FLOAT, [c.cout, c.cin / c.groups, ...c.kernel], w)],
    [makeValueInfo("x", DataType.FLOAT, [2, c.cin, ...c.spatial])],
    [makeValueInfo("y", DataType.FLOAT)],
  );
}

const inputs = (c: Case, seed: number) => {
  const n = 2 * c.cin * c.spatial.reduce((a, b) => a * b, 1);
  // Correlated channels (a shared component), as real feature maps are: where GPTQ has something to use.
  const base = randomMatrix(1, n, seed);
  const noise = randomMatrix(1, n, seed + 1, 0.3);
  const x = Float32Array.from(base, (v, i) => v + noise[i]!);
  for (let i = 0; i < n; i++) x[i] = x[i]! + base[(i + 7) % n]!;
  return { type: "float32" as const, dims: [2, c.cin, ...c.spatial], data: x };
};

/** Feature maps that are mixtures of three latent maps plus a little noise: strongly correlated channels. */
const mixed = (c: Case, seed: number) => {
  const plane = c.spatial.reduce((a, b) => a * b, 1);
  const latents = [0, 1, 2].map((j) => randomMatrix(2, plane, seed + j));
  const mix = randomMatrix(c.cin, 3, 99); // the same channel mixture in calibration and test data
  const noise = randomMatrix(1, 2 * c.cin * plane, seed + 9, 0.05);
  const x = new Float32Array(2 * c.cin * plane);
  for (let n = 0; n < 2; n++)
    for (let ch = 0; ch < c.cin; ch++)
      for (let p = 0; p < plane; p++) {
        const i = (n * c.cin + ch) * plane + p;
        x[i] = latents.reduce((a, l, j) => a + mix[ch * 3 + j]! * l[n * plane + p]!, 0) + noise[i]!;
      }
  return { type: "float32" as const, dims: [2, c.cin, ...c.spatial], data: x };
};

async function run(m: ModelProto, x: ReturnType<typeof inputs>): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(serializeModel(m), { intraOpNumThreads: 1 });
  const y = (await s.run({ x: new ort.Tensor("float32", x.data, x.dims) })).y!;
  await s.release();
  return y.data as Float32Array;
}

describe("im2col statistics of a Conv input", () => {
  for (const c of cases) {
    it(`${c.name}: w^T E[p p^T] w equals ONNX Runtime's mean squared Conv output, per output channel`, async () => {
      const k = (c.cin / c.groups) * c.kernel.reduce((a, b) => a * b, 1);
      const w = randomMatrix(c.cout, k, 3, 0.3);
      const m = convModel(c, w);
      const x = inputs(c, 5);
      const y = await run(m, x);
      const spec = convPatchSpecOf(m.graph!.node[1]!, [c.cout, c.cin / c.groups, ...c.kernel]);
      const res = await calibrate(ort as unknown as Ort, m, [], [{ x }], 1, { names: new Set(), maxRows: 100000 }, new Map(), [
        { key: "w", activation: "a", spec },
      ]);
      const groups = res.convStats!.get("w")!;
      expect(groups).toHaveLength(c.groups);
      const positions = y.length / (2 * c.cout);
      for (let o = 0; o < c.cout; o++) {
        const g = groups[Math.floor(o / (c.cout / c.groups))]!;
        expect(g.rows).toBe(2 * positions);
        let quad = 0;
        for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) quad += w[o * k + i]! * g.gram![i * k + j]! * w[o * k + j]!;
        let meanSq = 0;
        for (let n = 0; n < 2; n++) for (let p = 0; p < positions; p++) meanSq += y[(n * c.cout + o) * positions + p]! ** 2;
        meanSq /= 2 * positions;
        expect(quad).toBeCloseTo(meanSq, 3);
      }
    });
  }
});

describe("GPTQ on Conv", () => {
  it("lowers the Conv's output error below round-to-nearest at int3, and the emitted model runs", async () => {
    const c: Case = { name: "", cin: 16, cout: 24, kernel: [3, 3], spatial: [8, 8], attrs: [makeAttribute("pads", [1, 1, 1, 1])], groups: 1 };
    const w = randomMatrix(c.cout, 144, 11, 0.2);
    const m = convModel(c, w);
    const calib = [mixed(c, 21), mixed(c, 31), mixed(c, 41)];
    const test = mixed(c, 51);
    const yFloat = await run(m, test);
    const outErr = async (algorithm: string) => {
      const r = parseConfig(
        `model: m.onnx\nevaluation:\n  task: classification\n  dataset: d.jsonl\nrecipe:\n  format: int3\n  block_size: 16\n  algorithm: ${algorithm}\n  min_elements: 16\n`,
        "q.yml",
      ).recipe;
      const d = findWeights(m.graph!, r);
      const plans = planWeights(d.weights, r);
      const spec = convPatchSpecOf(m.graph!.node[1]!, d.weights[0]!.dims);
      const res = await calibrate(
        ort as unknown as Ort,
        m,
        [],
        calib.map((x) => ({ x })),
        1,
        { names: new Set(), maxRows: 4096 },
        new Map(),
        [{ key: "w", activation: "a", spec }],
      );
      const q = quantizeWeights(plans, {
        quantize: (wT: Float32Array, n: number, k: number, s: BlockwiseSpec) => quantizeBlockwiseRef(wT, n, k, s),
        stats: res.stats,
        convStats: res.convStats,
        recipe: r,
        threads: 1,
      });
      const e = emitModel(m, q, new Map(), 0);
      const y = await run(e.proto, test);
      let num = 0;
      let den = 0;
      for (let i = 0; i < y.length; i++) {
        num += (y[i]! - yFloat[i]!) ** 2;
        den += yFloat[i]! ** 2;
      }
      return { err: Math.sqrt(num / den), notes: q[0]!.notes };
    };
    const rtn = await outErr("rtn");
    const gptq = await outErr("gptq");
    expect(gptq.notes[0]).toMatch(/gptq on the im2col view/);
    expect(gptq.err).toBeLessThan(rtn.err * 0.9);
  });
});
