// Which low-bit forms ONNX Runtime 1.30 accepts on CPU: facts the emitter relies on, checked, not assumed.
// If an ONNX Runtime upgrade changes one of them, this test says which, and the emitter's choice must follow.
import { create } from "@bufbuild/protobuf";
import ort from "onnxruntime-node";
import { GraphProtoSchema, ModelProtoSchema, OperatorSetIdProtoSchema } from "onnx-buf";
import { describe, expect, it } from "vitest";
import { DataType, makeAttribute, makeNode, makeTensor, makeValueInfo, serializeModel, type NodeProto, type TensorProto } from "../src/onnx/model.js";

function oneOp(nodes: NodeProto[], inits: TensorProto[], k: number, n: number, opset: number) {
  return serializeModel(
    create(ModelProtoSchema, {
      irVersion: 11n,
      opsetImport: [
        create(OperatorSetIdProtoSchema, { domain: "", version: BigInt(opset) }),
        create(OperatorSetIdProtoSchema, { domain: "com.microsoft", version: 1n }),
      ],
      graph: create(GraphProtoSchema, {
        name: "g",
        node: nodes,
        initializer: inits,
        input: [makeValueInfo("A", DataType.FLOAT, [1, k])],
        output: [makeValueInfo("Y", DataType.FLOAT, [1, n])],
      }),
    }),
  );
}

async function accepts(model: Uint8Array, k: number): Promise<true | string> {
  try {
    const s = await ort.InferenceSession.create(model);
    await s.run({ A: new ort.Tensor("float32", new Float32Array(k).fill(1), [1, k]) });
    await s.release();
    return true;
  } catch (err) {
    return (err as Error).message;
  }
}

function nbits(bits: number, k = 64, n = 8) {
  const bs = 32;
  const blocks = k / bs;
  return oneOp(
    [
      makeNode(
        "MatMulNBits",
        ["A", "B", "S"],
        ["Y"],
        [makeAttribute("K", k), makeAttribute("N", n), makeAttribute("bits", bits), makeAttribute("block_size", bs)],
        { domain: "com.microsoft" },
      ),
    ],
    [
      makeTensor("B", DataType.UINT8, [n, blocks, Math.ceil((bs * bits) / 8)], new Uint8Array(n * blocks * Math.ceil((bs * bits) / 8))),
      makeTensor("S", DataType.FLOAT, [n * blocks], new Float32Array(n * blocks).fill(1)),
    ],
    k,
    n,
    17,
  );
}

function dqBlocked(dt: DataType, bytes: Uint8Array, opset: number, k = 32, n = 4) {
  return oneOp(
    [makeNode("DequantizeLinear", ["Wq", "S"], ["W"], [makeAttribute("axis", 0), makeAttribute("block_size", 32)]), makeNode("MatMul", ["A", "W"], ["Y"])],
    [makeTensor("Wq", dt, [k, n], bytes), makeTensor("S", DataType.FLOAT, [k / 32, n], new Float32Array((k / 32) * n).fill(2))],
    k,
    n,
    opset,
  );
}

describe("ONNX Runtime 1.30 CPU operator support", () => {
  it("runs MatMulNBits with 2, 4 and 8 bits", async () => {
    for (const bits of [2, 4, 8]) expect(await accepts(nbits(bits), 64)).toBe(true);
  });

  it("refuses MatMulNBits with 3 bits (so int3 runs in a 4-bit container)", async () => {
    expect(await accepts(nbits(3), 64)).toMatch(/bits|3/i);
  });

  it("runs MatMulBnb4 (NF4 and bitsandbytes FP4)", async () => {
    for (const qt of [0, 1]) {
      const model = oneOp(
        [
          makeNode(
            "MatMulBnb4",
            ["A", "B", "S"],
            ["Y"],
            [makeAttribute("K", 64), makeAttribute("N", 8), makeAttribute("block_size", 64), makeAttribute("quant_type", qt)],
            { domain: "com.microsoft" },
          ),
        ],
        [makeTensor("B", DataType.UINT8, [256], new Uint8Array(256)), makeTensor("S", DataType.FLOAT, [8], new Float32Array(8).fill(1))],
        64,
        8,
        17,
      );
      expect(await accepts(model, 64)).toBe(true);
    }
  });

  it("has no CPU kernel for DequantizeLinear on FLOAT4E2M1 (so FP4/MXFP4 use the lookup subgraph)", async () => {
    expect(await accepts(dqBlocked(DataType.FLOAT4E2M1, new Uint8Array(64).fill(0x21), 23), 32)).toMatch(/DequantizeLinear/);
  });

  it("runs blocked DequantizeLinear on FLOAT8E4M3FN at opset 21", async () => {
    expect(await accepts(dqBlocked(DataType.FLOAT8E4M3FN, new Uint8Array(128).fill(0x38), 21), 32)).toBe(true);
  });
});
