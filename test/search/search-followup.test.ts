// The search's cost order and its follow-ups, on real models and real onnxruntime sessions: the estimate against
// the stored sizes of a Conv model (examples/segmentation), a uniform winner's neighbour block sizes, mixed
// targets met in the estimate's bits, and a winner the holdout rejects followed up on the search part.
import { cp, mkdtemp, readFile, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.js";
import { recipeSchema, type WeightFormat } from "../../src/config/schema.js";
import { runGate } from "../../src/pipeline.js";
import { loadOrt, type LoadedOrt } from "../../src/runtime/ort.js";
import { costOf, estimateModelBpw, loadSearchInputs, mixedFactory, runSearch } from "../../src/search/index.js";
import { splitEvaluation } from "../../src/search/split.js";
import { writeClassifierFixture } from "../helpers/models.js";

let ort: LoadedOrt;
beforeAll(async () => {
  ort = await loadOrt();
});

/** examples/segmentation in a temporary folder (the search writes under it), with `extra` appended to its config. */
async function segmentation(extra = ""): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "qg-search-seg-"));
  await cp(path.resolve("examples/segmentation"), dir, { recursive: true });
  const configPath = path.join(dir, "quantgate.yml");
  await writeFile(configPath, (await readFile(configPath, "utf8")) + extra);
  return configPath;
}

describe("search cost order on a Conv model", () => {
  it("orders uniform recipes by their estimate as their stored sizes are ordered", async () => {
    const config = await loadConfig(await segmentation());
    const { sites } = await loadSearchInputs(config, config.evaluation.dataset, (config.evaluation as { labels?: string }).labels);
    const recipes: [WeightFormat, number][] = [
      ["int4", 32],
      ["int4", 64],
      ["int4", 128],
      ["nf4", 64],
      ["nf4", 128],
      ["mxfp4", 32],
    ];
    const rows: { label: string; estimate: number; stored: number }[] = [];
    for (const [format, blockSize] of recipes) {
      const recipe = recipeSchema.parse({ ...config.recipe, format, block_size: blockSize, symmetric: false, algorithm: "rtn" });
      const run = await runGate(
        { ...config, recipe, evaluation: { ...config.evaluation, samples: 2 }, output_dir: `quantgate-out/order-${format}-${blockSize}` },
        { ort },
      );
      rows.push({ label: `${format} b${blockSize}`, estimate: estimateModelBpw(sites, format, blockSize, false, "size"), stored: costOf(run.report, "size")! });
    }
    // Every pair whose stored sizes differ is ordered the same way by the estimate (int4 b64 and b128 differ by
    // a few bytes only: the zero points of these Conv weights are stored one byte per block).
    for (const a of rows) {
      for (const b of rows) {
        if (a.stored < b.stored) expect(a.estimate, `${a.label} (${a.stored} B) vs ${b.label} (${b.stored} B)`).toBeLessThan(b.estimate);
      }
    }
  }, 300_000);

  it("does not end on a uniform recipe dearer than a passing one of the same format and algorithm at another block size", async () => {
    const configPath = await segmentation(`search:
  space:
    formats: [int4]
    block_sizes: [32, 64, 128]
    algorithms: [rtn]
    mixed_formats: []
  max_full_evaluations: 4
  holdout: 0.3
`);
    // A gate every int4 recipe passes: the cheapest is decided by the stored size alone.
    const text = (await readFile(configPath, "utf8")).replace(/^gate:\n(?: {2}.*\n)+/m, "gate:\n  min_iou: 0.5\n");
    await writeFile(configPath, text);
    const config = await loadConfig(configPath);
    const result = await runSearch(config, { ort });
    expect(result.verdict, result.message).toBe("pass");
    expect(result.evaluations.length).toBeLessThanOrEqual(4);
    const best = result.best!;
    // Every block size of the winner's format and algorithm, a full gate run on the same search part.
    const labels = result.split.searchLabels ? { labels: result.split.searchLabels } : {};
    for (const blockSize of [32, 64, 128]) {
      const recipe = recipeSchema.parse({ ...best.candidate.recipe, block_size: blockSize });
      const run = await runGate(
        {
          ...config,
          recipe,
          evaluation: { ...config.evaluation, dataset: result.split.search, ...labels },
          output_dir: `quantgate-out/neighbour-${blockSize}`,
        },
        { ort },
      );
      if (run.report.verdict === "pass") expect(best.cost, `b${blockSize}`).toBeLessThanOrEqual(costOf(run.report, "size")!);
    }
  }, 300_000);

  it("meets a mixed-precision target in the estimate's bits: never above it, and more bits for a higher target", async () => {
    const config = await loadConfig(await segmentation());
    const inputs = await loadSearchInputs(config, config.evaluation.dataset, (config.evaluation as { labels?: string }).labels);
    const like = recipeSchema.parse({ ...config.recipe, format: "int4", block_size: 128, symmetric: false, algorithm: "mse" });
    const factory = await mixedFactory({
      config,
      opts: { ort },
      ...inputs,
      formats: ["int2", "int4", "int8"],
      perLayer: true,
      blockSize: 128,
      like,
      objective: "size",
      notes: [],
    });
    let previous = 0;
    const seen: number[] = [];
    for (const target of [3, 3.5, 4, 4.5, 5, 6, 7]) {
      const c = factory.candidate(target);
      if (!c) continue;
      expect(c.estBpw, `target ${target}`).toBeLessThanOrEqual(target + 1e-9);
      expect(c.estBpw, `target ${target}`).toBeGreaterThanOrEqual(previous);
      previous = c.estBpw;
      seen.push(c.estBpw);
    }
    // The padded Conv rows make the allocator's own bits far from the estimate: the mapping still spans the range.
    expect(seen.length).toBeGreaterThan(3);
    expect(Math.max(...seen) - Math.min(...seen)).toBeGreaterThan(1);
  }, 300_000);
});

describe("search follow-up after the holdout verification", () => {
  it("keeps one evaluation back, and spends it on a mixed candidate after the holdout rejects the winner; only a verified recipe is suggested", async () => {
    // The classifier fixture with its held-out rows scaled up (larger logits, larger quantization KL): recipes that
    // pass the KL rule on the search part by a small margin fail it on the holdout part.
    const dir = await mkdtemp(path.join(os.tmpdir(), "qg-search-followup-"));
    const configPath = await writeClassifierFixture(dir, "  max_kl_mean: 0.02\n", {
      samples: 160,
      recipe: "  format: int8\n  block_size: 32\n  symmetric: true",
      extra:
        "search:\n  space:\n    formats: [int8, int4, int3, int2]\n    block_sizes: [32, 64, 128]\n    algorithms: [rtn, mse]\n  max_full_evaluations: 6\n  holdout: 0.3\n",
    });
    const config = await loadConfig(configPath);
    const split = await splitEvaluation(config, 0.3, path.join(dir, "probe-split"));
    const held = new Set((await readFile(path.join(dir, split.holdout), "utf8")).trim().split("\n"));
    const rows = (await readFile(path.join(dir, "eval.jsonl"), "utf8")).trim().split("\n");
    const scaled = rows.map((line) => {
      if (!held.has(line)) return line;
      const row = JSON.parse(line) as { inputs: { x: number[] }; label: number };
      return JSON.stringify({ ...row, inputs: { x: row.inputs.x.map((v) => v * 3) } });
    });
    await writeFile(path.join(dir, "eval.jsonl"), scaled.join("\n") + "\n");

    const log: string[] = [];
    const result = await runSearch(config, { ort, log: (m) => log.push(m) });
    expect(result.evaluations.length).toBeLessThanOrEqual(6);
    // One evaluation kept back: the search part's choices before the first verification used at most 5.
    const firstVerify = log.findIndex((m) => m.startsWith("verifying "));
    expect(firstVerify).toBeGreaterThan(0);
    const before = log.slice(0, firstVerify).filter((m) => m.startsWith("[search ")).length;
    expect(before).toBeLessThanOrEqual(5);
    // The held-out rows are harder: the cheapest recipe of the search part is rejected there.
    expect(result.rejected?.length ?? 0, result.message).toBeGreaterThan(0);
    const first = result.evaluations.find((e) => e.candidate.label === result.rejected![0]!.candidate.label)!;
    // The follow-up: a full evaluation on the search part after that rejection, a mixed-precision candidate cheaper
    // than the next passing one the search had then (the budget allowed it: 6 > 5).
    const after = log.slice(firstVerify + 1);
    const followUpIndex = after.findIndex((m) => m.startsWith("[search "));
    expect(followUpIndex, log.join("\n")).toBeGreaterThanOrEqual(0);
    const followUp = result.evaluations[before]!;
    expect(followUp.candidate.kind).toBe("mixed");
    // Above a rejected mix (the bisection's floor rises to it), below the next candidate in line.
    if (first.candidate.kind === "mixed") expect(followUp.candidate.estBpw).toBeGreaterThan(first.candidate.estBpw);
    const nextPassing = result.evaluations
      .slice(0, before)
      .filter((e) => e.verdict === "pass" && e.cost! > first.cost!)
      .sort((a, b) => a.cost! - b.cost!)[0];
    if (nextPassing) expect(followUp.candidate.estBpw).toBeLessThan(nextPassing.candidate.estBpw);
    // Whatever is suggested passed the same rules on the holdout part.
    if (result.patch) expect(result.verification!.winner.verdict).toBe("pass");
    for (const r of result.rejected!) expect(r.verdict).toBe("fail");
  }, 600_000);
});
