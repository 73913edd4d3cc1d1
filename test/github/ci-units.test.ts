// The CI pieces one by one: work cache, config blocks, release merge, inputs, comment upsert, artifact upload.
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readCiInputs } from "../../src/action/io.js";
import { applyRelease, stricterLimit } from "../../src/action/release.js";
import { uploadArtifact, type ArtifactUploader } from "../../src/artifact/index.js";
import { cacheSummaryLine, WorkCache, workCacheKey, type WorkKeyInputs } from "../../src/cache/index.js";
import { ConfigError, parseConfig } from "../../src/config/load.js";
import { OptionalStepError } from "../../src/errors.js";
import { lineOf } from "../../src/github/annotations.js";
import { CommentPermissionError, commentMarker, createOctokit, upsertComment } from "../../src/github/comment.js";
import { configId, githubContextFrom } from "../../src/github/context.js";
import { startFakeGithub, type FakeGithub } from "./fake-github.js";

const base = `model: model.onnx
evaluation:
  task: classification
  dataset: eval.jsonl
`;

function errorOf(text: string): ConfigError {
  try {
    parseConfig(text, "quantgate.yml");
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error("expected a ConfigError");
}

describe("config: regression, history and release blocks", () => {
  const cases: { what: string; input: string; expected: RegExp }[] = [
    {
      what: "unknown regression key",
      input: `${base}regression:\n  max_acuracy_drop: 1\n`,
      expected: /quantgate\.yml:6 regression: unknown key "max_acuracy_drop"/,
    },
    {
      what: "bad percentage",
      input: `${base}regression:\n  max_latency_increase_pct: fast\n`,
      expected: /:6 regression\.max_latency_increase_pct: expected a percentage such as "5%"/,
    },
    {
      what: "warn above fail",
      input: `${base}regression:\n  max_kl_increase: {warn: 0.2, fail: 0.1}\n`,
      expected: /:6 regression\.max_kl_increase: warn \(0\.2\) must not exceed fail \(0\.1\)/,
    },
    { what: "confidence out of range", input: `${base}regression:\n  confidence: 1.5\n`, expected: /:6 regression\.confidence:/ },
    { what: "unknown history backend", input: `${base}history:\n  backend: s3\n`, expected: /:6 history\.backend: expected "branch", "cache" or "none"/ },
    { what: "history name with a slash", input: `${base}history:\n  name: a/b\n`, expected: /:6 history\.name: expected letters, digits/ },
    { what: "zero entries", input: `${base}history:\n  max_entries: 0\n`, expected: /:6 history\.max_entries:/ },
    { what: "unknown release gate key", input: `${base}release:\n  gate:\n    max_colour: 1\n`, expected: /:7 release\.gate: unknown key "max_colour"/ },
    {
      what: "bad release byte size",
      input: `${base}release:\n  gate:\n    max_model_size: huge\n`,
      expected: /:7 release\.gate\.max_model_size: expected a byte size/,
    },
  ];
  for (const c of cases) {
    it(c.what, () => {
      expect(errorOf(c.input).message).toMatch(c.expected);
    });
  }

  it("accepts the blocks and keeps their lines for annotations", () => {
    const cfg = parseConfig(
      `${base}regression:\n  max_size_increase_pct: 5%\nhistory:\n  backend: cache\nrelease:\n  gate:\n    max_kl_mean: 0.1\n`,
      "quantgate.yml",
    );
    expect(cfg.regression).toMatchObject({ max_size_increase_pct: { fail: 5 }, confidence: 0.95, bootstrap_samples: 2000 });
    expect(cfg.history).toMatchObject({ backend: "cache", branch: "quantgate-data", max_entries: 200 });
    expect(lineOf(cfg.lines, "regression.max_size_increase_pct")).toBe(6);
    expect(lineOf(cfg.lines, "release.gate.max_kl_mean")).toBe(11);
    expect(lineOf(cfg.lines, "regression.max_latency_increase_pct")).toBe(5); // falls back to the block
  });
});

describe("release mode", () => {
  it("takes the stricter limit in each direction, warn never past fail", () => {
    expect(stricterLimit("max", { fail: 0.5, warn: 0.4 }, { fail: 0.1 })).toEqual({ fail: 0.1, warn: 0.1 });
    expect(stricterLimit("min", { fail: 0.9 }, { fail: 0.95, warn: 0.97 })).toEqual({ fail: 0.95, warn: 0.97 });
    expect(stricterLimit("max", { fail: 0.1 }, { fail: 0.5 })).toEqual({ fail: 0.1, warn: undefined });
  });

  it("merges the release block and records where each stricter limit came from", () => {
    const cfg = parseConfig(
      `${base}gate:\n  max_kl_mean: 0.5\n  min_top1_agreement: 0.9\nrelease:\n  gate:\n    max_kl_mean: 0.1\n    min_top1_agreement: 0.8\n    forbid_slower_than_float: true\n  regression:\n    max_size_increase_pct: 1%\n`,
      "quantgate.yml",
    );
    const { config, origins } = applyRelease(cfg);
    expect(config.gate.max_kl_mean).toEqual({ fail: 0.1, warn: undefined });
    expect(config.gate.min_top1_agreement).toEqual({ fail: 0.9, warn: undefined }); // the normal one is stricter
    expect(config.gate.forbid_slower_than_float).toBe(true);
    expect(config.regression?.max_size_increase_pct).toEqual({ fail: 1, warn: undefined });
    expect([...origins.entries()]).toEqual([
      ["max_kl_mean", "release.gate.max_kl_mean"],
      ["forbid_slower_than_float", "release.gate.forbid_slower_than_float"],
      ["regression.max_size_increase_pct", "release.regression.max_size_increase_pct"],
    ]);
  });
});

describe("CI inputs", () => {
  const cases: { what: string; input: Record<string, string>; expected: RegExp }[] = [
    { what: "comment mode", input: { comment: "sometimes" }, expected: /input "comment": expected "always", "on-failure", "never", got "sometimes"/ },
    { what: "artifact flag", input: { artifact: "maybe" }, expected: /input "artifact": expected true or false, got "maybe"/ },
    { what: "mode", input: { mode: "prod" }, expected: /input "mode": expected "check", "release", "search", "quantize", "evaluate", "merge", got "prod"/ },
    {
      what: "retention",
      input: { "artifact-retention-days": "365" },
      expected: /input "artifact-retention-days": expected a whole number of days from 1 to 90, got "365"/,
    },
  ];
  for (const c of cases) it(c.what, () => expect(() => readCiInputs((n) => c.input[n])).toThrow(c.expected));
  it("defaults", () => {
    expect(readCiInputs(() => undefined)).toMatchObject({ comment: "always", artifact: true, mode: "check", cache: true });
  });
});

describe("context", () => {
  it("reads a fork pull request and names configs by path", () => {
    const ctx = githubContextFrom(
      { GITHUB_EVENT_NAME: "pull_request", GITHUB_REPOSITORY: "acme/models", GITHUB_RUN_ID: "5", GITHUB_WORKSPACE: "/ws" },
      {
        pull_request: {
          number: 3,
          base: { ref: "main", repo: { full_name: "acme/models" } },
          head: { ref: "x", sha: "f".repeat(40), repo: { full_name: "fork/models" } },
        },
      },
    );
    expect(ctx.pullRequest).toMatchObject({ number: 3, baseRef: "main", fromFork: true });
    expect(ctx.sha).toBe("f".repeat(40));
    expect(ctx.runUrl).toBe("https://github.com/acme/models/actions/runs/5");
    expect(configId(ctx, "/ws/examples/tiny-lm/quantgate.yml")).toBe("examples-tiny-lm-quantgate");
    expect(configId(ctx, "/ws/quantgate.yml", "lm")).toBe("lm");
  });
});

describe("comment upsert (Octokit against the local API)", () => {
  let gh: FakeGithub;
  beforeAll(async () => {
    gh = await startFakeGithub();
  });
  afterAll(async () => gh.close());
  const target = { owner: "o", repo: "r", issueNumber: 1, marker: commentMarker("cfg") };

  it("never creates when asked not to, and on-failure only when failing", async () => {
    const octokit = createOctokit("t", gh.url);
    expect((await upsertComment(octokit, target, "body", "never", true)).action).toBe("skipped");
    expect((await upsertComment(octokit, target, "body", "on-failure", false)).action).toBe("skipped");
    const created = await upsertComment(octokit, target, "failing body", "on-failure", true);
    expect(created.action).toBe("created");
    // on-failure still updates an existing comment once the run passes, so it never shows a stale failure
    expect((await upsertComment(octokit, target, "passing body", "on-failure", false)).action).toBe("updated");
    expect((await upsertComment(octokit, target, "passing body", "always", false)).action).toBe("unchanged");
    expect(gh.comments.get("o/r#1")).toHaveLength(1);
  });

  it("turns 403 into a permission warning", async () => {
    gh.readOnly = true;
    try {
      await expect(upsertComment(createOctokit("t", gh.url), { ...target, issueNumber: 2 }, "b", "always", true)).rejects.toBeInstanceOf(
        CommentPermissionError,
      );
    } finally {
      gh.readOnly = false;
    }
  });
});

describe("artifact", () => {
  it("uploads the files that exist from their common folder, and wraps failures as optional", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "qg-art-"));
    await writeFile(path.join(dir, "a.onnx"), "x");
    await writeFile(path.join(dir, "r.json"), "{}");
    const calls: unknown[] = [];
    const ok: ArtifactUploader = { upload: async (...args) => (calls.push(args), { id: 42, size: 3 }) };
    const r = await uploadArtifact(
      ok,
      "quantgate-x",
      [path.join(dir, "a.onnx"), path.join(dir, "r.json"), path.join(dir, "missing.md"), undefined],
      "https://g/run/1",
      5,
    );
    expect(calls).toEqual([["quantgate-x", [path.join(dir, "a.onnx"), path.join(dir, "r.json")], dir, 5]]);
    expect(r.url).toBe("https://g/run/1/artifacts/42");
    const bad: ArtifactUploader = { upload: async () => Promise.reject(new Error("Unable to get the ACTIONS_RUNTIME_TOKEN env variable")) };
    await expect(uploadArtifact(bad, "n", [path.join(dir, "a.onnx")], undefined)).rejects.toBeInstanceOf(OptionalStepError);
  });
});

describe("work cache", () => {
  const inputs: WorkKeyInputs = {
    kind: "quantized",
    model: "a".repeat(64),
    recipe: "b".repeat(64),
    data: [
      { path: "calib.jsonl", sha256: "c".repeat(64) },
      { path: "eval.jsonl", sha256: "d".repeat(64) },
    ],
    toolVersion: "0.1.0",
    runtime: { onnxruntime: "1.30.0", platform: "linux", arch: "x64", kernels: "native" },
  };

  it("keys by model, recipe, data, tool and runtime, not by key order or data paths", () => {
    const key = workCacheKey(inputs);
    expect(key).toMatch(/^quantized-[0-9a-f]{32}$/);
    expect(workCacheKey({ ...inputs, runtime: { kernels: "native", arch: "x64", platform: "linux", onnxruntime: "1.30.0" } })).toBe(key);
    expect(workCacheKey({ ...inputs, data: inputs.data!.map((d) => ({ ...d, path: `moved/${d.path}` })) })).toBe(key);
    for (const changed of [
      { model: "e".repeat(64) },
      { recipe: "f".repeat(64) },
      { data: [{ sha256: "0".repeat(64) }] },
      { toolVersion: "0.2.0" },
      { runtime: { ...inputs.runtime, onnxruntime: "1.31.0" } },
      { kind: "calibration" },
      { settings: { threads: 2 } },
    ]) {
      expect(workCacheKey({ ...inputs, ...changed })).not.toBe(key);
    }
  });

  it("saves and restores files and values (maps, typed arrays), and reports hits and misses", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "qg-work-"));
    const cache = new WorkCache(dir);
    const key = workCacheKey(inputs);
    const src = path.join(dir, "model.onnx");
    await writeFile(src, Buffer.from([1, 2, 3, 4]));
    expect(await cache.restore(key)).toBeUndefined();
    await cache.save(key, { "model.onnx": src, "layers.json": Buffer.from("[]") }, { sizeBytes: 4 });
    const hit = await cache.restore(key);
    expect(hit?.meta).toEqual({ sizeBytes: 4 });
    expect([...(await readFile(hit!.files["model.onnx"]!))]).toEqual([1, 2, 3, 4]);
    const dest = path.join(dir, "out", "restored.onnx");
    expect(await cache.restoreFile(key, "model.onnx", dest)).toBe(true);

    const statsKey = workCacheKey({ ...inputs, kind: "calibration" });
    const stats = new Map([["x", { rows: 3, meanAbs: Float64Array.from([1.5, 2]), gram: new Float64Array(4).fill(0.25) }]]);
    await cache.saveValue(statsKey, { stats, batches: 2 });
    const back = await cache.restoreValue<{ stats: Map<string, { rows: number; meanAbs: Float64Array; gram: Float64Array }>; batches: number }>(statsKey);
    expect(back!.batches).toBe(2);
    expect(back!.stats.get("x")!.meanAbs).toBeInstanceOf(Float64Array);
    expect([...back!.stats.get("x")!.gram]).toEqual([0.25, 0.25, 0.25, 0.25]);

    const s = cache.summary();
    expect(s.hits).toEqual(["quantized", "quantized", "calibration"]);
    expect(s.misses).toEqual(["quantized"]);
    expect(cacheSummaryLine(s)).toBe("Cache: 3 hits (quantized, quantized, calibration), 1 miss (quantized)");
  });

  it("ignores a corrupted entry, and does nothing when disabled", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "qg-work-"));
    const cache = new WorkCache(dir);
    const key = workCacheKey(inputs);
    await cache.save(key, { "m.onnx": Buffer.from("good") });
    await writeFile(path.join(dir, key, "m.onnx"), "evil");
    expect(await cache.restore(key)).toBeUndefined();
    expect(cache.summary().events[0]!.note).toMatch(/corrupt entry/);
    const off = new WorkCache(dir, { disabled: true });
    await off.save(key, { "m.onnx": Buffer.from("good") });
    expect(await off.restore(key)).toBeUndefined();
    await rm(dir, { recursive: true, force: true });
  });
});

describe("action.yml", () => {
  it("declares every input and output of the tables, and nothing else", async () => {
    const { parse } = await import("yaml");
    const { INPUTS, OUTPUTS } = await import("../../src/action/io.js");
    const action = parse(await readFile(new URL("../../action.yml", import.meta.url), "utf8")) as { inputs: object; outputs: object };
    expect(Object.keys(action.inputs).sort()).toEqual(Object.values(INPUTS).sort());
    expect(Object.keys(action.outputs).sort()).toEqual(Object.values(OUTPUTS).sort());
  });
});

describe("dashboard vendor file", () => {
  it("matches the installed uplot (regenerate with `node scripts/dashboard-vendor.mjs`)", async () => {
    const { UPLOT_JS, UPLOT_CSS, UPLOT_VERSION } = await import("../../src/dashboard/vendor.js");
    const dir = new URL("../../node_modules/uplot/", import.meta.url);
    expect(UPLOT_VERSION).toBe(JSON.parse(await readFile(new URL("package.json", dir), "utf8")).version);
    expect(UPLOT_JS).toBe(await readFile(new URL("dist/uPlot.iife.min.js", dir), "utf8"));
    expect(UPLOT_CSS).toBe(await readFile(new URL("dist/uPlot.min.css", dir), "utf8"));
  });
});
