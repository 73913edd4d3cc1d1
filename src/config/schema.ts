// The quantgate.yml schema (zod): one source for validation, types and the generated JSON Schema.
import { z } from "zod";
import { GATE_RULES, REGRESSION_RULES, ruleDirection, type RuleDef } from "../gate/rules.js";
import { parseBytes, parseDurationMs, parsePercent } from "./units.js";
// Image preprocessing lives in its own module so task modules can use it without importing this file (no cycle).
import { imagePreprocess } from "./preprocess.js";

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
  match: z.string().min(1, "expected a name pattern such as '*attn*'"),
  format: format.optional(),
  block_size: blockSize.optional(),
  symmetric: z.boolean().optional(),
  algorithm: algorithm.optional(),
  skip: z.boolean().optional(),
});

const intFormat = z.enum(INT_FORMATS, { error: `expected one of ${INT_FORMATS.join(", ")}` });

const recipeObject = z.strictObject({
  preset: z.enum(PRESET_NAMES as [string, ...string[]], { error: `expected one of ${PRESET_NAMES.join(", ")}` }).optional(),
  format: format.default("int4"),
  block_size: blockSize.default(32),
  symmetric: z.boolean().default(false),
  algorithm: algorithm.default("rtn"),
  /** MatMulNBits accuracy_level: 0 keeps float32 compute (bit-exact to the dequantized weights), 4 uses int8 activations. */
  accuracy_level: z.union([z.literal(0), z.literal(1), z.literal(2), z.literal(3), z.literal(4)]).default(0),
  /** Weights with fewer elements stay float. */
  min_elements: z.number().int().nonnegative().default(1024),
  exclude: patternList,
  overrides: z.array(override).default([]),
  /** Which ops' weights to quantize (Gather embedding tables are opt-in; rnn: LSTM/GRU/RNN W and R). */
  op_types: z
    .array(z.enum(["matmul", "gemm", "conv", "conv_transpose", "gather", "rnn"], { error: "expected matmul, gemm, conv, conv_transpose, gather or rnn" }))
    .default(["matmul", "gemm", "conv", "conv_transpose", "rnn"]),
  /** A tied weight read by several ops: "quantize" once (one dequantized tensor for all readers) or keep "float". */
  shared_weights: z.enum(["quantize", "float"], { error: 'expected "quantize" or "float"' }).default("quantize"),
  /** Weight shapes kept in float; -1 matches any size, e.g. [201, -1] for an STFT basis. */
  exclude_shapes: z.array(z.array(z.number().int())).default([]),
  /** Subgraph labels kept in float, e.g. 'If "cond" *' or 'Loop*'. */
  exclude_subgraphs: z.array(z.string().min(1)).default([]),
  /** With calibration data, the MSE clip search weights each input channel's error by its E[x^2]. */
  mse_importance: z.boolean().default(true),
  gptq: z
    .strictObject({
      damp: z.number().positive().max(1).default(0.01),
      act_order: z.boolean().default(false),
      lazy_batch: z.number().int().positive().default(128),
    })
    .default({ damp: 0.01, act_order: false, lazy_batch: 128 }),
  awq: z.strictObject({ grid: z.number().int().min(2).max(100).default(20) }).default({ grid: 20 }),
  lowrank: z
    .strictObject({
      /** Rank of the float correction branch; 0 turns it off. */
      rank: z.number().int().nonnegative().max(512).default(0),
      /** Least-squares refinement of block scales on calibration statistics. */
      refine_scales: z.boolean().default(false),
    })
    .default({ rank: 0, refine_scales: false }),
  codebook: z
    .strictObject({
      levels: z.number().int().min(2).max(16).default(16),
      method: z.enum(["lloyd-max", "student-t"], { error: 'expected "lloyd-max" or "student-t"' }).default("lloyd-max"),
    })
    .default({ levels: 16, method: "lloyd-max" }),
  /** Mixed precision: bits per layer allocated by sensitivity to reach a bits-per-weight target. */
  mixed: z
    .strictObject({
      target_bpw: z.number().positive().max(16),
      /** fisher: activation-statistics proxy; kl: measured by quantizing one layer at a time (to `low`); uniform: the baseline. */
      method: z.enum(["fisher", "kl", "uniform"], { error: 'expected "fisher", "kl" or "uniform"' }).default("fisher"),
      formats: z.array(intFormat).min(1).default(["int2", "int3", "int4", "int8"]),
      /** Share of weights in the low format (the Q_r knob); when set, layers go low or high by sensitivity instead. */
      q_ratio: z.number().min(0).max(1).optional(),
      low: intFormat.default("int3"),
      high: intFormat.default("int8"),
    })
    .optional(),
  /** Hardware-aware per-matrix choice (QuantX): grid and block size from weight statistics and kernel cost. */
  quantx: z
    .strictObject({
      target_bpw: z.number().positive().max(16),
      /** Largest accepted kernel-time ratio to int4 per weight byte, when kernel costs are measured. */
      max_cost_ratio: z.number().positive().default(1.5),
    })
    .optional(),
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
const plainNumber = z.number({ error: "expected a number" }).nonnegative();

/** A limit is either the fail threshold or { warn, fail }. */
function limit<T extends z.ZodType<number, unknown>>(value: T) {
  return z.union([value, z.strictObject({ warn: value.optional(), fail: value.optional() })]).transform((v, ctx) => {
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
  forbid_slower_than_float: z.boolean().default(false),
});

/** Values fed as they are to named model inputs in every call (e.g. a sample rate `sr: 16000`); the element type is the model input's. */
const constantInputs = z.record(z.string().min(1), z.union([z.number(), z.array(z.number()), z.array(z.array(z.number()))])).default({});

const lmEvaluation = z.strictObject({
  task: z.literal("language-modeling"),
  constant_inputs: constantInputs,
  dataset: z.string().min(1),
  tokenizer: z.string().min(1),
  calibration: z.string().min(1).optional(),
  input_name: z.string().default("input_ids"),
  output_name: z.string().optional(),
  sequence_length: z.number().int().min(2).max(8192).default(128),
  samples: z.number().int().positive().default(16),
  calibration_samples: z.number().int().positive().default(8),
  batch_size: z.number().int().positive().max(256).default(4),
});

const classificationEvaluation = z.strictObject({
  task: z.literal("classification"),
  constant_inputs: constantInputs,
  dataset: z.string().min(1),
  calibration: z.string().min(1).optional(),
  label_field: z.string().default("label"),
  inputs_field: z.string().default("inputs"),
  output_name: z.string().optional(),
  samples: z.number().int().positive().default(256),
  calibration_samples: z.number().int().positive().default(32),
});

/** A lower bound: warn at or above fail. */
function minLimit<T extends z.ZodType<number, unknown>>(value: T) {
  return z.union([value, z.strictObject({ warn: value.optional(), fail: value.optional() })]).transform((v, ctx) => {
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
const fidelityMinLimit = z.union([z.number(), z.strictObject({ warn: z.number().optional(), fail: z.number().optional() })]).transform((v, ctx) => {
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
  name: z.string().min(1),
  /** Axis of classes / vocabulary for top-1 agreement and KL (default: last). */
  axis: z.number().int().default(-1),
  /** logits or probabilities enable KL divergence (per position for sequence outputs); values compare numbers only. */
  kind: z.enum(["logits", "probabilities", "values"], { error: 'expected "logits", "probabilities" or "values"' }).default("values"),
  min_cosine: fidelityMinLimit.optional(),
  max_relative_l2: fidelityLimit.optional(),
  max_abs_error: fidelityLimit.optional(),
  min_top1_agreement: fidelityMinLimit.optional(),
  max_kl_mean: fidelityLimit.optional(),
  max_kl_p99: fidelityLimit.optional(),
});

/** Stateful models: state outputs feed the next call's state inputs over the chunks of a sequence. */
const statefulSpec = z.strictObject({
  /** The input cut into chunks (default: the source's input). */
  chunk_input: z.string().min(1).optional(),
  /** Elements per chunk along `axis` of each sequence (for wav, chunk_samples is used). */
  chunk_size: z.number().int().positive().optional(),
  /** Axis of the model input along which chunks are cut (default: the last). */
  axis: z.number().int().default(-1),
  /** Elements the window advances per call (default: chunk_size, no overlap). */
  hop: z.number().int().positive().optional(),
  /** Elements of the preceding signal prepended to each chunk (zeros before the start): the model input is context + chunk_size long. */
  context: z.number().int().nonnegative().default(0),
  state: z
    .array(
      z.strictObject({
        input: z.string().min(1),
        output: z.string().min(1),
        /** Initial state shape (default: the model input's declared shape); initial value is zero. */
        shape: z.array(z.number().int().positive()).optional(),
      }),
    )
    .min(1),
});

const fidelityEvaluation = z.strictObject({
  task: z.literal("fidelity"),
  constant_inputs: constantInputs,
  /** A file or folder of model inputs, read as `format`. */
  dataset: z.string().min(1),
  calibration: z.string().min(1).optional(),
  /**
   * jsonl: one object per line, { inputs: { name: nested array | {dims, data} }, label? };
   * npy: one array for `input`, axis 0 indexing samples (with `stateful`: sequences);
   * npz: one array per model input, named after it, axis 0 indexing samples (optional `labels` array);
   * images: PNG/JPEG files; subfolders are classes (sorted names, index = label);
   * wav: a WAV file or a folder of them, mono, resampled, cut into chunks.
   * Default: from the extension (a folder: images, unless it holds .wav files).
   */
  format: z.enum(INPUT_FORMATS, { error: `expected one of ${INPUT_FORMATS.join(", ")}` }).optional(),
  /** The model input a single-input format (npy, images, wav) feeds (default: the model's only input). */
  input: z.string().min(1).optional(),
  inputs_field: z.string().default("inputs"),
  /** jsonl: the label field; npz: the labels array; npy: a second .npy file of labels. */
  label_field: z.string().default("label"),
  preprocess: imagePreprocess.default(imagePreprocess.parse({})),
  audio: z
    .strictObject({
      sample_rate: z.number().int().positive().default(16000),
      /** Samples per chunk; the last chunk is zero-padded. Without `stateful`, each chunk is one sample. */
      chunk_samples: z.number().int().positive().default(16000),
    })
    .default({ sample_rate: 16000, chunk_samples: 16000 }),
  /** Outputs to compare (default: every output, as values). */
  outputs: z.array(fidelityOutput).default([]),
  samples: z.number().int().positive().default(256),
  calibration_samples: z.number().int().positive().default(32),
  stateful: statefulSpec.optional(),
  /** A JS module exporting `default (floatOutputs, quantizedOutputs, labels) => Record<string, number>`. */
  metric: z
    .strictObject({
      module: z.string().min(1),
      /** Limits on the named numbers it returns: { name: { max | min: limit } }. */
      limits: z.record(z.string(), z.strictObject({ max: fidelityLimit.optional(), min: fidelityMinLimit.optional() })).default({}),
    })
    .optional(),
});

export const evaluationSchema = z.discriminatedUnion("task", [lmEvaluation, classificationEvaluation, fidelityEvaluation], {
  error: 'expected task "language-modeling", "classification" or "fidelity"',
});

export const measureSchema = z.strictObject({
  threads: z.number().int().positive().max(256).default(1),
  warmup: z.number().int().nonnegative().default(3),
  runs: z.number().int().positive().default(20),
  memory: z.boolean().default(true),
  kernel_benchmark: z.boolean().default(true),
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
      z.strictObject({ max_worse: limit(z.number({ error: "expected a number" }).nonnegative()).optional(), max_worse_pct: limit(percentValue).optional() }),
    )
    .default({}),
  /** Confidence level of the bootstrap intervals. */
  confidence: z.number({ error: "expected a number between 0.5 and 0.999" }).min(0.5).max(0.999).default(0.95),
  /** Bootstrap resamples. */
  bootstrap_samples: z.number().int().min(100).max(100_000).default(2000),
  /** Divide latency by the float model's latency measured in the same run (cancels runner speed) when the float model is unchanged. */
  latency_relative_to_float: z.boolean().default(true),
  /** Fail when a pull request finds no history entry of its base branch (otherwise: a note, no regression rules). */
  require_base: z.boolean().default(false),
});

/** Where run results are kept: one JSON file per config on a branch, or @actions/cache entries. */
export const historySchema = z.strictObject({
  backend: z.enum(["branch", "cache", "none"], { error: 'expected "branch", "cache" or "none"' }).default("branch"),
  branch: z.string().min(1).default("quantgate-data"),
  /** Folder inside the history branch for the data files and the dashboard. */
  path: z.string().default("quantgate"),
  max_entries: z.number().int().min(1).max(10_000).default(200),
  /** Branches whose runs are stored; empty: the repository's default branch. */
  branches: z.array(z.string().min(1)).default([]),
  /** Name of this config in history, comments and artifacts; default: from the config path. */
  name: z
    .string()
    .regex(/^[A-Za-z0-9._-]+$/, "expected letters, digits, '.', '_' or '-'")
    .optional(),
  dashboard: z.boolean().default(true),
});

/** Stricter rules for `mode: release`: each limit here replaces the normal one where it is stricter. */
export const releaseSchema = z.strictObject({
  gate: gateSchema.partial().default({}),
  regression: regressionSchema.partial().default({}),
  /** The machine-readable pass/fail record, relative to output_dir. */
  record: z.string().min(1).default("quantgate-release.json"),
});

/** `quantgate search`: find the cheapest recipe that passes every gate rule (src/search/). */
export const SEARCH_OBJECTIVES = ["size", "bits_per_weight", "latency_p50"] as const;
export const searchSchema = z.strictObject({
  /** What "cheapest" means: stored bytes (model_size), bits_per_weight, or latency_p50 of the quantized model. */
  objective: z.enum(SEARCH_OBJECTIVES, { error: `expected one of ${SEARCH_OBJECTIVES.join(", ")}` }).default("size"),
  space: z
    .strictObject({
      formats: z.array(format).min(1).default(["int8", "int4", "int3", "int2", "nf4", "mxfp4"]),
      block_sizes: z.array(blockSize).min(1).default([32, 64, 128]),
      algorithms: z.array(algorithm).min(1).default(["rtn", "mse", "awq", "gptq"]),
      /** Mixed precision between the cheapest passing and the dearest failing uniform recipe ([] turns it off). */
      mixed_formats: z.array(intFormat).default(["int2", "int3", "int4", "int8"]),
      /** Allow per-layer format overrides (allocated from measured per-layer KL); otherwise mixed uses recipe.mixed. */
      per_layer_overrides: z.boolean().default(true),
    })
    .default({
      formats: ["int8", "int4", "int3", "int2", "nf4", "mxfp4"],
      block_sizes: [32, 64, 128],
      algorithms: ["rtn", "mse", "awq", "gptq"],
      mixed_formats: ["int2", "int3", "int4", "int8"],
      per_layer_overrides: true,
    }),
  /** Full gate runs the search may spend (the holdout verification of the winner is one more). */
  max_full_evaluations: z.number().int().min(1).max(1000).default(8),
  /** Wall-clock budget; the search stops early, and says so, when it is spent. */
  max_minutes: z.number().positive().default(30),
  /** Share of the evaluation data kept out of the search's choices and used only to verify the winner. */
  holdout: z.number().min(0).max(0.9).default(0.3),
});
export type SearchSettings = z.infer<typeof searchSchema>;

export const configSchema = z.strictObject({
  version: z.literal(1).default(1),
  model: z.string().min(1, "expected the path of an .onnx file"),
  recipe: recipeSchema.default(recipeObject.parse({})),
  evaluation: evaluationSchema,
  gate: gateSchema.default(gateSchema.parse({})),
  measure: measureSchema.default(measureSchema.parse({})),
  output_dir: z.string().default("quantgate-out"),
  /**
   * A float model to evaluate and measure `model` against instead of `model` itself: for a model that is
   * already quantized (integer weights behind DequantizeLinear, MatMulNBits, QLinear ops), its float original.
   */
  reference_model: z.string().min(1, "expected the path of the float .onnx model").optional(),
  regression: regressionSchema.optional(),
  history: historySchema.optional(),
  release: releaseSchema.optional(),
  search: searchSchema.optional(),
});

export type ConfigFile = z.infer<typeof configSchema>;
export type Recipe = z.output<typeof recipeSchema>;
export type GateLimits = z.infer<typeof gateSchema>;
export type Evaluation = z.infer<typeof evaluationSchema>;
export type LmEvaluation = z.infer<typeof lmEvaluation>;
export type ClassificationEvaluation = z.infer<typeof classificationEvaluation>;
export type FidelityEvaluation = z.infer<typeof fidelityEvaluation>;
export type FidelityOutputSpec = z.infer<typeof fidelityOutput>;
export type ImagePreprocess = z.infer<typeof imagePreprocess>;
export type MeasureSettings = z.infer<typeof measureSchema>;
export type RegressionSettings = z.infer<typeof regressionSchema>;
export type HistorySettings = z.infer<typeof historySchema>;
export type ReleaseSettings = z.infer<typeof releaseSchema>;
export interface Limit {
  warn?: number | undefined;
  fail?: number | undefined;
}
