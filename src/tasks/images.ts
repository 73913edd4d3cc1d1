// Shared by the image tasks (text recognition, segmentation): a folder of images as samples, calibration batches,
// data hashes, and one output of both sessions per sample.
import { readFile } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import type { ImagePreprocess } from "../config/schema.js";
import { UserError } from "../errors.js";
import { listImages, readImageFeed } from "../data/image-folder.js";
import { sha256, type DataFileHash, type ModelInputInfo } from "../data/index.js";
import { toOrtFeeds, type Feeds } from "../data/tensors.js";
import type { Ort, Session } from "../runtime/ort.js";

/**
 * `evaluation.constant_inputs`: values fed as they are to named model inputs in every call (e.g. a sample rate
 * `sr: 16000`); the element type is the model input's. Declared here, in a module without a config import, so both
 * the image tasks and the config schema use this one definition.
 */
export const constantInputsSchema = z.record(z.string().min(1), z.union([z.number(), z.array(z.number()), z.array(z.array(z.number()))])).default({});

export interface ImageSample {
  /** Absolute path of the image. */
  readonly file: string;
  readonly feeds: Feeds;
}

/** The model input images feed: `name` when given, else the model's only input. */
export function imageInput(inputs: readonly ModelInputInfo[], name: string | undefined): ModelInputInfo {
  if (name) {
    const input = inputs.find((i) => i.name === name);
    if (!input) throw new UserError(`evaluation.input "${name}" is not an input of the model (inputs: ${inputs.map((i) => i.name).join(", ")})`);
    return input;
  }
  if (inputs.length !== 1)
    throw new UserError(`an image folder feeds one input, but the model takes ${inputs.map((i) => i.name).join(", ")}: set evaluation.input`);
  return inputs[0]!;
}

/** Every image of a folder in evaluation order (see listImages), and feeds for the first `limit` of them. */
export async function loadImageFolder(
  dir: string,
  spec: ImagePreprocess,
  input: ModelInputInfo,
  limit: number,
  constants: Feeds = {},
): Promise<{ all: string[]; samples: ImageSample[] }> {
  const all = await listImages(dir);
  const samples: ImageSample[] = [];
  for (const file of all.slice(0, limit)) samples.push({ file, feeds: { ...constants, [input.name]: await readImageFeed(file, spec, input) } });
  return { all, samples };
}

/** Calibration batches from a second image folder, kept apart from the evaluation folder. */
export async function loadCalibrationImages(
  dir: string,
  datasetDir: string,
  spec: ImagePreprocess,
  input: ModelInputInfo,
  limit: number,
  constants: Feeds = {},
): Promise<ImageSample[]> {
  if (path.resolve(dir) === path.resolve(datasetDir))
    throw new UserError(`evaluation.calibration and evaluation.dataset are the same folder (${dir}); calibration data must be kept apart from evaluation data`);
  return (await loadImageFolder(dir, spec, input, limit, constants)).samples;
}

/** Hashes of data files for the work cache, shown as `display(file)`. */
export async function hashFiles(files: readonly string[], display: (file: string) => string): Promise<DataFileHash[]> {
  const out: DataFileHash[] = [];
  for (const f of files) {
    let bytes: Buffer;
    try {
      bytes = await readFile(f);
    } catch (err) {
      throw new UserError(`${f}: cannot read data (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, f);
    }
    out.push({ path: display(f), sha256: sha256(bytes) });
  }
  return out;
}

/** A path under an absolute folder shown under the config's spelling of that folder. */
export function displayUnder(configPath: string, absoluteDir: string): (file: string) => string {
  return (file) => path.join(configPath, path.relative(absoluteDir, file)) || configPath;
}

/** The output a task reads: `name` when given (it must exist), else the model's only output. */
export function pickOutput(session: Session, name: string | undefined): string {
  if (name) {
    if (!session.outputNames.includes(name))
      throw new UserError(`evaluation.output: the model has no output "${name}" (outputs: ${session.outputNames.join(", ")})`);
    return name;
  }
  if (session.outputNames.length !== 1) throw new UserError(`the model has several outputs (${session.outputNames.join(", ")}): set evaluation.output`);
  return session.outputNames[0]!;
}

export interface OutputValue {
  readonly dims: readonly number[];
  readonly data: ArrayLike<number | bigint>;
}

/** Runs both sessions on each sample and hands `take` the chosen output of each, in sample order. */
export async function runBoth(
  ort: Ort,
  float: Session,
  quantized: Session,
  samples: readonly ImageSample[],
  output: string,
  take: (floatOut: OutputValue, quantOut: OutputValue, index: number) => void,
): Promise<void> {
  for (const [i, s] of samples.entries()) {
    const rf = await float.run(toOrtFeeds(ort, s.feeds), [output]);
    const rq = await quantized.run(toOrtFeeds(ort, s.feeds), [output]);
    const f = rf[output];
    const q = rq[output];
    if (!f || !q) throw new Error(`internal: output "${output}" missing from a session's results`);
    take({ dims: f.dims, data: f.data as ArrayLike<number | bigint> }, { dims: q.dims, data: q.data as ArrayLike<number | bigint> }, i);
  }
}
