import ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { calibrate, ChannelAccumulator } from "../src/calibrate/index.js";
import type { Ort } from "../src/runtime/ort.js";
import { buildMlp, gaussian } from "./helpers/models.js";

describe("calibration statistics", () => {
  it("streams per-channel mean |x|, E[x^2] and the Gram matrix like a brute-force pass", () => {
    const c = 5;
    const g = gaussian(3);
    const rows = Array.from({ length: 37 }, () => Array.from({ length: c }, () => g()));
    const acc = new ChannelAccumulator(c, 1000);
    // fed in uneven chunks, as batches arrive
    acc.add(Float32Array.from(rows.slice(0, 10).flat()));
    acc.add(Float32Array.from(rows.slice(10).flat()));
    const s = acc.result();
    const f32 = rows.map((r) => r.map((v) => Math.fround(v)));
    for (let j = 0; j < c; j++) {
      expect(s.meanAbs[j]).toBeCloseTo(f32.reduce((a, r) => a + Math.abs(r[j]!), 0) / 37, 10);
      expect(s.meanSquare[j]).toBeCloseTo(f32.reduce((a, r) => a + r[j]! ** 2, 0) / 37, 10);
      for (let i = 0; i < c; i++) expect(s.gram![i * c + j]).toBeCloseTo(f32.reduce((a, r) => a + r[i]! * r[j]!, 0) / 37, 10);
    }
    expect(s.rows).toBe(37);
  });

  it("caps the rows that go into the Gram matrix", () => {
    const acc = new ChannelAccumulator(2, 3);
    acc.add(Float32Array.from([1, 1, 2, 2, 3, 3, 100, 100]));
    const s = acc.result();
    expect(s.gramRows).toBe(3);
    expect(s.gram![0]).toBeCloseTo((1 + 4 + 9) / 3, 10);
    expect(s.rows).toBe(4);
  });

  it("exposes the inputs of the quantized MatMuls from a real ONNX Runtime session", async () => {
    const mlp = buildMlp(16, 32, 4, 5);
    const g = gaussian(8);
    const x = Float32Array.from({ length: 6 * 16 }, () => g());
    const result = await calibrate(ort as unknown as Ort, mlp.proto, ["x", "h_relu"], [{ x: { type: "float32", dims: [6, 16], data: x } }], 1, {
      names: new Set(["h_relu"]),
      maxRows: 100,
    });
    const h = result.stats.get("h_relu")!;
    expect(h.rows).toBe(6);
    // ReLU output: E|x| == E[x] >= 0, and some channels are active
    expect(Math.max(...h.meanAbs)).toBeGreaterThan(0);
    // the first channel's E[x^2] from a TypeScript forward pass
    let sq = 0;
    for (let r = 0; r < 6; r++) {
      let s = 0;
      for (let i = 0; i < 16; i++) s += x[r * 16 + i]! * mlp.w1[i * 32]!;
      sq += Math.max(0, s) ** 2;
    }
    expect(h.meanSquare[0]).toBeCloseTo(sq / 6, 4);
    expect(h.gram).toBeDefined();
    expect(result.stats.get("x")!.gram).toBeUndefined();
  });
});
