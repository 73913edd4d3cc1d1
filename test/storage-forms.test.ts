// Hand-made ONNX graphs for each way exporters store weights: the weight is found (with its origin),
// quantized, the rewritten model loads in ONNX Runtime, and its outputs stay close to float.
import { create } from "@bufbuild/protobuf";
import ort from "onnxruntime-node";
import { AttributeProtoSchema, AttributeProto_AttributeType, GraphProtoSchema } from "onnx-buf";
import { describe, expect, it } from "vitest";
import { parseConfig } from "../src/config/load.js";
import { emitModel } from "../src/emit/index.js";
import {
  DataType,
  floatToHalf,
  makeAttribute,
  makeNode,
  makeTensor,
  makeValueInfo,
  serializeModel,
  type ModelProto,
  type NodeProto,
  type TensorProto,
} from "../src/onnx/model.js";
import { findWeights } from "../src/onnx/weights.js";
import { quantizeBlockwiseRef, type BlockwiseSpec } from "../src/quantize/blockwise.js";
import { planWeights, quantizeWeights } from "../src/quantize/index.js";
import { gaussian, model, randomMatrix } from "./helpers/models.js";

function recipe(extra = "") {
  return parseConfig(
    `model: m.onnx\nevaluation:\n  task: classification\n  dataset: d.jsonl\nrecipe:\n  format: int8\n  block_size: 16\n  min_elements: 16\n  op_types: [matmul, gemm, conv, conv_transpose, gather]\n${extra}`,
    "quantgate.yml",
  ).recipe;
}

async function run(m: ModelProto, feeds: Record<string, { type: "float32" | "int64"; dims: number[]; data: Float32Array | BigInt64Array }>) {
  const s = await ort.InferenceSession.create(serializeModel(m), { intraOpNumThreads: 1 });
  const out = await s.run(Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, new ort.Tensor(v.type, v.data, v.dims)])));
  await s.release();
  return out[s.outputNames[0]!]!.data as Float32Array;
}

/** Finds, quantizes (int8) and emits; returns the discovery and the float vs quantized outputs. */
async function roundTrip(m: ModelProto, feeds: Parameters<typeof run>[1], extraRecipe = "") {
  const r = recipe(extraRecipe);
  const discovery = findWeights(m.graph!, r);
  const plans = planWeights(discovery.weights, r);
  const q = quantizeWeights(plans, {
    quantize: (w: Float32Array, n: number, k: number, spec: BlockwiseSpec) => quantizeBlockwiseRef(w, n, k, spec),
    stats: undefined,
    recipe: r,
    threads: 1,
  });
  const emitted = emitModel(m, q, new Map(), 0);
  const [y0, y1] = [await run(m, feeds), await run(emitted.proto, feeds)];
  let num = 0;
  let den = 0;
  for (let i = 0; i < y0.length; i++) {
    num += (y0[i]! - y1[i]!) ** 2;
    den += y0[i]! ** 2;
  }
  const initNames = (p: ModelProto): string[] => p.graph!.initializer.map((t) => t.name);
  return { discovery, relErr: Math.sqrt(num / den), emitted, initNames: initNames(emitted.proto), changed: y0.some((v, i) => v !== y1[i]) };
}

const x = (rows: number, cols: number, seed = 3) => ({ type: "float32" as const, dims: [rows, cols], data: randomMatrix(rows, cols, seed) });
const tensorAttr = (t: TensorProto) => create(AttributeProtoSchema, { name: "value", type: AttributeProto_AttributeType.TENSOR, t });

function halfTensor(name: string, dims: number[], values: Float32Array): TensorProto {
  return makeTensor(
    name,
    DataType.FLOAT16,
    dims,
    Uint16Array.from(values, (v) => floatToHalf(v)),
  );
}

describe("weights wherever exporters store them", () => {
  it("an initializer feeding MatMul (the plain case)", async () => {
    const m = model(
      [makeNode("MatMul", ["x", "w"], ["y"], [], { name: "mm" })],
      [makeTensor("w", DataType.FLOAT, [32, 16], randomMatrix(32, 16, 1))],
      [makeValueInfo("x", DataType.FLOAT, ["b", 32])],
      [makeValueInfo("y", DataType.FLOAT, ["b", 16])],
    );
    const r = await roundTrip(m, { x: x(4, 32) });
    expect(r.discovery.weights[0]).toMatchObject({ name: "w", kind: "product", origin: 'initializer "w"' });
    expect(r.relErr).toBeLessThan(0.02);
    expect(r.changed).toBe(true);
    expect(r.initNames).not.toContain("w");
  });

  it("a Constant node", async () => {
    const m = model(
      [
        makeNode("Constant", [], ["w"], [tensorAttr(makeTensor("", DataType.FLOAT, [32, 16], randomMatrix(32, 16, 2)))], { name: "w_const" }),
        makeNode("MatMul", ["x", "w"], ["y"], [], { name: "mm" }),
      ],
      [],
      [makeValueInfo("x", DataType.FLOAT, ["b", 32])],
      [makeValueInfo("y", DataType.FLOAT, ["b", 16])],
    );
    const r = await roundTrip(m, { x: x(4, 32) });
    expect(r.discovery.weights[0]).toMatchObject({ kind: "product", origin: 'Constant node "w_const"' });
    expect(r.relErr).toBeLessThan(0.02);
    expect(r.emitted.proto.graph!.node.some((n) => n.opType === "Constant")).toBe(false);
  });

  it("an fp16 initializer behind Cast, and a bf16 one", async () => {
    const w = randomMatrix(32, 16, 4);
    const bf16 = Uint16Array.from(w, (v) => new Uint32Array(new Float32Array([v]).buffer)[0]! >>> 16);
    const m = model(
      [
        makeNode("Cast", ["w_h"], ["w"], [makeAttribute("to", DataType.FLOAT)], { name: "cast" }),
        makeNode("MatMul", ["x", "w"], ["y1"], [], { name: "mm" }),
        makeNode("Cast", ["w_b"], ["wb"], [makeAttribute("to", DataType.FLOAT)], { name: "cast_b" }),
        makeNode("MatMul", ["y1", "wb"], ["y"], [], { name: "mm_b" }),
      ],
      [halfTensor("w_h", [32, 16], w), makeTensor("w_b", DataType.BFLOAT16, [16, 16], bf16.slice(0, 256))],
      [makeValueInfo("x", DataType.FLOAT, ["b", 32])],
      [makeValueInfo("y", DataType.FLOAT, ["b", 16])],
    );
    const r = await roundTrip(m, { x: x(4, 32) });
    expect(r.discovery.weights.map((s) => s.origin)).toEqual(['initializer "w_h" (FLOAT16) -> Cast', 'initializer "w_b" (BFLOAT16) -> Cast']);
    expect(r.relErr).toBeLessThan(0.03);
    expect(r.initNames).not.toContain("w_h");
  });

  it("a Transpose -> Reshape chain that folds to a constant", async () => {
    const m = model(
      [
        makeNode("Transpose", ["w_t"], ["w_tt"], [makeAttribute("perm", [1, 0])], { name: "tr" }),
        makeNode("Reshape", ["w_tt", "shape"], ["w"], [], { name: "rs" }),
        makeNode("MatMul", ["x", "w"], ["y"], [], { name: "mm" }),
      ],
      [makeTensor("w_t", DataType.FLOAT, [16, 32], randomMatrix(16, 32, 5)), makeTensor("shape", DataType.INT64, [2], BigInt64Array.from([32n, -1n]))],
      [makeValueInfo("x", DataType.FLOAT, ["b", 32])],
      [makeValueInfo("y", DataType.FLOAT, ["b", 16])],
    );
    const r = await roundTrip(m, { x: x(4, 32) });
    expect(r.discovery.weights[0]).toMatchObject({ origin: 'initializer "w_t" -> Transpose -> Reshape', k: 32, n: 16 });
    expect(r.relErr).toBeLessThan(0.02);
    expect(r.emitted.proto.graph!.node.map((n) => n.opType)).not.toContain("Transpose");
  });

  it("Conv 2-D (grouped and depthwise), Conv 1-D and ConvTranspose read a dequantized weight", async () => {
    const conv = (name: string, input: string, output: string, w: string, group = 1) =>
      makeNode("Conv", [input, w], [output], [makeAttribute("pads", [1, 1, 1, 1]), makeAttribute("group", group)], { name });
    const m = model(
      [
        conv("c1", "x", "h1", "w1"),
        makeNode("Relu", ["h1"], ["r1"]),
        conv("c2", "r1", "h2", "w2", 2),
        conv("dw", "h2", "h3", "w3", 8),
        makeNode("ConvTranspose", ["h3", "w4"], ["y"], [], { name: "ct" }),
      ],
      [
        makeTensor("w1", DataType.FLOAT, [8, 3, 3, 3], randomMatrix(8, 27, 6, 0.3)),
        makeTensor("w2", DataType.FLOAT, [8, 4, 3, 3], randomMatrix(8, 36, 7, 0.3)),
        makeTensor("w3", DataType.FLOAT, [8, 1, 3, 3], randomMatrix(8, 9, 8, 0.3)),
        makeTensor("w4", DataType.FLOAT, [8, 4, 2, 2], randomMatrix(8, 16, 9, 0.3)),
      ],
      [makeValueInfo("x", DataType.FLOAT, [1, 3, 8, 8])],
      [makeValueInfo("y", DataType.FLOAT, [1, 4, 9, 9])],
    );
    const r = await roundTrip(m, { x: { type: "float32", dims: [1, 3, 8, 8], data: randomMatrix(1, 192, 10) } });
    expect(r.discovery.weights.map((s) => [s.opType, s.kind, s.n, s.k])).toEqual([
      ["Conv", "dequant", 8, 27],
      ["Conv", "dequant", 8, 36],
      ["Conv", "dequant", 8, 9],
      ["ConvTranspose", "dequant", 8, 16],
    ]);
    expect(r.relErr).toBeLessThan(0.03);
    expect(r.initNames).not.toContain("w1");

    const m1 = model(
      [makeNode("Conv", ["x", "w"], ["y"], [], { name: "c1d" })],
      [makeTensor("w", DataType.FLOAT, [6, 4, 5], randomMatrix(6, 20, 11, 0.3))],
      [makeValueInfo("x", DataType.FLOAT, [1, 4, 32])],
      [makeValueInfo("y", DataType.FLOAT, [1, 6, 28])],
    );
    const r1 = await roundTrip(m1, { x: { type: "float32", dims: [1, 4, 32], data: randomMatrix(1, 128, 12) } });
    expect(r1.discovery.weights[0]).toMatchObject({ opType: "Conv", dims: [6, 4, 5] });
    expect(r1.relErr).toBeLessThan(0.03);
  });

  it("a Gather embedding table (opt-in through op_types) and a batched 3-D MatMul weight", async () => {
    const g = gaussian(13);
    const m = model(
      [makeNode("Gather", ["emb", "ids"], ["e"], [], { name: "embed" }), makeNode("MatMul", ["e", "w3"], ["y"], [], { name: "bmm" })],
      [
        makeTensor("emb", DataType.FLOAT, [50, 16], randomMatrix(50, 16, 14)),
        makeTensor(
          "w3",
          DataType.FLOAT,
          [3, 16, 8],
          Float32Array.from({ length: 384 }, () => g()),
        ),
      ],
      [makeValueInfo("ids", DataType.INT64, [3, 5])],
      [makeValueInfo("y", DataType.FLOAT, [3, 5, 8])],
    );
    const ids = { type: "int64" as const, dims: [3, 5], data: BigInt64Array.from({ length: 15 }, (_, i) => BigInt((i * 7) % 50)) };
    const r = await roundTrip(m, { ids });
    expect(r.discovery.weights.map((s) => [s.opType, s.kind, s.dims])).toEqual([
      ["Gather", "dequant", [50, 16]],
      ["MatMul", "dequant", [3, 16, 8]],
    ]);
    expect(r.relErr).toBeLessThan(0.02);
    const skipped = findWeights(m.graph!, { ...recipe(), op_types: ["matmul"] }).skipped;
    expect(skipped.find((s) => s.opType === "Gather")!.reason).toMatch(/op type gather is not in recipe.op_types/);
  });

  it("a weight inside an If branch is rewritten inside that branch", async () => {
    const branch = (name: string, seed: number) =>
      create(GraphProtoSchema, {
        name,
        node: [makeNode("MatMul", ["x", `${name}_w`], [`${name}_y`], [], { name: `${name}_mm` })],
        initializer: [makeTensor(`${name}_w`, DataType.FLOAT, [32, 16], randomMatrix(32, 16, seed))],
        output: [makeValueInfo(`${name}_y`, DataType.FLOAT, ["b", 16])],
      });
    const ifNode: NodeProto = makeNode("If", ["cond"], ["y"], [], { name: "choose" });
    ifNode.attribute.push(create(AttributeProtoSchema, { name: "then_branch", type: AttributeProto_AttributeType.GRAPH, g: branch("then", 15) }));
    ifNode.attribute.push(create(AttributeProtoSchema, { name: "else_branch", type: AttributeProto_AttributeType.GRAPH, g: branch("else", 16) }));
    const m = model(
      [ifNode],
      [],
      [makeValueInfo("x", DataType.FLOAT, ["b", 32]), makeValueInfo("cond", DataType.BOOL, [])],
      [makeValueInfo("y", DataType.FLOAT, ["b", 16])],
    );
    const r = recipe();
    const found = findWeights(m.graph!, r);
    expect(found.weights.map((s) => s.graphLabel)).toEqual(['If "choose" then_branch', 'If "choose" else_branch']);
    const q = quantizeWeights(planWeights(found.weights, r), {
      quantize: (w: Float32Array, n: number, k: number, spec: BlockwiseSpec) => quantizeBlockwiseRef(w, n, k, spec),
      stats: undefined,
      recipe: r,
      threads: 1,
    });
    const emitted = emitModel(m, q, new Map(), 0);
    const thenGraph = emitted.proto.graph!.node[0]!.attribute.find((a) => a.name === "then_branch")!.g!;
    expect(thenGraph.node.map((n) => n.opType)).toContain("MatMulNBits");
    expect(thenGraph.initializer.map((t) => t.name)).not.toContain("then_w");
    for (const c of [true, false]) {
      const s0 = await ort.InferenceSession.create(serializeModel(m));
      const s1 = await ort.InferenceSession.create(serializeModel(emitted.proto));
      const f = { x: new ort.Tensor("float32", randomMatrix(4, 32, 3), [4, 32]), cond: new ort.Tensor("bool", [c], []) };
      const [y0, y1] = [(await s0.run(f)).y!.data as Float32Array, (await s1.run(f)).y!.data as Float32Array];
      const err = Math.sqrt(y0.reduce((a, v, i) => a + (v - y1[i]!) ** 2, 0) / y0.reduce((a, v) => a + v * v, 0));
      expect(err).toBeLessThan(0.02);
    }
  });

  it("quantizes a tied weight once for all its readers (or keeps it float), and excludes by shape", async () => {
    const w = makeTensor("tied", DataType.FLOAT, [32, 32], randomMatrix(32, 32, 17, 0.2));
    const m = model(
      [
        makeNode("MatMul", ["x", "tied"], ["h"], [], { name: "a" }),
        makeNode("MatMul", ["h", "tied"], ["y"], [], { name: "b" }),
        makeNode("MatMul", ["y", "stft"], ["z"], [], { name: "spec" }),
      ],
      [w, makeTensor("stft", DataType.FLOAT, [32, 17], randomMatrix(32, 17, 18))],
      [makeValueInfo("x", DataType.FLOAT, ["b", 32])],
      [makeValueInfo("z", DataType.FLOAT, ["b", 17])],
    );
    const once = await roundTrip(m, { x: x(4, 32) }, "  exclude_shapes: [[-1, 17]]\n");
    expect(once.discovery.weights.map((s) => [s.name, s.kind, s.readers.length])).toEqual([["tied", "dequant", 2]]);
    expect(once.discovery.weights[0]!.origin).toMatch(/read by 2 nodes \(quantized once\)/);
    expect(once.relErr).toBeLessThan(0.03);
    expect(once.initNames).not.toContain("tied");
    expect(once.discovery.skipped.map((s) => s.reason)).toEqual([expect.stringMatching(/excluded by recipe shape \[-1, 17\]/)]);

    const float = findWeights(m.graph!, recipe("  shared_weights: float\n  exclude_shapes: [[-1, 17]]\n"));
    expect(float.weights).toEqual([]);
    // One entry per tensor, though both readers skip it.
    expect(float.skipped.map((s) => s.reason)).toEqual([
      expect.stringMatching(/shared: "tied" is read by 2 nodes/),
      expect.stringMatching(/excluded by recipe shape \[-1, 17\]/),
    ]);
  });
});
