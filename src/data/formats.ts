// Pure decoders for model-input files: .npy/.npz arrays, WAV audio, PNG/JPEG images and their preprocessing.
import zlib from "node:zlib";
import jpeg from "jpeg-js";
import { PNG } from "pngjs";
import wavefile from "wavefile";
import yauzl from "yauzl";
import type { ImagePreprocess } from "../config/schema.js";
import { UserError } from "../errors.js";
import { halfToFloat } from "../onnx/model.js";

/** A decoded array: row-major values and their shape. */
export interface RawArray {
  readonly dims: number[];
  readonly values: Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array | Int8Array | Int16Array | Uint16Array;
}

/** Numbers of a raw array (int64 as numbers: token ids and labels fit). */
export function rawNumbers(a: RawArray): ArrayLike<number> {
  return a.values instanceof BigInt64Array ? Array.from(a.values, Number) : a.values;
}

/** Parses a NumPy .npy file (format 1.0-3.0, little-endian or byte-sized types, C order). */
export function parseNpy(bytes: Uint8Array, where: string): RawArray {
  const magic = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59];
  if (bytes.length < 10 || magic.some((b, i) => bytes[i] !== b)) throw new UserError(`${where}: not a .npy file (bad magic)`);
  const major = bytes[6]!;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const headerStart = major === 1 ? 10 : 12;
  const header = new TextDecoder("latin1").decode(bytes.subarray(headerStart, headerStart + headerLen));
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || !fortran || shapeText === undefined) throw new UserError(`${where}: cannot read the .npy header ${JSON.stringify(header.trim())}`);
  if (fortran === "True") throw new UserError(`${where}: Fortran-order arrays are not supported; save with np.ascontiguousarray`);
  const dims = shapeText
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "")
    .map(Number);
  const count = dims.reduce((a, b) => a * b, 1);
  const data = bytes.subarray(headerStart + headerLen);
  const byteOrder = descr[0];
  const type = descr.slice(1);
  if (byteOrder === ">" && !type.endsWith("1")) throw new UserError(`${where}: big-endian arrays (${descr}) are not supported`);
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const need = (size: number): void => {
    if (data.length < count * size)
      throw new UserError(`${where}: data holds ${data.length} bytes, shape (${dims.join(", ")}) of ${descr} needs ${count * size}`);
  };
  const fill = <T extends RawArray["values"]>(out: T, size: number, read: (offset: number) => number | bigint): RawArray => {
    need(size);
    for (let i = 0; i < count; i++) (out as unknown as (number | bigint)[])[i] = read(i * size);
    return { dims, values: out };
  };
  switch (type) {
    case "f4":
      return fill(new Float32Array(count), 4, (o) => dv.getFloat32(o, true));
    case "f8":
      return fill(new Float64Array(count), 8, (o) => dv.getFloat64(o, true));
    case "f2":
      return fill(new Float32Array(count), 2, (o) => halfToFloat(dv.getUint16(o, true)));
    case "i8":
      return fill(new BigInt64Array(count), 8, (o) => dv.getBigInt64(o, true));
    case "u8":
      return fill(new BigInt64Array(count), 8, (o) => dv.getBigUint64(o, true));
    case "i4":
      return fill(new Int32Array(count), 4, (o) => dv.getInt32(o, true));
    case "i2":
      return fill(new Int16Array(count), 2, (o) => dv.getInt16(o, true));
    case "u2":
      return fill(new Uint16Array(count), 2, (o) => dv.getUint16(o, true));
    case "u1":
    case "b1":
      return fill(new Uint8Array(count), 1, (o) => dv.getUint8(o));
    case "i1":
      return fill(new Int8Array(count), 1, (o) => dv.getInt8(o));
    default:
      throw new UserError(`${where}: unsupported .npy dtype ${descr} (float16/32/64, int8-64, uint8/16/64, bool are read)`);
  }
}

/**
 * The members of a .npz (zip) archive as arrays, keyed by name without ".npy". The archive is read with yauzl
 * (zip64, data descriptors, sizes validated); each member's CRC-32 is checked against the central directory.
 */
export async function parseNpz(bytes: Uint8Array, where: string): Promise<Map<string, RawArray>> {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let zip: yauzl.ZipFile;
  try {
    zip = await yauzl.fromBufferPromise(buffer, { lazyEntries: true, validateEntrySizes: true, strictFileNames: false });
  } catch (err) {
    throw new UserError(`${where}: not a .npz (zip) archive (${(err as Error).message})`, where);
  }
  const out = new Map<string, RawArray>();
  try {
    for (;;) {
      const entry = await new Promise<yauzl.Entry | undefined>((resolve, reject) => {
        const cleanup = (): void => {
          zip.removeAllListeners("entry");
          zip.removeAllListeners("end");
          zip.removeAllListeners("error");
        };
        zip.once("entry", (e: yauzl.Entry) => (cleanup(), resolve(e)));
        zip.once("end", () => (cleanup(), resolve(undefined)));
        zip.once("error", (e: Error) => (cleanup(), reject(e)));
        zip.readEntry();
      });
      if (!entry) break;
      if (!entry.fileName.endsWith(".npy")) continue;
      const stream = await zip.openReadStreamPromise(entry);
      const chunks: Buffer[] = [];
      for await (const chunk of stream) chunks.push(chunk as Buffer);
      const member = Buffer.concat(chunks);
      const crc = zlib.crc32(member) >>> 0;
      if (crc !== entry.crc32 >>> 0) {
        throw new UserError(`${where}: member ${entry.fileName} is corrupt (CRC-32 ${hex(crc)}, the archive says ${hex(entry.crc32)})`, where);
      }
      out.set(entry.fileName.slice(0, -4), parseNpy(new Uint8Array(member.buffer, member.byteOffset, member.byteLength), `${where}:${entry.fileName}`));
    }
  } catch (err) {
    if (err instanceof UserError) throw err;
    throw new UserError(`${where}: cannot read the .npz archive (${(err as Error).message})`, where);
  } finally {
    zip.close();
  }
  return out;
}

const hex = (n: number): string => (n >>> 0).toString(16).padStart(8, "0");

export interface Audio {
  readonly sampleRate: number;
  /** Mono samples in [-1, 1]. */
  readonly samples: Float32Array;
}

/**
 * Decodes a WAV file (RIFF/RIFX/RF64; PCM 8-32 bit, IEEE float, extensible, A-law/mu-law) with the wavefile
 * decoder, converts it to float in [-1, 1] and mixes it to mono.
 */
export function parseWav(bytes: Uint8Array, where: string): Audio {
  const wav = new wavefile.WaveFile();
  try {
    wav.fromBuffer(bytes);
  } catch (err) {
    throw new UserError(`${where}: not a readable WAV file (${(err as Error).message})`, where);
  }
  const fmt = wav.fmt as { numChannels?: number; sampleRate?: number };
  const channels = fmt.numChannels ?? 0;
  const rate = fmt.sampleRate ?? 0;
  if (channels < 1 || rate < 1) throw new UserError(`${where}: WAV file with ${channels} channels at ${rate} Hz`, where);
  try {
    // Companded and ADPCM encodings expand to 16-bit PCM first.
    if (wav.bitDepth === "8m") wav.fromMuLaw();
    else if (wav.bitDepth === "8a") wav.fromALaw();
    else if (wav.bitDepth === "4") wav.fromIMAADPCM();
    if (wav.bitDepth !== "32f") wav.toBitDepth("32f");
  } catch (err) {
    throw new UserError(`${where}: unsupported WAV encoding (${wav.bitDepth} bits: ${(err as Error).message})`, where);
  }
  const interleaved = wav.getSamples(true, Float32Array) as unknown as Float32Array;
  const frames = Math.floor(interleaved.length / channels);
  const samples = new Float32Array(frames);
  for (let f = 0; f < frames; f++) {
    let s = 0;
    for (let c = 0; c < channels; c++) s += interleaved[f * channels + c]!;
    samples[f] = s / channels;
  }
  return { sampleRate: rate, samples };
}

/**
 * Resamples by linear interpolation after a moving-average low-pass when downsampling (enough for
 * comparing a float and a quantized model on the same input; not a studio resampler).
 */
export function resample(samples: Float32Array, from: number, to: number): Float32Array {
  if (from === to) return samples;
  let src = samples;
  if (to < from) {
    const width = Math.max(1, Math.round(from / to));
    if (width > 1) {
      src = new Float32Array(samples.length);
      let acc = 0;
      for (let i = 0; i < samples.length; i++) {
        acc += samples[i]!;
        if (i >= width) acc -= samples[i - width]!;
        src[i] = acc / Math.min(i + 1, width);
      }
    }
  }
  const length = Math.floor((samples.length * to) / from);
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) {
    const x = (i * from) / to;
    const i0 = Math.floor(x);
    const i1 = Math.min(i0 + 1, src.length - 1);
    const t = x - i0;
    out[i] = src[i0]! * (1 - t) + src[i1]! * t;
  }
  return out;
}

/** Fixed-size chunks; the last is zero-padded (an empty signal gives no chunk). */
export function chunkSignal(samples: Float32Array, size: number): Float32Array[] {
  const out: Float32Array[] = [];
  for (let start = 0; start < samples.length; start += size) {
    const c = new Float32Array(size);
    c.set(samples.subarray(start, Math.min(samples.length, start + size)));
    out.push(c);
  }
  return out;
}

export interface Image {
  readonly width: number;
  readonly height: number;
  /** RGBA, 8 bits per channel. */
  readonly rgba: Uint8Array;
}

/** Decodes PNG (pngjs) or JPEG (jpeg-js) by their magic bytes. */
export function decodeImage(bytes: Uint8Array, where: string): Image {
  try {
    if (bytes[0] === 0x89 && bytes[1] === 0x50) {
      const png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
      return { width: png.width, height: png.height, rgba: new Uint8Array(png.data.buffer, png.data.byteOffset, png.data.byteLength) };
    }
    if (bytes[0] === 0xff && bytes[1] === 0xd8) {
      const img = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true, maxMemoryUsageInMB: 256 });
      return { width: img.width, height: img.height, rgba: img.data };
    }
  } catch (err) {
    throw new UserError(`${where}: cannot decode image (${(err as Error).message})`);
  }
  throw new UserError(`${where}: not a PNG or JPEG file`);
}

/** Bilinear resize of an RGBA image (pixel centers aligned, as PIL and OpenCV do). */
export function resizeBilinear(img: Image, height: number, width: number): Image {
  if (img.width === width && img.height === height) return img;
  const out = new Uint8Array(width * height * 4);
  const sy = img.height / height;
  const sx = img.width / width;
  for (let y = 0; y < height; y++) {
    const fy = Math.min(Math.max((y + 0.5) * sy - 0.5, 0), img.height - 1);
    const y0 = Math.floor(fy);
    const y1 = Math.min(y0 + 1, img.height - 1);
    const ty = fy - y0;
    for (let x = 0; x < width; x++) {
      const fx = Math.min(Math.max((x + 0.5) * sx - 0.5, 0), img.width - 1);
      const x0 = Math.floor(fx);
      const x1 = Math.min(x0 + 1, img.width - 1);
      const tx = fx - x0;
      for (let c = 0; c < 4; c++) {
        const p = (yy: number, xx: number): number => img.rgba[(yy * img.width + xx) * 4 + c]!;
        const v = (p(y0, x0) * (1 - tx) + p(y0, x1) * tx) * (1 - ty) + (p(y1, x0) * (1 - tx) + p(y1, x1) * tx) * ty;
        out[(y * width + x) * 4 + c] = Math.round(v);
      }
    }
  }
  return { width, height, rgba: out };
}

export function centerCrop(img: Image, height: number, width: number): Image {
  if (height > img.height || width > img.width) throw new RangeError(`crop ${height}x${width} is larger than the image ${img.height}x${img.width}`);
  const top = Math.floor((img.height - height) / 2);
  const left = Math.floor((img.width - width) / 2);
  const out = new Uint8Array(width * height * 4);
  for (let y = 0; y < height; y++) out.set(img.rgba.subarray(((top + y) * img.width + left) * 4, ((top + y) * img.width + left + width) * 4), y * width * 4);
  return { width, height, rgba: out };
}

/** The image as a float tensor [1, C, H, W] or [1, H, W, C] after the preprocessing spec. */
export function imageToTensor(decoded: Image, spec: ImagePreprocess, where: string): RawArray {
  let img = decoded;
  if (spec.resize) img = resizeBilinear(img, spec.resize[0], spec.resize[1]);
  if (spec.crop) {
    try {
      img = centerCrop(img, spec.crop[0], spec.crop[1]);
    } catch (err) {
      throw new UserError(`${where}: ${(err as Error).message}; set preprocess.resize first`);
    }
  }
  const order = spec.channels === "gray" ? [-1] : spec.channels === "bgr" ? [2, 1, 0] : [0, 1, 2];
  const c = order.length;
  const { width: w, height: h } = img;
  const at = (list: readonly number[], i: number): number => list[list.length === 1 ? 0 : i]!;
  const out = new Float32Array(c * h * w);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const p = (y * w + x) * 4;
      for (let ch = 0; ch < c; ch++) {
        const src = order[ch]!;
        // ITU-R BT.601 luma for grayscale, as PIL's convert("L").
        const raw = src < 0 ? 0.299 * img.rgba[p]! + 0.587 * img.rgba[p + 1]! + 0.114 * img.rgba[p + 2]! : img.rgba[p + src]!;
        const v = (raw * spec.scale - at(spec.mean, ch)) / at(spec.std, ch);
        out[spec.layout === "NCHW" ? ch * h * w + y * w + x : (y * w + x) * c + ch] = v;
      }
    }
  }
  return { dims: spec.layout === "NCHW" ? [1, c, h, w] : [1, h, w, c], values: out };
}
