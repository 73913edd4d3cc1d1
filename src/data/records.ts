// Dataset format readers: named tensors and labels from JSONL, .npy/.npz, image folders or WAV audio,
// fitted to the model's inputs. No task knowledge: tasks pass the reading options they need.
import { readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import type { ValueInfoProto } from "onnx-buf";
import type { ImagePreprocess, InputFormat } from "../config/schema.js";
import { UserError } from "../errors.js";
import { chunkSignal, decodeImage, imageToTensor, parseNpy, parseNpz, parseWav, rawNumbers, resample, type RawArray } from "./formats.js";
import { flattenNested, sha256, type DataFileHash, type ModelInputInfo } from "./index.js";
import { makeFeedData, type FeedTensor } from "./tensors.js";

/** How a source is read; every field comes from the task's config. */
export interface SourceOptions {
  /** Default: from the extension (a folder: images, unless it holds .wav files). */
  readonly format?: InputFormat | undefined;
  /** The model input a single-input format (npy, images, wav) feeds (default: the only data input). */
  readonly input?: string | undefined;
  readonly inputsField: string;
  /** jsonl: the label field; npz: the labels array ("label" reads "labels"); npy: a second .npy file of labels. */
  readonly labelField: string;
  readonly preprocess: ImagePreprocess;
  readonly audio: { readonly sample_rate: number; readonly chunk_samples: number };
  /** Records are whole sequences (cut into chunks later): a 1-D npy is one sequence, a WAV file one record. */
  readonly sequences: boolean;
  /** Inputs the source does not feed (state inputs, constant inputs). */
  readonly skipInputs: ReadonlySet<string>;
}

/** One record of a source: a tensor per named input (before batching and chunking), and a label. */
export interface SourceRecord {
  readonly tensors: Record<string, RawArray>;
  readonly label: number | undefined;
  /** The file (and line) it came from. */
  readonly where: string;
}

const IMAGE_EXT = /\.(png|jpe?g)$/i;

async function listFiles(dir: string, accept: RegExp): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  return entries
    .filter((e) => e.isFile() && accept.test(e.name))
    .map((e) => path.join(dir, e.name))
    .sort();
}

export async function readBytes(file: string, what: string): Promise<Uint8Array> {
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

function singleInput(cfg: SourceOptions, inputs: readonly ModelInputInfo[], format: string): string {
  if (cfg.input) {
    if (!inputs.some((i) => i.name === cfg.input))
      throw new UserError(`evaluation.input "${cfg.input}" is not an input of the model (inputs: ${inputs.map((i) => i.name).join(", ")})`);
    return cfg.input;
  }
  const data = inputs.filter((i) => !cfg.skipInputs.has(i.name));
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

/** Reads every record of a dataset file or folder. */
export async function readSource(
  file: string,
  cfg: SourceOptions,
  inputs: readonly ModelInputInfo[],
): Promise<{ records: SourceRecord[]; files: string[]; format: InputFormat }> {
  const format = cfg.format ?? (await detectFormat(file));
  return { ...(await readRecords(file, format, cfg, inputs)), format };
}

async function readRecords(
  file: string,
  format: InputFormat,
  cfg: SourceOptions,
  inputs: readonly ModelInputInfo[],
): Promise<{ records: SourceRecord[]; files: string[] }> {
  switch (format) {
    case "jsonl": {
      const text = new TextDecoder().decode(await readBytes(file, "dataset"));
      const records: SourceRecord[] = [];
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
        const tensors = row[cfg.inputsField];
        if (typeof tensors !== "object" || tensors === null)
          throw new UserError(`${where}: missing "${cfg.inputsField}" object of named input tensors`, file, i + 1);
        const out: Record<string, RawArray> = {};
        for (const input of inputs) {
          const value = (tensors as Record<string, unknown>)[input.name];
          if (value === undefined) {
            if (cfg.skipInputs.has(input.name)) continue;
            throw new UserError(`${where}: "${cfg.inputsField}" has no tensor for model input "${input.name}"`, file, i + 1);
          }
          out[input.name] = nested(value, `${where} ${cfg.inputsField}.${input.name}`);
        }
        const label = row[cfg.labelField];
        if (label !== undefined && label !== null && typeof label !== "number")
          throw new UserError(`${where}: "${cfg.labelField}" must be a number, got ${JSON.stringify(label)?.slice(0, 40)}`, file, i + 1);
        records.push({ tensors: out, label: typeof label === "number" ? label : undefined, where });
      });
      return { records, files: [file] };
    }
    case "npy": {
      const name = singleInput(cfg, inputs, "npy");
      const array = parseNpy(await readBytes(file, "dataset"), file);
      let labels: ArrayLike<number> | undefined;
      const files = [file];
      if (cfg.labelField.endsWith(".npy")) {
        const labelFile = path.resolve(path.dirname(file), cfg.labelField);
        labels = rawNumbers(parseNpy(await readBytes(labelFile, "labels"), labelFile));
        files.push(labelFile);
      }
      // With a stateful model a 1-D array is one sequence; otherwise axis 0 indexes samples.
      if (cfg.sequences && array.dims.length === 1) return { records: [{ tensors: { [name]: array }, label: labels?.[0], where: file }], files };
      const count = array.dims[0] ?? 1;
      return {
        records: Array.from({ length: count }, (_, i) => ({ tensors: { [name]: slice0(array, i) }, label: labels?.[i], where: `${file}[${i}]` })),
        files,
      };
    }
    case "npz": {
      const arrays = await parseNpz(await readBytes(file, "dataset"), file);
      const wanted = inputs.filter((i) => !cfg.skipInputs.has(i.name));
      const missing = wanted.filter((i) => !arrays.has(i.name));
      if (missing.length)
        throw new UserError(`${file}: no array for model input(s) ${missing.map((i) => i.name).join(", ")} (arrays: ${[...arrays.keys()].join(", ")})`, file);
      const count = Math.min(...wanted.map((i) => arrays.get(i.name)!.dims[0] ?? 1));
      const labelArray = arrays.get(cfg.labelField === "label" ? "labels" : cfg.labelField);
      const labels = labelArray ? rawNumbers(labelArray) : undefined;
      return {
        records: Array.from({ length: count }, (_, r) => ({
          tensors: Object.fromEntries(wanted.map((i) => [i.name, slice0(arrays.get(i.name)!, r)])),
          label: labels?.[r],
          where: `${file}[${r}]`,
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
        records.push({
          tensors: { [name]: imageToTensor(decodeImage(await readBytes(e.file, "image"), e.file), cfg.preprocess, e.file) },
          label: e.label,
          where: e.file,
        });
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
        if (cfg.sequences) {
          // One sequence per file, zero-padded to whole chunks; the chunking below cuts it.
          const size = cfg.audio.chunk_samples;
          const padded = new Float32Array(Math.max(1, Math.ceil(samples.length / size)) * size);
          padded.set(samples);
          records.push({ tensors: { [name]: { dims: [padded.length], values: padded } }, label: undefined, where: f });
        } else {
          for (const c of chunkSignal(samples, cfg.audio.chunk_samples))
            records.push({ tensors: { [name]: { dims: [c.length], values: c } }, label: undefined, where: f });
        }
      }
      return { records, files };
    }
  }
}

/** Fit an array to a model input: add leading 1s (batch) up to its rank, and take its element type. */
export function toFeed(a: RawArray, input: ModelInputInfo, where: string): FeedTensor {
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

export function zeros(input: ModelInputInfo, shape: readonly number[] | undefined): FeedTensor {
  const dims = shape ?? input.dims?.map((d) => d ?? 1);
  if (!dims) throw new UserError(`state input "${input.name}" has no declared shape: set evaluation.stateful.state[].shape`);
  return { type: input.type, dims, data: makeFeedData(input.type, new Array<number>(dims.reduce((a, b) => a * b, 1)).fill(0)) };
}

export async function hashFiles(files: readonly string[], display: (f: string) => string): Promise<DataFileHash[]> {
  const out: DataFileHash[] = [];
  for (const f of files) out.push({ path: display(f), sha256: sha256(await readBytes(f, "data")) });
  return out;
}

/** Declared sizes of a graph input (undefined for symbolic or missing dims). */
export function declaredDims(v: ValueInfoProto): (number | undefined)[] | undefined {
  if (v.type?.value.case !== "tensorType" || !v.type.value.value.shape) return undefined;
  return v.type.value.value.shape.dim.map((d) => (d.value.case === "dimValue" ? Number(d.value.value) : undefined));
}
