import { readFileSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import ort from "onnxruntime-node";
import { PNG } from "pngjs";
import { beforeAll, describe, expect, it } from "vitest";
import type { ModelInputInfo } from "../../src/data/index.js";
import { DataType, makeNode, makeTensor, makeValueInfo, serializeModel } from "../../src/onnx/model.js";
import type { Ort, Session } from "../../src/runtime/ort.js";
import { segmentationEvaluation, segmentationTask, type SegmentationEvaluation } from "../../src/tasks/segmentation.js";
import type { MetricRecord, TaskEvaluation } from "../../src/tasks/types.js";
import { REPO_ROOT } from "../helpers/action.js";
import { model } from "../helpers/models.js";
import { quantizeModel } from "../helpers/quantize.js";
import { exampleConfig, judge } from "./judge.js";

const DIR = path.join(REPO_ROOT, "examples", "segmentation");
const MODEL = path.join(DIR, "model.onnx");
const INPUTS: ModelInputInfo[] = [{ name: "image", type: "float32", rank: 4, dims: [undefined, 3, 64, 64] }];
const STATS = JSON.parse(readFileSync(path.join(DIR, "train_stats.json"), "utf8"));
const example = exampleConfig(path.join(DIR, "quantgate.yml"));
const resolve = (p: string): string => path.resolve(DIR, p);
const metric = (e: TaskEvaluation, key: string): MetricRecord => e.metrics.find((m) => m.key === key)!;

function config(edit: Record<string, unknown> = {}): SegmentationEvaluation {
  return segmentationEvaluation.parse({ ...example.evaluation, ...edit });
}

async function session(model: string | Uint8Array): Promise<Session> {
  const opts = { intraOpNumThreads: 1 };
  return typeof model === "string" ? ort.InferenceSession.create(model, opts) : ort.InferenceSession.create(model, opts);
}

async function run(cfg: SegmentationEvaluation, float: Session, quantized: Session, resolver = resolve): Promise<TaskEvaluation> {
  const data = await segmentationTask.load(cfg, { resolve: resolver, inputs: INPUTS });
  return segmentationTask.evaluate(cfg, data, { ort: ort as unknown as Ort, float, quantized, threads: 1 });
}

describe("the segmentation task on the committed U-Net example", () => {
  let float: Session;
  let int8: Session;
  let int2: Session;
  beforeAll(async () => {
    float = await session(MODEL);
    int8 = await session((await quantizeModel(MODEL, example.recipe)).bytes);
    int2 = await session((await quantizeModel(MODEL, { format: "int2", block_size: 64, symmetric: false, min_elements: 256 })).bytes);
  });

  it("reads images, masks through the labels file, and calibration images", async () => {
    const data = await segmentationTask.load(config(), { resolve, inputs: INPUTS });
    expect(data.samples).toHaveLength(48);
    expect(data.references).toHaveLength(48);
    expect(data.references![0]!.width).toBe(64);
    expect(new Set(data.references!.flatMap((r) => Array.from(r.values)))).toEqual(new Set([0, 1, 2]));
    expect(data.calibrationBatches).toHaveLength(16);
    expect(data.files.map((f) => f.path)).toEqual(expect.arrayContaining(["eval/000.png", "eval/labels.csv", "masks/047.png", "calib/000.png"]));
  });

  it("is exact for the float model against itself, and reproduces torch's pooled IoU and Dice", async () => {
    const e = await run(config(), float, float);
    expect(metric(e, "iou_vs_float").quantized).toBe(1);
    expect(metric(e, "pixel_agreement").quantized).toBe(1);
    expect(metric(e, "iou_pooled").float).toBeCloseTo(STATS.eval_iou_pooled_mean_foreground, 4);
    expect(metric(e, "dice_pooled").float).toBeCloseTo(STATS.eval_dice_pooled_mean_foreground, 4);
    expect(metric(e, "iou").perSample!.float).toHaveLength(48);
    expect(e.warnings).toEqual([]);
  });

  it("passes the example's gate with int8", async () => {
    const e = await run(config(), float, int8);
    const judged = judge(e.metrics, example.gate);
    expect(judged.map((j) => j.rule).sort()).toEqual(["max_dice_drop", "max_iou_drop", "min_iou", "min_iou_vs_float", "min_pixel_agreement"]);
    expect(
      judged.filter((j) => j.status === "fail"),
      JSON.stringify(judged),
    ).toEqual([]);
    console.log(`segmentation int8: ${e.metrics.map((m) => `${m.key} ${m.float ?? "-"} -> ${m.quantized}`).join("; ")}`);
  });

  it("fails the example's gate with int2", async () => {
    const e = await run(config(), float, int2);
    const failed = judge(e.metrics, example.gate).filter((j) => j.status === "fail");
    expect(failed.map((j) => j.rule)).toEqual(expect.arrayContaining(["min_pixel_agreement", "min_iou_vs_float"]));
    expect((e.details!.worstVsFloat as { iouVsFloat: number }[])[0]!.iouVsFloat).toBeLessThan(0.95);
  });

  it("thresholds a one-channel output as a binary mask, scored against the non-zero mask pixels", async () => {
    // y = x[:, 0:1]: the preprocessed red channel read as a logit, a weak but real "segmenter".
    const proto = model(
      [makeNode("Slice", ["image", "starts", "ends", "axes"], ["mask_logit"])],
      [
        makeTensor("starts", DataType.INT64, [1], BigInt64Array.from([0n])),
        makeTensor("ends", DataType.INT64, [1], BigInt64Array.from([1n])),
        makeTensor("axes", DataType.INT64, [1], BigInt64Array.from([1n])),
      ],
      [makeValueInfo("image", DataType.FLOAT, [1, 3, 64, 64])],
      [makeValueInfo("mask_logit", DataType.FLOAT, [1, 1, 64, 64])],
    );
    const s = await session(serializeModel(proto));
    const e = await run(config({ output: "mask_logit", mask: { mode: "threshold", threshold: 0.5, scores: "logits" } }), s, s);
    expect(e.details!.classes).toBe(2);
    expect(metric(e, "iou").float).toBe(metric(e, "iou").quantized);
    expect(metric(e, "iou").float).toBeGreaterThan(0);
    expect(metric(e, "iou").float).toBeLessThan(0.9);
    expect(metric(e, "iou_vs_float").quantized).toBe(1);
  });

  it("names the mask whose size does not match the output, and a class the output does not have", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "qg-seg-"));
    await copyFile(path.join(DIR, "eval", "000.png"), path.join(dir, "a.png"));
    const small = new PNG({ width: 32, height: 32 });
    await writeFile(path.join(dir, "small.png"), PNG.sync.write(small));
    const seven = new PNG({ width: 64, height: 64 });
    seven.data.fill(7);
    await writeFile(path.join(dir, "seven.png"), PNG.sync.write(seven));
    const images = path.join(dir, "images");
    await mkdir(images);
    await copyFile(path.join(DIR, "eval", "000.png"), path.join(images, "000.png"));
    const withMask = async (mask: string): Promise<SegmentationEvaluation> => {
      await writeFile(path.join(images, "labels.csv"), `file,mask\n000.png,../${mask}\n`);
      return config({ dataset: images, labels: path.join(images, "labels.csv"), calibration: undefined });
    };
    await expect(run(await withMask("small.png"), float, float)).rejects.toThrow(
      /small\.png: the mask is 32x32, but output "logits" gives masks of shape \[1, 64, 64\]/,
    );
    await expect(run(await withMask("seven.png"), float, float)).rejects.toThrow(/seven\.png: pixel 0,0 has class 7, but the output has 3 classes/);
    const ignored = { ...(await withMask("seven.png")), mask: { ...config().mask, ignore_index: 7 } };
    // Every pixel is void: nothing to score, an empty union scores 1 by convention.
    expect(metric(await run(ignored, float, float), "iou").float).toBe(1);
  });
});
