import { describe, expect, it } from "vitest";
import { dequantizeBlockwise, quantizeBlockwiseRef, type BlockwiseSpec } from "../../src/quantize/blockwise.js";
import { awqChannelScales, awqSearch } from "../../src/quantize/algorithms/awq.js";
import { gptqObjective } from "../../src/quantize/algorithms/gptq.js";
import { activations, heavyTailWeights, sampleOutputError, statsOf } from "./synthetic.js";

function setup(n: number, k: number, seed: number, rows: number, outliers = 4) {
  const wT = heavyTailWeights(n, k, seed);
  const x = activations(rows, k, seed + 500, { outliers, outlierScale: 10 });
  return { wT, x, ...statsOf(x, rows, k) };
}

describe("AWQ", () => {
  it("normalizes scales to sqrt(max*min) = 1, and alpha = 0 is the identity", () => {
    const m = Float64Array.from([0.5, 2, 8, 0]);
    const { scales, inverse } = awqChannelScales(m, 0.5);
    // floor for the dead channel: 8e-4; s = sqrt(m); max*min of s normalized to 1.
    expect(scales[2]! * scales[3]!).toBeCloseTo(1, 5);
    expect(scales[1]! / scales[0]!).toBeCloseTo(2, 5);
    for (let j = 0; j < 4; j++) expect(inverse[j]).toBe(Math.fround(1 / scales[j]!));
    expect(Array.from(awqChannelScales(m, 0).scales)).toEqual([1, 1, 1, 1]);
    const geo = awqChannelScales(Float64Array.from([1, 4, 16]), 1, "geomean").scales;
    expect(geo[0]! * geo[1]! * geo[2]!).toBeCloseTo(1, 5);
  });

  it("reports the output error the emitted graph (x * 1/s) @ dequant(Q(W s))^T really has on the samples", () => {
    const n = 24;
    const k = 64;
    const rows = 300;
    const { wT, x, meanAbs, meanSquare, gram } = setup(n, k, 3, rows);
    const spec: BlockwiseSpec = { bits: 3, blockSize: 32, symmetric: false, clipSearch: false };
    const r = awqSearch(wT, n, k, { meanAbs, meanSquare, gram }, spec, quantizeBlockwiseRef);
    const deq = dequantizeBlockwise(r.q);
    const effective = new Float64Array(n * k);
    for (let o = 0; o < n; o++) for (let j = 0; j < k; j++) effective[o * k + j] = deq[o * k + j]! * r.inverseScales[j]!;
    expect(Math.abs(sampleOutputError(x, rows, k, wT, effective, n) - r.error) / r.error).toBeLessThan(1e-9);
    // errorRtn is plain block-wise RTN.
    const rtn = gptqObjective(wT, dequantizeBlockwise(quantizeBlockwiseRef(wT, n, k, spec)), gram);
    expect(Math.abs(r.errorRtn - rtn) / rtn).toBeLessThan(1e-12);
    expect(r.curve.length).toBe(20);
    expect(r.curve[0]!.error).toBe(r.errorRtn);
    expect(r.curve.at(-1)!.alpha).toBe(0.95);
  });

  it("beats round-to-nearest when a few channels are outliers (int3 g64, int4 g128), with and without the Gram matrix", () => {
    const n = 96;
    const k = 256;
    const { wT, meanAbs, meanSquare, gram } = setup(n, k, 11, 1024, 6);
    const lines: string[] = [];
    for (const spec of [
      { bits: 3, blockSize: 64, symmetric: false, clipSearch: false },
      { bits: 4, blockSize: 128, symmetric: false, clipSearch: false },
    ] as BlockwiseSpec[]) {
      const full = awqSearch(wT, n, k, { meanAbs, meanSquare, gram }, spec, quantizeBlockwiseRef);
      const diag = awqSearch(wT, n, k, { meanAbs, meanSquare, gram }, spec, quantizeBlockwiseRef, { diagonalOnly: true, grid: 10 });
      // Chosen on the diagonal, judged on the full Gram matrix.
      const diagOnFull = gptqObjective(
        wT,
        Float32Array.from(dequantizeBlockwise(diag.q), (v, i) => v * diag.inverseScales[i % k]!),
        gram,
      );
      lines.push(
        `int${spec.bits} g${spec.blockSize}: rtn ${full.errorRtn.toExponential(3)} awq ${full.error.toExponential(3)} (alpha ${full.alpha}) ratio ${(full.error / full.errorRtn).toFixed(3)}; diag-searched alpha ${diag.alpha} on full H ${(diagOnFull / full.errorRtn).toFixed(3)}`,
      );
      expect(full.alpha).toBeGreaterThan(0);
      expect(full.error).toBeLessThan(0.8 * full.errorRtn);
      expect(diagOnFull).toBeLessThan(0.9 * full.errorRtn);
    }
    console.log(lines.join("\n"));
  });

  it("never does worse than RTN, and a row-subset search reports the error of those rows of the full result", () => {
    const n = 64;
    const k = 128;
    const { wT, meanAbs, meanSquare, gram } = setup(n, k, 17, 512, 0);
    const spec: BlockwiseSpec = { bits: 4, blockSize: 32, symmetric: true, clipSearch: false };
    const r = awqSearch(wT, n, k, { meanAbs, meanSquare }, spec, quantizeBlockwiseRef);
    expect(r.error).toBeLessThanOrEqual(r.errorRtn);
    expect(r.errorRows).toBe(n);
    const sub = awqSearch(wT, n, k, { meanAbs, meanSquare, gram }, spec, quantizeBlockwiseRef, { searchRows: 16 });
    expect(sub.q.n).toBe(n);
    expect(sub.errorRows).toBe(16);
    const deq = dequantizeBlockwise(sub.q);
    const rows = Array.from({ length: 16 }, (_, i) => Math.floor((i * n) / 16));
    const pick = (a: ArrayLike<number>): Float32Array => Float32Array.from(rows.flatMap((row) => Array.from({ length: k }, (_, j) => a[row * k + j]!)));
    const effective = Float32Array.from(deq, (v, i) => v * sub.inverseScales[i % k]!);
    const recomputed = gptqObjective(pick(wT), pick(effective), gram);
    expect(Math.abs(recomputed - sub.error) / sub.error).toBeLessThan(1e-4);
    expect(sub.error).toBeLessThanOrEqual(sub.errorRtn);
  });
});
