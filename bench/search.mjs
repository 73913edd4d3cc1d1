// The search against the presets and an exhaustive grid over the same space, on the bundled examples (not a
// test). Every figure is a full gate run on the search part of the evaluation data (the holdout part is kept for
// the search's own verification). Writes bench/out/search.json.
// Run: npm run bench:search   (QG_BENCH_EXAMPLES=cnn-classifier to pick examples, QG_BENCH_NO_GRID=1 to skip the grid)
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
const examples = (process.env.QG_BENCH_EXAMPLES ?? "cnn-classifier,tiny-lm").split(",");
// A space small enough for the grid to be affordable on a shared machine.
const SPACE = `search:
  space:
    formats: [int8, int4, int3, nf4, mxfp4]
    block_sizes: [32, 64, 128]
    algorithms: [rtn, mse]
    mixed_formats: [int2, int4, int8]
  max_full_evaluations: 6 # replaced below by a fifth of the grid
  holdout: 0.3
`;

const MIXED_TARGETS = [2.5, 3, 3.5, 4];
const ort = await loadOrt();
const quantizer = await loadKernelQuantizer(() => {});
const rows = [];
for (const name of examples) {
  const dir = await mkdtemp(path.join(os.tmpdir(), `qg-bench-search-${name}-`));
  await cp(path.join(root, "examples", name), dir, { recursive: true });
  const configPath = path.join(dir, "quantgate.yml");
  const { readFile } = await import("node:fs/promises");
  await writeFile(configPath, (await readFile(configPath, "utf8")) + SPACE);
  const config = await loadConfig(configPath);
  const objective = config.search.objective;

  // The grid over the same space (uniform recipes and the mixed-precision axis), listed before the search so the
  // search's budget can be a fifth of it; the split is the one the search makes (same files, same fraction).
  const split = await splitEvaluation(config, config.search.holdout, path.join(dir, config.output_dir, "search", "data"));
  const inputs = await loadSearchInputs(config, split.search);
  const candidates = uniformCandidates(config.recipe, config.search.space, inputs.sites, inputs.calibrated, [], objective);
  // The space's mixed-precision axis: targets across its range at each block size (the search bisects it).
  const like = recipeSchema.parse({ ...config.recipe, preset: undefined, format: "int4", algorithm: "mse" });
  const seen = new Set(candidates.map((c) => canonical(c.recipe)));
  for (const blockSize of config.search.space.block_sizes) {
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
      const c = factory.candidate(target);
      if (c && !seen.has(canonical(c.recipe))) {
        seen.add(canonical(c.recipe));
        candidates.push(c);
      }
    }
  }
  const budget = Math.max(1, Math.floor(candidates.length / 5));
  const searchConfig = { ...config, search: { ...config.search, max_full_evaluations: budget } };

  // The search (its wall time includes the split, the sensitivity and the holdout runs).
  const t0 = performance.now();
  const search = await runSearch(searchConfig, { ort, quantizer, log: (m) => process.stderr.write(`[${name}] ${m}\n`) });
  const searchSeconds = (performance.now() - t0) / 1000;
  const onSearchPart = (recipe, out) =>
    runGate(
      { ...config, recipe, evaluation: { ...config.evaluation, dataset: search.split.search }, output_dir: path.join("quantgate-out", out) },
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
  if (!process.env.QG_BENCH_NO_GRID) {
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
      suggested:
        search.verification && search.verdict === "pass"
          ? { label: search.verification.winner.candidate.label, cost: search.verification.winner.cost, holdout_verdict: search.verification.winner.verdict }
          : null,
      current_on_holdout: search.verification ? { cost: search.verification.current.cost, verdict: search.verification.current.verdict } : null,
      verdict: search.verdict,
      message: search.message,
      full_evaluations: search.evaluations.length,
      holdout_runs: search.verification ? 2 + (search.rejected?.length ?? 0) : 1,
      stopped_early: search.stoppedEarly ?? null,
      seconds: searchSeconds,
      holdout: search.split.note,
    },
    best_preset: bestPreset,
    presets,
    grid: { full_evaluations: grid.length, cheapest_passing: bestGrid, seconds: gridSeconds, candidates: grid },
    at_least_as_cheap_as_best_preset: found && bestPreset ? found.cost <= bestPreset.cost : null,
    evaluations_ratio_to_grid: grid.length ? search.evaluations.length / grid.length : null,
  });
}

await mkdir(path.join(root, "bench", "out"), { recursive: true });
await writeFile(
  path.join(root, "bench", "out", "search.json"),
  JSON.stringify({ createdAt: new Date().toISOString(), cpu: os.cpus()[0]?.model, rows }, null, 2),
);
const kib = (b) => (b === null || b === undefined ? "-" : `${(b / 1024).toFixed(1)} KiB`);
console.log(
  "| Example | Search: cheapest passing (evals) | Suggested after holdout | Best passing preset | Grid: cheapest passing (evals) | Search s | Grid s |",
);
console.log("|---|---|---|---|---|---:|---:|");
for (const r of rows) {
  console.log(
    `| ${r.example} | ${r.search.cheapest_passing_on_search_part?.label ?? "none"} ${kib(r.search.cheapest_passing_on_search_part?.cost)} (${r.search.full_evaluations}) | ${r.search.suggested ? `${r.search.suggested.label} ${kib(r.search.suggested.cost)}` : "none"} | ${r.best_preset ? `${r.best_preset.preset} ${kib(r.best_preset.cost)}` : "none"} | ${r.grid.cheapest_passing ? `${r.grid.cheapest_passing.label} ${kib(r.grid.cheapest_passing.cost)}` : "-"} (${r.grid.full_evaluations}) | ${r.search.seconds.toFixed(0)} | ${r.grid.seconds.toFixed(0)} |`,
  );
}
