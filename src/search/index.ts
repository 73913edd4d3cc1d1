// Accuracy-aware search: the cheapest recipe that passes every gate rule of the config.
//
// 1. The evaluation data is split (search part / holdout part, see split.ts).
// 2. Per-layer sensitivity is measured once: the KL of the model with one layer quantized (the same
//    measurement recipe.mixed.method kl uses), on calibration batches of the search part.
// 3. Uniform recipes of the space are grouped into cost levels (estimated bits per weight) and the cheapest
//    passing level is found by bisection, each probe one full gate run on the search part.
// 4. Between the dearest failing and the cheapest passing level, mixed-precision recipes allocated from the
//    measured sensitivity (per-layer overrides, or recipe.mixed) are bisected over their bits-per-weight target.
//    They are built at the passing level's block size, and at the next finer one after a mix fails before any
//    mix at that block size was accurate.
// 5. The winner, and the current recipe for comparison, are run once more on the holdout part: only a
//    winner that passes there is suggested, as a quantgate.yml patch and its lockfile.
import { copyFile, mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { canonical } from "../cache/index.js";
import { WorkReuse, type ReuseCounts } from "../cache/reuse.js";
import { ConfigError, resolvePath, type Config } from "../config/load.js";
import { FORMAT_BITS, isIntFormat, recipeSchema, type IntFormat, type Recipe, type SearchSettings, type WeightFormat } from "../config/schema.js";
import { searchSchema } from "../config/schema.js";
import type { Feeds } from "../data/tensors.js";
import { UserError } from "../errors.js";
import { loadModel, type LoadedModel } from "../onnx/model.js";
import { findWeights, type WeightSite } from "../onnx/weights.js";
import { modelInputs, runGate, type GateRun, type GateRunOptions } from "../pipeline.js";
import { containerBits, quantizeBlockwiseRef, type BlockwiseSpec } from "../quantize/blockwise.js";
import { planWeights, specFor, type WeightPlan } from "../quantize/index.js";
import { planMixedPrecision } from "../quantize/mixed-plan.js";
import { measureLayerKl } from "../quantize/sensitivity.js";
import { fmt, type RuleResult } from "../gate/index.js";
import { LOCKFILE_NAME } from "../report/lockfile.js";
import type { Report } from "../report/types.js";
import { writeReport } from "../report/write.js";
import { taskOf } from "../tasks/index.js";
import { planLmInputs, type LmInputOverrides } from "../tasks/lm-inputs.js";
import { patchRecipe, unifiedDiff } from "./patch.js";
import { splitEvaluation, type DataSplit } from "./split.js";

export type Objective = SearchSettings["objective"];

export interface SearchOptions extends GateRunOptions {
  readonly log?: (message: string) => void;
  /** Compute calibration and the float model's evaluation in every gate run (with no work cache: the uncached path, for comparison). */
  readonly noReuse?: boolean;
}

export interface Candidate {
  /** Short label, e.g. "int4 b64 mse" or "mixed 3.42 bpw (int3/int4)". */
  readonly label: string;
  readonly kind: "uniform" | "mixed" | "current";
  readonly recipe: Recipe;
  /** Estimated bits per weight (codes plus scales), the order the bisection walks. */
  readonly estBpw: number;
}

export interface Evaluation {
  readonly candidate: Candidate;
  readonly verdict: "pass" | "fail";
  /** The objective measured by the full run (undefined when the run could not measure it). */
  readonly cost: number | undefined;
  readonly sizeBytes: number | undefined;
  readonly bitsPerWeight: number | undefined;
  readonly latencyP50Ms: number | undefined;
  /** Rules that failed, and stage errors. */
  readonly failures: string[];
  /** No stage error and no broken rule but cost rules (size, bits, memory, latency): enough bits for accuracy. */
  readonly accurate: boolean;
  /** Every gate rule's observed value on the data this run judged (search or holdout part). */
  readonly rules: readonly Pick<RuleResult, "rule" | "label" | "unit" | "observed" | "status">[];
  readonly reportPath: string;
  readonly ms: number;
}

export interface SearchResult {
  readonly objective: Objective;
  readonly settings: SearchSettings;
  readonly split: DataSplit;
  /** Full gate runs the search used for its choices (search part). */
  readonly evaluations: Evaluation[];
  /** The cheapest candidate that passed on the search part. */
  readonly best?: Evaluation;
  /** Candidates that passed on the search part and failed on the holdout part (never suggested). */
  readonly rejected?: Evaluation[];
  /** The winner and the current recipe run on the holdout part. */
  readonly verification?: { readonly winner: Evaluation; readonly winnerReport: Report; readonly current: Evaluation; readonly currentReport: Report };
  readonly verdict: "pass" | "fail";
  /** Why there is no suggestion, or what the verdict rests on. */
  readonly message: string;
  readonly stoppedEarly?: string;
  readonly notes: string[];
  readonly patch?: { readonly diff: string; readonly file: string; readonly exact: boolean; readonly patchPath: string; readonly configPath: string };
  readonly lockfilePath?: string;
  /** The per-layer KL measurement of the mixes (ms: over every block size it was measured at). */
  readonly sensitivity?: { readonly format: IntFormat; readonly layers: number; readonly ms: number };
  readonly wallMs: number;
  readonly outputDir: string;
  /** Full gate runs on the holdout part (the current recipe's and the verifications). */
  readonly holdoutRuns: number;
  /** The current recipe's gate run on the holdout part (what the action reports beside the suggestion). */
  readonly currentRun: GateRun;
  /** Calibrations and float-model evaluations computed and reused over the search's gate runs (absent with noReuse). */
  readonly reuse?: ReuseCounts;
}

/**
 * Which algorithm probes a cost level: MSE clip search first (never worse than round-to-nearest on the weights,
 * no calibration to overfit), then AWQ and GPTQ (which can overfit a small calibration set), then RTN.
 */
/** Metrics that grow with the bits a recipe spends: rules on them bound the cost, not the accuracy. */
const COST_METRICS = new Set([
  "model_size",
  "bits_per_weight",
  "bits_per_weight_huffman",
  "peak_memory",
  "latency_p50",
  "latency_p95",
  "kernel_gemv",
  "ttft_ms",
  "decode_ms_per_token_p50",
  "decode_ms_per_token_p95",
  "decode_tokens_per_second",
  "decode_peak_rss",
]);
/**
 * The first line of a multi-line error as one sentence for a note: an error that introduces a list ("...:" then
 * one item a line) names its first item as an example, so the note does not end on a bare colon.
 */
export function firstReason(message: string): string {
  const lines = message
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "");
  const head = (lines[0] ?? "").replace(/:$/, "");
  if (!(lines[0] ?? "").endsWith(":") || lines.length < 2) return head;
  return `${head}, e.g. ${lines[1]}`;
}

/** A cost in words for the search's messages: bytes as KiB/MiB, bits per weight, or milliseconds. */
function objectiveWords(v: number | undefined, objective: Objective): string {
  if (v === undefined || !Number.isFinite(v)) return `${objective} not measured`;
  if (objective === "size") return `${fmt(v, "bytes")} stored`;
  if (objective === "decode_ms_per_token") return `${v.toFixed(3)} ms per decoded token (p50)`;
  return objective === "bits_per_weight" ? `${v.toFixed(3)} bits per weight` : `${v.toFixed(3)} ms p50`;
}

export function isCostRule(r: Pick<RuleResult, "rule" | "metric">): boolean {
  return (r.metric !== undefined && COST_METRICS.has(r.metric)) || r.rule === "forbid_slower_than_float";
}

/** Holdout runs spent on verifying: the cheapest passing candidates in turn until one passes there. */
const MAX_VERIFICATIONS = 3;
/** The smallest search.max_full_evaluations that keeps one evaluation back for after the holdout verification. */
const FOLLOW_UP_MIN_BUDGET = 4;
/** Bisection steps of the allocator's target that meets a mixed-precision candidate's estimated bits per weight. */
const ALLOCATION_STEPS = 14;
/** Relative gap of estimated cost within which a uniform winner's other block sizes are probed too. */
const NEIGHBOUR_TOLERANCE = 0.03;

const ALGORITHM_RANK: Record<string, number> = { mse: 3, awq: 2, gptq: 1, rtn: 0 };

/**
 * Estimated bits per weight of a uniform recipe (codes, scales, zero points): the bisection's order. For the
 * stored size and latency the codes count at their container width (int3 is stored in 4 bits). `dequant`: the
 * weight of a Conv, Gather or LSTM (a dequantized tensor in the graph, src/emit dequantTensorGraph), stored with
 * an fp32 scale per block for every format and a uint8 zero point per block for the int formats.
 */
export function estimateBpw(format: WeightFormat, blockSize: number, symmetric: boolean, objective: Objective = "bits_per_weight", dequant = false): number {
  if (isIntFormat(format)) {
    const bits = objective === "bits_per_weight" ? FORMAT_BITS[format] : containerBits(FORMAT_BITS[format]);
    const zeroPointBits = symmetric ? 0 : dequant && objective !== "bits_per_weight" ? 8 : bits;
    return bits + 32 / blockSize + zeroPointBits / blockSize;
  }
  const scaleBits = dequant && objective !== "bits_per_weight" ? 32 : undefined;
  if (format === "mxfp4") return 4 + (scaleBits ?? 8) / 32;
  if (format === "fp8") return 8 + (scaleBits ?? 16) / blockSize;
  return FORMAT_BITS[format] + (scaleBits ?? 16) / blockSize;
}

/**
 * Estimated bits per weight of a uniform recipe on this model's weights: each weight's rows padded to whole
 * blocks (a block wider than a row costs the whole block), at the container width for size and latency, and
 * each weight as its kind is stored (see estimateBpw).
 */
export function estimateModelBpw(
  sites: readonly (Pick<WeightSite, "k" | "n"> & { readonly kind?: WeightSite["kind"] })[],
  format: WeightFormat,
  blockSize: number,
  symmetric: boolean,
  objective: Objective,
): number {
  let params = 0;
  let bits = 0;
  for (const s of sites) {
    params += s.k * s.n;
    bits += s.n * Math.ceil(s.k / blockSize) * blockSize * estimateBpw(format, blockSize, symmetric, objective, s.kind === "dequant");
  }
  return params > 0 ? bits / params : estimateBpw(format, blockSize, symmetric, objective);
}

export function costOf(report: Report, objective: Objective): number | undefined {
  if (objective === "size") return report.quantized?.sizeBytes;
  if (objective === "bits_per_weight") return report.storage?.bitsPerWeight;
  if (objective === "decode_ms_per_token") return report.metrics.find((m) => m.key === "decode_ms_per_token_p50")?.quantized;
  return report.metrics.find((m) => m.key === "latency_p50")?.quantized;
}

function recipeWith(base: Recipe, fields: Record<string, unknown>): Recipe {
  const raw: Record<string, unknown> = { ...base, mixed: undefined, quantx: undefined, lowrank: { rank: 0, refine_scales: false }, ...fields };
  delete raw.preset;
  for (const k of Object.keys(raw)) if (raw[k] === undefined) delete raw[k];
  return recipeSchema.parse(raw);
}

/** Uniform candidates of the space, those the model's weights and the data allow (GPTQ/AWQ need calibration and fitting weights). */
export function uniformCandidates(
  base: Recipe,
  space: SearchSettings["space"],
  sites: readonly WeightSite[],
  calibrated: boolean,
  notes: string[],
  objective: Objective = "bits_per_weight",
): Candidate[] {
  const out: Candidate[] = [];
  const dropped = new Map<string, string>();
  for (const format of space.formats) {
    const blocks = format === "mxfp4" ? [32] : space.block_sizes;
    for (const blockSize of blocks) {
      for (const algorithm of space.algorithms) {
        if ((algorithm === "awq" || algorithm === "gptq") && !isIntFormat(format)) continue;
        if ((algorithm === "awq" || algorithm === "gptq") && !calibrated) {
          dropped.set(algorithm, "no calibration data (evaluation.calibration)");
          continue;
        }
        const symmetric = format === "int8" ? true : false;
        const recipe = recipeWith(base, { format, block_size: blockSize, symmetric, algorithm: isIntFormat(format) ? algorithm : "rtn" });
        try {
          planWeights(sites, recipe);
        } catch (err) {
          dropped.set(algorithm, firstReason((err as Error).message));
          continue;
        }
        const label = `${format} b${blockSize}${isIntFormat(format) ? ` ${algorithm}` : ""}`;
        if (out.some((c) => c.label === label)) continue;
        out.push({ label, kind: "uniform", recipe, estBpw: estimateModelBpw(sites, format, blockSize, symmetric, objective) });
      }
    }
  }
  for (const [a, why] of dropped) notes.push(`${a} left out of the space: ${why}`);
  return out;
}

/** Cost levels: candidates of equal estimated bits per weight; each level's probe is its most accurate algorithm. */
export function costLevels(candidates: readonly Candidate[]): Candidate[][] {
  const levels = new Map<string, Candidate[]>();
  for (const c of candidates) {
    const key = c.estBpw.toFixed(6);
    levels.set(key, [...(levels.get(key) ?? []), c]);
  }
  return [...levels.entries()]
    .sort((a, b) => Number(a[0]) - Number(b[0]))
    .map(([, cs]) =>
      cs.sort(
        (a, b) =>
          FORMAT_BITS[b.recipe.format] - FORMAT_BITS[a.recipe.format] || (ALGORITHM_RANK[b.recipe.algorithm] ?? 0) - (ALGORITHM_RANK[a.recipe.algorithm] ?? 0),
      ),
    );
}

export async function runSearch(config: Config, opts: SearchOptions): Promise<SearchResult> {
  const t0 = performance.now();
  const log = opts.log ?? (() => {});
  const settings: SearchSettings = config.search ?? searchSchema.parse({});
  const objective = settings.objective;
  const notes: string[] = [];
  const outputDir = path.join(resolvePath(config, config.output_dir), "search");
  await mkdir(outputDir, { recursive: true });
  const deadline = t0 + settings.max_minutes * 60_000;
  // Calibration and the float model's evaluation do not depend on the recipe: computed once for all candidates.
  const onNote = (note: string): void => void (notes.includes(note) || notes.push(note));
  const reuse = opts.noReuse ? undefined : (opts.reuse ?? new WorkReuse({ ...(opts.cache ? { cache: opts.cache } : {}), onNote }));
  const gateOpts: GateRunOptions = { ...opts, ...(reuse ? { reuse } : {}) };

  const split = await splitEvaluation(config, settings.holdout, path.join(outputDir, "data"));
  log(`holdout: ${split.note}`);
  // A part's labels file travels with its dataset (image folders labelled by evaluation.labels).
  const labelsOf = (dataset: string): { labels?: string } =>
    dataset === split.search && split.searchLabels
      ? { labels: split.searchLabels }
      : dataset === split.holdout && split.holdoutLabels
        ? { labels: split.holdoutLabels }
        : {};
  const searchConfig = (recipe: Recipe, dir: string, dataset: string): Config =>
    Object.freeze({
      ...config,
      recipe,
      evaluation: { ...config.evaluation, dataset, ...labelsOf(dataset) },
      output_dir: path.relative(config.baseDir, path.join(outputDir, dir)),
    }) as Config;

  // Model, weights and search-part data, once.
  const { model, sites, calibrated, batches: sensitivityBatches } = await loadSearchInputs(config, split.search, split.searchLabels);

  const unmeasured = objectiveUnmeasured(config, model);
  if (unmeasured) throw new ConfigError(config.configPath, [{ path: "search.objective", line: config.lines["search.objective"], message: unmeasured }]);

  const candidates = uniformCandidates(config.recipe, settings.space, sites, calibrated, notes, objective);
  if (candidates.length === 0) throw new UserError("search.space: no recipe of the space can run on this model (see the notes)");
  const levels = costLevels(candidates);

  const evaluations: Evaluation[] = [];
  const memo = new Map<string, Evaluation>();
  let stoppedEarly: string | undefined;
  // Evaluations kept back for after the holdout verification (when the data was split and the budget allows):
  // a winner the holdout rejects is followed by a more generous candidate between it and the next passing one,
  // a verified winner by a cheaper neighbour or one more mixed-precision step.
  const followUps = split.split && settings.max_full_evaluations >= FOLLOW_UP_MIN_BUDGET ? 1 : 0;
  let limit = settings.max_full_evaluations - followUps;
  const budgetLeft = (): boolean => {
    if (evaluations.length >= limit) {
      const kept = limit < settings.max_full_evaluations ? `, ${settings.max_full_evaluations - limit} of them kept for after the holdout verification` : "";
      stoppedEarly ??= `stopped after search.max_full_evaluations (${settings.max_full_evaluations}) full evaluations${kept}`;
      return false;
    }
    if (performance.now() > deadline) {
      stoppedEarly ??= `stopped after search.max_minutes (${settings.max_minutes}) minutes`;
      return false;
    }
    return true;
  };

  async function evaluate(c: Candidate, dir: string, dataset: string): Promise<{ evaluation: Evaluation; run: GateRun }> {
    const t = performance.now();
    const run = await runGate(searchConfig(c.recipe, dir, dataset), gateOpts);
    await writeReport(run);
    const r = run.report;
    const latency = r.metrics.find((m) => m.key === "latency_p50")?.quantized;
    return {
      run,
      evaluation: {
        candidate: c,
        verdict: r.verdict,
        cost: costOf(r, objective),
        sizeBytes: r.quantized?.sizeBytes,
        bitsPerWeight: r.storage?.bitsPerWeight,
        latencyP50Ms: latency,
        failures: [...r.gate.errors, ...r.gate.rules.filter((x) => x.status === "fail").map((x) => x.message)],
        rules: r.gate.rules.map(({ rule, label, unit, observed, status }) => ({ rule, label, unit, observed, status })),
        accurate: r.gate.errors.length === 0 && r.gate.rules.every((x) => x.status !== "fail" || isCostRule(x)),
        reportPath: run.reportPath,
        ms: performance.now() - t,
      },
    };
  }
  /** One full gate run on the search part (memoized by recipe); undefined when the budget is spent. */
  async function probe(c: Candidate): Promise<Evaluation | undefined> {
    const key = canonical(c.recipe);
    const seen = memo.get(key);
    if (seen) return seen;
    if (!budgetLeft()) return undefined;
    const dir = `${String(evaluations.length + 1).padStart(2, "0")}-${c.label.replace(/[^A-Za-z0-9.]+/g, "-")}`;
    log(`[search ${evaluations.length + 1}/${settings.max_full_evaluations}] ${c.label} (~${c.estBpw.toFixed(2)} bpw) ...`);
    const { evaluation } = await evaluate(c, dir, split.search);
    evaluations.push(evaluation);
    memo.set(key, evaluation);
    log(`    ${evaluation.verdict.toUpperCase()} ${objective} ${evaluation.cost ?? "-"}${evaluation.failures.length ? `: ${evaluation.failures[0]}` : ""}`);
    return evaluation;
  }

  /**
   * A level's probe: its first candidate (the algorithm ranked most accurate); when that one breaks an accuracy
   * rule, the level's calibrated algorithm (GPTQ, else AWQ) once, since it can pass where MSE does not at the same
   * cost (segmentation: int4 mse fails, int4 gptq passes). Undefined when the budget is spent.
   */
  async function probeLevel(level: readonly Candidate[]): Promise<Evaluation | undefined> {
    const first = await probe(level[0]!);
    if (!first || first.accurate) return first;
    const rest = level.slice(1);
    const alternative = rest.find((c) => c.recipe.algorithm === "gptq") ?? rest.find((c) => c.recipe.algorithm === "awq");
    if (!alternative) return first;
    return (await probe(alternative)) ?? first;
  }

  // Bisection over the cost levels for the cheapest *accurate* one (no rule broken but cost rules: accuracy grows
  // with bits, cost rules break the other way). The dearest level first: if it is not accurate, nothing cheaper is
  // expected to be. The cheapest accurate level passes unless it breaks a cost rule, and then nothing passes.
  let lo = 0;
  let hi = levels.length - 1;
  let passing: number | undefined;
  const top = await probeLevel(levels[hi]!);
  if (top?.accurate) {
    passing = hi;
    hi--;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const e = await probeLevel(levels[mid]!);
      if (!e) break;
      if (e.accurate) {
        passing = mid;
        hi = mid - 1;
      } else lo = mid + 1;
    }
  }

  // Refinement: pass/fail is not monotone across formats (nf4 at 128 can fail where int4 at 32 passes), so
  // untried levels cheaper than the passing one are probed, nearest first, keeping two runs for mixed precision.
  if (passing !== undefined) {
    const reserve = settings.space.mixed_formats.length >= 2 ? 2 : 0;
    for (let i = passing - 1; i >= 0 && evaluations.length < limit - reserve; i--) {
      const c = levels[i]![0]!;
      if (memo.has(canonical(c.recipe))) continue;
      // Dominated: the same format at a block no larger (more scales, more accurate) already failed on accuracy.
      const dominated = evaluations.some(
        (e) =>
          !e.accurate &&
          e.candidate.kind === "uniform" &&
          e.candidate.recipe.format === c.recipe.format &&
          e.candidate.recipe.block_size <= c.recipe.block_size,
      );
      if (dominated) continue;
      const e = await probeLevel(levels[i]!);
      if (!e) break;
      if (e.accurate) passing = i;
    }
  }

  // Mixed precision between the floor of the mixed formats and the cheapest accurate level.
  let sensitivity: SearchResult["sensitivity"];
  const mixedFormats = mixedFormatsFor(settings.space.mixed_formats, objective);
  /** Mixed-precision candidates per block size: per-layer KL measured once per block size, when first needed. */
  const mixedAt = new Map<number, (target: number) => Candidate | undefined>();
  /**
   * The bisection's lower bound per block size: the floor of the mixed formats at that block size, raised by every
   * mixed candidate of that block size that fails (on the search part, or on the holdout part after passing it).
   */
  const mixedLo = new Map<number, number>();
  const floorAt = (blockSize: number): number => mixedLo.get(blockSize) ?? 0;
  const raiseFloor = (c: Candidate): void => void mixedLo.set(c.recipe.block_size, Math.max(floorAt(c.recipe.block_size), c.estBpw));
  /** The block size the mixed candidates are built at now (undefined until they are first needed). */
  let mixedBlock: number | undefined;
  /** The mixed candidates at `blockSize`, made like the level's candidate that passed; measured once per block size. */
  async function mixedFor(blockSize: number, pass: Candidate): Promise<((target: number) => Candidate | undefined) | undefined> {
    const seen = mixedAt.get(blockSize);
    if (seen) return seen;
    // From the floor of the mixed formats: the failing level below may be another family (nf4 under int4).
    const floor = Math.min(...mixedFormats.map((f) => estimateModelBpw(sites, f, blockSize, false, objective)));
    mixedLo.set(blockSize, Math.max(floorAt(blockSize), floor));
    const factory = await mixedFactory({
      config,
      opts,
      model,
      sites,
      batches: sensitivityBatches,
      calibrated,
      formats: mixedFormats,
      perLayer: settings.space.per_layer_overrides,
      blockSize,
      like: pass.recipe,
      objective,
      notes,
    });
    mixedAt.set(blockSize, factory.candidate);
    if (factory.sensitivity) {
      const s = factory.sensitivity;
      sensitivity = sensitivity ? { ...s, ms: sensitivity.ms + s.ms } : s;
      log(`sensitivity: KL of ${s.layers} layers at ${s.format} b${blockSize} measured once (${(s.ms / 1000).toFixed(1)}s)`);
    }
    return factory.candidate;
  }
  /**
   * After a mix fails on accuracy at the current block size and no mix there was accurate yet, the next ones are
   * built at the next smaller block size of the space: the failure may be the low format's coarse blocks rather than
   * too few bits (text-recognition: every mix at b128 up to 3.80 bpw breaks the CER rule, 3.59 bpw at b64 passes).
   * Once a mix is accurate at a block size, failures there are taken as too few bits.
   */
  function afterMixedFailure(c: Candidate): void {
    const b = c.recipe.block_size;
    if (b !== mixedBlock) return;
    const accurateHere = evaluations.some((e) => e.candidate.kind === "mixed" && e.accurate && e.candidate.recipe.block_size === b);
    if (accurateHere) return;
    const finer = settings.space.block_sizes.filter((x) => x < b).sort((x, y) => y - x)[0];
    if (finer === undefined) return;
    notes.push(`${c.label} broke an accuracy rule before any mix at b${b} passed: the next mixes are built at b${finer}`);
    mixedBlock = finer;
  }
  /** One mixed-precision probe at the middle of (the current block size's floor, hi), a recipe not evaluated yet; undefined when there is none or no budget. */
  async function mixedBetween(hi: number): Promise<Evaluation | undefined> {
    const pass = passing === undefined ? undefined : levelPass(passing);
    // No KL measured for a probe the budget would refuse (probe() says why the search stopped).
    if (!pass || mixedBlock === undefined || evaluations.length >= limit || performance.now() > deadline) return undefined;
    const make = await mixedFor(mixedBlock, pass);
    const lo = floorAt(mixedBlock);
    if (!make || hi - lo <= 0.05) return undefined;
    const c = make((lo + hi) / 2);
    if (!c || c.estBpw >= hi - 1e-6 || memo.has(canonical(c.recipe))) return undefined;
    const e = await probe(c);
    if (e && !e.accurate) {
      raiseFloor(c);
      afterMixedFailure(c);
    }
    return e;
  }
  /** The level's candidate that passed (its calibrated algorithm when the first one did not): the mixes are made like it. */
  const levelPass = (i: number): Candidate => levels[i]!.find((c) => memo.get(canonical(c.recipe))?.accurate) ?? levels[i]![0]!;
  /**
   * Starts the mixed-precision candidates at the cheapest accurate level's block size (when the bisection first
   * needs them, which may be in a follow-up after the holdout verification when the uniform levels took the search
   * part's budget). Returns that level's candidate (the bisection's upper bound), or undefined when there is no
   * mixed precision.
   */
  function ensureMixed(): Candidate | undefined {
    if (passing === undefined || mixedFormats.length < 2) return undefined;
    const pass = levelPass(passing);
    mixedBlock ??= pass.recipe.block_size;
    return pass;
  }
  const pass = budgetLeft() ? ensureMixed() : undefined;
  if (pass) {
    // Bisection over the target: below the passing level's bits, above the failing level's.
    let hi = pass.estBpw;
    for (let step = 0; step < 3; step++) {
      const e = await mixedBetween(hi);
      if (!e) break;
      if (e.accurate) hi = e.candidate.estBpw;
    }
  }

  /**
   * Uniform recipes of the same format, algorithm and symmetry as `e` at another block size, not evaluated yet,
   * whose estimated cost is within NEIGHBOUR_TOLERANCE of e's, nearest first: the estimate (padding, stored
   * forms) can order two such recipes wrongly, so the one ranked dearer may be the cheaper one.
   */
  const neighbours = (e: Evaluation): Candidate[] => {
    const r = e.candidate.recipe;
    return candidates
      .filter(
        (c) =>
          c.recipe.format === r.format &&
          c.recipe.algorithm === r.algorithm &&
          c.recipe.symmetric === r.symmetric &&
          c.recipe.block_size !== r.block_size &&
          !memo.has(canonical(c.recipe)) &&
          Math.abs(c.estBpw - e.candidate.estBpw) <= NEIGHBOUR_TOLERANCE * e.candidate.estBpw,
      )
      .sort((a, b) => Math.abs(a.estBpw - e.candidate.estBpw) - Math.abs(b.estBpw - e.candidate.estBpw));
  };
  const byCost = (a: Evaluation, b: Evaluation): number => a.cost! - b.cost!;
  const passedByCost = (): Evaluation[] => evaluations.filter((e) => e.verdict === "pass" && e.cost !== undefined).sort(byCost);
  // A uniform winner's neighbours while the budget lasts.
  const cheapest = passedByCost()[0];
  if (cheapest?.candidate.kind === "uniform") {
    for (const c of neighbours(cheapest)) if (!(await probe(c))) break;
  }

  const passed = passedByCost();
  const rejected: Evaluation[] = [];
  const result = {
    objective,
    settings,
    split,
    evaluations,
    notes,
    stoppedEarly,
    sensitivity,
    outputDir,
  };
  // The current recipe on the holdout part: the figures the suggestion is compared with (and the action's report).
  log(`running the current recipe on the holdout part (${split.holdout}) ...`);
  const currentCandidate: Candidate = { label: "current", kind: "current", recipe: config.recipe, estBpw: NaN };
  const current = await evaluate(currentCandidate, "holdout-current", split.holdout);
  let holdoutRuns = 1;
  if (passed.length === 0) {
    const tried = evaluations.map((e) => `${e.candidate.label}: ${e.failures[0] ?? "no cost measured"}`).join("; ");
    const accurate = evaluations.filter((e) => e.accurate).sort((a, b) => (a.cost ?? Infinity) - (b.cost ?? Infinity))[0];
    const message = stoppedEarly
      ? `no passing recipe found before the search ${stoppedEarly} (${tried || "nothing evaluated"})`
      : accurate
        ? `no recipe of the search space passes every gate rule: the cheapest one that meets the accuracy rules (${accurate.candidate.label}) still breaks a cost rule: ${accurate.failures.join("; ")}`
        : `no recipe of the search space passes every gate rule; the most generous one tried fails: ${tried}`;
    const final: SearchResult = {
      ...result,
      verdict: "fail",
      message,
      currentRun: current.run,
      holdoutRuns,
      wallMs: performance.now() - t0,
      ...(reuse ? { reuse: reuse.summary() } : {}),
    };
    await writeFile(path.join(outputDir, "search.json"), JSON.stringify(summaryJson(final), null, 2));
    return final;
  }

  // Verification on the holdout part, with the same rules: the cheapest passing candidate first; one that fails
  // there is rejected (reported) and the next cheapest is verified, up to MAX_VERIFICATIONS runs.
  let winner: { evaluation: Evaluation; run: GateRun } | undefined;
  let best = passed[0]!;
  // A candidate no cheaper than the current recipe is not worth suggesting when the current one passes there too.
  const currentCost = current.evaluation.verdict === "pass" ? current.evaluation.cost : undefined;
  const isWorth = (e: Evaluation): boolean => currentCost === undefined || e.cost! < currentCost || canonical(e.candidate.recipe) === canonical(config.recipe);
  const worth = passed.filter(isWorth);
  best = worth[0] ?? passed[0]!;
  // The follow-up evaluations kept back are spent from here on, on the search part like every other choice: the
  // holdout part only says whether a candidate is suggested, and a rejected mix raises the mixed bisection's floor.
  limit = settings.max_full_evaluations;
  const verified = new Set<string>();
  let verifiedWinner: { best: Evaluation; run: { evaluation: Evaluation; run: GateRun } } | undefined;
  /** The cheapest candidate that passed on the search part, is worth suggesting, is cheaper than the verified winner and was not run on the holdout part yet. */
  const pending = (): Evaluation | undefined =>
    passedByCost().find((e) => isWorth(e) && !verified.has(canonical(e.candidate.recipe)) && (!verifiedWinner || e.cost! < verifiedWinner.best.cost!));
  // The current recipe's estimated cost when it passes on the holdout part and is a plain uniform one: the upper
  // bound of a follow-up when no candidate that passed on the search part is left above a rejected one.
  const r0 = config.recipe;
  const currentEstimate =
    current.evaluation.verdict === "pass" && !r0.mixed && !r0.quantx && r0.overrides.length === 0 && (r0.lowrank?.rank ?? 0) === 0
      ? estimateModelBpw(sites, r0.format, r0.block_size, r0.symmetric, objective)
      : undefined;
  /**
   * One follow-up evaluation on the search part: below a verified winner, its unevaluated neighbour block size
   * first (uniform), then a mixed-precision target between the bisection's floor and the winner; with no winner
   * yet (after a rejection), a mixed-precision target between the bisection's floor (raised to a rejected mix) and
   * the next candidate in line (or the current recipe). Undefined when there is none or no budget.
   */
  async function followUp(): Promise<Evaluation | undefined> {
    if (!budgetLeft()) return undefined;
    if (verifiedWinner) {
      const c = verifiedWinner.best.candidate.kind === "uniform" ? neighbours(verifiedWinner.best)[0] : undefined;
      if (c) return probe(c);
      ensureMixed();
      return mixedBetween(verifiedWinner.best.candidate.estBpw);
    }
    ensureMixed();
    const hi = pending()?.candidate.estBpw ?? currentEstimate;
    return hi === undefined ? undefined : mixedBetween(hi);
  }
  let verifications = 0;
  let lastRejected = false;
  while (verifications < MAX_VERIFICATIONS) {
    let next = lastRejected ? undefined : pending();
    if (!next) {
      // Nothing cheaper left to verify, or the last candidate was rejected: one follow-up, then look again.
      lastRejected = false;
      if (await followUp()) continue;
      next = pending();
      if (!next) break;
    }
    log(`verifying ${next.candidate.label} on the holdout part (${split.holdout}) ...`);
    const sameAsCurrent = canonical(next.candidate.recipe) === canonical(config.recipe);
    if (!sameAsCurrent) holdoutRuns++;
    const v = sameAsCurrent ? current : await evaluate(next.candidate, `holdout-winner${verifications ? `-${verifications + 1}` : ""}`, split.holdout);
    verifications++;
    verified.add(canonical(next.candidate.recipe));
    if (v.evaluation.verdict === "pass") {
      verifiedWinner = { best: next, run: v };
      continue;
    }
    if (!verifiedWinner) {
      best = next;
      winner = v;
    }
    rejected.push(v.evaluation);
    notes.push(`${next.candidate.label} passed on the search part but failed on the holdout part (${v.evaluation.failures[0] ?? "?"}): rejected`);
    // The holdout part wants more bits than this mix: a follow-up mixed candidate is looked for above it (a
    // rejected uniform recipe says less about mixes of other formats: the floor stays).
    if (next.candidate.kind === "mixed") raiseFloor(next.candidate);
    lastRejected = true;
  }
  if (verifications === 0) {
    // Nothing cheaper than the current recipe passed on the search part, follow-ups included.
    const message = `no recipe cheaper than the current one passes on the search part; the current recipe passes on the holdout part (${objectiveWords(current.evaluation.cost, objective)})`;
    const final: SearchResult = {
      ...result,
      stoppedEarly,
      sensitivity,
      best: passed[0],
      verdict: "pass",
      message,
      currentRun: current.run,
      holdoutRuns,
      wallMs: performance.now() - t0,
      ...(reuse ? { reuse: reuse.summary() } : {}),
    };
    await writeFile(path.join(outputDir, "search.json"), JSON.stringify(summaryJson(final), null, 2));
    return final;
  }
  if (verifiedWinner) {
    best = verifiedWinner.best;
    winner = verifiedWinner.run;
  }
  const verification = { winner: winner!.evaluation, winnerReport: winner!.run.report, current: current.evaluation, currentReport: current.run.report };

  let patch: SearchResult["patch"];
  let lockfilePath: string | undefined;
  let verdict: "pass" | "fail" = "fail";
  let message: string;
  if (winner!.evaluation.verdict !== "pass") {
    // Nothing cheaper verified: the current recipe stands when it passes on the holdout part itself.
    verdict = current.evaluation.verdict;
    message = `the cheapest recipes found passed on the search part but fail on the holdout part (last: ${best.candidate.label}: ${winner!.evaluation.failures.join("; ")}); no recipe is suggested${verdict === "pass" ? ", and the current recipe passes" : ", and the current recipe fails too"}`;
  } else {
    verdict = "pass";
    const text = await readFile(config.configPath, "utf8");
    const name = path.basename(config.configPath);
    const patched = patchRecipe(text, config.configPath, best.candidate.recipe);
    if (!patched.exact) notes.push("the patched quantgate.yml does not parse back to exactly the searched recipe; check the diff");
    const diff = unifiedDiff(text, patched.text, name);
    const patchPath = path.join(outputDir, `${name}.patch`);
    const configPath = path.join(outputDir, name);
    await writeFile(patchPath, diff);
    await writeFile(configPath, patched.text);
    patch = { diff, file: name, exact: patched.exact, patchPath, configPath };
    const lock = winner!.run.report.lockfile?.path;
    if (lock) {
      lockfilePath = path.join(outputDir, LOCKFILE_NAME);
      await copyFile(lock, lockfilePath);
    }
    const same = canonical(best.candidate.recipe) === canonical(config.recipe);
    message = same
      ? `the current recipe is already the cheapest passing one found (${best.candidate.label})`
      : `${best.candidate.label} passes every gate rule on the search and the holdout part`;
  }
  const final: SearchResult = {
    ...result,
    stoppedEarly,
    sensitivity,
    best,
    verification,
    rejected,
    verdict,
    message,
    patch,
    lockfilePath,
    currentRun: current.run,
    holdoutRuns,
    wallMs: performance.now() - t0,
    ...(reuse ? { reuse: reuse.summary() } : {}),
  };
  await writeFile(path.join(outputDir, "search.json"), JSON.stringify(summaryJson(final), null, 2));
  return final;
}

function evalJson(e: Evaluation): Record<string, unknown> {
  return {
    label: e.candidate.label,
    kind: e.candidate.kind,
    estimated_bpw: Number.isFinite(e.candidate.estBpw) ? e.candidate.estBpw : null,
    verdict: e.verdict,
    accurate: e.accurate,
    cost: e.cost ?? null,
    size_bytes: e.sizeBytes ?? null,
    bits_per_weight: e.bitsPerWeight ?? null,
    latency_p50_ms: e.latencyP50Ms ?? null,
    failures: e.failures,
    rules: e.rules,
    report: e.reportPath,
    seconds: e.ms / 1000,
  };
}

export function summaryJson(r: SearchResult): Record<string, unknown> {
  return {
    objective: r.objective,
    verdict: r.verdict,
    message: r.message,
    stopped_early: r.stoppedEarly ?? null,
    full_evaluations: r.evaluations.length,
    holdout_runs: r.holdoutRuns,
    holdout: { note: r.split.note, split: r.split.split, search: r.split.search, holdout: r.split.holdout },
    sensitivity: r.sensitivity ?? null,
    evaluations: r.evaluations.map(evalJson),
    best: r.best ? evalJson(r.best) : null,
    verification: r.verification ? { winner: evalJson(r.verification.winner), current: evalJson(r.verification.current) } : null,
    rejected_on_holdout: (r.rejected ?? []).map(evalJson),
    patch: r.patch ? { file: r.patch.patchPath, exact: r.patch.exact } : null,
    lockfile: r.lockfilePath ?? null,
    notes: r.notes,
    reuse: r.reuse
      ? {
          calibrations_computed: r.reuse.calibrations,
          calibrations_reused: r.reuse.calibrationReuses,
          float_evaluations_computed: r.reuse.floatEvaluations,
          float_evaluations_reused: r.reuse.floatEvaluationReuses,
        }
      : null,
    seconds: r.wallMs / 1000,
  };
}

/** The files a search leaves for review (artifact): summary, patch, patched config, lockfile. */
export function searchFiles(r: SearchResult): string[] {
  return [path.join(r.outputDir, "search.json"), r.patch?.patchPath, r.patch?.configPath, r.lockfilePath].filter((f): f is string => f !== undefined);
}

/** For stored size and latency a format costs its container: of formats sharing one (int3, int4), the widest. */
export function mixedFormatsFor(formats: readonly IntFormat[], objective: Objective): IntFormat[] {
  if (objective === "bits_per_weight") return [...formats];
  return formats.filter((f) => !formats.some((g) => FORMAT_BITS[g] > FORMAT_BITS[f] && containerBits(FORMAT_BITS[g]) === containerBits(FORMAT_BITS[f])));
}

export interface MixedFactoryArgs {
  readonly config: Config;
  readonly opts: GateRunOptions;
  readonly model: LoadedModel;
  readonly sites: readonly WeightSite[];
  /** Inputs the per-layer KL is measured on (calibration batches of the search part). */
  readonly batches: readonly Feeds[];
  readonly calibrated: boolean;
  readonly formats: readonly IntFormat[];
  readonly perLayer: boolean;
  readonly blockSize: number;
  /** The recipe whose algorithm the mixed recipes keep (when it is an int format). */
  readonly like: Recipe;
  readonly objective: Objective;
  readonly notes: string[];
}

/**
 * Mixed-precision candidates at any bits-per-weight target: per-layer KL measured once (each layer alone at the
 * low format), formats allocated by the existing allocator (planMixedPrecision, method kl) and written as
 * per-layer overrides; without per-layer overrides, recipe.mixed with the Fisher proxy (needs calibration).
 */
export async function mixedFactory(a: MixedFactoryArgs): Promise<{
  /** The candidate whose estimated bits per weight are the largest not above `target`. */
  candidate: (target: number) => Candidate | undefined;
  /** The allocation at the allocator's own target (each format at its own bits, no padding). */
  allocated: (target: number) => Candidate | undefined;
  sensitivity?: SearchResult["sensitivity"];
}> {
  const { config, objective, formats } = a;
  const base = recipeWith(config.recipe, {
    format: isIntFormat(a.like.format) ? a.like.format : "int4",
    block_size: a.blockSize,
    symmetric: false,
    algorithm: isIntFormat(a.like.format) ? a.like.algorithm : "mse",
  });
  let plans: WeightPlan[];
  try {
    plans = planWeights(a.sites, base);
  } catch (err) {
    a.notes.push(`mixed precision not tried: ${firstReason((err as Error).message)}`);
    return { candidate: () => undefined, allocated: () => undefined };
  }
  const low: IntFormat = formats.includes("int3") ? "int3" : [...formats].sort((x, y) => FORMAT_BITS[x] - FORMAT_BITS[y])[0]!;
  let measured: Map<string, number> | undefined;
  let sensitivity: SearchResult["sensitivity"];
  if (a.perLayer && a.batches.length > 0) {
    const ts = performance.now();
    const atLow = plans.map((p) => ({ ...p, format: low, algorithm: "rtn" as const, spec: specFor(low, p.spec.blockSize, p.spec.symmetric, "rtn") }));
    const quantize = a.opts.quantizer?.quantize ?? ((wT: Float32Array, n: number, k: number, spec: BlockwiseSpec) => quantizeBlockwiseRef(wT, n, k, spec));
    measured = await measureLayerKl(
      a.opts.ort.ort,
      a.model.proto,
      atLow,
      { quantize, stats: undefined, recipe: { ...base, algorithm: "rtn" }, threads: config.measure.threads },
      a.batches,
      config.measure.threads,
    );
    sensitivity = { format: low, layers: measured.size, ms: performance.now() - ts };
  } else if (a.perLayer) {
    a.notes.push("per-layer sensitivity not measured: no calibration data or measurement input");
  }
  const allocate = (target: number): Candidate | undefined => {
    if (measured) {
      const mixed = { target_bpw: target, method: "kl" as const, formats: [...formats], low, high: "int8" as const };
      let decisions: ReturnType<typeof planMixedPrecision>["decisions"];
      try {
        decisions = planMixedPrecision(plans, undefined, mixed, measured).decisions;
      } catch (err) {
        if (err instanceof RangeError) return undefined; // a target below the smallest format: no such recipe
        throw err;
      }
      const params = plans.reduce((acc, p) => acc + p.site.k * p.site.n, 0);
      const bpw =
        decisions.reduce(
          (acc, d, i) => acc + estimateModelBpw([plans[i]!.site], d.format, plans[i]!.spec.blockSize, false, objective) * plans[i]!.site.k * plans[i]!.site.n,
          0,
        ) / params;
      // Names with glob characters cannot be matched exactly: those keep the base format.
      const overrides = decisions.filter((d) => d.format !== base.format && !/[*?]/.test(d.name)).map((d) => ({ match: d.name, format: d.format }));
      const used = [...new Set(decisions.map((d) => d.format))].sort((x, y) => FORMAT_BITS[x] - FORMAT_BITS[y]);
      return {
        label: `mixed ${bpw.toFixed(2)} bpw b${a.blockSize} (${used.join("/")}, per layer)`,
        kind: "mixed",
        recipe: recipeWith(base, { overrides: [...config.recipe.overrides, ...overrides] }),
        estBpw: bpw,
      };
    }
    if (a.perLayer || !a.calibrated) return undefined;
    const recipe = recipeWith(base, { mixed: { target_bpw: target, method: "fisher", formats: [...formats] } });
    return { label: `mixed fisher ${target.toFixed(2)} bpw b${a.blockSize}`, kind: "mixed", recipe, estBpw: target };
  };
  // The allocator counts each format at its own bits per weight (no row padding, zero points at the code width,
  // int3 at 3 bits), while the bisection compares estimates of the stored recipe (estimateModelBpw): a target is
  // met as the allocation with the largest allocator target whose estimate does not exceed it.
  const widest = Math.max(...formats.map((f) => estimateBpw(f, 16, false, "bits_per_weight")));
  const candidate = (target: number): Candidate | undefined => {
    if (!measured) return allocate(target);
    let lo = 0;
    let hi = widest;
    let found: Candidate | undefined;
    for (let i = 0; i < ALLOCATION_STEPS; i++) {
      const mid = (lo + hi) / 2;
      const c = allocate(mid);
      if (c && c.estBpw <= target + 1e-9) {
        found = c;
        lo = mid;
      } else hi = mid;
    }
    return found;
  };
  return { candidate, allocated: allocate, ...(sensitivity ? { sensitivity } : {}) };
}

/**
 * Why the configured objective is not measured for this task and model (undefined when it is): decode ms per token
 * is measured by the language-modeling task for models whose past key/value inputs all have present outputs.
 */
export function objectiveUnmeasured(config: Config, model: LoadedModel): string | undefined {
  if (config.search?.objective !== "decode_ms_per_token") return undefined;
  const task: string = config.evaluation.task;
  if (task !== "language-modeling") {
    return `decode_ms_per_token is measured only by the language-modeling task (evaluation.task is ${task}): choose size, bits_per_weight or latency_p50`;
  }
  if (config.measure.decode.prompts === 0) {
    return "decode_ms_per_token needs the decode measurement, which measure.decode.prompts: 0 turns off: set it above 0 or choose another objective";
  }
  const lm = config.evaluation as { inputs?: LmInputOverrides; input_name?: string };
  const overrides: LmInputOverrides = { ...lm.inputs, ...(lm.input_name ? { input_ids: lm.input_name } : {}) };
  const inputs = modelInputs(model).map((i) => ({ name: i.name, type: i.type, ...(i.dims ? { shape: i.dims } : {}) }));
  const outputs = model.graph.output.map((o) => ({ name: o.name, type: "float32" }));
  let canDecode: boolean;
  try {
    canDecode = planLmInputs(inputs, outputs, overrides).canDecode;
  } catch (err) {
    return `decode_ms_per_token is not measured for ${config.model}: ${firstReason((err as Error).message)}`;
  }
  if (!canDecode) {
    return `decode_ms_per_token is not measured for ${config.model}: it has no KV cache (past key/value inputs each with a present output to feed back); choose size, bits_per_weight or latency_p50`;
  }
  return undefined;
}

/** What the search and the bench share: the model, its weights and the search part's data, loaded once. */
export async function loadSearchInputs(
  config: Config,
  dataset: string,
  labels?: string,
): Promise<{ model: LoadedModel; sites: WeightSite[]; calibrated: boolean; batches: Feeds[] }> {
  const model = await loadModel(resolvePath(config, config.model));
  const sites = findWeights(model.graph, config.recipe).weights;
  if (sites.length === 0) throw new UserError(`${config.model}: no quantizable weights: nothing to search`);
  const task = taskOf(config.evaluation);
  const data = await task.load({ ...config.evaluation, dataset, ...(labels ? { labels } : {}) } as Config["evaluation"], {
    resolve: (p: string) => resolvePath(config, p),
    inputs: modelInputs(model),
  });
  const calibrated = data.calibrationBatches.length > 0;
  const batches = calibrated ? data.calibrationBatches.slice(0, 2) : data.measureFeeds ? [data.measureFeeds] : [];
  return { model, sites, calibrated, batches };
}
