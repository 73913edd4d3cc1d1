// Recipe benchmark on the bundled example (not a test): every preset plus the int3 algorithm ladder and
// a uniform-vs-Fisher pair at the same bits-per-weight target. Writes bench/out/recipes.json and .md.
// Run: npm run bench:recipes
import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseConfig } from "../lib/config/load.js";
import { runGate } from "../lib/pipeline.js";
import { loadKernelQuantizer } from "../lib/quantize/kernels.js";
import { loadOrt } from "../lib/runtime/ort.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const example = path.join(root, "examples", "tiny-lm");
const BASE = `model: model.onnx
evaluation:
  task: language-modeling
  dataset: eval.txt
  calibration: calib.txt
  tokenizer: tokenizer.json
  sequence_length: 128
  samples: 32
  calibration_samples: 16
  batch_size: 4
measure:
  threads: 1
  memory: false
  kernel_benchmark: false
`;

const INT3 = "  format: int3\n  block_size: 64\n  symmetric: false\n";
const VARIANTS = [
  ["int8", "  preset: int8\n"],
  ["int4-rtn", "  preset: int4-rtn\n"],
  ["int4-awq", "  preset: int4-awq\n"],
  ["int4-gptq", "  preset: int4-gptq\n"],
  ["int3-quantx", "  preset: int3-quantx\n"],
  ["nf4", "  preset: nf4\n"],
  ["mxfp4", "  preset: mxfp4\n"],
  ["mixed-3.5bpw", "  preset: mixed-3.5bpw\n"],
  ["lowrank-int3", "  preset: lowrank-int3\n"],
  ["int3-rtn", `${INT3}  algorithm: rtn\n`],
  ["int3-mse", `${INT3}  algorithm: mse\n`],
  ["int3-awq", `${INT3}  algorithm: awq\n`],
  ["int3-gptq", `${INT3}  algorithm: gptq\n`],
  ["uniform@3.55bpw", `${INT3}  algorithm: mse\n  mixed:\n    target_bpw: 3.55\n    method: uniform\n`],
  ["fisher@3.55bpw", `${INT3}  algorithm: mse\n  mixed:\n    target_bpw: 3.55\n    method: fisher\n`],
  ["kl-measured@3.55bpw", `${INT3}  algorithm: mse\n  mixed:\n    target_bpw: 3.55\n    method: kl\n`],
];

// BENCH_ONLY=a,b runs a subset (the orderings then use what ran).
const only = process.env.BENCH_ONLY?.split(",");
const selected = only ? VARIANTS.filter(([name]) => only.includes(name)) : VARIANTS;
const ort = await loadOrt();
const quantizer = await loadKernelQuantizer(() => {});
const rows = [];
for (const [name, recipe] of selected) {
  // Outputs stay inside the workspace (the config's folder).
  await mkdir(path.join(example, "quantgate-out"), { recursive: true });
  const out = await mkdtemp(path.join(example, "quantgate-out", `bench-${name}-`));
  const config = parseConfig(`${BASE}output_dir: ${out}\nrecipe:\n${recipe}`, path.join(example, "quantgate.yml"));
  const t0 = performance.now();
  const run = await runGate(config, { ort, quantizer });
  const wallMs = performance.now() - t0;
  const r = run.report;
  if (r.gate.errors.length > 0) throw new Error(`${name}: ${r.gate.errors.join("; ")}`);
  // Metric records by key (src/tasks/types.ts).
  const m = Object.fromEntries(r.metrics.map((x) => [x.key, x]));
  const stageMs = (s) => r.stages.find((x) => x.stage === s)?.ms ?? 0;
  const row = {
    name,
    bitsPerWeight: r.storage.bitsPerWeight,
    entropyBitsPerWeight: r.storage.entropyBitsPerWeight,
    huffmanBitsPerWeight: r.storage.huffmanBitsPerWeight,
    storedBitsPerWeight: r.storage.storedBitsPerWeight,
    perplexityFloat: m.perplexity.float,
    perplexity: m.perplexity.quantized,
    klMean: m.kl_mean.quantized,
    klP99: m.kl_p99.quantized,
    top1Agreement: m.top1_agreement.quantized,
    // Weight-space error, params-weighted: what RTN and clip search optimize directly.
    weightRelError: r.weights.quantized.reduce((a, l) => a + l.relativeError * l.k * l.n, 0) / r.weights.quantized.reduce((a, l) => a + l.k * l.n, 0),
    outputErrorRatio:
      r.weights.quantized.reduce((a, l) => a + (l.outputErrorRatio ?? 0) * l.k * l.n, 0) / r.weights.quantized.reduce((a, l) => a + l.k * l.n, 0),
    quantizeMs: stageMs("quantize"),
    calibrateMs: stageMs("calibrate"),
    wallMs,
    formats: [...new Set(r.weights.quantized.map((l) => `${l.format}/${l.blockSize}`))].join(" "),
  };
  rows.push(row);
  process.stderr.write(
    `${name.padEnd(18)} bpw ${row.bitsPerWeight.toFixed(3)}  ppl ${row.perplexity.toFixed(3)}  KL ${row.klMean.toFixed(5)}  (${(wallMs / 1000).toFixed(1)} s)\n`,
  );
}

const by = Object.fromEntries(rows.map((r) => [r.name, r]));
// [claim, better, worse, metric]: the literature says `better` has the lower metric.
const pairs = [
  ["GPTQ beats RTN at 3 bits (KL)", "int3-gptq", "int3-rtn", "klMean"],
  ["AWQ beats RTN at 3 bits (KL)", "int3-awq", "int3-rtn", "klMean"],
  ["MSE clip search beats RTN (KL)", "int3-mse", "int3-rtn", "klMean"],
  ["MSE clip search beats RTN (activation-weighted error, what it minimizes)", "int3-mse", "int3-rtn", "outputErrorRatio"],
  ["KL-measured allocation beats uniform bits at the same BPW (KL)", "kl-measured@3.55bpw", "uniform@3.55bpw", "klMean"],
  ["Fisher allocation beats uniform bits at the same BPW (KL)", "fisher@3.55bpw", "uniform@3.55bpw", "klMean"],
  ["Low-rank correction lowers KL (lowrank-int3 vs int3-mse)", "lowrank-int3", "int3-mse", "klMean"],
];
const orderings = pairs.filter(([, a, b]) => by[a] && by[b]).map(([what, a, b, metric]) => [what, by[a][metric] < by[b][metric]]);
const md = [
  `Recipes on examples/tiny-lm (${rows[0].perplexityFloat.toFixed(3)} float perplexity), kernels ${quantizer.name}, ${os.cpus()[0]?.model ?? ""}`,
  "",
  "| Recipe | Formats | BPW (packed) | BPW entropy | BPW Huffman | Perplexity | KL mean | KL p99 | Top-1 agr. | Weight rel. err | Act.-weighted err | Quantize s |",
  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ...rows.map(
    (r) =>
      `| ${r.name} | ${r.formats} | ${r.bitsPerWeight.toFixed(3)} | ${r.entropyBitsPerWeight.toFixed(3)} | ${r.huffmanBitsPerWeight.toFixed(3)} | ${r.perplexity.toFixed(3)} | ${r.klMean.toFixed(5)} | ${r.klP99.toFixed(4)} | ${r.top1Agreement.toFixed(4)} | ${r.weightRelError.toFixed(4)} | ${r.outputErrorRatio.toExponential(2)} | ${(r.quantizeMs / 1000).toFixed(2)} |`,
  ),
  "",
  "Orderings the literature reports:",
  ...orderings.map(([what, ok]) => `- ${ok ? "holds" : "DOES NOT HOLD"}: ${what}`),
  "",
].join("\n");
await mkdir(path.join(root, "bench", "out"), { recursive: true });
await writeFile(
  path.join(root, "bench", "out", "recipes.json"),
  JSON.stringify({ kernels: quantizer.name, rows, orderings: Object.fromEntries(orderings) }, null, 2) + "\n",
);
await writeFile(path.join(root, "bench", "out", "recipes.md"), md);
process.stdout.write(md);
