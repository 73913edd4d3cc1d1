import { describe, expect, it } from "vitest";
import { dequantizeBlockwise, packBits, quantizeBlockwiseRef, roundHalfAway, toMatMulNBits, unpackBits, type IntBits } from "../src/quantize/blockwise.js";
import { gaussian } from "./helpers/models.js";

function data(n: number, seed: number, heavy = false): Float32Array {
  const g = gaussian(seed);
  return Float32Array.from({ length: n }, () => (heavy ? g() / Math.max(0.05, Math.abs(g())) : g()));
}

describe("block-wise quantization reference", () => {
  it("rounds half away from zero like C roundf", () => {
    expect([0.5, 1.5, 2.5, -0.5, -1.5, 0.49999997].map(roundHalfAway)).toEqual([1, 2, 3, -1, -2, 0]);
  });

  it("is deterministic: the same input gives the same bytes", () => {
    const w = data(48 * 100, 3);
    const a = quantizeBlockwiseRef(w, 48, 100, { bits: 4, blockSize: 32, symmetric: false, clipSearch: true });
    const b = quantizeBlockwiseRef(Float32Array.from(w), 48, 100, { bits: 4, blockSize: 32, symmetric: false, clipSearch: true });
    expect(Buffer.from(a.codes).equals(Buffer.from(b.codes))).toBe(true);
    expect(Buffer.from(a.scales.buffer).equals(Buffer.from(b.scales.buffer))).toBe(true);
  });

  // Max error per element: half a step for RTN. Symmetric blocks map the signed extreme to the full
  // negative range (as ORT's quantizer does), so the opposite side may saturate up to one step.
  for (const bits of [2, 3, 4, 8] as IntBits[]) {
    for (const symmetric of [true, false]) {
      it(`int${bits} ${symmetric ? "sym" : "asym"} RTN error stays within its step bound`, () => {
        const n = 7;
        const k = 83; // not a multiple of the block size
        const w = data(n * k, bits * 10 + (symmetric ? 1 : 0));
        const q = quantizeBlockwiseRef(w, n, k, { bits, blockSize: 16, symmetric, clipSearch: false });
        const deq = dequantizeBlockwise(q);
        for (let row = 0; row < n; row++) {
          for (let col = 0; col < k; col++) {
            const blk = row * q.blocksPerRow + Math.floor(col / 16);
            const step = Math.abs(q.scales[blk]!);
            expect(Math.abs(w[row * k + col]! - deq[row * k + col]!)).toBeLessThanOrEqual(step * (symmetric ? 1 : 0.5) + 1e-6);
          }
        }
      });
    }
  }

  it("MSE clip search never has more squared error than plain RTN, and helps on heavy tails", () => {
    const w = data(64 * 256, 5, true);
    const err = (clipSearch: boolean): number => {
      const q = quantizeBlockwiseRef(w, 64, 256, { bits: 3, blockSize: 64, symmetric: true, clipSearch });
      const d = dequantizeBlockwise(q);
      return w.reduce((s, v, i) => s + (v - d[i]!) ** 2, 0);
    };
    const rtn = err(false);
    const mse = err(true);
    expect(mse).toBeLessThan(rtn * 0.95);
  });

  it("keeps an all-zero block exact", () => {
    const q = quantizeBlockwiseRef(new Float32Array(64), 2, 32, { bits: 4, blockSize: 32, symmetric: false, clipSearch: true });
    expect(Array.from(dequantizeBlockwise(q))).toEqual(new Array(64).fill(0));
  });

  it("packs LSB first per group and unpacks to the same codes", () => {
    const codes = Uint8Array.from([1, 2, 3, 15, 0, 7]);
    expect(Array.from(packBits(codes, 4, 6))).toEqual([0x21, 0xf3, 0x70]);
    for (const bits of [2, 3, 4, 8]) {
      const c = Uint8Array.from({ length: 96 }, (_, i) => (i * 7) % (1 << bits));
      expect(Array.from(unpackBits(packBits(c, bits, 32), bits, 32, 3))).toEqual(Array.from(c));
    }
  });

  it("emits MatMulNBits tensors with per-row packed zero points", () => {
    const q = quantizeBlockwiseRef(data(3 * 96, 9), 3, 96, { bits: 4, blockSize: 32, symmetric: false, clipSearch: false });
    const t = toMatMulNBits(q);
    expect(t.b.length).toBe(3 * 3 * 16);
    expect(t.scales.length).toBe(9);
    // 3 blocks per row at 4 bits -> 2 bytes per row
    expect(t.zeroPoints!.length).toBe(6);
    expect(t.zeroPoints![1]! >> 4).toBe(0);
    expect(toMatMulNBits({ ...q, spec: { ...q.spec, symmetric: true } }).zeroPoints).toBeUndefined();
  });
});

describe("importance-weighted clip search", () => {
  it("lowers the activation-weighted error below the unweighted search, which lowers plain weight error", () => {
    const n = 32;
    const k = 128;
    const w = data(n * k, 77, true);
    const g = gaussian(5);
    // A few input channels carry most of the activation energy.
    const importance = Float32Array.from({ length: k }, (_, i) => (i % 16 === 0 ? 50 : 0.2 + Math.abs(g())));
    const spec = { bits: 3 as const, blockSize: 32, symmetric: false, clipSearch: true };
    const weighted = quantizeBlockwiseRef(w, n, k, spec, importance);
    const plain = quantizeBlockwiseRef(w, n, k, spec);
    const err = (q: ReturnType<typeof quantizeBlockwiseRef>, imp?: Float32Array): number => {
      const d = dequantizeBlockwise(q);
      return w.reduce((s, v, i) => s + (imp ? imp[i % k]! : 1) * (v - d[i]!) ** 2, 0);
    };
    expect(err(weighted, importance)).toBeLessThan(err(plain, importance));
    expect(err(plain)).toBeLessThanOrEqual(err(weighted));
  });
});
