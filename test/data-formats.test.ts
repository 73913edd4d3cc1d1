import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { crc32, deflateRawSync } from "node:zlib";
import jpeg from "jpeg-js";
import { PNG } from "pngjs";
import { describe, expect, it } from "vitest";
import { parseConfig } from "../src/config/load.js";
import type { FidelityEvaluation } from "../src/config/schema.js";
import { loadFidelityData } from "../src/tasks/fidelity.js";
import { chunkSignal, decodeImage, imageToTensor, parseNpy, parseNpz, parseWav, resample } from "../src/data/formats.js";
import type { ModelInputInfo } from "../src/data/index.js";

export function npyBytes(descr: string, shape: number[], data: ArrayBufferView): Uint8Array {
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${shape.join(", ")}${shape.length === 1 ? "," : ""}), }`;
  header += " ".repeat(63 - ((header.length + 10) % 64)) + "\n";
  const out = new Uint8Array(10 + header.length + data.byteLength);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  new DataView(out.buffer).setUint16(8, header.length, true);
  out.set(new TextEncoder().encode(header), 10);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), 10 + header.length);
  return out;
}

/** A zip archive (what np.savez writes): stored or deflated members with their CRC-32 (the reader checks it). */
export function zipBytes(members: Record<string, Uint8Array>, deflate: boolean): Uint8Array {
  const locals: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const [name, raw] of Object.entries(members)) {
    const body = deflate ? deflateRawSync(raw) : Buffer.from(raw);
    const nameBytes = Buffer.from(name);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(deflate ? 8 : 0, 8);
    local.writeUInt32LE(crc32(raw), 14);
    local.writeUInt32LE(body.length, 18);
    local.writeUInt32LE(raw.length, 22);
    local.writeUInt16LE(nameBytes.length, 26);
    const cd = Buffer.alloc(46);
    cd.writeUInt32LE(0x02014b50, 0);
    cd.writeUInt16LE(deflate ? 8 : 0, 10);
    cd.writeUInt32LE(crc32(raw), 16);
    cd.writeUInt32LE(body.length, 20);
    cd.writeUInt32LE(raw.length, 24);
    cd.writeUInt16LE(nameBytes.length, 28);
    cd.writeUInt32LE(offset, 42);
    locals.push(local, nameBytes, body);
    central.push(cd, nameBytes);
    offset += 30 + nameBytes.length + body.length;
  }
  const cdSize = central.reduce((a, b) => a + b.length, 0);
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(Object.keys(members).length, 8);
  eocd.writeUInt16LE(Object.keys(members).length, 10);
  eocd.writeUInt32LE(cdSize, 12);
  eocd.writeUInt32LE(offset, 16);
  return new Uint8Array(Buffer.concat([...locals, ...central, eocd]));
}

function wavBytes(rate: number, channels: number, frames: number[][]): Uint8Array {
  const data = Buffer.alloc(frames.length * channels * 2);
  frames.forEach((f, i) => f.forEach((v, c) => data.writeInt16LE(Math.round(v * 32767), (i * channels + c) * 2)));
  const h = Buffer.alloc(44);
  h.write("RIFF", 0);
  h.writeUInt32LE(36 + data.length, 4);
  h.write("WAVE", 8);
  h.write("fmt ", 12);
  h.writeUInt32LE(16, 16);
  h.writeUInt16LE(1, 20);
  h.writeUInt16LE(channels, 22);
  h.writeUInt32LE(rate, 24);
  h.writeUInt32LE(rate * channels * 2, 28);
  h.writeUInt16LE(channels * 2, 32);
  h.writeUInt16LE(16, 34);
  h.write("data", 36);
  h.writeUInt32LE(data.length, 40);
  return new Uint8Array(Buffer.concat([h, data]));
}

/** A w x h RGBA image whose pixel (x, y) is (x, y, 100, 255). */
function gradient(w: number, h: number): Uint8Array {
  const rgba = new Uint8Array(w * h * 4);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) rgba.set([x, y, 100, 255], (y * w + x) * 4);
  return rgba;
}

function fidelityConfig(yaml: string): FidelityEvaluation {
  const c = parseConfig(`model: m.onnx\nevaluation:\n  task: fidelity\n${yaml}`, "quantgate.yml");
  return c.evaluation as FidelityEvaluation;
}

describe("input file formats", () => {
  it("reads .npy arrays of float32, float16 and int64", () => {
    const f = parseNpy(npyBytes("<f4", [2, 3], Float32Array.from([1, 2, 3, 4, 5, 6.5])), "a.npy");
    expect(f.dims).toEqual([2, 3]);
    expect(Array.from(f.values as Float32Array)).toEqual([1, 2, 3, 4, 5, 6.5]);
    const h = parseNpy(npyBytes("<f2", [2], Uint16Array.from([0x3c00, 0xc000])), "h.npy");
    expect(Array.from(h.values as Float32Array)).toEqual([1, -2]);
    const i = parseNpy(npyBytes("<i8", [3], BigInt64Array.from([7n, -1n, 255n])), "i.npy");
    expect(Array.from(i.values as BigInt64Array)).toEqual([7n, -1n, 255n]);
    expect(() => parseNpy(new Uint8Array(20), "bad.npy")).toThrow(/bad\.npy: not a \.npy file/);
  });

  it("reads .npz archives, stored and deflated", async () => {
    for (const deflate of [false, true]) {
      const z = await parseNpz(
        zipBytes(
          { "x.npy": npyBytes("<f4", [2, 2], Float32Array.from([1, 2, 3, 4])), "labels.npy": npyBytes("<i8", [2], BigInt64Array.from([0n, 1n])) },
          deflate,
        ),
        "d.npz",
      );
      expect([...z.keys()].sort()).toEqual(["labels", "x"]);
      expect(Array.from(z.get("x")!.values as Float32Array)).toEqual([1, 2, 3, 4]);
    }
  });

  it("reads WAV as mono, resamples and cuts zero-padded chunks", () => {
    const frames = Array.from({ length: 800 }, (_, i) => [Math.sin(i / 10) * 0.5, Math.sin(i / 10) * 0.5]);
    const audio = parseWav(wavBytes(8000, 2, frames), "a.wav");
    expect(audio.sampleRate).toBe(8000);
    expect(audio.samples.length).toBe(800);
    expect(audio.samples[10]).toBeCloseTo(Math.sin(1) * 0.5, 3);
    const up = resample(audio.samples, 8000, 16000);
    expect(up.length).toBe(1600);
    expect(up[21]).toBeCloseTo((audio.samples[10]! + audio.samples[11]!) / 2, 4);
    const chunks = chunkSignal(up, 512);
    expect(chunks.length).toBe(4);
    expect(chunks[3]![1600 - 3 * 512]).toBe(0);
  });

  it("decodes PNG and JPEG and applies resize, crop, scale, mean/std, layout and channel order", () => {
    const png = PNG.sync.write(Object.assign(new PNG({ width: 8, height: 6 }), { data: Buffer.from(gradient(8, 6)) }));
    const img = decodeImage(new Uint8Array(png), "g.png");
    expect([img.width, img.height]).toEqual([8, 6]);
    const spec = { scale: 1, mean: [0], std: [1], layout: "NCHW" as const, channels: "rgb" as const, crop: [4, 4] as [number, number] };
    const t = imageToTensor(img, spec, "g.png");
    expect(t.dims).toEqual([1, 3, 4, 4]);
    // Center crop 4x4 of 8x6 starts at x=2, y=1: pixel (0,0) of the crop is (2, 1, 100).
    expect([t.values[0], t.values[16], t.values[32]]).toEqual([2, 1, 100]);
    const nhwc = imageToTensor(img, { ...spec, layout: "NHWC", channels: "bgr", mean: [100, 0, 0], std: [2, 1, 1] }, "g.png");
    expect(nhwc.dims).toEqual([1, 4, 4, 3]);
    expect([nhwc.values[0], nhwc.values[1], nhwc.values[2]]).toEqual([0, 1, 2]);
    const small = imageToTensor(img, { ...spec, crop: undefined, resize: [3, 4] }, "g.png");
    expect(small.dims).toEqual([1, 3, 3, 4]);
    const jpg = jpeg.encode({ width: 8, height: 6, data: gradient(8, 6) }, 95);
    const decoded = decodeImage(new Uint8Array(jpg.data), "g.jpg");
    expect(decoded.width).toBe(8);
    expect(Math.abs(decoded.rgba[(2 * 8 + 5) * 4 + 2]! - 100)).toBeLessThan(6);
  });
});

describe("fidelity datasets", () => {
  const image: ModelInputInfo = { name: "image", type: "float32", rank: 4, dims: [undefined, 3, 4, 4] };

  it("labels an image folder by its sorted class subfolders", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "qg-img-"));
    for (const [c, count] of [
      ["cat", 2],
      ["ant", 1],
    ] as const) {
      await mkdir(path.join(dir, "eval", c), { recursive: true });
      for (let i = 0; i < count; i++) {
        const png = PNG.sync.write(Object.assign(new PNG({ width: 4, height: 4 }), { data: Buffer.from(gradient(4, 4)) }));
        await writeFile(path.join(dir, "eval", c, `${i}.png`), png);
      }
    }
    const cfg = fidelityConfig("  dataset: eval\n");
    const data = await loadFidelityData(cfg, (p) => path.join(dir, p), [image]);
    expect(data.samples.map((s) => s.label)).toEqual([0, 1, 1]);
    expect(data.samples[0]!.feeds.image!.dims).toEqual([1, 3, 4, 4]);
    expect(data.files.map((f) => f.path)).toEqual([path.join("eval", "ant", "0.png"), path.join("eval", "cat", "0.png"), path.join("eval", "cat", "1.png")]);
  });

  it("feeds several named inputs from an .npz and checks declared shapes", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "qg-npz-"));
    const a = npyBytes("<f4", [3, 2], Float32Array.from([1, 2, 3, 4, 5, 6]));
    const b = npyBytes("<i8", [3, 1], BigInt64Array.from([1n, 2n, 3n]));
    await writeFile(path.join(dir, "d.npz"), zipBytes({ "a.npy": a, "b.npy": b }, true));
    const inputs: ModelInputInfo[] = [
      { name: "a", type: "float32", rank: 2, dims: [undefined, 2] },
      { name: "b", type: "int64", rank: 2, dims: [undefined, 1] },
    ];
    const data = await loadFidelityData(fidelityConfig("  dataset: d.npz\n"), (p) => path.join(dir, p), inputs);
    expect(data.samples.length).toBe(3);
    expect(Array.from(data.samples[2]!.feeds.a!.data as Float32Array)).toEqual([5, 6]);
    expect(data.samples[2]!.feeds.b!.data).toEqual(BigInt64Array.from([3n]));
    const wrong: ModelInputInfo[] = [{ ...inputs[0]!, dims: [undefined, 5] }, inputs[1]!];
    await expect(loadFidelityData(fidelityConfig("  dataset: d.npz\n"), (p) => path.join(dir, p), wrong)).rejects.toThrow(/declares \[\?, 5\]/);
  });

  it("cuts a stateful sequence into whole chunks with the state inputs at zero", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "qg-seq-"));
    await writeFile(
      path.join(dir, "ids.npy"),
      npyBytes(
        "<i8",
        [10],
        BigInt64Array.from({ length: 10 }, (_, i) => BigInt(i)),
      ),
    );
    const cfg = fidelityConfig("  dataset: ids.npy\n  stateful:\n    axis: 1\n    state:\n      - { input: h, output: h_out }\n");
    const inputs: ModelInputInfo[] = [
      { name: "ids", type: "int64", rank: 2, dims: [1, 4] },
      { name: "h", type: "float32", rank: 2, dims: [1, 3] },
    ];
    const data = await loadFidelityData(cfg, (p) => path.join(dir, p), inputs);
    expect(data.samples.map((s) => [s.sequence, s.chunk])).toEqual([
      [0, 0],
      [0, 1],
    ]);
    expect(data.samples[1]!.feeds.ids!.data).toEqual(BigInt64Array.from([4n, 5n, 6n, 7n]));
    expect(Array.from(data.samples[0]!.feeds.h!.data as Float32Array)).toEqual([0, 0, 0]);
    expect(data.state).toEqual([{ input: "h", output: "h_out" }]);
  });

  it("cuts windows with hop and context (zeros before the start) and feeds constant inputs with the model's types", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "qg-ctx-"));
    await writeFile(
      path.join(dir, "a.npy"),
      npyBytes(
        "<f4",
        [14],
        Float32Array.from({ length: 14 }, (_, i) => i),
      ),
    );
    const cfg = fidelityConfig(
      "  dataset: a.npy\n  constant_inputs: { sr: 16000 }\n  stateful:\n    chunk_size: 4\n    context: 2\n    hop: 3\n    state:\n      - { input: h, output: h_out }\n",
    );
    const inputs: ModelInputInfo[] = [
      { name: "x", type: "float32", rank: 2, dims: [1, 6] },
      { name: "sr", type: "int64", rank: 0, dims: [] },
      { name: "h", type: "float32", rank: 2, dims: [1, 3] },
    ];
    const data = await loadFidelityData(cfg, (p) => path.join(dir, p), inputs);
    const windows = data.samples.map((s) => Array.from(s.feeds.x!.data as Float32Array));
    expect(windows).toEqual([
      [0, 0, 0, 1, 2, 3],
      [1, 2, 3, 4, 5, 6],
      [4, 5, 6, 7, 8, 9],
      [7, 8, 9, 10, 11, 12],
    ]);
    expect(data.samples[0]!.feeds.sr).toEqual({ type: "int64", dims: [], data: BigInt64Array.from([16000n]) });
    expect(data.count).toMatchObject({ evaluated: 1, total: 1, sequences: 4, sequenceUnit: "chunks" });
    expect(data.count.leftOut).toMatch(/1 trailing element/);
    await expect(loadFidelityData(fidelityConfig("  dataset: a.npy\n  constant_inputs: { rate: 1 }\n"), (p) => path.join(dir, p), inputs)).rejects.toThrow(
      /constant_inputs\.rate: the model has no input "rate"/,
    );
  });
});
