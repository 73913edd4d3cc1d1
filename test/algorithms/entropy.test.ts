import { describe, expect, it } from "vitest";
import { quantizeBlockwiseRef } from "../../src/quantize/blockwise.js";
import { blockwiseCodes, codeEntropy, huffmanCodeLengths } from "../../src/quantize/algorithms/entropy.js";
import { uniformSource } from "../../src/quantize/algorithms/linalg.js";
import { heavyTailWeights } from "./synthetic.js";

const repeat = (counts: number[]): Uint8Array => Uint8Array.from(counts.flatMap((c, s) => new Array<number>(c).fill(s)));

describe("code entropy and Huffman length", () => {
  it("uniform over 4 symbols: 2 bits both ways", () => {
    const r = codeEntropy(repeat([5, 5, 5, 5]), 4);
    expect(r.entropyBits).toBeCloseTo(2, 12);
    expect(r.huffmanBits).toBe(2);
    expect(Array.from(r.histogram)).toEqual([5, 5, 5, 5]);
  });

  it("dyadic skew 1/2, 1/4, 1/8, 1/8: 1.75 bits both ways, lengths 1, 2, 3, 3", () => {
    const r = codeEntropy(repeat([4, 2, 1, 1]), 4);
    expect(r.entropyBits).toBeCloseTo(1.75, 12);
    expect(r.huffmanBits).toBe(1.75);
    expect(Array.from(r.codeLengths)).toEqual([1, 2, 3, 3]);
  });

  it("non-dyadic cases: 3:1 has entropy 0.811 and Huffman 1; three equal symbols give 5/3", () => {
    const a = codeEntropy(repeat([3, 1]), 2);
    expect(a.entropyBits).toBeCloseTo(-(0.75 * Math.log2(0.75) + 0.25 * Math.log2(0.25)), 12);
    expect(a.huffmanBits).toBe(1);
    const b = codeEntropy(repeat([0, 7, 7, 7]), 4);
    expect(b.entropyBits).toBeCloseTo(Math.log2(3), 12);
    expect(b.huffmanBits).toBeCloseTo(5 / 3, 12);
    // Tie-breaking is by symbol: symbol 1 (lowest id among the equal weights) is merged first, so gets a long code.
    expect(Array.from(b.codeLengths)).toEqual([0, 2, 2, 1]);
  });

  it("a single symbol has zero entropy but a Huffman length of 1; no codes give zeros", () => {
    const r = codeEntropy(repeat([0, 0, 9]), 3);
    expect(r.entropyBits).toBe(0);
    expect(r.huffmanBits).toBe(1);
    const e = codeEntropy(new Uint8Array(0), 16);
    expect([e.entropyBits, e.huffmanBits]).toEqual([0, 0]);
    expect(() => codeEntropy(Uint8Array.from([3]), 3)).toThrow(/outside/);
  });

  it("on random skewed codes: H <= Huffman < H + 1, and Kraft's sum is exactly 1", () => {
    const u = uniformSource(3);
    for (const alphabet of [5, 16, 256]) {
      const codes = Uint8Array.from({ length: 5000 }, () => Math.floor(alphabet * u() ** 3));
      const r = codeEntropy(codes, alphabet);
      expect(r.huffmanBits).toBeGreaterThanOrEqual(r.entropyBits - 1e-12);
      expect(r.huffmanBits).toBeLessThan(r.entropyBits + 1);
      let kraft = 0;
      r.codeLengths.forEach((l) => (kraft += l > 0 ? 2 ** -l : 0));
      expect(kraft).toBeCloseTo(1, 12);
    }
    expect(Array.from(huffmanCodeLengths([1, 1]))).toEqual([1, 1]);
  });

  it("int4 codes of heavy-tailed weights compress below 4 bits; padding is excluded", () => {
    const k = 100;
    const q = quantizeBlockwiseRef(heavyTailWeights(64, k, 5), 64, k, { bits: 4, blockSize: 32, symmetric: true, clipSearch: false });
    const codes = blockwiseCodes(q);
    expect(codes.length).toBe(64 * k);
    const r = codeEntropy(codes, 16);
    console.log(`int4 g32 codes of Student-t(4) weights: entropy ${r.entropyBits.toFixed(3)} bits, Huffman ${r.huffmanBits.toFixed(3)} bits per code`);
    expect(r.entropyBits).toBeLessThan(3.7);
    expect(r.huffmanBits).toBeLessThan(3.75);
  });
});
