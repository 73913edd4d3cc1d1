// The language-modeling task on LLM exports (Optimum and GenAI layouts): every declared input is fed (attention
// mask, positions, empty past), windows can overlap (evaluation.stride), and float vs itself is exact.
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parseConfig } from "../src/config/load.js";
import type { LmEvaluation } from "../src/config/schema.js";
import { loadModel, valueInfoTensorType } from "../src/onnx/model.js";
import { declaredDims } from "../src/data/records.js";
import { feedTypeOf } from "../src/data/tensors.js";
import { pathResolver } from "../src/config/load.js";
import { languageModelingTask } from "../src/tasks/language-modeling.js";
import { createSession, loadOrt } from "../src/runtime/ort.js";

const ROOT = path.join(import.meta.dirname, "..");
const FIXTURES = path.join(ROOT, "test", "fixtures", "llm");

function config(model: string, extra = ""): ReturnType<typeof parseConfig> {
  const text = `model: ${model}
recipe: { format: int4, block_size: 32 }
evaluation:
  task: language-modeling
  dataset: ../../../examples/tiny-lm/eval.txt
  tokenizer: ../../../examples/tiny-lm/tokenizer.json
  sequence_length: 32
  samples: 5
  batch_size: 2
${extra}`;
  return parseConfig(text, path.join(FIXTURES, "quantgate.yml"), {}, { workspace: ROOT });
}

async function inputsOf(file: string) {
  const model = await loadModel(file);
  return model.graph.input.map((i) => {
    const t = valueInfoTensorType(i)!;
    return { name: i.name, type: feedTypeOf(t.elemType)!, rank: t.rank, dims: declaredDims(i) };
  });
}

describe("language-modeling task on LLM exports", () => {
  for (const file of ["model.onnx", "genai.onnx", "model-fp16.onnx"]) {
    it(`feeds every input of ${file} and scores float vs itself exactly`, async () => {
      const cfg = config(file);
      const ev = cfg.evaluation as LmEvaluation;
      const inputs = await inputsOf(path.join(FIXTURES, file));
      expect(inputs.length).toBeGreaterThan(2); // input_ids plus mask and past key/values
      const data = await languageModelingTask.load(ev, { resolve: pathResolver(cfg), inputs });
      for (const i of inputs) expect(data.evalBatches[0]![i.name], i.name).toBeDefined();
      const { ort } = await loadOrt();
      const s = await createSession(ort, path.join(FIXTURES, file), 1);
      try {
        const r = await languageModelingTask.evaluate(ev, data, { ort, float: s, quantized: s, threads: 1 });
        const m = Object.fromEntries(r.metrics.map((x) => [x.key, x]));
        // random weights: perplexity near the vocabulary size, and the model agrees with itself exactly
        expect(m.perplexity!.float).toBeGreaterThan(100);
        expect(m.perplexity!.quantized).toBeCloseTo(m.perplexity!.float!, 6);
        expect(m.kl_mean!.quantized).toBe(0);
        expect(m.top1_agreement!.quantized).toBe(1);
        expect(r.samples).toMatchObject({ evaluated: 5, sequences: 5 * 31, sequenceUnit: "predicted tokens" });
      } finally {
        await s.release();
      }
    });
  }

  it("scores each token once with overlapping windows (evaluation.stride)", async () => {
    const cfg = config("model.onnx", "  stride: 16\n");
    const ev = cfg.evaluation as LmEvaluation;
    const data = await languageModelingTask.load(ev, { resolve: pathResolver(cfg), inputs: await inputsOf(path.join(FIXTURES, "model.onnx")) });
    expect(data.scoreFrom.flat()).toEqual([1, 16, 16, 16, 16]);
    const { ort } = await loadOrt();
    const s = await createSession(ort, path.join(FIXTURES, "model.onnx"), 1);
    try {
      const r = await languageModelingTask.evaluate(ev, data, { ort, float: s, quantized: s, threads: 1 });
      expect(r.samples.sequences).toBe(31 + 4 * 16);
      expect(r.details).toMatchObject({ stride: 16 });
    } finally {
      await s.release();
    }
  });

  it("names an input it cannot fill, with the config key", async () => {
    const cfg = config("model.onnx");
    const inputs = [...(await inputsOf(path.join(FIXTURES, "model.onnx"))), { name: "mystery", type: "float32" as const, rank: 1, dims: [3] }];
    await expect(languageModelingTask.load(cfg.evaluation as LmEvaluation, { resolve: pathResolver(cfg), inputs })).rejects.toThrow(
      /cannot fill model input "mystery".*evaluation\.inputs/,
    );
  });
});
