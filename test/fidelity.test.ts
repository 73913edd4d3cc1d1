import { mkdtemp, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { parseConfig } from "../src/config/load.js";
import type { FidelityEvaluation } from "../src/config/schema.js";
import type { FidelityData } from "../src/data/fidelity.js";
import { evaluateFidelity, fidelityRule } from "../src/evaluate/fidelity.js";
import { loadUserMetric } from "../src/evaluate/user-metric.js";
import { DataType, makeNode, makeTensor, makeValueInfo, serializeModel } from "../src/onnx/model.js";
import type { Ort } from "../src/runtime/ort.js";
import { model } from "./helpers/models.js";

/** A running-sum "stateful" model: logits = x * gain + state (broadcast), state_out = last row of logits. */
function accumulator(gain: number) {
  return model(
    [
      makeNode("Mul", ["x", "gain"], ["scaled"]),
      makeNode("Add", ["scaled", "state"], ["logits"]),
      makeNode("Slice", ["logits", "starts", "ends", "axes"], ["state_out"]),
    ],
    [
      makeTensor("gain", DataType.FLOAT, [], Float32Array.from([gain])),
      makeTensor("starts", DataType.INT64, [1], BigInt64Array.from([-1n])),
      makeTensor("ends", DataType.INT64, [1], BigInt64Array.from([1000n])),
      makeTensor("axes", DataType.INT64, [1], BigInt64Array.from([0n])),
    ],
    [makeValueInfo("x", DataType.FLOAT, [2, 4]), makeValueInfo("state", DataType.FLOAT, [1, 4])],
    [makeValueInfo("logits", DataType.FLOAT, [2, 4]), makeValueInfo("state_out", DataType.FLOAT, [1, 4])],
  );
}

function chunks(count: number): FidelityData {
  const samples = Array.from({ length: count }, (_, c) => ({
    feeds: {
      x: { type: "float32" as const, dims: [2, 4], data: Float32Array.from({ length: 8 }, (_, i) => ((i * 7 + c * 3) % 5) - 2) },
      state: { type: "float32" as const, dims: [1, 4], data: new Float32Array(4) },
    },
    label: c % 4,
    sequence: 0,
    chunk: c,
  }));
  return { kind: "fidelity", samples, calibrationBatches: [], files: [], state: [{ input: "state", output: "state_out" }] };
}

function outputsOf(yaml: string): Pick<FidelityEvaluation, "outputs" | "metric"> {
  return parseConfig(`model: m.onnx\nevaluation:\n  task: fidelity\n  dataset: d.npy\n${yaml}`, "quantgate.yml").evaluation as FidelityEvaluation;
}

async function sessions(gainQ: number) {
  const o = { intraOpNumThreads: 1 };
  return [
    await ort.InferenceSession.create(serializeModel(accumulator(1)), o),
    await ort.InferenceSession.create(serializeModel(accumulator(gainQ)), o),
  ] as const;
}

describe("the fidelity task", () => {
  it("is exact for identical models and feeds each model's state forward chunk by chunk", async () => {
    const [f, q] = await Promise.all([
      ort.InferenceSession.create(serializeModel(accumulator(1))),
      ort.InferenceSession.create(serializeModel(accumulator(1))),
    ]);
    const cfg = outputsOf("  outputs:\n    - { name: logits, kind: logits, min_cosine: 0.9999, max_kl_mean: 1e-9 }\n");
    const r = await evaluateFidelity(ort as unknown as Ort, f, q, chunks(3), cfg);
    expect(r.outputs[0]!.relativeL2).toBe(0);
    expect(r.outputs[0]!.top1Agreement).toBe(1);
    expect(r.outputs[0]!.positions).toBe(6);
    expect(r.rules.map((x) => x.status)).toEqual(["pass", "pass"]);
  });

  it("measures a drift that accumulates through the state and fails the rules it breaks", async () => {
    const [f, q] = await sessions(1.05);
    const cfg = outputsOf(
      "  outputs:\n    - { name: logits, kind: logits, min_cosine: { warn: 0.99, fail: 0.9 }, max_relative_l2: 0.01, max_abs_error: 10 }\n",
    );
    const r = await evaluateFidelity(ort as unknown as Ort, f, q, chunks(4), cfg);
    const o = r.outputs[0]!;
    // Chunk c's quantized state carries 1.05x the float one: the error grows with c, relative L2 about 5%.
    expect(o.relativeL2).toBeGreaterThan(0.03);
    expect(o.relativeL2).toBeLessThan(0.06);
    expect(r.rules.map((x) => [x.rule, x.status])).toEqual([
      ["outputs.logits.min_cosine", "pass"], // a gain changes the length, barely the direction
      ["outputs.logits.max_relative_l2", "fail"],
      ["outputs.logits.max_abs_error", "pass"],
    ]);
    expect(o.cosineMean).toBeCloseTo(1, 6); // quantized = 1.05 x float at every chunk: same direction
    expect(r.kl.mean).toBeGreaterThan(0);
  });

  it("runs a user metric module on float outputs, quantized outputs and labels, with limits", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "qg-metric-"));
    const file = path.join(dir, "metric.mjs");
    await writeFile(
      file,
      `export default function (floatOut, quantOut, labels) {
  let err = 0;
  for (let i = 0; i < floatOut.length; i++) err += Math.abs(floatOut[i].logits.data[0] - quantOut[i].logits.data[0]);
  return { first_value_error: err / floatOut.length, labelled: labels.filter((l) => l !== undefined).length };
}\n`,
    );
    const metric = await loadUserMetric(file);
    const [f, q] = await sessions(1.05);
    const cfg = outputsOf(
      `  outputs:\n    - { name: logits }\n  metric:\n    module: metric.mjs\n    limits:\n      first_value_error: { max: 0.001 }\n      labelled: { min: 4 }\n`,
    );
    const r = await evaluateFidelity(ort as unknown as Ort, f, q, chunks(4), cfg, metric);
    expect(r.userMetrics!.labelled).toBe(4);
    expect(r.userMetrics!.first_value_error).toBeGreaterThan(0.001);
    expect(r.rules.map((x) => [x.rule, x.status])).toEqual([
      ["metric.first_value_error.max", "fail"],
      ["metric.labelled.min", "pass"],
    ]);
  });

  it("treats a lower bound's warn above its fail, and an unmeasured value as a failure", () => {
    expect(fidelityRule("r", "x", "ratio", "min", 0.95, { warn: 0.99, fail: 0.9 }).status).toBe("warn");
    expect(fidelityRule("r", "x", "ratio", "min", undefined, { fail: 0.9 }).status).toBe("fail");
    expect(() => outputsOf("  outputs:\n    - { name: y, min_cosine: { warn: 0.9, fail: 0.99 } }\n")).toThrow(/warn \(0\.9\) must not be below fail/);
  });
});
