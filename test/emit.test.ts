import ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { quantizedLayerModel } from "../src/emit/select.js";
import type { ExecForm } from "../src/emit/index.js";
import { serializeModel } from "../src/onnx/model.js";
import { dequantizeBlockwise, quantizeBlockwiseRef, type IntBits } from "../src/quantize/blockwise.js";
import { dequantizeTable, quantizeTableRef, type TableFormat } from "../src/quantize/tables.js";
import { gaussian, randomMatrix } from "./helpers/models.js";

// Tolerance: ONNX Runtime accumulates in float32 in its own order; our reference accumulates the same
// dequantized weights in float64. Allowed |y - ref| <= 1e-5 * sum_k |a_k * w_k| + 1e-6 (a few float32 ulps of the sum).
const REL_TOL = 1e-5;

async function runLayer(model: Uint8Array, a: Float32Array, m: number, k: number): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(model, { intraOpNumThreads: 1 });
  try {
    const out = await session.run({ A: new ort.Tensor("float32", a, [m, k]) });
    return out.Y!.data as Float32Array;
  } finally {
    await session.release();
  }
}

function reference(a: Float32Array, m: number, wNK: Float32Array, n: number, k: number): { y: Float64Array; mag: Float64Array } {
  const y = new Float64Array(m * n);
  const mag = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      let abs = 0;
      for (let t = 0; t < k; t++) {
        const p = a[i * k + t]! * wNK[j * k + t]!;
        s += p;
        abs += Math.abs(p);
      }
      y[i * n + j] = s;
      mag[i * n + j] = abs;
    }
  }
  return { y, mag };
}

const shapes: [number, number][] = [
  [64, 16],
  [100, 24], // K not a multiple of any block size
  [33, 5],
  [256, 48],
];
const specs: { bits: IntBits; blockSize: number; symmetric: boolean; form: ExecForm }[] = [
  { bits: 4, blockSize: 32, symmetric: false, form: "matmulnbits" },
  { bits: 4, blockSize: 16, symmetric: true, form: "matmulnbits" },
  { bits: 4, blockSize: 128, symmetric: false, form: "dequant-subgraph" },
  { bits: 8, blockSize: 64, symmetric: false, form: "matmulnbits" },
  { bits: 8, blockSize: 32, symmetric: true, form: "dequant-subgraph" },
  { bits: 2, blockSize: 32, symmetric: false, form: "matmulnbits" },
  { bits: 2, blockSize: 16, symmetric: false, form: "dequant-subgraph" },
  { bits: 3, blockSize: 32, symmetric: false, form: "matmulnbits" }, // int3 codes in a 4-bit container
  { bits: 3, blockSize: 64, symmetric: true, form: "matmulnbits" },
  { bits: 3, blockSize: 16, symmetric: false, form: "dequant-subgraph" },
];

const tableSpecs: { format: TableFormat; blockSize: number; form: ExecForm }[] = [
  { format: "nf4", blockSize: 64, form: "lookup-subgraph" },
  { format: "nf4", blockSize: 32, form: "matmulbnb4" },
  { format: "bnb-fp4", blockSize: 32, form: "matmulbnb4" },
  { format: "fp4", blockSize: 32, form: "lookup-subgraph" },
  { format: "mxfp4", blockSize: 32, form: "lookup-subgraph" },
  { format: "fp8", blockSize: 64, form: "lookup-subgraph" },
];

describe("emitted layer in ONNX Runtime equals the TypeScript dequantize-and-multiply reference", () => {
  for (const [k, n] of shapes) {
    for (const s of specs) {
      it(`K=${k} N=${n} int${s.bits} block ${s.blockSize} ${s.symmetric ? "sym" : "asym"} via ${s.form}`, async () => {
        const wNK = randomMatrix(n, k, k * 31 + n + s.bits, 0.2);
        const q = quantizeBlockwiseRef(wNK, n, k, { bits: s.bits, blockSize: s.blockSize, symmetric: s.symmetric, clipSearch: false });
        const m = 3;
        const g = gaussian(k + n);
        const a = Float32Array.from({ length: m * k }, () => g());
        const y = await runLayer(serializeModel(quantizedLayerModel(q, s.form, 0)), a, m, k);
        const ref = reference(a, m, dequantizeBlockwise(q), n, k);
        for (let i = 0; i < m * n; i++) {
          expect(Math.abs(y[i]! - ref.y[i]!)).toBeLessThanOrEqual(REL_TOL * ref.mag[i]! + 1e-6);
        }
        // and the quantized product is not the float one (the test could tell them apart)
        const floatRef = reference(a, m, wNK, n, k);
        const maxDiff = Math.max(...Array.from(y, (v, i) => Math.abs(v - floatRef.y[i]!)));
        expect(maxDiff).toBeGreaterThan(0);
      });
    }
    for (const t of tableSpecs) {
      if (t.form === "matmulbnb4" && k % t.blockSize !== 0) continue; // MatMulBnb4 blocks run over the flattened weight
      it(`K=${k} N=${n} ${t.format} block ${t.blockSize} via ${t.form}`, async () => {
        const wNK = randomMatrix(n, k, k * 17 + n, 0.2);
        const q = quantizeTableRef(wNK, n, k, t.format, t.blockSize);
        const m = 3;
        const g = gaussian(k * 3 + n);
        const a = Float32Array.from({ length: m * k }, () => g());
        const y = await runLayer(serializeModel(quantizedLayerModel(q, t.form, 0)), a, m, k);
        const ref = reference(a, m, dequantizeTable(q), n, k);
        for (let i = 0; i < m * n; i++) {
          expect(Math.abs(y[i]! - ref.y[i]!)).toBeLessThanOrEqual(REL_TOL * ref.mag[i]! + 1e-6);
        }
      });
    }
  }
});
