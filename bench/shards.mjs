// Sharded evaluation timing (not a test): one job (`mode: check`) against the critical path of a 4-shard run
// (quantize + slowest shard + merge) on the tiny LM with a larger evaluation set (its held-out text four
// times over: 312 windows of 128 tokens). Every job is a process of the action's entry (lib/index.js) with the
// runner's INPUT_*/GITHUB_* environment and the local artifact stand-in; the 4 shards run as 4 concurrent
// processes, then once more one at a time (as separate runners would see them, without sharing this
// machine's cores). Writes bench/out/shards.json.
// Run: npm run bench:shards
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { cp, mkdir, mkdtemp, readFile, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const example = path.join(root, "examples", "tiny-lm");
const SHARDS = 4;
const REPEAT = 4;
const tmp = await mkdtemp(path.join(os.tmpdir(), "qg-bench-shards-"));

async function checkout(name) {
  const ws = path.join(tmp, name);
  await mkdir(ws, { recursive: true });
  for (const f of ["model.onnx", "calib.txt", "tokenizer.json"]) await cp(path.join(example, f), path.join(ws, f));
  const text = await readFile(path.join(example, "eval.txt"), "utf8");
  await writeFile(path.join(ws, "eval.txt"), Array.from({ length: REPEAT }, () => text).join("\n"));
  const config = (await readFile(path.join(example, "quantgate.yml"), "utf8")).replace(/samples: 32\b/, "samples: 100000");
  await writeFile(path.join(ws, "quantgate.yml"), config);
  return ws;
}

async function job(ws, artifacts, inputs) {
  const t = path.join(ws, ".runner");
  await mkdir(t, { recursive: true });
  for (const f of ["output", "summary"]) await writeFile(path.join(t, f), "");
  await writeFile(path.join(t, "event.json"), "{}");
  const env = {
    PATH: process.env.PATH ?? "",
    HOME: process.env.HOME ?? t,
    GITHUB_OUTPUT: path.join(t, "output"),
    GITHUB_STEP_SUMMARY: path.join(t, "summary"),
    GITHUB_EVENT_PATH: path.join(t, "event.json"),
    GITHUB_EVENT_NAME: "push",
    GITHUB_WORKSPACE: ws,
    GITHUB_REPOSITORY: "acme/models",
    GITHUB_RUN_ID: "1",
    RUNNER_TEMP: t,
    QUANTGATE_ARTIFACT_DIR: artifacts,
    "INPUT_ONNXRUNTIME-PATH": root,
  };
  for (const [k, v] of Object.entries({ config: "quantgate.yml", cache: "false", ...inputs })) env[`INPUT_${k.toUpperCase()}`] = v;
  const t0 = performance.now();
  const child = spawn(process.execPath, [path.join(root, "lib", "index.js")], { cwd: ws, env });
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (out += d));
  const status = await new Promise((resolve) => child.on("close", resolve));
  const s = (performance.now() - t0) / 1000;
  if (status !== 0) throw new Error(`${JSON.stringify(inputs)} exited ${status}:\n${out.slice(-3000)}`);
  return s;
}

const modelHash = async (ws) =>
  createHash("sha256")
    .update(await readFile(path.join(ws, "quantgate-out", "model.quantized.onnx")))
    .digest("hex");
const report = async (ws) => JSON.parse(await readFile(path.join(ws, "quantgate-out", "quantgate-report.json"), "utf8"));
const stageMs = (r, name) => r.stages.find((s) => s.stage === name)?.ms ?? 0;

// one job
const single = await checkout("single");
const oneJob = await job(single, path.join(tmp, "art-single"), { mode: "check", artifact: "false" });
const whole = await report(single);

// sharded, shards concurrent
const runs = {};
for (const schedule of ["concurrent", "one at a time"]) {
  const artifacts = path.join(tmp, `art-${schedule.replace(/ /g, "-")}`);
  const quantize = await job(await checkout(`quantize-${schedule}`), artifacts, { mode: "quantize" });
  const workspaces = await Promise.all(Array.from({ length: SHARDS }, (_, i) => checkout(`shard-${i + 1}-${schedule}`)));
  const shardInputs = (i) => ({ mode: "evaluate", shard: `${i + 1}/${SHARDS}` });
  let shards;
  const p0 = performance.now();
  if (schedule === "concurrent") shards = await Promise.all(workspaces.map((ws, i) => job(ws, artifacts, shardInputs(i))));
  else {
    shards = [];
    for (const [i, ws] of workspaces.entries()) shards.push(await job(ws, artifacts, shardInputs(i)));
  }
  const phase = (performance.now() - p0) / 1000;
  const mergeWs = await checkout(`merge-${schedule}`);
  const merge = await job(mergeWs, artifacts, { mode: "merge", shards: String(SHARDS) });
  const merged = await report(mergeWs);
  const diffs = Object.fromEntries(
    whole.evaluation.metrics.map((m) => {
      const n = merged.evaluation.metrics.find((x) => x.key === m.key);
      return [m.key, Math.abs(n.quantized - m.quantized) / Math.max(Math.abs(m.quantized), 1e-300)];
    }),
  );
  runs[schedule] = {
    quantizeS: quantize,
    shardS: shards,
    shardPhaseS: phase,
    mergeS: merge,
    criticalPathS: quantize + Math.max(...shards) + merge,
    // emit picks ONNX Runtime forms by timing: the one job's own quantization may differ under load
    sameQuantizedModel: (await modelHash(mergeWs)) === (await modelHash(single)),
    mergedEqualsOneJob: merged.evaluation.samples.sequences === whole.evaluation.samples.sequences && Object.values(diffs).every((d) => d <= 1e-9),
    maxRelativeDifference: Math.max(...Object.values(diffs)),
    mergeMeasureS: stageMs(merged, "measure") / 1000,
  };
}

const result = {
  machine: { cpu: os.cpus()[0]?.model, cores: os.cpus().length, node: process.version },
  evaluation: { windows: whole.evaluation.samples.evaluated, predictedTokens: whole.evaluation.samples.sequences, shards: SHARDS },
  oneJob: { wallS: oneJob, evaluateS: stageMs(whole, "evaluate") / 1000, measureS: stageMs(whole, "measure") / 1000 },
  sharded: runs,
};
await mkdir(path.join(root, "bench", "out"), { recursive: true });
await writeFile(path.join(root, "bench", "out", "shards.json"), JSON.stringify(result, null, 2) + "\n");

const f = (s) => `${s.toFixed(2)} s`;
console.log(
  `tiny LM, ${result.evaluation.windows} windows (${result.evaluation.predictedTokens} predicted tokens), ${SHARDS} shards; ${result.machine.cores} cores (${result.machine.cpu})`,
);
console.log(`| run | quantize | shards (each) | slowest shard | merge | critical path |`);
console.log(`| --- | --- | --- | --- | --- | --- |`);
console.log(`| one job (mode check) | | | | | ${f(oneJob)} |`);
for (const [name, r] of Object.entries(runs)) {
  console.log(
    `| 4 shards, ${name} | ${f(r.quantizeS)} | ${r.shardS.map((s) => s.toFixed(2)).join(" / ")} s | ${f(Math.max(...r.shardS))} | ${f(r.mergeS)} | ${f(r.criticalPathS)} |`,
  );
}
for (const [name, r] of Object.entries(runs))
  console.log(
    `${name}: same quantized model as the one job: ${r.sameQuantizedModel}; merged figures equal one job's: ${r.mergedEqualsOneJob} (max relative difference ${r.maxRelativeDifference.toExponential(2)})`,
  );
console.log(`one job: evaluate ${f(result.oneJob.evaluateS)}, measure ${f(result.oneJob.measureS)}`);
console.log("wrote bench/out/shards.json");
