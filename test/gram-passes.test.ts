// Calibration in passes under a Gram budget (src/calibrate/passes.ts): the grouping in graph order, and the gate on
// the LLM fixture giving the same quantized model, byte for byte, whether its Grams come from one pass or from one
// pass per Gram; the calibration graph written beside a model with external data is removed afterwards.
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { calibrate, CalibrationRunner, prefixModel } from "../src/calibrate/index.js";
import { defaultGramBudget, gramBytes, graphPositions, planGramPasses, type GramItem } from "../src/calibrate/passes.js";
import { parseConfig } from "../src/config/load.js";
import { loadModel } from "../src/onnx/model.js";
import { findWeights } from "../src/onnx/weights.js";
import { gaussian } from "./helpers/models.js";
import type { Feeds } from "../src/data/tensors.js";
import { runGate, type StageName } from "../src/pipeline.js";
import { recipeSchema } from "../src/config/schema.js";
import { loadOrt, type Ort } from "../src/runtime/ort.js";
import ortNode from "onnxruntime-node";

const ROOT = path.join(import.meta.dirname, "..");
const FIXTURES = path.join(ROOT, "test", "fixtures", "llm");
const tmp = mkdtempSync(path.join(os.tmpdir(), "quantgate-gram-passes-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The fixture with external data in a folder of its own (the calibration graph is written beside it). */
function externalCopy(): string {
  const dest = path.join(mkdtempSync(path.join(tmp, "ext-")), "model-ext.onnx");
  copyFileSync(path.join(FIXTURES, "model-ext.onnx"), dest);
  copyFileSync(path.join(FIXTURES, "model-ext.onnx.data"), `${dest}.data`);
  return dest;
}

async function config(model: string, algorithm: string, calibration = { samples: 2, sequence: 32 }): Promise<ReturnType<typeof parseConfig>> {
  const dir = mkdtempSync(path.join(tmp, "run-"));
  const text = `allow_outside_workspace: true
model: ${model}
output_dir: out
recipe: { format: int4, block_size: 32, algorithm: ${algorithm}, accuracy_level: 0 }
evaluation:
  task: language-modeling
  dataset: ${path.join(ROOT, "examples/tiny-lm/eval.txt")}
  tokenizer: ${path.join(ROOT, "examples/tiny-lm/tokenizer.json")}
  calibration: ${path.join(ROOT, "examples/tiny-lm/calib.txt")}
  calibration_samples: ${calibration.samples}
  sequence_length: ${calibration.sequence}
  samples: 4
  batch_size: 2
measure:
  threads: 1
  warmup: 1
  runs: 1
  kernel_benchmark: false
  decode: { prompts: 1, prompt_tokens: 4, decode_tokens: 2 }
`;
  const file = path.join(dir, "quantgate.yml");
  await writeFile(file, text);
  return parseConfig(text, file);
}

/** One gate run: the quantized model's bytes (and data file's), the report, and each stage's progress detail. */
async function gate(model: string, algorithm: string, gramBudgetBytes?: number, calibration?: { samples: number; sequence: number }) {
  const ort = await loadOrt();
  const details = new Map<StageName, string>();
  const progress = { stageStart: (s: StageName, d?: string) => details.set(s, d ?? ""), stageEnd: () => undefined };
  const run = await runGate(await config(model, algorithm, calibration), { ort, progress, gramBudgetBytes });
  expect(run.report.stages.filter((s) => s.status === "error")).toEqual([]);
  const file = run.quantizedModelPath!;
  return {
    report: run.report,
    details,
    bytes: readFileSync(file),
    data: existsSync(`${file}.data`) ? readFileSync(`${file}.data`) : undefined,
  };
}

describe("Gram passes", () => {
  it("groups the Gram matrices in graph order within the budget, one pass when all fit", async () => {
    const model = await loadModel(path.join(FIXTURES, "model.onnx"));
    const recipe = recipeSchema.parse({ format: "int4", block_size: 32 });
    const products = findWeights(model.graph, recipe).weights.filter((w) => w.kind === "product");
    const byActivation = new Map(products.map((w) => [w.node.input[0]!, w.k]));
    expect(byActivation.size).toBeGreaterThan(4);
    // listed in reverse: the plan orders them by where the graph computes them
    const items: GramItem[] = [...byActivation].reverse().map(([a, k]) => ({ key: a, activation: a, bytes: gramBytes(k) }));
    const total = items.reduce((a, i) => a + i.bytes, 0);
    expect(planGramPasses(model.graph, items, total)).toEqual([[...items].reverse()]);
    const pos = graphPositions(
      model.graph,
      items.map((i) => i.activation),
    );
    for (const budget of [1, Math.max(...items.map((i) => i.bytes)), Math.ceil(total / 3)]) {
      const groups = planGramPasses(model.graph, items, budget);
      expect(groups.flat().map((i) => i.key)).toEqual([...items].reverse().map((i) => i.key));
      const flat = groups.flat();
      for (let i = 1; i < flat.length; i++) expect(pos.get(flat[i]!.activation)!).toBeGreaterThanOrEqual(pos.get(flat[i - 1]!.activation)!);
      // within the budget, or a single Gram over it alone; and no two neighbours could have been one group
      for (const g of groups) expect(g.length === 1 || g.reduce((a, i) => a + i.bytes, 0) <= budget).toBe(true);
      for (let i = 1; i < groups.length; i++) {
        const sum = [...groups[i - 1]!, groups[i]![0]!].reduce((a, x) => a + x.bytes, 0);
        expect(sum).toBeGreaterThan(budget);
      }
      if (budget === 1) expect(groups).toHaveLength(items.length);
    }
    // an item without a Gram joins the group being filled
    const free: GramItem = { key: "free", activation: items[0]!.activation, bytes: 0 };
    expect(planGramPasses(model.graph, [...items, free], 1)).toHaveLength(items.length);
    expect(defaultGramBudget(10)).toBe(64 * 2 ** 20);
    expect(defaultGramBudget(2 ** 32)).toBe(2 ** 30);
  });

  it("runs a prefix of the graph for early activations, with the statistics of the whole graph", async () => {
    const file = externalCopy();
    const model = await loadModel(file);
    const recipe = recipeSchema.parse({ format: "int4", block_size: 32 });
    const acts = [
      ...new Set(
        findWeights(model.graph, recipe)
          .weights.filter((w) => w.kind === "product")
          .map((w) => w.node.input[0]!),
      ),
    ];
    const pos = graphPositions(model.graph, acts);
    const ordered = [...acts].sort((a, b) => pos.get(a)! - pos.get(b)!);
    const early = ordered.slice(0, 2);
    const cut = prefixModel(model.proto, early)!;
    expect(cut.graph!.node.length).toBe(Math.max(...early.map((a) => pos.get(a)!)) + 1);
    expect(cut.graph!.initializer.length).toBeLessThan(model.graph.initializer.length);
    expect(prefixModel(model.proto, [model.graph.node.at(-1)!.output[0]!])).toBeUndefined();
    const ort = ortNode as unknown as Ort;
    // 2 x 8 tokens, no past: the feeds the LM task builds (past key/values [batch, kv heads, 0, head size])
    const meta = await ortNode.InferenceSession.create(file);
    const g = gaussian(5);
    const feeds: Feeds = {};
    for (const [i, name] of meta.inputNames.entries()) {
      const shape = (meta.inputMetadata[i] as unknown as { shape: readonly (number | string)[] }).shape;
      if (name === "input_ids")
        feeds[name] = { type: "int64", dims: [2, 8], data: BigInt64Array.from({ length: 16 }, () => BigInt(Math.floor(Math.abs(g()) * 100) % 500)) };
      else if (name === "attention_mask") feeds[name] = { type: "int64", dims: [2, 8], data: new BigInt64Array(16).fill(1n) };
      else if (name === "position_ids") feeds[name] = { type: "int64", dims: [2, 8], data: BigInt64Array.from({ length: 16 }, (_, j) => BigInt(j % 8)) };
      else feeds[name] = { type: "float32", dims: shape.map((d, j) => (j === 0 ? 2 : j === 2 ? 0 : Number(d))), data: new Float32Array(0) };
    }
    await meta.release();
    const batches = [feeds];
    const gram = { names: new Set(acts), maxRows: 1000 };
    const whole = await calibrate(ort, model.proto, acts, batches, 1, gram, new Map(), [], { modelPath: file });
    const runner = CalibrationRunner.open(ort, model.proto, acts, new Map(), { modelPath: file, prefix: true });
    try {
      for (const names of [early, ordered.slice(-1)]) {
        const part = await runner.run(names, batches, 1, gram);
        expect([...part.stats.keys()].sort()).toEqual([...names].sort());
        for (const n of names) {
          const [a, b] = [part.stats.get(n)!, whole.stats.get(n)!];
          expect(a.gram).toBeDefined();
          expect(Buffer.from(a.gram!.buffer).equals(Buffer.from(b.gram!.buffer))).toBe(true);
          expect(Buffer.from(a.meanSquare.buffer).equals(Buffer.from(b.meanSquare.buffer))).toBe(true);
        }
      }
      // Grams of 12 rows from batches of 16: with gramsOnly the run stops after the first batch, with the same Grams
      const capped = { names: gram.names, maxRows: 12 };
      const three = [feeds, feeds, feeds];
      const all = await calibrate(ort, model.proto, acts, three, 1, capped, new Map(), [], { modelPath: file });
      const first = await runner.run(early, three, 1, capped, [], { gramsOnly: true });
      expect(first.batches).toBe(1);
      expect(all.batches).toBe(3);
      for (const n of early) {
        expect(first.stats.get(n)!.gramRows).toBe(12);
        expect(Buffer.from(first.stats.get(n)!.gram!.buffer).equals(Buffer.from(all.stats.get(n)!.gram!.buffer))).toBe(true);
        expect(first.stats.get(n)!.rows * 3).toBe(all.stats.get(n)!.rows);
      }
    } finally {
      runner.close();
    }
    expect(readdirSync(path.dirname(file)).filter((f) => f.includes("quantgate-calibration"))).toEqual([]);
  });

  it("gives the same quantized model from one pass per Gram as from one pass (external data, GPTQ with the tied head)", { timeout: 180_000 }, async () => {
    const model = externalCopy();
    const folder = readdirSync(path.dirname(model)).sort();
    // 20 windows of 128 tokens: more rows than a Gram takes (2048), so each pass stops once its Grams are full
    const calibration = { samples: 20, sequence: 128 };
    const one = await gate(model, "gptq", undefined, calibration);
    const many = await gate(model, "gptq", 1, calibration);
    expect(one.details.get("calibrate")).not.toMatch(/passes/);
    // 7 distinct inputs per layer pair (q/k/v and gate/up share theirs), the LM head's: one pass each
    const passes = Number(/Gram matrices in (\d+) passes/.exec(many.details.get("calibrate") ?? "")?.[1]);
    expect(passes).toBeGreaterThan(4);
    expect(many.data).toBeDefined();
    expect(many.bytes.equals(one.bytes)).toBe(true);
    expect(many.data!.equals(one.data!)).toBe(true);
    // per-layer errors too (their output-error ratios weigh by the channel statistics of all 2560 rows)
    expect(many.report.weights.quantized.map((l) => l.notes).flat()).toContain("gptq damp 0.01, Hessian from 2048 rows");
    expect(many.report.weights.quantized).toEqual(one.report.weights.quantized);
    const tied = many.report.weights.quantized.find((l) => l.name === "model.embed_tokens.weight")!;
    expect(tied.algorithm).toBe("gptq");
    expect(tied.notes.join(" ")).toMatch(/gptq on the LM head input's Hessian/);
    const metric = (r: typeof one.report, key: string) => r.metrics.find((m) => m.key === key)?.quantized;
    for (const key of ["perplexity", "kl_mean"]) {
      expect(metric(many.report, key), key).toBeDefined();
      expect(metric(many.report, key), key).toBe(metric(one.report, key));
    }
    expect(many.report.calibration).toEqual({ ...one.report.calibration, ms: many.report.calibration!.ms });
    // the calibration graph written beside the model is gone
    expect(readdirSync(path.dirname(model)).sort()).toEqual(folder);
  });

  it("gives the same quantized model in passes for GPTQ on Convs (the segmentation example's U-Net)", { timeout: 180_000 }, async () => {
    const dir = path.join(ROOT, "examples", "segmentation");
    const conv = async (gramBudgetBytes?: number) => {
      const cfgDir = mkdtempSync(path.join(tmp, "conv-"));
      const text = `allow_outside_workspace: true
model: ${path.join(dir, "model.onnx")}
output_dir: out
recipe: { format: int4, block_size: 16, algorithm: gptq, min_elements: 256, accuracy_level: 0 }
evaluation:
  task: segmentation
  dataset: ${path.join(dir, "eval")}
  labels: ${path.join(dir, "eval", "labels.csv")}
  calibration: ${path.join(dir, "calib")}
  preprocess: { scale: 0.00392156862745098, mean: [0.5], std: [0.25], layout: NCHW, channels: rgb }
  output: logits
  mask: { mode: argmax, class_axis: 1 }
  samples: 8
measure: { threads: 1, warmup: 1, runs: 1, kernel_benchmark: false }
`;
      const file = path.join(cfgDir, "quantgate.yml");
      await writeFile(file, text);
      const details = new Map<StageName, string>();
      const progress = { stageStart: (st: StageName, d?: string) => details.set(st, d ?? ""), stageEnd: () => undefined };
      const run = await runGate(parseConfig(text, file), { ort: await loadOrt(), progress, gramBudgetBytes });
      expect(run.report.stages.filter((st) => st.status === "error")).toEqual([]);
      expect(run.report.weights.quantized.filter((l) => l.algorithm === "gptq").length).toBeGreaterThan(5);
      return { details, bytes: readFileSync(run.quantizedModelPath!) };
    };
    const one = await conv();
    const many = await conv(1);
    expect(one.details.get("calibrate")).not.toMatch(/passes/);
    expect(Number(/Gram matrices in (\d+) passes/.exec(many.details.get("calibrate") ?? "")?.[1])).toBeGreaterThan(5);
    expect(many.bytes.equals(one.bytes)).toBe(true);
  });

  it("gives the same quantized model in passes for an inline model (AWQ)", { timeout: 180_000 }, async () => {
    const model = path.join(FIXTURES, "model.onnx");
    const one = await gate(model, "awq");
    const many = await gate(model, "awq", 1);
    expect(many.details.get("calibrate")).toMatch(/Gram matrices in \d+ passes/);
    expect(many.bytes.equals(one.bytes)).toBe(true);
    expect(readdirSync(FIXTURES).some((f) => f.includes("quantgate-calibration"))).toBe(false);
  });
});
