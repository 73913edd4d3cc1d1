// The text-recognition task: line images in, transcripts out (CTC greedy decode or symbol ids), scored by CER and
// WER against reference texts and against the float model's transcripts.
import { readFile } from "node:fs/promises";
import { z } from "zod";
import { imagePreprocess } from "../config/preprocess.js";
import { UserError } from "../errors.js";
import { labelsFor, readLabels } from "../data/labels.js";
import { argmaxFrames, ctcClassesToText, ctcCollapse, idsToText, parseDictionary } from "../metrics/ctc.js";
import { characterErrorRate, textErrorMetrics } from "../metrics/edit-distance.js";
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
  type OutputValue,
} from "./images.js";

/** How an output becomes text. */
const decodeSpec = z.strictObject({
  /**
   * ctc: the output holds scores per frame and class (argmax per frame, merge repeats, drop the blank);
   * ctc_ids: the output already holds the class of each frame (argmax inside the model);
   * ids: the output holds symbol ids (e.g. an attention decoder's), mapped through the dictionary as they are.
   */
  mode: z
    .enum(["ctc", "ctc_ids", "ids"], { error: 'expected "ctc", "ctc_ids" or "ids"' })
    .default("ctc")
    .describe(
      "ctc: scores per frame and class (argmax, merge repeats, drop the blank); ctc_ids: the class of each frame; ids: symbol ids mapped through the dictionary.",
    ),
  /** One symbol per line, in class order (a line holding one space is the space symbol). */
  dictionary: z.string().min(1).describe("One symbol per line, in class order (a line holding one space is the space symbol)."),
  /** Add " " after the last line (PaddleOCR's use_space_char). */
  append_space: z.boolean().default(false).describe('Add " " after the last line (PaddleOCR\'s use_space_char).'),
  /** CTC blank class: 0 (PaddleOCR, EasyOCR: class c is dictionary line c) or "last" (TensorFlow: class c is line c + 1). */
  blank: z
    .union([z.number().int().nonnegative(), z.literal("last")], { error: 'expected a class index or "last"' })
    .default(0)
    .describe('CTC blank class: 0 (class c is dictionary line c) or "last" (class c is line c + 1).'),
  /** Axis of classes in a ctc output (default: the last). */
  class_axis: z.number().int().default(-1).describe("Axis of classes in a ctc output (default: the last)."),
  /** ids: id i is the symbol on dictionary line i - offset + 1. */
  offset: z.number().int().default(0).describe("ids: id i is the symbol on dictionary line i - offset + 1."),
  /** ids: ids dropped from the text (padding, start of sequence). */
  skip_ids: z.array(z.number().int()).default([]).describe("ids: ids dropped from the text (padding, start of sequence)."),
  /** ids: decoding stops at this id (end of sequence). */
  eos_id: z.number().int().optional().describe("ids: decoding stops at this id (end of sequence)."),
});

export const textRecognitionEvaluation = z.strictObject({
  task: z.literal("text-recognition").describe("The evaluation task: text-recognition (CER and WER against reference texts and against float)."),
  /** Values fed as they are to named model inputs in every call (e.g. `sr: 16000`). */
  constant_inputs: constantInputsSchema.describe(
    "Values fed as they are to named model inputs in every call (e.g. `sr: 16000`); the element type is the model input's.",
  ),
  /** A folder of line images (.png, .jpg), read in file-name order. */
  dataset: z.string().min(1).describe("A folder of line images (.png, .jpg), read in file-name order."),
  /** Labels file: CSV with a header or JSONL, sample file (relative to the labels file) -> reference text. */
  labels: z.string().min(1).optional().describe("Labels file: CSV with a header or JSONL, sample file (relative to the labels file) -> reference text."),
  /** Column or field names in the labels file. */
  labels_fields: z
    .strictObject({
      file: z.string().min(1).default("file").describe("Column or field with the sample file."),
      text: z.string().min(1).default("text").describe("Column or field with the reference text."),
    })
    .default({ file: "file", text: "text" })
    .describe("Column or field names in the labels file."),
  /** A second folder of images for calibration (kept apart from the evaluation images). */
  calibration: z.string().min(1).optional().describe("A second folder of images for calibration (kept apart from the evaluation images)."),
  /** The model input the images feed (default: the model's only input). */
  input: z.string().min(1).optional().describe("The model input the images feed (default: the model's only input)."),
  preprocess: imagePreprocess.default(imagePreprocess.parse({})).describe("Image preprocessing."),
  /** The output decoded into text (default: the model's only output). */
  output: z.string().min(1).optional().describe("The output decoded into text (default: the model's only output)."),
  decode: decodeSpec.describe("How the output is decoded into text."),
  samples: z.number().int().positive().default(256).describe("Images evaluated."),
  calibration_samples: z.number().int().positive().default(32).describe("Images used for calibration."),
});

export type TextRecognitionEvaluation = z.infer<typeof textRecognitionEvaluation>;

export interface TextRecognitionData extends TaskData {
  readonly task: "text-recognition";
  readonly samples: readonly ImageSample[];
  /** Reference text of each sample, when the config gives labels. */
  readonly references: readonly string[] | undefined;
  /** Images in the dataset folder (the first `samples` of them are evaluated). */
  readonly total: number;
  readonly symbols: readonly string[];
  readonly displayFile: (file: string) => string;
}

/** Decodes one output tensor (batch 1) into text. */
export function decodeText(out: OutputValue, spec: TextRecognitionEvaluation["decode"], symbols: readonly string[], output: string): string {
  const dims = out.dims;
  if (spec.mode === "ids" || spec.mode === "ctc_ids") {
    if (dims.filter((d) => d !== 1).length > 1)
      throw new UserError(`output "${output}" has shape [${dims.join(", ")}]: decode.mode ${spec.mode} reads one id per position (batch 1)`);
    if (spec.mode === "ids") return idsToText(out.data, symbols, { offset: spec.offset, skip: spec.skip_ids, eos: spec.eos_id });
    const blank = spec.blank === "last" ? symbols.length : spec.blank;
    return ctcClassesToText(ctcCollapse(Array.from(out.data, Number), blank), symbols, blank);
  }
  const axis = spec.class_axis < 0 ? spec.class_axis + dims.length : spec.class_axis;
  if (axis < 0 || axis >= dims.length) throw new UserError(`decode.class_axis ${spec.class_axis} is outside output "${output}"'s shape [${dims.join(", ")}]`);
  const classes = dims[axis]!;
  if (classes !== symbols.length + 1)
    throw new UserError(
      `output "${output}" has ${classes} classes on axis ${spec.class_axis} (shape [${dims.join(", ")}]), but the dictionary has ${symbols.length} symbols + the blank = ${symbols.length + 1}; check decode.dictionary, append_space and class_axis`,
    );
  const blank = spec.blank === "last" ? classes - 1 : spec.blank;
  if (blank >= classes) throw new UserError(`decode.blank ${blank} is outside output "${output}"'s ${classes} classes`);
  // Frames are every position of the other axes (batch 1), in row-major order.
  const outer = dims.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const frames = outer * inner;
  const scores = new Float32Array(frames * classes);
  for (let o = 0; o < outer; o++)
    for (let c = 0; c < classes; c++) for (let i = 0; i < inner; i++) scores[(o * inner + i) * classes + c] = Number(out.data[(o * classes + c) * inner + i]);
  return ctcClassesToText(ctcCollapse(argmaxFrames(scores, frames, classes), blank), symbols, blank);
}

export const textRecognitionTask: Task<TextRecognitionEvaluation, TextRecognitionData> = {
  name: "text-recognition",

  async load(config, ctx) {
    const constants = constantFeeds(config.constant_inputs, ctx.inputs);
    const input = imageInput(dataInputs(config.constant_inputs, ctx.inputs), config.input);
    const dir = ctx.resolve(config.dataset, "evaluation.dataset");
    const displayFile = displayUnder(config.dataset, dir);
    const { all, samples } = await loadImageFolder(dir, config.preprocess, input, config.samples, constants);
    const dictFile = ctx.resolve(config.decode.dictionary, "evaluation.decode.dictionary");
    let dictText: string;
    try {
      dictText = await readFile(dictFile, "utf8");
    } catch (err) {
      throw new UserError(`${dictFile}: cannot read the dictionary (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, dictFile);
    }
    let symbols: string[];
    try {
      symbols = parseDictionary(dictText, config.decode.dictionary, config.decode.append_space);
    } catch (err) {
      throw new UserError((err as Error).message, dictFile);
    }
    const extra = [dictFile];
    let references: string[] | undefined;
    if (config.labels) {
      const labelsFile = ctx.resolve(config.labels, "evaluation.labels");
      const table = await readLabels(labelsFile, "text", { fileField: config.labels_fields.file, valueField: config.labels_fields.text });
      references = labelsFor<string>(table, all).slice(0, samples.length);
      extra.push(labelsFile);
    }
    const files = await hashFiles(
      samples.map((s) => s.file),
      displayFile,
    );
    files.push(...(await hashFiles(extra, (f) => (f === dictFile ? config.decode.dictionary : config.labels!))));
    let calibrationBatches: TextRecognitionData["calibrationBatches"] = [];
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
    return {
      task: "text-recognition",
      samples,
      references,
      total: all.length,
      symbols,
      calibrationBatches,
      files,
      displayFile,
      measureFeeds: samples[0]!.feeds,
    };
  },

  async evaluate(config, data, ctx) {
    const t0 = performance.now();
    const texts = await transcribe(config, data, ctx);
    return textRecognitionResult(config, { ...texts, total: data.total, ms: performance.now() - t0 });
  },

  slice(data, index, count) {
    const [a, b] = sliceRange(data.samples.length, index, count);
    return { ...data, samples: data.samples.slice(a, b), references: data.references?.slice(a, b) };
  },

  async partial(config, data, ctx) {
    const t0 = performance.now();
    const texts = await transcribe(config, data, ctx);
    // Transcripts are small: the merge recomputes the edit distances from them, exactly as one run would.
    const partial: TextRecognitionPartial = { task: "text-recognition", ...texts, total: data.total, ms: performance.now() - t0 };
    return partial;
  },

  merge(config, partials) {
    const parts = partials as readonly TextRecognitionPartial[];
    const full = parts.filter((p) => p.files.length > 0);
    const first = full[0];
    if (!first) throw new UserError("no shard evaluated any image");
    const labelled = first.references !== null;
    return textRecognitionResult(config, {
      output: first.output,
      files: full.flatMap((p) => p.files),
      floatTexts: full.flatMap((p) => p.floatTexts),
      quantTexts: full.flatMap((p) => p.quantTexts),
      references: labelled ? full.flatMap((p) => p.references ?? []) : null,
      total: first.total,
      ms: parts.reduce((a, p) => a + p.ms, 0),
    });
  },
};

/** Transcripts of a run's images by both models, with the reference texts (null: no labels). */
interface Transcripts {
  readonly output: string;
  readonly files: string[];
  readonly floatTexts: string[];
  readonly quantTexts: string[];
  readonly references: string[] | null;
}

/** Mergeable state of a slice of images: their transcripts in image order. */
interface TextRecognitionPartial extends TaskPartial, Transcripts {
  readonly total: number;
  readonly ms: number;
}

async function transcribe(config: TextRecognitionEvaluation, data: TextRecognitionData, ctx: TaskEvalContext): Promise<Transcripts> {
  const output = pickOutput(ctx.float, config.output);
  const floatTexts: string[] = [];
  const quantTexts: string[] = [];
  await runBoth(ctx.ort, ctx.float, ctx.quantized, data.samples, output, (f, q) => {
    floatTexts.push(decodeText(f, config.decode, data.symbols, output));
    quantTexts.push(decodeText(q, config.decode, data.symbols, output));
  });
  return {
    output,
    files: data.samples.map((s) => data.displayFile(s.file)),
    floatTexts,
    quantTexts,
    references: data.references ? [...data.references] : null,
  };
}

function textRecognitionResult(config: TextRecognitionEvaluation, t: Transcripts & { readonly total: number; readonly ms: number }): TaskEvaluation {
  const { floatTexts, quantTexts } = t;
  const references = t.references ?? undefined;
  const metrics = textErrorMetrics(floatTexts, quantTexts, references);
  const warnings: string[] = [];
  if (references) {
    const floatCer = characterErrorRate(references, floatTexts).rate;
    if (floatCer > 0.5)
      warnings.push(
        `the float model's character error rate against the labels is ${(floatCer * 100).toFixed(1)}%: check evaluation.preprocess, decode.dictionary and decode.blank before trusting the comparison`,
      );
  }
  // Lines whose transcript changed, for the folded details (at most 20).
  const changed = t.files
    .map((file, i) => ({ file, reference: references?.[i], float: floatTexts[i]!, quantized: quantTexts[i]! }))
    .filter((l) => l.float !== l.quantized || (l.reference !== undefined && l.reference !== l.quantized))
    .slice(0, 20);
  const n = t.files.length;
  return {
    task: "text-recognition",
    metrics,
    samples: {
      evaluated: n,
      total: t.total,
      ...(n < t.total ? { leftOut: `evaluation.samples is ${config.samples}: the first ${n} of ${t.total} images in file-name order` } : {}),
    },
    ms: t.ms,
    details: { output: t.output, decode: config.decode.mode, labelled: references !== undefined, lines: changed },
    warnings,
  };
}
