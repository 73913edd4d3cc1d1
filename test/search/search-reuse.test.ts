// Calibration and the float model's evaluation are computed once per search (they do not depend on the recipe),
// in memory within a search and through the work cache across runs, and give the same results as computing them
// in every gate run. Real ONNX files and onnxruntime sessions (the classifier fixture: an MLP).
import { mkdtemp, readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { WorkCache } from "../../src/cache/index.js";
import { WorkReuse } from "../../src/cache/reuse.js";
import { loadConfig } from "../../src/config/load.js";
import { recipeSchema } from "../../src/config/schema.js";
import { runGate, type GateRun } from "../../src/pipeline.js";
import { loadOrt, type LoadedOrt } from "../../src/runtime/ort.js";
import { runSearch } from "../../src/search/index.js";
import { writeClassifierFixture } from "../helpers/models.js";

let ort: LoadedOrt;
beforeAll(async () => {
  ort = await loadOrt();
});

// accuracy_level 0 pinned: the level is otherwise chosen by timing, which is not the subject here.
const RECIPE = "  format: int8\n  block_size: 32\n  symmetric: true\n  accuracy_level: 0";
const SPACE = `search:
  space:
    formats: [int8, int4, int3, nf4]
    block_sizes: [32, 128]
    algorithms: [mse, gptq]
    mixed_formats: [int3, int4, int8]
  max_full_evaluations: 5
  holdout: 0.3
`;

async function fixture(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "qg-search-reuse-"));
  return writeClassifierFixture(dir, "  max_kl_mean: 0.02\n", { samples: 120, recipe: RECIPE, extra: SPACE });
}

/** What a run judged on: every metric but the timed ones (latency, memory, kernel benchmark), and the verdict. */
function accuracyFigures(run: GateRun): Record<string, number | undefined> {
  const timed = /latency|memory|kernel|rss/;
  const out: Record<string, number | undefined> = { size: run.report.quantized?.sizeBytes };
  for (const m of run.report.metrics) if (!timed.test(m.key)) out[m.key] = m.quantized;
  return out;
}

describe("search reuses recipe-independent work", () => {
  it("does not keep a failed calibration: the error reaches the caller (no unhandled rejection) and the next run retries", async () => {
    const reuse = new WorkReuse();
    const work = {
      model: "m",
      batches: [{ x: { type: "float32", dims: [1, 2], data: new Float32Array([1, 2]) } }],
      activations: ["x"],
      gram: { names: new Set<string>(), maxRows: 0 },
      types: new Map<string, number>(),
      convs: [],
      threads: 1,
      toolVersion: "t",
      runtime: {},
    };
    await expect(reuse.calibration(work, () => Promise.reject(new Error("ONNX Runtime could not load the float model")))).rejects.toThrow(/could not load/);
    const stats = new Map([["x", { rows: 1, meanAbs: new Float64Array([1.5]), meanSquare: new Float64Array([2.5]) }]]);
    const ok = await reuse.calibration(work, () => Promise.resolve({ stats, batches: 1, ms: 1 }));
    expect(ok.stats.get("x")?.meanSquare[0]).toBe(2.5);
    expect(reuse.summary()).toMatchObject({ calibrations: 2, calibrationReuses: 0 });
  });

  it("calibrates and evaluates the float model once per data part, and finds what the uncached search finds", async () => {
    const config = await loadConfig(await fixture());
    const reused = await runSearch(config, { ort });
    const fresh = await runSearch(config, { ort, noReuse: true });
    expect(reused.verdict, reused.message).toBe("pass");
    const runs = reused.evaluations.length + reused.holdoutRuns;
    expect(runs).toBeGreaterThanOrEqual(4);
    // One calibration for every candidate; the float model evaluated once on the search part and once on the
    // holdout part; every other gate run (and the accuracy-level trials inside them) replays its outputs.
    expect(reused.reuse).toMatchObject({ calibrations: 1, floatEvaluations: 2 });
    expect(reused.reuse!.calibrationReuses).toBeGreaterThanOrEqual(runs - 1);
    expect(reused.reuse!.floatEvaluationReuses).toBeGreaterThanOrEqual(runs - 2);
    expect(fresh.reuse).toBeUndefined();

    // The same candidates, verdicts, costs and accuracy figures as the search that computes everything each time.
    expect(reused.evaluations.map((e) => [e.candidate.label, e.verdict, e.cost])).toEqual(fresh.evaluations.map((e) => [e.candidate.label, e.verdict, e.cost]));
    expect(reused.best?.candidate.label).toBe(fresh.best?.candidate.label);
    for (const [i, e] of reused.evaluations.entries()) {
      const a = JSON.parse(await readFile(e.reportPath, "utf8")) as GateRun["report"];
      expect(e.rules.filter((r) => !/latency|memory/.test(r.rule)).map((r) => [r.rule, r.observed])).toEqual(
        fresh.evaluations[i]!.rules.filter((r) => !/latency|memory/.test(r.rule)).map((r) => [r.rule, r.observed]),
      );
      expect(a.calibration?.layers).toBeGreaterThan(0);
    }
  });

  it("shares calibration (Gram matrices included) and float outputs across recipes, in memory and through the work cache", async () => {
    const configPath = await fixture();
    const config = await loadConfig(configPath);
    const recipes = [
      recipeSchema.parse({ format: "int4", block_size: 32, algorithm: "gptq", accuracy_level: 0, min_elements: 256 }),
      recipeSchema.parse({ format: "int4", block_size: 128, algorithm: "mse", accuracy_level: 0, min_elements: 256 }),
      recipeSchema.parse({ format: "int3", block_size: 32, algorithm: "awq", accuracy_level: 0, min_elements: 256 }),
    ];
    const at = (i: number, tag: string) => ({ ...config, recipe: recipes[i]!, output_dir: `out-${tag}-${i}` });
    const plain: GateRun[] = [];
    for (const i of recipes.keys()) plain.push(await runGate(at(i, "plain"), { ort }));

    // One reuse object over three recipes: the first (GPTQ) collects Gram matrices, the others are served from it.
    const shared = new WorkReuse();
    const reusedRuns: GateRun[] = [];
    for (const i of recipes.keys()) reusedRuns.push(await runGate(at(i, "shared"), { ort, reuse: shared }));
    expect(shared.summary()).toEqual({ calibrations: 1, calibrationReuses: 2, floatEvaluations: 1, floatEvaluationReuses: 2 });
    for (const i of recipes.keys()) {
      expect(reusedRuns[i]!.report.gate.errors).toEqual([]);
      expect(accuracyFigures(reusedRuns[i]!)).toEqual(accuracyFigures(plain[i]!));
    }

    // Across runs: a work cache filled by one run serves calibration and float outputs to a run with another recipe.
    const cache = new WorkCache(path.join(path.dirname(configPath), ".quantgate", "cache"));
    await runGate(at(0, "cold"), { ort, cache });
    const warmReuse = new WorkReuse({ cache });
    const warm = await runGate(at(1, "warm"), { ort, cache, reuse: warmReuse });
    expect(warmReuse.summary()).toMatchObject({ calibrations: 0, floatEvaluations: 0 });
    expect(warm.report.cache?.hits).toEqual(expect.arrayContaining(["calibration", "float-eval"]));
    expect(accuracyFigures(warm)).toEqual(accuracyFigures(plain[1]!));

    // Float outputs past the byte budget are not kept: the float model runs again, with the same results, and says so.
    const notes: string[] = [];
    const small = new WorkReuse({ maxRecordedBytes: 4096, onNote: (n) => notes.push(n) });
    const over = [await runGate(at(1, "over-a"), { ort, reuse: small }), await runGate(at(2, "over-b"), { ort, reuse: small })];
    expect(small.summary()).toMatchObject({ floatEvaluations: 2, floatEvaluationReuses: 0 });
    expect(notes).toEqual(["float-model outputs over 4096 bytes: not kept, the float model runs in every evaluation"]);
    expect(accuracyFigures(over[0]!)).toEqual(accuracyFigures(plain[1]!));
    expect(accuracyFigures(over[1]!)).toEqual(accuracyFigures(plain[2]!));
  });
});
