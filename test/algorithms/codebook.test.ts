import { describe, expect, it } from "vitest";
import {
  codebookWeights,
  dequantizeCodebook,
  fitStudentT,
  lloydMax,
  logGamma,
  normalizeByBlock,
  quantizeCodebook,
  studentTGrid,
  tableMse,
} from "../../src/quantize/algorithms/codebook.js";
import { gaussianSource } from "../../src/quantize/algorithms/linalg.js";
import { NF4_TABLE, quantizeTableRef } from "../../src/quantize/tables.js";
import { heavyTailWeights, studentTSource } from "./synthetic.js";

const sample = (count: number, next: () => number): Float32Array => Float32Array.from({ length: count }, next);

/** Exact 1-D k-means by dynamic programming over sorted values (O(levels N^2)): the brute-force oracle. */
function optimalKMeansMse(values: Float32Array, levels: number): number {
  const x = Float64Array.from(values).sort();
  const n = x.length;
  const s1 = new Float64Array(n + 1);
  const s2 = new Float64Array(n + 1);
  for (let i = 0; i < n; i++) {
    s1[i + 1] = s1[i]! + x[i]!;
    s2[i + 1] = s2[i]! + x[i]! * x[i]!;
  }
  const cost = (a: number, b: number): number => s2[b]! - s2[a]! - (s1[b]! - s1[a]!) ** 2 / (b - a);
  let prev = Float64Array.from({ length: n + 1 }, (_, i) => (i === 0 ? 0 : cost(0, i)));
  for (let l = 2; l <= levels; l++) {
    const cur = new Float64Array(n + 1).fill(Infinity);
    cur[0] = 0;
    for (let i = 1; i <= n; i++) for (let j = l - 1; j < i; j++) cur[i] = Math.min(cur[i]!, prev[j]! + cost(j, i));
    prev = cur;
  }
  return prev[n]! / n;
}

/** The best evenly spaced symmetric grid of `levels` points (range scanned). */
function bestUniformMse(values: Float32Array, levels: number): number {
  let best = Infinity;
  let max = 0;
  for (const v of values) max = Math.max(max, Math.abs(v));
  for (let i = 1; i <= 200; i++) {
    const r = (max * i) / 200;
    best = Math.min(
      best,
      tableMse(
        values,
        Float32Array.from({ length: levels }, (_, j) => -r + (2 * r * j) / (levels - 1)),
      ),
    );
  }
  return best;
}

describe("Lloyd-Max", () => {
  it("recovers the classical Lloyd-Max quantizers of N(0, 1)", () => {
    const x = sample(40_000, gaussianSource(1));
    const two = lloydMax(x, 2);
    expect(two[1]!).toBeCloseTo(Math.sqrt(2 / Math.PI), 1);
    expect(Math.abs(two[1]! - 0.7979)).toBeLessThan(0.02);
    expect(Math.abs(tableMse(x, two) - 0.3634)).toBeLessThan(0.01);
    const four = lloydMax(x, 4);
    expect(Math.abs(four[2]! - 0.4528)).toBeLessThan(0.02);
    expect(Math.abs(four[3]! - 1.51)).toBeLessThan(0.03);
    expect(Math.abs(tableMse(x, four) - 0.1175)).toBeLessThan(0.005);
    expect(Math.abs(tableMse(x, lloydMax(x, 8)) - 0.03454)).toBeLessThan(0.002);
  });

  it("comes within 2% of the exact 1-D k-means optimum (dynamic programming)", () => {
    const x = sample(300, studentTSource(2, 4));
    const lines: string[] = [];
    for (const levels of [3, 4, 8, 16]) {
      const opt = optimalKMeansMse(x, levels);
      const ours = tableMse(x, lloydMax(x, levels));
      const quantileStart = tableMse(x, lloydMax(x, levels, { init: "quantile" }));
      lines.push(`${levels} levels: optimum ${opt.toExponential(4)}, Lloyd-Max ${ours.toExponential(4)}, from quantiles ${quantileStart.toExponential(4)}`);
      expect(ours).toBeGreaterThanOrEqual(opt * (1 - 1e-9));
      expect(ours).toBeLessThan(opt * 1.02);
      expect(quantileStart).toBeGreaterThanOrEqual(opt * (1 - 1e-9));
    }
    console.log(`t(4), 300 values:\n${lines.join("\n")}`);
  });

  it("beats the best uniform grid on Gaussian and Student-t(4) data, from either start", () => {
    const lines: string[] = [];
    for (const [name, next] of [
      ["gaussian", gaussianSource(3)],
      ["student-t(4)", studentTSource(4, 4)],
    ] as const) {
      const x = sample(20_000, next);
      const uniform = bestUniformMse(x, 16);
      const lo = tableMse(x, lloydMax(x, 16));
      const lq = tableMse(x, lloydMax(x, 16, { init: "quantile" }));
      const lu = tableMse(x, lloydMax(x, 16, { init: "uniform" }));
      lines.push(
        `${name} 16 levels: best uniform ${uniform.toExponential(3)}, Lloyd-Max ${lo.toExponential(3)} (quantile start ${lq.toExponential(3)}, uniform start ${lu.toExponential(3)})`,
      );
      expect(lo).toBeLessThan(uniform);
      expect(lq).toBeLessThan(uniform);
      expect(lu).toBeLessThan(uniform);
      expect(lo).toBeLessThanOrEqual(lq * 1.001);
    }
    console.log(lines.join("\n"));
  });

  it("treats integer weights as repeated values, and is deterministic and sorted", () => {
    const x = sample(500, gaussianSource(5));
    const w = Float64Array.from({ length: 500 }, (_, i) => 1 + (i % 3));
    const repeated = Float32Array.from(Array.from(x).flatMap((v, i) => new Array<number>(w[i]!).fill(v)));
    const a = lloydMax(x, 6, { weights: w });
    const b = lloydMax(repeated, 6);
    for (let j = 0; j < 6; j++) expect(a[j]!).toBeCloseTo(b[j]!, 5);
    expect(Array.from(lloydMax(x, 6))).toEqual(Array.from(lloydMax(Float32Array.from(x), 6)));
    for (let j = 1; j < 6; j++) expect(a[j]!).toBeGreaterThanOrEqual(a[j - 1]!);
    // Fewer distinct values than levels: every value is represented exactly.
    expect(tableMse(Float32Array.from([1, 1, 2, 2, 3]), lloydMax(Float32Array.from([1, 1, 2, 2, 3]), 4))).toBe(0);
  });
});

describe("Student-t fit and the cube-root grid", () => {
  it("log-gamma matches known values", () => {
    expect(logGamma(0.5)).toBeCloseTo(Math.log(Math.sqrt(Math.PI)), 12);
    expect(logGamma(5)).toBeCloseTo(Math.log(24), 12);
    expect(logGamma(1)).toBeCloseTo(0, 12);
    expect(logGamma(10.5)).toBeCloseTo(13.940625219403763, 10);
  });

  it("recovers nu and scale of Student-t data, and a large nu for Gaussian data", () => {
    const t = studentTSource(6, 4);
    const fit = fitStudentT(sample(20_000, () => 0.5 * t()));
    expect(fit.nu).toBeGreaterThanOrEqual(3);
    expect(fit.nu).toBeLessThanOrEqual(5);
    expect(Math.abs(fit.scale - 0.5) / 0.5).toBeLessThan(0.1);
    expect(fitStudentT(sample(20_000, gaussianSource(7))).nu).toBeGreaterThanOrEqual(20);
  });

  it("is symmetric, inside the range, and denser near zero for heavier tails", () => {
    const g = studentTGrid(new Float32Array(0), 16, { fit: { nu: 3, scale: 0.2 }, range: 1 });
    for (let j = 0; j < 16; j++) expect(g[j]!).toBe(-g[15 - j]!);
    expect(g[0]).toBe(-1);
    const light = studentTGrid(new Float32Array(0), 16, { fit: { nu: 1000, scale: 0.5 }, range: 1 });
    expect(g[8]!).toBeLessThan(light[8]!);
    const mid = studentTGrid(new Float32Array(0), 16, { fit: { nu: 3, scale: 0.2 }, range: 1, placement: "midpoint" });
    expect(mid[15]!).toBeLessThan(1);
  });

  it("on block-normalized heavy-tailed weights: cube-root grid beats the uniform grid (and NF4); Lloyd-Max is best", () => {
    const n = 128;
    const k = 256;
    const lines: string[] = [];
    for (const [nu, blockSize] of [
      [4, 64],
      [4, 32],
      [3, 128],
    ] as const) {
      const wT = heavyTailWeights(n, k, 10 + nu, nu);
      const normalized = normalizeByBlock(wT, n, k, blockSize);
      const mse = (table: Float32Array): number => {
        const deq = dequantizeCodebook(quantizeCodebook(wT, n, k, blockSize, table));
        let s = 0;
        for (let i = 0; i < n * k; i++) s += (wT[i]! - deq[i]!) ** 2;
        return s / (n * k);
      };
      const fit = fitStudentT(normalized);
      const uniform = mse(Float32Array.from({ length: 16 }, (_, j) => -1 + (2 * j) / 15));
      const tGrid = mse(studentTGrid(normalized, 16, { fit }));
      const tMid = mse(studentTGrid(normalized, 16, { fit, placement: "midpoint" }));
      const nf4 = mse(Float32Array.from(NF4_TABLE).sort());
      const lloyd = mse(lloydMax(normalized, 16));
      const lloydW = mse(lloydMax(normalized, 16, { weights: codebookWeights(wT, n, k, blockSize) }));
      lines.push(
        `t(${nu}) weights, block ${blockSize} (fit nu ${fit.nu}, scale ${fit.scale.toFixed(3)}): MSE uniform ${uniform.toExponential(3)}, NF4 ${nf4.toExponential(3)}, ` +
          `cube-root t grid ${tGrid.toExponential(3)} (midpoint placement ${tMid.toExponential(3)}), Lloyd-Max ${lloyd.toExponential(3)}, scale^2-weighted Lloyd-Max ${lloydW.toExponential(3)}`,
      );
      expect(tGrid).toBeLessThan(0.9 * uniform);
      expect(tGrid).toBeLessThan(nf4);
      expect(tGrid).toBeLessThan(tMid);
      expect(lloyd).toBeLessThan(tGrid * 1.01);
      expect(lloydW).toBeLessThanOrEqual(lloyd);
    }
    console.log(lines.join("\n"));
  });
});

describe("codebook format", () => {
  it("encodes exactly as the emitter's table quantizer and round-trips table values", () => {
    const n = 5;
    const k = 70;
    const wT = heavyTailWeights(n, k, 21);
    wT.fill(0, 32, 64); // an all-zero block
    const table = lloydMax(normalizeByBlock(wT, n, k, 32), 8);
    const ours = quantizeCodebook(wT, n, k, 32, table);
    const ref = quantizeTableRef(wT, n, k, "codebook", 32, table);
    expect(Array.from(ours.indices)).toEqual(Array.from(ref.codes));
    expect(Array.from(ours.scales)).toEqual(Array.from(ref.scales));
    const deq = dequantizeCodebook(ours);
    for (let i = 0; i < n * k; i++) {
      const bi = Math.floor(i / k) * ours.blocksPerRow + Math.floor((i % k) / 32);
      expect(table.map((t) => Math.fround(t * ours.scales[bi]!)).includes(deq[i]!)).toBe(true);
    }
    for (let i = 32; i < 64; i++) expect(Math.abs(deq[i]!)).toBeLessThanOrEqual(Math.min(...Array.from(table, Math.abs)));
  });
});
