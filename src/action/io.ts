// Every action input and output name, in one table; nothing else reads inputs.
import * as core from "@actions/core";
import type { ConfigOverrides } from "../config/load.js";

export const INPUTS = {
  config: "config",
  model: "model",
  format: "format",
  blockSize: "block-size",
  symmetric: "symmetric",
  algorithm: "algorithm",
  threads: "threads",
  outputDir: "output-dir",
  onnxruntimePath: "onnxruntime-path",
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
} as const;

export interface ActionInputs {
  readonly configPath: string;
  readonly overrides: ConfigOverrides;
  readonly onnxruntimePath: string | undefined;
}

export function readInputs(): ActionInputs {
  const get = (name: string): string | undefined => core.getInput(name).trim() || undefined;
  return {
    configPath: get(INPUTS.config) ?? "quantgate.yml",
    onnxruntimePath: get(INPUTS.onnxruntimePath),
    overrides: {
      model: get(INPUTS.model),
      "recipe.format": get(INPUTS.format),
      "recipe.block_size": get(INPUTS.blockSize),
      "recipe.symmetric": get(INPUTS.symmetric),
      "recipe.algorithm": get(INPUTS.algorithm),
      "measure.threads": get(INPUTS.threads),
      output_dir: get(INPUTS.outputDir),
    },
  };
}
