// Segmentation masks from a model output (argmax over a class axis, or a threshold), and IoU / Dice: pure functions.
import { gateRulesFor } from "../gate/rules.js";
import type { MetricRecord } from "../tasks/types.js";

/** How an output becomes a mask: argmax over its class axis, or a threshold on a single-channel score. */
export type MaskSpec =
  | { readonly mode: "argmax"; readonly classAxis: number }
  | { readonly mode: "threshold"; readonly threshold: number; readonly scores: "probabilities" | "logits" };

/** A class index per pixel, row-major over the output's axes other than the class axis. */
export interface Mask {
  readonly classes: Uint8Array;
  /** The output's dims without the class axis (argmax) or as given (threshold). */
  readonly dims: readonly number[];
  /** Number of classes the mask can hold (2 for a thresholded mask: background 0, foreground 1). */
  readonly numClasses: number;
}

/**
 * The mask of one output tensor. Argmax: ties go to the lower class. Threshold: a pixel is foreground when its
 * probability is above `threshold`; with `scores: logits`, when sigmoid(logit) is above it (logit > log(t / (1 - t))).
 */
export function maskFromOutput(data: ArrayLike<number>, dims: readonly number[], spec: MaskSpec): Mask {
  const size = dims.reduce((a, b) => a * b, 1);
  if (data.length !== size) throw new RangeError(`internal: ${data.length} values for dims [${dims.join(", ")}]`);
  if (spec.mode === "threshold") {
    const t = spec.scores === "logits" ? Math.log(spec.threshold / (1 - spec.threshold)) : spec.threshold;
    const classes = new Uint8Array(size);
    for (let i = 0; i < size; i++) classes[i] = data[i]! > t ? 1 : 0;
    return { classes, dims, numClasses: 2 };
  }
  const axis = spec.classAxis < 0 ? spec.classAxis + dims.length : spec.classAxis;
  if (axis < 0 || axis >= dims.length) throw new RangeError(`class axis ${spec.classAxis} is outside the output's ${dims.length} axes`);
  const numClasses = dims[axis]!;
  if (numClasses < 2) throw new RangeError(`the class axis ${spec.classAxis} has ${numClasses} class: use a threshold for a single-channel output`);
  if (numClasses > 255) throw new RangeError(`the class axis ${spec.classAxis} has ${numClasses} classes; at most 255 are supported`);
  const outer = dims.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const classes = new Uint8Array(outer * inner);
  for (let o = 0; o < outer; o++) {
    const base = o * numClasses * inner;
    for (let i = 0; i < inner; i++) {
      let best = 0;
      let bestValue = -Infinity;
      for (let c = 0; c < numClasses; c++) {
        const v = data[base + c * inner + i]!;
        if (v > bestValue) {
          bestValue = v;
          best = c;
        }
      }
      classes[o * inner + i] = best;
    }
  }
  return { classes, dims: [...dims.slice(0, axis), ...dims.slice(axis + 1)], numClasses };
}

/** Per-class pixel counts of one predicted mask against one reference mask. */
export interface MaskCounts {
  /** intersection[c], predicted[c] and reference[c] pixel counts, for each class c. */
  readonly intersection: Float64Array;
  readonly predicted: Float64Array;
  readonly reference: Float64Array;
  /** Pixels where prediction and reference have the same class (ignored pixels excluded). */
  readonly agree: number;
  readonly pixels: number;
}

/** Counts of `predicted` against `reference` (both class per pixel); pixels whose reference is `ignore` are left out. */
export function maskCounts(predicted: ArrayLike<number>, reference: ArrayLike<number>, numClasses: number, ignore?: number): MaskCounts {
  if (predicted.length !== reference.length) throw new RangeError(`internal: masks of ${predicted.length} and ${reference.length} pixels`);
  const intersection = new Float64Array(numClasses);
  const pred = new Float64Array(numClasses);
  const ref = new Float64Array(numClasses);
  let agree = 0;
  let pixels = 0;
  for (let i = 0; i < predicted.length; i++) {
    const r = reference[i]!;
    if (r === ignore) continue;
    const p = predicted[i]!;
    if (r >= numClasses) throw new RangeError(`reference class ${r} is outside the ${numClasses} classes`);
    pixels++;
    pred[p] = pred[p]! + 1;
    ref[r] = ref[r]! + 1;
    if (p === r) {
      intersection[p] = intersection[p]! + 1;
      agree++;
    }
  }
  return { intersection, predicted: pred, reference: ref, agree, pixels };
}

/** Which classes IoU and Dice average over: every class but the background (class 0) unless it is included. */
function scoredClasses(numClasses: number, includeBackground: boolean): number[] {
  return Array.from({ length: numClasses }, (_, c) => c).filter((c) => includeBackground || c !== 0);
}

/**
 * IoU and Dice of one sample: the mean over the scored classes that occur in the prediction or the reference;
 * a sample where none occurs (empty union) scores 1 (both masks agree that there is nothing).
 */
export function sampleIouDice(counts: MaskCounts, includeBackground = false): { iou: number; dice: number } {
  let iou = 0;
  let dice = 0;
  let present = 0;
  for (const c of scoredClasses(counts.intersection.length, includeBackground)) {
    const sum = counts.predicted[c]! + counts.reference[c]!;
    if (sum === 0) continue;
    const inter = counts.intersection[c]!;
    iou += inter / (sum - inter);
    dice += (2 * inter) / sum;
    present++;
  }
  return present === 0 ? { iou: 1, dice: 1 } : { iou: iou / present, dice: dice / present };
}

/**
 * IoU and Dice pooled over the set: per class, summed intersections over summed unions (Dice: twice the summed
 * intersections over the summed mask sizes), then the mean over classes with a non-empty pooled union (1 if none).
 */
export function pooledIouDice(all: readonly MaskCounts[], includeBackground = false): { iou: number; dice: number } {
  if (all.length === 0) return { iou: NaN, dice: NaN };
  const numClasses = all[0]!.intersection.length;
  const inter = new Float64Array(numClasses);
  const sum = new Float64Array(numClasses);
  for (const m of all) {
    for (let c = 0; c < numClasses; c++) {
      inter[c] = inter[c]! + m.intersection[c]!;
      sum[c] = sum[c]! + m.predicted[c]! + m.reference[c]!;
    }
  }
  let iou = 0;
  let dice = 0;
  let present = 0;
  for (const c of scoredClasses(numClasses, includeBackground)) {
    if (sum[c] === 0) continue;
    iou += inter[c]! / (sum[c]! - inter[c]!);
    dice += (2 * inter[c]!) / sum[c]!;
    present++;
  }
  return present === 0 ? { iou: 1, dice: 1 } : { iou: iou / present, dice: dice / present };
}

function summarize(all: readonly MaskCounts[], includeBackground: boolean): { iou: number[]; dice: number[]; pooled: { iou: number; dice: number } } {
  const per = all.map((m) => sampleIouDice(m, includeBackground));
  return { iou: per.map((p) => p.iou), dice: per.map((p) => p.dice), pooled: pooledIouDice(all, includeBackground) };
}

const meanOf = (xs: readonly number[]): number => (xs.length === 0 ? NaN : xs.reduce((a, b) => a + b, 0) / xs.length);

export interface SegmentationMetricInput {
  /** Predicted masks of the float and the quantized model, one per sample. */
  readonly float: readonly Uint8Array[];
  readonly quantized: readonly Uint8Array[];
  /** Reference masks (class per pixel), one per sample, when the data has labels. */
  readonly references?: readonly Uint8Array[];
  readonly numClasses: number;
  /** Reference pixel value that is left out of every count (e.g. 255 for "void"). */
  readonly ignore?: number;
  /** Average over the background class (0) too; default false. Thresholded masks always score the foreground only. */
  readonly includeBackground?: boolean;
}

/**
 * Segmentation records.
 * - With references: `iou` and `dice` (mean of the per-sample values) and `iou_pooled` and `dice_pooled` (pooled over
 *   the set), float vs labels beside quantized vs labels.
 * - Always: `iou_vs_float` and `dice_vs_float` (quantized masks scored against the float masks, mean per sample) and
 *   `pixel_agreement` (share of pixels where the quantized class equals the float class).
 */
export function segmentationMetrics(input: SegmentationMetricInput): MetricRecord[] {
  return segmentationRecords(segmentationCounts(input), input.includeBackground ?? false);
}

/** Per-sample counts behind every segmentation record (sharded runs merge them by concatenation, in sample order). */
export interface SegmentationCounts {
  readonly numClasses: number;
  /** Float and quantized masks against the reference masks, where the data has labels. */
  readonly vsLabels?: { readonly float: readonly MaskCounts[]; readonly quantized: readonly MaskCounts[] };
  /** Quantized masks against the float masks. */
  readonly vsFloat: readonly MaskCounts[];
}

export function segmentationCounts(input: SegmentationMetricInput): SegmentationCounts {
  const { numClasses, ignore } = input;
  const n = input.float.length;
  if (input.quantized.length !== n || (input.references && input.references.length !== n))
    throw new RangeError(`internal: ${n} float masks, ${input.quantized.length} quantized, ${input.references?.length} references`);
  const refs = input.references;
  return {
    numClasses,
    ...(refs
      ? {
          vsLabels: {
            float: input.float.map((m, i) => maskCounts(m, refs[i]!, numClasses, ignore)),
            quantized: input.quantized.map((m, i) => maskCounts(m, refs[i]!, numClasses, ignore)),
          },
        }
      : {}),
    // Against the float masks every pixel counts: the float model has no "void".
    vsFloat: input.quantized.map((m, i) => maskCounts(m, input.float[i]!, numClasses)),
  };
}

/** The records of segmentationMetrics from per-sample counts. */
export function segmentationRecords(counts: SegmentationCounts, includeBackground: boolean): MetricRecord[] {
  const { numClasses } = counts;
  const n = counts.vsFloat.length;
  const out: MetricRecord[] = [];
  const samples = `${n.toLocaleString("en-US")} image${n === 1 ? "" : "s"}`;
  const classNote = numClasses === 2 || !includeBackground ? "foreground classes" : "all classes";
  if (counts.vsLabels) {
    const f = summarize(counts.vsLabels.float, includeBackground);
    const q = summarize(counts.vsLabels.quantized, includeBackground);
    const vsLabels = `vs labels, ${classNote}, ${samples}`;
    out.push(
      {
        key: "iou",
        label: "IoU (mean per image)",
        unit: "ratio",
        direction: "higher",
        float: meanOf(f.iou),
        quantized: meanOf(q.iou),
        perSample: { float: f.iou, quantized: q.iou },
        rules: gateRulesFor("iou"),
        note: vsLabels,
      },
      {
        key: "dice",
        label: "Dice (mean per image)",
        unit: "ratio",
        direction: "higher",
        float: meanOf(f.dice),
        quantized: meanOf(q.dice),
        perSample: { float: f.dice, quantized: q.dice },
        rules: gateRulesFor("dice"),
        note: vsLabels,
      },
      {
        key: "iou_pooled",
        label: "IoU (pooled over the set)",
        unit: "ratio",
        direction: "higher",
        float: f.pooled.iou,
        quantized: q.pooled.iou,
        rules: gateRulesFor("iou_pooled"),
        note: vsLabels,
      },
      {
        key: "dice_pooled",
        label: "Dice (pooled over the set)",
        unit: "ratio",
        direction: "higher",
        float: f.pooled.dice,
        quantized: q.pooled.dice,
        rules: gateRulesFor("dice_pooled"),
        note: vsLabels,
      },
    );
  }
  const vs = counts.vsFloat;
  const v = summarize(vs, includeBackground);
  const agreement = vs.map((c) => (c.pixels === 0 ? 1 : c.agree / c.pixels));
  const vsFloat = `float masks as reference, ${classNote}, ${samples}`;
  out.push(
    {
      key: "iou_vs_float",
      label: "IoU vs float (mean per image)",
      unit: "ratio",
      direction: "higher",
      quantized: meanOf(v.iou),
      perSample: { quantized: v.iou },
      rules: gateRulesFor("iou_vs_float"),
      note: vsFloat,
    },
    {
      key: "dice_vs_float",
      label: "Dice vs float (mean per image)",
      unit: "ratio",
      direction: "higher",
      quantized: meanOf(v.dice),
      perSample: { quantized: v.dice },
      rules: gateRulesFor("dice_vs_float"),
      note: vsFloat,
    },
    {
      key: "pixel_agreement",
      label: "Pixel agreement with float",
      unit: "ratio",
      direction: "higher",
      quantized: meanOf(agreement),
      perSample: { quantized: agreement },
      rules: gateRulesFor("pixel_agreement"),
      note: `share of pixels with the float class, ${samples}`,
    },
  );
  return out;
}
