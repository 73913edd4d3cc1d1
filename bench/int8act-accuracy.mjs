// Accuracy of the int8-activation int4 GEMV (not a test): `npm run build && node bench/int8act-accuracy.mjs`.
// For blocks 32, 64, 128 and 256, K = 4096, N = 1024, int4 asymmetric RTN weights, prints the relative L2 error
// ||y - y_ref|| / ||y_ref|| of ours and of ONNX Runtime's MatMulNBits accuracy_level 4 (same weights, same x)
// against two references: the float-activation product on the same dequantized weights (the error the int8
// activations add) and the fp32 GEMV on the unquantized weights (the whole error), for Gaussian activations and
// for LLM-like ones (heavy tails and a few outlier channels 20-50x the rest).
import { create } from "@bufbuild/protobuf";
import { GraphProtoSchema, ModelProtoSchema, OperatorSetIdProtoSchema } from "onnx-buf";
import ort from "onnxruntime-node";
import { loadKernels } from "../lib/kernels/index.js";
import { DataType, makeAttribute, makeNode, makeTensor, makeValueInfo, serializeModel } from "../lib/onnx/model.js";
import { toMatMulNBits } from "../lib/quantize/blockwise.js";

const kernels = await loadKernels({ prefer: process.env.QUANTGATE_KERNELS_BACKEND || "native" });
const K = 4096,
  N = 1024;
let seed = 12345;
const urand = () => {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return (seed + 0.5) / 4294967296;
};
const gauss = () => Math.sqrt(-2 * Math.log(urand())) * Math.cos(2 * Math.PI * urand());
const activations = {
  gaussian: () => Float32Array.from({ length: K }, gauss),
  "llm-like": () => {
    const outliers = new Set(Array.from({ length: 8 }, () => Math.floor(urand() * K)));
    return Float32Array.from({ length: K }, (_, i) => (gauss() / (0.3 + urand())) * (outliers.has(i) ? 20 + 30 * urand() : 1));
  },
};
const relErr = (y, ref) => {
  let num = 0,
    den = 0;
  for (let i = 0; i < y.length; i++) {
    num += (y[i] - ref[i]) ** 2;
    den += ref[i] ** 2;
  }
  return Math.sqrt(num / den);
};

const wT = Float32Array.from({ length: N * K }, () => gauss() * 0.02);
console.log(`kernels: ${kernels.backend} (${kernels.isa}); K = ${K}, N = ${N}, int4 asymmetric RTN; relative L2 error, mean over 8 activation vectors`);
console.log("block  activations | ours vs f32-act  ORT acc4 vs f32-act | ours vs fp32  ORT acc4 vs fp32  f32-act vs fp32");
for (const block of [32, 64, 128, 256]) {
  const q = kernels.quantizeBlockwise(wT, N, K, { bits: 4, blockSize: block, symmetric: false, clipSearch: false }, 2);
  const p = kernels.packBlockwise(q);
  const t4 = toMatMulNBits(q);
  const node = makeNode(
    "MatMulNBits",
    ["A", "B", "S", "Z"],
    ["Y"],
    [makeAttribute("K", K), makeAttribute("N", N), makeAttribute("bits", 4), makeAttribute("block_size", block), makeAttribute("accuracy_level", 4)],
    { domain: "com.microsoft" },
  );
  const model = create(ModelProtoSchema, {
    irVersion: 10n,
    opsetImport: [create(OperatorSetIdProtoSchema, { domain: "", version: 17n }), create(OperatorSetIdProtoSchema, { domain: "com.microsoft", version: 1n })],
    graph: create(GraphProtoSchema, {
      name: "g",
      node: [node],
      initializer: [
        makeTensor("B", DataType.UINT8, [N, q.blocksPerRow, block / 2], t4.b),
        makeTensor("S", DataType.FLOAT, [N * q.blocksPerRow], t4.scales),
        makeTensor("Z", DataType.UINT8, [t4.zeroPoints.length], t4.zeroPoints),
      ],
      input: [makeValueInfo("A", DataType.FLOAT, [1, K])],
      output: [makeValueInfo("Y", DataType.FLOAT, [1, N])],
    }),
  });
  const session = await ort.InferenceSession.create(serializeModel(model), { intraOpNumThreads: 1 });
  for (const [name, make] of Object.entries(activations)) {
    const sums = [0, 0, 0, 0, 0];
    const rounds = 8;
    for (let r = 0; r < rounds; r++) {
      const x = make();
      const ours = kernels.gemvBlockwiseInt8(p, x, 1);
      const f32act = kernels.gemmBlockwise(p, x, 1, 1);
      const fp32 = kernels.gemmF32(wT, N, K, x, 1, 1);
      const acc4 = (await session.run({ A: new ort.Tensor("float32", x, [1, K]) })).Y.data;
      [relErr(ours, f32act), relErr(acc4, f32act), relErr(ours, fp32), relErr(acc4, fp32), relErr(f32act, fp32)].forEach((e, i) => (sums[i] += e / rounds));
    }
    const f = (v) => v.toExponential(2).padStart(9);
    console.log(
      `${String(block).padStart(5)}  ${name.padEnd(11)} | ${f(sums[0])}       ${f(sums[1])}          | ${f(sums[2])}   ${f(sums[3])}        ${f(sums[4])}`,
    );
  }
  await session.release();
}
