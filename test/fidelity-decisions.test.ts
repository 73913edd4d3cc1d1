// Decision metrics and recall@k in the fidelity task, on a real model (the cnn-classifier example with a score output
// and an embedding output added): values checked against scores computed here by running both ONNX files directly,
// labels from a labels file and from class folders, and the refusal of cosine/top-1/KL on a score output.
import { cp, mkdir, mkdtemp, readdir, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config/load.js";
import { readImageFeed } from "../src/data/image-folder.js";
import { runGate } from "../src/pipeline.js";
import type { Report } from "../src/report/types.js";
import { loadOrt, type LoadedOrt, type Ort } from "../src/runtime/ort.js";
import { CNN, writeCircleLabels, writeScoreModel } from "./helpers/score-model.js";

const PRE = "{ scale: 0.00392156862745098, mean: [0.5], std: [0.25] }";
const MEASURE = "measure: { threads: 1, warmup: 1, runs: 3, kernel_benchmark: false }\n";

let loaded: LoadedOrt;
let ort: Ort;
let dir: string;
let model: string;
/** A two-class folder dataset: 0-other (squares) and 1-circle. */
let folders: string;

async function run(outputs: string, dataset = `${CNN}/eval`, recipe = "{ format: int4, block_size: 32 }"): Promise<{ report: Report; out: string }> {
  const d = await mkdtemp(path.join(dir, "run-"));
  const file = path.join(d, "quantgate.yml");
  await writeFile(
    file,
    `allow_outside_workspace: true\nmodel: ${model}\nrecipe: ${recipe}\nevaluation:\n  task: fidelity\n  dataset: ${dataset}\n  format: images\n  preprocess: ${PRE}\n  outputs:\n${outputs}${MEASURE}output_dir: out\n`,
  );
  const r = await runGate(await loadConfig(file), { ort: loaded });
  return { report: r.report, out: path.join(d, "out") };
}

const rec = (report: Report, key: string) => {
  const m = report.metrics.find((x) => x.key === key);
  if (!m) throw new Error(`no ${key} in ${report.metrics.map((x) => x.key).join(", ")} (errors: ${report.gate.errors.join("; ")})`);
  return m;
};

/** Scores of every image of a folder tree (sorted files, then class folders in sorted order, as the images format reads them). */
async function scores(modelFile: string, root: string): Promise<{ files: string[]; score: number[]; embedding: Float32Array[] }> {
  const session = await ort.InferenceSession.create(modelFile, { intraOpNumThreads: 1 });
  const files: string[] = [];
  for (const c of (await readdir(root, { withFileTypes: true }))
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort())
    for (const f of (await readdir(path.join(root, c))).sort()) files.push(path.join(root, c, f));
  const score: number[] = [];
  const embedding: Float32Array[] = [];
  for (const f of files) {
    const feed = await readImageFeed(
      f,
      { scale: 1 / 255, mean: [0.5], std: [0.25], layout: "NCHW", channels: "rgb" } as never,
      {
        name: "image",
        type: "float32",
        rank: 4,
      } as never,
    );
    const out = await session.run({ image: new ort.Tensor("float32", feed.data as Float32Array, feed.dims) });
    score.push((out.score!.data as Float32Array)[0]!);
    embedding.push(out.embedding!.data as Float32Array);
  }
  return { files, score, embedding };
}

beforeAll(async () => {
  loaded = await loadOrt();
  ort = loaded.ort;
  dir = await mkdtemp(path.join(os.tmpdir(), "qg-decisions-"));
  model = await writeScoreModel(dir);
  folders = path.join(dir, "two-classes");
  for (const [from, to] of [
    ["square", "0-other"],
    ["circle", "1-circle"],
  ] as const) {
    await mkdir(path.join(folders, to), { recursive: true });
    for (const f of (await readdir(path.join(CNN, "eval", from))).slice(0, 8)) await cp(path.join(CNN, "eval", from, f), path.join(folders, to, f));
  }
}, 60_000);

describe("decision metrics on a score output", () => {
  it("match decisions, accuracy and score changes computed here from both ONNX files, with labels from a labels file", async () => {
    const labels = await writeCircleLabels(path.join(dir, "circle.csv"));
    const { report, out } = await run(`    - { name: score, decision: { threshold: 0.5, labels: ${labels} } }\n    - { name: embedding, recall_at_k: 5 }\n`);
    expect(report.gate.errors).toEqual([]);
    const f = await scores(model, path.join(CNN, "eval"));
    const q = await scores(path.join(out, "score.quantized.onnx"), path.join(CNN, "eval"));
    const truth = f.files.map((x) => (path.basename(path.dirname(x)) === "circle" ? 1 : 0));
    const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
    const acc = (s: number[]): number => mean(s.map((v, i) => ((v > 0.5 ? 1 : 0) === truth[i] ? 1 : 0)));
    expect(f.files).toHaveLength(96);
    expect(rec(report, "decision_accuracy").float).toBeCloseTo(acc(f.score), 12);
    expect(rec(report, "decision_accuracy").quantized).toBeCloseTo(acc(q.score), 12);
    expect(acc(f.score)).toBeGreaterThan(0.9); // the classifier finds its circles
    expect(rec(report, "decision_agreement").quantized).toBeCloseTo(mean(f.score.map((v, i) => (v > 0.5 === q.score[i]! > 0.5 ? 1 : 0))), 12);
    const change = f.score.map((v, i) => Math.abs(q.score[i]! - v));
    expect(rec(report, "score_max_abs_change").quantized).toBeCloseTo(Math.max(...change), 6);
    expect(rec(report, "score_mean_abs_change").quantized).toBeCloseTo(mean(change), 6);
    expect(rec(report, "score_max_abs_change").quantized).toBeGreaterThan(0); // int4 moved the scores
    // recall@5 by brute force over the embeddings
    const cos = (a: Float32Array, b: Float32Array): number => {
      let d = 0;
      let na = 0;
      let nb = 0;
      for (let i = 0; i < a.length; i++) {
        d += a[i]! * b[i]!;
        na += a[i]! * a[i]!;
        nb += b[i]! * b[i]!;
      }
      return d / Math.sqrt(na * nb || 1);
    };
    const knn = (e: Float32Array[], i: number): number[] =>
      e
        .map((x, j) => ({ j, s: j === i ? -Infinity : cos(e[i]!, x) }))
        .sort((a, b) => b.s - a.s || a.j - b.j)
        .slice(0, 5)
        .map((x) => x.j);
    const recall = mean(f.embedding.map((_, i) => knn(f.embedding, i).filter((j) => knn(q.embedding, i).includes(j)).length / 5));
    expect(rec(report, "recall_at_k").quantized).toBeCloseTo(recall, 6);
    // a score output has no cosine, top-1 or KL record; the embedding keeps its cosine
    expect(report.metrics.map((m) => m.key)).not.toContain("output.score.cosine");
    expect(report.metrics.map((m) => m.key)).not.toContain("output.score.top1_agreement");
    expect(rec(report, "output.embedding.cosine").quantized).toBeGreaterThan(0.9);
  }, 120_000);

  it("take 0/1 labels from class folders, the same as from a labels file over the same images", async () => {
    const fromFolders = await run(`    - { name: score, decision: { threshold: 0.5 } }\n`, folders);
    const labels = await writeCircleLabels(path.join(folders, "labels.csv"), folders);
    const fromFile = await run(`    - { name: score, decision: { threshold: 0.5, labels: ${labels} } }\n`, folders);
    const a = rec(fromFolders.report, "decision_accuracy");
    expect(a.perSample!.float).toHaveLength(16);
    const b = rec(fromFile.report, "decision_accuracy");
    expect([a.float, a.quantized, a.perSample]).toEqual([b.float, b.quantized, b.perSample]);
    expect(a.float).toBeGreaterThan(0.8);
  }, 120_000);

  it("leave decision accuracy out, with a warning, when the dataset's labels are not 0/1", async () => {
    const { report } = await run(`    - { name: score, decision: { threshold: 0.5 } }\n`);
    expect(report.gate.errors).toEqual([]);
    expect(report.metrics.map((m) => m.key)).not.toContain("decision_accuracy");
    expect(rec(report, "decision_agreement").perSample!.quantized).toHaveLength(96);
    expect(report.warnings.join("\n")).toMatch(/output score: the dataset's labels are not 0\/1.*decision\.labels/);
  }, 120_000);

  it("refuse cosine, top-1 and KL on a score output, proposing the decision metrics", async () => {
    for (const spec of ["{ name: score, min_cosine: 0.99 }", "{ name: score, kind: probabilities }", "{ name: score, min_top1_agreement: 0.9 }"]) {
      const { report } = await run(`    - ${spec}\n`, `${CNN}/eval`, "{ format: int8, block_size: 32, symmetric: true }");
      expect(report.verdict).toBe("fail");
      const error = report.gate.errors.join("\n");
      expect(error).toMatch(/evaluation\.outputs\[0\]: output "score" holds one score per sample \(shape \[1, 1\]\)/);
      expect(error).toMatch(/min_decision_agreement.*max_score_change/);
      expect(error).toMatch(/decision: \{ threshold: 0\.5 \}/);
    }
  }, 120_000);

  it("refuse a labels file on a dataset that is not one image per sample", async () => {
    const jsonl = path.join(dir, "rows.jsonl");
    await writeFile(jsonl, `${JSON.stringify({ inputs: { image: { dims: [3, 24, 24], data: Array.from({ length: 3 * 24 * 24 }, () => 0) } } })}\n`);
    const d = await mkdtemp(path.join(dir, "run-"));
    const file = path.join(d, "quantgate.yml");
    await writeFile(
      file,
      `allow_outside_workspace: true\nmodel: ${model}\nevaluation:\n  task: fidelity\n  dataset: ${jsonl}\n  outputs:\n    - { name: score, decision: { threshold: 0.5, labels: ${path.join(dir, "circle.csv")} } }\n${MEASURE}`,
    );
    const r = await runGate(await loadConfig(file), { ort: loaded });
    expect(r.report.gate.errors.join("\n")).toMatch(
      /evaluation\.outputs\[0\]\.decision\.labels: a labels file names sample files, so it needs an image dataset/,
    );
  }, 60_000);
});
