import { readFileSync } from "node:fs";
import { mkdtemp, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import ort from "onnxruntime-node";
import { beforeAll, describe, expect, it } from "vitest";
import type { ModelInputInfo } from "../../src/data/index.js";
import type { Ort, Session } from "../../src/runtime/ort.js";
import { decodeText, textRecognitionEvaluation, textRecognitionTask, type TextRecognitionEvaluation } from "../../src/tasks/text-recognition.js";
import type { MetricRecord, TaskEvaluation } from "../../src/tasks/types.js";
import { REPO_ROOT } from "../helpers/action.js";
import { quantizeModel } from "../helpers/quantize.js";
import { exampleConfig, judge } from "./judge.js";

const DIR = path.join(REPO_ROOT, "examples", "text-recognition");
const MODEL = path.join(DIR, "model.onnx");
const INPUTS: ModelInputInfo[] = [{ name: "image", type: "float32", rank: 4, dims: [undefined, 1, 32, 160] }];
const STATS = JSON.parse(readFileSync(path.join(DIR, "train_stats.json"), "utf8"));
const example = exampleConfig(path.join(DIR, "quantgate.yml"));
const resolve = (p: string): string => path.resolve(DIR, p);
const metric = (e: TaskEvaluation, key: string): MetricRecord => e.metrics.find((m) => m.key === key)!;

function config(edit: Record<string, unknown> = {}): TextRecognitionEvaluation {
  return textRecognitionEvaluation.parse({ ...example.evaluation, ...edit });
}

async function session(model: string | Uint8Array): Promise<Session> {
  const opts = { intraOpNumThreads: 1 };
  return typeof model === "string" ? ort.InferenceSession.create(model, opts) : ort.InferenceSession.create(model, opts);
}

async function run(cfg: TextRecognitionEvaluation, float: Session, quantized: Session): Promise<TaskEvaluation> {
  const data = await textRecognitionTask.load(cfg, { resolve, inputs: INPUTS });
  return textRecognitionTask.evaluate(cfg, data, { ort: ort as unknown as Ort, float, quantized, threads: 1 });
}

describe("the text-recognition task on the committed CTC example", () => {
  let float: Session;
  let int8: Session;
  let int2: Session;
  beforeAll(async () => {
    float = await session(MODEL);
    int8 = await session((await quantizeModel(MODEL, example.recipe)).bytes);
    int2 = await session((await quantizeModel(MODEL, { format: "int2", block_size: 64, symmetric: false, min_elements: 256 })).bytes);
  });

  it("reads the example's config, labels, dictionary and calibration images", async () => {
    const cfg = config();
    const data = await textRecognitionTask.load(cfg, { resolve, inputs: INPUTS });
    expect(data.samples).toHaveLength(64);
    expect(data.total).toBe(64);
    expect(data.symbols).toHaveLength(27);
    expect(data.references![0]).toBe(STATS.eval_texts_first8[0]);
    expect(data.calibrationBatches).toHaveLength(16);
    expect(data.calibrationBatches[0]!.image!.dims).toEqual([1, 1, 32, 160]);
    expect(data.files.map((f) => f.path)).toEqual(expect.arrayContaining(["eval/000.png", "dict.txt", "eval/labels.csv", "calib/015.png"]));
  });

  it("is exact for the float model against itself, and reproduces torch's transcripts and CER", async () => {
    const e = await run(config(), float, float);
    expect(metric(e, "cer_vs_float").quantized).toBe(0);
    expect(metric(e, "wer_vs_float").quantized).toBe(0);
    const cer = metric(e, "cer");
    expect(cer.float).toBe(cer.quantized);
    expect(cer.float).toBeCloseTo(STATS.eval_cer, 5);
    expect(metric(e, "wer").float).toBeCloseTo(STATS.eval_wer, 5);
    expect(e.samples).toEqual({ evaluated: 64, total: 64 });
    expect(e.warnings).toEqual([]);
  });

  it("passes the example's gate with int8: the quantized transcripts barely move", async () => {
    const e = await run(config(), float, int8);
    const judged = judge(e.metrics, example.gate);
    expect(judged.map((j) => j.rule).sort()).toEqual(["max_cer", "max_cer_increase", "max_cer_vs_float", "max_wer_increase"]);
    expect(
      judged.filter((j) => j.status === "fail"),
      JSON.stringify(judged),
    ).toEqual([]);
    expect(metric(e, "cer").quantized).toBeLessThan(0.05);
    console.log(`text-recognition int8: ${e.metrics.map((m) => `${m.key} ${m.float ?? "-"} -> ${m.quantized}`).join("; ")}`);
  });

  it("passes the example's gate with int4 (block 32) too", async () => {
    const int4 = await session((await quantizeModel(MODEL, { format: "int4", block_size: 32, symmetric: false, min_elements: 256 })).bytes);
    const e = await run(config(), float, int4);
    expect(judge(e.metrics, example.gate).filter((j) => j.status === "fail")).toEqual([]);
    expect(metric(e, "cer_vs_float").quantized).toBeGreaterThan(0); // int4 does change a few characters
  });

  it("fails the example's gate with int2: the transcripts fall apart", async () => {
    const e = await run(config(), float, int2);
    expect(metric(e, "cer_vs_float").quantized).toBeGreaterThan(0.05);
    const failed = judge(e.metrics, example.gate).filter((j) => j.status === "fail");
    expect(failed.map((j) => j.rule)).toEqual(expect.arrayContaining(["max_cer_vs_float", "max_cer_increase"]));
    expect((e.details!.lines as unknown[]).length).toBeGreaterThan(0);
  });

  it("without labels gives the vs-float metrics only, and counts what samples left out", async () => {
    const e = await run(config({ labels: undefined, samples: 10 }), float, int8);
    expect(e.metrics.map((m) => m.key)).toEqual(["cer_vs_float", "wer_vs_float"]);
    expect(e.samples.evaluated).toBe(10);
    expect(e.samples.total).toBe(64);
    expect(e.samples.leftOut).toMatch(/first 10 of 64 images in file-name order/);
  });

  it("names the mismatch when the dictionary does not fit the output's classes", async () => {
    await expect(run(config({ decode: { ...(example.evaluation.decode as object), append_space: true } }), float, float)).rejects.toThrow(
      /output "logits" has 28 classes on axis -1 \(shape \[1, 40, 28\]\), but the dictionary has 28 symbols \+ the blank = 29/,
    );
  });

  it("warns when the float model itself misreads the labels (inverted pixels: a wrong preprocessing)", async () => {
    const e = await run(config({ preprocess: { ...(example.evaluation.preprocess as object), scale: -0.00392156862745098, mean: [-0.5] } }), float, float);
    expect((e.warnings ?? []).join("\n")).toMatch(/float model's character error rate against the labels is .*check evaluation\.preprocess/);
  });

  it("refuses a labels file that lacks a sample", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "qg-text-"));
    const labels = path.join(dir, "labels.csv");
    await writeFile(labels, "file,text\n000.png,x\n");
    // The labels file sits elsewhere: its rows are relative to it, so the eval images are not its samples.
    await expect(run(config({ labels }), float, float)).rejects.toThrow(/labels\.csv:2: "000\.png" is not one of the 64 sample files/);
  });
});

describe("decoding outputs into text", () => {
  const symbols = ["a", "b", " "];
  const spec = textRecognitionEvaluation.shape.decode.parse({ dictionary: "d.txt" });
  it("reads a class axis that is not last ([1, C, T])", () => {
    // frames: a a - b (blank 0): scores laid out class-major.
    const frames = [1, 1, 0, 2];
    const data = new Float32Array(4 * 4);
    frames.forEach((k, t) => (data[k * 4 + t] = 1));
    expect(decodeText({ dims: [1, 4, 4], data }, { ...spec, class_axis: 1 }, symbols, "y")).toBe("ab");
  });
  it("reads per-frame class ids (argmax in the graph) with the blank last, and symbol ids with an end id", () => {
    expect(decodeText({ dims: [1, 5], data: BigInt64Array.from([0n, 0n, 3n, 1n, 1n]) }, { ...spec, mode: "ctc_ids", blank: "last" }, symbols, "y")).toBe("ab");
    expect(decodeText({ dims: [1, 4], data: [2, 0, 9, 1] }, { ...spec, mode: "ids", eos_id: 9 }, symbols, "y")).toBe(" a");
  });
});
