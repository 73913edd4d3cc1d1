import { mkdtemp, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { DataType, loadModel, makeAttribute, makeNode, makeTensor, makeValueInfo, serializeModel, tensorToFloat32 } from "../src/onnx/model.js";
import { findWeights } from "../src/onnx/weights.js";
import { buildMlp, model, randomMatrix } from "./helpers/models.js";
import { TensorProto_DataLocation } from "onnx-buf";
import { create } from "@bufbuild/protobuf";
import { StringStringEntryProtoSchema } from "onnx-buf";

const recipe = { exclude: [] as string[], min_elements: 256, overrides: [] };

describe("weight discovery", () => {
  it("finds MatMul B and Gemm transB weights with their K and N", () => {
    const { proto } = buildMlp(64, 128, 10);
    const found = findWeights(proto.graph!, { ...recipe, min_elements: 100 });
    expect(found.weights.map((w) => [w.name, w.opType, w.k, w.n, w.transposed])).toEqual([
      ["fc1.weight", "MatMul", 64, 128, false],
      ["fc2.weight", "Gemm", 128, 10, true],
    ]);
    expect(found.skipped).toEqual([]);
  });

  it("reports each skipped weight with its reason", () => {
    const m = model(
      [
        makeNode("MatMul", ["x", "big"], ["a"], [], { name: "excluded_mm" }),
        makeNode("MatMul", ["x", "tiny"], ["b"], [], { name: "tiny_mm" }),
        makeNode("MatMul", ["x", "x2"], ["c"], [], { name: "dynamic_mm" }),
        makeNode("MatMul", ["x", "w3d"], ["d"], [], { name: "batched_mm" }),
        makeNode("MatMul", ["x", "shared"], ["e"], [], { name: "shared_a" }),
        makeNode("Add", ["shared", "shared"], ["f"], [], { name: "shared_b" }),
        makeNode("Gemm", ["x", "gw"], ["g"], [makeAttribute("transA", 1)], { name: "gemm_ta" }),
        makeNode("MatMul", ["x", "ok"], ["h"], [], { name: "good" }),
      ],
      [
        makeTensor("big", DataType.FLOAT, [64, 64], randomMatrix(64, 64, 1)),
        makeTensor("tiny", DataType.FLOAT, [4, 4], randomMatrix(4, 4, 2)),
        makeTensor("w3d", DataType.FLOAT, [2, 64, 8], randomMatrix(2, 512, 3)),
        makeTensor("shared", DataType.FLOAT, [64, 64], randomMatrix(64, 64, 4)),
        makeTensor("gw", DataType.FLOAT, [64, 64], randomMatrix(64, 64, 5)),
        makeTensor("ok", DataType.FLOAT, [64, 32], randomMatrix(64, 32, 6)),
      ],
      [makeValueInfo("x", DataType.FLOAT, [1, 64]), makeValueInfo("x2", DataType.FLOAT, [64, 8])],
      [makeValueInfo("h", DataType.FLOAT, [1, 32])],
    );
    const found = findWeights(m.graph!, { ...recipe, exclude: ["excluded_*"] });
    // a batched 3-D MatMul weight is quantized through a dequantizing subgraph
    expect(found.weights.map((w) => [w.name, w.kind])).toEqual([
      ["w3d", "dequant"],
      ["ok", "product"],
    ]);
    const reasons = Object.fromEntries(found.skipped.map((s) => [s.nodeName, s.reason]));
    expect(reasons.excluded_mm).toMatch(/excluded by recipe pattern "excluded_\*"/);
    expect(reasons.tiny_mm).toMatch(/too small: 16 elements < min_elements 256/);
    expect(reasons.dynamic_mm).toMatch(/dynamic/);
    expect(reasons.shared_a).toMatch(/shared: "shared" is read by 3 nodes/);
    expect(reasons.gemm_ta).toMatch(/transA=1/);
  });

  it("reads weights stored as external data next to the model", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "qg-ext-"));
    const { proto, w1 } = buildMlp(64, 128, 10);
    const t = proto.graph!.initializer.find((x) => x.name === "fc1.weight")!;
    const bytes = Buffer.from(t.rawData);
    await writeFile(path.join(dir, "weights.bin"), Buffer.concat([Buffer.alloc(16), bytes]));
    t.rawData = new Uint8Array(0);
    t.dataLocation = TensorProto_DataLocation.EXTERNAL;
    t.externalData = [
      create(StringStringEntryProtoSchema, { key: "location", value: "weights.bin" }),
      create(StringStringEntryProtoSchema, { key: "offset", value: "16" }),
      create(StringStringEntryProtoSchema, { key: "length", value: String(bytes.length) }),
    ];
    await writeFile(path.join(dir, "m.onnx"), serializeModel(proto));
    const loaded = await loadModel(path.join(dir, "m.onnx"));
    const w = loaded.graph.initializer.find((x) => x.name === "fc1.weight")!;
    expect(Array.from(tensorToFloat32(w))).toEqual(Array.from(w1));
    expect(loaded.sizeBytes).toBeGreaterThan(bytes.length);
  });

  it("rejects a file that is not ONNX with the file named", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "qg-bad-"));
    await writeFile(path.join(dir, "bad.onnx"), "this is not a protobuf \xff\xff\xff");
    await expect(loadModel(path.join(dir, "bad.onnx"))).rejects.toThrow(/bad\.onnx: (not a valid ONNX model|ONNX model has no graph)/);
    await expect(loadModel(path.join(dir, "missing.onnx"))).rejects.toThrow(/missing\.onnx: cannot read model file/);
  });
});
