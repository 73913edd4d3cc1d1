import { describe, expect, it } from "vitest";
import { TABLE_FORMATS, type TableFormat } from "../../src/kernels/formats.js";
import { makeWeights, realBackends, referenceGemm, firstOutside, type Dist } from "./helpers.js";

const backends = await realBackends();

/** Expected relative RMS quantization error (||w - deq|| / ||w||) per format and distribution. */
const QUANT_ERROR: Record<TableFormat, Record<"gaussian" | "heavy", number>> = {
  nf4: { gaussian: 0.11, heavy: 0.2 },
  fp4: { gaussian: 0.14, heavy: 0.25 },
  mxfp4: { gaussian: 0.2, heavy: 0.3 },
  fp8: { gaussian: 0.035, heavy: 0.04 },
  codebook: { gaussian: 0.13, heavy: 0.25 }, // one 16-level table per tensor, no per-block scale
};
/** Named GEMV/GEMM error budget relative to sum |w x| (float32 summation order only). */
const BUDGET_TABLE = 3e-6;

const relRms = (a: Float32Array, b: Float32Array): number => {
  let e = 0,
    s = 0;
  for (let i = 0; i < a.length; i++) {
    e += (a[i]! - b[i]!) ** 2;
    s += a[i]! ** 2;
  }
  return Math.sqrt(e / s);
};

describe.each(backends.map((b) => [b.backend, b] as const))("%s table formats", (_name, kernels) => {
  it.each(TABLE_FORMATS.map((f) => [f]))("%s: quantize/dequantize error within its bound", (format) => {
    for (const dist of ["gaussian", "heavy"] as Dist[]) {
      const n = 16,
        k = 520;
      const w = makeWeights(n * k, dist, 11);
      const q = kernels.quantizeTable(format, w, n, k, 32);
      const err = relRms(w, kernels.dequantizeTable(q));
      expect(err, `${format} ${dist}`).toBeLessThanOrEqual(QUANT_ERROR[format][dist as "gaussian" | "heavy"]);
      expect(err).toBeGreaterThan(0);
    }
  });

  it("uses the documented code tables", () => {
    const w = Float32Array.from([6, -6, 3, 0.5, -0.5, 0, 1.5, -4, ...new Array<number>(24).fill(0)]);
    const fp4 = kernels.quantizeTable("fp4", w, 1, 32, 32);
    expect(fp4.scales![0]).toBe(1);
    expect(Array.from(kernels.dequantizeTable(fp4).subarray(0, 8))).toEqual([6, -6, 3, 0.5, -0.5, 0, 1.5, -4]);
    const mx = kernels.quantizeTable("mxfp4", w, 1, 32, 32);
    expect(mx.scales![0]).toBe(1); // 2^(floor(log2 6) - 2)
    const nf4 = kernels.quantizeTable("nf4", w, 1, 32, 32);
    expect(kernels.dequantizeTable(nf4)[0]).toBe(6);
    const fp8 = kernels.quantizeTable("fp8", Float32Array.from([448, -1, 0.001, ...new Array<number>(29).fill(0)]), 1, 32, 32);
    expect(fp8.scales![0]).toBe(1);
    expect(fp8.packed[0]).toBe(0x7e);
    expect(fp8.packed[1]).toBe(0xb8); // -1.0 = sign | exponent 7 << 3
  });

  it("GEMV/GEMM on packed codes matches the float64 product of the dequantized weight", () => {
    for (const format of TABLE_FORMATS)
      for (const [n, k, m] of [
        [1, 1, 1],
        [7, 33, 3],
        [17, 95, 1],
        [31, 129, 64],
        [5, 4097, 1],
      ] as const) {
        const bs = format === "mxfp4" ? 32 : k % 2 ? 64 : 16;
        const q = kernels.quantizeTable(format, makeWeights(n * k, "heavy", n), n, k, bs);
        const x = makeWeights(m * k, "gaussian", k);
        const { y: ref, mag } = referenceGemm(kernels.dequantizeTable(q), n, k, x, m);
        const y = kernels.gemmTable(q, x, m, 2);
        const bad = firstOutside(y, ref, mag, BUDGET_TABLE);
        expect(bad, `${format} n=${n} k=${k} m=${m}: ${y[bad]} vs ${ref[bad]}`).toBe(-1);
      }
  });

  it("fits a codebook that beats a uniform grid on Gaussian data", () => {
    const w = makeWeights(4096, "gaussian", 4);
    const table = kernels.fitCodebook(w, 16, 20);
    expect(table.length).toBe(16);
    for (let i = 1; i < 16; i++) expect(table[i]!).toBeGreaterThanOrEqual(table[i - 1]!);
  });
});

it.skipIf(backends.length < 2)("native and wasm produce identical table-format bytes (skipped without the native addon)", async () => {
  const [a, b] = backends as [(typeof backends)[0], (typeof backends)[0]];
  const w = makeWeights(9 * 100, "heavy", 8);
  for (const format of TABLE_FORMATS) {
    const qa = a.quantizeTable(format, w, 9, 100, 32),
      qb = b.quantizeTable(format, w, 9, 100, 32, { codebook: qa.table });
    expect(Buffer.from(qa.packed).equals(Buffer.from(qb.packed)), format).toBe(true);
    expect(qa.scales).toEqual(qb.scales);
  }
});
