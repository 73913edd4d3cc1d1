// Float vs quantized latency of the bundled tiny-LM at MatMulNBits accuracy_level 0 and 4, at M=1 (one
// token) and at its prefill shapes, timed in interleaved rounds of one fresh process (on-CPU medians where
// the runner exposes the wait for a core). Writes bench/out/accuracy-level.json.
// Run: npm run build && node bench/accuracy-level.mjs   (QUANTGATE_BENCH_RUNS=40)
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { timeModels } from "../lib/measure/index.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const example = path.join(root, "examples", "tiny-lm");
const RUNS = Number(process.env.QUANTGATE_BENCH_RUNS ?? 40);
const dir = await mkdtemp(path.join(os.tmpdir(), "qg-bench-acc-"));
try {
  let text = (await readFile(path.join(example, "quantgate.yml"), "utf8")).replace(/model: model\.onnx/, `model: ${path.join(example, "model.onnx")}`);
  for (const f of ["eval.txt", "calib.txt", "tokenizer.json"]) text = text.replace(new RegExp(`: ${f.replace(".", "\\.")}`), `: ${path.join(example, f)}`);
  text = text.replace(/measure:\n/, "measure:\n  kernel_benchmark: false\n");
  // The example's files stay where they are (the CLI reads outside the temporary workspace only when told).
  text = `allow_outside_workspace: true\n${text}`;
  const models = { float: path.join(example, "model.onnx") };
  const kl = {};
  for (const level of [0, 4]) {
    const config = path.join(dir, `level${level}.yml`);
    await writeFile(config, text.replace(/recipe:\n/, `recipe:\n  accuracy_level: ${level}\n`));
    const out = path.join(dir, `out${level}`);
    try {
      execFileSync(process.execPath, [path.join(root, "bin", "quantgate.js"), "run", "-c", config, "--output-dir", out], { stdio: "pipe" });
    } catch (err) {
      // A failing gate still writes its report (it says why); a run that wrote none is shown here.
      const text = `${err.stdout ?? ""}${err.stderr ?? ""}`;
      if (!text.includes("Report:")) console.error(text.split("\n").slice(-15).join("\n"));
    }
    const report = JSON.parse(await readFile(path.join(out, "quantgate-report.json"), "utf8"));
    const metric = (key) => report.metrics.find((m) => m.key === key);
    kl[`level${level}`] = {
      klMean: metric("kl_mean")?.quantized,
      perplexity: metric("perplexity")?.quantized,
      perplexityFloat: metric("perplexity")?.float,
    };
    models[`level${level}`] = path.join(out, "model.quantized.onnx");
  }
  const shapes = [
    { name: "M=1 (one token)", dims: [1, 1] },
    { name: "prefill 1x128", dims: [1, 128] },
    { name: "prefill 4x128 (the gate's batch)", dims: [4, 128] },
  ];
  const rows = [];
  const settings = { threads: 1, warmup: 5, runs: RUNS, memory: true, kernel_benchmark: false };
  for (const s of shapes) {
    const n = s.dims[0] * s.dims[1];
    const ids = new BigInt64Array(n);
    for (let i = 0; i < n; i++) ids[i] = BigInt((i * 37 + 11) % 256);
    const [f, q0, q4] = await timeModels([models.float, models.level0, models.level4], { input_ids: { type: "int64", dims: s.dims, data: ids } }, settings);
    rows.push({ shape: s.name, dims: s.dims, floatMs: f, level0Ms: q0, level4Ms: q4, level0VsFloat: q0 / f, level4VsFloat: q4 / f });
    process.stdout.write(
      `${s.name}: float ${f.toFixed(3)} ms, level 0 ${q0.toFixed(3)} ms (${(q0 / f).toFixed(2)}x), level 4 ${q4.toFixed(3)} ms (${(q4 / f).toFixed(2)}x)\n`,
    );
  }
  process.stdout.write(`KL mean: level 0 ${kl.level0.klMean.toPrecision(4)}, level 4 ${kl.level4.klMean.toPrecision(4)}\n`);
  await mkdir(path.join(root, "bench", "out"), { recursive: true });
  await writeFile(
    path.join(root, "bench", "out", "accuracy-level.json"),
    JSON.stringify({ cpu: os.cpus()[0]?.model, cpus: os.cpus().length, loadAverage: os.loadavg(), runs: RUNS, threads: 1, kl, rows }, null, 2) + "\n",
  );
} finally {
  await rm(dir, { recursive: true, force: true });
}
