// The measuring children never outlive the gate: signals kill them, a vanished parent ends them, and each
// has a time limit sized from its measured warm-up (or measure.timeout).
import { spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { measureSchema } from "../src/config/schema.js";
import { parseConfig } from "../src/config/load.js";
import { feedsToJson } from "../src/data/tensors.js";
import { childTimeouts, LOAD_LIMIT_MS, measureInterleavedLatency, MIN_RUN_LIMIT_MS, runLimitMs } from "../src/measure/index.js";
import { serializeModel } from "../src/onnx/model.js";
import { liveChildren, runSupervisedChild } from "../src/runtime/child.js";
import { buildMlp, randomMatrix } from "./helpers/models.js";
import { REPO_ROOT } from "./helpers/action.js";

const linux = process.platform === "linux";
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !readFileSync(`/proc/${pid}/stat`, "utf8").includes(") Z ");
  } catch {
    return false;
  }
}

function childrenOf(ppid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[1]) === ppid) out.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** Polls until `cond` holds or `limitMs` passes (a bound on waiting, not a timing assertion). */
async function waitFor(cond: () => boolean, limitMs: number): Promise<boolean> {
  const end = Date.now() + limitMs;
  while (Date.now() < end) {
    if (cond()) return true;
    await sleep(50);
  }
  return cond();
}

describe("child time limits", () => {
  it("sizes the run limit from the measured warm-up, with a floor", () => {
    expect(runLimitMs(2, 20)).toBe(MIN_RUN_LIMIT_MS);
    expect(runLimitMs(100, 1000)).toBe(1_000_000);
    const auto = childTimeouts(undefined);
    expect(auto.startMs).toBe(LOAD_LIMIT_MS);
    expect(auto.after({ type: "warm", perRunMs: 100, remainingRuns: 1000 })).toBe(1_000_000);
    expect(auto.after({ type: "loaded", loadMs: 5 })).toBe(LOAD_LIMIT_MS);
  });

  it("takes measure.timeout as a hard limit on the whole child", () => {
    const fixed = childTimeouts(5000);
    expect(fixed.startMs).toBe(5000);
    expect(fixed.after({ type: "warm", perRunMs: 100, remainingRuns: 1000 })).toBeUndefined();
  });

  it("re-arms the limit when the child reports its warm-up, and kills it when that limit passes", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "qg-child-"));
    try {
      const script = path.join(dir, "hang.mjs");
      await writeFile(script, `process.send({ type: "warm", perRunMs: 1, remainingRuns: 1 }); setInterval(() => {}, 1000);\n`);
      const c = runSupervisedChild(
        script,
        process.env,
        "hanging child",
        { startMs: 120_000, after: () => 300 },
        () => undefined,
        () => undefined,
      );
      await expect(c.done).rejects.toThrow(/hanging child timed out after 0\.3 s after its warm-up \(measure\.timeout sets the limit\)/);
      expect(alive(c.pid!)).toBe(false);
      expect(liveChildren()).toBe(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("measure settings bounds", () => {
  const base = `model: m.onnx\nevaluation:\n  task: language-modeling\n  dataset: e.txt\n  tokenizer: t.json\n`;
  it("refuses an absurd number of runs with the key and line", () => {
    expect(() => parseConfig(`${base}measure:\n  runs: 1000000000\n`, "quantgate.yml")).toThrow(
      /quantgate\.yml:7 measure\.runs: expected at most 10000 timed runs/,
    );
    expect(() => parseConfig(`${base}measure:\n  warmup: 99999\n`, "quantgate.yml")).toThrow(/:7 measure\.warmup: expected at most 1000/);
  });
  it("reads measure.timeout as a duration of at least a second", () => {
    expect(measureSchema.parse({ timeout: "600s" }).timeout).toBe(600_000);
    expect(measureSchema.parse({}).timeout).toBeUndefined();
    expect(() => parseConfig(`${base}measure:\n  timeout: 0.5s\n`, "quantgate.yml")).toThrow(/:7 measure\.timeout: expected a duration of at least 1s/);
  });
});

describe.skipIf(!linux)("measuring child lifecycle", () => {
  let dir: string;
  let modelPath: string;
  let feedsPath: string;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "qg-lifecycle-"));
    modelPath = path.join(dir, "mlp.onnx");
    await writeFile(modelPath, serializeModel(buildMlp(1024, 2048, 1024).proto));
    feedsPath = path.join(dir, "feeds.json");
    await writeFile(feedsPath, feedsToJson({ x: { type: "float32", dims: [8, 1024], data: randomMatrix(8, 1024, 3) } }));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("kills a child that overruns measure.timeout", async () => {
    const settings = measureSchema.parse({ runs: 10_000, warmup: 0, timeout: "1s" });
    await expect(measureInterleavedLatency([modelPath, modelPath], feedsPath, settings)).rejects.toThrow(
      /timing mlp\.onnx and mlp\.onnx timed out after 1\.0 s/,
    );
    expect(liveChildren()).toBe(0);
  });

  /** A gate-like parent (the compiled library) measuring for a long time; returns it and its measuring child. */
  async function parentWithChild(): Promise<{ parent: ReturnType<typeof spawn>; child: number }> {
    const lib = pathToFileURL(path.join(REPO_ROOT, "lib", "measure", "index.js")).href;
    const script = path.join(dir, `parent-${Math.random().toString(36).slice(2)}.mjs`);
    await writeFile(
      script,
      `import { measureInterleavedLatency } from ${JSON.stringify(lib)};\n` +
        `await measureInterleavedLatency([${JSON.stringify(modelPath)}], ${JSON.stringify(feedsPath)}, { threads: 1, warmup: 0, runs: 10000, memory: true, kernel_benchmark: false });\n`,
    );
    const parent = spawn(process.execPath, [script], { stdio: "ignore" });
    let child = 0;
    await waitFor(() => {
      child = childrenOf(parent.pid!)[0] ?? 0;
      return child !== 0;
    }, 30_000);
    expect(child, "the parent started a measuring child").not.toBe(0);
    return { parent, child };
  }

  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    it(`kills the measuring child when the gate gets ${signal} (no orphan), and ends with that signal`, async () => {
      const { parent, child } = await parentWithChild();
      const exited = new Promise<NodeJS.Signals | null>((resolve) => parent.on("exit", (_code, sig) => resolve(sig)));
      parent.kill(signal);
      expect(await exited).toBe(signal);
      expect(await waitFor(() => !alive(child), 10_000)).toBe(true);
    });
  }

  it("ends the child by itself when the parent is killed outright (SIGKILL cannot be caught)", async () => {
    const { parent, child } = await parentWithChild();
    parent.kill("SIGKILL");
    expect(await waitFor(() => !alive(child), 15_000)).toBe(true);
  });
});
