import { describe, expect, it } from "vitest";
import ort from "onnxruntime-node";
import { create } from "@bufbuild/protobuf";
import { GraphProtoSchema, ModelProtoSchema, OperatorSetIdProtoSchema } from "onnx-buf";
import { DataType, makeAttribute, makeNode, makeTensor, makeValueInfo, serializeModel } from "../../src/onnx/model.js";
import { toMatMulNBits, type IntBits } from "../../src/quantize/blockwise.js";
import { makeWeights, realBackends, firstOutside } from "./helpers.js";

const backends = await realBackends();

function matMulNBitsModel(k: number, n: number, bits: number, blockSize: number, b: Uint8Array, scales: Float32Array, zp?: Uint8Array): Uint8Array {
  const nb = Math.ceil(k / blockSize);
  const inputs = ["A", "B", "S", ...(zp ? ["Z"] : [])];
  const inits = [
    makeTensor("B", DataType.UINT8, [n, nb, (blockSize * bits) / 8], b),
    makeTensor("S", DataType.FLOAT, [n * nb], scales),
    ...(zp ? [makeTensor("Z", DataType.UINT8, [zp.length], zp)] : []),
  ];
  const node = makeNode(
    "MatMulNBits",
    inputs,
    ["Y"],
    [makeAttribute("K", k), makeAttribute("N", n), makeAttribute("bits", bits), makeAttribute("block_size", blockSize), makeAttribute("accuracy_level", 0)],
    { domain: "com.microsoft" },
  );
  const model = create(ModelProtoSchema, {
    irVersion: 10n,
    opsetImport: [create(OperatorSetIdProtoSchema, { domain: "", version: 17n }), create(OperatorSetIdProtoSchema, { domain: "com.microsoft", version: 1n })],
    graph: create(GraphProtoSchema, {
      name: "g",
      node: [node],
      initializer: inits,
      input: [makeValueInfo("A", DataType.FLOAT, ["M", k])],
      output: [makeValueInfo("Y", DataType.FLOAT, ["M", n])],
    }),
  });
  return serializeModel(model);
}

/** ORT accumulates in its own order (and may use other SIMD paths): a looser named budget. */
const BUDGET_ORT = 2e-5;

describe.each(backends.map((b) => [b.backend, b] as const))("MatMulNBits on our packed bytes (%s)", (_name, kernels) => {
  it.each([
    [4, 32, false, 64, 129],
    [4, 16, true, 17, 95],
    [8, 32, false, 31, 64],
    [2, 64, false, 33, 200],
    [4, 128, false, 9, 4097],
  ] as [IntBits, number, boolean, number, number][])("bits=%i block=%i sym=%s N=%i K=%i equals our GEMM", async (bits, blockSize, symmetric, n, k) => {
    const q = kernels.quantizeBlockwise(makeWeights(n * k, "heavy", n + k), n, k, { bits, blockSize, symmetric, clipSearch: true });
    const p = kernels.packBlockwise(q);
    const t = toMatMulNBits(q);
    expect(Buffer.from(p.packed).equals(Buffer.from(t.b))).toBe(true);
    const session = await ort.InferenceSession.create(matMulNBitsModel(k, n, bits, blockSize, p.packed, p.scales, t.zeroPoints), {
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
    });
    for (const m of [1, 3]) {
      const x = makeWeights(m * k, "gaussian", m);
      const out = await session.run({ A: new ort.Tensor("float32", x, [m, k]) });
      const yOrt = out.Y!.data as Float32Array;
      const ours = kernels.gemmBlockwise(p, x, m);
      // magnitude from our dequantized weight
      const w = kernels.dequantizeBlockwise(p);
      const mag = new Float64Array(m * n);
      for (let mi = 0; mi < m; mi++) for (let r = 0; r < n; r++) for (let i = 0; i < k; i++) mag[mi * n + r]! += Math.abs(w[r * k + i]! * x[mi * k + i]!);
      const bad = firstOutside(ours, Float64Array.from(yOrt), mag, BUDGET_ORT);
      expect(bad, `m=${m}: ours ${ours[bad]} ort ${yOrt[bad]}`).toBe(-1);
    }
    await session.release();
  });
});
