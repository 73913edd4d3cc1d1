// The quantgate.yml schema (zod): one source for validation, types and the generated JSON Schema.
import { z } from "zod";
import { parseBytes, parseDurationMs, parsePercent } from "./units.js";

export const FORMATS = ["int8", "int4", "int2"] as const;
export type WeightFormat = (typeof FORMATS)[number];
export const FORMAT_BITS: Record<WeightFormat, 2 | 4 | 8> = { int8: 8, int4: 4, int2: 2 };
export const BLOCK_SIZES = [16, 32, 64, 128, 256] as const;
export const ALGORITHMS = ["rtn", "mse"] as const;

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

export const recipeSchema = z.strictObject({
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

export const gateSchema = z.strictObject({
  max_accuracy_drop: limit(plainNumber).optional(),
  max_accuracy_drop_pct: limit(percentValue).optional(),
  max_perplexity_increase_pct: limit(percentValue).optional(),
  max_kl_mean: limit(plainNumber).optional(),
  max_kl_p99: limit(plainNumber).optional(),
  min_top1_agreement: limit(plainNumber).optional(),
  max_model_size: limit(bytesValue).optional(),
  max_bits_per_weight: limit(plainNumber).optional(),
  max_peak_memory: limit(bytesValue).optional(),
  max_latency_p50_ms: limit(msValue).optional(),
  max_latency_p95_ms: limit(msValue).optional(),
  /** Fail when the quantized model is slower than the float one (p50). */
  forbid_slower_than_float: z.boolean().default(false),
});

const lmEvaluation = z.strictObject({
  task: z.literal("language-modeling"),
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
  dataset: z.string().min(1),
  calibration: z.string().min(1).optional(),
  label_field: z.string().default("label"),
  inputs_field: z.string().default("inputs"),
  output_name: z.string().optional(),
  samples: z.number().int().positive().default(256),
  calibration_samples: z.number().int().positive().default(32),
});

export const evaluationSchema = z.discriminatedUnion("task", [lmEvaluation, classificationEvaluation], {
  error: 'expected task "language-modeling" or "classification"',
});

export const measureSchema = z.strictObject({
  threads: z.number().int().positive().max(256).default(1),
  warmup: z.number().int().nonnegative().default(3),
  runs: z.number().int().positive().default(20),
  memory: z.boolean().default(true),
  kernel_benchmark: z.boolean().default(true),
});

export const configSchema = z.strictObject({
  version: z.literal(1).default(1),
  model: z.string().min(1, "expected the path of an .onnx file"),
  recipe: recipeSchema.default(recipeSchema.parse({})),
  evaluation: evaluationSchema,
  gate: gateSchema.default(gateSchema.parse({})),
  measure: measureSchema.default(measureSchema.parse({})),
  output_dir: z.string().default("quantgate-out"),
});

export type ConfigFile = z.infer<typeof configSchema>;
export type Recipe = z.infer<typeof recipeSchema>;
export type GateLimits = z.infer<typeof gateSchema>;
export type Evaluation = z.infer<typeof evaluationSchema>;
export type LmEvaluation = z.infer<typeof lmEvaluation>;
export type ClassificationEvaluation = z.infer<typeof classificationEvaluation>;
export type MeasureSettings = z.infer<typeof measureSchema>;
export interface Limit {
  warn?: number | undefined;
  fail?: number | undefined;
}
