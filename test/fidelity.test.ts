import { mkdtemp, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { parseConfig } from "../src/config/load.js";
import type { FidelityEvaluation } from "../src/config/schema.js";
import { evaluateGate } from "../src/gate/index.js";
import { gateSchema } from "../src/config/schema.js";
import { fidelityTask, type FidelityData } from "../src/tasks/fidelity.js";
import type { TaskEvaluation } from "../src/tasks/types.js";
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
  return {
    task: "fidelity",
    samples,
    calibrationBatches: [],
    files: [],
    state: [{ input: "state", output: "state_out" }],
    count: { evaluated: 1, total: 1, sequences: count, sequenceUnit: "chunks" },
  };
}

function outputsOf(yaml: string): FidelityEvaluation {
  return parseConfig(`model: m.onnx\nevaluation:\n  task: fidelity\n  dataset: d.npy\n${yaml}`, "quantgate.yml").evaluation as FidelityEvaluation;
}

/** The task's rules judged by the gate, as [rule, status]. */
function judged(e: TaskEvaluation): [string, string][] {
  return evaluateGate(gateSchema.parse({}), e.metrics, [], e.rules).rules.map((x) => [x.rule, x.status]);
}
const metric = (e: TaskEvaluation, key: string) => e.metrics.find((m) => m.key === key)!;
const evaluate = (f: ort.InferenceSession, q: ort.InferenceSession, data: FidelityData, cfg: FidelityEvaluation) =>
  fidelityTask.evaluate(cfg, data, { ort: ort as unknown as Ort, float: f, quantized: q, threads: 1 });

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
    const r = await evaluate(f, q, chunks(3), cfg);
    expect(metric(r, "output.logits.relative_l2").quantized).toBe(0);
    expect(metric(r, "output.logits.top1_agreement").quantized).toBe(1);
    expect(metric(r, "output.logits.top1_agreement").perSample!.quantized).toHaveLength(6);
    expect(judged(r).map((x) => x[1])).toEqual(["pass", "pass"]);
    expect(metric(r, "accuracy").float).toBeDefined(); // labelled chunks: argmax of the logits output vs labels
  });

  it("measures a drift that accumulates through the state and fails the rules it breaks", async () => {
    const [f, q] = await sessions(1.05);
    const cfg = outputsOf(
      "  outputs:\n    - { name: logits, kind: logits, min_cosine: { warn: 0.99, fail: 0.9 }, max_relative_l2: 0.01, max_abs_error: 10 }\n",
    );
    const r = await evaluate(f, q, chunks(4), cfg);
    const rel = metric(r, "output.logits.relative_l2").quantized;
    // Chunk c's quantized state carries 1.05x the float one: the error grows with c, relative L2 about 5%.
    expect(rel).toBeGreaterThan(0.03);
    expect(rel).toBeLessThan(0.06);
    expect(judged(r)).toEqual([
      ["outputs.logits.min_cosine", "pass"], // a gain changes the length, barely the direction
      ["outputs.logits.max_relative_l2", "fail"],
      ["outputs.logits.max_abs_error", "pass"],
    ]);
    expect(metric(r, "output.logits.cosine").quantized).toBeCloseTo(1, 6); // quantized = 1.05 x float at every chunk: same direction
    expect(metric(r, "kl_mean").quantized).toBeGreaterThan(0);
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
    const [f, q] = await sessions(1.05);
    const cfg = outputsOf(
      `  outputs:\n    - { name: logits }\n  metric:\n    module: metric.mjs\n    limits:\n      first_value_error: { max: 0.001 }\n      labelled: { min: 4 }\n`,
    );
    const r = await evaluate(f, q, { ...chunks(4), metricFile: file }, cfg);
    expect(metric(r, "metric.labelled").quantized).toBe(4);
    expect(metric(r, "metric.first_value_error").quantized).toBeGreaterThan(0.001);
    expect(judged(r)).toEqual([
      ["metric.first_value_error.max", "fail"],
      ["metric.labelled.min", "pass"],
    ]);
  });

  it("treats a lower bound's warn above its fail, and an unmeasured value as a failure", async () => {
    const [f, q] = await sessions(1.05);
    const r = await evaluate(f, q, chunks(2), outputsOf("  outputs:\n    - { name: logits, min_cosine: { warn: 2, fail: 0.9 }, max_kl_mean: 1 }\n"));
    // kind "values": no KL is measured, so max_kl_mean has nothing to judge and fails closed
    expect(judged(r)).toEqual([
      ["outputs.logits.min_cosine", "warn"],
      ["outputs.logits.max_kl_mean", "fail"],
    ]);
    expect(() => outputsOf("  outputs:\n    - { name: y, min_cosine: { warn: 0.9, fail: 0.99 } }\n")).toThrow(/warn \(0\.9\) must not be below fail/);
  });
});
