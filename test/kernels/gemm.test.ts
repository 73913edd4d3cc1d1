import { describe, expect, it } from "vitest";
import { dequantizeBlockwiseRef as dequantizeBlockwise, packBitsRef, type BlockwiseSpec, type IntBits } from "../../src/quantize/blockwise.js";
import { makeWeights, realBackends, referenceGemm, firstOutside } from "./helpers.js";

const backends = await realBackends();

/** Named error budgets, relative to sum |w x|: float32 accumulation in a different order only. */
const BUDGET = { int8: 3e-6, int4: 3e-6, int3: 3e-6, int2: 3e-6, f32: 3e-6 } as const;
const budgetOf = (bits: number): number => BUDGET[bits === 8 ? "int8" : bits === 4 ? "int4" : bits === 3 ? "int3" : "int2"];

const SIZES = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 31, 33, 95, 129];

describe.each(backends.map((b) => [b.backend, b] as const))("%s GEMV/GEMM on packed codes", (_name, kernels) => {
  it("packs exactly like toMatMulNBits (2/4/8 bits) and densely LSB-first for int3", () => {
    for (const bits of [2, 3, 4, 8] as IntBits[])
      for (const blockSize of [16, 32, 128]) {
        const spec: BlockwiseSpec = { bits, blockSize, symmetric: false, clipSearch: false };
        const q = kernels.quantizeBlockwise(makeWeights(7 * 95, "heavy", bits), 7, 95, spec);
        const p = kernels.packBlockwise(q);
        const expected = packBitsRef(q.codes, bits, blockSize); // toMatMulNBits packs 2/4/8 bits this way
        expect(Buffer.from(p.packed).equals(Buffer.from(expected)), `bits=${bits} bs=${blockSize}`).toBe(true);
        expect(p.packed.length).toBe(7 * q.blocksPerRow * ((blockSize * bits) / 8));
        expect(kernels.unpackBits(p.packed, bits, blockSize, 7 * q.blocksPerRow)).toEqual(q.codes);
        expect(kernels.dequantizeBlockwise(p)).toEqual(dequantizeBlockwise(q));
      }
  });

  it("matches the float64 product of the dequantized weight on awkward K, N and M", () => {
    let cases = 0;
    for (const bits of [2, 3, 4, 8] as IntBits[])
      for (const [i, k] of SIZES.entries()) {
        const n = SIZES[(i * 5 + bits) % SIZES.length]!;
        const blockSize = [16, 32, 64, 128][(i + bits) % 4]!;
        const m = [1, 3, 64][i % 3]!;
        const spec: BlockwiseSpec = { bits, blockSize, symmetric: i % 2 === 0, clipSearch: false };
        const q = kernels.quantizeBlockwise(makeWeights(n * k, "heavy", i + 1), n, k, spec);
        const p = kernels.packBlockwise(q);
        const x = makeWeights(m * k, "gaussian", 99 + i);
        const { y: ref, mag } = referenceGemm(dequantizeBlockwise(q), n, k, x, m);
        const y = kernels.gemmBlockwise(p, x, m, 2);
        const bad = firstOutside(y, ref, mag, budgetOf(bits));
        expect(bad, `bits=${bits} n=${n} k=${k} m=${m} bs=${blockSize}: y=${y[bad]} ref=${ref[bad]}`).toBe(-1);
        cases++;
      }
    expect(cases).toBe(4 * SIZES.length);
  });

  it("handles K = 4097 (partial last block) with one and two threads", () => {
    const n = 33,
      k = 4097;
    for (const bits of [4, 3] as IntBits[]) {
      const q = kernels.quantizeBlockwise(makeWeights(n * k, "gaussian", 5), n, k, { bits, blockSize: 32, symmetric: false, clipSearch: false });
      const p = kernels.packBlockwise(q);
      const x = makeWeights(3 * k, "heavy", 6);
      const { y: ref, mag } = referenceGemm(dequantizeBlockwise(q), n, k, x, 3);
      for (const threads of [1, 2]) {
        expect(firstOutside(kernels.gemmBlockwise(p, x, 3, threads), ref, mag, budgetOf(bits))).toBe(-1);
        expect(firstOutside(kernels.gemmBlockwise(p, x.subarray(0, k), 1, threads), ref.subarray(0, n), mag.subarray(0, n), budgetOf(bits))).toBe(-1);
      }
    }
  });

  it("float32 GEMV/GEMM matches float64", () => {
    for (const [i, k] of SIZES.entries()) {
      const n = SIZES[SIZES.length - 1 - i]!,
        m = [1, 3, 64][i % 3]!;
      const w = makeWeights(n * k, "heavy", i),
        x = makeWeights(m * k, "gaussian", i + 50);
      const { y: ref, mag } = referenceGemm(w, n, k, x, m);
      expect(firstOutside(kernels.gemmF32(w, n, k, x, m, 2), ref, mag, BUDGET.f32)).toBe(-1);
    }
  });

  it("the SIMD path equals the scalar reference path within the budget", () => {
    const n = 17,
      k = 129,
      m = 3;
    const q = kernels.quantizeBlockwise(makeWeights(n * k, "heavy"), n, k, { bits: 4, blockSize: 32, symmetric: false, clipSearch: false });
    const p = kernels.packBlockwise(q);
    const x = makeWeights(m * k, "gaussian", 2);
    const fast = kernels.gemmBlockwise(p, x, m);
    kernels.forceReference(true);
    let slow: Float32Array;
    try {
      slow = kernels.gemmBlockwise(p, x, m);
    } finally {
      kernels.forceReference(false);
    }
    const { mag } = referenceGemm(dequantizeBlockwise(q), n, k, x, m);
    expect(firstOutside(fast, Float64Array.from(slow), mag, BUDGET.int4)).toBe(-1);
  });

  it("int4 GEMV with int8 activations stays within its budget of the float product", () => {
    const BUDGET_INT8_ACT = 1e-2; // activations rounded to int8 per 32 values
    for (const [n, k, blockSize] of [
      [1, 1, 32],
      [17, 95, 32],
      [33, 129, 64],
      [9, 4097, 128],
    ] as const) {
      const q = kernels.quantizeBlockwise(makeWeights(n * k, "heavy", k), n, k, { bits: 4, blockSize, symmetric: n % 2 === 1, clipSearch: false });
      const p = kernels.packBlockwise(q);
      const x = makeWeights(k, "gaussian", n);
      const { y: ref, mag } = referenceGemm(dequantizeBlockwise(q), n, k, x, 1);
      const y = kernels.gemvBlockwiseInt8(p, x, 2);
      const bad = firstOutside(y, ref, mag, BUDGET_INT8_ACT);
      expect(bad, `n=${n} k=${k}: ${y[bad]} vs ${ref[bad]}`).toBe(-1);
      // and it is not the float path in disguise: some output differs
      if (k > 32) expect(Array.from(y)).not.toEqual(Array.from(kernels.gemmBlockwise(p, x, 1)));
    }
  });

  it("puts what the GEMV streams on 64-byte boundaries where the backend can, with the same numbers as unaligned copies", () => {
    const n = 40,
      k = 4096, // scales of 4 KiB and more are aligned too
      blockSize = 128;
    const q = kernels.quantizeBlockwise(makeWeights(n * k, "heavy", 3), n, k, { bits: 4, blockSize, symmetric: false, clipSearch: false });
    const p = kernels.packBlockwise(q);
    const x = makeWeights(k, "gaussian", 4);
    const y = kernels.gemvBlockwiseInt8(p, x, 1);
    const alignOffset = kernels.raw.alignOffset?.bind(kernels.raw);
    if (alignOffset) {
      expect(alignOffset(p.packed, 64)).toBe(0);
      expect(alignOffset(new Uint8Array(p.scales.buffer, p.scales.byteOffset, p.scales.byteLength), 64)).toBe(0);
    } else expect(kernels.backend).not.toBe("native");
    // copies 16 bytes past a line boundary (where a plain large allocation lands) give the same bytes out
    const shifted = <T extends Uint8Array | Float32Array>(a: T, make: (b: ArrayBuffer, o: number, len: number) => T): T => {
      const room = new Uint8Array(a.byteLength + 128);
      const o = (alignOffset ? alignOffset(room, 64) : 0) + 16;
      const c = make(room.buffer, o, a.length);
      c.set(a as never);
      return c;
    };
    const moved = {
      ...p,
      packed: shifted(p.packed, (b, o, len) => new Uint8Array(b, o, len)),
      scales: shifted(p.scales, (b, o, len) => new Float32Array(b, o, len)),
    };
    if (alignOffset) expect(alignOffset(moved.packed, 64)).toBe(48);
    expect(Array.from(kernels.gemvBlockwiseInt8(moved, x, 1))).toEqual(Array.from(y));
    expect(Array.from(kernels.gemmBlockwiseInt8(moved, x, 1, 1))).toEqual(Array.from(kernels.gemmBlockwiseInt8(p, x, 1, 1)));
  });

  it("the GEMV's own row-interleaved layout gives the plain layout's numbers bit for bit", () => {
    let prepared = 0;
    for (const [n, k, blockSize] of [
      [1, 128, 32],
      [7, 256, 64],
      [13, 4096, 128],
      [6, 512, 256],
      [5, 96, 32], // a row of 1.5 quads: no kernel for the layout, the plain one is used
    ] as const) {
      const q = kernels.quantizeBlockwise(makeWeights(n * k, "heavy", n + k), n, k, { bits: 4, blockSize, symmetric: n % 2 === 0, clipSearch: false });
      const p = kernels.packBlockwise(q);
      const pg = kernels.prepareGemvInt8(p);
      const x = makeWeights(k, "gaussian", k);
      if (pg.gemvLayout) {
        prepared++;
        expect(pg.gemvLayout.length).toBe(Math.ceil(n / 4) * 4 * p.blocksPerRow * (blockSize / 2));
        expect(pg.gemvLayout.subarray(0, 64)).toEqual(p.packed.subarray(0, 64)); // row 0's first quad leads
      } else expect(pg).toBe(p);
      for (const threads of [1, 2])
        expect(Array.from(kernels.gemvBlockwiseInt8(pg, x, threads)), `n=${n} k=${k} bs=${blockSize}`).toEqual(
          Array.from(kernels.gemvBlockwiseInt8(p, x, threads)),
        );
    }
    // AVX-512 reads the layout; wasm and the scalar build keep the plain one
    if (kernels.isa === "avx512") expect(prepared).toBe(4);
    // a layout prepared before the scalar references were forced: the plain copy serves, same numbers as the reference
    const q = kernels.quantizeBlockwise(makeWeights(8 * 256, "heavy", 9), 8, 256, { bits: 4, blockSize: 64, symmetric: false, clipSearch: false });
    const pg = kernels.prepareGemvInt8(kernels.packBlockwise(q));
    const x = makeWeights(256, "gaussian", 10);
    kernels.raw.forceRef(true);
    try {
      expect(Array.from(kernels.gemvBlockwiseInt8(pg, x, 1))).toEqual(Array.from(kernels.gemvBlockwiseInt8(kernels.packBlockwise(q), x, 1)));
    } finally {
      kernels.raw.forceRef(false);
    }
    if (kernels.backend !== "native") expect(prepared).toBe(0);
  });

  it("int4 GEMM with int8 activations: row by row the GEMV's numbers, within its budget of the float product", () => {
    const BUDGET_INT8_ACT = 1e-2;
    for (const [n, k, blockSize, m] of [
      [5, 64, 32, 2],
      [17, 256, 32, 8],
      [33, 1024, 128, 33],
      [9, 4097, 128, 3],
      [13, 512, 64, 130],
    ] as const) {
      const q = kernels.quantizeBlockwise(makeWeights(n * k, "heavy", k + m), n, k, { bits: 4, blockSize, symmetric: m % 2 === 1, clipSearch: false });
      const p = kernels.packBlockwise(q);
      const x = makeWeights(m * k, "gaussian", n + m);
      const y = kernels.gemmBlockwiseInt8(p, x, m, 2);
      const { y: ref, mag } = referenceGemm(dequantizeBlockwise(q), n, k, x, m);
      const bad = firstOutside(y, ref, mag, BUDGET_INT8_ACT);
      expect(bad, `n=${n} k=${k} m=${m}: ${y[bad]} vs ${ref[bad]}`).toBe(-1);
      for (let mi = 0; mi < m; mi += 7) {
        const row = kernels.gemvBlockwiseInt8(p, x.subarray(mi * k, (mi + 1) * k), 1);
        expect(firstOutside(y.subarray(mi * n, (mi + 1) * n), Float64Array.from(row), mag.subarray(mi * n, (mi + 1) * n), 1e-6)).toBe(-1);
      }
    }
  });

  it("checks arguments at the boundary", () => {
    const q = kernels.quantizeBlockwise(new Float32Array(64), 2, 32, { bits: 4, blockSize: 32, symmetric: true, clipSearch: false });
    const p = kernels.packBlockwise(q);
    expect(() => kernels.gemmBlockwise(p, new Float32Array(31), 1)).toThrow(/x/);
    expect(() => kernels.gemmBlockwise({ ...p, packed: new Uint8Array(3) }, new Float32Array(32), 1)).toThrow(/packed/);
  });
});
