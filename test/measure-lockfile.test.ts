// Same model, recipe and lockfile give the same bytes: the committed lockfile's forms and accuracy level
// are used as pinned (not re-timed), whatever the thread count or the load on the runner.
import { spawn, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { copyFile, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fromBinary } from "@bufbuild/protobuf";
import { ModelProtoSchema } from "onnx-buf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "./helpers/action.js";
import { writeClassifierFixture } from "./helpers/models.js";
import type { Lockfile } from "../src/report/lockfile.js";
import type { Report } from "../src/report/types.js";

interface GateFiles {
  readonly report: Report;
  readonly lock: Lockfile & { execution: NonNullable<Lockfile["execution"]> };
  readonly model: Buffer;
}

function gate(config: string, out: string, extra: string[] = []): GateFiles {
  const r = spawnSync(process.execPath, [path.join(REPO_ROOT, "bin", "quantgate.js"), "run", "-c", config, "--output-dir", out, ...extra], {
    encoding: "utf8",
  });
  expect(r.status, r.stdout + r.stderr).toBe(0);
  const read = (f: string): Buffer => readFileSync(path.join(out, f));
  return {
    report: JSON.parse(read("quantgate-report.json").toString("utf8")),
    lock: JSON.parse(read("quantgate.lock.json").toString("utf8")),
    model: read("mlp.quantized.onnx"),
  };
}

describe("forms and accuracy level pinned by the lockfile", () => {
  let dir: string;
  let config: string;
  let first: ReturnType<typeof gate>;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "qg-lock-"));
    config = await writeClassifierFixture(dir, "  max_kl_mean: 1");
    first = gate(config, path.join(dir, "out-first"));
  }, 120_000);
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("without a committed lockfile, chooses by timing on this runner, says so, and writes the choice into the lockfile", () => {
    expect(first.report.execution.formsChosenBy).toMatch(/^timing on this runner \(.*, 1 thread\(s\)\); no committed lockfile$/);
    expect(first.report.execution.forms.length).toBeGreaterThan(0);
    expect(first.lock.execution).toMatchObject({
      accuracyLevel: first.report.execution.accuracyLevel,
      forms: { int4: first.report.execution.forms[0]!.chosen },
    });
    expect(first.lock.execution.chosenBy).toMatch(/^timing on this runner/);
    expect(first.report.execution.accuracy?.how).toBe("measured");
  });

  it("with the lockfile committed, two runs on other thread counts and under a CPU hog emit the same bytes, without timing", async () => {
    await copyFile(path.join(dir, "out-first", "quantgate.lock.json"), path.join(dir, "quantgate.lock.json"));
    const twoThreads = gate(config, path.join(dir, "out-threads"), ["--threads", "2"]);
    const hog = spawn(process.execPath, ["-e", "for (;;) {}"], { stdio: "ignore" });
    let loaded: ReturnType<typeof gate>;
    try {
      loaded = gate(config, path.join(dir, "out-hog"));
    } finally {
      hog.kill("SIGKILL");
    }
    for (const run of [twoThreads, loaded]) {
      expect(run.report.execution.forms).toEqual([]); // nothing re-timed
      expect(run.report.execution.pinnedFormats).toEqual(["int4"]);
      expect(run.report.execution.formsChosenBy).toMatch(/^forms pinned by the committed lockfile \(chosen by timing on this runner/);
      expect(run.report.execution.accuracy).toMatchObject({ how: "pinned", level: first.lock.execution.accuracyLevel });
      expect(run.model.equals(first.model)).toBe(true);
    }
    expect(twoThreads.model.equals(loaded.model)).toBe(true);
  }, 180_000);

  it("uses a pinned form even where timing would choose another, and times afresh when the recipe changed", async () => {
    const lock = JSON.parse(await readFile(path.join(dir, "out-first", "quantgate.lock.json"), "utf8"));
    lock.execution.forms.int4 = "dequant-subgraph"; // timing prefers the packed MatMulNBits
    lock.execution.accuracyLevel = 0;
    await writeFile(path.join(dir, "quantgate.lock.json"), JSON.stringify(lock));
    const pinned = gate(config, path.join(dir, "out-pinned"));
    const nodes = fromBinary(ModelProtoSchema, pinned.model).graph!.node;
    expect(nodes.some((n) => n.opType === "MatMulNBits")).toBe(false);
    expect(pinned.report.weights.quantized.every((l) => l.form === "dequant-subgraph")).toBe(true);

    const otherRecipe = path.join(dir, "other.yml");
    await writeFile(otherRecipe, (await readFile(config, "utf8")).replace("block_size: 32", "block_size: 64"));
    const retimed = gate(otherRecipe, path.join(dir, "out-other"));
    expect(retimed.report.execution.formsChosenBy).toMatch(/committed lockfile is for another recipe/);
    expect(retimed.report.execution.forms.length).toBeGreaterThan(0);
  }, 180_000);
});
