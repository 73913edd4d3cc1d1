// The language-modeling task: windows of tokenized held-out text; perplexity of both models, KL of the
// quantized next-token distribution from the float one, and top-1 agreement, per token position. Every input an
// LLM export declares is fed (src/tasks/lm-inputs.ts: attention mask of ones, positions 0..n-1, an empty past).
import type { LmEvaluation } from "../config/schema.js";
import { loadTokenizer, readData, sha256, type DataFileHash } from "../data/index.js";
import { toOrtFeeds, type Feeds } from "../data/tensors.js";
import { UserError } from "../errors.js";
import { argmax, klDivergence, logSoftmax } from "../evaluate/metrics.js";
import { float32Output } from "./outputs.js";
import { buildLmFeeds, planLmInputs, slidingWindows, type LmInputPlan, type ScoringWindow } from "./lm-inputs.js";
import { constantFeeds, dataInputs, klRecords, meanRecord, valueRecord } from "./common.js";
import { sliceRange, type PhasedEvalContext, type Task, type TaskData, type TaskEvalContext, type TaskEvaluation, type TaskPartial } from "./types.js";
import { closeSync, openSync, readSync, writeSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";

export interface LmData extends TaskData {
  /** Evaluation batches, each [batch, seq] token ids with every other input the model declares filled. */
  readonly evalBatches: Feeds[];
  /** Per batch, per row: index of the first scored target in the window (earlier tokens are context only). */
  readonly scoreFrom: number[][];
  readonly windows: number;
  /** Whole windows the evaluation text holds (at this stride). */
  readonly availableWindows: number;
  /** How each model input is filled, for the report. */
  readonly inputPlan: readonly string[];
}

/** Whole windows of `seqLen` tokens every `stride` tokens (at most `count`); a shorter tail is left out. */
function windows(ids: readonly number[], seqLen: number, stride: number, count: number): ScoringWindow[] {
  return slidingWindows(ids, seqLen, stride, count).windows.filter((w) => w.ids.length === seqLen);
}

function availableWindows(tokens: number, seqLen: number, stride: number): number {
  return tokens < seqLen ? 0 : Math.floor((tokens - seqLen) / stride) + 1;
}

function batchWindows(plan: LmInputPlan, ws: readonly ScoringWindow[], batchSize: number, constants: Feeds): { batches: Feeds[]; scoreFrom: number[][] } {
  const batches: Feeds[] = [];
  const scoreFrom: number[][] = [];
  for (let i = 0; i < ws.length; i += batchSize) {
    const chunk = ws.slice(i, i + batchSize);
    // Attention mask of ones, positions 0..n-1, an empty past: the same numbers as a model fed only ids.
    const feeds = buildLmFeeds(
      plan,
      chunk.map((w) => w.ids),
    ) as Feeds;
    batches.push({ ...constants, ...feeds });
    scoreFrom.push(chunk.map((w) => w.scoreFrom));
  }
  return { batches, scoreFrom };
}

export const languageModelingTask: Task<LmEvaluation, LmData> = {
  name: "language-modeling",

  async load(cfg, ctx) {
    const inputs = ctx.inputs;
    const input = inputs.find((i) => i.name === cfg.input_name);
    if (!input) {
      throw new UserError(`evaluation.input_name "${cfg.input_name}" is not an input of the model (inputs: ${inputs.map((i) => i.name).join(", ")})`);
    }
    if (input.type !== "int64" && input.type !== "int32") {
      throw new UserError(`model input "${input.name}" has type ${input.type}; a language model takes int64 or int32 token ids`);
    }
    const constants = constantFeeds(cfg.constant_inputs, inputs);
    // Every other input is recognised by name (attention mask, positions, past key/values) or named under evaluation.inputs.
    const decls = dataInputs(cfg.constant_inputs, inputs).map((i) => ({ name: i.name, type: i.type, ...(i.dims ? { shape: i.dims } : {}) }));
    const plan = planLmInputs(decls, [], { ...cfg.inputs, input_ids: cfg.input_name });
    const stride = cfg.stride ?? cfg.sequence_length;
    if (stride > cfg.sequence_length) {
      throw new UserError(`evaluation.stride (${stride}) must not exceed evaluation.sequence_length (${cfg.sequence_length})`);
    }
    const tokenizerPath = ctx.resolve(cfg.tokenizer, "evaluation.tokenizer");
    const tokenizer = await loadTokenizer(tokenizerPath);
    const tokBytes = await readData(tokenizerPath, "tokenizer");
    const datasetPath = ctx.resolve(cfg.dataset, "evaluation.dataset");
    const textBytes = await readData(datasetPath, "evaluation text");
    const ids = tokenizer.encode(textBytes.toString("utf8"), { add_special_tokens: false }).ids;
    const evalWs = windows(ids, cfg.sequence_length, stride, cfg.samples);
    if (evalWs.length === 0) {
      throw new UserError(
        `${datasetPath}: evaluation text has ${ids.length} tokens, fewer than evaluation.sequence_length (${cfg.sequence_length})`,
        datasetPath,
      );
    }
    const files: DataFileHash[] = [
      { path: cfg.dataset, sha256: sha256(textBytes as Uint8Array) },
      { path: cfg.tokenizer, sha256: sha256(tokBytes) },
    ];
    let calibWs: ScoringWindow[] = [];
    if (cfg.calibration) {
      const calibPath = ctx.resolve(cfg.calibration, "evaluation.calibration");
      if (calibPath === datasetPath)
        throw new UserError(
          `evaluation.calibration and evaluation.dataset are the same file (${calibPath}); calibration data must be kept apart from evaluation data`,
        );
      const calibBytes = await readData(calibPath, "calibration text");
      const calibIds = tokenizer.encode(calibBytes.toString("utf8"), { add_special_tokens: false }).ids;
      calibWs = windows(calibIds, cfg.sequence_length, cfg.sequence_length, cfg.calibration_samples);
      if (calibWs.length === 0)
        throw new UserError(`${calibPath}: calibration text is shorter than evaluation.sequence_length (${cfg.sequence_length}) tokens`, calibPath);
      const evalKeys = new Set(evalWs.map((w) => w.ids.join(",")));
      const shared = calibWs.filter((w) => evalKeys.has(w.ids.join(","))).length;
      if (shared > 0)
        throw new UserError(`${calibPath}: ${shared} calibration window(s) also occur in the evaluation data; calibration data must be kept apart`, calibPath);
      files.push({ path: cfg.calibration, sha256: sha256(calibBytes) });
    }
    const evaluation = batchWindows(plan, evalWs, cfg.batch_size, constants);
    return {
      task: "language-modeling",
      evalBatches: evaluation.batches,
      scoreFrom: evaluation.scoreFrom,
      calibrationBatches: batchWindows(plan, calibWs, cfg.batch_size, constants).batches,
      files,
      measureFeeds: evaluation.batches[0],
      windows: evalWs.length,
      availableWindows: availableWindows(ids.length, cfg.sequence_length, stride),
      inputPlan: plan.description,
      promptSource: evalWs.slice(0, 64).map((w) => w.ids),
    };
  },

  async evaluate(cfg, data, ctx) {
    return mergeLm(cfg, [await partialLm(cfg, data, ctx)]);
  },

  async evaluatePhased(cfg, data, ctx) {
    return mergeLm(cfg, [await phasedLm(cfg, data, ctx)]);
  },

  slice(data, index, count) {
    const [start, end] = sliceRange(data.evalBatches.length, index, count);
    const evalBatches = data.evalBatches.slice(start, end);
    const scoreFrom = data.scoreFrom.slice(start, end);
    const windows = scoreFrom.reduce((a, b) => a + b.length, 0);
    return { ...data, evalBatches, scoreFrom, windows };
  },
  partial: (cfg, data, ctx) => partialLm(cfg, data, ctx),
  merge: (cfg, partials) => mergeLm(cfg, partials as readonly LmPartial[]),
};

/** Mergeable state of a slice of windows: summed NLLs, per-position KL and agreement, counts. */
interface LmPartial extends TaskPartial {
  readonly nllFloat: number;
  readonly nllQuant: number;
  readonly kls: number[];
  readonly agree: number[];
  readonly windows: number;
  readonly availableWindows: number;
  readonly inputPlan: readonly string[];
  readonly ms: number;
}

async function partialLm(cfg: LmEvaluation, data: LmData, { ort, float, quantized }: TaskEvalContext): Promise<LmPartial> {
  const t0 = performance.now();
  let nllFloat = 0;
  let nllQuant = 0;
  const agree: number[] = [];
  const kls: number[] = [];
  for (const [bi, batch] of data.evalBatches.entries()) {
    const scoreFrom = data.scoreFrom[bi]!;
    const feeds = toOrtFeeds(ort, batch);
    const rf = float32Output(float, await float.run(feeds), cfg.output_name);
    const rq = float32Output(quantized, await quantized.run(feeds), cfg.output_name);
    if (rf.dims.length !== 3) throw new Error(`language-model output must be [batch, seq, vocab] logits, got [${rf.dims.join(", ")}]`);
    const [b, t, v] = rf.dims as [number, number, number];
    const ids = batch[cfg.input_name]!.data;
    const lpF = new Float64Array(v);
    const lpQ = new Float64Array(v);
    for (let i = 0; i < b; i++) {
      // Logits at position pos predict token pos + 1; targets before scoreFrom are context only.
      for (let pos = scoreFrom[i]! - 1; pos < t - 1; pos++) {
        const offset = (i * t + pos) * v;
        logSoftmax(rf.data, offset, v, lpF);
        logSoftmax(rq.data, offset, v, lpQ);
        const target = Number(ids[i * t + pos + 1]);
        if (target < 0 || target >= v) throw new Error(`token id ${target} is outside the model's vocabulary of ${v}`);
        nllFloat -= lpF[target]!;
        nllQuant -= lpQ[target]!;
        kls.push(klDivergence(lpF, lpQ));
        agree.push(argmax(rf.data, offset, v) === argmax(rq.data, offset, v) ? 1 : 0);
      }
    }
  }
  return lmPartial(data, { nllFloat, nllQuant, kls, agree }, t0);
}

/** A partial result of scored windows: the sums and per-token values, with the data's window counts. */
function lmPartial(data: LmData, scores: Pick<LmPartial, "nllFloat" | "nllQuant" | "kls" | "agree">, t0: number): LmPartial {
  return {
    task: "language-modeling",
    ...scores,
    windows: data.windows,
    availableWindows: data.availableWindows,
    inputPlan: data.inputPlan,
    ms: performance.now() - t0,
  };
}

/**
 * partialLm with one model loaded at a time: the float model scores every batch first and its logits at the
 * scored positions go to a temporary file (float32, as ONNX Runtime returned them: tokens x vocab x 4 bytes);
 * then the quantized model runs and each batch's float rows are read back. Same sums in the same order as
 * partialLm, so the figures are identical.
 */
async function phasedLm(cfg: LmEvaluation, data: LmData, { ort, open }: PhasedEvalContext): Promise<LmPartial> {
  const t0 = performance.now();
  const dir = await mkdtemp(path.join(os.tmpdir(), "quantgate-lm-"));
  const file = path.join(dir, "float-logits.f32");
  try {
    let nllFloat = 0;
    let nllQuant = 0;
    const agree: number[] = [];
    const kls: number[] = [];
    /** Per batch: byte offset of its rows in the file, and [batch, seq, vocab]. */
    const stored: { offset: number; dims: [number, number, number] }[] = [];
    const scored = (scoreFrom: readonly number[], t: number): [number, number][] =>
      scoreFrom.flatMap((from, i) => Array.from({ length: Math.max(0, t - from) }, (_, j) => [i, from - 1 + j] as [number, number]));
    const float = await open("float");
    const fd = openSync(file, "w");
    try {
      let offset = 0;
      for (const [bi, batch] of data.evalBatches.entries()) {
        const rf = float32Output(float, await float.run(toOrtFeeds(ort, batch)), cfg.output_name);
        if (rf.dims.length !== 3) throw new Error(`language-model output must be [batch, seq, vocab] logits, got [${rf.dims.join(", ")}]`);
        const [, t, v] = rf.dims as [number, number, number];
        const ids = batch[cfg.input_name]!.data;
        const rows = scored(data.scoreFrom[bi]!, t);
        const lpF = new Float64Array(v);
        const out = new Float32Array(rows.length * v);
        rows.forEach(([i, pos], r) => {
          const at = (i * t + pos) * v;
          logSoftmax(rf.data, at, v, lpF);
          const target = Number(ids[i * t + pos + 1]);
          if (target < 0 || target >= v) throw new Error(`token id ${target} is outside the model's vocabulary of ${v}`);
          nllFloat -= lpF[target]!;
          out.set(rf.data.subarray(at, at + v), r * v);
        });
        writeAll(fd, new Uint8Array(out.buffer), offset);
        stored.push({ offset, dims: rf.dims as [number, number, number] });
        offset += out.byteLength;
      }
    } finally {
      closeSync(fd);
    }
    const quantized = await open("quantized");
    const rfd = openSync(file, "r");
    try {
      for (const [bi, batch] of data.evalBatches.entries()) {
        const rq = float32Output(quantized, await quantized.run(toOrtFeeds(ort, batch)), cfg.output_name);
        const { offset, dims } = stored[bi]!;
        if (rq.dims.join(",") !== dims.join(","))
          throw new Error(`quantized model's logits are [${rq.dims.join(", ")}], the float model's [${dims.join(", ")}]`);
        const [, t, v] = dims;
        const ids = batch[cfg.input_name]!.data;
        const rows = scored(data.scoreFrom[bi]!, t);
        const floatRows = new Float32Array(rows.length * v);
        readAll(rfd, new Uint8Array(floatRows.buffer), offset);
        const lpF = new Float64Array(v);
        const lpQ = new Float64Array(v);
        rows.forEach(([i, pos], r) => {
          const at = (i * t + pos) * v;
          logSoftmax(floatRows, r * v, v, lpF);
          logSoftmax(rq.data, at, v, lpQ);
          nllQuant -= lpQ[Number(ids[i * t + pos + 1])]!;
          kls.push(klDivergence(lpF, lpQ));
          agree.push(argmax(floatRows, r * v, v) === argmax(rq.data, at, v) ? 1 : 0);
        });
      }
    } finally {
      closeSync(rfd);
    }
    return lmPartial(data, { nllFloat, nllQuant, kls, agree }, t0);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function writeAll(fd: number, bytes: Uint8Array, position: number): void {
  for (let done = 0; done < bytes.length;) done += writeSync(fd, bytes, done, bytes.length - done, position + done);
}

function readAll(fd: number, into: Uint8Array, position: number): void {
  for (let done = 0; done < into.length;) {
    const n = readSync(fd, into, done, into.length - done, position + done);
    if (n === 0) throw new Error("internal: the float model's stored logits ended early");
    done += n;
  }
}

function mergeLm(cfg: LmEvaluation, partials: readonly LmPartial[]): TaskEvaluation {
  const kls = partials.flatMap((p) => p.kls);
  const agree = partials.flatMap((p) => p.agree);
  const nllFloat = partials.reduce((a, p) => a + p.nllFloat, 0);
  const nllQuant = partials.reduce((a, p) => a + p.nllQuant, 0);
  const windows = partials.reduce((a, p) => a + p.windows, 0);
  const availableWindows = partials[0]?.availableWindows ?? 0;
  const tokens = kls.length;
  if (tokens === 0) throw new Error("the language-modeling evaluation predicted no tokens");
  const note = `${tokens.toLocaleString("en-US")} predicted tokens`;
  const left = availableWindows - windows;
  return {
    task: "language-modeling",
    metrics: [
      valueRecord("perplexity", "Perplexity", "perplexity", "lower", Math.exp(nllQuant / tokens), Math.exp(nllFloat / tokens), { note }),
      ...klRecords(kls),
      meanRecord("top1_agreement", "Top-1 agreement", "ratio", "higher", agree, undefined, { note: "vs float" }),
    ],
    samples: {
      evaluated: windows,
      total: availableWindows,
      sequenceUnit: "predicted tokens",
      sequences: tokens,
      ...(left > 0 ? { leftOut: `${left} more window(s) of ${cfg.sequence_length} tokens past evaluation.samples (${cfg.samples})` } : {}),
    },
    ms: partials.reduce((a, p) => a + p.ms, 0),
    details: {
      tokens,
      sequenceLength: cfg.sequence_length,
      ...(cfg.stride !== undefined && cfg.stride !== cfg.sequence_length ? { stride: cfg.stride } : {}),
      ...((partials[0]?.inputPlan.length ?? 0) > 1 ? { inputs: partials[0]!.inputPlan } : {}),
      ...(partials.length > 1 ? { shards: partials.length } : {}),
    },
  };
}
