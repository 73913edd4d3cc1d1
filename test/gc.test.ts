// The gate collects garbage at stage boundaries and when ONNX Runtime's outputs pile up (src/util/gc.ts):
// these must really free array buffers outside V8's heap, or a large model's peak memory depends on timing.
import { describe, expect, it } from "vitest";
import { collectGarbage, collectIfPiling } from "../src/util/gc.js";

const mib = (): number => process.memoryUsage().arrayBuffers / 2 ** 20;
// ArrayBuffer backing stores are freed by a sweeper after the collection: give it a moment.
const settled = async (): Promise<number> => {
  for (let i = 0; i < 50 && mib() > 40; i++) await new Promise((r) => setTimeout(r, 10));
  return mib();
};

function garbage(mb: number): void {
  const keep: Uint8Array[] = [];
  for (let i = 0; i < mb / 16; i++) keep.push(new Uint8Array(16 * 2 ** 20).fill(1));
  expect(keep.length).toBe(mb / 16);
}

describe("collecting garbage on demand", () => {
  it("frees unreachable array buffers", async () => {
    collectGarbage();
    await settled();
    garbage(320);
    expect(mib()).toBeGreaterThan(300);
    collectGarbage();
    expect(await settled()).toBeLessThan(40);
  });

  it("collects once array buffers have piled up past the limit, and not before", async () => {
    collectGarbage();
    await settled();
    collectIfPiling(); // sets the baseline
    garbage(64);
    collectIfPiling();
    await new Promise((r) => setTimeout(r, 50));
    expect(mib()).toBeGreaterThan(60); // under the limit: left for V8
    garbage(320);
    collectIfPiling();
    expect(await settled()).toBeLessThan(40);
  });
});
