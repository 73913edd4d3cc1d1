import { describe, expect, it } from "vitest";
import { gaussianSource } from "../../src/quantize/algorithms/linalg.js";
import {
  allocateBits,
  expectedError,
  fisherProxy,
  layerSensitivity,
  meanBpw,
  quantizationRatioPlan,
  uniformPlan,
  type BitAssignment,
  type FormatOption,
  type LayerSensitivityInput,
} from "../../src/quantize/algorithms/mixed.js";

// Block 32, fp16 scale and a zero point of the code width: bpw = bits + (16 + bits) / 32.
const option = (bits: number): FormatOption => ({ bits, bpw: bits + (16 + bits) / 32 });
const OPTIONS = [2, 3, 4, 8].map(option);

/**
 * Transformer-like layers: per block q, k, v, o (d x d) and up, down (4 d x d); input energy differs by
 * layer type and depth (down projections see post-activation outliers), as calibration statistics show.
 */
function layers(blocks: number, seed: number, d = 256): LayerSensitivityInput[] {
  const g = gaussianSource(seed);
  const out: LayerSensitivityInput[] = [];
  for (let b = 0; b < blocks; b++) {
    const depth = b === 0 || b === blocks - 1 ? 4 : 1;
    for (const [kind, params, fisher] of [
      ["q", d * d, 1],
      ["k", d * d, 1],
      ["v", d * d, 1],
      ["o", d * d, 0.5],
      ["up", 4 * d * d, 1],
      ["down", 4 * d * d, 6],
    ] as const) {
      out.push({ name: `b${b}.${kind}`, params, rmsW: 0.02 * Math.exp(0.3 * g()), meanFisher: fisher * depth * Math.exp(1.2 * g()) });
    }
  }
  return out;
}

function isMonotone(ls: readonly LayerSensitivityInput[], plan: readonly BitAssignment[]): boolean {
  for (let i = 0; i < ls.length; i++) {
    for (let j = 0; j < ls.length; j++) if (layerSensitivity(ls[i]!) < layerSensitivity(ls[j]!) && plan[i]!.bits > plan[j]!.bits) return false;
  }
  return true;
}

describe("mixed precision", () => {
  it("the Fisher proxy is the mean of E[x^2]", () => {
    expect(fisherProxy(Float64Array.from([1, 2, 3, 6]))).toBe(3);
    expect(fisherProxy(new Float64Array(0))).toBe(0);
    expect(layerSensitivity({ rmsW: 0.25, meanFisher: 16 })).toBe(-2 + 2);
  });

  it("follows b_i = b + d_i - mean(d) where the formats allow it exactly", () => {
    // d = log2 rms + 0.5 log2 F: 0, 1, 2 with equal params -> mean 1 -> bits 3, 4, 5 at target 4.
    const ls = [0, 1, 2].map((d, i) => ({ name: `l${i}`, params: 100, rmsW: 2 ** d, meanFisher: 1 }));
    const opts = [2, 3, 4, 5, 6].map((bits) => ({ bits, bpw: bits }));
    expect(allocateBits(ls, 4, opts).map((a) => a.bits)).toEqual([3, 4, 5]);
    // Parameter weighting: a large insensitive layer pulls the mean; the budget is met exactly.
    const big = [{ ...ls[0]!, params: 300 }, ls[1]!, ls[2]!];
    const plan = allocateBits(big, 4, opts);
    expect(meanBpw(big, plan)).toBeLessThanOrEqual(4);
    expect(isMonotone(big, plan)).toBe(true);
  });

  it("meets the target, is monotone in d, uses the budget, and beats uniform bits at the same bpw", () => {
    const ls = layers(6, 3);
    const lines: string[] = [];
    for (const uniformBits of [3, 4]) {
      const target = option(uniformBits).bpw;
      const plan = allocateBits(ls, target, OPTIONS);
      const bpw = meanBpw(ls, plan);
      expect(bpw).toBeLessThanOrEqual(target + 1e-9);
      expect(isMonotone(ls, plan)).toBe(true);
      // No single monotone-preserving promotion still fits.
      for (let i = 0; i < ls.length; i++) {
        const o = OPTIONS.findIndex((x) => x.bits === plan[i]!.bits);
        if (o === OPTIONS.length - 1) continue;
        const promoted = plan.map((a, j) => (j === i ? { ...a, ...OPTIONS[o + 1]! } : a));
        if (isMonotone(ls, promoted)) expect(meanBpw(ls, promoted)).toBeGreaterThan(target);
      }
      const uni = uniformPlan(ls, option(uniformBits));
      const eFisher = expectedError(ls, plan);
      const eUniform = expectedError(ls, uni);
      lines.push(
        `target ${target} bpw: fisher ${eFisher.toExponential(3)} at ${bpw.toFixed(3)} bpw (bits ${plan.map((p) => p.bits).join(",")}) vs uniform int${uniformBits} ${eUniform.toExponential(3)}: ratio ${(eFisher / eUniform).toFixed(3)}`,
      );
      const eNearest = expectedError(ls, allocateBits(ls, target, OPTIONS, { rounding: "nearest" }));
      lines.push(`  rule + nearest rounding + d-order repair: ${eNearest.toExponential(3)} (ratio ${(eNearest / eUniform).toFixed(3)})`);
      expect(eFisher).toBeLessThan(0.8 * eUniform);
      expect(eNearest).toBeLessThan(eUniform);
      expect(eFisher).toBeLessThanOrEqual(eNearest);
    }
    console.log(lines.join("\n"));
  });

  it("comes within a small factor of the brute-force optimum over all format combinations", () => {
    const ls = layers(6, 11)
      .filter((_, i) => i % 6 !== 4)
      .slice(0, 8);
    const target = option(3).bpw;
    let best = Infinity;
    const idx = new Array<number>(ls.length).fill(0);
    for (let c = 0; c < OPTIONS.length ** ls.length; c++) {
      let v = c;
      for (let i = 0; i < ls.length; i++) {
        idx[i] = v % OPTIONS.length;
        v = Math.floor(v / OPTIONS.length);
      }
      const plan = ls.map((l, i) => ({ name: l.name, ...OPTIONS[idx[i]!]! }));
      if (meanBpw(ls, plan) <= target + 1e-12 && isMonotone(ls, plan)) best = Math.min(best, expectedError(ls, plan));
    }
    const ours = expectedError(ls, allocateBits(ls, target, OPTIONS));
    const nearest = expectedError(ls, allocateBits(ls, target, OPTIONS, { rounding: "nearest" }));
    const uniform = expectedError(ls, uniformPlan(ls, option(3)));
    console.log(
      `${ls.length} layers at ${target} bpw: brute-force optimum (monotone plans) ${best.toExponential(3)}, fisher ${ours.toExponential(3)}, rule+nearest ${nearest.toExponential(3)}, uniform ${uniform.toExponential(3)}`,
    );
    expect(ours).toBeGreaterThanOrEqual(best);
    expect(ours).toBeLessThan(1.5 * best);
    expect(ours).toBeLessThanOrEqual(uniform);
    expect(ours).toBeLessThanOrEqual(nearest);
  });

  it("puts inert layers (zero Fisher) at the lowest format and rejects an impossible target", () => {
    const ls = [...layers(1, 5), { name: "dead", params: 1 << 16, rmsW: 0.02, meanFisher: 0 }];
    const plan = allocateBits(ls, option(4).bpw, OPTIONS);
    expect(plan[6]!.bits).toBe(2);
    expect(meanBpw(ls, plan)).toBeLessThanOrEqual(option(4).bpw);
    expect(() => allocateBits(ls, 2, OPTIONS)).toThrow(/below the smallest format/);
  });

  it("Q_r: the least sensitive layers go low, up to the share qr", () => {
    const ls = layers(2, 7).map((l) => ({ name: l.name, params: l.params, sensitivity: layerSensitivity(l) }));
    const total = ls.reduce((s, l) => s + l.params, 0);
    for (const qr of [0, 0.3, 0.5, 0.8, 1]) {
      const { plan, lowShare } = quantizationRatioPlan(ls, qr, option(2), option(4));
      expect(lowShare).toBeLessThanOrEqual(qr + 1e-12);
      const lowParams = ls.reduce((s, l, i) => s + (plan[i]!.bits === 2 ? l.params : 0), 0);
      expect(lowParams / total).toBeCloseTo(lowShare, 12);
      const maxLow = Math.max(-Infinity, ...ls.filter((_, i) => plan[i]!.bits === 2).map((l) => l.sensitivity));
      const minHigh = Math.min(Infinity, ...ls.filter((_, i) => plan[i]!.bits === 4).map((l) => l.sensitivity));
      expect(maxLow).toBeLessThanOrEqual(minHigh);
      if (qr === 1) expect(lowShare).toBe(1);
      if (qr === 0) expect(lowShare).toBe(0);
    }
    expect(() => quantizationRatioPlan(ls, 1.5, option(2), option(4))).toThrow(/qr/);
  });
});
