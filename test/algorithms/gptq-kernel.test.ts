// The C GPTQ (kernels/src/qg_gptq.c) against the TypeScript reference, the oracle: identical codes,
// scales and zero points on awkward shapes (sizes that cross the Cholesky panel, the inverse's row
// tiles, the row tiles of the sweep and the lazy batches), every bit width, both symmetries, clip
// search, act-order, static groups, dead channels and a Hessian that needs more damping.
import { afterAll, describe, expect, it } from "vitest";
import { setActiveKernels } from "../../src/kernels/active.js";
import type { BlockwiseQuantized, BlockwiseSpec, IntBits } from "../../src/quantize/blockwise.js";
import { gptqQuantize, gptqQuantizeRef, type GptqOptions } from "../../src/quantize/algorithms/gptq.js";
import { realBackends } from "../kernels/helpers.js";
import { activations, heavyTailWeights, statsOf } from "./synthetic.js";

const backends = await realBackends();
afterAll(() => setActiveKernels(undefined));

const bytes = (a: ArrayBufferView): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
function same(a: BlockwiseQuantized, b: BlockwiseQuantized, what: string): void {
  expect(bytes(a.codes).equals(bytes(b.codes)), `codes ${what}`).toBe(true);
  expect(bytes(a.scales).equals(bytes(b.scales)), `scales ${what}`).toBe(true);
  expect(bytes(a.zeroPoints).equals(bytes(b.zeroPoints)), `zero points ${what}`).toBe(true);
}

describe.each(backends.map((b) => [b.backend, b] as const))("%s GPTQ kernel", (_name, kernels) => {
  const run = (wT: Float32Array, n: number, k: number, h: Float64Array, spec: BlockwiseSpec, opts: GptqOptions = {}) => {
    setActiveKernels(kernels.raw);
    try {
      return gptqQuantize(wT, n, k, h, spec, { ...opts, threads: 2 });
    } finally {
      setActiveKernels(undefined);
    }
  };

  it("is bit-identical to the reference on awkward shapes and options", () => {
    const cases: [number, number, IntBits, number, boolean, GptqOptions][] = [
      [1, 1, 4, 8, false, {}],
      [3, 7, 4, 8, false, {}],
      [5, 40, 3, 16, false, {}],
      [33, 65, 4, 32, false, {}],
      [37, 130, 2, 24, true, {}],
      [40, 200, 8, 64, false, { actOrder: true }],
      [9, 129, 4, 128, true, { staticGroups: true }],
      [70, 300, 4, 32, false, { lazyBatch: 7 }],
      [17, 257, 3, 256, false, { actOrder: true, zeroDeadColumns: true }],
    ];
    for (const [n, k, bits, blockSize, symmetric, opts] of cases) {
      const wT = heavyTailWeights(n, k, n + k);
      const x = activations(Math.max(8, Math.floor(k / 2)), k, k);
      const { gram } = statsOf(x, Math.max(8, Math.floor(k / 2)), k);
      if (k > 10) for (const dead of [3, k - 2]) for (let j = 0; j < k; j++) gram[dead * k + j] = gram[j * k + dead] = 0;
      for (const clipSearch of [false, true]) {
        const spec: BlockwiseSpec = { bits, blockSize, symmetric, clipSearch };
        same(
          run(wT, n, k, gram, spec, opts),
          gptqQuantizeRef(wT, n, k, gram, spec, opts),
          `${n}x${k} int${bits} bs${blockSize} sym=${symmetric} clip=${clipSearch} ${JSON.stringify(opts)}`,
        );
      }
    }
  });

  it("escalates damping like the reference, and refuses a Hessian that never becomes positive definite", () => {
    const n = 6,
      k = 20;
    const wT = heavyTailWeights(n, k, 3);
    const x = activations(4, k, 5); // rank 4: singular without damping
    const { gram } = statsOf(x, 4, k);
    const spec: BlockwiseSpec = { bits: 4, blockSize: 8, symmetric: false, clipSearch: false };
    same(run(wT, n, k, gram, spec, { dampRatio: 0 }), gptqQuantizeRef(wT, n, k, gram, spec, { dampRatio: 0 }), "damp 0");
    const bad = Float64Array.from(gram);
    bad[5 * k + 6] = bad[6 * k + 5] = NaN; // (a NaN diagonal would only mark the channel dead)
    expect(() => run(wT, n, k, bad, spec)).toThrow(/not positive definite/);
    expect(() => gptqQuantizeRef(wT, n, k, bad, spec)).toThrow(/not positive definite/);
  });
});
