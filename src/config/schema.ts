// The quantgate.yml schema (zod): one source for validation, types and the generated JSON Schema.
import { z } from "zod";
import { GATE_RULES, REGRESSION_RULES, ruleDirection, type RuleDef } from "../gate/rules.js";
import { parseBytes, parseDurationMs, parsePercent } from "./units.js";
// Image preprocessing lives in its own module so task modules can use it without importing this file (no cycle).
import { imagePreprocess } from "./preprocess.js";
// The image tasks declare their config schemas in their modules (they import only the preprocess leaf module).
import { segmentationEvaluation } from "../tasks/segmentation.js";
import { textRecognitionEvaluation } from "../tasks/text-recognition.js";
import { constantInputsSchema } from "../tasks/images.js";
import { lmInputsConfigSchema } from "../tasks/lm-inputs.js";

export { imagePreprocess };

export const INT_FORMATS = ["int8", "int4", "int3", "int2"] as const;
export const TABLE_FORMATS = ["nf4", "fp4", "bnb-fp4", "mxfp4", "fp8", "codebook"] as const;
export const FORMATS = [...INT_FORMATS, ...TABLE_FORMATS] as const;
export type IntFormat = (typeof INT_FORMATS)[number];
export type TableFormatName = (typeof TABLE_FORMATS)[number];
export type WeightFormat = (typeof FORMATS)[number];
export const FORMAT_BITS: Record<WeightFormat, 2 | 3 | 4 | 8> = {
  int8: 8,
  int4: 4,
  int3: 3,
  int2: 2,
  nf4: 4,
  fp4: 4,
  "bnb-fp4": 4,
  mxfp4: 4,
  fp8: 8,
  codebook: 4,
};
export const isIntFormat = (f: WeightFormat): f is IntFormat => (INT_FORMATS as readonly string[]).includes(f);
export const BLOCK_SIZES = [16, 32, 64, 128, 256] as const;
export const ALGORITHMS = ["rtn", "mse", "awq", "gptq"] as const;

/**
 * Named recipes from the papers. A preset fills recipe fields the config does not set itself.
 * - int8: per-block int8, symmetric, round to nearest (the LLM.int8()-free baseline every toolkit ships).
 * - int4-rtn: int4 asymmetric block 32, round to nearest (ONNX Runtime's MatMulNBits default recipe).
 * - int4-awq: int4 asymmetric block 128 with activation-aware scaling (Lin et al., AWQ, 2023).
 * - int4-gptq: int4 asymmetric block 128 with GPTQ error feedback (Frantar et al., 2022).
 * - int3-quantx: per-matrix hardware-aware choice of grid and block size around 3 bits (QuantX).
 * - nf4: NormalFloat4 with block-64 absmax (Dettmers et al., QLoRA, 2023).
 * - mxfp4: OCP Microscaling FP4: E2M1 codes, one E8M0 power-of-two scale per 32.
 * - mixed-3.5bpw: bits allocated by sensitivity to 3.5 bits per weight (the optimal-formats rule).
 * - lowrank-int3: int3 with MSE clip search plus a rank-8 float16 correction of the
 *   activation-weighted error (LQER-style; the training-free counterpart of DL-QAT's low-rank update).
 */
export const PRESETS: Record<string, Record<string, unknown>> = {
  int8: { format: "int8", block_size: 128, symmetric: true, algorithm: "rtn" },
  "int4-rtn": { format: "int4", block_size: 32, symmetric: false, algorithm: "rtn" },
  "int4-awq": { format: "int4", block_size: 128, symmetric: false, algorithm: "awq" },
  "int4-gptq": { format: "int4", block_size: 128, symmetric: false, algorithm: "gptq" },
  "int3-quantx": { format: "int3", block_size: 64, symmetric: false, algorithm: "mse", quantx: { target_bpw: 3.6 } },
  nf4: { format: "nf4", block_size: 64 },
  mxfp4: { format: "mxfp4", block_size: 32 },
  "mixed-3.5bpw": {
    format: "int4",
    block_size: 64,
    symmetric: false,
    algorithm: "mse",
    mixed: { target_bpw: 3.5, method: "fisher", formats: ["int2", "int3", "int4", "int8"] },
  },
  "lowrank-int3": { format: "int3", block_size: 64, symmetric: false, algorithm: "mse", lowrank: { rank: 8 } },
};
export const PRESET_NAMES = Object.keys(PRESETS);

const blockSize = z
  .number({ error: `expected one of ${BLOCK_SIZES.join(", ")}` })
  .refine((b) => (BLOCK_SIZES as readonly number[]).includes(b), `expected one of ${BLOCK_SIZES.join(", ")}`);
const format = z.enum(FORMATS, { error: `expected one of ${FORMATS.join(", ")}` });
const algorithm = z.enum(ALGORITHMS, { error: `expected one of ${ALGORITHMS.join(", ")}` });

const patternList = z.array(z.string().min(1)).default([]);

const override = z.strictObject({
  match: z
    .string()
    .min(1, "expected a name pattern such as '*attn*'")
    .describe("Weight name pattern (glob, e.g. '*attn*') the override applies to; the first matching override wins."),
  format: format.optional().describe("Weight format for the matching weights."),
  block_size: blockSize.optional().describe("Weights per quantization block for the matching weights."),
  symmetric: z.boolean().optional().describe("Symmetric quantization (no zero point) for the matching weights."),
  algorithm: algorithm.optional().describe("Quantization algorithm for the matching weights."),
  skip: z.boolean().optional().describe("Keep the matching weights in float."),
});

const intFormat = z.enum(INT_FORMATS, { error: `expected one of ${INT_FORMATS.join(", ")}` });

const recipeObject = z.strictObject({
  preset: z
    .enum(PRESET_NAMES as [string, ...string[]], { error: `expected one of ${PRESET_NAMES.join(", ")}` })
    .optional()
    .describe(
      "A named recipe (int8, int4-rtn, int4-awq, int4-gptq, int3-quantx, nf4, mxfp4, mixed-3.5bpw, lowrank-int3) that fills the recipe fields this config does not set.",
    ),
  format: format
    .default("int4")
    .describe("Weight format: int8, int4, int3, int2 (integer codes with a scale per block) or a table format (nf4, fp4, bnb-fp4, mxfp4, fp8, codebook)."),
  block_size: blockSize
    .default(32)
    .describe("Weights per quantization block (one scale, and a zero point when asymmetric, per block): 16, 32, 64, 128 or 256."),
  symmetric: z.boolean().default(false).describe("Symmetric quantization (no zero point); false keeps a zero point per block."),
  algorithm: algorithm
    .default("rtn")
    .describe(
      "rtn: round to nearest; mse: clip search minimizing the squared error; awq: activation-aware scaling; gptq: error feedback with calibration data.",
    ),
  /**
   * MatMulNBits accuracy_level: 0 keeps float32 compute (bit-exact to the dequantized weights), 4 uses int8 activations.
   * Unset: 4 when the model evaluated at level 4 still passes every accuracy rule, else 0 (chosen per run, pinned in the lockfile).
   */
  accuracy_level: z
    .union([z.literal(0), z.literal(1), z.literal(2), z.literal(3), z.literal(4)])
    .optional()
    .describe(
      "MatMulNBits accuracy_level: 0 keeps float32 compute, 4 uses int8 activations. Unset: 4 when the model evaluated at level 4 still passes every accuracy rule and runs faster, else 0.",
    ),
  /** Weights with fewer elements stay float. */
  min_elements: z.number().int().nonnegative().default(1024).describe("Weights with fewer elements stay float."),
  exclude: patternList.describe("Weight name patterns (globs) kept in float."),
  overrides: z.array(override).default([]).describe("Per-weight recipe changes by name pattern (format, block size, symmetry, algorithm, or skip)."),
  /** Which ops' weights to quantize (Gather embedding tables are opt-in; rnn: LSTM/GRU/RNN W and R). */
  op_types: z
    .array(z.enum(["matmul", "gemm", "conv", "conv_transpose", "gather", "rnn"], { error: "expected matmul, gemm, conv, conv_transpose, gather or rnn" }))
    .default(["matmul", "gemm", "conv", "conv_transpose", "rnn"])
    .describe("Which ops' weights to quantize (Gather embedding tables are opt-in; rnn: LSTM/GRU/RNN W and R)."),
  /** A tied weight read by several ops: "quantize" once (one dequantized tensor for all readers) or keep "float". */
  shared_weights: z
    .enum(["quantize", "float"], { error: 'expected "quantize" or "float"' })
    .default("quantize")
    .describe('A tied weight read by several ops: "quantize" once (one dequantized tensor for all readers) or keep "float".'),
  /** Tied input/output embeddings of an LLM (Gather + LM head through a Transpose): "quantize" once or keep "float". */
  tied_embedding: z
    .enum(["quantize", "float"], { error: 'expected "quantize" or "float"' })
    .default("quantize")
    .describe(
      'Tied input/output embeddings (the table a Gather reads and the LM head reads transposed), int4/int8 recipes: "quantize" once (one packed copy read by GatherBlockQuantized and MatMulNBits) or keep "float".',
    ),
  /** Weight shapes kept in float; -1 matches any size, e.g. [201, -1] for an STFT basis. */
  exclude_shapes: z
    .array(z.array(z.number().int()))
    .default([])
    .describe("Weight shapes kept in float; -1 matches any size, e.g. [201, -1] for an STFT basis."),
  /** Subgraph labels kept in float, e.g. 'If "cond" *' or 'Loop*'. */
  exclude_subgraphs: z.array(z.string().min(1)).default([]).describe("Subgraph labels kept in float, e.g. 'If \"cond\" *' or 'Loop*'."),
  /** With calibration data, the MSE clip search weights each input channel's error by its E[x^2]. */
  mse_importance: z.boolean().default(true).describe("With calibration data, the MSE clip search weights each input channel's error by its E[x^2]."),
  gptq: z
    .strictObject({
      damp: z.number().positive().max(1).default(0.01).describe("Dampening added to the Hessian diagonal, as a share of its mean."),
      act_order: z.boolean().default(false).describe("Quantize columns in order of decreasing activation energy."),
      lazy_batch: z.number().int().positive().default(128).describe("Columns per lazy batch update."),
    })
    .default({ damp: 0.01, act_order: false, lazy_batch: 128 })
    .describe("GPTQ settings (algorithm: gptq)."),
  awq: z
    .strictObject({ grid: z.number().int().min(2).max(100).default(20).describe("Scaling exponents tried per layer in the grid search.") })
    .default({ grid: 20 })
    .describe("AWQ settings (algorithm: awq)."),
  lowrank: z
    .strictObject({
      /** Rank of the float correction branch; 0 turns it off. */
      rank: z.number().int().nonnegative().max(512).default(0).describe("Rank of the float correction branch; 0 turns it off."),
      /** Least-squares refinement of block scales on calibration statistics. */
      refine_scales: z.boolean().default(false).describe("Least-squares refinement of block scales on calibration statistics."),
    })
    .default({ rank: 0, refine_scales: false })
    .describe("Low-rank float16 correction of the activation-weighted quantization error (LQER-style)."),
  codebook: z
    .strictObject({
      levels: z.number().int().min(2).max(16).default(16).describe("Levels of the codebook (2 to 16)."),
      method: z
        .enum(["lloyd-max", "student-t"], { error: 'expected "lloyd-max" or "student-t"' })
        .default("lloyd-max")
        .describe("How the codebook is fitted: lloyd-max (to the weights) or student-t (fixed quantiles)."),
    })
    .default({ levels: 16, method: "lloyd-max" })
    .describe("Codebook format settings (format: codebook)."),
  /** Mixed precision: bits per layer allocated by sensitivity to reach a bits-per-weight target. */
  mixed: z
    .strictObject({
      target_bpw: z.number().positive().max(16).describe("Bits per weight the allocation aims at."),
      /** fisher: activation-statistics proxy; kl: measured by quantizing one layer at a time (to `low`); uniform: the baseline. */
      method: z
        .enum(["fisher", "kl", "uniform"], { error: 'expected "fisher", "kl" or "uniform"' })
        .default("fisher")
        .describe("fisher: activation-statistics proxy; kl: measured by quantizing one layer at a time (to `low`); uniform: the baseline."),
      formats: z.array(intFormat).min(1).default(["int2", "int3", "int4", "int8"]).describe("Formats a layer may get."),
      /** Share of weights in the low format (the Q_r knob); when set, layers go low or high by sensitivity instead. */
      q_ratio: z
        .number()
        .min(0)
        .max(1)
        .optional()
        .describe("Share of weights in the low format (the Q_r knob); when set, layers go low or high by sensitivity instead."),
      low: intFormat.default("int3").describe("The low format (q_ratio and the kl method)."),
      high: intFormat.default("int8").describe("The high format (q_ratio)."),
    })
    .optional()
    .describe("Mixed precision: bits per layer allocated by sensitivity to reach a bits-per-weight target."),
  /** Hardware-aware per-matrix choice (QuantX): grid and block size from weight statistics and kernel cost. */
  quantx: z
    .strictObject({
      target_bpw: z.number().positive().max(16).describe("Bits per weight the per-matrix choice aims at."),
      /** Largest accepted kernel-time ratio to int4 per weight byte, when kernel costs are measured. */
      max_cost_ratio: z
        .number()
        .positive()
        .default(1.5)
        .describe("Largest accepted kernel-time ratio to int4 per weight byte, when kernel costs are measured."),
    })
    .optional()
    .describe("Hardware-aware per-matrix choice (QuantX): grid and block size from weight statistics and kernel cost."),
});

/** Expand `preset` under the fields the config sets itself. */
function expandPreset(raw: unknown): unknown {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return raw;
  const r = raw as Record<string, unknown>;
  const preset = typeof r.preset === "string" ? PRESETS[r.preset] : undefined;
  return preset ? { ...preset, ...r } : raw;
}

export const recipeSchema = z.preprocess(expandPreset, recipeObject).superRefine((r, ctx) => {
  if (r.format === "mxfp4" && r.block_size !== 32) {
    ctx.addIssue({ code: "custom", path: ["block_size"], message: "mxfp4 uses one E8M0 scale per 32 weights: block_size must be 32" });
  }
  if ((r.algorithm === "awq" || r.algorithm === "gptq") && !isIntFormat(r.format)) {
    ctx.addIssue({ code: "custom", path: ["algorithm"], message: `${r.algorithm} works on the int formats (${INT_FORMATS.join(", ")}), not ${r.format}` });
  }
});

const bytesValue = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const bytes = parseBytes(v);
  if (bytes === undefined) {
    ctx.addIssue({ code: "custom", message: `expected a byte size such as "4MiB" or 4194304, got ${JSON.stringify(v)}` });
    return z.NEVER;
  }
  return bytes;
});
const percentValue = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const p = parsePercent(v);
  if (p === undefined) {
    ctx.addIssue({ code: "custom", message: `expected a percentage such as "5%" or 5, got ${JSON.stringify(v)}` });
    return z.NEVER;
  }
  if (p < 0) {
    // A negative budget can never be met (a drop of -1% is a gain): refuse it rather than fail every run.
    ctx.addIssue({ code: "custom", message: `expected a percentage of 0 or more, got ${JSON.stringify(v)}` });
    return z.NEVER;
  }
  return p;
});
const msValue = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const ms = parseDurationMs(v);
  if (ms === undefined) {
    ctx.addIssue({ code: "custom", message: `expected a duration such as "20ms" or 20, got ${JSON.stringify(v)}` });
    return z.NEVER;
  }
  return ms;
});
const plainNumber = z.number({ error: "expected a number" }).nonnegative({ error: "expected a number of 0 or more" });

/** A limit is either the fail threshold or { warn, fail }. */
function limit<T extends z.ZodType<number, unknown>>(value: T) {
  return z
    .union([
      value,
      z.strictObject({
        warn: value.optional().describe("Warning level: past it the rule warns and the run still passes."),
        fail: value.optional().describe("Failing level: past it the gate fails."),
      }),
    ])
    .transform((v, ctx) => {
      const pair = typeof v === "number" ? { warn: undefined, fail: v } : (v as { warn?: number; fail?: number });
      if (pair.warn === undefined && pair.fail === undefined) {
        ctx.addIssue({ code: "custom", message: "expected warn and/or fail" });
        return z.NEVER;
      }
      if (pair.warn !== undefined && pair.fail !== undefined && pair.warn > pair.fail) {
        ctx.addIssue({ code: "custom", message: `warn (${pair.warn}) must not exceed fail (${pair.fail})` });
        return z.NEVER;
      }
      return pair;
    });
}

const LIMIT_VALUES = { number: plainNumber, signed: z.number({ error: "expected a number" }), percent: percentValue, bytes: bytesValue, ms: msValue };
/** A `{ warn, fail }` limit per rule of a registry (src/gate/rules.ts); lower bounds warn at or above fail. */
function ruleLimits<const D extends readonly RuleDef[]>(defs: D) {
  return Object.fromEntries(
    defs.map((d) => [
      d.key,
      (ruleDirection(d.kind) === "min" ? minLimit(LIMIT_VALUES[d.value]) : limit(LIMIT_VALUES[d.value])).optional().describe(d.description),
    ]),
  ) as unknown as { [K in D[number]["key"]]: z.ZodOptional<z.ZodType<Limit, unknown>> };
}

/** Gate rules: one key per entry of GATE_RULES (a new rule is declared there, not here). */
export const gateSchema = z.strictObject({
  ...ruleLimits(GATE_RULES),
  /** Fail when the quantized model is slower than the float one (p50). */
  forbid_slower_than_float: z
    .boolean()
    .default(false)
    .describe(
      "Fail when the quantized model is slower than the float one: the interval of the median quantized/float latency ratio over interleaved rounds lies above 1.",
    ),
});

/** Values fed as they are to named model inputs in every call (e.g. a sample rate `sr: 16000`); the element type is the model input's. */
const constantInputs = constantInputsSchema;

const lmEvaluation = z.strictObject({
  task: z.literal("language-modeling").describe("The evaluation task: language-modeling (perplexity, KL and top-1 agreement on a text file)."),
  constant_inputs: constantInputs.describe(
    "Values fed as they are to named model inputs in every call (e.g. `sr: 16000`); the element type is the model input's.",
  ),
  dataset: z.string().min(1).describe("Text file evaluated (relative to the config)."),
  tokenizer: z.string().min(1).describe("tokenizer.json (Hugging Face tokenizers format) that turns the text into token ids."),
  calibration: z.string().min(1).optional().describe("Text file for calibration (GPTQ, AWQ, MSE importance); default: the dataset."),
  input_name: z.string().default("input_ids").describe("The model input fed the token ids."),
  output_name: z.string().optional().describe("The model output holding the logits (default: the first output)."),
  sequence_length: z.number().int().min(2).max(8192).default(128).describe("Tokens per evaluated window."),
  samples: z.number().int().positive().default(16).describe("Windows evaluated."),
  calibration_samples: z.number().int().positive().default(8).describe("Windows used for calibration."),
  batch_size: z.number().int().positive().max(256).default(4).describe("Windows per model call."),
  stride: z
    .number()
    .int()
    .positive()
    .optional()
    .describe(
      "Tokens between the starts of consecutive windows (default: sequence_length, non-overlapping). Smaller strides score each token once, with at least sequence_length - stride tokens of context.",
    ),
  inputs: lmInputsConfigSchema
    .extend({
      attention_mask: lmInputsConfigSchema.shape.attention_mask.describe(
        "The model input taking the attention mask (fed all ones), where its name is not attention_mask.",
      ),
      position_ids: lmInputsConfigSchema.shape.position_ids.describe("The model input taking position ids (fed 0..n-1), where its name is not position_ids."),
      past_key: lmInputsConfigSchema.shape.past_key.describe(
        'Name template of the past key inputs with "{layer}", e.g. "cache.{layer}.k" (fed an empty past for scoring).',
      ),
      past_value: lmInputsConfigSchema.shape.past_value.describe('Name template of the past value inputs with "{layer}", e.g. "cache.{layer}.v".'),
      present_key: lmInputsConfigSchema.shape.present_key.describe(
        'Name template of the outputs returning the updated keys, e.g. "cache_out.{layer}.k" (decode measurement).',
      ),
      present_value: lmInputsConfigSchema.shape.present_value.describe(
        'Name template of the outputs returning the updated values, e.g. "cache_out.{layer}.v".',
      ),
      constants: lmInputsConfigSchema.shape.constants.describe("Other model inputs fed one constant (number or boolean) filling their declared shape."),
    })
    .optional()
    .describe(
      "Names of LLM inputs the task does not recognise by name (attention mask, position ids, past key/value templates, constants); recognised by name by default.",
    ),
});

const classificationEvaluation = z.strictObject({
  task: z.literal("classification").describe("The evaluation task: classification (accuracy, macro F1, KL and top-1 agreement on labelled JSONL)."),
  constant_inputs: constantInputs.describe(
    "Values fed as they are to named model inputs in every call (e.g. `sr: 16000`); the element type is the model input's.",
  ),
  dataset: z.string().min(1).describe("JSONL file, one sample per line: { inputs: { name: nested array | {dims, data} }, label }."),
  calibration: z.string().min(1).optional().describe("JSONL file for calibration; default: the dataset."),
  label_field: z.string().default("label").describe("Field holding the class index."),
  inputs_field: z.string().default("inputs").describe("Field holding the model inputs by name."),
  output_name: z.string().optional().describe("The model output holding the class scores (default: the first output)."),
  samples: z.number().int().positive().default(256).describe("Samples evaluated."),
  calibration_samples: z.number().int().positive().default(32).describe("Samples used for calibration."),
});

/** A lower bound: warn at or above fail. */
function minLimit<T extends z.ZodType<number, unknown>>(value: T) {
  return z
    .union([
      value,
      z.strictObject({
        warn: value.optional().describe("Warning level: past it the rule warns and the run still passes."),
        fail: value.optional().describe("Failing level: past it the gate fails."),
      }),
    ])
    .transform((v, ctx) => {
      const pair = typeof v === "number" ? { warn: undefined, fail: v } : (v as { warn?: number; fail?: number });
      if (pair.warn === undefined && pair.fail === undefined) {
        ctx.addIssue({ code: "custom", message: "expected warn and/or fail" });
        return z.NEVER;
      }
      if (pair.warn !== undefined && pair.fail !== undefined && pair.warn < pair.fail) {
        ctx.addIssue({ code: "custom", message: `a lower bound warns first: warn (${pair.warn}) must not be below fail (${pair.fail})` });
        return z.NEVER;
      }
      return pair;
    });
}

export const INPUT_FORMATS = ["jsonl", "npy", "npz", "images", "wav"] as const;
export type InputFormat = (typeof INPUT_FORMATS)[number];

const fidelityLimit = limit(z.number({ error: "expected a number" }));
/** A lower bound: warn at or above fail. */
const fidelityMinLimit = z
  .union([
    z.number(),
    z.strictObject({
      warn: z.number().optional().describe("Warning level: past it the rule warns and the run still passes."),
      fail: z.number().optional().describe("Failing level: past it the gate fails."),
    }),
  ])
  .transform((v, ctx) => {
    const pair = typeof v === "number" ? { warn: undefined, fail: v } : v;
    if (pair.warn === undefined && pair.fail === undefined) {
      ctx.addIssue({ code: "custom", message: "expected warn and/or fail" });
      return z.NEVER;
    }
    if (pair.warn !== undefined && pair.fail !== undefined && pair.warn < pair.fail) {
      ctx.addIssue({ code: "custom", message: `a lower bound warns first: warn (${pair.warn}) must not be below fail (${pair.fail})` });
      return z.NEVER;
    }
    return pair;
  });

/** One compared output and its rules. */
const fidelityOutput = z.strictObject({
  name: z.string().min(1).describe("The model output's name."),
  /** Axis of classes / vocabulary for top-1 agreement and KL (default: last). */
  axis: z.number().int().default(-1).describe("Axis of classes / vocabulary for top-1 agreement and KL (default: last)."),
  /** logits or probabilities enable KL divergence (per position for sequence outputs); values compare numbers only. */
  kind: z
    .enum(["logits", "probabilities", "values"], { error: 'expected "logits", "probabilities" or "values"' })
    .default("values")
    .describe("logits or probabilities enable KL divergence (per position for sequence outputs); values compare numbers only."),
  min_cosine: fidelityMinLimit.optional().describe("Lowest mean cosine similarity of quantized to float outputs."),
  max_relative_l2: fidelityLimit.optional().describe("Largest mean relative L2 error of quantized to float outputs."),
  max_abs_error: fidelityLimit.optional().describe("Largest absolute element error."),
  min_top1_agreement: fidelityMinLimit.optional().describe("Lowest share of samples (positions) whose top-1 class matches float."),
  max_kl_mean: fidelityLimit.optional().describe("Largest mean KL divergence from float (logits or probabilities)."),
  max_kl_p99: fidelityLimit.optional().describe("Largest 99th percentile of the KL divergence from float."),
  /**
   * Decisions from a score output (one score per sample, or per frame): a score above `threshold` is positive.
   * Gives decision_agreement, score_max_abs_change, score_mean_abs_change and, with 0/1 labels (a labels file, or the
   * dataset's own labels: class folders, label_field), decision_accuracy.
   */
  decision: z
    .strictObject({
      threshold: z
        .number({ error: "expected the score above which a decision is positive, e.g. 0.5" })
        .describe("The score above which a decision is positive."),
      /** CSV or JSONL: sample file (relative to the labels file) -> 0/1 label (or two class names, sorted). Image datasets only. */
      labels: z
        .string()
        .min(1)
        .optional()
        .describe("CSV or JSONL: sample file (relative to the labels file) -> 0/1 label (or two class names, sorted). Image datasets only."),
      labels_fields: z
        .strictObject({
          file: z.string().min(1).default("file").describe("Column or field with the sample file."),
          label: z.string().min(1).default("label").describe("Column or field with the 0/1 label."),
        })
        .default({ file: "file", label: "label" })
        .describe("Column or field names in the labels file."),
    })
    .optional()
    .describe(
      "Decisions from a score output (one score per sample, or per frame): a score above `threshold` is positive; gives decision agreement, score changes and, with 0/1 labels, decision accuracy.",
    ),
  /** Recall@k of each sample's nearest neighbours (cosine) under the float outputs among those under the quantized outputs (embeddings). */
  recall_at_k: z
    .number({ error: "expected a whole number of neighbours, e.g. 5" })
    .int()
    .positive()
    .optional()
    .describe("Recall@k of each sample's nearest neighbours (cosine) under the float outputs among those under the quantized outputs (embeddings)."),
});

/** Stateful models: state outputs feed the next call's state inputs over the chunks of a sequence. */
const statefulSpec = z.strictObject({
  /** The input cut into chunks (default: the source's input). */
  chunk_input: z.string().min(1).optional().describe("The input cut into chunks (default: the source's input)."),
  /** Elements per chunk along `axis` of each sequence (for wav, chunk_samples is used). */
  chunk_size: z.number().int().positive().optional().describe("Elements per chunk along `axis` of each sequence (for wav, chunk_samples is used)."),
  /** Axis of the model input along which chunks are cut (default: the last). */
  axis: z.number().int().default(-1).describe("Axis of the model input along which chunks are cut (default: the last)."),
  /** Elements the window advances per call (default: chunk_size, no overlap). */
  hop: z.number().int().positive().optional().describe("Elements the window advances per call (default: chunk_size, no overlap)."),
  /** Elements of the preceding signal prepended to each chunk (zeros before the start): the model input is context + chunk_size long. */
  context: z
    .number()
    .int()
    .nonnegative()
    .default(0)
    .describe("Elements of the preceding signal prepended to each chunk (zeros before the start): the model input is context + chunk_size long."),
  state: z
    .array(
      z.strictObject({
        input: z.string().min(1).describe("State input of the model."),
        output: z.string().min(1).describe("State output fed to `input` in the next call."),
        /** Initial state shape (default: the model input's declared shape); initial value is zero. */
        shape: z
          .array(z.number().int().positive())
          .optional()
          .describe("Initial state shape (default: the model input's declared shape); initial value is zero."),
      }),
    )
    .min(1)
    .describe("State pairs: each output feeds the named input of the next call."),
});

const fidelityEvaluation = z.strictObject({
  task: z.literal("fidelity").describe("The evaluation task: fidelity (outputs of the quantized model compared with the float model's, per output)."),
  constant_inputs: constantInputs.describe(
    "Values fed as they are to named model inputs in every call (e.g. `sr: 16000`); the element type is the model input's.",
  ),
  /** A file or folder of model inputs, read as `format`. */
  dataset: z.string().min(1).describe("A file or folder of model inputs, read as `format`."),
  calibration: z.string().min(1).optional().describe("Inputs for calibration, read like the dataset; default: the dataset."),
  /**
   * jsonl: one object per line, { inputs: { name: nested array | {dims, data} }, label? };
   * npy: one array for `input`, axis 0 indexing samples (with `stateful`: sequences);
   * npz: one array per model input, named after it, axis 0 indexing samples (optional `labels` array);
   * images: PNG/JPEG files; subfolders are classes (sorted names, index = label);
   * wav: a WAV file or a folder of them, mono, resampled, cut into chunks.
   * Default: from the extension (a folder: images, unless it holds .wav files).
   */
  format: z
    .enum(INPUT_FORMATS, { error: `expected one of ${INPUT_FORMATS.join(", ")}` })
    .optional()
    .describe("jsonl, npy, npz, images (PNG/JPEG, subfolders are classes) or wav; default: from the extension."),
  /** The model input a single-input format (npy, images, wav) feeds (default: the model's only input). */
  input: z.string().min(1).optional().describe("The model input a single-input format (npy, images, wav) feeds (default: the model's only input)."),
  inputs_field: z.string().default("inputs").describe("jsonl: the field holding the model inputs by name."),
  /** jsonl: the label field; npz: the labels array; npy: a second .npy file of labels. */
  label_field: z.string().default("label").describe("jsonl: the label field; npz: the labels array; npy: a second .npy file of labels."),
  preprocess: imagePreprocess.default(imagePreprocess.parse({})).describe("Image preprocessing (format: images)."),
  audio: z
    .strictObject({
      sample_rate: z.number().int().positive().default(16000).describe("Sample rate the audio is resampled to."),
      /** Samples per chunk; the last chunk is zero-padded. Without `stateful`, each chunk is one sample. */
      chunk_samples: z
        .number()
        .int()
        .positive()
        .default(16000)
        .describe("Samples per chunk; the last chunk is zero-padded. Without `stateful`, each chunk is one sample."),
    })
    .default({ sample_rate: 16000, chunk_samples: 16000 })
    .describe("Audio reading (format: wav)."),
  /** Outputs to compare (default: every output, as values). */
  outputs: z.array(fidelityOutput).default([]).describe("Outputs to compare and their rules (default: every output, as values)."),
  samples: z.number().int().positive().default(256).describe("Samples evaluated."),
  calibration_samples: z.number().int().positive().default(32).describe("Samples used for calibration."),
  stateful: statefulSpec.optional().describe("Stateful models: state outputs feed the next call's state inputs over the chunks of a sequence."),
  /** A JS module exporting `default (floatOutputs, quantizedOutputs, labels) => Record<string, number>`. */
  metric: z
    .strictObject({
      module: z
        .string()
        .min(1)
        .describe("A JS module (inside the workspace) exporting `default (floatOutputs, quantizedOutputs, labels) => Record<string, number>`."),
      /** Limits on the named numbers it returns: { name: { max | min: limit } }. */
      limits: z
        .record(
          z.string(),
          z.strictObject({
            max: fidelityLimit.optional().describe("Upper limit on the number."),
            min: fidelityMinLimit.optional().describe("Lower limit on the number."),
          }),
        )
        .default({})
        .describe("Limits on the named numbers it returns: { name: { max | min: limit } }."),
    })
    .optional()
    .describe("A user metric computed by a JS module over both models' outputs."),
});

export const evaluationSchema = z.discriminatedUnion(
  "task",
  [lmEvaluation, classificationEvaluation, fidelityEvaluation, textRecognitionEvaluation, segmentationEvaluation],
  { error: 'expected task "language-modeling", "classification", "fidelity", "text-recognition" or "segmentation"' },
);

export const measureSchema = z.strictObject({
  threads: z.number().int().positive().max(256).default(1).describe("Threads of ONNX Runtime's intra-op pool while timing."),
  warmup: z.number().int().nonnegative().max(1000, "expected at most 1000 warm-up runs").default(3).describe("Untimed runs before timing."),
  runs: z.number().int().positive().max(10_000, "expected at most 10000 timed runs").default(20).describe("Timed runs of each model (interleaved rounds)."),
  /** Time limit of each measuring child (load, warm-up and runs), e.g. "600s"; default: sized from the measured warm-up. */
  timeout: msValue
    .refine((ms) => ms >= 1000, 'expected a duration of at least 1s, such as "600s"')
    .optional()
    .describe('Time limit of each measuring child (load, warm-up and runs), e.g. "600s"; default: sized from the measured warm-up.'),
  memory: z.boolean().default(true).describe("Measure peak memory and latency in fresh processes."),
  kernel_benchmark: z.boolean().default(true).describe("Time the recipe's formats on QuantGate's kernels at this model's layer shapes, next to float32."),
  /** Greedy decoding with the KV cache fed back, for LLM exports with past/present key-value I/O (language-modeling). */
  decode: z
    .strictObject({
      prompt_tokens: z.number().int().positive().max(8192).default(16).describe("Tokens of each prompt (taken from the start of evaluation windows)."),
      decode_tokens: z.number().int().positive().max(4096).default(8).describe("Greedy decode steps after the first token."),
      prompts: z.number().int().nonnegative().max(64).default(2).describe("Prompts decoded by each model; 0 turns the decode measurement off."),
    })
    .default({ prompt_tokens: 16, decode_tokens: 8, prompts: 2 })
    .describe(
      "Decode measurement of LLM exports with a KV cache (past/present inputs and outputs): time to first token, ms per decode step, tokens/s, float vs quantized, each in a process of its own.",
    ),
});

/** Regression rules against the latest history entry of the base branch (pull requests). */
export const regressionSchema = z.strictObject({
  /** One key per entry of REGRESSION_RULES (src/gate/rules.ts). */
  ...ruleLimits(REGRESSION_RULES),
  /**
   * Any metric by key (`accuracy`, `output.logits.cosine`, `metric.cer`, ...): how much worse than the base branch it may
   * get, in its own unit (`max_worse`) or relative (`max_worse_pct`); "worse" follows the metric's direction.
   */
  metrics: z
    .record(
      z.string().min(1),
      z.strictObject({
        max_worse: limit(z.number({ error: "expected a number" }).nonnegative())
          .optional()
          .describe("How much worse than the base branch the metric may get, in its own unit."),
        max_worse_pct: limit(percentValue).optional().describe("How much worse than the base branch the metric may get, in percent of the base value."),
      }),
    )
    .default({})
    .describe(
      'Any metric by key: how much worse than the base branch it may get, in its own unit (`max_worse`) or relative (`max_worse_pct`); "worse" follows the metric\'s direction.',
    ),
  /** Confidence level of the bootstrap intervals. */
  confidence: z
    .number({ error: "expected a number between 0.5 and 0.999" })
    .min(0.5)
    .max(0.999)
    .default(0.95)
    .describe("Confidence level of the bootstrap intervals."),
  /** Bootstrap resamples. */
  bootstrap_samples: z.number().int().min(100).max(100_000).default(2000).describe("Bootstrap resamples."),
  /** Divide latency by the float model's latency measured in the same run (cancels runner speed) when the float model is unchanged. */
  latency_relative_to_float: z
    .boolean()
    .default(true)
    .describe("Judge latency as the quantized/float ratio measured in the same run (cancels runner speed) when the float model is unchanged."),
  /** Fail when a pull request finds no history entry of its base branch (otherwise: a note, no regression rules). */
  require_base: z
    .boolean()
    .default(false)
    .describe("Fail when a pull request finds no history entry of its base branch (otherwise: a note, no regression rules)."),
});

/** Where run results are kept: one JSON file per config on a branch, or @actions/cache entries. */
export const historySchema = z.strictObject({
  backend: z
    .enum(["branch", "cache", "none"], { error: 'expected "branch", "cache" or "none"' })
    .default("branch")
    .describe("Where results are kept: a branch of the repository, @actions/cache entries, or none."),
  branch: z.string().min(1).default("quantgate-data").describe("The history branch (backend: branch)."),
  /** Folder inside the history branch for the data files and the dashboard. */
  path: z.string().default("quantgate").describe("Folder inside the history branch for the data files and the dashboard."),
  max_entries: z.number().int().min(1).max(10_000).default(200).describe("Entries kept per config (the oldest are dropped)."),
  /** Branches whose runs are stored; empty: the repository's default branch. */
  branches: z.array(z.string().min(1)).default([]).describe("Branches whose runs are stored; empty: the repository's default branch."),
  /** Name of this config in history, comments and artifacts; default: from the config path. */
  name: z
    .string()
    .regex(/^[A-Za-z0-9._-]+$/, "expected letters, digits, '.', '_' or '-'")
    .optional()
    .describe("Name of this config in history, comments and artifacts; default: from the config path."),
  dashboard: z.boolean().default(true).describe("Write the HTML dashboard next to the data files."),
});

/** Stricter rules for `mode: release`: each limit here replaces the normal one where it is stricter. */
export const releaseSchema = z.strictObject({
  gate: gateSchema.partial().default({}).describe("Stricter gate limits for `mode: release`."),
  regression: regressionSchema.partial().default({}).describe("Stricter regression limits for `mode: release`."),
  /** The machine-readable pass/fail record, relative to output_dir. */
  record: z.string().min(1).default("quantgate-release.json").describe("The machine-readable pass/fail record, relative to output_dir."),
});

/** `quantgate search`: find the cheapest recipe that passes every gate rule (src/search/). */
export const SEARCH_OBJECTIVES = ["size", "bits_per_weight", "latency_p50", "decode_ms_per_token"] as const;
export const searchSchema = z.strictObject({
  /**
   * What "cheapest" means: stored bytes (model_size), bits_per_weight, latency_p50 of the quantized model, or its
   * decode ms per token (p50; language models with a KV cache, where measure.decode measures it).
   */
  objective: z
    .enum(SEARCH_OBJECTIVES, { error: `expected one of ${SEARCH_OBJECTIVES.join(", ")}` })
    .default("size")
    .describe(
      'What "cheapest" means: stored bytes (size), bits_per_weight, latency_p50 of the quantized model, or decode_ms_per_token (p50; language models with a KV cache).',
    ),
  space: z
    .strictObject({
      formats: z.array(format).min(1).default(["int8", "int4", "int3", "int2", "nf4", "mxfp4"]).describe("Formats the search may choose."),
      block_sizes: z.array(blockSize).min(1).default([32, 64, 128]).describe("Block sizes the search may choose."),
      algorithms: z.array(algorithm).min(1).default(["rtn", "mse", "awq", "gptq"]).describe("Algorithms the search may choose."),
      /** Mixed precision between the cheapest passing and the dearest failing uniform recipe ([] turns it off). */
      mixed_formats: z
        .array(intFormat)
        .default(["int2", "int3", "int4", "int8"])
        .describe("Formats of mixed-precision candidates ([] turns mixed precision off)."),
      /** Allow per-layer format overrides (allocated from measured per-layer KL); otherwise mixed uses recipe.mixed. */
      per_layer_overrides: z.boolean().default(true).describe("Allow per-layer format overrides allocated from measured per-layer KL."),
    })
    .default({
      formats: ["int8", "int4", "int3", "int2", "nf4", "mxfp4"],
      block_sizes: [32, 64, 128],
      algorithms: ["rtn", "mse", "awq", "gptq"],
      mixed_formats: ["int2", "int3", "int4", "int8"],
      per_layer_overrides: true,
    })
    .describe("The recipes the search may try."),
  /** Full gate runs the search may spend (the holdout verification of the winner is one more). */
  max_full_evaluations: z.number().int().min(1).max(1000).default(8).describe("Full gate runs the search may spend (the holdout verification is extra)."),
  /** Wall-clock budget; the search stops early, and says so, when it is spent. */
  max_minutes: z.number().positive().default(30).describe("Wall-clock budget in minutes; the search stops early, and says so, when it is spent."),
  /** Share of the evaluation data kept out of the search's choices and used only to verify the winner. */
  holdout: z.number().min(0).max(0.9).default(0.3).describe("Share of the evaluation data kept out of the search and used only to verify the winner."),
});
export type SearchSettings = z.infer<typeof searchSchema>;

export const configSchema = z.strictObject({
  version: z.literal(1).default(1).describe("Config format version (1)."),
  model: z.string().min(1, "expected the path of an .onnx file").describe("Path of the float ONNX model, relative to this file."),
  recipe: recipeSchema.default(recipeObject.parse({})).describe("How weights are quantized: format, block size, algorithm, per-weight overrides."),
  evaluation: evaluationSchema.describe("The task that compares the quantized model with the float model, and its data."),
  gate: gateSchema.default(gateSchema.parse({})).describe("Limits that fail (or warn) the run: one key per rule."),
  measure: measureSchema.default(measureSchema.parse({})).describe("How size, memory and latency are measured."),
  output_dir: z.string().default("quantgate-out").describe("Folder for the quantized model, report, summary and lockfile (inside the workspace)."),
  /**
   * A float model to evaluate and measure `model` against instead of `model` itself: for a model that is
   * already quantized (integer weights behind DequantizeLinear, MatMulNBits, QLinear ops), its float original.
   */
  reference_model: z
    .string()
    .min(1, "expected the path of the float .onnx model")
    .optional()
    .describe("A float model to evaluate and measure `model` against instead of `model` itself: for an already quantized model, its float original."),
  regression: regressionSchema.optional().describe("Regression rules against the latest history entry of the base branch (pull requests)."),
  history: historySchema.optional().describe("Where run results are kept: one JSON file per config on a branch, or @actions/cache entries."),
  release: releaseSchema.optional().describe("Stricter rules for `mode: release`: each limit here replaces the normal one where it is stricter."),
  /** CLI only: let reads (model, data, tokenizer, metric module) leave the config's folder; writes never do, and the action ignores it. */
  allow_outside_workspace: z
    .boolean()
    .default(false)
    .describe("CLI only: let reads (model, data, tokenizer, metric module) leave the config's folder; writes never do, and the action ignores it."),
  search: searchSchema.optional().describe("Settings of `quantgate search` / `mode: search`: objective, search space, budget and holdout share."),
});

export type ConfigFile = z.infer<typeof configSchema>;
export type Recipe = z.output<typeof recipeSchema>;
export type GateLimits = z.infer<typeof gateSchema>;
export type Evaluation = z.infer<typeof evaluationSchema>;
export type LmEvaluation = z.infer<typeof lmEvaluation>;
export type ClassificationEvaluation = z.infer<typeof classificationEvaluation>;
export type FidelityEvaluation = z.infer<typeof fidelityEvaluation>;
export type FidelityOutputSpec = z.infer<typeof fidelityOutput>;
export type { SegmentationEvaluation } from "../tasks/segmentation.js";
export type { TextRecognitionEvaluation } from "../tasks/text-recognition.js";
export type ImagePreprocess = z.infer<typeof imagePreprocess>;
export type MeasureSettings = z.infer<typeof measureSchema>;
export type RegressionSettings = z.infer<typeof regressionSchema>;
export type HistorySettings = z.infer<typeof historySchema>;
export type ReleaseSettings = z.infer<typeof releaseSchema>;
export interface Limit {
  warn?: number | undefined;
  fail?: number | undefined;
}
