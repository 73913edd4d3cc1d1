import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { describe, expect, it } from "vitest";
import { BLOCK_STRUCT_SIZES, FORMAT_IDS, FORMAT_INFO, blockBytes, type FormatName } from "../../src/kernels/formats.js";
import { loadKernels, nativeCandidates, wasmCandidates } from "../../src/kernels/index.js";
import { realBackends } from "./helpers.js";

const backends = await realBackends();

describe.each(backends.map((b) => [b.backend, b] as const))("format table mirror (%s)", (name) => {
  it("matches the C header's struct sizes and fields", async () => {
    const raw = name === "native" ? createRequire(import.meta.url)(nativeCandidates().find((p) => existsSync(p))!) : undefined;
    const kernels = await loadKernels({ prefer: name });
    // struct sizes and fields come through the raw surface; reach it via kernelImpl-free calls
    const sizes: number[] = raw ? raw.structSizes() : await wasmStructSizes();
    expect(sizes).toEqual(BLOCK_STRUCT_SIZES.map((s) => s.bytes));
    expect(kernels.backend).toBe(name);
  });
});

async function wasmStructSizes(): Promise<number[]> {
  const { readFileSync } = await import("node:fs");
  const { instantiateWasmKernels } = await import("../../src/kernels/wasm.js");
  const raw = await instantiateWasmKernels(readFileSync(wasmCandidates().find((p) => existsSync(p))!));
  const fields = (Object.keys(FORMAT_IDS) as FormatName[]).map((f) => [0, 1, 2, 3, 4].map((i) => raw.formatField(FORMAT_IDS[f], i)));
  const expected = (Object.keys(FORMAT_IDS) as FormatName[]).map((f) => {
    const i = FORMAT_INFO[f];
    return [i.codeBits, +i.hasScale, i.scaleBits, +i.hasZeroPoint, i.fixedBlock];
  });
  expect(fields).toEqual(expected);
  return raw.structSizes();
}

it("block bytes follow from the table (fp16 scale, optional zero point)", () => {
  expect(blockBytes("int4", 32)).toBe(18);
  expect(blockBytes("int4", 32, { zeroPoint: true })).toBe(19);
  expect(blockBytes("int3", 32)).toBe(14);
  expect(blockBytes("mxfp4", 32)).toBe(17);
  expect(blockBytes("fp8", 32)).toBe(34);
  expect(blockBytes("int4", 32, { zeroPoint: true, scaleBits: 32 })).toBe(21);
  for (const s of BLOCK_STRUCT_SIZES) expect(s.bytes).toBeGreaterThan(0);
});
