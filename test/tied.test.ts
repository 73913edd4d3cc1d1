// Tied embeddings under ONNX Runtime 1.30: which layouts of one packed initializer read by both
// com.microsoft.GatherBlockQuantized and com.microsoft.MatMulNBits load and compute the right values, and
// emitTiedEmbedding on the Llama fixtures (both layouts, fp32 and fp16) against the dequantized float model.
import { readFileSync } from "node:fs";
import path from "node:path";
import { create } from "@bufbuild/protobuf";
import { OperatorSetIdProtoSchema } from "onnx-buf";
import { describe, expect, it } from "vitest";
import ort from "onnxruntime-node";
import { emitTiedEmbedding, findTiedEmbeddings, quantizeTiedEmbeddings, quantizeTiedTable } from "../src/emit/tied.js";
import {
  DataType,
  cloneModel,
  floatToHalf,
  makeAttribute,
  makeNode,
  makeTensor,
  makeValueInfo,
  parseModel,
  serializeModel,
  tensorToFloat32,
  type ModelProto,
  type TensorProto,
} from "../src/onnx/model.js";
import { dequantizeBlockwise, quantizeBlockwiseRef, toMatMulNBits, type BlockwiseSpec } from "../src/quantize/blockwise.js";
import { buildLmFeeds, planLmInputs, sessionDecls, toOrtLmFeeds } from "../src/tasks/lm-inputs.js";
import type { Ort } from "../src/runtime/ort.js";
import { model, randomMatrix } from "./helpers/models.js";

const ORT = ort as unknown as Ort;
const V = 64;
const D = 64;
const BS = 32;
const NB = D / BS;
const rtn = (w: Float32Array, n: number, k: number, s: BlockwiseSpec) => quantizeBlockwiseRef(w, n, k, s);
const INT4: BlockwiseSpec = { bits: 4, blockSize: BS, symmetric: true, clipSearch: false };
const RTN = { quantize: rtn, algorithm: "rtn" };

function withMsDomain(m: ModelProto): ModelProto {
  m.opsetImport.push(create(OperatorSetIdProtoSchema, { domain: "com.microsoft", version: 1n }));
  return m;
}

const i64 = (name: string, values: number[]): TensorProto => makeTensor(name, DataType.INT64, [values.length], BigInt64Array.from(values.map(BigInt)));

/** A graph with the two readers of one embedding: emb = table[ids], logits = x @ table^T. */
function layout(variant: string): { proto: ModelProto; deq: Float32Array } {
  const e = randomMatrix(V, D, 3);
  const q = quantizeBlockwiseRef(e, V, D, INT4);
  const deq = dequantizeBlockwise(q);
  const t = toMatMulNBits(q);
  const codes3 = makeTensor("W", DataType.UINT8, [V, NB, BS / 2], t.b);
  const codes2 = makeTensor("W", DataType.UINT8, [V, D / 2], t.b);
  const scales = (dims: number[], name = "S"): TensorProto => makeTensor(name, DataType.FLOAT, dims, t.scales);
  const mm = (b: string, s: string) =>
    makeNode(
      "MatMulNBits",
      ["x", b, s],
      ["logits"],
      [makeAttribute("K", D), makeAttribute("N", V), makeAttribute("bits", 4), makeAttribute("block_size", BS)],
      { domain: "com.microsoft" },
    );
  const gbq = (data: string, s: string, quantizeAxis: number, out: string) =>
    makeNode(
      "GatherBlockQuantized",
      [data, "ids", s],
      [out],
      [makeAttribute("gather_axis", 0), makeAttribute("quantize_axis", quantizeAxis), makeAttribute("block_size", BS), makeAttribute("bits", 4)],
      { domain: "com.microsoft" },
    );
  const flat = makeNode("Reshape", ["e3", "emb_shape"], ["emb"]);
  const layouts: Record<string, { inits: TensorProto[]; nodes: ReturnType<typeof makeNode>[] }> = {
    "3-D codes, 3-D scales, both shared": {
      inits: [codes3, scales([V, NB, 1]), i64("emb_shape", [1, 3, D])],
      nodes: [mm("W", "S"), gbq("W", "S", 2, "e3"), flat],
    },
    "2-D codes and scales, both shared": { inits: [codes2, scales([V, NB])], nodes: [mm("W", "S"), gbq("W", "S", 1, "emb")] },
    "2-D codes, 1-D scales, both shared": { inits: [codes2, scales([V * NB])], nodes: [mm("W", "S"), gbq("W", "S", 1, "emb")] },
    "3-D codes shared, scales through Reshape": {
      inits: [codes3, scales([V * NB]), i64("s3", [V, NB, 1]), i64("emb_shape", [1, 3, D])],
      nodes: [mm("W", "S"), makeNode("Reshape", ["S", "s3"], ["S3"]), gbq("W", "S3", 2, "e3"), flat],
    },
    "3-D codes shared, a Reshape to 2-D for the Gather": {
      inits: [codes3, scales([V, NB]), i64("w2", [V, D / 2])],
      nodes: [mm("W", "S"), makeNode("Reshape", ["W", "w2"], ["W2"]), gbq("W2", "S", 1, "emb")],
    },
    "separate copies": {
      inits: [codes3, scales([V * NB]), makeTensor("Wg", DataType.UINT8, [V, D / 2], t.b), scales([V, NB], "Sg")],
      nodes: [mm("W", "S"), gbq("Wg", "Sg", 1, "emb")],
    },
  };
  const l = layouts[variant]!;
  const proto = withMsDomain(
    model(
      l.nodes,
      l.inits,
      [makeValueInfo("ids", DataType.INT64, [1, 3]), makeValueInfo("x", DataType.FLOAT, [1, 3, D])],
      [makeValueInfo("emb", DataType.FLOAT), makeValueInfo("logits", DataType.FLOAT)],
    ),
  );
  return { proto, deq };
}

describe("ONNX Runtime 1.30: one packed initializer read by GatherBlockQuantized and MatMulNBits", () => {
  it.each([
    ["3-D codes, 3-D scales, both shared", /MatMulNBits PrePack: scales initializer shape \{64,2,1\} does not match/],
    ["2-D codes and scales, both shared", /MatMulNBits PrePack: B initializer shape \{64,32\} does not match attribute-derived shape \[64,2,16\]/],
    ["2-D codes, 1-D scales, both shared", /scales must have the same rank as data/],
    ["3-D codes shared, scales through Reshape", "loads"],
    ["3-D codes shared, a Reshape to 2-D for the Gather", "loads"],
    ["separate copies", "loads"],
  ])("%s: %s", async (variant, expected) => {
    const { proto, deq } = layout(variant);
    const load = ort.InferenceSession.create(serializeModel(proto));
    if (expected !== "loads") {
      await expect(load).rejects.toThrow(expected as RegExp);
      return;
    }
    const s = await load;
    const ids = [5, 0, 63];
    const x = Float32Array.from({ length: 3 * D }, (_, i) => Math.sin(i));
    const out = await s.run({ ids: new ort.Tensor("int64", BigInt64Array.from(ids.map(BigInt)), [1, 3]), x: new ort.Tensor("float32", x, [1, 3, D]) });
    const emb = out.emb!.data as Float32Array;
    const logits = out.logits!.data as Float32Array;
    let embErr = 0;
    let logitErr = 0;
    for (let r = 0; r < 3; r++) {
      for (let c = 0; c < D; c++) embErr = Math.max(embErr, Math.abs(emb[r * D + c]! - deq[ids[r]! * D + c]!));
      for (let v = 0; v < V; v++) {
        let acc = 0;
        for (let c = 0; c < D; c++) acc += x[r * D + c]! * deq[v * D + c]!;
        logitErr = Math.max(logitErr, Math.abs(logits[r * V + v]! - acc));
      }
    }
    expect(embErr).toBe(0);
    expect(logitErr).toBeLessThan(1e-4);
  });
});

const FIX = path.resolve("test/fixtures/llm");

async function logitsOf(proto: ModelProto | Uint8Array, rows: number[][]): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(proto instanceof Uint8Array ? proto : serializeModel(proto));
  const plan = planLmInputs(sessionDecls(s.inputMetadata), sessionDecls(s.outputMetadata));
  const out = await s.run(toOrtLmFeeds(ORT, buildLmFeeds(plan, rows)));
  const l = out.logits!;
  if (l.type === "float16") {
    const bits = l.data as Uint16Array;
    return Float32Array.from(bits, (h) => {
      const sgn = h & 0x8000 ? -1 : 1;
      const e = (h >> 10) & 0x1f;
      const m = h & 0x3ff;
      return e === 0 ? sgn * m * 2 ** -24 : sgn * (1 + m / 1024) * 2 ** (e - 15);
    });
  }
  return l.data as Float32Array;
}

describe.each([
  ["model.onnx", 2e-4],
  ["genai.onnx", 2e-4],
  ["model-fp16.onnx", 0.1],
])("emitTiedEmbedding on %s", (file, tol) => {
  it.each([
    ["int4 symmetric", { bits: 4, blockSize: 16, symmetric: true, clipSearch: false }],
    ["int4 asymmetric", { bits: 4, blockSize: 32, symmetric: false, clipSearch: false }],
    ["int8", { bits: 8, blockSize: 32, symmetric: true, clipSearch: false }],
  ] as [string, BlockwiseSpec][])("%s: stored once, computes the dequantized model's logits", async (_, spec) => {
    const bytes = readFileSync(path.join(FIX, file));
    const loaded = await parseModel(bytes, file);
    const sites = findTiedEmbeddings(loaded.graph);
    expect(sites.map((s) => [s.name, s.vocab, s.hidden, s.gathers.length, s.heads.length])).toEqual([["model.embed_tokens.weight", 512, 64, 1, 1]]);
    const table = loaded.graph.initializer.find((t) => t.name === "model.embed_tokens.weight")!;
    const q = quantizeBlockwiseRef(tensorToFloat32(table), 512, 64, spec);
    // reference: the float graph with the table replaced by its dequantized values
    const reference = cloneModel(loaded.proto);
    const refTable = reference.graph!.initializer.find((t) => t.name === "model.embed_tokens.weight")!;
    const deq = dequantizeBlockwise(q);
    refTable.rawData =
      table.dataType === DataType.FLOAT16
        ? new Uint8Array(Uint16Array.from(deq, (v) => floatToHalf(v)).buffer)
        : new Uint8Array(deq.buffer.slice(0) as ArrayBuffer);
    const quantized = cloneModel(loaded.proto);
    const r = emitTiedEmbedding(quantized, findTiedEmbeddings(quantized.graph!)[0]!, q);
    const names = quantized.graph!.initializer.map((t) => t.name);
    expect(names).not.toContain("model.embed_tokens.weight");
    expect(quantized.graph!.node.some((n) => n.input.includes("model.embed_tokens.weight"))).toBe(false);
    const packed = quantized.graph!.initializer.filter(
      (t) => t.dataType === DataType.UINT8 && t.dims.length === 3 && Number(t.dims[0]) === 512 && Number(t.dims[2]) > 1,
    );
    expect(packed.length).toBe(1);
    expect(packed[0]!.rawData.length).toBe((512 * 64 * spec.bits) / 8);
    expect(r.storedBytes).toBeLessThan(r.separateBytes);
    const blocks = 512 * (64 / spec.blockSize);
    const zeroPointBytes = spec.symmetric ? 0 : 512 * Math.ceil(((64 / spec.blockSize) * spec.bits) / 8) + blocks;
    // + the two int64 shape tensors (scales reshape [3], hidden [1])
    expect(r.storedBytes).toBe((512 * 64 * spec.bits) / 8 + blocks * (file.includes("fp16") ? 2 : 4) + zeroPointBytes + 32);
    const rows = [
      [1, 2, 3, 400, 500, 6, 7, 8],
      [9, 10, 11, 12, 13, 14, 15, 16],
    ];
    const want = await logitsOf(reference, rows);
    const got = await logitsOf(quantized, rows);
    let max = 0;
    for (let i = 0; i < want.length; i++) max = Math.max(max, Math.abs(got[i]! - want[i]!));
    expect(max).toBeLessThan(tol);
  });
});

describe("a tied head stored as a transposed copy (what constant folding makes of it)", () => {
  async function withCopy(perturb: boolean): Promise<ModelProto> {
    const loaded = await parseModel(readFileSync(path.join(FIX, "model.onnx")), "model.onnx");
    const proto = cloneModel(loaded.proto);
    const g = proto.graph!;
    const table = g.initializer.find((t) => t.name === "model.embed_tokens.weight")!;
    const e = tensorToFloat32(table);
    const et = new Float32Array(64 * 512);
    for (let i = 0; i < 512; i++) for (let j = 0; j < 64; j++) et[j * 512 + i] = e[i * 64 + j]!;
    if (perturb) et[5] = et[5]! + 1e-3;
    g.initializer.push(makeTensor("onnx::MatMul_lm_head", DataType.FLOAT, [64, 512], et));
    const t = g.node.findIndex((n) => n.opType === "Transpose" && n.input[0] === "model.embed_tokens.weight");
    const out = g.node[t]!.output[0]!;
    g.node.splice(t, 1);
    for (const n of g.node) n.input.forEach((x, i) => (x === out ? (n.input[i] = "onnx::MatMul_lm_head") : undefined));
    return proto;
  }

  it("is found, quantized once, and the copy dropped", async () => {
    const proto = await withCopy(false);
    const sites = findTiedEmbeddings(proto.graph!);
    expect(sites.map((s) => s.heads.map((h) => h.duplicate))).toEqual([["onnx::MatMul_lm_head"]]);
    const table = proto.graph!.initializer.find((t) => t.name === "model.embed_tokens.weight")!;
    const q = quantizeBlockwiseRef(tensorToFloat32(table), 512, 64, INT4);
    const reference = cloneModel(proto);
    const deq = dequantizeBlockwise(q);
    reference.graph!.initializer.find((t) => t.name === "model.embed_tokens.weight")!.rawData = new Uint8Array(deq.buffer.slice(0) as ArrayBuffer);
    const dt = new Float32Array(64 * 512);
    for (let i = 0; i < 512; i++) for (let j = 0; j < 64; j++) dt[j * 512 + i] = deq[i * 64 + j]!;
    reference.graph!.initializer.find((t) => t.name === "onnx::MatMul_lm_head")!.rawData = new Uint8Array(dt.buffer);
    const r = emitTiedEmbedding(proto, sites[0]!, q);
    expect(r.duplicatesRemoved).toEqual(["onnx::MatMul_lm_head"]);
    expect(proto.graph!.initializer.filter((t) => t.dataType === DataType.FLOAT && t.dims.length === 2 && Number(t.dims[1]) === 512)).toEqual([]);
    const rows = [[1, 2, 3, 4, 5, 6]];
    const want = await logitsOf(reference, rows);
    const got = await logitsOf(proto, rows);
    let max = 0;
    for (let i = 0; i < want.length; i++) max = Math.max(max, Math.abs(got[i]! - want[i]!));
    expect(max).toBeLessThan(2e-4);
  });

  it("is not taken for the table when one value differs", async () => {
    expect(findTiedEmbeddings((await withCopy(true)).graph!)).toEqual([]);
  });
});

describe("quantizeTiedEmbeddings (the emit hook)", () => {
  it("quantizes each tied table once, or keeps it float with the reason", async () => {
    const bytes = readFileSync(path.join(FIX, "genai.onnx"));
    const a = cloneModel((await parseModel(bytes, "genai.onnx")).proto);
    expect(quantizeTiedEmbeddings(a, RTN, INT4)).toMatchObject([{ site: "model.embed_tokens.weight", duplicatesRemoved: [] }]);
    expect(a.graph!.node.filter((n) => n.opType === "GatherBlockQuantized").length).toBe(1);
    const b = cloneModel((await parseModel(bytes, "genai.onnx")).proto);
    expect(quantizeTiedEmbeddings(b, RTN, { ...INT4, bits: 2 })).toEqual([
      { site: "model.embed_tokens.weight", kept: "float", reason: "GatherBlockQuantized reads 4- or 8-bit codes, not 2-bit" },
    ]);
    const c = cloneModel((await parseModel(bytes, "genai.onnx")).proto);
    expect(quantizeTiedEmbeddings(c, RTN, { ...INT4, blockSize: 128 })).toEqual([
      { site: "model.embed_tokens.weight", kept: "float", reason: "hidden size 64 is not a multiple of the block size 128" },
    ]);
    expect(c.graph!.initializer.some((t) => t.name === "model.embed_tokens.weight")).toBe(true);
  });
});

describe("quantizeTiedTable: the recipe's algorithm on the shared table", () => {
  const K = 64;
  const N = 96;
  // Activations of the LM head's input with very unequal channel energy (what makes GPTQ and weighting matter).
  function headStats(rows: number): { rows: number; meanAbs: Float64Array; meanSquare: Float64Array; gram: Float64Array; gramRows: number } {
    const x = randomMatrix(rows, K, 7);
    for (let r = 0; r < rows; r++) for (let c = 0; c < K; c++) x[r * K + c]! *= c % 8 === 0 ? 8 : 0.5;
    const gram = new Float64Array(K * K);
    const meanAbs = new Float64Array(K);
    const meanSquare = new Float64Array(K);
    for (let r = 0; r < rows; r++) {
      for (let i = 0; i < K; i++) {
        const xi = x[r * K + i]!;
        meanAbs[i]! += Math.abs(xi) / rows;
        meanSquare[i]! += (xi * xi) / rows;
        for (let j = 0; j < K; j++) gram[i * K + j]! += (xi * x[r * K + j]!) / rows;
      }
    }
    return { rows, meanAbs, meanSquare, gram, gramRows: rows };
  }
  /** Output error of the head under the activations: trace((W - Q) H (W - Q)^T). */
  function outputError(w: Float32Array, q: ReturnType<typeof quantizeBlockwiseRef>, h: Float64Array): number {
    const d = dequantizeBlockwise(q);
    let e = 0;
    for (let n = 0; n < N; n++) {
      for (let i = 0; i < K; i++) {
        const di = w[n * K + i]! - d[n * K + i]!;
        for (let j = 0; j < K; j++) e += di * h[i * K + j]! * (w[n * K + j]! - d[n * K + j]!);
      }
    }
    return e;
  }
  const site = { name: "E", vocab: N, hidden: K, dataType: DataType.FLOAT, gathers: [], heads: [{ node: makeNode("MatMul", ["h", "E_t"], ["logits"]) }] };
  const w = randomMatrix(N, K, 3);
  const stats = headStats(512);
  const ctx = { quantize: rtn, stats: (a: string) => (a === "h" ? stats : undefined), threads: 1 };
  const spec: BlockwiseSpec = { bits: 4, blockSize: 32, symmetric: false, clipSearch: false };
  const rtnQ = quantizeBlockwiseRef(w, N, K, spec);

  it("runs GPTQ on the LM head input's Hessian, lowering the head's output error below RTN", () => {
    const g = quantizeTiedTable(site, w, spec, { ...ctx, algorithm: "gptq", gptq: { damp: 0.01, act_order: false, lazy_batch: 128 } });
    expect(g.algorithm).toBe("gptq");
    expect(g.note).toMatch(/gptq on the LM head input's Hessian \(512 rows of "h"\)/);
    expect(outputError(w, g.q, stats.gram)).toBeLessThan(outputError(w, rtnQ, stats.gram));
    expect(g.q.scales).not.toEqual(rtnQ.scales);
  });

  it("runs the MSE clip search (weighted by the head input's E[x^2] with mse_importance)", () => {
    const m = quantizeTiedTable(site, w, spec, { ...ctx, algorithm: "mse" });
    expect(m.algorithm).toBe("mse");
    expect(m.q.scales).toEqual(quantizeBlockwiseRef(w, N, K, { ...spec, clipSearch: true }).scales);
    expect(m.q.scales).not.toEqual(rtnQ.scales);
    const weighted = quantizeTiedTable(site, w, spec, { ...ctx, algorithm: "mse", mseImportance: true });
    expect(weighted.note).toMatch(/weighted by the LM head input's E\[x\^2\]/);
    expect(outputError(w, weighted.q, stats.gram)).toBeLessThanOrEqual(outputError(w, rtnQ, stats.gram));
  });

  it("says which algorithm ran and why where the recipe's cannot (GPTQ without calibration, AWQ)", () => {
    const noCalib = quantizeTiedTable(site, w, spec, { quantize: rtn, algorithm: "gptq" });
    expect(noCalib.algorithm).toBe("rtn");
    expect(noCalib.note).toMatch(/rtn instead of the recipe's gptq: GPTQ needs the Hessian of the LM head's input "h"/);
    expect(noCalib.q.scales).toEqual(rtnQ.scales);
    const awq = quantizeTiedTable(site, w, spec, { ...ctx, algorithm: "awq" });
    expect(awq.algorithm).toBe("rtn");
    expect(awq.note).toMatch(/rtn instead of the recipe's awq: AWQ's per-channel input scales/);
  });
});
