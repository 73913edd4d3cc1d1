// Pieces every task shares: constant inputs from the config, metric records from per-sample values.
import { flattenNested, type ModelInputInfo } from "../data/index.js";
import { makeFeedData, type Feeds } from "../data/tensors.js";
import { UserError } from "../errors.js";
import { gateRulesFor } from "../gate/rules.js";
import { mean, percentile } from "../evaluate/metrics.js";
import type { MetricRecord } from "./types.js";

export type ConstantInputs = Readonly<Record<string, number | readonly number[] | readonly (readonly number[])[]>>;

/**
 * `evaluation.constant_inputs` as feeds: each value gets the model input's element type and leading 1s up to
 * its declared rank (a scalar stays a scalar for a rank-0 input).
 */
export function constantFeeds(constants: ConstantInputs, inputs: readonly ModelInputInfo[]): Feeds {
  const feeds: Feeds = {};
  for (const [name, value] of Object.entries(constants)) {
    const input = inputs.find((i) => i.name === name);
    if (!input) throw new UserError(`evaluation.constant_inputs.${name}: the model has no input "${name}" (inputs: ${inputs.map((i) => i.name).join(", ")})`);
    const flat = typeof value === "number" ? { dims: [] as number[], values: [value] } : flattenNested(value, `evaluation.constant_inputs.${name}`);
    let dims = flat.dims;
    if (input.rank !== undefined) {
      while (dims.length < input.rank) dims = [1, ...dims];
      if (dims.length !== input.rank)
        throw new UserError(
          `evaluation.constant_inputs.${name}: a value of shape [${flat.dims.join(", ")}] does not fit input "${name}" of rank ${input.rank}`,
        );
    }
    feeds[name] = { type: input.type, dims, data: makeFeedData(input.type, flat.values) };
  }
  return feeds;
}

/** The model inputs the dataset must feed: all but the constant ones. */
export function dataInputs(constants: ConstantInputs, inputs: readonly ModelInputInfo[]): ModelInputInfo[] {
  return inputs.filter((i) => !(i.name in constants));
}

/**
 * A record whose value is the mean of per-sample values (float beside quantized where the float model has
 * its own value); the gate rules that read the key are looked up in the rule registry.
 */
export function meanRecord(
  key: string,
  label: string,
  unit: MetricRecord["unit"],
  direction: MetricRecord["direction"],
  quantized: readonly number[],
  float?: readonly number[],
  extra: Partial<Pick<MetricRecord, "note" | "rules">> = {},
): MetricRecord {
  return {
    key,
    label,
    unit,
    direction,
    ...(float ? { float: mean(float) } : {}),
    quantized: mean(quantized),
    perSample: { ...(float ? { float } : {}), quantized },
    rules: extra.rules ?? gateRulesFor(key),
    ...(extra.note ? { note: extra.note } : {}),
  };
}

/** A record that is not a mean of samples (a percentile, a maximum, a perplexity). */
export function valueRecord(
  key: string,
  label: string,
  unit: MetricRecord["unit"],
  direction: MetricRecord["direction"],
  quantized: number,
  float?: number,
  extra: Partial<Pick<MetricRecord, "note" | "rules">> = {},
): MetricRecord {
  return {
    key,
    label,
    unit,
    direction,
    ...(float !== undefined ? { float } : {}),
    quantized,
    rules: extra.rules ?? gateRulesFor(key),
    ...(extra.note ? { note: extra.note } : {}),
  };
}

/** 1 where a prediction equals its label. */
export const hits = (pred: readonly number[], labels: readonly number[]): number[] => pred.map((p, i) => (p === labels[i] ? 1 : 0));

/** KL divergence of the quantized output distributions from the float ones, per position: mean, p99 and max. */
export function klRecords(kls: readonly number[]): MetricRecord[] {
  return [
    meanRecord("kl_mean", "KL divergence (mean)", "nats", "lower", kls, undefined, { note: "vs float" }),
    valueRecord("kl_p99", "KL divergence (p99)", "nats", "lower", percentile(kls, 99)),
    valueRecord(
      "kl_max",
      "KL divergence (max)",
      "nats",
      "lower",
      kls.reduce((a, b) => Math.max(a, b), -Infinity),
    ),
  ];
}
