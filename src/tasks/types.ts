// The contract between evaluation tasks and everything that consumes their results (gate, summary, outputs,
// history, regression, dashboard): a task returns metric records, and no consumer names a task.
import type { Feeds } from "../data/tensors.js";
import type { DataFileHash, ModelInputInfo } from "../data/index.js";
import type { TaskRule } from "../gate/rules.js";
import type { Ort, Session } from "../runtime/ort.js";

/** Units a metric value is expressed in; formatting and rule messages key off this. */
export type MetricUnit = "ratio" | "%" | "points" | "nats" | "perplexity" | "bytes" | "bits" | "ms" | "tokens/s" | "count" | "value";

/**
 * One measured quantity of an evaluation, float beside quantized.
 * - `float` is the float model's value where it has one of its own (accuracy vs labels, perplexity);
 *   comparison metrics (KL, top-1 agreement, cosine vs float) have only `quantized`.
 * - `perSample` holds the per-sample values whose mean is the metric (for paired bootstrap intervals and
 *   exact shard merges); absent where the metric is not a mean of samples (p99, max).
 * - `rules` are the gate rule keys that judge this metric (e.g. ["max_accuracy_drop", "max_accuracy_drop_pct"]);
 *   regression rules against the base branch are looked up through the same keys.
 */
export interface MetricRecord {
  /** Stable key: history, outputs and the dashboard are keyed by it (e.g. "accuracy", "kl_mean", "cer", "output.logits.cosine"). */
  readonly key: string;
  readonly label: string;
  readonly unit: MetricUnit;
  /** Which way is better. */
  readonly direction: "higher" | "lower";
  readonly float?: number;
  readonly quantized: number;
  readonly perSample?: { readonly float?: readonly number[]; readonly quantized: readonly number[] };
  readonly rules: readonly string[];
  /** Raw measurements whose median is the metric (latency runs), for noise-aware comparison against the base branch. */
  readonly raw?: { readonly float?: readonly number[]; readonly quantized: readonly number[] };
  /** Free text shown beside the metric (e.g. "vs labels", "vs float", "2,048 tokens"). */
  readonly note?: string;
}

/** How much of the user's data the task evaluated ("evaluated N of M samples (K sequences)"). */
export interface SampleCount {
  readonly evaluated: number;
  readonly total: number;
  /** Windows, chunks or sequences the samples became, where that differs from samples. */
  readonly sequences?: number;
  /** Why some were left out (empty when all were evaluated). */
  readonly leftOut?: string;
  /** What `sequences` counts ("sequences", "chunks", "windows"); default "sequences". */
  readonly sequenceUnit?: string;
}

/** What a task hands the rest of the pipeline after evaluating both sessions. */
export interface TaskEvaluation {
  readonly task: string;
  readonly metrics: readonly MetricRecord[];
  readonly samples: SampleCount;
  readonly ms: number;
  /** Task-specific detail for the JSON report and the folded section of the summary (never read by the gate). */
  readonly details?: Record<string, unknown>;
  readonly warnings?: readonly string[];
  /**
   * Limits the task's own config sets on its records (fidelity's per-output and user-metric limits); the gate
   * judges them with its own rules, and one whose metric is missing fails closed.
   */
  readonly rules?: readonly TaskRule[];
}

/** Data a task loaded from its config: calibration batches are kept apart from evaluation data. */
export interface TaskData {
  readonly task: string;
  readonly calibrationBatches: Feeds[];
  readonly files: DataFileHash[];
  /** One evaluation input the measure stage times (latency, peak memory); default: none, and the stage says so. */
  readonly measureFeeds?: Feeds;
  /** Token sequences decode measurement takes its prompts from (language-modeling); default: none. */
  readonly promptSource?: readonly (readonly number[])[];
}

export interface TaskLoadContext {
  /** Resolves a path from the config (contained in the workspace) to an absolute path. */
  readonly resolve: (path: string, key: string) => string;
  readonly inputs: readonly ModelInputInfo[];
  /** Classes the model declares on an output's last axis (for label range checks), where the shape says. */
  readonly classesOf?: (outputName: string | undefined) => number | undefined;
}

export interface TaskEvalContext {
  readonly ort: Ort;
  readonly float: Session;
  readonly quantized: Session;
  readonly threads: number;
}

/**
 * One model at a time (tasks that can score the float model first): `open` returns the session of that model,
 * releasing the other one first. A task opens "float", keeps what it needs of its outputs (on disk when
 * large), then opens "quantized".
 */
export interface PhasedEvalContext {
  readonly ort: Ort;
  readonly threads: number;
  open(which: "float" | "quantized"): Promise<Session>;
}

/**
 * Mergeable state of one slice's evaluation (sharded runs): sums, counts and per-sample lists in sample order,
 * never averages, so that merging the slices in order gives one unsharded run's figures to floating-point
 * rounding. Plain JSON: it travels between jobs as an artifact.
 */
export interface TaskPartial {
  readonly task: string;
  readonly [field: string]: unknown;
}

/** A task module: `src/tasks/<task>.ts` exports one of these; `runGate` calls it and never branches on the task. */
export interface Task<Config, Data extends TaskData = TaskData> {
  readonly name: string;
  load(config: Config, ctx: TaskLoadContext): Promise<Data>;
  evaluate(config: Config, data: Data, ctx: TaskEvalContext): Promise<TaskEvaluation>;
  /**
   * Optional: the same evaluation with one model loaded at a time (the float model scored first), so that a
   * large model's two sessions never share memory. Must give what `evaluate` gives; runGate prefers it.
   */
  evaluatePhased?(config: Config, data: Data, ctx: PhasedEvalContext): Promise<TaskEvaluation>;
  /**
   * Sharded evaluation (optional; a task without these three cannot be sharded): `slice` keeps the `index`-th
   * (0-based) of `count` contiguous slices of the evaluation samples, `partial` evaluates to mergeable state,
   * and `merge` turns the slices' states, in slice order, into one evaluation.
   */
  slice?(data: Data, index: number, count: number): Data;
  partial?(config: Config, data: Data, ctx: TaskEvalContext): Promise<TaskPartial>;
  merge?(config: Config, partials: readonly TaskPartial[]): TaskEvaluation;
}

/** The [start, end) range of the `index`-th (0-based) of `count` contiguous slices of `total` items. */
export function sliceRange(total: number, index: number, count: number): readonly [number, number] {
  return [Math.floor((index * total) / count), Math.floor(((index + 1) * total) / count)];
}
