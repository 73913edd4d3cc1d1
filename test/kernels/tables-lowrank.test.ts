// The kernels' table-format quantizer (qg_tables.c) and the low-rank, calibration and element-wise passes
// (qg_lowrank.c) against their TypeScript references: byte-identical codes and scales, bit-identical
// float64 sums, on every real backend, SIMD and forced-scalar, on shapes that fit no tile evenly and on
// the edge values (exact E4M3 midpoints, zeros, signed zeros, NaN, infinities, subnormals).
import { afterAll, describe, expect, it } from "vitest";
import { setActiveKernels } from "../../src/kernels/active.js";
import { ChannelAccumulator } from "../../src/calibrate/index.js";
import { dequantizeTable, dequantizeTableRef, E4M3_TABLE, quantizeTable, quantizeTableRef, type TableFormat } from "../../src/quantize/tables.js";
import { lowRankCorrection, refineGroupScales } from "../../src/quantize/algorithms/lowrank.js";
import { effectiveWeightNK, weightRowsNK } from "../../src/quantize/index.js";
import { weightStatistics } from "../../src/quantize/quantx.js";
import type { WeightSite } from "../../src/onnx/weights.js";
import { layerGraph } from "../../src/emit/index.js";
import { quantizeBlockwiseRef } from "../../src/quantize/blockwise.js";
import { lloydMax, normalizeByBlock } from "../../src/quantize/algorithms/codebook.js";
import { fitCodebook } from "../../src/quantize/codebook.js";
import { makeWeights, realBackends, rng } from "./helpers.js";

const backends = await realBackends();
afterAll(() => setActiveKernels(undefined));

/** Run fn with `raw` installed as the active kernels (undefined: the TypeScript references). */
function withKernels<T>(raw: Parameters<typeof setActiveKernels>[0], fn: () => T): T {
  setActiveKernels(raw);
  try {
    return fn();
  } finally {
    setActiveKernels(undefined);
  }
}

/** Weights with the edge cases in chosen rows: E4M3 midpoints at scale 1 (block absmax 448), signed zeros, NaN, inf, subnormals. */
function edgeWeights(n: number, k: number): Float32Array {
  const w = makeWeights(n * k, "heavy", 5);
  const mids: number[] = [];
  for (let c = 0; c < 0x7e; c++) {
    const a = E4M3_TABLE[c]!,
      b = E4M3_TABLE[c + 1]!;
    const mid = Math.fround((a + b) / 2);
    mids.push(mid, -mid, Math.fround(mid * (1 + 2 ** -23)), Math.fround(mid * (1 - 2 ** -23)));
  }
  // Row 0: 448 in every block of 32 so the scale is exactly 1 and x = w.
  for (let i = 0; i < k; i++) w[i] = i % 32 === 0 ? 448 : mids[i % mids.length]!;
  // Row 1: zeros, negative zeros, tiny values; row 2: a NaN block and an infinite block; row 3: subnormals.
  for (let i = 0; i < k; i++) w[k + i] = i % 3 === 0 ? -0 : i % 3 === 1 ? 0 : (i % 2 ? -1 : 1) * 1e-30;
  w[2 * k + 3] = NaN;
  w[2 * k + 40] = Infinity;
  w[2 * k + 41] = -5;
  for (let i = 0; i < k; i++) w[3 * k + i] = (i % 2 ? -1 : 1) * i * 1e-43;
  // Row 4: values just below and above powers of two (the MX scale's floor(log2)).
  for (let i = 0; i < k; i++) w[4 * k + i] = (i % 2 ? -1 : 1) * Math.fround(2 ** ((i % 40) - 20) * (i % 4 < 2 ? 1 - 2 ** -24 : 1));
  return w;
}

const codebook5 = Float32Array.from([-0.8, -0.25, 0, 0.3, 1]);
const codebook16 = Float32Array.from({ length: 16 }, (_, i) => Math.fround(Math.sinh((i - 7.5) / 4) / Math.sinh(7.5 / 4)));
const cases: { format: TableFormat; bs: number; table?: Float32Array }[] = [
  { format: "nf4", bs: 64 },
  { format: "fp4", bs: 32 },
  { format: "bnb-fp4", bs: 64 },
  { format: "mxfp4", bs: 32 },
  { format: "fp8", bs: 32 },
  { format: "codebook", bs: 32, table: codebook5 },
  { format: "codebook", bs: 128, table: codebook16 },
];

describe.each(backends.map((b) => [b.backend, b] as const))("table formats and low-rank passes on %s kernels", (_name, kernels) => {
  const raw = kernels.raw;
  it("has the kernels this file tests", () => {
    for (const m of [
      "quantizeTable",
      "dequantizeTable",
      "subF32ToF64",
      "lowrankEtV",
      "lowrankApplyG",
      "lowrankWeightedRows",
      "addLowRank",
      "scaleColumns",
      "activationStats",
      "transposeU8",
    ] as const)
      expect(typeof raw[m], m).toBe("function");
  });

  it.each(cases)("$format (block $bs): codes and scales identical to quantizeTableRef, SIMD and scalar", ({ format, bs, table }) => {
    const n = 37,
      k = 200;
    for (const w of [edgeWeights(n, k), makeWeights(n * k, "gaussian", 11), makeWeights(n * k, "tiny", 3)]) {
      const ref = quantizeTableRef(w, n, k, format, bs, table);
      for (const forced of [false, true]) {
        raw.forceRef(forced);
        try {
          const got = withKernels(raw, () => quantizeTable(w, n, k, format, bs, table, 3));
          expect(got.codes).toEqual(ref.codes);
          expect(got.scales).toEqual(ref.scales);
          expect({ ...got, codes: undefined, scales: undefined }).toEqual({ ...ref, codes: undefined, scales: undefined });
          expect(withKernels(raw, () => dequantizeTable(got))).toEqual(dequantizeTableRef(ref));
        } finally {
          raw.forceRef(false);
        }
      }
    }
  });

  it("FP8: the direct encoder picks the scan's code for 2^20 values spread over every binade", () => {
    const r = rng(17);
    const count = 1 << 20;
    const w = new Float32Array(count);
    for (let i = 0; i < count; i++) w[i] = i % 32 === 0 ? 448 : (r() < 0.5 ? -1 : 1) * Math.fround(2 ** (r() * 22 - 12));
    const ref = quantizeTableRef(w, count / 64, 64, "fp8", 32);
    const got = withKernels(raw, () => quantizeTable(w, count / 64, 64, "fp8", 32));
    expect(got.codes).toEqual(ref.codes);
  });

  it("low-rank correction (exact and randomized, Gram and diagonal): identical factors and figures", () => {
    for (const [n, k, method] of [
      [24, 40, "exact"],
      [150, 72, "randomized"],
      [130, 33, "auto"],
    ] as const) {
      const wT = makeWeights(n * k, "heavy", n);
      const deq = quantizeBlockwiseRef(wT, n, k, { bits: 3, blockSize: 16, symmetric: false, clipSearch: false });
      const deqT = withKernels(undefined, () => effectiveWeightNK({ q: deq }));
      const r = rng(k);
      const x = Float32Array.from({ length: 64 * k }, () => (r() - 0.5) * (1 + 3 * r()));
      const acc = new ChannelAccumulator(k, 64);
      withKernels(undefined, () => acc.add(x));
      const stats = acc.result();
      for (const diagonalOnly of [false, true]) {
        const ref = withKernels(undefined, () => lowRankCorrection(wT, deqT, n, k, 5, stats, { method, diagonalOnly }));
        const alsoRef = withKernels(raw, () => lowRankCorrection(wT, deqT, n, k, 5, stats, { method, diagonalOnly, reference: true }));
        const got = withKernels(raw, () => lowRankCorrection(wT, deqT, n, k, 5, stats, { method, diagonalOnly, threads: 3 }));
        expect(alsoRef).toEqual(ref);
        expect(got).toEqual(ref);
        expect(got.errorAfter).toBeLessThan(got.errorBefore);
      }
    }
  });

  it("block scales refined on E[x^2] (with and without re-encoding rounds): identical codes and scales", () => {
    const n = 29,
      k = 150;
    const wT = makeWeights(n * k, "heavy", 12);
    const r = rng(3);
    const meanSquare = Float64Array.from({ length: k }, (_, i) => (i >= 32 && i < 64 ? 0 : r() * 3));
    for (const [bits, symmetric, bs] of [
      [4, false, 32],
      [3, true, 64],
      [2, false, 16],
    ] as const) {
      const q = quantizeBlockwiseRef(wT, n, k, { bits, blockSize: bs, symmetric, clipSearch: false });
      for (const reencodeRounds of [0, 3]) {
        const ref = withKernels(undefined, () => refineGroupScales(wT, q, { meanSquare }, { reencodeRounds }));
        const got = withKernels(raw, () => refineGroupScales(wT, q, { meanSquare }, { reencodeRounds, threads: 3 }));
        expect(got).toEqual(ref);
      }
    }
  });

  it("effective weight with AWQ scales and a low-rank branch: bit-identical", () => {
    const n = 45,
      k = 300,
      rank = 7;
    const wT = makeWeights(n * k, "gaussian", 2);
    const q = quantizeBlockwiseRef(wT, n, k, { bits: 4, blockSize: 32, symmetric: true, clipSearch: false });
    const r = rng(9);
    const inputScales = Float32Array.from({ length: k }, () => Math.fround(0.5 + r()));
    const a = Float32Array.from({ length: k * rank }, () => Math.fround(r() - 0.5));
    const b = Float32Array.from({ length: rank * n }, () => Math.fround(r() - 0.5));
    const lowRank = { a, b, aHalf: new Uint16Array(0), bHalf: new Uint16Array(0), rank };
    const ref = withKernels(undefined, () => effectiveWeightNK({ q, inputScales, lowRank }));
    expect(withKernels(raw, () => effectiveWeightNK({ q, inputScales, lowRank }, 3))).toEqual(ref);
  });

  it("Gemm alpha folded into the weight rows: identical", () => {
    const w = makeWeights(33 * 70, "gaussian", 6);
    for (const transposed of [false, true])
      for (const alpha of [Math.fround(1.7), 0.5, 1.7]) {
        const site = { values: w, k: 70, n: 33, transposed, alpha } as unknown as WeightSite;
        expect(withKernels(raw, () => weightRowsNK(site))).toEqual(withKernels(undefined, () => weightRowsNK(site)));
      }
  });

  it("planner statistics (kurtosis, outliers, weighted squared error): identical", () => {
    for (const w of [makeWeights(5000, "heavy", 3), makeWeights(4096, "gaussian", 4), new Float32Array(64)])
      expect(withKernels(raw, () => weightStatistics(w))).toEqual(withKernels(undefined, () => weightStatistics(w)));
    const w = makeWeights(30 * 50, "heavy", 7);
    const deq = Float32Array.from(w, (v) => Math.fround(Math.round(v * 64) / 64));
    const h = Float64Array.from({ length: 50 }, (_, i) => 0.5 + i / 7);
    const run = (kr: typeof raw | undefined, hh: Float64Array) =>
      withKernels(kr, () => {
        const out = new Float64Array(1);
        if (kr) kr.weightedSquaredError!(w, deq, 30, 50, hh, out);
        else {
          for (let r = 0; r < 30; r++)
            for (let c = 0; c < 50; c++) {
              const d = w[r * 50 + c]! - deq[r * 50 + c]!;
              out[0]! += (hh.length ? hh[c]! : 1) * d * d;
            }
        }
        return out[0];
      });
    expect(run(raw, h)).toBe(run(undefined, h));
    expect(run(raw, new Float64Array(0))).toBe(run(undefined, new Float64Array(0)));
  });

  it("calibration statistics: per-channel sums and the Gram matrix bit-identical, across batches and the row cap", () => {
    const c = 70;
    const r = rng(4);
    const batches = [5, 40, 33].map((rows) => Float32Array.from({ length: rows * c }, (_, i) => (i % 11 === 0 ? 0 : (r() - 0.5) * 10)));
    const run = (kr: typeof raw | undefined) =>
      withKernels(kr, () => {
        const acc = new ChannelAccumulator(c, 60);
        for (const b of batches) acc.add(b);
        return acc.result();
      });
    expect(run(raw)).toEqual(run(undefined));
  });

  it("codebook fit: block normalization, the sorted values and the Lloyd-Max levels identical; non-finite values refused", () => {
    const n = 40,
      k = 160;
    const w = makeWeights(n * k, "heavy", 21);
    w.fill(0, 0, 32); // a zero block
    w[100] = -0;
    for (const bs of [32, 64]) {
      expect(withKernels(raw, () => normalizeByBlock(w, n, k, bs))).toEqual(withKernels(undefined, () => normalizeByBlock(w, n, k, bs)));
      for (const method of ["lloyd-max", "student-t"] as const)
        expect(withKernels(raw, () => fitCodebook(w, k, bs, 16, method))).toEqual(withKernels(undefined, () => fitCodebook(w, k, bs, 16, method)));
    }
    const signed = Float32Array.from([0.5, -0, 0, -0.25, 0, -0, 1, -1, 0.5, 3e-39, -3e-39]);
    for (const levels of [3, 5, 16]) expect(withKernels(raw, () => lloydMax(signed, levels))).toEqual(withKernels(undefined, () => lloydMax(signed, levels)));
    const bad = Float32Array.from([1, 2, NaN]);
    expect(() => withKernels(raw, () => lloydMax(bad, 2))).toThrow(/must be finite/);
    expect(() => withKernels(undefined, () => lloydMax(bad, 2))).toThrow(/must be finite/);
  });

  it("emit: table and blocked-DequantizeLinear layouts identical with and without the kernels", () => {
    const n = 21,
      k = 96;
    const w = makeWeights(n * k, "gaussian", 8);
    const t = quantizeTableRef(w, n, k, "nf4", 32);
    const i4 = quantizeBlockwiseRef(w, n, k, { bits: 4, blockSize: 32, symmetric: false, clipSearch: false });
    const target = { opset: 21, elemType: 1 } as const;
    for (const [q, form] of [
      [t, "lookup-subgraph"],
      [t, "matmulbnb4"],
      [i4, "dequant-subgraph"],
      [i4, "dequantizelinear"],
    ] as const) {
      const ref = withKernels(undefined, () => layerGraph("p", "x", "y", q, form as never, 0, target as never));
      const got = withKernels(raw, () => layerGraph("p", "x", "y", q, form as never, 0, target as never));
      expect(got.initializers).toEqual(ref.initializers);
    }
  });
});
