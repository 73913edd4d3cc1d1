import { describe, expect, it } from "vitest";
import { dequantizeBlockwise, quantizeBlockwiseRef, type BlockwiseSpec } from "../../src/quantize/blockwise.js";
import { gptqObjective } from "../../src/quantize/algorithms/gptq.js";
import { gaussianSource, orthonormalize } from "../../src/quantize/algorithms/linalg.js";
import { correctedWeight, lowRankCorrection, refineGroupScales } from "../../src/quantize/algorithms/lowrank.js";
import { activations, heavyTailWeights, statsOf } from "./synthetic.js";

/** Columns of a random orthonormal basis: `count` vectors of length `len`, back to back. */
function orthoBasis(len: number, count: number, seed: number): Float64Array {
  const g = gaussianSource(seed);
  const v = Float64Array.from({ length: len * count }, () => g());
  orthonormalize(v, len, count);
  return v;
}

/**
 * An error matrix E ([n][k]) whose activation-weighted singular values (those of L^T E^T, H = diag(h))
 * are exactly `sigma`: E = V diag(sigma) U^T diag(1/sqrt(h)).
 */
function knownSpectrum(n: number, k: number, sigma: number[], h: Float64Array, seed: number): Float32Array {
  const m = sigma.length;
  const u = orthoBasis(k, m, seed);
  const v = orthoBasis(n, m, seed + 1);
  const e = new Float32Array(n * k);
  for (let r = 0; r < n; r++) {
    for (let c = 0; c < k; c++) {
      let s = 0;
      for (let i = 0; i < m; i++) s += v[i * n + r]! * sigma[i]! * u[i * k + c]!;
      e[r * k + c] = s / Math.sqrt(h[c]!);
    }
  }
  return e;
}

const tail = (sigma: number[], r: number): number => sigma.slice(r).reduce((s, x) => s + x * x, 0);

describe("low-rank error correction (LQER)", () => {
  const n = 40;
  const k = 60;
  const g = gaussianSource(5);
  const h = Float64Array.from({ length: k }, () => Math.exp(1.5 * g()));
  const sigma = Array.from({ length: n }, (_, i) => 0.8 ** i);
  const e = knownSpectrum(n, k, sigma, h, 9);
  const zero = new Float32Array(n * k);

  it("reaches the Eckart-Young optimum: error left = sum of the remaining squared singular values", () => {
    for (const method of ["exact", "randomized"] as const) {
      for (const rank of [1, 4, 8]) {
        const c = lowRankCorrection(e, zero, n, k, rank, { meanSquare: h }, { method });
        expect(Math.abs(c.errorBefore - tail(sigma, 0)) / tail(sigma, 0)).toBeLessThan(1e-6);
        expect(Math.abs(c.errorAfter - tail(sigma, rank)) / tail(sigma, rank)).toBeLessThan(method === "exact" ? 1e-5 : 1e-4);
        for (let i = 0; i < rank; i++) expect(c.singularValues[i]!).toBeCloseTo(sigma[i]!, 5);
        // The stored float32 factors deliver that error.
        const after = gptqObjective(e, Float32Array.from(correctedWeight(zero, n, k, c)), h, true);
        expect(Math.abs(after - c.errorAfter) / c.errorAfter).toBeLessThan(1e-4);
        expect(c.extraParams).toBe(rank * (k + n));
        expect(c.a.length).toBe(k * rank);
        expect(c.b.length).toBe(rank * n);
      }
    }
  });

  it("matches a brute-force search over directions for rank 1 with a full Gram matrix", () => {
    const nn = 3;
    const kk = 8;
    const x = activations(200, kk, 3, { outliers: 1, outlierScale: 5, factors: 2 });
    const { gram } = statsOf(x, 200, kk);
    const w = heavyTailWeights(nn, kk, 4);
    const q = dequantizeBlockwise(quantizeBlockwiseRef(w, nn, kk, { bits: 2, blockSize: 8, symmetric: true, clipSearch: false }));
    const c = lowRankCorrection(w, q, nn, kk, 1, { gram }, { method: "exact" });
    // Best rank-1 C = E^T v v^T over unit v in R^3: error = tr(G) - max_v v^T G v, G = E H E^T. Scan the sphere.
    const ed = Float64Array.from(w, (v, i) => v - q[i]!);
    const gm = new Float64Array(nn * nn);
    for (let r = 0; r < nn; r++) {
      for (let s = 0; s < nn; s++) {
        for (let i = 0; i < kk; i++) for (let j = 0; j < kk; j++) gm[r * nn + s]! += ed[r * kk + i]! * gram[i * kk + j]! * ed[s * kk + j]!;
      }
    }
    const trace = gm[0]! + gm[4]! + gm[8]!;
    expect(Math.abs(c.errorBefore - trace) / trace).toBeLessThan(1e-9);
    let top = 0;
    for (let a = 0; a <= 600; a++) {
      for (let b = 0; b < 1200; b++) {
        const th = (Math.PI * a) / 600;
        const ph = (2 * Math.PI * b) / 1200;
        const v = [Math.sin(th) * Math.cos(ph), Math.sin(th) * Math.sin(ph), Math.cos(th)];
        let quad = 0;
        for (let r = 0; r < 3; r++) for (let s = 0; s < 3; s++) quad += v[r]! * gm[r * 3 + s]! * v[s]!;
        top = Math.max(top, quad);
      }
    }
    const best = trace - top;
    expect(c.errorAfter).toBeLessThanOrEqual(best * (1 + 1e-6));
    expect(c.errorAfter).toBeGreaterThan(best - 1e-4 * trace);
  });

  it("on a quantized layer: rank 8 removes a large share of the output error; activation weighting beats plain SVD", () => {
    const nn = 96;
    const kk = 192;
    const w = heavyTailWeights(nn, kk, 31);
    const x = activations(768, kk, 32, { outliers: 4, outlierScale: 15 });
    const { meanSquare, gram } = statsOf(x, 768, kk);
    const q = dequantizeBlockwise(quantizeBlockwiseRef(w, nn, kk, { bits: 3, blockSize: 64, symmetric: false, clipSearch: true }));
    const judge = (c: ReturnType<typeof lowRankCorrection>): number => gptqObjective(w, Float32Array.from(correctedWeight(q, nn, kk, c)), gram);
    const full = lowRankCorrection(w, q, nn, kk, 8, { gram }, { method: "exact" });
    const rand = lowRankCorrection(w, q, nn, kk, 8, { gram }, { method: "randomized" });
    const diag = lowRankCorrection(w, q, nn, kk, 8, { meanSquare });
    const plain = lowRankCorrection(w, q, nn, kk, 8, { meanSquare: new Float64Array(kk).fill(1) });
    const before = full.errorBefore;
    const r = { full: judge(full), rand: judge(rand), diag: judge(diag), plain: judge(plain) };
    console.log(
      `LQER rank 8 (int3 g64, k=${kk} n=${nn}, +${((full.extraParams / (nn * kk)) * 100).toFixed(1)}% params): output error ${before.toExponential(3)} -> ` +
        `gram ${(r.full / before).toFixed(3)}, randomized ${(r.rand / before).toFixed(3)}, diag E[x^2] ${(r.diag / before).toFixed(3)}, unweighted SVD ${(r.plain / before).toFixed(3)} (share left)`,
    );
    expect(Math.abs(r.full - full.errorAfter) / r.full).toBeLessThan(1e-3);
    expect(r.full).toBeLessThan(0.7 * before);
    expect(r.rand).toBeLessThan(r.full * 1.02);
    expect(r.full).toBeLessThanOrEqual(r.diag);
    expect(r.diag).toBeLessThan(r.plain);
    expect(r.plain).toBeLessThan(before);
  });

  it("rank 0 is a no-op and the rank is capped by min(n, k)", () => {
    const c0 = lowRankCorrection(e, zero, n, k, 0, { meanSquare: h });
    expect(c0.errorAfter).toBe(c0.errorBefore);
    expect(c0.a.length).toBe(0);
    const big = lowRankCorrection(e.subarray(0, 5 * k), zero.subarray(0, 5 * k), 5, k, 50, { meanSquare: h });
    expect(big.rank).toBe(5);
    expect(big.errorAfter / big.errorBefore).toBeLessThan(1e-9);
  });
});

describe("per-group scale refinement", () => {
  const n = 32;
  const k = 96; // last block partial at block 40
  const w = heavyTailWeights(n, k, 41);
  const { meanSquare } = statsOf(activations(400, k, 42, { outliers: 3, outlierScale: 10 }), 400, k);
  const spec: BlockwiseSpec = { bits: 3, blockSize: 40, symmetric: false, clipSearch: false };
  const q = quantizeBlockwiseRef(w, n, k, spec);

  const blockErr = (qq: typeof q, row: number, blk: number, scale = qq.scales[row * qq.blocksPerRow + blk]!): number => {
    const bi = row * qq.blocksPerRow + blk;
    let s = 0;
    for (let c = blk * 40; c < Math.min(k, (blk + 1) * 40); c++) {
      const d = w[row * k + c]! - Math.fround((qq.codes[bi * 40 + (c % 40)]! - qq.zeroPoints[bi]!) * scale);
      s += meanSquare[c]! * d * d;
    }
    return s;
  };

  it("takes the least-squares scale for fixed codes: never worse per block, and a brute-force scan finds nothing better", () => {
    const r = refineGroupScales(w, q, { meanSquare });
    expect(Array.from(r.codes)).toEqual(Array.from(q.codes));
    expect(Array.from(r.zeroPoints)).toEqual(Array.from(q.zeroPoints));
    for (let row = 0; row < n; row++) for (let blk = 0; blk < 3; blk++) expect(blockErr(r, row, blk)).toBeLessThanOrEqual(blockErr(q, row, blk));
    for (const [row, blk] of [
      [0, 0],
      [5, 2],
      [31, 1],
    ] as const) {
      const s0 = q.scales[row * 3 + blk]!;
      let scan = Infinity;
      for (let i = -2000; i <= 2000; i++) scan = Math.min(scan, blockErr(q, row, blk, s0 * (1 + i / 10000)));
      expect(blockErr(r, row, blk)).toBeLessThanOrEqual(scan * (1 + 1e-9));
    }
    const before = gptqObjective(w, dequantizeBlockwise(q), meanSquare, true);
    const after = gptqObjective(w, dequantizeBlockwise(r), meanSquare, true);
    const reenc = gptqObjective(w, dequantizeBlockwise(refineGroupScales(w, q, { meanSquare }, { reencodeRounds: 3 })), meanSquare, true);
    console.log(
      `group scale refinement (int3 g40, diag E[x^2] error): ${before.toExponential(3)} -> fixed codes ${after.toExponential(3)} -> re-encoded ${reenc.toExponential(3)}`,
    );
    expect(after).toBeLessThan(0.97 * before);
    expect(reenc).toBeLessThanOrEqual(after);
  });

  it("keeps a block whose channels never fired finite (falls back to unweighted)", () => {
    const dead = Float64Array.from(meanSquare);
    dead.fill(0, 0, 40);
    const r = refineGroupScales(w, q, { meanSquare: dead });
    for (let row = 0; row < n; row++) expect(Number.isFinite(r.scales[row * 3]!)).toBe(true);
  });
});
