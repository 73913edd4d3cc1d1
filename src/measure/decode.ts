// Decode measurement for LLM exports with a KV cache: time to first token for a P-token prompt, per-token
// latency over D greedy steps (present fed back as past), tokens per second, peak memory at context P+D,
// and where the float and quantized greedy generations first diverge.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { UserError } from "../errors.js";
import { percentile } from "../evaluate/metrics.js";
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
async function generate(ort: Ort, session: Session, plan: LmInputPlan, prompt: readonly number[], steps: number) {
  const tokens: number[] = [];
  const t0 = performance.now();
  let out = await session.run(toOrtLmFeeds(ort, buildLmFeeds(plan, [prompt])));
  tokens.push(lastTokenArgmax(logitsOf(plan, out, session)));
  const ttftMs = performance.now() - t0;
  const stepMs: number[] = [];
  let pastLength = prompt.length;
  for (let i = 0; i < steps; i++) {
    const s = performance.now();
    const past = presentToPast(plan, out);
    out = await session.run(toOrtLmFeeds(ort, buildLmFeeds(plan, [[tokens[tokens.length - 1]!]], pastLength, past)));
    tokens.push(lastTokenArgmax(logitsOf(plan, out, session)));
    stepMs.push(performance.now() - s);
    pastLength++;
  }
  return { tokens, ttftMs, stepMs };
}

/** Measure decode on a session in this process (peak memory then includes everything else this process holds). */
export async function measureDecodeSession(ort: Ort, session: Session, settings: DecodeSettings, loadMs = 0): Promise<DecodeMeasurement> {
  const plan = planLmInputs(sessionDecls(session.inputMetadata), sessionDecls(session.outputMetadata), settings.overrides);
  if (!plan.canDecode) {
    throw new UserError(
      `decode measurement needs past_key_values.* inputs with matching present.* outputs; this model has ${plan.layers.length === 0 ? "no past inputs" : "a past without a present output"}`,
    );
  }
  if (settings.prompts.length === 0 || settings.prompts.some((p) => p.length === 0))
    throw new UserError("decode measurement needs at least one non-empty prompt");
  if (!Number.isInteger(settings.decodeTokens) || settings.decodeTokens < 1)
    throw new UserError(`decode tokens must be a positive integer, got ${settings.decodeTokens}`);
  for (let i = 0; i < (settings.warmup ?? 1); i++) await generate(ort, session, plan, settings.prompts[0]!, Math.min(settings.decodeTokens, 4));
  const ttftMs: number[] = [];
  const stepMs: number[] = [];
  const generated: number[][] = [];
  let logitsType = "float32";
  for (const prompt of settings.prompts) {
    const g = await generate(ort, session, plan, prompt, settings.decodeTokens);
    ttftMs.push(g.ttftMs);
    stepMs.push(...g.stepMs);
    generated.push(g.tokens);
  }
  const probe = await session.run(toOrtLmFeeds(ort, buildLmFeeds(plan, [[settings.prompts[0]![0]!]])));
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

export interface DecodeChildRequest extends DecodeSettings {
  readonly modelPath: string;
  readonly ortDir?: string;
}

/** The child script, next to this module (lib/) or beside the bundle (dist/). */
function decodeChildScript(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const candidates = [path.join(here, "decode-child.js"), path.join(here, "measure-decode-child.js"), path.resolve(here, "../../lib/measure/decode-child.js")];
  const found = candidates.find((c) => existsSync(c));
  if (!found) throw new Error(`internal: decode measuring child script not found (looked in ${candidates.join(", ")})`);
  return found;
}

/** Measure decode in a child process of its own, so the peak memory at context P+D is this model's alone. */
export async function measureDecode(modelPath: string, settings: DecodeSettings, ortDir?: string): Promise<DecodeMeasurement> {
  const request: DecodeChildRequest = { ...settings, modelPath, ...(ortDir !== undefined ? { ortDir } : {}) };
  const { stdout } = await execFileAsync(process.execPath, [decodeChildScript()], {
    env: { ...process.env, QUANTGATE_DECODE_REQUEST: JSON.stringify(request) },
    maxBuffer: 64 * 1024 * 1024,
  }).catch((err: { stderr?: string; message: string }) => {
    throw new UserError(`measuring decode of ${path.basename(modelPath)} failed: ${err.stderr?.trim() || err.message}`);
  });
  return JSON.parse(stdout) as DecodeMeasurement;
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
 *   max_decode_slowdown_vs_float decode_ms_per_token_p50: quantized / float <= limit (a ratio, 1.0 = as fast)
 * decode_ms_per_token_p95 and decode_peak_rss are reported without a rule of their own.
 */
export function decodeMetricRecords(float: DecodeMeasurement, quantized: DecodeMeasurement, promptTokens: number, decodeTokens: number): MetricRecord[] {
  const ctx = `P=${promptTokens}, D=${decodeTokens}`;
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
      rules: ["max_decode_ms_per_token", "max_decode_slowdown_vs_float"],
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
  ];
}
