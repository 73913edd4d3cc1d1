// Issue 11.16: .npz read with a maintained zip library (stored, deflated, data descriptors, zip64, CRC checked)
// and WAV with a maintained decoder, on files written by numpy, Info-ZIP and sox (test/fixtures/third-party).
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parseNpz, parseWav } from "../src/data/formats.js";
import { REPO_ROOT } from "./helpers/action.js";

const DIR = path.join(REPO_ROOT, "test", "fixtures", "third-party");
const bytes = (name: string): Uint8Array => new Uint8Array(readFileSync(path.join(DIR, name)));
const ref = JSON.parse(readFileSync(path.join(DIR, "reference.json"), "utf8")) as {
  npz: { x: number[][]; labels: number[] };
  [wav: string]: { rate: number; frames: number; first: number[] } | unknown;
};
const wavRef = (name: string): { rate: number; frames: number; first: number[] } => ref[name] as { rate: number; frames: number; first: number[] };

describe(".npz written by numpy", () => {
  for (const name of ["numpy-savez.npz", "numpy-savez-compressed.npz", "numpy-streamed.npz", "numpy-zip64.npz"]) {
    it(`reads ${name}`, async () => {
      const arrays = await parseNpz(bytes(name), name);
      expect([...arrays.keys()].sort()).toEqual(["labels", "x"]);
      const x = arrays.get("x")!;
      expect(x.dims).toEqual([3, 4]);
      expect(Array.from(x.values as Float32Array)).toEqual(ref.npz.x.flat());
      expect(Array.from(arrays.get("labels")!.values as BigInt64Array, Number)).toEqual(ref.npz.labels);
    });
  }

  it("refuses a member whose CRC-32 does not match, naming the file and member", async () => {
    await expect(parseNpz(bytes("numpy-corrupt.npz"), "numpy-corrupt.npz")).rejects.toThrow(
      /numpy-corrupt\.npz: member x\.npy is corrupt \(CRC-32 [0-9a-f]{8}, the archive says [0-9a-f]{8}\)/,
    );
  });

  it("refuses a truncated archive with a named error", async () => {
    await expect(parseNpz(bytes("numpy-savez.npz").subarray(0, 300), "cut.npz")).rejects.toThrow(/cut\.npz: not a \.npz \(zip\) archive/);
  });
});

describe("WAV written by sox", () => {
  it("16-bit PCM matches numpy's decode", () => {
    const r = wavRef("sox-sine440-s16.wav");
    const a = parseWav(bytes("sox-sine440-s16.wav"), "s16");
    expect(a.sampleRate).toBe(r.rate);
    expect(a.samples.length).toBe(r.frames);
    r.first.forEach((v, i) => expect(a.samples[i]).toBeCloseTo(v, 4));
  });

  it("32-bit float at 16 kHz matches numpy's decode", () => {
    const r = wavRef("sox-sine440-f32-16k.wav");
    const a = parseWav(bytes("sox-sine440-f32-16k.wav"), "f32");
    expect(a.sampleRate).toBe(16000);
    expect(a.samples.length).toBe(r.frames);
    r.first.forEach((v, i) => expect(a.samples[i]).toBeCloseTo(v, 5));
  });

  // The same synthesized tone in other encodings: equal to the 16-bit decode within each encoding's step.
  const cases: [string, number][] = [
    ["sox-sine440-stereo-s24.wav", 1e-3],
    ["sox-sine440-u8.wav", 1.5 / 128],
    ["sox-sine440-ulaw.wav", 0.04],
  ];
  for (const [name, tolerance] of cases) {
    it(`${name} decodes to the same tone (within ${tolerance})`, () => {
      const base = parseWav(bytes("sox-sine440-s16.wav"), "s16").samples;
      const a = parseWav(bytes(name), name);
      expect(a.sampleRate).toBe(8000);
      expect(a.samples.length).toBe(base.length);
      let worst = 0;
      for (let i = 0; i < base.length; i++) worst = Math.max(worst, Math.abs(a.samples[i]! - base[i]!));
      expect(worst).toBeLessThan(tolerance);
    });
  }

  it("refuses a file that is not WAV with a named error", () => {
    expect(() => parseWav(bytes("numpy-savez.npz"), "x.wav")).toThrow(/x\.wav: not a readable WAV file/);
  });
});
