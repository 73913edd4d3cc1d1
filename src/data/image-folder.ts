// Folders of images as model inputs, and mask images as class maps: format reading only (no task knowledge).
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import type { ImagePreprocess } from "../config/schema.js";
import { UserError } from "../errors.js";
import { decodeImage, imageToTensor } from "./formats.js";
import type { ModelInputInfo } from "./index.js";
import type { FeedTensor } from "./tensors.js";

const IMAGE_EXT = /\.(png|jpe?g)$/i;

async function readBytes(file: string, what: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(file));
  } catch (err) {
    throw new UserError(`${file}: cannot read ${what} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, file);
  }
}

/**
 * The .png/.jpg/.jpeg files directly in a folder (subfolders are not read), as absolute paths sorted by file name
 * (JavaScript's default string order: "10.png" sorts before "2.png", so number files with leading zeros).
 */
export async function listImages(dir: string): Promise<string[]> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    throw new UserError(`${dir}: cannot read the image folder (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, dir);
  }
  const files = entries
    .filter((e) => e.isFile() && IMAGE_EXT.test(e.name))
    .map((e) => e.name)
    .sort();
  if (files.length === 0) throw new UserError(`${dir}: no .png or .jpg images found`, dir);
  return files.map((f) => path.join(path.resolve(dir), f));
}

/** One image file as the float32 feed of an image input ([1, C, H, W] or [1, H, W, C] after `spec`). */
export async function readImageFeed(file: string, spec: ImagePreprocess, input: ModelInputInfo): Promise<FeedTensor> {
  const tensor = imageToTensor(decodeImage(await readBytes(file, "image"), file), spec, file);
  if (input.type !== "float32") throw new UserError(`model input "${input.name}" takes ${input.type}; images are fed as float32`);
  if (input.rank !== undefined && input.rank !== tensor.dims.length)
    throw new UserError(`${file}: an image is a rank-4 tensor [${tensor.dims.join(", ")}], model input "${input.name}" has rank ${input.rank}`, file);
  input.dims?.forEach((d, i) => {
    if (d !== undefined && d !== tensor.dims[i])
      throw new UserError(
        `${file}: the image becomes [${tensor.dims.join(", ")}], model input "${input.name}" declares [${input.dims!.map((x) => x ?? "?").join(", ")}]; set preprocess.resize, crop, channels or layout`,
        file,
      );
  });
  return { type: "float32", dims: tensor.dims, data: tensor.values as Float32Array };
}

/** A mask image as one value per pixel (the first channel: the grey level of a greyscale PNG), row-major. */
export async function readMaskImage(file: string): Promise<{ width: number; height: number; values: Uint8Array }> {
  const bytes = await readBytes(file, "mask image");
  // JPEG is lossy: class indices would not survive it.
  if (!(bytes[0] === 0x89 && bytes[1] === 0x50)) throw new UserError(`${file}: a mask must be a PNG image (lossless), one class index per pixel`, file);
  const img = decodeImage(bytes, file);
  const values = new Uint8Array(img.width * img.height);
  for (let i = 0; i < values.length; i++) values[i] = img.rgba[i * 4]!;
  return { width: img.width, height: img.height, values };
}
