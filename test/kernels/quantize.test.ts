import { describe, expect, it } from "vitest";
import { quantizeBlockwiseRef, type BlockwiseSpec, type IntBits } from "../../src/quantize/blockwise.js";
import { loadKernels } from "../../src/kernels/index.js";
import { makeWeights, realBackends, type Dist } from "./helpers.js";

const backends = await realBackends();

const specs: BlockwiseSpec[] = [];
for (const bits of [2, 3, 4, 8] as IntBits[])
  for (const blockSize of [16, 32, 64, 128])
    for (const symmetric of [false, true]) for (const clipSearch of [false, true]) specs.push({ bits, blockSize, symmetric, clipSearch });

// Awkward shapes: K not a multiple of the block, K smaller than a block, single rows.
const shapes: [number, number][] = [
  [3, 95],
  [1, 17],
  [2, 129],
  [5, 33],
];
const dists: Dist[] = ["gaussian", "heavy", "ties", "zeros", "tiny"];

describe.each(backends.map((b) => [b.backend, b] as const))("quantizeBlockwise on %s", (_name, kernels) => {
  it("is byte-identical to quantizeBlockwiseRef for every spec, shape and distribution", () => {
    let checked = 0;
    for (const spec of specs)
      for (const [si, [n, k]] of shapes.entries()) {
        const dist = dists[(si + spec.bits + spec.blockSize / 16) % dists.length]!;
        const w = makeWeights(n * k, dist, 7 + si);
        const ref = quantizeBlockwiseRef(w, n, k, spec);
        const got = kernels.quantizeBlockwise(w, n, k, spec, 2);
        const label = `${JSON.stringify(spec)} n=${n} k=${k} ${dist}`;
        expect(Buffer.from(got.codes).equals(Buffer.from(ref.codes)), `codes ${label}`).toBe(true);
        expect(Buffer.from(new Uint8Array(got.scales.buffer)).equals(Buffer.from(new Uint8Array(ref.scales.buffer))), `scales ${label}`).toBe(true);
        expect(Buffer.from(got.zeroPoints).equals(Buffer.from(ref.zeroPoints)), `zero points ${label}`).toBe(true);
        expect(got.blocksPerRow).toBe(ref.blocksPerRow);
        checked++;
      }
    expect(checked).toBe(specs.length * shapes.length);
  });

  it("matches on a multi-threaded large tensor (rows split across threads)", () => {
    const n = 67,
      k = 4097;
    const w = makeWeights(n * k, "heavy", 3);
    for (const spec of [
      { bits: 4, blockSize: 32, symmetric: false, clipSearch: true },
      { bits: 3, blockSize: 128, symmetric: true, clipSearch: false },
    ] as BlockwiseSpec[]) {
      const ref = quantizeBlockwiseRef(w, n, k, spec);
      const got = kernels.quantizeBlockwise(w, n, k, spec, 2);
      expect(Buffer.from(got.codes).equals(Buffer.from(ref.codes))).toBe(true);
      expect(Array.from(got.scales)).toEqual(Array.from(ref.scales));
    }
  });

  it("matches the reference on NaN, infinities, signed zeros and huge values (SIMD paths included)", () => {
    const n = 3,
      k = 70;
    const w = makeWeights(n * k, "heavy", 11);
    w[1] = NaN;
    w[40] = Infinity;
    w[75] = -Infinity;
    w[80] = -0;
    w[100] = 3e38;
    w[150] = -3e38;
    for (const spec of specs.filter((s) => s.blockSize <= 32)) {
      const ref = quantizeBlockwiseRef(w, n, k, spec);
      const got = kernels.quantizeBlockwise(w, n, k, spec, 2);
      expect(Buffer.from(got.codes).equals(Buffer.from(ref.codes)), `codes ${JSON.stringify(spec)}`).toBe(true);
      expect(Buffer.from(new Uint8Array(got.scales.buffer)).equals(Buffer.from(new Uint8Array(ref.scales.buffer))), `scales ${JSON.stringify(spec)}`).toBe(
        true,
      );
      expect(Buffer.from(got.zeroPoints).equals(Buffer.from(ref.zeroPoints))).toBe(true);
    }
  });

  it("rejects bad specs with a message naming the problem", () => {
    const w = new Float32Array(64);
    expect(() => kernels.quantizeBlockwise(w, 2, 32, { bits: 5 as IntBits, blockSize: 32, symmetric: true, clipSearch: false })).toThrow(/bits/);
    expect(() => kernels.quantizeBlockwise(w, 3, 32, { bits: 4, blockSize: 32, symmetric: true, clipSearch: false })).toThrow(/n\*k/);
  });
});

describe("js backend", () => {
  it("wraps the TypeScript reference", async () => {
    const js = await loadKernels({ prefer: "js" });
    expect(js.backend).toBe("js");
    const w = makeWeights(3 * 40, "gaussian");
    const spec: BlockwiseSpec = { bits: 4, blockSize: 16, symmetric: false, clipSearch: true };
    expect(js.quantizeBlockwise(w, 3, 40, spec).codes).toEqual(quantizeBlockwiseRef(w, 3, 40, spec).codes);
    expect(js.hasKernel("gemv", "int4")).toBe(true);
    expect(js.hasKernel("gemv", "nf4")).toBe(false);
  });
});
