// The search against the presets and an exhaustive grid over the same space, on the bundled examples (not a
// test). Every figure is a full gate run on the search part of the evaluation data (the holdout part is kept for
// the search's own verification). Writes bench/out/search.json.
// Run: npm run bench:search   (QG_BENCH_EXAMPLES=cnn-classifier,tiny-lm to pick examples; QG_BENCH_NO_GRID=1 skips
// every grid, QG_BENCH_NO_GRID=tiny-lm,... the named ones; QG_BENCH_ALGORITHMS=rtn,mse,gptq widens the space's algorithms; llama-kjv's grid is skipped by default: about 40 runs of
// 45-60 s each on a loaded 2-core machine)
import { cp, mkdir, mkdtemp, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { loadConfig } from "../lib/config/load.js";
import { PRESETS, recipeSchema } from "../lib/config/schema.js";
import { runGate } from "../lib/pipeline.js";
import { loadKernelQuantizer } from "../lib/quantize/kernels.js";
import { loadOrt } from "../lib/runtime/ort.js";
import { canonical } from "../lib/cache/index.js";
import { splitEvaluation } from "../lib/search/split.js";
import { costOf, loadSearchInputs, mixedFactory, mixedFormatsFor, runSearch, uniformCandidates } from "../lib/search/index.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const examples = (process.env.QG_BENCH_EXAMPLES ?? "cnn-classifier,tiny-lm,recurrent,text-recognition,segmentation,llama-kjv").split(",");
const noGrid = new Set((process.env.QG_BENCH_NO_GRID ?? "llama-kjv").split(","));
const gridFor = (name) => !noGrid.has("1") && !noGrid.has(name);
// A space small enough for the grid to be affordable on a shared machine.
const SPACE = `search:
  space:
    formats: [int8, int4, int3, nf4, mxfp4]
    block_sizes: [32, 64, 128]
    algorithms: [${(process.env.QG_BENCH_ALGORITHMS ?? "rtn,mse").split(",").join(", ")}]
    mixed_formats: [int2, int4, int8]
  max_full_evaluations: 6 # replaced below by a fifth of the grid
  holdout: 0.3
`;

const MIXED_TARGETS = [2.5, 3, 3.5, 4];
const ort = await loadOrt();
const quantizer = await loadKernelQuantizer(() => {});
const rows = [];
for (const name of examples) {
  // Each example in a copy of the examples folder's layout: llama-kjv reads tiny-lm's text one folder over.
  const tmp = await mkdtemp(path.join(os.tmpdir(), `qg-bench-search-${name}-`));
  const dir = path.join(tmp, "examples", name);
  await cp(path.join(root, "examples", name), dir, { recursive: true });
  if (name === "llama-kjv") await cp(path.join(root, "examples", "tiny-lm"), path.join(tmp, "examples", "tiny-lm"), { recursive: true });
  const configPath = path.join(dir, "quantgate.yml");
  const { readFile } = await import("node:fs/promises");
  await writeFile(configPath, (await readFile(configPath, "utf8")) + SPACE);
  const config = await loadConfig(configPath);
  const objective = config.search.objective;

  // The grid over the same space (uniform recipes and the mixed-precision axis), listed before the search so the
  // search's budget can be a fifth of it; the split is the one the search makes (same files, same fraction).
  const split = await splitEvaluation(config, config.search.holdout, path.join(dir, config.output_dir, "search", "data"));
  const inputs = await loadSearchInputs(config, split.search, split.searchLabels);
  const candidates = uniformCandidates(config.recipe, config.search.space, inputs.sites, inputs.calibrated, [], objective);
  const uniformCount = candidates.length;
  // The space's mixed-precision axis: targets across its range at each block size (the search bisects it). Without
  // the grid they are counted, not built (building them measures the per-layer KL at every block size).
  const like = recipeSchema.parse({ ...config.recipe, preset: undefined, format: "int4", algorithm: "mse" });
  const seen = new Set(candidates.map((c) => canonical(c.recipe)));
  for (const blockSize of gridFor(name) ? config.search.space.block_sizes : []) {
    const factory = await mixedFactory({
      config,
      opts: { ort, quantizer },
      ...inputs,
      formats: mixedFormatsFor(config.search.space.mixed_formats, objective),
      perLayer: true,
      blockSize,
      like,
      objective,
      notes: [],
    });
    for (const target of MIXED_TARGETS) {
      // At the allocator's own targets (each format at its own bits, no row padding), as the grid always took them.
      const c = factory.allocated(target);
      if (c && !seen.has(canonical(c.recipe))) {
        seen.add(canonical(c.recipe));
        candidates.push(c);
      }
    }
  }
  const gridSize = gridFor(name) ? candidates.length : uniformCount + MIXED_TARGETS.length * config.search.space.block_sizes.length;
  const budget = Math.max(1, Math.floor(gridSize / 5));
  const searchConfig = { ...config, search: { ...config.search, max_full_evaluations: budget } };

  // The search (its wall time includes the split, the sensitivity and the holdout runs).
  const t0 = performance.now();
  const search = await runSearch(searchConfig, { ort, quantizer, log: (m) => process.stderr.write(`[${name}] ${m}\n`) });
  const searchSeconds = (performance.now() - t0) / 1000;
  // Presets and grid on the search part (with its own labels file for labelled image folders), as the search judged.
  const labels = search.split.searchLabels ? { labels: search.split.searchLabels } : {};
  const onSearchPart = (recipe, out) =>
    runGate(
      { ...config, recipe, evaluation: { ...config.evaluation, dataset: search.split.search, ...labels }, output_dir: path.join("quantgate-out", out) },
      { ort, quantizer },
    );

  // Every preset, on the same search part.
  const presets = [];
  for (const preset of Object.keys(PRESETS)) {
    const recipe = recipeSchema.parse({ ...config.recipe, ...PRESETS[preset], preset: undefined, overrides: config.recipe.overrides });
    const t = performance.now();
    const run = await onSearchPart(recipe, `presets/${preset}`);
    const r = run.report;
    presets.push({
      preset,
      verdict: r.verdict,
      cost: costOf(r, objective) ?? null,
      failure: [...r.gate.errors, ...r.gate.rules.filter((x) => x.status === "fail").map((x) => x.message)][0] ?? null,
      seconds: (performance.now() - t) / 1000,
    });
    process.stderr.write(`[${name}] preset ${preset}: ${r.verdict} ${costOf(r, objective)}\n`);
  }

  // The exhaustive grid over the search's uniform space.
  const grid = [];
  let gridSeconds = 0;
  if (gridFor(name)) {
    const tg = performance.now();
    for (const [i, c] of candidates.entries()) {
      const run = await onSearchPart(c.recipe, `grid/${i}`);
      grid.push({ label: c.label, verdict: run.report.verdict, cost: costOf(run.report, objective) ?? null });
      process.stderr.write(`[${name}] grid ${c.label}: ${run.report.verdict} ${costOf(run.report, objective)}\n`);
    }
    gridSeconds = (performance.now() - tg) / 1000;
  }

  const cheapest = (list) => list.filter((x) => x.verdict === "pass" && x.cost !== null).sort((a, b) => a.cost - b.cost)[0] ?? null;
  const bestPreset = cheapest(presets);
  const bestGrid = cheapest(grid);
  const found = cheapest(search.evaluations.map((e) => ({ label: e.candidate.label, verdict: e.verdict, cost: e.cost ?? null })));
  rows.push({
    example: name,
    objective,
    search: {
      cheapest_passing_on_search_part: found,
      // Only a recipe that passed on the holdout part is suggested (the verdict can be "pass" with none: the current recipe passes).
      suggested:
        search.verification && search.verification.winner.verdict === "pass" && search.patch
          ? { label: search.verification.winner.candidate.label, cost: search.verification.winner.cost, holdout_verdict: search.verification.winner.verdict }
          : null,
      rejected_on_holdout: (search.rejected ?? []).map((e) => ({ label: e.candidate.label, failure: e.failures[0] ?? null })),
      current_on_holdout: search.verification ? { cost: search.verification.current.cost, verdict: search.verification.current.verdict } : null,
      verdict: search.verdict,
      message: search.message,
      full_evaluations: search.evaluations.length,
      budget,
      holdout_runs: search.holdoutRuns,
      reuse: search.reuse ?? null,
      sensitivity_seconds: search.sensitivity ? search.sensitivity.ms / 1000 : null,
      stopped_early: search.stoppedEarly ?? null,
      seconds: searchSeconds,
      holdout: search.split.note,
    },
    best_preset: bestPreset,
    presets: { full_evaluations: presets.length, runs: presets },
    grid: gridFor(name)
      ? { full_evaluations: grid.length, cheapest_passing: bestGrid, seconds: gridSeconds, candidates: grid }
      : { skipped: `not run (about ${gridSize} full evaluations; QG_BENCH_NO_GRID)`, size: gridSize },
    at_least_as_cheap_as_best_preset: found && bestPreset ? found.cost <= bestPreset.cost : bestPreset ? false : null,
    evaluations_ratio_to_grid: search.evaluations.length / gridSize,
    at_most_a_fifth_of_grid: search.evaluations.length <= gridSize / 5,
  });
  // Written after every example: a long run stopped part-way keeps what it measured.
  await mkdir(path.join(root, "bench", "out"), { recursive: true });
  await writeFile(
    path.join(root, "bench", "out", "search.json"),
    JSON.stringify({ createdAt: new Date().toISOString(), cpu: os.cpus()[0]?.model, loadavg: os.loadavg(), rows }, null, 2),
  );
}

const kib = (b) => (b === null || b === undefined ? "-" : `${(b / 1024).toFixed(1)} KiB`);
console.log(
  "| Example | Search: cheapest passing (full evals) | Suggested after holdout | Cheapest passing preset (of 9) | Grid: cheapest passing (full evals) | Search s | Grid s |",
);
console.log("|---|---|---|---|---|---:|---:|");
for (const r of rows) {
  const grid = r.grid.skipped
    ? `not run (${r.grid.size})`
    : `${r.grid.cheapest_passing ? `${r.grid.cheapest_passing.label}, ${kib(r.grid.cheapest_passing.cost)}` : "none"} (${r.grid.full_evaluations})`;
  console.log(
    `| ${r.example} | ${r.search.cheapest_passing_on_search_part ? `${r.search.cheapest_passing_on_search_part.label}, ${kib(r.search.cheapest_passing_on_search_part.cost)}` : "none"} (${r.search.full_evaluations}) | ${r.search.suggested ? `${r.search.suggested.label}, ${kib(r.search.suggested.cost)}` : `none${r.search.rejected_on_holdout.length ? ` (rejected on holdout: ${r.search.rejected_on_holdout.map((x) => x.label).join(", ")})` : ""}`} | ${r.best_preset ? `${r.best_preset.preset}, ${kib(r.best_preset.cost)}` : "none"} | ${grid} | ${r.search.seconds.toFixed(0)} | ${r.grid.seconds?.toFixed(0) ?? "-"} |`,
  );
}
