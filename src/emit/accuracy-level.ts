// Chooses MatMulNBits' accuracy_level for the emitted model: int8 activations (level 4) when the model
// built at that level still passes every configured accuracy rule and runs faster, else the exact level 0.
// recipe.accuracy_level forces a level, and a committed lockfile's level is used as pinned.
import type { GateLimits, WeightFormat } from "../config/schema.js";
import { evaluateGate } from "../gate/index.js";
import type { TaskEvaluation } from "../tasks/types.js";
import type { LockExecution } from "../report/lockfile.js";

/** The exact level (float32 compute on the dequantized weights) and the fast one (int8 activations). */
export const EXACT_LEVEL = 0;
export const FAST_LEVEL = 4;

/** Level 4 must be at least this much faster than level 0 at some timed shape to be chosen. */
export const LEVEL4_MIN_GAIN = 0.05;

/** What evaluating the model built at one level gave. */
export interface LevelTrial<E = unknown> {
  readonly level: number;
  /** True when no configured accuracy rule fails at this level. */
  readonly passes: boolean;
  /** The accuracy rules that fail at this level (config keys with their figures). */
  readonly failing: readonly string[];
  /** Mean KL divergence against float at this level, where the task measures it. */
  readonly klMean?: number;
  /** The evaluation itself, for the caller to reuse. */
  readonly evaluation?: E;
}

export interface LevelEvidence {
  readonly level: number;
  readonly passes: boolean;
  readonly failing: readonly string[];
  readonly klMean?: number;
  /** Median latency of the whole model at this level per timed input shape (on-CPU ms where measured), from interleaved rounds. */
  readonly latencies?: readonly { readonly shape: string; readonly p50Ms: number }[];
}

/** One input shape's timing of the candidate builds: a median per level, in the order asked. */
export interface ShapeTiming {
  readonly shape: string;
  readonly p50Ms: readonly number[];
}

export interface AccuracyLevelChoice {
  readonly level: number;
  readonly how: "forced" | "pinned" | "measured" | "not applicable";
  /** One sentence for the report: why this level. */
  readonly reason: string;
  /** Both levels' figures when measured (level 0 first). */
  readonly candidates: readonly LevelEvidence[];
}

export interface AccuracyLevelInputs<E> {
  /** recipe.accuracy_level, when the config sets it. */
  readonly forced?: number;
  /** The committed lockfile's level, when its model and recipe match this run. */
  readonly pinned?: number;
  /** Why the level cannot matter or cannot be judged here (no MatMulNBits weight, no evaluation data): level 0 with this reason. */
  readonly notApplicable?: string;
  /** Builds the model at `level`, evaluates it and judges the configured accuracy rules. */
  readonly evaluate: (level: number) => Promise<LevelTrial<E>>;
  /** Times the models built at the given levels in interleaved rounds, at one or more input shapes (M=1, the evaluation batch). */
  readonly time?: (levels: readonly number[]) => Promise<readonly ShapeTiming[]>;
}

export interface AccuracyLevelResult<E> {
  readonly choice: AccuracyLevelChoice;
  /** The evaluation of the chosen level, when the choice evaluated it (so the caller need not evaluate again). */
  readonly evaluation?: E;
}

const evidence = (t: LevelTrial, timings: readonly ShapeTiming[], index: number): LevelEvidence => ({
  level: t.level,
  passes: t.passes,
  failing: t.failing,
  ...(t.klMean !== undefined ? { klMean: t.klMean } : {}),
  ...(timings.length > 0 ? { latencies: timings.map((x) => ({ shape: x.shape, p50Ms: x.p50Ms[index]! })) } : {}),
});

const showTimings = (timings: readonly ShapeTiming[]): string =>
  timings.map((x) => `${x.shape}: ${x.p50Ms[1]!.toFixed(3)} ms at level 4 vs ${x.p50Ms[0]!.toFixed(3)} ms at level 0`).join("; ");

/**
 * Level 4 is chosen when (a) every configured accuracy rule still passes with int8 activations and (b) it
 * is at least LEVEL4_MIN_GAIN faster than level 0 at one or more of the timed shapes (when timings are
 * given). Otherwise level 0: exact. Both levels are evaluated so the report can show both KL figures and both latencies.
 */
export async function chooseAccuracyLevel<E>(inputs: AccuracyLevelInputs<E>): Promise<AccuracyLevelResult<E>> {
  if (inputs.forced !== undefined) {
    return { choice: { level: inputs.forced, how: "forced", reason: `recipe.accuracy_level sets ${inputs.forced}`, candidates: [] } };
  }
  if (inputs.pinned !== undefined) {
    return { choice: { level: inputs.pinned, how: "pinned", reason: `pinned by the committed lockfile (level ${inputs.pinned})`, candidates: [] } };
  }
  if (inputs.notApplicable !== undefined) {
    return { choice: { level: EXACT_LEVEL, how: "not applicable", reason: inputs.notApplicable, candidates: [] } };
  }
  const exact = await inputs.evaluate(EXACT_LEVEL);
  const fast = await inputs.evaluate(FAST_LEVEL);
  const timings = inputs.time ? await inputs.time([EXACT_LEVEL, FAST_LEVEL]) : [];
  const candidates = [evidence(exact, timings, 0), evidence(fast, timings, 1)];
  const kl = (t: LevelTrial): string => (t.klMean !== undefined ? `, KL ${t.klMean.toPrecision(3)}` : "");
  if (!fast.passes) {
    return {
      choice: {
        level: EXACT_LEVEL,
        how: "measured",
        reason: `level 4 (int8 activations) breaks ${fast.failing.join(", ")}${kl(fast)}: level 0 kept (exact${kl(exact)})`,
        candidates,
      },
      evaluation: exact.evaluation,
    };
  }
  // Level 4 must be clearly faster at one shape or more (int8 activations pay off at M=1 far more than at
  // a long prefill, where both levels are often compute-bound alike); a difference within noise keeps the
  // exact level, so that runs on the same runner do not flip between levels.
  if (timings.length > 0 && !timings.some((x) => x.p50Ms[1]! < x.p50Ms[0]! * (1 - LEVEL4_MIN_GAIN))) {
    return {
      choice: {
        level: EXACT_LEVEL,
        how: "measured",
        reason: `level 4 passes every accuracy rule but is not ${LEVEL4_MIN_GAIN * 100}% faster at any shape timed here (${showTimings(timings)}): level 0 kept`,
        candidates,
      },
      evaluation: exact.evaluation,
    };
  }
  return {
    choice: {
      level: FAST_LEVEL,
      how: "measured",
      reason:
        `level 4 (int8 activations) passes every accuracy rule` +
        (fast.klMean !== undefined && exact.klMean !== undefined ? ` (KL ${fast.klMean.toPrecision(3)} vs ${exact.klMean.toPrecision(3)} at level 0)` : "") +
        (timings.length > 0 ? `; ${showTimings(timings)}` : ""),
      candidates,
    },
    evaluation: fast.evaluation,
  };
}

/**
 * Judges the configured rules that read the task's own metrics (accuracy, perplexity, KL, CER, IoU, ...) and the
 * task's rules: what level 4 must keep passing. Size, memory and latency rules read measure-stage records, which
 * the evaluation does not produce, so they are not among them.
 */
export function judgeAccuracy(level: number, ev: TaskEvaluation, limits: GateLimits): LevelTrial<TaskEvaluation> {
  const produced = new Set(ev.metrics.map((m) => m.key));
  const gate = evaluateGate({ ...limits, forbid_slower_than_float: false }, ev.metrics, [], ev.rules ?? []);
  const failing = gate.rules.filter((r) => r.status === "fail" && r.metric !== undefined && produced.has(r.metric)).map((r) => r.rule);
  const kl = ev.metrics.find((m) => m.key === "kl_mean")?.quantized;
  return { level, passes: failing.length === 0, failing, ...(kl !== undefined && Number.isFinite(kl) ? { klMean: kl } : {}), evaluation: ev };
}

/** What the emit stage decided about execution, for the report, the work cache and the lockfile. */
export interface QuantizedExecution {
  readonly accuracyLevel: number;
  readonly accuracy: AccuracyLevelChoice;
  /** "timing on this runner (...)" or the lockfile's pin note. */
  readonly formsChosenBy: string;
  /** Formats whose form the committed lockfile pinned. */
  readonly pinnedFormats: readonly WeightFormat[];
  readonly lock: LockExecution;
}
