// Evaluation and calibration data: text + tokenizer windows for language models, JSONL tensors for classifiers.
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { Tokenizer } from "@huggingface/tokenizers";
import type { ClassificationEvaluation, LmEvaluation } from "../config/schema.js";
import { UserError } from "../errors.js";
import type { FidelityData } from "./fidelity.js";
import { makeFeedData, type FeedTensor, type Feeds, type FeedType } from "./tensors.js";

export interface ModelInputInfo {
  readonly name: string;
  readonly type: FeedType;
  readonly rank: number | undefined;
  /** Declared sizes per axis (undefined where symbolic), when the model declares a shape. */
  readonly dims?: readonly (number | undefined)[];
}

export interface DataFileHash {
  readonly path: string;
  readonly sha256: string;
}

export interface LmData {
  readonly kind: "language-modeling";
  /** Evaluation batches, each [batch, seq] token ids. */
  readonly evalBatches: Feeds[];
  readonly calibrationBatches: Feeds[];
  readonly evalTokens: number;
  readonly vocabSize: number | undefined;
  readonly files: DataFileHash[];
}

export interface ClassificationSample {
  readonly feeds: Feeds;
  readonly label: number | undefined;
}

export interface ClassificationData {
  readonly kind: "classification";
  readonly samples: ClassificationSample[];
  readonly calibrationBatches: Feeds[];
  readonly files: DataFileHash[];
}

export type EvalData = LmData | ClassificationData | FidelityData;

async function readData(file: string, what: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (err) {
    throw new UserError(`${file}: cannot read ${what} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, file);
  }
}

export function sha256(data: Uint8Array | string): string {
  return createHash("sha256").update(data).digest("hex");
}

export async function loadTokenizer(file: string): Promise<Tokenizer> {
  const bytes = await readData(file, "tokenizer");
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString("utf8"));
  } catch (err) {
    throw new UserError(`${file}: tokenizer is not valid JSON (${(err as Error).message})`, file);
  }
  if (typeof json !== "object" || json === null || !("model" in json)) {
    throw new UserError(`${file}: expected a Hugging Face tokenizer.json with a "model" field`, file);
  }
  try {
    return new Tokenizer(json, {});
  } catch (err) {
    throw new UserError(`${file}: tokenizer could not be built (${(err as Error).message})`, file);
  }
}

function windows(ids: readonly number[], seqLen: number, count: number): number[][] {
  const out: number[][] = [];
  for (let start = 0; start + seqLen <= ids.length && out.length < count; start += seqLen) out.push(ids.slice(start, start + seqLen));
  return out;
}

function batchWindows(input: ModelInputInfo, ws: number[][], batchSize: number, seqLen: number): Feeds[] {
  const batches: Feeds[] = [];
  for (let i = 0; i < ws.length; i += batchSize) {
    const chunk = ws.slice(i, i + batchSize);
    const tensor: FeedTensor = { type: input.type, dims: [chunk.length, seqLen], data: makeFeedData(input.type, chunk.flat()) };
    batches.push({ [input.name]: tensor });
  }
  return batches;
}

export async function loadLmData(cfg: LmEvaluation, resolve: (p: string) => string, inputs: readonly ModelInputInfo[]): Promise<LmData> {
  const input = inputs.find((i) => i.name === cfg.input_name);
  if (!input) {
    throw new UserError(`evaluation.input_name "${cfg.input_name}" is not an input of the model (inputs: ${inputs.map((i) => i.name).join(", ")})`);
  }
  if (input.type !== "int64" && input.type !== "int32") {
    throw new UserError(`model input "${input.name}" has type ${input.type}; a language model takes int64 or int32 token ids`);
  }
  const extra = inputs.filter((i) => i.name !== cfg.input_name);
  if (extra.length > 0) {
    throw new UserError(`the language-modeling task feeds only "${cfg.input_name}", but the model also needs: ${extra.map((i) => i.name).join(", ")}`);
  }
  const tokenizerPath = resolve(cfg.tokenizer);
  const tokenizer = await loadTokenizer(tokenizerPath);
  const tokBytes = await readData(tokenizerPath, "tokenizer");
  const datasetPath = resolve(cfg.dataset);
  const text = (await readData(datasetPath, "evaluation text")).toString("utf8");
  const ids = tokenizer.encode(text, { add_special_tokens: false }).ids;
  const evalWs = windows(ids, cfg.sequence_length, cfg.samples);
  if (evalWs.length === 0) {
    throw new UserError(
      `${datasetPath}: evaluation text has ${ids.length} tokens, fewer than evaluation.sequence_length (${cfg.sequence_length})`,
      datasetPath,
    );
  }
  const files: DataFileHash[] = [
    { path: cfg.dataset, sha256: sha256((await readData(datasetPath, "evaluation text")) as Uint8Array) },
    { path: cfg.tokenizer, sha256: sha256(tokBytes) },
  ];
  let calibWs: number[][] = [];
  if (cfg.calibration) {
    const calibPath = resolve(cfg.calibration);
    if (calibPath === datasetPath)
      throw new UserError(
        `evaluation.calibration and evaluation.dataset are the same file (${calibPath}); calibration data must be kept apart from evaluation data`,
      );
    const calibBytes = await readData(calibPath, "calibration text");
    calibWs = windows(tokenizer.encode(calibBytes.toString("utf8"), { add_special_tokens: false }).ids, cfg.sequence_length, cfg.calibration_samples);
    if (calibWs.length === 0)
      throw new UserError(`${calibPath}: calibration text is shorter than evaluation.sequence_length (${cfg.sequence_length}) tokens`, calibPath);
    const evalKeys = new Set(evalWs.map((w) => w.join(",")));
    const shared = calibWs.filter((w) => evalKeys.has(w.join(","))).length;
    if (shared > 0)
      throw new UserError(`${calibPath}: ${shared} calibration window(s) also occur in the evaluation data; calibration data must be kept apart`, calibPath);
    files.push({ path: cfg.calibration, sha256: sha256(calibBytes) });
  }
  return {
    kind: "language-modeling",
    evalBatches: batchWindows(input, evalWs, cfg.batch_size, cfg.sequence_length),
    calibrationBatches: batchWindows(input, calibWs, cfg.batch_size, cfg.sequence_length),
    evalTokens: evalWs.length * cfg.sequence_length,
    vocabSize: undefined,
    files,
  };
}

type Nested = number | Nested[];

/** Nested JSON arrays -> dims and flat values (rectangular only). */
export function flattenNested(value: unknown, where: string): { dims: number[]; values: number[] } {
  const dims: number[] = [];
  let probe: unknown = value;
  while (Array.isArray(probe)) {
    dims.push(probe.length);
    probe = probe[0];
  }
  const values: number[] = [];
  const walk = (v: Nested | unknown, depth: number): void => {
    if (depth === dims.length) {
      if (typeof v !== "number" && typeof v !== "boolean") throw new UserError(`${where}: expected a number, got ${JSON.stringify(v)?.slice(0, 40)}`);
      values.push(Number(v));
      return;
    }
    if (!Array.isArray(v) || v.length !== dims[depth]) throw new UserError(`${where}: ragged array (expected length ${dims[depth]} at depth ${depth})`);
    for (const item of v) walk(item, depth + 1);
  };
  walk(value, 0);
  return { dims, values };
}

function parseTensorField(value: unknown, input: ModelInputInfo, where: string): FeedTensor {
  let dims: number[];
  let values: number[];
  if (typeof value === "object" && value !== null && !Array.isArray(value) && "data" in value) {
    const v = value as { dims?: unknown; data?: unknown };
    const flat = flattenNested(v.data, `${where}.data`);
    values = flat.values;
    dims = Array.isArray(v.dims) ? v.dims.map(Number) : flat.dims;
    if (dims.reduce((a, b) => a * b, 1) !== values.length) throw new UserError(`${where}: dims [${dims.join(", ")}] do not match ${values.length} values`);
  } else {
    ({ dims, values } = flattenNested(value, where));
  }
  if (input.rank !== undefined && dims.length === input.rank - 1) dims = [1, ...dims];
  if (input.rank !== undefined && dims.length !== input.rank) {
    throw new UserError(`${where}: tensor has rank ${dims.length}, model input "${input.name}" expects rank ${input.rank}`);
  }
  return { type: input.type, dims, data: makeFeedData(input.type, values) };
}

async function readJsonl(file: string, cfg: ClassificationEvaluation, inputs: readonly ModelInputInfo[], limit: number): Promise<ClassificationSample[]> {
  const text = (await readData(file, "dataset")).toString("utf8");
  const samples: ClassificationSample[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length && samples.length < limit; i++) {
    const line = lines[i]!.trim();
    if (!line) continue;
    const where = `${file}:${i + 1}`;
    let row: unknown;
    try {
      row = JSON.parse(line);
    } catch (err) {
      throw new UserError(`${where}: not valid JSON (${(err as Error).message})`, file, i + 1);
    }
    if (typeof row !== "object" || row === null) throw new UserError(`${where}: expected a JSON object per line`, file, i + 1);
    const r = row as Record<string, unknown>;
    const tensors = r[cfg.inputs_field];
    if (typeof tensors !== "object" || tensors === null)
      throw new UserError(`${where}: missing "${cfg.inputs_field}" object of named input tensors`, file, i + 1);
    const feeds: Feeds = {};
    for (const input of inputs) {
      const value = (tensors as Record<string, unknown>)[input.name];
      if (value === undefined) throw new UserError(`${where}: "${cfg.inputs_field}" has no tensor for model input "${input.name}"`, file, i + 1);
      feeds[input.name] = parseTensorField(value, input, `${where} ${cfg.inputs_field}.${input.name}`);
    }
    const label = r[cfg.label_field];
    if (label !== undefined && (typeof label !== "number" || !Number.isInteger(label))) {
      throw new UserError(`${where}: "${cfg.label_field}" must be an integer class index, got ${JSON.stringify(label)}`, file, i + 1);
    }
    samples.push({ feeds, label: label as number | undefined });
  }
  if (samples.length === 0) throw new UserError(`${file}: dataset has no rows`, file);
  return samples;
}

export async function loadClassificationData(
  cfg: ClassificationEvaluation,
  resolve: (p: string) => string,
  inputs: readonly ModelInputInfo[],
): Promise<ClassificationData> {
  const datasetPath = resolve(cfg.dataset);
  const samples = await readJsonl(datasetPath, cfg, inputs, cfg.samples);
  const files: DataFileHash[] = [{ path: cfg.dataset, sha256: sha256(await readData(datasetPath, "dataset")) }];
  let calibrationBatches: Feeds[] = [];
  if (cfg.calibration) {
    const calibPath = resolve(cfg.calibration);
    if (calibPath === datasetPath)
      throw new UserError(
        `evaluation.calibration and evaluation.dataset are the same file (${calibPath}); calibration data must be kept apart from evaluation data`,
      );
    calibrationBatches = (await readJsonl(calibPath, cfg, inputs, cfg.calibration_samples)).map((s) => s.feeds);
    files.push({ path: cfg.calibration, sha256: sha256(await readData(calibPath, "calibration data")) });
  }
  return { kind: "classification", samples, calibrationBatches, files };
}
