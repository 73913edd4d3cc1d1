// The whole gate on corpus models (issue 10): an already-quantized model is evaluated against its float
// reference_model; GPTQ with calibration on Gemms inside an If runs end to end.
import { mkdtemp, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parseConfig } from "../src/config/load.js";
import { runGate } from "../src/pipeline.js";
import { loadOrt } from "../src/runtime/ort.js";
import { randomMatrix } from "./helpers/models.js";

const CORPUS = path.join(import.meta.dirname, "corpus");

async function fixture(inputName: string, width: number | number[], body: string, output = "y") {
  const dir = await mkdtemp(path.join(os.tmpdir(), "qg-exports-"));
  const dims = typeof width === "number" ? [1, width] : width;
  const size = dims.reduce((a, b) => a * b, 1);
  const rows = (n: number, seed: number) =>
    Array.from({ length: n }, (_, i) => JSON.stringify({ inputs: { [inputName]: { dims, data: Array.from(randomMatrix(1, size, seed + i)) } } })).join("\n") +
    "\n";
  await writeFile(path.join(dir, "eval.jsonl"), rows(12, 100));
  await writeFile(path.join(dir, "calib.jsonl"), rows(8, 200));
  const text = `allow_outside_workspace: true
${body}
evaluation:
  task: fidelity
  dataset: eval.jsonl
  calibration: calib.jsonl
  outputs:
    - { name: ${output}, min_cosine: 0.99 }
measure:
  memory: false
  kernel_benchmark: false
output_dir: out
`;
  const file = path.join(dir, "quantgate.yml");
  await writeFile(file, text);
  return parseConfig(text, file);
}

describe("already-quantized models", () => {
  it("without reference_model: the error lists the already-quantized tensors and says how to evaluate them", async () => {
    const config = await fixture("x", 64, `model: ${path.join(CORPUS, "prequantized_qdq_opset13.onnx")}`);
    const run = await runGate(config, { ort: await loadOrt() });
    expect(run.report.verdict).toBe("fail");
    expect(run.report.gate.errors.join("\n")).toMatch(
      /2 tensors are already quantized \(fc1\.weight_quantized: 8-bit, fc2\.weight_quantized: 8-bit\): set reference_model/,
    );
  });

  it("with reference_model: evaluated as it is against the float original, and its tensors listed as already quantized", async () => {
    const config = await fixture(
      "x",
      64,
      `model: ${path.join(CORPUS, "prequantized_qdq_opset13.onnx")}\nreference_model: ${path.join(CORPUS, "prequantized_float_reference.onnx")}`,
    );
    const run = await runGate(config, { ort: await loadOrt() });
    expect(run.report.gate.errors).toEqual([]);
    expect(run.report.verdict).toBe("pass");
    expect(run.report.float.path).toMatch(/prequantized_float_reference\.onnx$/);
    expect(run.report.weights.quantized).toEqual([]);
    expect(run.report.weights.skipped.map((s) => [s.name, s.alreadyQuantizedBits])).toEqual([
      ["fc1.weight_quantized", 8],
      ["fc2.weight_quantized", 8],
    ]);
    const cos = JSON.stringify(run.report.evaluation);
    expect(cos).toMatch(/cosine/);
  });
});

describe("GPTQ on Conv through the gate", () => {
  it("calibrates the im2col rows of every Conv (grouped and depthwise too) and quantizes them with GPTQ", async () => {
    const config = await fixture(
      "image",
      [1, 3, 12, 12],
      `model: ${path.join(CORPUS, "cnn_grouped_opset11.onnx")}\nrecipe:\n  format: int4\n  block_size: 16\n  algorithm: gptq\n  min_elements: 256`,
      "logits",
    );
    const run = await runGate(config, { ort: await loadOrt() });
    expect(run.report.gate.errors).toEqual([]);
    expect(run.report.verdict).toBe("pass");
    const conv = run.report.weights.quantized.filter((l) => l.op === "Conv");
    expect(conv.map((l) => [l.name, l.algorithm])).toEqual([
      ["c1.weight", "gptq"],
      ["dw.weight", "gptq"],
      ["gc.weight", "gptq"],
    ]);
    expect(conv.every((l) => l.notes.some((n) => /im2col/.test(n)))).toBe(true);
  });
});

describe("calibration on control flow through the gate", () => {
  it("GPTQ on the Gemms inside an If: calibrates, quantizes both branches with GPTQ, passes", async () => {
    const config = await fixture("x", 40, `model: ${path.join(CORPUS, "if_gemm_opset13.onnx")}\nrecipe:\n  format: int4\n  block_size: 32\n  algorithm: gptq`);
    const run = await runGate(config, { ort: await loadOrt() });
    expect(run.report.gate.errors).toEqual([]);
    expect(run.report.stages.find((s) => s.stage === "calibrate")!.status).toBe("ok");
    expect(run.report.weights.quantized.map((l) => [l.name, l.algorithm, l.graph]).sort()).toEqual([
      ["else.fc.weight", "gptq", 'If "If_branch" else_branch'],
      ["out.weight", "gptq", "main graph"],
      ["then.fc.weight", "gptq", 'If "If_branch" then_branch'],
    ]);
  });
});
