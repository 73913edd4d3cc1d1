// Inputs for the fidelity task: named tensors from JSONL, .npy/.npz, image folders or WAV audio, cut
// into chunks for stateful models (the state inputs start at zero; the evaluator feeds states forward).
import { readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import type { ValueInfoProto } from "onnx-buf";
import type { FidelityEvaluation, InputFormat } from "../config/schema.js";
import { UserError } from "../errors.js";
import { chunkSignal, decodeImage, imageToTensor, parseNpy, parseNpz, parseWav, rawNumbers, resample, type RawArray } from "./formats.js";
import { flattenNested, sha256, type DataFileHash, type ModelInputInfo } from "./index.js";
import { makeFeedData, type FeedTensor, type Feeds } from "./tensors.js";

export interface FidelitySample {
  readonly feeds: Feeds;
  readonly label: number | undefined;
  /** Stateful models: which sequence the chunk belongs to, and its place in it. */
  readonly sequence: number;
  readonly chunk: number;
}

export interface FidelityData {
  readonly kind: "fidelity";
  readonly samples: FidelitySample[];
  readonly calibrationBatches: Feeds[];
  readonly files: DataFileHash[];
  /** Stateful models: state input -> the output that feeds it on the next chunk. */
  readonly state: readonly { readonly input: string; readonly output: string }[];
}

/** One record of a source: a tensor per named input (before batching and chunking), and a label. */
interface SourceRecord {
  readonly tensors: Record<string, RawArray>;
  readonly label: number | undefined;
}

const IMAGE_EXT = /\.(png|jpe?g)$/i;

async function listFiles(dir: string, accept: RegExp): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  return entries
    .filter((e) => e.isFile() && accept.test(e.name))
    .map((e) => path.join(dir, e.name))
    .sort();
}

async function readBytes(file: string, what: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(file));
  } catch (err) {
    throw new UserError(`${file}: cannot read ${what} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, file);
  }
}

/** The format a path is read as when the config does not say. */
export async function detectFormat(file: string): Promise<InputFormat> {
  let isDir = false;
  try {
    isDir = (await stat(file)).isDirectory();
  } catch (err) {
    throw new UserError(`${file}: cannot read dataset (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, file);
  }
  if (isDir) {
    const names = await readdir(file);
    return names.some((n) => /\.wav$/i.test(n)) ? "wav" : "images";
  }
  const ext = path.extname(file).toLowerCase();
  if (ext === ".npy") return "npy";
  if (ext === ".npz") return "npz";
  if (ext === ".wav") return "wav";
  if (ext === ".jsonl" || ext === ".json") return "jsonl";
  if (IMAGE_EXT.test(ext)) return "images";
  throw new UserError(`${file}: cannot tell the dataset format from the extension; set evaluation.format (jsonl, npy, npz, images, wav)`, file);
}

function singleInput(cfg: FidelityEvaluation, inputs: readonly ModelInputInfo[], format: string): string {
  if (cfg.input) {
    if (!inputs.some((i) => i.name === cfg.input))
      throw new UserError(`evaluation.input "${cfg.input}" is not an input of the model (inputs: ${inputs.map((i) => i.name).join(", ")})`);
    return cfg.input;
  }
  const stateInputs = new Set((cfg.stateful?.state ?? []).map((s) => s.input));
  const data = inputs.filter((i) => !stateInputs.has(i.name));
  if (data.length !== 1)
    throw new UserError(`a ${format} dataset feeds one input, but the model takes ${data.map((i) => i.name).join(", ")}: set evaluation.input`);
  return data[0]!.name;
}

function nested(value: unknown, where: string): RawArray {
  if (typeof value === "object" && value !== null && !Array.isArray(value) && "data" in value) {
    const v = value as { dims?: unknown; data?: unknown };
    const flat = nested(v.data, `${where}.data`);
    const dims = Array.isArray(v.dims) ? v.dims.map(Number) : flat.dims;
    if (dims.reduce((a, b) => a * b, 1) !== flat.values.length)
      throw new UserError(`${where}: dims [${dims.join(", ")}] do not match ${flat.values.length} values`);
    return { dims, values: flat.values };
  }
  const flat = flattenNested(value, where);
  return { dims: flat.dims, values: Float64Array.from(flat.values) };
}

function slice0(a: RawArray, i: number): RawArray {
  const inner = a.dims.slice(1);
  const size = inner.reduce((x, y) => x * y, 1);
  return { dims: inner, values: a.values.subarray(i * size, (i + 1) * size) as RawArray["values"] };
}

async function readRecords(
  file: string,
  format: InputFormat,
  cfg: FidelityEvaluation,
  inputs: readonly ModelInputInfo[],
): Promise<{ records: SourceRecord[]; files: string[] }> {
  switch (format) {
    case "jsonl": {
      const text = new TextDecoder().decode(await readBytes(file, "dataset"));
      const records: SourceRecord[] = [];
      const stateInputs = new Set((cfg.stateful?.state ?? []).map((s) => s.input));
      text.split("\n").forEach((raw, i) => {
        const line = raw.trim();
        if (!line) return;
        const where = `${file}:${i + 1}`;
        let row: Record<string, unknown>;
        try {
          row = JSON.parse(line) as Record<string, unknown>;
        } catch (err) {
          throw new UserError(`${where}: not valid JSON (${(err as Error).message})`, file, i + 1);
        }
        const tensors = row[cfg.inputs_field];
        if (typeof tensors !== "object" || tensors === null)
          throw new UserError(`${where}: missing "${cfg.inputs_field}" object of named input tensors`, file, i + 1);
        const out: Record<string, RawArray> = {};
        for (const input of inputs) {
          const value = (tensors as Record<string, unknown>)[input.name];
          if (value === undefined) {
            if (stateInputs.has(input.name)) continue;
            throw new UserError(`${where}: "${cfg.inputs_field}" has no tensor for model input "${input.name}"`, file, i + 1);
          }
          out[input.name] = nested(value, `${where} ${cfg.inputs_field}.${input.name}`);
        }
        const label = row[cfg.label_field];
        records.push({ tensors: out, label: typeof label === "number" ? label : undefined });
      });
      return { records, files: [file] };
    }
    case "npy": {
      const name = singleInput(cfg, inputs, "npy");
      const array = parseNpy(await readBytes(file, "dataset"), file);
      let labels: ArrayLike<number> | undefined;
      const files = [file];
      if (cfg.label_field.endsWith(".npy")) {
        const labelFile = path.resolve(path.dirname(file), cfg.label_field);
        labels = rawNumbers(parseNpy(await readBytes(labelFile, "labels"), labelFile));
        files.push(labelFile);
      }
      // With a stateful model a 1-D array is one sequence; otherwise axis 0 indexes samples.
      if (cfg.stateful && array.dims.length === 1) return { records: [{ tensors: { [name]: array }, label: labels?.[0] }], files };
      const count = array.dims[0] ?? 1;
      return { records: Array.from({ length: count }, (_, i) => ({ tensors: { [name]: slice0(array, i) }, label: labels?.[i] })), files };
    }
    case "npz": {
      const arrays = await parseNpz(await readBytes(file, "dataset"), file);
      const stateInputs = new Set((cfg.stateful?.state ?? []).map((s) => s.input));
      const wanted = inputs.filter((i) => !stateInputs.has(i.name));
      const missing = wanted.filter((i) => !arrays.has(i.name));
      if (missing.length)
        throw new UserError(`${file}: no array for model input(s) ${missing.map((i) => i.name).join(", ")} (arrays: ${[...arrays.keys()].join(", ")})`, file);
      const count = Math.min(...wanted.map((i) => arrays.get(i.name)!.dims[0] ?? 1));
      const labelArray = arrays.get(cfg.label_field === "label" ? "labels" : cfg.label_field);
      const labels = labelArray ? rawNumbers(labelArray) : undefined;
      return {
        records: Array.from({ length: count }, (_, r) => ({
          tensors: Object.fromEntries(wanted.map((i) => [i.name, slice0(arrays.get(i.name)!, r)])),
          label: labels?.[r],
        })),
        files: [file],
      };
    }
    case "images": {
      const name = singleInput(cfg, inputs, "image");
      const isDir = (await stat(file)).isDirectory();
      const entries: { file: string; label: number | undefined }[] = [];
      if (!isDir) entries.push({ file, label: undefined });
      else {
        const classes = (await readdir(file, { withFileTypes: true }))
          .filter((e) => e.isDirectory())
          .map((e) => e.name)
          .sort();
        for (const f of await listFiles(file, IMAGE_EXT)) entries.push({ file: f, label: undefined });
        for (const [label, c] of classes.entries()) for (const f of await listFiles(path.join(file, c), IMAGE_EXT)) entries.push({ file: f, label });
      }
      if (entries.length === 0) throw new UserError(`${file}: no .png or .jpg images found`, file);
      const records: SourceRecord[] = [];
      for (const e of entries)
        records.push({ tensors: { [name]: imageToTensor(decodeImage(await readBytes(e.file, "image"), e.file), cfg.preprocess, e.file) }, label: e.label });
      return { records, files: entries.map((e) => e.file) };
    }
    case "wav": {
      const name = singleInput(cfg, inputs, "WAV");
      const isDir = (await stat(file)).isDirectory();
      const files = isDir ? await listFiles(file, /\.wav$/i) : [file];
      if (files.length === 0) throw new UserError(`${file}: no .wav files found`, file);
      const records: SourceRecord[] = [];
      for (const f of files) {
        const audio = parseWav(await readBytes(f, "audio"), f);
        const samples = resample(audio.samples, audio.sampleRate, cfg.audio.sample_rate);
        if (cfg.stateful) {
          // One sequence per file, zero-padded to whole chunks; the chunking below cuts it.
          const size = cfg.audio.chunk_samples;
          const padded = new Float32Array(Math.max(1, Math.ceil(samples.length / size)) * size);
          padded.set(samples);
          records.push({ tensors: { [name]: { dims: [padded.length], values: padded } }, label: undefined });
        } else {
          for (const c of chunkSignal(samples, cfg.audio.chunk_samples))
            records.push({ tensors: { [name]: { dims: [c.length], values: c } }, label: undefined });
        }
      }
      return { records, files };
    }
  }
}

/** Fit an array to a model input: add leading 1s (batch) up to its rank, and take its element type. */
function toFeed(a: RawArray, input: ModelInputInfo, where: string): FeedTensor {
  let dims = a.dims;
  if (input.rank !== undefined) {
    while (dims.length < input.rank) dims = [1, ...dims];
    if (dims.length !== input.rank)
      throw new UserError(`${where}: tensor has shape [${a.dims.join(", ")}], model input "${input.name}" expects rank ${input.rank}`);
  }
  if (input.dims) {
    input.dims.forEach((d, i) => {
      if (d !== undefined && d !== dims[i])
        throw new UserError(
          `${where}: tensor has shape [${dims.join(", ")}], model input "${input.name}" declares [${input.dims!.map((x) => x ?? "?").join(", ")}]`,
        );
    });
  }
  const values = rawNumbers(a);
  const data = input.type === "float32" && values instanceof Float32Array ? values : makeFeedData(input.type, Array.from(values));
  return { type: input.type, dims, data };
}

function zeros(input: ModelInputInfo, shape: readonly number[] | undefined): FeedTensor {
  const dims = shape ?? input.dims?.map((d) => d ?? 1);
  if (!dims) throw new UserError(`state input "${input.name}" has no declared shape: set evaluation.stateful.state[].shape`);
  return { type: input.type, dims, data: makeFeedData(input.type, new Array<number>(dims.reduce((a, b) => a * b, 1)).fill(0)) };
}

/** Cut each record's chunk input along its time axis into chunks; state inputs start at zero. */
function chunkRecords(
  records: SourceRecord[],
  cfg: FidelityEvaluation,
  inputs: readonly ModelInputInfo[],
  format: InputFormat,
  limit: number,
): FidelitySample[] {
  const spec = cfg.stateful!;
  const byName = new Map(inputs.map((i) => [i.name, i]));
  for (const s of spec.state) {
    if (!byName.has(s.input)) throw new UserError(`evaluation.stateful.state input "${s.input}" is not an input of the model`);
  }
  const stateNames = new Set(spec.state.map((s) => s.input));
  const dataInputs = inputs.filter((i) => !stateNames.has(i.name));
  const chunkName = spec.chunk_input ?? (dataInputs.length === 1 ? dataInputs[0]!.name : undefined);
  if (!chunkName || !byName.has(chunkName))
    throw new UserError(`evaluation.stateful.chunk_input must name the model input cut into chunks (inputs: ${dataInputs.map((i) => i.name).join(", ")})`);
  const chunkInput = byName.get(chunkName)!;
  const rank = chunkInput.rank ?? 2;
  const axis = spec.axis < 0 ? spec.axis + rank : spec.axis;
  const declared = chunkInput.dims?.[axis];
  const size = format === "wav" ? cfg.audio.chunk_samples : (spec.chunk_size ?? declared);
  if (!size) throw new UserError(`evaluation.stateful.chunk_size is needed: model input "${chunkName}" has no fixed size on axis ${spec.axis}`);
  const samples: FidelitySample[] = [];
  records.forEach((record, sequence) => {
    const seq = record.tensors[chunkName];
    if (!seq) throw new UserError(`sequence ${sequence}: no data for the chunk input "${chunkName}"`);
    // The sequence's own axes are the model input's without the leading batch axes; time is axis - (rank - seq rank).
    const timeAxis = axis - (rank - seq.dims.length);
    if (timeAxis < 0) throw new UserError(`sequence ${sequence}: array of shape [${seq.dims.join(", ")}] has no axis ${spec.axis} of input "${chunkName}"`);
    const length = seq.dims[timeAxis]!;
    const outer = seq.dims.slice(0, timeAxis).reduce((a, b) => a * b, 1);
    const inner = seq.dims.slice(timeAxis + 1).reduce((a, b) => a * b, 1);
    const values = rawNumbers(seq);
    // Whole chunks only: a partial tail would need padding the model never saw in training.
    for (let c = 0; (c + 1) * size <= length && samples.length < limit; c++) {
      const part = new Float64Array(outer * size * inner);
      for (let o = 0; o < outer; o++) {
        for (let t = 0; t < size; t++) {
          for (let i = 0; i < inner; i++) part[(o * size + t) * inner + i] = values[(o * length + c * size + t) * inner + i]!;
        }
      }
      const dims = [...seq.dims.slice(0, timeAxis), size, ...seq.dims.slice(timeAxis + 1)];
      const feeds: Feeds = { [chunkName]: toFeed({ dims, values: part }, chunkInput, `sequence ${sequence} chunk ${c}`) };
      for (const s of spec.state) feeds[s.input] = zeros(byName.get(s.input)!, s.shape);
      for (const other of dataInputs) {
        if (other.name !== chunkName) {
          const t = record.tensors[other.name];
          if (!t) throw new UserError(`sequence ${sequence}: no data for model input "${other.name}"`);
          feeds[other.name] = toFeed(t, other, `sequence ${sequence} ${other.name}`);
        }
      }
      samples.push({ feeds, label: record.label, sequence, chunk: c });
    }
  });
  if (samples.length === 0) throw new UserError(`the dataset has no whole chunk of ${size} along axis ${spec.axis} of "${chunkName}"`);
  return samples;
}

async function loadSamples(
  file: string,
  cfg: FidelityEvaluation,
  inputs: readonly ModelInputInfo[],
  limit: number,
): Promise<{ samples: FidelitySample[]; files: string[] }> {
  const format = cfg.format ?? (await detectFormat(file));
  const { records, files } = await readRecords(file, format, cfg, inputs);
  if (cfg.stateful) return { samples: chunkRecords(records, cfg, inputs, format, limit), files };
  const samples = records.slice(0, limit).map((r, i) => {
    const feeds: Feeds = {};
    for (const input of inputs) {
      const t = r.tensors[input.name];
      if (!t) throw new UserError(`${file}: sample ${i} has no tensor for model input "${input.name}"`, file);
      feeds[input.name] = toFeed(t, input, `${file}: sample ${i} ${input.name}`);
    }
    return { feeds, label: r.label, sequence: i, chunk: 0 };
  });
  if (samples.length === 0) throw new UserError(`${file}: dataset has no samples`, file);
  return { samples, files };
}

async function hashFiles(files: readonly string[], display: (f: string) => string): Promise<DataFileHash[]> {
  const out: DataFileHash[] = [];
  for (const f of files) out.push({ path: display(f), sha256: sha256(await readBytes(f, "data")) });
  return out;
}

export async function loadFidelityData(cfg: FidelityEvaluation, resolve: (p: string) => string, inputs: readonly ModelInputInfo[]): Promise<FidelityData> {
  const datasetPath = resolve(cfg.dataset);
  const display = (f: string): string => path.join(cfg.dataset, path.relative(datasetPath, f)) || cfg.dataset;
  const evalSet = await loadSamples(datasetPath, cfg, inputs, cfg.samples);
  const files = await hashFiles(evalSet.files, display);
  let calibrationBatches: Feeds[] = [];
  if (cfg.calibration) {
    const calibPath = resolve(cfg.calibration);
    if (calibPath === datasetPath)
      throw new UserError(
        `evaluation.calibration and evaluation.dataset are the same (${calibPath}); calibration data must be kept apart from evaluation data`,
      );
    const calib = await loadSamples(calibPath, cfg, inputs, cfg.calibration_samples);
    calibrationBatches = calib.samples.map((s) => s.feeds);
    files.push(...(await hashFiles(calib.files, (f) => path.join(cfg.calibration!, path.relative(calibPath, f)) || cfg.calibration!)));
  }
  // The metric module changes the result: it is part of the data the cache key hashes.
  if (cfg.metric) files.push(...(await hashFiles([resolve(cfg.metric.module)], () => cfg.metric!.module)));
  return { kind: "fidelity", samples: evalSet.samples, calibrationBatches, files, state: cfg.stateful?.state ?? [] };
}

/** Declared sizes of a graph input (undefined for symbolic or missing dims). */
export function declaredDims(v: ValueInfoProto): (number | undefined)[] | undefined {
  if (v.type?.value.case !== "tensorType" || !v.type.value.value.shape) return undefined;
  return v.type.value.value.shape.dim.map((d) => (d.value.case === "dimValue" ? Number(d.value.value) : undefined));
}
