// Calibration wherever quantization works (issue 10, item 6): activations inside If and Loop bodies are
// captured without naming subgraph tensors as main-graph outputs; GPTQ/AWQ never fall back silently;
// a preset and an explicit setting that disagree say which wins.
import path from "node:path";
import { create } from "@bufbuild/protobuf";
import ort from "onnxruntime-node";
import { AttributeProto_AttributeType, AttributeProtoSchema, GraphProtoSchema, type GraphProto } from "onnx-buf";
import { describe, expect, it } from "vitest";
import { calibrate } from "../src/calibrate/index.js";
import { parseConfig } from "../src/config/load.js";
import { DataType, makeAttribute, makeNode, makeTensor, makeValueInfo, type ModelProto } from "../src/onnx/model.js";
import { findWeights } from "../src/onnx/weights.js";
import { quantizeBlockwiseRef, type BlockwiseSpec } from "../src/quantize/blockwise.js";
import { planWeights, quantizeWeights } from "../src/quantize/index.js";
import type { Ort } from "../src/runtime/ort.js";
import { model, randomMatrix } from "./helpers/models.js";

const graphAttr = (name: string, g: GraphProto) => create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.GRAPH, g });

const D = 24;
const H = 32;

/** If (sum(x) > 0): then Relu(x) -> Gemm(W_then) ; else Neg(x) -> Relu -> Gemm(W_else). The Gemm inputs live in the branches. */
function ifModel(): ModelProto {
  const branch = (name: string, pre: string[], w: string) =>
    create(GraphProtoSchema, {
      name,
      node: [
        ...pre.map((op, i) => makeNode(op, [i === 0 ? "x" : `${name}_p${i - 1}`], [`${name}_p${i}`], [], { name: `${name}_${op}` })),
        makeNode("Gemm", [`${name}_p${pre.length - 1}`, w], [`${name}_out`], [makeAttribute("transB", 1)], { name: `${name}_Gemm` }),
      ],
      initializer: [makeTensor(w, DataType.FLOAT, [H, D], randomMatrix(H, D, w.length, 0.2))],
      output: [makeValueInfo(`${name}_out`, DataType.FLOAT)],
    });
  return model(
    [
      makeNode("ReduceSum", ["x"], ["total"], [makeAttribute("keepdims", 0)], { name: "sum" }),
      makeNode("Greater", ["total", "zero"], ["cond"], [], { name: "gt" }),
      makeNode(
        "If",
        ["cond"],
        ["y"],
        [graphAttr("then_branch", branch("then", ["Relu"], "w_then")), graphAttr("else_branch", branch("else", ["Neg", "Relu"], "w_else_long"))],
        {
          name: "branch",
        },
      ),
    ],
    [makeTensor("zero", DataType.FLOAT, [], Float32Array.of(0))],
    [makeValueInfo("x", DataType.FLOAT, [4, D])],
    [makeValueInfo("y", DataType.FLOAT, [4, H])],
    13,
  );
}

function recipe(body: string) {
  return parseConfig(`model: m.onnx\nevaluation:\n  task: classification\n  dataset: d.jsonl\nrecipe:\n${body}\n`, "quantgate.yml").recipe;
}

describe("calibration inside control flow", () => {
  it("captures the activations of Gemms inside both If branches, each from the batches that took it", async () => {
    const m = ifModel();
    const r = recipe("  format: int4\n  algorithm: gptq\n  block_size: 16\n  min_elements: 16");
    const d = findWeights(m.graph!, r);
    expect(d.weights.map((w) => [w.name, w.graphLabel])).toEqual([
      ["w_then", 'If "branch" then_branch'],
      ["w_else_long", 'If "branch" else_branch'],
    ]);
    const names = d.weights.map((w) => w.node.input[0]!);
    expect(names).toEqual(["then_p0", "else_p1"]);
    // Three batches take the then branch (positive sum), two the else branch.
    const batch = (sign: number, seed: number) => {
      const x = randomMatrix(4, D, seed);
      for (let i = 0; i < x.length; i++) x[i] = Math.abs(x[i]!) * sign;
      return { x: { type: "float32" as const, dims: [4, D], data: x } };
    };
    const batches = [batch(1, 1), batch(-1, 2), batch(1, 3), batch(-1, 4), batch(1, 5)];
    const res = await calibrate(ort as unknown as Ort, m, names, batches, 1, { names: new Set(names), maxRows: 1000 });
    const then = res.stats.get("then_p0")!;
    const els = res.stats.get("else_p1")!;
    expect(then.rows).toBe(12);
    expect(els.rows).toBe(8);
    // then branch: Relu of positive x is x; the mean |x| over its three batches
    const expectMean = (seeds: number[], j: number) =>
      seeds.reduce((a, s) => a + Array.from({ length: 4 }, (_, r) => Math.abs(randomMatrix(4, D, s)[r * D + j]!)).reduce((x, y) => x + y, 0), 0) /
      (seeds.length * 4);
    expect(then.meanAbs[5]).toBeCloseTo(expectMean([1, 3, 5], 5), 5);
    expect(els.meanAbs[5]).toBeCloseTo(expectMean([2, 4], 5), 5);
    expect(then.gram).toBeDefined();
    // and GPTQ runs on those statistics
    const q = quantizeWeights(planWeights(d.weights, r), {
      quantize: (w: Float32Array, n: number, k: number, spec: BlockwiseSpec) => quantizeBlockwiseRef(w, n, k, spec),
      stats: res.stats,
      recipe: r,
      threads: 1,
    });
    expect(q.map((w) => w.plan.algorithm)).toEqual(["gptq", "gptq"]);
    expect(q[0]!.notes[0]).toMatch(/gptq .*Hessian from 12 rows/);
  });

  it("captures an activation inside a Loop body, stacked over the iterations", async () => {
    const body = create(GraphProtoSchema, {
      name: "body",
      node: [
        makeNode("Identity", ["cond_in"], ["cond_out"], [], { name: "keep" }),
        makeNode("Relu", ["state_in"], ["act"], [], { name: "relu" }),
        makeNode("MatMul", ["act", "w_loop"], ["state_out"], [], { name: "mm" }),
      ],
      initializer: [makeTensor("w_loop", DataType.FLOAT, [D, D], randomMatrix(D, D, 9, 0.2))],
      input: [makeValueInfo("i", DataType.INT64, []), makeValueInfo("cond_in", DataType.BOOL, []), makeValueInfo("state_in", DataType.FLOAT)],
      output: [makeValueInfo("cond_out", DataType.BOOL, []), makeValueInfo("state_out", DataType.FLOAT)],
    });
    const m = model(
      [makeNode("Loop", ["trips", "", "x"], ["y"], [graphAttr("body", body)], { name: "loop" })],
      [makeTensor("trips", DataType.INT64, [], BigInt64Array.of(3n))],
      [makeValueInfo("x", DataType.FLOAT, [2, D])],
      [makeValueInfo("y", DataType.FLOAT, [2, D])],
      13,
    );
    const res = await calibrate(ort as unknown as Ort, m, ["act"], [{ x: { type: "float32", dims: [2, D], data: randomMatrix(2, D, 3) } }], 1);
    expect(res.stats.get("act")!.rows).toBe(6);
  });
});

describe("no silent algorithm substitution", () => {
  it("awq on a Conv weight and gptq on an LSTM weight stop with an error naming each weight", () => {
    const m = model(
      [
        makeNode("Conv", ["x", "conv.weight"], ["y"], [], { name: "conv1" }),
        makeNode("MatMul", ["x2", "fc.weight"], ["z"], [], { name: "fc" }),
        makeNode("LSTM", ["s", "lstm.W", "lstm.R"], ["h"], [makeAttribute("hidden_size", 16)], { name: "lstm" }),
      ],
      [
        makeTensor("conv.weight", DataType.FLOAT, [16, 8, 3, 3], randomMatrix(16, 72, 1)),
        makeTensor("fc.weight", DataType.FLOAT, [64, 16], randomMatrix(64, 16, 2)),
        makeTensor("lstm.W", DataType.FLOAT, [1, 64, 8], randomMatrix(64, 8, 3)),
        makeTensor("lstm.R", DataType.FLOAT, [1, 64, 16], randomMatrix(64, 16, 4)),
      ],
      [makeValueInfo("x", DataType.FLOAT, [1, 8, 5, 5]), makeValueInfo("x2", DataType.FLOAT, [1, 64]), makeValueInfo("s", DataType.FLOAT, [3, 1, 8])],
      [makeValueInfo("y", DataType.FLOAT), makeValueInfo("z", DataType.FLOAT), makeValueInfo("h", DataType.FLOAT)],
    );
    const awq = recipe("  format: int4\n  algorithm: awq\n  min_elements: 16\n  overrides:\n    - { match: 'lstm.*', algorithm: mse }");
    expect(() => planWeights(findWeights(m.graph!, awq).weights, awq)).toThrow(
      /Conv weight "conv.weight" \(node "conv1"\): awq needs the K inputs of a matrix product/,
    );
    const gptq = recipe("  format: int4\n  algorithm: gptq\n  min_elements: 16");
    expect(() => planWeights(findWeights(m.graph!, gptq).weights, gptq)).toThrow(
      /2 weight\(s\)[\s\S]*LSTM weight "lstm.W" \(node "lstm"\): gptq needs[\s\S]*LSTM weight "lstm.R"/,
    );
    // an override gives the LSTM an algorithm that runs on it; the Conv (im2col view) and the MatMul keep gptq
    const ok = recipe('  format: int4\n  algorithm: gptq\n  min_elements: 16\n  overrides:\n    - { match: "lstm.*", algorithm: mse }');
    expect(planWeights(findWeights(m.graph!, ok).weights, ok).map((p) => [p.site.name, p.algorithm])).toEqual([
      ["conv.weight", "gptq"],
      ["fc.weight", "gptq"],
      ["lstm.W", "mse"],
      ["lstm.R", "mse"],
    ]);
  });

  it("awq on a table format named by an override stops too", () => {
    const m = model(
      [makeNode("MatMul", ["x", "w"], ["y"], [], { name: "fc" })],
      [makeTensor("w", DataType.FLOAT, [64, 16], randomMatrix(64, 16, 2))],
      [makeValueInfo("x", DataType.FLOAT, [1, 64])],
      [makeValueInfo("y", DataType.FLOAT)],
    );
    const r = recipe('  format: int4\n  algorithm: awq\n  min_elements: 16\n  overrides:\n    - { match: "w", format: nf4 }');
    expect(() => planWeights(findWeights(m.graph!, r).weights, r)).toThrow(/MatMul weight "w" \(node "fc"\): awq works on the int formats, not nf4/);
  });
});

describe("preset versus explicit settings", () => {
  it("a preset from the input and the config's algorithm: the config wins, and the run says so", () => {
    const c = parseConfig("model: m.onnx\nevaluation:\n  task: classification\n  dataset: d.jsonl\nrecipe:\n  algorithm: rtn\n", "quantgate.yml", {
      "recipe.preset": "int4-gptq",
    });
    expect(c.recipe.algorithm).toBe("rtn");
    expect(c.recipe.block_size).toBe(128);
    expect(c.notices).toEqual([expect.stringMatching(/recipe\.algorithm: the config's "rtn" wins over preset int4-gptq \(input\)'s "gptq"/)]);
  });

  it("no notice when they agree", () => {
    const c = parseConfig("model: m.onnx\nevaluation:\n  task: classification\n  dataset: d.jsonl\nrecipe:\n  preset: int4-gptq\n  algorithm: gptq\n", "q.yml");
    expect(c.notices).toEqual([]);
  });
});

describe("calibration of a model that computes in float16", () => {
  it("captures float16 activations (declared as float16 outputs) as float statistics", async () => {
    const { loadModel, floatToHalf } = await import("../src/onnx/model.js");
    const m = await loadModel(path.join(import.meta.dirname, "corpus", "fp16_compute_opset17.onnx"));
    const r = recipe("  format: int4\n  algorithm: gptq\n  min_elements: 1024\n  overrides:\n    - { match: '*c*.weight', algorithm: mse }");
    const d = findWeights(m.graph, r);
    const products = d.weights.filter((w) => w.kind === "product");
    expect(products.map((w) => w.consumerType)).toEqual([DataType.FLOAT16]);
    const names = products.map((w) => w.node.input[0]!);
    const image = Uint16Array.from(randomMatrix(1, 4 * 64, 3), floatToHalf);
    const feeds = [{ image: { type: "float16", dims: [1, 4, 8, 8], data: image } }] as unknown as Parameters<typeof calibrate>[3];
    const res = await calibrate(
      ort as unknown as Ort,
      m.proto,
      names,
      feeds,
      1,
      { names: new Set(names), maxRows: 100 },
      new Map(products.map((w) => [w.node.input[0]!, w.consumerType])),
    );
    const s = res.stats.get(names[0]!)!;
    expect(s.rows).toBe(1);
    expect(s.meanAbs.length).toBe(32);
    expect(s.gram).toBeDefined();
  });
});
