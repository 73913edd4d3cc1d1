// Every action input and output name, in one table; nothing else reads inputs.
import * as core from "@actions/core";
import type { ConfigOverrides } from "../config/load.js";
import { UserError } from "../errors.js";
import { COMMENT_MODES, type CommentMode } from "../github/comment.js";

export const INPUTS = {
  config: "config",
  model: "model",
  preset: "preset",
  format: "format",
  blockSize: "block-size",
  symmetric: "symmetric",
  algorithm: "algorithm",
  threads: "threads",
  outputDir: "output-dir",
  onnxruntimePath: "onnxruntime-path",
  githubToken: "github-token",
  comment: "comment",
  artifact: "artifact",
  artifactRetentionDays: "artifact-retention-days",
  mode: "mode",
  cache: "cache",
  historyRemote: "history-remote",
  allowPrCode: "allow-pr-code",
  shard: "shard",
  shards: "shards",
} as const;

export const OUTPUTS = {
  verdict: "verdict",
  reportPath: "report-path",
  summaryPath: "summary-path",
  modelPath: "model-path",
  perplexityFloat: "perplexity-float",
  perplexityQuantized: "perplexity-quantized",
  accuracyFloat: "accuracy-float",
  accuracyQuantized: "accuracy-quantized",
  klMean: "kl-mean",
  top1Agreement: "top1-agreement",
  sizeBytes: "size-bytes",
  bitsPerWeight: "bits-per-weight",
  latencyP50Ms: "latency-p50-ms",
  peakMemoryBytes: "peak-memory-bytes",
  // Per-metric outputs of the built-in metrics; src/action/outputs.ts sets `metric-<key>-float|quantized` for every metric of a run.
  metricAccuracyFloat: "metric-accuracy-float",
  metricAccuracyQuantized: "metric-accuracy-quantized",
  metricMacroF1Float: "metric-macro_f1-float",
  metricMacroF1Quantized: "metric-macro_f1-quantized",
  metricPerplexityFloat: "metric-perplexity-float",
  metricPerplexityQuantized: "metric-perplexity-quantized",
  metricKlMeanQuantized: "metric-kl_mean-quantized",
  metricKlP99Quantized: "metric-kl_p99-quantized",
  metricKlMaxQuantized: "metric-kl_max-quantized",
  metricTop1AgreementQuantized: "metric-top1_agreement-quantized",
  metricModelSizeFloat: "metric-model_size-float",
  metricModelSizeQuantized: "metric-model_size-quantized",
  metricBitsPerWeightFloat: "metric-bits_per_weight-float",
  metricBitsPerWeightQuantized: "metric-bits_per_weight-quantized",
  metricPeakMemoryFloat: "metric-peak_memory-float",
  metricPeakMemoryQuantized: "metric-peak_memory-quantized",
  metricLatencyP50Float: "metric-latency_p50-float",
  metricLatencyP50Quantized: "metric-latency_p50-quantized",
  metricLatencyP95Float: "metric-latency_p95-float",
  metricLatencyP95Quantized: "metric-latency_p95-quantized",
  metricKernelGemvFloat: "metric-kernel_gemv-float",
  metricKernelGemvQuantized: "metric-kernel_gemv-quantized",
  commentUrl: "comment-url",
  artifactId: "artifact-id",
  artifactUrl: "artifact-url",
  baseCommit: "base-commit",
  historyLocation: "history-location",
  dashboardPath: "dashboard-path",
  releaseRecordPath: "release-record-path",
  cacheHits: "cache-hits",
  modelSha256: "model-sha256",
} as const;

export type RunMode = "check" | "release" | "search";

/** Sharded evaluation (src/action/shards.ts): the jobs of one run; the merge job reports as `check`. */
export type ShardMode = "quantize" | "evaluate" | "merge";
const SHARD_MODES: readonly ShardMode[] = ["quantize", "evaluate", "merge"];

export interface CiInputs {
  readonly githubToken: string | undefined;
  readonly comment: CommentMode;
  readonly artifact: boolean;
  readonly artifactRetentionDays: number | undefined;
  readonly mode: RunMode;
  readonly cache: boolean;
  readonly historyRemote: string | undefined;
  /** Run config-defined code (metric module) on pull_request_target / workflow_run events. */
  readonly allowPrCode: boolean;
  /** Set for `mode: quantize | evaluate | merge` (then `mode` is check). */
  readonly shardMode?: ShardMode;
  /** `shard: i/n` of an evaluate job, as written. */
  readonly shard?: string;
  /** `shards: n` of the merge job. */
  readonly shards?: number;
}

export interface ActionInputs {
  readonly configPath: string;
  readonly overrides: ConfigOverrides;
  readonly onnxruntimePath: string | undefined;
  readonly ci: CiInputs;
}

function oneOf<T extends string>(name: string, value: string | undefined, allowed: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  if ((allowed as readonly string[]).includes(value)) return value as T;
  throw new UserError(`input "${name}": expected ${allowed.map((a) => `"${a}"`).join(", ")}, got "${value}"`);
}

function bool(name: string, value: string | undefined, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (/^(true|yes|on|1)$/i.test(value)) return true;
  if (/^(false|no|off|0)$/i.test(value)) return false;
  throw new UserError(`input "${name}": expected true or false, got "${value}"`);
}

export function readInputs(): ActionInputs {
  const get = (name: string): string | undefined => core.getInput(name).trim() || undefined;
  return {
    configPath: get(INPUTS.config) ?? "quantgate.yml",
    onnxruntimePath: get(INPUTS.onnxruntimePath),
    ci: readCiInputs(get),
    overrides: {
      model: get(INPUTS.model),
      "recipe.preset": get(INPUTS.preset),
      "recipe.format": get(INPUTS.format),
      "recipe.block_size": get(INPUTS.blockSize),
      "recipe.symmetric": get(INPUTS.symmetric),
      "recipe.algorithm": get(INPUTS.algorithm),
      "measure.threads": get(INPUTS.threads),
      output_dir: get(INPUTS.outputDir),
    },
  };
}

/** The CI inputs, validated; each message names the input and the bad value. */
export function readCiInputs(get: (name: string) => string | undefined): CiInputs {
  const days = get(INPUTS.artifactRetentionDays);
  const retention = days === undefined ? undefined : Number(days);
  if (retention !== undefined && (!Number.isInteger(retention) || retention < 1 || retention > 90)) {
    throw new UserError(`input "${INPUTS.artifactRetentionDays}": expected a whole number of days from 1 to 90, got "${days}"`);
  }
  const modeText = oneOf<RunMode | ShardMode>(INPUTS.mode, get(INPUTS.mode), ["check", "release", "search", ...SHARD_MODES], "check");
  const shardMode = (SHARD_MODES as readonly string[]).includes(modeText) ? (modeText as ShardMode) : undefined;
  const shardsText = get(INPUTS.shards);
  const shards = shardsText === undefined ? undefined : Number(shardsText);
  if (shards !== undefined && (!Number.isInteger(shards) || shards < 1 || shards > 256))
    throw new UserError(`input "${INPUTS.shards}": expected the number of shards (1 to 256), got "${shardsText}"`);
  if (shardMode === "evaluate" && get(INPUTS.shard) === undefined)
    throw new UserError(`input "${INPUTS.shard}": mode evaluate needs shard: i/n (for example "\${{ matrix.shard }}/4")`);
  if (shardMode === "merge" && shards === undefined) throw new UserError(`input "${INPUTS.shards}": mode merge needs shards: n, the number of evaluate jobs`);
  return {
    githubToken: get(INPUTS.githubToken),
    comment: oneOf(INPUTS.comment, get(INPUTS.comment), COMMENT_MODES, "always"),
    artifact: bool(INPUTS.artifact, get(INPUTS.artifact), true),
    artifactRetentionDays: retention,
    mode: shardMode ? "check" : (modeText as RunMode),
    ...(shardMode ? { shardMode, shard: get(INPUTS.shard), shards } : {}),
    cache: bool(INPUTS.cache, get(INPUTS.cache), true),
    historyRemote: get(INPUTS.historyRemote),
    allowPrCode: bool(INPUTS.allowPrCode, get(INPUTS.allowPrCode), false),
  };
}
