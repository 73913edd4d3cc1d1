// The segmentation task: images in, a class per pixel out (argmax over a class axis or a threshold), scored by IoU
// and Dice against mask images and against the float model's masks.
import path from "node:path";
import { z } from "zod";
import { imagePreprocess } from "../config/preprocess.js";
import { UserError } from "../errors.js";
import { readMaskImage } from "../data/image-folder.js";
import { labelsFor, readLabels } from "../data/labels.js";
import { maskFromOutput, segmentationCounts, segmentationRecords, type MaskCounts, type MaskSpec, type SegmentationCounts } from "../metrics/segmentation.js";
import { constantFeeds, dataInputs } from "./common.js";
import { sliceRange, type Task, type TaskData, type TaskEvalContext, type TaskEvaluation, type TaskPartial } from "./types.js";
import {
  constantInputsSchema,
  displayUnder,
  hashFiles,
  imageInput,
  loadCalibrationImages,
  loadImageFolder,
  pickOutput,
  runBoth,
  type ImageSample,
} from "./images.js";

const maskSpec = z.strictObject({
  /** argmax: the output has a class axis (background is class 0); threshold: one score per pixel, foreground above it. */
  mode: z
    .enum(["argmax", "threshold"], { error: 'expected "argmax" or "threshold"' })
    .default("argmax")
    .describe("argmax: the output has a class axis (background is class 0); threshold: one score per pixel, foreground above it."),
  /** argmax: the output's class axis (default 1, as in [N, C, H, W]). */
  class_axis: z.number().int().default(1).describe("argmax: the output's class axis (default 1, as in [N, C, H, W])."),
  /** threshold: the probability above which a pixel is foreground. */
  threshold: z
    .number()
    .gt(0, "expected a probability between 0 and 1")
    .lt(1, "expected a probability between 0 and 1")
    .default(0.5)
    .describe("threshold: the probability above which a pixel is foreground."),
  /** threshold: the output holds logits (compared through the sigmoid) or probabilities. */
  scores: z
    .enum(["logits", "probabilities"], { error: 'expected "logits" or "probabilities"' })
    .default("logits")
    .describe("threshold: the output holds logits (compared through the sigmoid) or probabilities."),
  /** argmax: average IoU and Dice over the background class too (default: the foreground classes only). */
  include_background: z.boolean().default(false).describe("argmax: average IoU and Dice over the background class too (default: the foreground classes only)."),
  /** Mask pixel value left out of every count (e.g. 255 for "void" borders). */
  ignore_index: z.number().int().min(0).max(255).optional().describe('Mask pixel value left out of every count (e.g. 255 for "void" borders).'),
});

export const segmentationEvaluation = z.strictObject({
  task: z.literal("segmentation").describe("The evaluation task: segmentation (IoU and Dice against label masks and against float)."),
  /** Values fed as they are to named model inputs in every call (e.g. `sr: 16000`). */
  constant_inputs: constantInputsSchema.describe(
    "Values fed as they are to named model inputs in every call (e.g. `sr: 16000`); the element type is the model input's.",
  ),
  /** A folder of images (.png, .jpg), read in file-name order. */
  dataset: z.string().min(1).describe("A folder of images (.png, .jpg), read in file-name order."),
  /**
   * Labels file: CSV with a header or JSONL, sample file -> mask image (both relative to the labels file). A mask is
   * a PNG of the output's height and width; argmax: pixel value = class index; threshold: any non-zero value is
   * foreground.
   */
  labels: z
    .string()
    .min(1)
    .optional()
    .describe(
      "Labels file: CSV with a header or JSONL, sample file -> mask image (PNG of the output's size; argmax: pixel value = class; threshold: non-zero = foreground).",
    ),
  labels_fields: z
    .strictObject({
      file: z.string().min(1).default("file").describe("Column or field with the sample file."),
      mask: z.string().min(1).default("mask").describe("Column or field with the mask image."),
    })
    .default({ file: "file", mask: "mask" })
    .describe("Column or field names in the labels file."),
  calibration: z.string().min(1).optional().describe("A second folder of images for calibration."),
  input: z.string().min(1).optional().describe("The model input the images feed (default: the model's only input)."),
  preprocess: imagePreprocess.default(imagePreprocess.parse({})).describe("Image preprocessing."),
  /** The output read as masks (default: the model's only output). */
  output: z.string().min(1).optional().describe("The output read as masks (default: the model's only output)."),
  mask: maskSpec.default(maskSpec.parse({})).describe("How the output is turned into a mask."),
  samples: z.number().int().positive().default(256).describe("Images evaluated."),
  calibration_samples: z.number().int().positive().default(32).describe("Images used for calibration."),
});

export type SegmentationEvaluation = z.infer<typeof segmentationEvaluation>;

interface ReferenceMask {
  readonly file: string;
  readonly width: number;
  readonly height: number;
  readonly values: Uint8Array;
}

export interface SegmentationData extends TaskData {
  readonly task: "segmentation";
  readonly samples: readonly ImageSample[];
  readonly references: readonly ReferenceMask[] | undefined;
  readonly total: number;
  readonly displayFile: (file: string) => string;
}

function specOf(cfg: SegmentationEvaluation["mask"]): MaskSpec {
  return cfg.mode === "argmax" ? { mode: "argmax", classAxis: cfg.class_axis } : { mode: "threshold", threshold: cfg.threshold, scores: cfg.scores };
}

/** Reference classes of a mask image: class indices (argmax), or 0/1 (threshold: non-zero is foreground); ignored pixels keep their value. */
function referenceClasses(mask: ReferenceMask, cfg: SegmentationEvaluation["mask"], numClasses: number): Uint8Array {
  const out = new Uint8Array(mask.values.length);
  for (let i = 0; i < out.length; i++) {
    const v = mask.values[i]!;
    if (v === cfg.ignore_index) out[i] = v;
    else if (cfg.mode === "threshold") out[i] = v === 0 ? 0 : 1;
    else if (v >= numClasses) {
      throw new UserError(
        `${mask.file}: pixel ${i % mask.width},${Math.floor(i / mask.width)} has class ${v}, but the output has ${numClasses} classes${cfg.ignore_index === undefined ? " (set mask.ignore_index for a void value)" : ""}`,
        mask.file,
      );
    } else out[i] = v;
  }
  return out;
}

export const segmentationTask: Task<SegmentationEvaluation, SegmentationData> = {
  name: "segmentation",

  async load(config, ctx) {
    const constants = constantFeeds(config.constant_inputs, ctx.inputs);
    const input = imageInput(dataInputs(config.constant_inputs, ctx.inputs), config.input);
    const dir = ctx.resolve(config.dataset, "evaluation.dataset");
    const displayFile = displayUnder(config.dataset, dir);
    const { all, samples } = await loadImageFolder(dir, config.preprocess, input, config.samples, constants);
    const files = await hashFiles(
      samples.map((s) => s.file),
      displayFile,
    );
    let references: ReferenceMask[] | undefined;
    if (config.labels) {
      const labelsFile = ctx.resolve(config.labels, "evaluation.labels");
      const table = await readLabels(labelsFile, "mask", { fileField: config.labels_fields.file, valueField: config.labels_fields.mask });
      // Mask paths are relative to the labels file; spelled under the config's path of that file, they go through
      // ctx.resolve like every path of the config (the same workspace rules apply).
      const masks = labelsFor<string>(table, all)
        .slice(0, samples.length)
        .map((f) => {
          const spelled = path.join(path.dirname(config.labels!), path.relative(path.dirname(labelsFile), f));
          return { spelled, file: ctx.resolve(spelled, "evaluation.labels") };
        });
      references = [];
      for (const m of masks) references.push({ file: m.file, ...(await readMaskImage(m.file)) });
      files.push(...(await hashFiles([labelsFile], () => config.labels!)));
      const spelledOf = new Map(masks.map((m) => [m.file, m.spelled]));
      files.push(
        ...(await hashFiles(
          masks.map((m) => m.file),
          (f) => spelledOf.get(f)!,
        )),
      );
    }
    let calibrationBatches: SegmentationData["calibrationBatches"] = [];
    if (config.calibration) {
      const calibDir = ctx.resolve(config.calibration, "evaluation.calibration");
      const calib = await loadCalibrationImages(calibDir, dir, config.preprocess, input, config.calibration_samples, constants);
      calibrationBatches = calib.map((s) => s.feeds);
      files.push(
        ...(await hashFiles(
          calib.map((s) => s.file),
          displayUnder(config.calibration, calibDir),
        )),
      );
    }
    return { task: "segmentation", samples, references, total: all.length, calibrationBatches, files, displayFile, measureFeeds: samples[0]!.feeds };
  },

  async evaluate(config, data, ctx) {
    const t0 = performance.now();
    const { output, counts } = await compareMasks(config, data, ctx);
    return segmentationResult(config, counts, {
      output,
      files: data.samples.map((s) => data.displayFile(s.file)),
      total: data.total,
      labelled: data.references !== undefined,
      ms: performance.now() - t0,
    });
  },

  slice(data, index, count) {
    const [a, b] = sliceRange(data.samples.length, index, count);
    return { ...data, samples: data.samples.slice(a, b), ...(data.references ? { references: data.references.slice(a, b) } : {}) };
  },

  async partial(config, data, ctx) {
    const t0 = performance.now();
    const { output, counts } = await compareMasks(config, data, ctx);
    const partial: SegmentationPartial = {
      task: "segmentation",
      output,
      numClasses: counts.numClasses,
      ...(counts.vsLabels ? { vsLabels: { float: counts.vsLabels.float.map(countsToJson), quantized: counts.vsLabels.quantized.map(countsToJson) } } : {}),
      vsFloat: counts.vsFloat.map(countsToJson),
      files: data.samples.map((s) => data.displayFile(s.file)),
      total: data.total,
      labelled: data.references !== undefined,
      ms: performance.now() - t0,
    };
    return partial;
  },

  merge(config, partials) {
    const parts = (partials as readonly SegmentationPartial[]).filter((p) => p.files.length > 0);
    const first = parts[0];
    if (!first) throw new UserError("no shard evaluated any image");
    const numClasses = first.numClasses;
    if (parts.some((p) => p.numClasses !== numClasses))
      throw new UserError(`the shards' masks have different class counts (${parts.map((p) => p.numClasses).join(", ")})`);
    const counts: SegmentationCounts = {
      numClasses,
      ...(first.labelled
        ? {
            vsLabels: {
              float: parts.flatMap((p) => p.vsLabels?.float ?? []).map(countsFromJson),
              quantized: parts.flatMap((p) => p.vsLabels?.quantized ?? []).map(countsFromJson),
            },
          }
        : {}),
      vsFloat: parts.flatMap((p) => p.vsFloat).map(countsFromJson),
    };
    return segmentationResult(config, counts, {
      output: first.output,
      files: parts.flatMap((p) => p.files),
      total: first.total,
      labelled: first.labelled,
      ms: partials.reduce((a, p) => a + (p as SegmentationPartial).ms, 0),
    });
  },
};

/** MaskCounts as plain JSON (per-class counts as arrays). */
interface CountsJson {
  readonly intersection: number[];
  readonly predicted: number[];
  readonly reference: number[];
  readonly agree: number;
  readonly pixels: number;
}

const countsToJson = (c: MaskCounts): CountsJson => ({
  intersection: Array.from(c.intersection),
  predicted: Array.from(c.predicted),
  reference: Array.from(c.reference),
  agree: c.agree,
  pixels: c.pixels,
});

const countsFromJson = (c: CountsJson): MaskCounts => ({
  intersection: Float64Array.from(c.intersection),
  predicted: Float64Array.from(c.predicted),
  reference: Float64Array.from(c.reference),
  agree: c.agree,
  pixels: c.pixels,
});

/** Mergeable state of a slice of images: per-image pixel counts (intersections, mask sizes) in image order. */
interface SegmentationPartial extends TaskPartial {
  readonly output: string;
  readonly numClasses: number;
  readonly vsLabels?: { readonly float: CountsJson[]; readonly quantized: CountsJson[] };
  readonly vsFloat: CountsJson[];
  readonly files: string[];
  readonly total: number;
  readonly labelled: boolean;
  readonly ms: number;
}

/** Runs every image through both models and counts the masks against the labels and each other. */
async function compareMasks(
  config: SegmentationEvaluation,
  data: SegmentationData,
  ctx: TaskEvalContext,
): Promise<{ output: string; counts: SegmentationCounts }> {
  const output = pickOutput(ctx.float, config.output);
  const spec = specOf(config.mask);
  const floatMasks: Uint8Array[] = [];
  const quantMasks: Uint8Array[] = [];
  const refs: Uint8Array[] = [];
  let numClasses = 0;
  await runBoth(ctx.ort, ctx.float, ctx.quantized, data.samples, output, (f, q, i) => {
    let fm;
    let qm;
    try {
      fm = maskFromOutput(f.data as ArrayLike<number>, f.dims, spec);
      qm = maskFromOutput(q.data as ArrayLike<number>, q.dims, spec);
    } catch (err) {
      throw new UserError(`output "${output}" of shape [${f.dims.join(", ")}]: ${(err as Error).message} (evaluation.mask)`);
    }
    numClasses = fm.numClasses;
    const ref = data.references?.[i];
    if (ref) {
      // The mask's height and width must be the output's last two axes (after the class axis is removed).
      const [h, w] = fm.dims.slice(-2);
      if (fm.classes.length !== ref.values.length || h !== ref.height || w !== ref.width)
        throw new UserError(
          `${ref.file}: the mask is ${ref.width}x${ref.height}, but output "${output}" gives masks of shape [${fm.dims.join(", ")}] (the mask must match its last two axes)`,
          ref.file,
        );
      refs.push(referenceClasses(ref, config.mask, fm.numClasses));
    }
    floatMasks.push(fm.classes);
    quantMasks.push(qm.classes);
  });
  const counts = segmentationCounts({
    float: floatMasks,
    quantized: quantMasks,
    references: data.references ? refs : undefined,
    numClasses,
    ignore: config.mask.ignore_index,
    includeBackground: config.mask.include_background,
  });
  return { output, counts };
}

function segmentationResult(
  config: SegmentationEvaluation,
  counts: SegmentationCounts,
  run: { readonly output: string; readonly files: readonly string[]; readonly total: number; readonly labelled: boolean; readonly ms: number },
): TaskEvaluation {
  const metrics = segmentationRecords(counts, config.mask.include_background);
  const warnings: string[] = [];
  const iou = metrics.find((m) => m.key === "iou");
  if (iou?.float !== undefined && iou.float < 0.5)
    warnings.push(
      `the float model's IoU against the label masks is ${iou.float.toFixed(3)}: check evaluation.preprocess, mask.mode and the masks' class values before trusting the comparison`,
    );
  // The images where the quantized masks moved most from float's, for the folded details.
  const perImage = metrics.find((m) => m.key === "iou_vs_float")!.perSample!.quantized;
  const worst = run.files
    .map((file, i) => ({ file, iouVsFloat: perImage[i]! }))
    .sort((a, b) => a.iouVsFloat - b.iouVsFloat)
    .slice(0, 10);
  const n = run.files.length;
  return {
    task: "segmentation",
    metrics,
    samples: {
      evaluated: n,
      total: run.total,
      ...(n < run.total ? { leftOut: `evaluation.samples is ${config.samples}: the first ${n} of ${run.total} images in file-name order` } : {}),
    },
    ms: run.ms,
    details: { output: run.output, mode: config.mask.mode, classes: counts.numClasses, labelled: run.labelled, worstVsFloat: worst },
    warnings,
  };
}
