// Sharded evaluation: the three modes run as the runner runs them (a node process with INPUT_* and GITHUB_*
// set, artifacts in the local-folder stand-in), a 4-shard run merged against an unsharded one on the tiny LM,
// and the merge refusing missing, failed and mismatched shards.
import { spawn } from "node:child_process";
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MANIFEST_FILE, parseShard, quantizedArtifactName, shardArtifactName, SHARD_RESULT_FILE, type ShardManifest } from "../src/action/shards.js";
import { readCiInputs } from "../src/action/io.js";
import { localArtifactClient } from "../src/artifact/local.js";
import { loadConfig } from "../src/config/load.js";
import { runGate } from "../src/pipeline.js";
import { loadOrt } from "../src/runtime/ort.js";
import { createSession } from "../src/runtime/ort.js";
import { taskOf } from "../src/tasks/index.js";
import { sliceRange, type MetricRecord, type TaskEvaluation, type TaskPartial } from "../src/tasks/types.js";
import { parseOutputs, REPO_ROOT, runnerEnvironment } from "./helpers/action.js";
import { writeClassifierFixture } from "./helpers/models.js";
import { CNN, writeCircleLabels, writeScoreModel } from "./helpers/score-model.js";
import { startFakeGithub, type FakeGithub } from "./github/fake-github.js";
import { pullRequestEvent } from "./github/runner.js";

/** The action's entry (src/index.ts) as built by `npm run build`; QUANTGATE_TEST_DIST=1 runs the bundle instead. */
const ENTRY = process.env.QUANTGATE_TEST_DIST === "1" ? path.join(REPO_ROOT, "dist", "index.js") : path.join(REPO_ROOT, "lib", "index.js");

interface Run {
  readonly status: number | null;
  readonly out: string;
  readonly outputs: Record<string, string>;
  readonly summary: string;
}

async function runJob(
  ws: string,
  artifacts: string,
  inputs: Record<string, string>,
  event: { name: string; payload: unknown; env: Record<string, string> } = { name: "push", payload: {}, env: {} },
): Promise<Run> {
  const { env, outputFile, summaryFile } = runnerEnvironment(ws, { config: "quantgate.yml", cache: "false", ...inputs }, event.payload, {
    QUANTGATE_ARTIFACT_DIR: artifacts,
    GITHUB_REPOSITORY: "acme/models",
    GITHUB_RUN_ID: "77",
    GITHUB_EVENT_NAME: event.name,
    ...event.env,
  });
  const child = spawn(process.execPath, [ENTRY], { cwd: ws, env });
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (out += d.toString()));
  const status = await new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  return { status, out, outputs: parseOutputs(await readFile(outputFile, "utf8")), summary: await readFile(summaryFile, "utf8") };
}

/** A job's checkout of the tiny-LM example (each matrix job has its own workspace). */
/** A run's quantized model copied out of its output folder (the next run clears that folder's models first). */
async function keepAside(run: { quantizedModelPath: string | undefined }): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "qg-kept-"));
  const file = path.join(dir, path.basename(run.quantizedModelPath!));
  await cp(run.quantizedModelPath!, file);
  return file;
}

async function checkout(root: string, name: string): Promise<string> {
  const ws = path.join(root, name);
  await mkdir(ws, { recursive: true });
  for (const f of ["model.onnx", "eval.txt", "calib.txt", "tokenizer.json", "quantgate.yml"])
    await cp(path.join(REPO_ROOT, "examples", "tiny-lm", f), path.join(ws, f));
  return ws;
}

const report = async (ws: string): Promise<{ evaluation: TaskEvaluation; verdict: string; stages: { stage: string; status: string }[] }> =>
  JSON.parse(await readFile(path.join(ws, "quantgate-out", "quantgate-report.json"), "utf8"));

const relClose = (a: number, b: number, tol = 1e-9): boolean => a === b || Math.abs(a - b) <= tol * Math.max(Math.abs(a), Math.abs(b));

/** Paths where two JSON values differ: numbers beyond 1e-9 relative, anything else at all. */
function closeDeep(a: unknown, b: unknown, at = "$"): string[] {
  if (typeof a === "number" && typeof b === "number") return relClose(a, b) ? [] : [`${at}: ${a} vs ${b}`];
  if (a && b && typeof a === "object" && typeof b === "object") {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])];
    return keys.flatMap((k) => closeDeep((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], `${at}.${k}`));
  }
  return a === b ? [] : [`${at}: ${String(a)} vs ${String(b)}`];
}

function expectSameEvaluation(merged: TaskEvaluation, whole: TaskEvaluation): void {
  expect(merged.samples).toEqual(whole.samples);
  expect(merged.metrics.map((m) => m.key)).toEqual(whole.metrics.map((m) => m.key));
  for (const w of whole.metrics) {
    const m = merged.metrics.find((x) => x.key === w.key) as MetricRecord;
    expect(relClose(m.quantized, w.quantized), `${w.key}: ${m.quantized} vs ${w.quantized}`).toBe(true);
    if (w.float !== undefined) expect(relClose(m.float!, w.float), `${w.key} float: ${m.float} vs ${w.float}`).toBe(true);
    // per-sample values are concatenated in order: the same count, element for element
    expect(m.perSample?.quantized.length).toBe(w.perSample?.quantized.length);
    expect(m.perSample).toEqual(w.perSample);
  }
}

describe("sharded evaluation, as the runner runs it (tiny LM, 4 shards)", () => {
  let root: string;
  let artifacts: string;
  let whole: TaskEvaluation;
  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), "qg-shards-"));
    artifacts = path.join(root, "artifacts");
    const q = await runJob(await checkout(root, "quantize"), artifacts, { mode: "quantize" });
    expect(q.status, q.out).toBe(0);
    expect(q.outputs["model-sha256"]).toMatch(/^[0-9a-f]{64}$/);
    const shards = await Promise.all(
      [1, 2, 3, 4].map(async (i) => runJob(await checkout(root, `shard-${i}`), artifacts, { mode: "evaluate", shard: `${i}/4` })),
    );
    for (const s of shards) {
      expect(s.status, s.out).toBe(0);
      expect(s.outputs["model-sha256"]).toBe(q.outputs["model-sha256"]);
    }
    expect(shards[1]!.summary).toMatch(/shard 2\/4 evaluated 8 samples/);
    // The unsharded run evaluates the same quantized model (emit picks ONNX Runtime forms by timing, so a
    // second quantization on a loaded machine may pick others): the quantize job's model and manifest are
    // restored (kept outside the output folder, which a run clears) and the normal, unsharded evaluate stage runs on all the data.
    const check = await checkout(root, "unsharded");
    const fromQuantize = path.join(check, "from-quantize");
    await cp(path.join(artifacts, encodeURIComponent(quantizedArtifactName("quantgate"))), fromQuantize, { recursive: true });
    const manifest = JSON.parse(await readFile(path.join(fromQuantize, MANIFEST_FILE), "utf8")) as ShardManifest;
    const c = await runGate(await loadConfig(path.join(check, "quantgate.yml")), {
      ort: await loadOrt(),
      restored: manifest.outcome,
      restoredModel: path.join(fromQuantize, manifest.quantizedModel.file),
    });
    expect(c.report.gate.errors).toEqual([]);
    expect(c.report.stages.find((x) => x.stage === "evaluate")?.status).toBe("ok");
    whole = c.report.evaluation!;
  }, 300_000);

  it("merges to the unsharded figures: counts exact, sums within 1e-9 relative, per-sample values in order", async () => {
    const ws = await checkout(root, "merge");
    const m = await runJob(ws, artifacts, { mode: "merge", shards: "4" });
    expect(m.status, m.out).toBe(0);
    expect(m.outputs.verdict).toBe("pass");
    const r = await report(ws);
    expectSameEvaluation(r.evaluation, whole);
    expect(r.evaluation.samples.sequences).toBe(4064);
    // measured and gated once, in the merge job; the quantize stages ran in the quantize job
    expect(r.stages.find((s) => s.stage === "measure")?.status).toBe("ok");
    expect(r.stages.find((s) => s.stage === "quantize")?.status).toBe("ok");
    expect(m.summary).toMatch(/Perplexity/);
  });

  it("a missing shard fails the merge, naming it", async () => {
    const arts = path.join(root, "artifacts-missing");
    await cp(artifacts, arts, { recursive: true });
    await rm(path.join(arts, encodeURIComponent(shardArtifactName("quantgate", { index: 3, count: 4 }))), { recursive: true });
    const m = await runJob(await checkout(root, "merge-missing"), arts, { mode: "merge", shards: "4" });
    expect(m.status).not.toBe(0);
    expect(m.out).toMatch(/merge refused: shard 3\/4: no results \(artifact "quantgate-quantgate-shard-3-of-4" not found/);
    expect(m.outputs.verdict).toBe("fail");
  });

  it("a shard that evaluated another quantized model is refused, naming it", async () => {
    const arts = path.join(root, "artifacts-mismatch");
    await cp(artifacts, arts, { recursive: true });
    const file = path.join(arts, encodeURIComponent(shardArtifactName("quantgate", { index: 2, count: 4 })), SHARD_RESULT_FILE);
    const result = JSON.parse(await readFile(file, "utf8"));
    await writeFile(file, JSON.stringify({ ...result, quantizedSha256: "0".repeat(64) }));
    const m = await runJob(await checkout(root, "merge-mismatch"), arts, { mode: "merge", shards: "4" });
    expect(m.status).not.toBe(0);
    expect(m.out).toMatch(/shard 2\/4 evaluated another quantized model \(sha256 000000000000, the quantize job's is [0-9a-f]{12}\): refusing to merge/);
  });

  it("a shard refuses a quantized model whose hash is not the manifest's", async () => {
    const arts = path.join(root, "artifacts-corrupt");
    await cp(artifacts, arts, { recursive: true });
    const model = path.join(arts, encodeURIComponent(quantizedArtifactName("quantgate")), "model.quantized.onnx");
    const bytes = await readFile(model);
    bytes.writeUInt8(bytes.readUInt8(bytes.length - 1) ^ 1, bytes.length - 1);
    await writeFile(model, bytes);
    const s = await runJob(await checkout(root, "shard-corrupt"), arts, { mode: "evaluate", shard: "1/4" });
    expect(s.status).not.toBe(0);
    expect(s.out).toMatch(
      /quantized model model\.quantized\.onnx from artifact "quantgate-quantgate-quantized" has sha256 [0-9a-f]{12}, the manifest says [0-9a-f]{12}: refusing/,
    );
  });

  it("a failed shard (other evaluation data in its checkout) fails its job and the merge, naming it", async () => {
    const arts = path.join(root, "artifacts-failed");
    await cp(artifacts, arts, { recursive: true });
    await rm(path.join(arts, encodeURIComponent(shardArtifactName("quantgate", { index: 4, count: 4 }))), { recursive: true });
    const ws = await checkout(root, "shard-failed");
    await writeFile(path.join(ws, "eval.txt"), (await readFile(path.join(ws, "eval.txt"), "utf8")).replace(/the/g, "teh"));
    const s = await runJob(ws, arts, { mode: "evaluate", shard: "4/4" });
    expect(s.status).not.toBe(0);
    expect(s.out).toMatch(/shard 4\/4 failed: the evaluation data differ from the quantize job's/);
    const m = await runJob(await checkout(root, "merge-failed"), arts, { mode: "merge", shards: "4" });
    expect(m.status).not.toBe(0);
    expect(m.out).toMatch(/merge refused: shard 4\/4 failed: the evaluation data differ/);
  });

  it("a shard with an empty slice (more shards than batches) succeeds and uploads empty state", async () => {
    const arts = path.join(root, "artifacts-empty");
    await cp(artifacts, arts, { recursive: true });
    // 8 batches of 4 windows over 10 shards: slice 1 is [0, 0)
    const s = await runJob(await checkout(root, "shard-empty"), arts, { mode: "evaluate", shard: "1/10" });
    expect(s.status, s.out).toBe(0);
    expect(s.summary).toMatch(/shard 1\/10 evaluated 0 samples/);
    const file = path.join(arts, encodeURIComponent(shardArtifactName("quantgate", { index: 1, count: 10 })), SHARD_RESULT_FILE);
    const result = JSON.parse(await readFile(file, "utf8"));
    expect(result).toMatchObject({ status: "ok", partial: { task: "language-modeling", kls: [], windows: 0 } });
  });

  it("evaluate without a quantize artifact says which job must run first", async () => {
    const s = await runJob(await checkout(root, "shard-alone"), path.join(root, "empty"), { mode: "evaluate", shard: "1/2" });
    expect(s.status).not.toBe(0);
    expect(s.out).toMatch(/no artifact "quantgate-quantgate-quantized" in this run: the mode: quantize job must run first/);
  });
});

describe("sharded evaluation on a pull request (local GitHub API)", () => {
  let gh: FakeGithub;
  beforeAll(async () => {
    gh = await startFakeGithub();
  });
  afterAll(async () => {
    await gh.close();
  });

  it("comments once, from the merge job, with the merged figures", async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), "qg-shards-pr-"));
    const artifacts = path.join(root, "artifacts");
    const gate = "  max_kl_mean: 0.5\n  min_top1_agreement: 0.5\n";
    const ws = async (name: string): Promise<string> => {
      const dir = path.join(root, name);
      await writeClassifierFixture(dir, gate, { samples: 21 });
      return dir;
    };
    const pr = {
      name: "pull_request",
      payload: pullRequestEvent(9),
      env: { GITHUB_API_URL: gh.url, GITHUB_REF: "refs/pull/9/merge", GITHUB_BASE_REF: "main", GITHUB_HEAD_REF: "feature", GITHUB_SHA: "d".repeat(40) },
    };
    const token = { "github-token": "ghs_fake_token" };
    const posts = () => gh.requests.filter((r) => r.method === "POST" && r.path === "/repos/acme/models/issues/9/comments");
    const q = await runJob(await ws("quantize"), artifacts, { ...token, mode: "quantize" }, pr);
    expect(q.status, q.out).toBe(0);
    for (const i of [1, 2, 3]) {
      const s = await runJob(await ws(`shard-${i}`), artifacts, { ...token, mode: "evaluate", shard: `${i}/3` }, pr);
      expect(s.status, s.out).toBe(0);
      expect(s.summary).toMatch(new RegExp(`shard ${i}/3 evaluated 7 samples`));
    }
    expect(posts()).toHaveLength(0);
    const mergeWs = await ws("merge");
    const m = await runJob(mergeWs, artifacts, { ...token, mode: "merge", shards: "3" }, pr);
    expect(m.status, m.out).toBe(0);
    expect(posts()).toHaveLength(1);
    const body = (posts()[0]!.body as { body: string }).body;
    expect(body).toContain("QuantGate passed");
    expect(m.outputs["comment-url"]).toMatch(/pull\/9#issuecomment-\d+$/);
    const merged = (await report(mergeWs)).evaluation;
    expect(merged.samples.evaluated).toBe(21);
    // the merge job's own artifact (report, summary) went to the same artifact store
    expect((await localArtifactClient(artifacts).listArtifacts()).artifacts.map((a) => a.name).sort()).toEqual([
      "quantgate-quantgate",
      "quantgate-quantgate-quantized",
      "quantgate-quantgate-shard-1-of-3",
      "quantgate-quantgate-shard-2-of-3",
      "quantgate-quantgate-shard-3-of-3",
    ]);
  });
});

describe("mergeable task state, in-process", () => {
  it("classification: slices merged in order equal the unsharded evaluation (also with empty slices)", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "qg-shards-cls-"));
    const config = await loadConfig(await writeClassifierFixture(dir, "  min_top1_agreement: 0.5", { samples: 23 }));
    const ort = await loadOrt();
    const whole = await runGate(config, { ort });
    expect(whole.outcome).toBeDefined();
    expect(whole.report.evaluation).not.toBeNull();
    const task = taskOf(config.evaluation);
    for (const count of [3, 30]) {
      // the same quantized model (emit picks ONNX Runtime forms by timing): the first run's, restored
      const run = await runGate(config, {
        ort,
        restored: whole.outcome,
        restoredModel: await keepAside(whole),
        evaluate: async (data, models) => {
          const float = await createSession(ort.ort, models.float, 1);
          const quantized = await createSession(ort.ort, models.quantized, 1);
          const partials: TaskPartial[] = [];
          for (let i = 0; i < count; i++)
            partials.push(await task.partial!(config.evaluation, task.slice!(data, i, count), { ort: ort.ort, float, quantized, threads: 1 }));
          await float.release();
          await quantized.release();
          // partials travel as JSON between jobs
          return task.merge!(config.evaluation, JSON.parse(JSON.stringify(partials)) as TaskPartial[]);
        },
      });
      expectSameEvaluation(run.report.evaluation!, whole.report.evaluation!);
    }
  });

  for (const example of ["cnn-classifier", "recurrent"]) {
    it(`fidelity (${example}): slices merged in order equal the unsharded evaluation`, async () => {
      const dir = await mkdtemp(path.join(os.tmpdir(), `qg-shards-${example}-`));
      await cp(path.join(REPO_ROOT, "examples", example), dir, { recursive: true });
      if (example === "recurrent") {
        // four sequences of 256 bytes instead of one of 1024, so that slices fall between sequences
        const file = path.join(dir, "eval_ids.npy");
        const bytes = await readFile(file);
        const header = bytes.subarray(0, bytes.indexOf(0x0a) + 1).toString("latin1");
        expect(header).toContain("(1024,)");
        const reshaped = header.replace("(1024,)", "(4, 256)").replace(" \n", "\n");
        await writeFile(file, Buffer.concat([Buffer.from(reshaped, "latin1"), bytes.subarray(header.length)]));
      }
      const config = await loadConfig(path.join(dir, "quantgate.yml"));
      const ort = await loadOrt();
      const whole = await runGate(config, { ort });
      expect(whole.outcome).toBeDefined();
      expect(whole.report.gate.errors).toEqual([]);
      if (example === "recurrent") expect(whole.report.evaluation!.samples).toMatchObject({ evaluated: 4, sequences: 64 });
      const task = taskOf(config.evaluation);
      // the same quantized model (emit picks ONNX Runtime forms by timing): the first run's, restored
      const run = await runGate(config, {
        ort,
        restored: whole.outcome,
        restoredModel: await keepAside(whole),
        evaluate: async (data, models) => {
          const float = await createSession(ort.ort, models.float, 1);
          const quantized = await createSession(ort.ort, models.quantized, 1);
          const partials: TaskPartial[] = [];
          for (let i = 0; i < 3; i++) {
            const slice = task.slice!(data, i, 3);
            // a stateful model's sequences are never cut: every slice starts at a sequence's first chunk
            expect((slice as unknown as { samples: { chunk: number }[] }).samples[0]?.chunk ?? 0).toBe(0);
            partials.push(await task.partial!(config.evaluation, slice, { ort: ort.ort, float, quantized, threads: 1 }));
          }
          await float.release();
          await quantized.release();
          return task.merge!(config.evaluation, JSON.parse(JSON.stringify(partials)) as TaskPartial[]);
        },
      });
      expectSameEvaluation(run.report.evaluation!, whole.report.evaluation!);
      // the per-output details too: counts equal, sums (relative L2 from summed squares) to rounding
      expect(closeDeep(run.report.evaluation!.details, whole.report.evaluation!.details)).toEqual([]);
    });
  }

  /** The whole run, then the same quantized model evaluated in `count` slices (as JSON, with empty ones) and merged. */
  async function shardedAndWhole(configFile: string, count: number): Promise<{ merged: TaskEvaluation; whole: TaskEvaluation }> {
    const config = await loadConfig(configFile);
    const ort = await loadOrt();
    const whole = await runGate(config, { ort });
    expect(whole.report.gate.errors).toEqual([]);
    const task = taskOf(config.evaluation);
    const run = await runGate(config, {
      ort,
      restored: whole.outcome,
      restoredModel: await keepAside(whole),
      evaluate: async (data, models) => {
        const float = await createSession(ort.ort, models.float, 1);
        const quantized = await createSession(ort.ort, models.quantized, 1);
        const partials: TaskPartial[] = [];
        for (let i = 0; i < count; i++)
          partials.push(await task.partial!(config.evaluation, task.slice!(data, i, count), { ort: ort.ort, float, quantized, threads: 1 }));
        await float.release();
        await quantized.release();
        return task.merge!(config.evaluation, JSON.parse(JSON.stringify(partials)) as TaskPartial[]);
      },
    });
    expect(run.report.gate.errors).toEqual([]);
    return { merged: run.report.evaluation!, whole: whole.report.evaluation! };
  }

  for (const [example, count] of [
    ["text-recognition", 5],
    ["segmentation", 4],
  ] as const) {
    it(`${example}: slices merged in order equal the unsharded evaluation, details too`, async () => {
      const dir = await mkdtemp(path.join(os.tmpdir(), `qg-shards-${example}-`));
      await cp(path.join(REPO_ROOT, "examples", example), dir, { recursive: true });
      const { merged, whole } = await shardedAndWhole(path.join(dir, "quantgate.yml"), count);
      expect(whole.metrics.length).toBeGreaterThan(3);
      expectSameEvaluation(merged, whole);
      expect(closeDeep(merged.details, whole.details)).toEqual([]);
      expect(merged.warnings).toEqual(whole.warnings);
    }, 120_000);
  }

  it("fidelity with decisions (labels file) and recall@k: merged from kept per-sample scores equals the unsharded evaluation", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "qg-shards-decisions-"));
    const model = await writeScoreModel(dir);
    await cp(path.join(CNN, "eval"), path.join(dir, "eval"), { recursive: true });
    const labels = await writeCircleLabels(path.join(dir, "circle.csv"), path.join(dir, "eval"));
    const file = path.join(dir, "quantgate.yml");
    await writeFile(
      file,
      `model: ${path.basename(model)}\nrecipe: { format: int4, block_size: 32 }\nevaluation:\n  task: fidelity\n  dataset: eval\n  format: images\n` +
        `  preprocess: { scale: 0.00392156862745098, mean: [0.5], std: [0.25] }\n  outputs:\n` +
        `    - { name: score, decision: { threshold: 0.5, labels: ${path.basename(labels)} } }\n    - { name: embedding, recall_at_k: 5 }\n` +
        `measure: { threads: 1, warmup: 1, runs: 3, kernel_benchmark: false }\noutput_dir: out\n`,
    );
    const { merged, whole } = await shardedAndWhole(file, 3);
    const keys = whole.metrics.map((m) => m.key);
    expect(keys).toEqual(expect.arrayContaining(["decision_agreement", "decision_accuracy", "recall_at_k"]));
    expectSameEvaluation(merged, whole);
    expect(closeDeep(merged.details, whole.details)).toEqual([]);
  }, 120_000);

  it("reads the sharded modes' inputs, naming a missing or bad one", () => {
    const inputs = (m: Record<string, string>) => (n: string) => m[n];
    expect(readCiInputs(inputs({ mode: "evaluate", shard: "1/4" }))).toMatchObject({ mode: "check", shardMode: "evaluate", shard: "1/4" });
    expect(readCiInputs(inputs({ mode: "merge", shards: "4" }))).toMatchObject({ mode: "check", shardMode: "merge", shards: 4 });
    expect(readCiInputs(inputs({ mode: "release" }))).not.toHaveProperty("shardMode");
    expect(() => readCiInputs(inputs({ mode: "evaluate" }))).toThrow(/input "shard": mode evaluate needs shard: i\/n/);
    expect(() => readCiInputs(inputs({ mode: "merge" }))).toThrow(/input "shards": mode merge needs shards: n/);
    expect(() => readCiInputs(inputs({ mode: "merge", shards: "0" }))).toThrow(/input "shards": expected the number of shards \(1 to 256\), got "0"/);
  });

  it("parses shard i/n and slices contiguously", () => {
    expect(parseShard("shard", "2/4")).toEqual({ index: 2, count: 4 });
    expect(() => parseShard("shard", "0/4")).toThrow(/input "shard": shard 0\/4 is out of range/);
    expect(() => parseShard("shard", "5/4")).toThrow(/out of range/);
    expect(() => parseShard("shard", "two")).toThrow(/input "shard": expected i\/n .* got "two"/);
    const ranges = [0, 1, 2, 3].map((i) => sliceRange(10, i, 4));
    expect(ranges).toEqual([
      [0, 2],
      [2, 5],
      [5, 7],
      [7, 10],
    ]);
  });

  it("the local artifact stand-in behaves like the service: unique names, not-found errors, download by id", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "qg-art-"));
    const src = path.join(dir, "src");
    await mkdir(path.join(src, "sub"), { recursive: true });
    await writeFile(path.join(src, "sub", "a.txt"), "hello");
    const client = localArtifactClient(path.join(dir, "store"));
    const up = await client.uploadArtifact("one", [path.join(src, "sub", "a.txt")], src);
    expect(up.size).toBe(5);
    await expect(client.uploadArtifact("one", [path.join(src, "sub", "a.txt")], src)).rejects.toThrow(/already exists/);
    await expect(client.getArtifact("two")).rejects.toMatchObject({ name: "ArtifactNotFoundError" });
    const { artifact } = await client.getArtifact("one");
    expect(artifact.id).toBe(up.id);
    await client.downloadArtifact(artifact.id, { path: path.join(dir, "dl") });
    expect(await readFile(path.join(dir, "dl", "sub", "a.txt"), "utf8")).toBe("hello");
    expect((await client.listArtifacts()).artifacts.map((a) => a.name)).toEqual(["one"]);
  });
});
