// Decode measurement for LLM exports with a KV cache: time to first token for a P-token prompt, per-token
// latency over D greedy steps (present fed back as past), tokens per second, peak memory at context P+D,
// and where the float and quantized greedy generations first diverge.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { feedsFromJson, feedsToJson, toOrtFeeds, type Feeds } from "../data/tensors.js";
import { UserError } from "../errors.js";
import { percentile } from "../evaluate/metrics.js";
import { medianInterval, medianOf, ratioPerRound, type ConfidenceInterval } from "./latency-stats.js";
import { readPeakRss } from "./memory.js";
import type { Ort, OrtTensor, Session } from "../runtime/ort.js";
import type { MetricRecord } from "../tasks/types.js";
import { buildLmFeeds, planLmInputs, presentToPast, sessionDecls, toOrtLmFeeds, type LmInputOverrides, type LmInputPlan } from "../tasks/lm-inputs.js";

const execFileAsync = promisify(execFile);

export interface DecodeSettings {
  /** Token ids of each prompt (P tokens each; prompts may differ in length). */
  readonly prompts: readonly (readonly number[])[];
  /** Greedy decode steps after the first token (D). */
  readonly decodeTokens: number;
  readonly threads: number;
  /** Untimed warm-up generations (on the first prompt) before timing. */
  readonly warmup?: number;
  readonly overrides?: LmInputOverrides;
  /** Inputs fed a fixed value on every call (evaluation.constant_inputs), by name. */
  readonly constants?: Feeds;
}

export interface DecodeMeasurement {
  /** Time to first token per prompt: the prefill call plus the argmax, ms. */
  readonly ttftMs: readonly number[];
  /** Every decode step's latency over all prompts, ms. */
  readonly stepMs: readonly number[];
  readonly ttftP50Ms: number;
  readonly stepP50Ms: number;
  readonly stepP95Ms: number;
  /** Decode steps per second of decode time (prefill excluded). */
  readonly tokensPerSecond: number;
  /** Greedy tokens per prompt: the first token and D more. */
  readonly generated: readonly (readonly number[])[];
  /** Peak resident memory when the longest context (P+D) was reached. */
  readonly peakRssBytes: number;
  /** "child" when a process of its own measured it, "in-process" when the caller's process did (memory then includes the caller). */
  readonly memoryScope: "child" | "in-process";
  readonly loadMs: number;
  /** Which element type the logits came out as (float32 or float16). */
  readonly logitsType: string;
}

function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** Argmax over the vocabulary at the last position of [batch=1, seq, vocab] logits (ties: lowest id). */
export function lastTokenArgmax(logits: OrtTensor): number {
  const dims = logits.dims;
  if (dims.length !== 3) throw new UserError(`language-model logits must be [batch, seq, vocab], got [${dims.join(", ")}]`);
  const vocab = dims[2]!;
  const offset = (dims[1]! - 1) * vocab;
  const data = logits.data as Float32Array | Uint16Array;
  const half = logits.type === "float16";
  let best = 0;
  let bestValue = -Infinity;
  for (let v = 0; v < vocab; v++) {
    const x = half ? f16ToF32(data[offset + v]!) : data[offset + v]!;
    if (x > bestValue) {
      bestValue = x;
      best = v;
    }
  }
  return best;
}

function logitsOf(plan: LmInputPlan, out: Record<string, OrtTensor>, session: Session): OrtTensor {
  const name = session.outputNames.includes("logits")
    ? "logits"
    : session.outputNames.find((n) => !plan.layers.some((l) => l.key.present === n || l.value.present === n));
  const t = name !== undefined ? out[name] : undefined;
  if (!t) throw new UserError(`the model has no logits output (outputs: ${session.outputNames.join(", ")})`);
  return t;
}

/** One greedy generation: returns the tokens, the prefill time and each step's time. */
async function generate(ort: Ort, session: Session, plan: LmInputPlan, prompt: readonly number[], steps: number, constants: Feeds = {}) {
  const tokens: number[] = [];
  const t0 = performance.now();
  let out = await session.run({ ...toOrtFeeds(ort, constants), ...toOrtLmFeeds(ort, buildLmFeeds(plan, [prompt])) });
  tokens.push(lastTokenArgmax(logitsOf(plan, out, session)));
  const ttftMs = performance.now() - t0;
  const stepMs: number[] = [];
  let pastLength = prompt.length;
  for (let i = 0; i < steps; i++) {
    const s = performance.now();
    const past = presentToPast(plan, out);
    out = await session.run({ ...toOrtFeeds(ort, constants), ...toOrtLmFeeds(ort, buildLmFeeds(plan, [[tokens[tokens.length - 1]!]], pastLength, past)) });
    tokens.push(lastTokenArgmax(logitsOf(plan, out, session)));
    stepMs.push(performance.now() - s);
    pastLength++;
  }
  return { tokens, ttftMs, stepMs };
}

/** The decode plan of a session: every input but the constant ones recognised by name (src/tasks/lm-inputs.ts). */
function decodePlan(session: Session, settings: DecodeSettings): LmInputPlan {
  const constants = settings.constants ?? {};
  const inputs = sessionDecls(session.inputMetadata).filter((d) => !(d.name in constants));
  const plan = planLmInputs(inputs, sessionDecls(session.outputMetadata), settings.overrides);
  if (!plan.canDecode) {
    throw new UserError(
      `decode measurement needs past_key_values.* inputs with matching present.* outputs; this model has ${plan.layers.length === 0 ? "no past inputs" : "a past without a present output"}`,
    );
  }
  return plan;
}

function checkSettings(settings: DecodeSettings): void {
  if (settings.prompts.length === 0 || settings.prompts.some((p) => p.length === 0))
    throw new UserError("decode measurement needs at least one non-empty prompt");
  if (!Number.isInteger(settings.decodeTokens) || settings.decodeTokens < 1)
    throw new UserError(`decode tokens must be a positive integer, got ${settings.decodeTokens}`);
}

/** Measure decode on a session in this process (peak memory then includes everything else this process holds). */
export async function measureDecodeSession(ort: Ort, session: Session, settings: DecodeSettings, loadMs = 0): Promise<DecodeMeasurement> {
  const plan = decodePlan(session, settings);
  checkSettings(settings);
  const constants = settings.constants ?? {};
  for (let i = 0; i < (settings.warmup ?? 1); i++) await generate(ort, session, plan, settings.prompts[0]!, Math.min(settings.decodeTokens, 4), constants);
  const ttftMs: number[] = [];
  const stepMs: number[] = [];
  const generated: number[][] = [];
  let logitsType = "float32";
  for (const prompt of settings.prompts) {
    const g = await generate(ort, session, plan, prompt, settings.decodeTokens, constants);
    ttftMs.push(g.ttftMs);
    stepMs.push(...g.stepMs);
    generated.push(g.tokens);
  }
  const probe = await session.run({ ...toOrtFeeds(ort, constants), ...toOrtLmFeeds(ort, buildLmFeeds(plan, [[settings.prompts[0]![0]!]])) });
  logitsType = logitsOf(plan, probe, session).type;
  const decodeSeconds = stepMs.reduce((a, b) => a + b, 0) / 1000;
  return {
    ttftMs,
    stepMs,
    ttftP50Ms: percentile(ttftMs, 50),
    stepP50Ms: percentile(stepMs, 50),
    stepP95Ms: percentile(stepMs, 95),
    tokensPerSecond: decodeSeconds > 0 ? stepMs.length / decodeSeconds : 0,
    generated,
    peakRssBytes: readPeakRss().bytes,
    memoryScope: "in-process",
    loadMs,
    logitsType,
  };
}

/**
 * Interleaved decode rounds: each round every session generates greedily on the round's prompt (round r takes
 * prompt r mod P), in alternating order, and its median step time is kept. Both models meet the machine's load of
 * the moment alike, so the per-round ratio cancels most of it (as the latency rules' interleaved rounds do).
 */
export async function decodeRoundsSession(ort: Ort, sessions: readonly Session[], settings: DecodeSettings, rounds: number): Promise<number[][]> {
  checkSettings(settings);
  if (!Number.isInteger(rounds) || rounds < 1) throw new UserError(`decode rounds must be a positive integer, got ${rounds}`);
  const plans = sessions.map((s) => decodePlan(s, settings));
  const constants = settings.constants ?? {};
  for (let i = 0; i < sessions.length; i++) await generate(ort, sessions[i]!, plans[i]!, settings.prompts[0]!, Math.min(settings.decodeTokens, 4), constants);
  const perModel: number[][] = sessions.map(() => []);
  for (let r = 0; r < rounds; r++) {
    const prompt = settings.prompts[r % settings.prompts.length]!;
    const order = sessions.map((_, i) => i);
    if (r % 2 === 1) order.reverse();
    for (const i of order) perModel[i]!.push(medianOf((await generate(ort, sessions[i]!, plans[i]!, prompt, settings.decodeTokens, constants)).stepMs));
  }
  return perModel;
}

/** What the decode child is asked (the settings travel as JSON; constant feeds as feedsToJson). */
export interface DecodeChildRequest extends Omit<DecodeSettings, "constants"> {
  /** One model: a full measurement (timings, generations, own peak memory). Several, with `rounds`: interleaved rounds. */
  readonly modelPaths: readonly string[];
  readonly rounds?: number;
  readonly constantsJson?: string;
  readonly ortDir?: string;
}

/** The settings a child request carries (constant feeds decoded). */
export function settingsOfRequest(req: DecodeChildRequest): DecodeSettings {
  return { ...req, ...(req.constantsJson !== undefined ? { constants: feedsFromJson(req.constantsJson) } : {}) };
}

/** The child script, next to this module (lib/) or beside the bundle (dist/). */
function decodeChildScript(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const candidates = [path.join(here, "decode-child.js"), path.join(here, "measure-decode-child.js"), path.resolve(here, "../../lib/measure/decode-child.js")];
  const found = candidates.find((c) => existsSync(c));
  if (!found) throw new Error(`internal: decode measuring child script not found (looked in ${candidates.join(", ")})`);
  return found;
}

async function runDecodeChild<T>(modelPaths: readonly string[], settings: DecodeSettings, ortDir: string | undefined, rounds?: number): Promise<T> {
  const { constants, ...rest } = settings;
  const request: DecodeChildRequest = {
    ...rest,
    modelPaths,
    ...(rounds !== undefined ? { rounds } : {}),
    ...(constants && Object.keys(constants).length > 0 ? { constantsJson: feedsToJson(constants) } : {}),
    ...(ortDir !== undefined ? { ortDir } : {}),
  };
  const { stdout } = await execFileAsync(process.execPath, [decodeChildScript()], {
    env: { ...process.env, QUANTGATE_DECODE_REQUEST: JSON.stringify(request) },
    maxBuffer: 64 * 1024 * 1024,
  }).catch((err: { stderr?: string; message: string }) => {
    throw new UserError(`measuring decode of ${modelPaths.map((m) => path.basename(m)).join(" and ")} failed: ${err.stderr?.trim() || err.message}`);
  });
  return JSON.parse(stdout) as T;
}

/** Measure decode in a child process of its own, so the peak memory at context P+D is this model's alone. */
export async function measureDecode(modelPath: string, settings: DecodeSettings, ortDir?: string): Promise<DecodeMeasurement> {
  return runDecodeChild<DecodeMeasurement>([modelPath], settings, ortDir);
}

/** Most interleaved decode rounds a gate run times (measure.runs caps it lower): each round is a whole generation per model. */
export const DECODE_ROUNDS = 10;

/** Quantized over float decode ms/token per round, with the interval of its median (what max_decode_slowdown_vs_float judges). */
export interface DecodeSlowdown {
  readonly ratioPerRound: readonly number[];
  readonly ratioP50: number;
  readonly ratioInterval: ConfidenceInterval;
  /** False when the two models were too big for one process and each was timed in its own, rounds paired by index. */
  readonly interleaved: boolean;
}

export function decodeSlowdownOf(floatStepMs: readonly number[], quantStepMs: readonly number[], interleaved: boolean): DecodeSlowdown {
  const ratios = ratioPerRound(floatStepMs, quantStepMs);
  return { ratioPerRound: ratios, ratioP50: medianOf(ratios), ratioInterval: medianInterval(ratios), interleaved };
}

/**
 * Decode ms/token of the quantized model over the float one in `rounds` interleaved rounds, both models in one fresh
 * process; `interleave` false (the two would crowd the machine's memory) times each in its own process and pairs
 * rounds by index.
 */
export async function measureDecodeSlowdown(
  floatPath: string,
  quantizedPath: string,
  settings: DecodeSettings,
  rounds: number,
  interleave: boolean,
  ortDir?: string,
): Promise<DecodeSlowdown> {
  const [f, q] = interleave
    ? await runDecodeChild<number[][]>([floatPath, quantizedPath], settings, ortDir, rounds)
    : [
        (await runDecodeChild<number[][]>([floatPath], settings, ortDir, rounds))[0]!,
        (await runDecodeChild<number[][]>([quantizedPath], settings, ortDir, rounds))[0]!,
      ];
  return decodeSlowdownOf(f!, q!, interleave);
}

export interface Divergence {
  readonly prompt: number;
  /** Index among the generated tokens of the first one that differs, or undefined when all agree. */
  readonly firstDivergence: number | undefined;
  readonly compared: number;
  readonly float: readonly number[];
  readonly quantized: readonly number[];
}

/** Where the greedy generations of float and quantized first differ, per prompt. */
export function compareGenerations(float: readonly (readonly number[])[], quantized: readonly (readonly number[])[]): Divergence[] {
  return float.map((f, i) => {
    const q = quantized[i] ?? [];
    const n = Math.min(f.length, q.length);
    let first: number | undefined;
    for (let k = 0; k < n; k++) {
      if (f[k] !== q[k]) {
        first = k;
        break;
      }
    }
    return { prompt: i, firstDivergence: first, compared: n, float: f, quantized: q };
  });
}

/**
 * Metric records for the decode figures. Rules (gate keys) and how each judges:
 *   max_time_to_first_token_ms   ttft_ms (quantized, median over prompts) <= limit in ms
 *   max_decode_ms_per_token      decode_ms_per_token_p50 (quantized) <= limit in ms
 *   min_decode_tokens_per_second decode_tokens_per_second (quantized) >= limit
 *   max_decode_slowdown_vs_float decode_slowdown_vs_float: quantized / float median step time per interleaved round,
 *                                judged on the interval of its median (fails only when the interval lies above the limit)
 * decode_ms_per_token_p95 and decode_peak_rss are reported without a rule of their own.
 */
export function decodeMetricRecords(
  float: DecodeMeasurement,
  quantized: DecodeMeasurement,
  promptTokens: number,
  decodeTokens: number,
  slowdown?: DecodeSlowdown,
): MetricRecord[] {
  const ctx = `P=${promptTokens}, D=${decodeTokens}`;
  const ci = slowdown?.ratioInterval;
  const slowdownRecords: MetricRecord[] = slowdown
    ? [
        {
          key: "decode_slowdown_vs_float",
          label: "Decode ms/token, quantized/float",
          unit: "ratio",
          direction: "lower",
          quantized: slowdown.ratioP50,
          raw: { quantized: slowdown.ratioPerRound },
          rules: ["max_decode_slowdown_vs_float"],
          note: `median of ${slowdown.ratioPerRound.length} ${slowdown.interleaved ? "interleaved" : "paired"} rounds, ${Math.round(ci!.level * 1000) / 10}% interval ${ci!.lo.toFixed(3)}-${ci!.hi.toFixed(3)}x`,
        },
      ]
    : [];
  return [
    {
      key: "ttft_ms",
      label: "Time to first token",
      unit: "ms",
      direction: "lower",
      float: float.ttftP50Ms,
      quantized: quantized.ttftP50Ms,
      perSample: { float: float.ttftMs, quantized: quantized.ttftMs },
      rules: ["max_time_to_first_token_ms"],
      note: `median over ${quantized.ttftMs.length} prompts, P=${promptTokens}`,
    },
    {
      key: "decode_ms_per_token_p50",
      label: "Decode ms/token p50",
      unit: "ms",
      direction: "lower",
      float: float.stepP50Ms,
      quantized: quantized.stepP50Ms,
      rules: ["max_decode_ms_per_token"],
      note: `${quantized.stepMs.length} greedy steps, ${ctx}`,
    },
    {
      key: "decode_ms_per_token_p95",
      label: "Decode ms/token p95",
      unit: "ms",
      direction: "lower",
      float: float.stepP95Ms,
      quantized: quantized.stepP95Ms,
      rules: [],
      note: ctx,
    },
    {
      key: "decode_tokens_per_second",
      label: "Decode tokens/s",
      unit: "tokens/s",
      direction: "higher",
      float: float.tokensPerSecond,
      quantized: quantized.tokensPerSecond,
      rules: ["min_decode_tokens_per_second"],
      note: ctx,
    },
    {
      key: "decode_peak_rss",
      label: "Peak memory at P+D",
      unit: "bytes",
      direction: "lower",
      float: float.peakRssBytes,
      quantized: quantized.peakRssBytes,
      rules: [],
      note: `context ${promptTokens + decodeTokens}, ${quantized.memoryScope === "child" ? "own process" : "in-process (includes the gate)"}`,
    },
    ...slowdownRecords,
  ];
}
