// The search end to end on a real model (the classifier fixture: an ONNX MLP, real onnxruntime sessions):
// the cheapest passing recipe against the presets, the patch, the holdout, the no-pass case, and the
// action's pull-request comment against the local fake GitHub API (in process: dist/ is rebundled later).
import { execFileSync } from "node:child_process";
import { mkdtemp, readdir, readFile, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.js";
import { PRESETS, recipeSchema } from "../../src/config/schema.js";
import { runGate } from "../../src/pipeline.js";
import { loadOrt, type LoadedOrt } from "../../src/runtime/ort.js";
import { costOf, firstReason, runSearch } from "../../src/search/index.js";
import { renderSuggestion } from "../../src/search/markdown.js";
import { splitEvaluation } from "../../src/search/split.js";
import { parseNpy } from "../../src/data/formats.js";
import { main as cliMain } from "../../src/cli.js";
import { writeClassifierFixture } from "../helpers/models.js";

const SPACE = `search:
  space:
    formats: [int8, int4, int3, int2, nf4, mxfp4]
    block_sizes: [32, 64, 128]
    algorithms: [rtn, mse, gptq]
  max_full_evaluations: 8
  holdout: 0.3
`;

let ort: LoadedOrt;
beforeAll(async () => {
  ort = await loadOrt();
});

async function fixture(gate: string, extra = SPACE): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "qg-search-"));
  const configPath = await writeClassifierFixture(dir, gate, {
    samples: 160,
    recipe: "  # the recipe under review\n  format: int8\n  block_size: 32\n  symmetric: true",
    extra,
  });
  return configPath;
}

describe("quantgate search", () => {
  it("finds a passing recipe at least as cheap as every passing preset, verified on held-out data, as a patch that applies", async () => {
    const configPath = await fixture("  max_kl_mean: 0.02\n");
    const config = await loadConfig(configPath);
    const result = await runSearch(config, { ort });
    expect(result.verdict, result.message).toBe("pass");
    expect(result.split.split).toBe(true);
    expect(result.split.holdoutItems).toBeGreaterThan(20);
    expect(result.evaluations.length).toBeLessThanOrEqual(8);
    expect(result.sensitivity?.layers).toBe(2); // measured once, per layer
    const best = result.best!;
    expect(best.verdict).toBe("pass");
    // The cheapest candidate that passed on the search part (the suggestion can be dearer when the holdout rejects it).
    const cheapestFound = Math.min(...result.evaluations.filter((e) => e.verdict === "pass").map((e) => e.cost!));
    // Both scores reported: the search part and the holdout part, with the same rules.
    expect(result.verification!.winner.verdict).toBe("pass");
    expect(result.verification!.winnerReport.gate.rules.map((r) => r.rule).sort()).toEqual(
      result.verification!.currentReport.gate.rules.map((r) => r.rule).sort(),
    );

    // The presets of the space, each a full gate run on the same search part: the search is at least as cheap.
    const presetCosts: { name: string; cost: number }[] = [];
    for (const name of ["int8", "int4-rtn", "int4-gptq", "nf4", "mxfp4"]) {
      const recipe = recipeSchema.parse({ ...PRESETS[name], min_elements: 256 });
      const run = await runGate(
        { ...config, recipe, evaluation: { ...config.evaluation, dataset: result.split.search }, output_dir: path.join("quantgate-out", "presets", name) },
        { ort },
      );
      if (run.report.verdict === "pass") presetCosts.push({ name, cost: costOf(run.report, "size")! });
    }
    expect(presetCosts.length).toBeGreaterThan(0);
    const cheapestPreset = Math.min(...presetCosts.map((p) => p.cost));
    expect(cheapestFound).toBeLessThanOrEqual(cheapestPreset);
    for (const r of result.rejected ?? []) expect(r.verdict).toBe("fail");

    // The patch: comments kept, only the recipe changes, it applies with git and parses to the winner.
    const patch = result.patch!;
    expect(patch.exact).toBe(true);
    expect(patch.diff).toMatch(/^--- a\/quantgate\.yml\n\+\+\+ b\/quantgate\.yml\n@@ -\d+(,\d+)? \+\d+(,\d+)? @@/);
    expect(patch.diff).toContain("-  format: int8");
    const patched = await readFile(patch.configPath, "utf8");
    expect(patched).toContain("# the recipe under review");
    const dir = path.dirname(configPath);
    const copy = await mkdtemp(path.join(os.tmpdir(), "qg-apply-"));
    await writeFile(path.join(copy, "quantgate.yml"), await readFile(configPath, "utf8"));
    execFileSync("git", ["apply", "--whitespace=nowarn", patch.patchPath], { cwd: copy });
    expect(await readFile(path.join(copy, "quantgate.yml"), "utf8")).toBe(patched);
    // The patched config runs the winner: same recipe hash as the lockfile the search wrote.
    const lock = JSON.parse(await readFile(result.lockfilePath!, "utf8")) as { recipeHash?: string; recipe?: string };
    const rerun = await runGate({ ...(await loadConfig(patch.configPath)), output_dir: "quantgate-out/rerun" }, { ort });
    expect(JSON.stringify(lock)).toContain(rerun.report.hashes.recipe);
    expect(dir).toBeTruthy();

    const md = renderSuggestion(result);
    expect(md).toContain("### Suggested recipe");
    expect(md).toContain("```diff");
    expect(md).toMatch(/\| Model size \| .* \| .* \|/);
  }, 600_000);

  it("reports clearly, and fails, when no recipe of the space can pass", async () => {
    // Accuracy out of reach: the most generous level already fails (its first algorithm, then its calibrated
    // one, GPTQ), nothing cheaper is tried.
    const configPath = await fixture("  max_kl_mean: 0.0000001\n");
    const result = await runSearch(await loadConfig(configPath), { ort });
    expect(result.verdict).toBe("fail");
    expect(result.message).toMatch(/no recipe of the search space passes every gate rule; the most generous one tried fails: int8 b\d+ .*KL divergence/);
    expect(result.evaluations.map((e) => e.candidate.label)).toEqual([expect.stringMatching(/^int8 b\d+ mse$/), expect.stringMatching(/^int8 b\d+ gptq$/)]);
    expect(result.patch).toBeUndefined();
    expect(renderSuggestion(result)).toContain("**No recipe suggested.**");
    // The CLI exits 1.
    expect(await cliMain(["search", "-c", configPath])).toBe(1);

    // Size out of reach: the cheapest recipe that is accurate enough still breaks the size rule, and says which.
    const tight = await fixture("  max_kl_mean: 0.02\n  max_model_size: 1KiB\n");
    const r2 = await runSearch(await loadConfig(tight), { ort });
    expect(r2.verdict).toBe("fail");
    expect(r2.message).toMatch(/the cheapest one that meets the accuracy rules \(.+\) still breaks a cost rule: Model size/);
  }, 300_000);

  it("stops at search.max_full_evaluations and says so", async () => {
    const configPath = await fixture("  max_kl_mean: 0.01\n", SPACE.replace("max_full_evaluations: 8", "max_full_evaluations: 1"));
    const result = await runSearch(await loadConfig(configPath), { ort });
    expect(result.evaluations).toHaveLength(1);
    expect(result.stoppedEarly).toMatch(/search\.max_full_evaluations \(1\)/);
  }, 300_000);
});

afterAll(() => {});

describe("search notes", () => {
  it("turns an error that introduces a list into one sentence naming its first item, not a bare colon", () => {
    const message =
      "the recipe's algorithm cannot run on 2 weight(s), and QuantGate does not substitute another silently:\n  conv1.weight: awq needs the K inputs\n  conv2.weight: awq needs the K inputs\ngive them an algorithm";
    expect(firstReason(message)).toBe(
      "the recipe's algorithm cannot run on 2 weight(s), and QuantGate does not substitute another silently, e.g. conv1.weight: awq needs the K inputs",
    );
    expect(firstReason("no calibration data\nmore detail")).toBe("no calibration data");
    expect(firstReason("one line")).toBe("one line");
  });
});

describe("holdout split of image folders labelled by a labels file", () => {
  it("splits examples/segmentation into two labelled parts, each with its own labels file, mask paths absolute", async () => {
    const config = await loadConfig(path.resolve("examples/segmentation/quantgate.yml"));
    const dir = await mkdtemp(path.join(os.tmpdir(), "qg-split-"));
    const split = await splitEvaluation(config, 0.3, dir);
    expect(split.split, split.note).toBe(true);
    expect([split.searchItems, split.holdoutItems]).toEqual([34, 14]);
    expect(split.note).toBe("eval: 14 of 48 labelled images held out");
    for (const [part, labels, n] of [
      [split.search, split.searchLabels, 34],
      [split.holdout, split.holdoutLabels, 14],
    ] as const) {
      const rows = (await readFile(path.resolve(config.baseDir, labels!), "utf8"))
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as { file: string; mask: string });
      expect(rows).toHaveLength(n);
      const images = (await readdir(path.resolve(config.baseDir, part))).filter((f) => f.endsWith(".png")).sort();
      expect(rows.map((r) => r.file)).toEqual(images);
      for (const r of rows) expect(r.mask).toBe(path.resolve("examples/segmentation/masks", r.file));
    }
  });
});

describe("holdout split of a one-dimensional .npy sequence", () => {
  it("cuts examples/recurrent's token stream into contiguous parts whose concatenation is the original", async () => {
    const config = await loadConfig(path.resolve("examples/recurrent/quantgate.yml"));
    const dir = await mkdtemp(path.join(os.tmpdir(), "qg-split-npy-"));
    const split = await splitEvaluation(config, 0.3, dir);
    expect(split.split, split.note).toBe(true);
    expect(split.note).toBe("eval_ids.npy: the last 307 of 1024 elements of the sequence held out");
    const read = async (p: string) => parseNpy(await readFile(path.resolve(config.baseDir, p)), p);
    const [a, b, whole] = [await read(split.search), await read(split.holdout), await read("eval_ids.npy")];
    expect([a.dims, b.dims]).toEqual([[717], [307]]);
    expect([...(a.values as BigInt64Array), ...(b.values as BigInt64Array)]).toEqual([...(whole.values as BigInt64Array)]);
  });
});
