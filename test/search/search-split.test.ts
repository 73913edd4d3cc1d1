// The holdout split of array and audio datasets: a multi-dimensional .npy (with a labels .npy beside it) and a
// .npz (every array, labels included) split every k-th sample along the first axis, a folder of WAV files every
// k-th file; each part is an ordinary dataset the fidelity task reads (a full gate run on the .npy and .npz parts).
import { execFileSync } from "node:child_process";
import { mkdtemp, readdir, readFile, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.js";
import { parseNpy, parseNpz, type RawArray } from "../../src/data/formats.js";
import { runGate } from "../../src/pipeline.js";
import { loadOrt, type LoadedOrt } from "../../src/runtime/ort.js";
import { splitEvaluation } from "../../src/search/split.js";
import { writeClassifierFixture } from "../helpers/models.js";

let ort: LoadedOrt;
beforeAll(async () => {
  ort = await loadOrt();
});

/** Writes eval.npy [40, 64] float32, labels.npy [40] int64, eval.npz (compressed) with x and labels, and 7 WAV files. */
function writeArrays(dir: string): void {
  const script = `
import numpy as np, wave, os, sys
d = sys.argv[1]
rng = np.random.default_rng(5)
x = rng.standard_normal((40, 64)).astype(np.float32)
y = (np.arange(40) % 10).astype(np.int64)
np.save(os.path.join(d, "eval.npy"), x)
np.save(os.path.join(d, "labels.npy"), y)
np.savez_compressed(os.path.join(d, "eval.npz"), x=x, labels=y)
os.makedirs(os.path.join(d, "audio"))
for i in range(7):
    with wave.open(os.path.join(d, "audio", f"clip{i}.wav"), "wb") as w:
        w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000)
        w.writeframes((np.sin(np.arange(800) * (i + 1) / 20) * 3000).astype("<i2").tobytes())
`;
  execFileSync("/usr/bin/python3", ["-c", script, dir]);
}

const rowsOf = (a: RawArray): number[][] => {
  const width = a.dims.slice(1).reduce((x, y) => x * y, 1);
  return Array.from({ length: a.dims[0]! }, (_, r) => Array.from(a.values.subarray(r * width, (r + 1) * width) as ArrayLike<number | bigint>, Number));
};

async function classifierOn(dataset: string, labelField: string): Promise<{ configPath: string; dir: string }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "qg-split-arrays-"));
  const configPath = await writeClassifierFixture(dir, "  max_model_size: 10MiB\n", {
    recipe: "  format: int8\n  block_size: 32\n  symmetric: true\n  accuracy_level: 0",
  });
  writeArrays(dir);
  const text = (await readFile(configPath, "utf8"))
    .replace("task: classification", "task: fidelity")
    .replace("dataset: eval.jsonl", `dataset: ${dataset}\n  label_field: ${labelField}`);
  await writeFile(configPath, text);
  return { configPath, dir };
}

describe("holdout split of arrays and audio", () => {
  it("splits a [samples, ...] .npy every k-th sample with its labels .npy, and each part runs through the gate", async () => {
    const { configPath, dir } = await classifierOn("eval.npy", "labels.npy");
    const config = await loadConfig(configPath);
    const split = await splitEvaluation(config, 0.3, path.join(dir, "split"));
    expect(split.split, split.note).toBe(true);
    expect([split.searchItems, split.holdoutItems]).toEqual([28, 12]);
    expect(split.note).toBe("eval.npy: 12 of 40 samples (first axis) held out, with their labels (labels.npy)");
    const read = async (p: string) => parseNpy(await readFile(path.resolve(config.baseDir, p)), p);
    const whole = rowsOf(await read("eval.npy"));
    const labels = rowsOf(await read("labels.npy")).map((r) => r[0]);
    const [a, b] = [rowsOf(await read(split.search)), rowsOf(await read(split.holdout))];
    const la = rowsOf(await read(path.join(path.dirname(split.search), "labels.npy"))).map((r) => r[0]);
    const lb = rowsOf(await read(path.join(path.dirname(split.holdout), "labels.npy"))).map((r) => r[0]);
    // Every sample in exactly one part, in order, each with its own label; both parts spread over the file.
    const index = (row: number[]) => whole.findIndex((w) => w.every((v, i) => v === row[i]));
    const ia = a.map(index);
    const ib = b.map(index);
    expect([...ia, ...ib].sort((x, y) => x - y)).toEqual(whole.map((_, i) => i));
    expect(ia).toEqual([...ia].sort((x, y) => x - y));
    expect(ib[0]).toBeLessThan(5);
    expect(ib.at(-1)).toBeGreaterThan(35);
    expect(la).toEqual(ia.map((i) => labels[i]));
    expect(lb).toEqual(ib.map((i) => labels[i]));
    for (const [part, n] of [
      [split.search, 28],
      [split.holdout, 12],
    ] as const) {
      const run = await runGate({ ...config, evaluation: { ...config.evaluation, dataset: part }, output_dir: `out-${n}` }, { ort });
      expect(run.report.gate.errors).toEqual([]);
      expect(run.report.evaluation?.samples.evaluated).toBe(n);
      expect(run.report.metrics.some((m) => m.key.endsWith(".cosine"))).toBe(true);
    }
  });

  it("splits a .npz (compressed by numpy) along the first axis of every array into archives numpy-compatible readers load", async () => {
    const { configPath, dir } = await classifierOn("eval.npz", "label");
    const config = await loadConfig(configPath);
    const split = await splitEvaluation(config, 0.25, path.join(dir, "split"));
    expect(split.split, split.note).toBe(true);
    expect(split.note).toBe("eval.npz: 10 of 40 samples (first axis of every array) held out");
    const whole = await parseNpz(await readFile(path.join(dir, "eval.npz")), "eval.npz");
    const a = await parseNpz(await readFile(path.resolve(config.baseDir, split.search)), "search");
    const b = await parseNpz(await readFile(path.resolve(config.baseDir, split.holdout)), "holdout");
    expect([a.get("x")!.dims, b.get("x")!.dims, a.get("labels")!.dims, b.get("labels")!.dims]).toEqual([[30, 64], [10, 64], [30], [10]]);
    // Rows stay paired with their labels across the split.
    const pairs = (m: Map<string, RawArray>) => rowsOf(m.get("x")!).map((r, i) => `${r[0]}:${rowsOf(m.get("labels")!)[i]![0]}`);
    expect([...pairs(a), ...pairs(b)].sort()).toEqual(pairs(whole).sort());
    // numpy itself reads the archives written here.
    const shapes = execFileSync("/usr/bin/python3", [
      "-c",
      "import numpy as np, sys; z = np.load(sys.argv[1]); print(z['x'].shape, z['labels'].dtype)",
      path.resolve(config.baseDir, split.holdout),
    ]).toString();
    expect(shapes.trim()).toBe("(10, 64) int64");
    const run = await runGate({ ...config, evaluation: { ...config.evaluation, dataset: split.holdout }, output_dir: "out-npz" }, { ort });
    expect(run.report.gate.errors).toEqual([]);
    expect(run.report.evaluation?.samples.evaluated).toBe(10);
  });

  it("splits a folder of WAV files every k-th file, and leaves an array of unequal first dimensions whole, saying so", async () => {
    const { configPath, dir } = await classifierOn("audio", "label");
    const config = await loadConfig(configPath);
    const split = await splitEvaluation(config, 0.3, path.join(dir, "split"));
    expect(split.note).toBe("audio: 2 of 7 WAV files held out");
    const a = await readdir(path.resolve(config.baseDir, split.search));
    const b = await readdir(path.resolve(config.baseDir, split.holdout));
    expect([...a, ...b].sort()).toEqual(["clip0.wav", "clip1.wav", "clip2.wav", "clip3.wav", "clip4.wav", "clip5.wav", "clip6.wav"]);

    execFileSync("/usr/bin/python3", [
      "-c",
      "import numpy as np, sys; np.savez(sys.argv[1], x=np.zeros((6, 64), np.float32), labels=np.zeros(5, np.int64))",
      path.join(dir, "odd.npz"),
    ]);
    const odd = await splitEvaluation({ ...config, evaluation: { ...config.evaluation, dataset: "odd.npz" } }, 0.3, path.join(dir, "split-odd"));
    expect(odd.split).toBe(false);
    expect(odd.note).toMatch(/^odd\.npz \(fidelity\) is not .*: not split, so the winner's score is on the data the search judged on$/);
  });
});
