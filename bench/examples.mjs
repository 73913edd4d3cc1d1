// The bundled examples' float vs quantized latency, with the execution the gate chose (not a test):
// `npm run bench:examples`; `npm run bench:kernels` runs it as its last section. Each example's gate runs through
// the CLI on its own quantgate.yml (outputs under examples/<name>/quantgate-out/bench-*, inside the workspace),
// then per example:
//  - batch: the gate's own interleaved float/quantized rounds at the evaluation batch (the prefill shape of a
//    language model), median per-round ratio and its interval;
//  - M=1: decode ms/token and time to first token where the model decodes with a KV cache (from the gate);
//    for a token-id model without a cache, one token [1,1] and a 1x128 prefill, timed here in interleaved
//    rounds of one process; for the others the evaluation batch is already batch 1.
// Writes bench/out/examples.json. Options: --only tiny-lm,cnn-classifier (names of examples/ folders).
import { spawnSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { cpus, loadavg } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { timeModels } from "../lib/measure/index.js";
import { loadModel } from "../lib/onnx/model.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const ARGS = Object.fromEntries(process.argv.slice(2).flatMap((a, i, all) => (a.startsWith("--") ? [[a.slice(2), all[i + 1] ?? ""]] : [])));
const RUNS = Number(process.env.QUANTGATE_BENCH_RUNS ?? 40);
const all = (await readdir(path.join(root, "examples"), { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name);
const names = (ARGS.only ? ARGS.only.split(",") : all).filter((n) => all.includes(n));

const metricOf = (report, key) => report.metrics.find((m) => m.key === key);
const ratioText = (r) => (Number.isFinite(r) ? `${r.toFixed(2)}x` : "-");

/** Token-id inputs ([batch, sequence] int64) of a model without a KV cache, or undefined. */
async function tokenInputs(modelPath) {
  const { proto } = await loadModel(modelPath);
  const inputs = proto.graph.input.filter((i) => !proto.graph.initializer.some((t) => t.name === i.name));
  const ok = inputs.every((i) => i.type?.value.case === "tensorType" && i.type.value.value.elemType === 7 && i.type.value.value.shape?.dim.length === 2);
  return ok && inputs.length ? inputs.map((i) => i.name) : undefined;
}

const feedsOf = (inputs, b, t) =>
  Object.fromEntries(
    inputs.map((name) => {
      const data = new BigInt64Array(b * t);
      for (let i = 0; i < data.length; i++) data[i] = /mask/i.test(name) ? 1n : BigInt((i * 37 + 11) % 200);
      return [name, { type: "int64", dims: [b, t], data }];
    }),
  );

const rows = [];
for (const name of names) {
  const dir = path.join(root, "examples", name);
  const config = path.join(dir, "quantgate.yml");
  let text;
  try {
    text = await readFile(config, "utf8");
  } catch {
    continue;
  }
  if (!/^model:/m.test(text)) continue; // examples/workflows holds GitHub workflow files, not a gate config
  await mkdir(path.join(dir, "quantgate-out"), { recursive: true });
  const out = await mkdtemp(path.join(dir, "quantgate-out", "bench-"));
  try {
    const t0 = performance.now();
    const run = spawnSync(process.execPath, [path.join(root, "bin", "quantgate.js"), "run", "-c", config, "--output-dir", out], { encoding: "utf8" });
    const gateS = (performance.now() - t0) / 1000;
    let report;
    try {
      report = JSON.parse(await readFile(path.join(out, "quantgate-report.json"), "utf8"));
    } catch {
      console.error(`${name}: the gate wrote no report (exit ${run.status})\n${(run.stdout + run.stderr).split("\n").slice(-15).join("\n")}`);
      process.exitCode = 1;
      continue;
    }
    const c = report.latencyComparison;
    const lat = metricOf(report, "latency_p50");
    const row = {
      example: name,
      task: report.evaluation?.task,
      verdict: report.verdict?.status ?? report.verdict,
      gateSeconds: gateS,
      accuracyLevel: report.execution.accuracyLevel,
      accuracyLevelHow: report.execution.accuracy?.how,
      forms: [...new Set(report.weights.quantized.map((w) => w.form))],
      batch: {
        floatMs: lat?.float,
        quantizedMs: lat?.quantized,
        ratio: c?.ratioP50,
        interval: c ? [c.ratioInterval.lo, c.ratioInterval.hi] : undefined,
        rounds: c?.rounds,
      },
      m1: undefined,
      prefill: undefined,
    };
    const decode = metricOf(report, "decode_ms_per_token_p50");
    const ttft = metricOf(report, "ttft_ms");
    const floatPath = path.resolve(dir, report.float.path);
    const quantPath = path.resolve(dir, report.quantized.path);
    if (decode?.float !== undefined) {
      row.m1 = { what: "decode ms/token (KV cache)", floatMs: decode.float, quantizedMs: decode.quantized, ratio: decode.quantized / decode.float };
      if (ttft?.float !== undefined)
        row.prefill = { what: "time to first token", floatMs: ttft.float, quantizedMs: ttft.quantized, ratio: ttft.quantized / ttft.float };
    } else if (report.evaluation?.task === "language-modeling") {
      const inputs = await tokenInputs(floatPath);
      if (inputs) {
        const settings = { threads: 1, warmup: 5, runs: RUNS, memory: false, kernel_benchmark: false };
        const [f1, q1] = await timeModels([floatPath, quantPath], feedsOf(inputs, 1, 1), settings);
        const [fp, qp] = await timeModels([floatPath, quantPath], feedsOf(inputs, 1, 128), settings);
        row.m1 = { what: "one token [1,1]", floatMs: f1, quantizedMs: q1, ratio: q1 / f1 };
        row.prefill = { what: "prefill [1,128]", floatMs: fp, quantizedMs: qp, ratio: qp / fp };
      }
    }
    rows.push(row);
    const part = (x) => (x ? `${x.what} ${x.floatMs.toFixed(3)} -> ${x.quantizedMs.toFixed(3)} ms (${ratioText(x.ratio)})` : "");
    console.log(
      `${name.padEnd(17)} level ${row.accuracyLevel} (${row.accuracyLevelHow ?? "-"}), forms ${row.forms.join("/")}: ` +
        `batch ${lat?.float?.toFixed(3)} -> ${lat?.quantized?.toFixed(3)} ms (${ratioText(c?.ratioP50)} per round, interval ${c ? `${c.ratioInterval.lo.toFixed(2)}-${c.ratioInterval.hi.toFixed(2)}` : "-"})` +
        [part(row.m1), part(row.prefill)]
          .filter(Boolean)
          .map((s) => `; ${s}`)
          .join(""),
    );
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}

await mkdir(path.join(root, "bench", "out"), { recursive: true });
await writeFile(
  path.join(root, "bench", "out", "examples.json"),
  JSON.stringify({ date: new Date().toISOString(), cpu: cpus()[0]?.model, cores: cpus().length, loadavg: loadavg(), runs: RUNS, rows }, null, 2) + "\n",
);
console.log("wrote bench/out/examples.json");
