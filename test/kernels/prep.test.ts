// The per-element passes moved out of JavaScript (transpose, packing, decoding, error sums, histograms,
// importance-weighted clip search) against their TypeScript references, on every real backend, on
// awkward sizes; and the blockwise helpers, once the kernels are installed, give the references' bytes.
import { afterAll, describe, expect, it } from "vitest";
import { freshBytes, freshFloat32, setActiveKernels } from "../../src/kernels/active.js";
import {
  dequantizeBlockwise,
  dequantizeBlockwiseRef,
  dequantizeCodesRef,
  packBits,
  packBitsRef,
  quantizeBlockwiseRef,
  quantizeBlockwiseWeighted,
  transpose,
  transposeRef,
  unpackBits,
  unpackBitsRef,
  weightErrorRef,
  weightErrorSums,
  type IntBits,
} from "../../src/quantize/blockwise.js";
import { codeEntropy } from "../../src/quantize/algorithms/entropy.js";
import { sumQuadraticFormsRef } from "../../src/quantize/algorithms/linalg.js";
import { makeWeights, realBackends, rng } from "./helpers.js";

const backends = await realBackends();
const SHAPES: [number, number][] = [
  [1, 1],
  [1, 7],
  [3, 5],
  [4, 4],
  [5, 33],
  [17, 31],
  [33, 129],
  [64, 40],
  [129, 95],
];

const bytes = (a: ArrayBufferView): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

afterAll(() => setActiveKernels(undefined));

describe.each(backends.map((b) => [b.backend, b] as const))("%s per-element passes", (_name, kernels) => {
  const raw = kernels.raw;

  it("transposes exactly on awkward shapes", () => {
    for (const [rows, cols] of [...SHAPES, [300, 7] as [number, number], [7, 300] as [number, number]]) {
      const w = makeWeights(rows * cols, "heavy", rows + cols);
      const out = new Float32Array(rows * cols);
      raw.transposeF32(w, rows, cols, out, 2);
      expect(bytes(out).equals(bytes(transposeRef(w, rows, cols))), `${rows}x${cols}`).toBe(true);
    }
  });

  it("fresh buffers the kernels fill: zeroed, whole, and on huge pages where the native addon can ask (Linux)", () => {
    const big = freshFloat32(3 << 20, raw); // 12 MiB
    expect(big.length).toBe(3 << 20);
    expect(big.byteOffset).toBe(0);
    expect(big.every((v) => v === 0)).toBe(true);
    const small = freshBytes(1000, raw);
    expect(small.length).toBe(1000);
    if (raw.adviseHugePages && process.platform === "linux") {
      const b = new Uint8Array(8 << 20);
      const advised = raw.adviseHugePages(b);
      // the whole 2 MiB pages inside the buffer: three or four of them, never more than the buffer holds
      expect(advised % (2 << 20)).toBe(0);
      expect(advised).toBeGreaterThanOrEqual(3 * (2 << 20));
      expect(advised).toBeLessThanOrEqual(b.byteLength);
      expect(raw.adviseHugePages(new Uint8Array(4096))).toBe(0);
    } else expect(kernels.backend).not.toBe("native");
    // the transposes write into them exactly
    const w = makeWeights(1024 * 1100, "heavy", 5);
    const out = freshFloat32(w.length, raw);
    raw.transposeF32(w, 1024, 1100, out, 2);
    expect(bytes(out).equals(bytes(transposeRef(w, 1024, 1100)))).toBe(true);
  });

  it("decodes unpacked codes, packs and unpacks bits like the references", () => {
    for (const bits of [2, 3, 4, 8] as IntBits[])
      for (const bs of [8, 16, 24, 32, 128])
        for (const [n, k] of SHAPES) {
          const q = quantizeBlockwiseRef(makeWeights(n * k, "gaussian", bits * k), n, k, { bits, blockSize: bs, symmetric: (k & 1) === 1, clipSearch: false });
          const out = new Float32Array(n * k);
          raw.dequantizeCodes(q.codes, q.scales, q.zeroPoints, n, k, bs, out, 2);
          const ref = new Float32Array(n * k);
          dequantizeCodesRef(q.codes, q.scales, q.zeroPoints, n, k, bs, ref);
          expect(bytes(out).equals(bytes(ref)), `deq bits=${bits} bs=${bs} ${n}x${k}`).toBe(true);
          const packed = new Uint8Array(n * q.blocksPerRow * Math.ceil((bs * bits) / 8));
          raw.packBits(q.codes, bits, bs, packed);
          expect(bytes(packed).equals(bytes(packBitsRef(q.codes, bits, bs))), `pack bits=${bits} bs=${bs}`).toBe(true);
          const un = new Uint8Array(q.codes.length);
          raw.unpackBits(packed, bits, bs, n * q.blocksPerRow, un);
          expect(bytes(un).equals(bytes(unpackBitsRef(packed, bits, bs, n * q.blocksPerRow)))).toBe(true);
        }
  });

  it("sums the weight error in float64 exactly as the reference (NaN and zeros included)", () => {
    for (const [n, k] of [...SHAPES, [3, 600] as [number, number]]) {
      const w = makeWeights(n * k, "heavy", n * 31 + k);
      const r = rng(k);
      const deq = w.map((v) => v + (r() - 0.5) * 1e-3);
      if (n * k > 4) deq[3] = NaN;
      const mine = { sums: new Float64Array(3), colErr: new Float64Array(k), colNorm: new Float64Array(k) };
      const ref = { sums: new Float64Array(3), colErr: new Float64Array(k), colNorm: new Float64Array(k) };
      raw.weightError(w, deq, n, k, mine.sums, mine.colErr, mine.colNorm);
      weightErrorRef(w, deq, n, k, ref.sums, ref.colErr, ref.colNorm);
      expect(mine, `${n}x${k}`).toEqual(ref);
    }
  });

  it("sums the error against codes decoded on the fly exactly as decode-then-sum", () => {
    for (const [n, k, bs] of [
      [1, 7, 8],
      [5, 33, 16],
      [17, 100, 24],
      [9, 300, 256],
    ] as [number, number, number][]) {
      const w = makeWeights(n * k, "heavy", n + k);
      const q = quantizeBlockwiseRef(w, n, k, { bits: 3, blockSize: bs, symmetric: false, clipSearch: false });
      const mine = { sums: new Float64Array(3), colErr: new Float64Array(k), colNorm: new Float64Array(k) };
      raw.weightErrorCodes(w, q.codes, q.scales, q.zeroPoints, n, k, bs, mine.sums, mine.colErr, mine.colNorm);
      const ref = { sums: new Float64Array(3), colErr: new Float64Array(k), colNorm: new Float64Array(k) };
      weightErrorRef(w, dequantizeBlockwiseRef(q), n, k, ref.sums, ref.colErr, ref.colNorm);
      expect(mine, `${n}x${k} bs ${bs}`).toEqual(ref);
    }
  });

  it("counts codes and refuses one outside the alphabet", () => {
    const codes = Uint8Array.from({ length: 1001 }, (_, i) => (i * 7) % 13);
    const h = new Float64Array(16);
    expect(raw.histogramU8(codes, 13, h)).toBe(true);
    const ref = new Array(13).fill(0);
    for (const c of codes) ref[c]++;
    expect(Array.from(h.subarray(0, 13))).toEqual(ref);
    expect(raw.histogramU8(codes, 12, h)).toBe(false);
    expect(raw.histogramU8(new Uint8Array(0), 4, h)).toBe(true);
    expect(Array.from(h.subarray(0, 4))).toEqual([0, 0, 0, 0]);
  });

  it("importance-weighted clip search gives the reference's bytes", () => {
    for (const bits of [2, 3, 4, 8] as IntBits[])
      for (const [n, k] of [
        [5, 33],
        [17, 100],
        [8, 256],
      ] as [number, number][])
        for (const symmetric of [false, true]) {
          const w = makeWeights(n * k, "heavy", bits + k);
          if (k === 100) {
            w[5] = NaN; // blocks with NaN or infinity take the scalar path
            w[140] = Infinity;
            w[300] = 1e30; // far past any code: the vector path's clamp must not change it
          }
          const r = rng(n + k);
          const imp = Float32Array.from({ length: k }, () => r() * 3);
          const spec = { bits, blockSize: 32, symmetric, clipSearch: true };
          const ref = quantizeBlockwiseRef(w, n, k, spec, imp);
          const codes = new Uint8Array(ref.codes.length);
          const scales = new Float32Array(ref.scales.length);
          const zps = new Uint8Array(ref.zeroPoints.length);
          raw.quantizeIntWeighted(w, n, k, bits, 32, symmetric, true, imp, codes, scales, zps, 2);
          expect(bytes(codes).equals(bytes(ref.codes)), `bits=${bits} ${n}x${k} sym=${symmetric}`).toBe(true);
          expect(bytes(scales).equals(bytes(ref.scales))).toBe(true);
          expect(bytes(zps).equals(bytes(ref.zeroPoints))).toBe(true);
        }
  });

  it("blockwise helpers route through the installed kernels with the references' results", () => {
    setActiveKernels(raw);
    try {
      const n = 37,
        k = 71;
      const w = makeWeights(n * k, "heavy", 5);
      expect(bytes(transpose(w, n, k)).equals(bytes(transposeRef(w, n, k)))).toBe(true);
      const q = quantizeBlockwiseRef(w, n, k, { bits: 3, blockSize: 16, symmetric: false, clipSearch: true });
      expect(bytes(dequantizeBlockwise(q)).equals(bytes(dequantizeBlockwiseRef(q)))).toBe(true);
      expect(bytes(packBits(q.codes, 3, 16)).equals(bytes(packBitsRef(q.codes, 3, 16)))).toBe(true);
      const p = packBitsRef(q.codes, 3, 16);
      expect(bytes(unpackBits(p, 3, 16, n * q.blocksPerRow)).equals(bytes(unpackBitsRef(p, 3, 16, n * q.blocksPerRow)))).toBe(true);
      const deq = dequantizeBlockwiseRef(q);
      const mine = weightErrorSums(w, deq, n, k);
      const ref = { sums: new Float64Array(3), colErr: new Float64Array(k), colNorm: new Float64Array(k) };
      weightErrorRef(w, deq, n, k, ref.sums, ref.colErr, ref.colNorm);
      expect(mine).toEqual(ref);
      const imp = Float32Array.from({ length: k }, (_, i) => 1 + (i % 5));
      const spec = { bits: 4 as IntBits, blockSize: 16, symmetric: false, clipSearch: true };
      expect(quantizeBlockwiseWeighted(w, n, k, spec, imp)).toEqual(quantizeBlockwiseRef(w, n, k, spec, imp));
      expect(() => codeEntropy(Uint8Array.of(1, 2, 9), 8)).toThrow(/code 9 at 2/);
      expect(codeEntropy(Uint8Array.of(1, 1, 2, 3), 4).histogram).toEqual(Uint32Array.of(0, 2, 1, 1));
    } finally {
      setActiveKernels(undefined);
    }
  });
});

describe.each(backends.map((b) => [b.backend, b] as const))("%s quadratic forms", (_name, kernels) => {
  it("sums d^T H d over rows bit-identically to the reference (zeros skipped, awkward sizes)", () => {
    for (const [rows, k] of [
      [1, 2],
      [3, 5],
      [8, 17],
      [9, 33],
      [20, 70],
      [64, 129],
    ] as [number, number][]) {
      const r = rng(rows * 100 + k);
      const a = Float64Array.from({ length: k * k }, () => r() - 0.5);
      const h = new Float64Array(k * k);
      for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) h[i * k + j] = a[i * k + j]! + a[j * k + i]! + (i === j ? k : 0);
      const d = Float64Array.from({ length: rows * k }, (_, i) => (i % 5 === 2 ? 0 : r() - 0.5));
      expect(kernels.raw.sumQuadraticForms(h, d, rows, k, 2), `${rows}x${k}`).toBe(sumQuadraticFormsRef(h, d, rows, k));
    }
  });
});
