// Scale benchmark (not a test): the Llama-KJV architecture at growing sizes with random weights, saved with
// external data, through the whole gate (the real CLI, `quantgate run`) with int4 RTN at every size and GPTQ up
// to --gptq-max. The gate runs in a child process; a preloaded hook records that process's own peak RSS
// (VmHWM) at exit, so the figure is the gate process alone (the measure stage's children are reported apart,
// from the report). Per stage it records wall time (the report's stage records), fits seconds ~ params^b
// (log-log least squares over the RTN runs), and compares the gate's peak RSS with the float model's bytes on
// disk. Writes bench/out/scale.json.
// Generation needs Debian's python3 with onnx and numpy (examples/llama-kjv/export.py --random); generated models
// are kept in bench/out/scale/<size>/ and reused.
// Run: npm run bench:scale [-- --sizes 25M,125M,500M,1.1B --threads 2 --gptq-max 125M|none --keep-quantized --merge]
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const out = path.join(root, "bench", "out");
const args = process.argv.slice(2);
const opt = (name, fallback) => (args.includes(name) ? args[args.indexOf(name) + 1] : fallback);

// Llama shapes (head size 64, grouped-query attention, SwiGLU, tied embeddings); vocabulary as small LLMs ship it.
const SIZES = {
  "25M": { hidden_size: 512, intermediate_size: 1536, num_hidden_layers: 6, num_attention_heads: 8, num_key_value_heads: 2, vocab_size: 16000 },
  "125M": { hidden_size: 768, intermediate_size: 3072, num_hidden_layers: 12, num_attention_heads: 12, num_key_value_heads: 4, vocab_size: 32000 },
  "500M": { hidden_size: 1280, intermediate_size: 5120, num_hidden_layers: 20, num_attention_heads: 20, num_key_value_heads: 4, vocab_size: 32000 },
  "1.1B": { hidden_size: 2048, intermediate_size: 5632, num_hidden_layers: 22, num_attention_heads: 32, num_key_value_heads: 4, vocab_size: 32000 },
};

function params(c) {
  const hd = 64;
  const attn = c.hidden_size * hd * (2 * c.num_attention_heads + 2 * c.num_key_value_heads);
  const mlp = 3 * c.hidden_size * c.intermediate_size;
  return c.num_hidden_layers * (attn + mlp + 2 * c.hidden_size) + c.vocab_size * c.hidden_size + c.hidden_size;
}

// --sizes none --merge: no runs, the previous rows refitted.
const sizes = opt("--sizes", "25M,125M,500M,1.1B")
  .split(",")
  .filter((x) => x && x !== "none");
const threads = Number(opt("--threads", "2"));
const gptqMaxName = opt("--gptq-max", "125M");
const gptqMax = gptqMaxName === "none" ? 0 : params(SIZES[gptqMaxName]);
const keepQuantized = args.includes("--keep-quantized");

// The preload: at exit, the gate process writes its own peak RSS (VmHWM) and resource usage.
const hook = path.join(out, "scale", "peak-rss-hook.mjs");
mkdirSync(path.dirname(hook), { recursive: true });
writeFileSync(
  hook,
  `import { readFileSync, writeFileSync } from "node:fs";
const kb = (k) => Number(new RegExp("^" + k + ":\\\\s+(\\\\d+) kB", "m").exec(readFileSync("/proc/self/status", "utf8"))?.[1] ?? NaN) * 1024;
// Peak RSS so far (VmHWM) as each stage starts, read from the CLI's progress lines on stderr.
// Also sampled every 100 ms while the event loop is free (the largest VmRSS seen during each stage).
const marks = [];
const write = process.stderr.write.bind(process.stderr);
process.stderr.write = (chunk, ...rest) => {
  const m = /^\\[\\d+\\/\\d+\\] (\\w+)/.exec(String(chunk));
  if (m) marks.push({ stageStarts: m[1], vmHwmBytes: kb("VmHWM"), vmRssBytes: kb("VmRSS"), sampledMaxRssBytes: 0 });
  return write(chunk, ...rest);
};
setInterval(() => {
  const last = marks[marks.length - 1];
  if (last) last.sampledMaxRssBytes = Math.max(last.sampledMaxRssBytes, kb("VmRSS"));
}, 100).unref();
process.on("exit", () => {
  writeFileSync(process.env.QUANTGATE_SCALE_RSS, JSON.stringify({ vmHwmBytes: kb("VmHWM"), maxRssBytes: process.resourceUsage().maxRSS * 1024, marks }));
});
`,
);

function generate(size, dir) {
  const modelPath = path.join(dir, "model-ext.onnx");
  if (existsSync(modelPath) && existsSync(`${modelPath}.data`)) return modelPath;
  const cfg = {
    ...SIZES[size],
    head_dim: 64,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    max_position_embeddings: 2048,
    tie_word_embeddings: true,
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
  };
  writeFileSync(path.join(dir, "config.json"), JSON.stringify(cfg, null, 1));
  const t0 = performance.now();
  execFileSync(
    "/usr/bin/python3",
    [path.join(root, "examples/llama-kjv/export.py"), "--random", path.join(dir, "config.json"), "--out-dir", dir, "--variants", "model-ext"],
    {
      stdio: ["ignore", "ignore", "inherit"],
    },
  );
  process.stdout.write(`${size}: generated in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  return modelPath;
}

/** A quantgate.yml beside the model: a few 128-token windows of tiny-lm's held-out text, a small measure stage. */
function writeConfig(dir, preset) {
  const rel = (p) => path.relative(dir, path.join(root, p));
  const gptq = preset === "int4-gptq";
  const text = `# generated by bench/scale.mjs
allow_outside_workspace: true # the evaluation text is tiny-lm's, in examples/
model: model-ext.onnx
output_dir: out-${preset}
recipe:
  preset: ${preset}
  accuracy_level: 0 # one evaluation (no level-4 trial), exact compute
evaluation:
  task: language-modeling
  dataset: ${rel("examples/tiny-lm/eval.txt")}
  tokenizer: ${rel("examples/tiny-lm/tokenizer.json")}
${gptq ? `  calibration: ${rel("examples/tiny-lm/calib.txt")}\n  calibration_samples: 2\n` : ""}  sequence_length: 128
  samples: 4
  batch_size: 2
measure:
  threads: ${threads}
  warmup: 1
  runs: 3
  kernel_benchmark: false
  decode:
    prompts: 1
    prompt_tokens: 16
    decode_tokens: 4
gate: {}
`;
  const file = path.join(dir, `quantgate-${preset}.yml`);
  writeFileSync(file, text);
  return file;
}

function runGate(size, dir, preset) {
  const cfg = writeConfig(dir, preset);
  const rssFile = path.join(dir, `rss-${preset}.json`);
  rmSync(rssFile, { force: true });
  const t0 = performance.now();
  const r = spawnSync(process.execPath, ["--import", hook, path.join(root, "bin", "quantgate.js"), "run", "-c", cfg], {
    cwd: root,
    env: { ...process.env, QUANTGATE_SCALE_RSS: rssFile },
    encoding: "utf8",
    maxBuffer: 64 << 20,
  });
  const wall = (performance.now() - t0) / 1000;
  const reportPath = path.join(dir, `out-${preset}`, "quantgate-report.json");
  if (!existsSync(reportPath)) throw new Error(`${size} ${preset}: no report (exit ${r.status})\n${r.stderr}\n${r.stdout.slice(-4000)}`);
  const report = JSON.parse(readFileSync(reportPath, "utf8"));
  const rss = JSON.parse(readFileSync(rssFile, "utf8"));
  const stages = Object.fromEntries(report.stages.filter((s) => s.status !== "skipped").map((s) => [s.stage, +(s.ms / 1000).toFixed(3)]));
  const errors = report.stages.filter((s) => s.status === "error").map((s) => `${s.stage}: ${s.error}`);
  const quantDir = path.join(dir, `out-${preset}`);
  const qModel = path.join(quantDir, "model-ext.quantized.onnx");
  const row = {
    size,
    preset,
    exit: r.status,
    verdict: report.verdict,
    errors,
    gateWallSeconds: +wall.toFixed(2),
    stageSeconds: stages,
    gatePeakRssBytes: rss.vmHwmBytes,
    // VmHWM when each stage started (the peak reached by the end of the stage before it).
    peakRssAtStageStart: Object.fromEntries(rss.marks.map((m) => [m.stageStarts, m.vmHwmBytes])),
    sampledMaxRssDuringStage: Object.fromEntries(rss.marks.map((m) => [m.stageStarts, m.sampledMaxRssBytes])),
    quantizedBytes: report.quantized?.sizeBytes,
    quantizedExternalData: existsSync(`${qModel}.data`),
    externalNote: report.warnings.find((w) => w.includes("external data")),
    measureChildrenPeakRssBytes: { float: report.float?.run?.peakRssBytes, quantized: report.quantized?.run?.peakRssBytes },
    perplexity: report.metrics.find((m) => m.key === "perplexity"),
    klMean: report.metrics.find((m) => m.key === "kl_mean")?.quantized,
  };
  if (!keepQuantized) rmSync(quantDir, { recursive: true, force: true });
  return row;
}

const rows = [];
for (const size of sizes) {
  const shape = SIZES[size];
  if (!shape) throw new Error(`unknown size ${size}; choose from ${Object.keys(SIZES).join(", ")}`);
  const dir = path.join(out, "scale", size);
  mkdirSync(dir, { recursive: true });
  const modelPath = generate(size, dir);
  const floatBytes = statSync(modelPath).size + statSync(`${modelPath}.data`).size;
  const presets = ["int4-rtn", ...(params(shape) <= gptqMax ? ["int4-gptq"] : [])];
  for (const preset of presets) {
    const r = runGate(size, dir, preset);
    const row = {
      ...r,
      parameters: params(shape),
      floatBytes,
      gatePeakRssOverFloatSize: +(r.gatePeakRssBytes / floatBytes).toFixed(3),
      ranAt: new Date().toISOString(),
      loadAverage: os.loadavg()[0],
    };
    rows.push(row);
    const mib = (b) => (b / 2 ** 20).toFixed(0);
    process.stdout.write(
      `${size} ${preset} (${(row.parameters / 1e6).toFixed(1)} M parameters, ${mib(floatBytes)} MiB float): exit ${r.exit}, ` +
        Object.entries(r.stageSeconds)
          .map(([k, v]) => `${k} ${v.toFixed(2)} s`)
          .join(", ") +
        `; gate ${r.gateWallSeconds.toFixed(1)} s, gate peak RSS ${mib(r.gatePeakRssBytes)} MiB (${row.gatePeakRssOverFloatSize}x the float model)` +
        (r.errors.length ? `; ERRORS: ${r.errors.join(" | ")}` : "") +
        "\n",
    );
  }
}

// --merge: rows of the previous scale.json for sizes and presets not run now are kept (each row says when it ran).
const previousFile = path.join(out, "scale.json");
if (args.includes("--merge") && existsSync(previousFile)) {
  const previous = JSON.parse(readFileSync(previousFile, "utf8"));
  for (const r of previous.rows ?? []) {
    if (!rows.some((x) => x.size === r.size && x.preset === r.preset)) rows.push({ ...r, ranAt: r.ranAt ?? previous.when });
  }
  rows.sort((a, b) => a.parameters - b.parameters || a.preset.localeCompare(b.preset));
}

// log-log least squares: seconds ~ a * params^b
function exponent(xs, ys) {
  const lx = xs.map(Math.log);
  const ly = ys.map(Math.log);
  const mx = lx.reduce((a, b) => a + b, 0) / lx.length;
  const my = ly.reduce((a, b) => a + b, 0) / ly.length;
  let num = 0;
  let den = 0;
  for (let i = 0; i < lx.length; i++) {
    num += (lx[i] - mx) * (ly[i] - my);
    den += (lx[i] - mx) ** 2;
  }
  return den > 0 ? +(num / den).toFixed(3) : null;
}
const exponents = {};
// Over every size, and over sizes of 100M parameters and up (where fixed costs no longer dominate).
for (const [preset, minParams] of [
  ["int4-rtn", 0],
  ["int4-gptq", 0],
  ["int4-rtn", 1e8],
]) {
  const rs = rows.filter((r) => r.preset === preset && r.parameters >= minParams);
  if (rs.length < 2) continue;
  const fit = {};
  for (const stage of Object.keys(rs[0].stageSeconds).filter((k) => k !== "gate")) {
    const ys = rs.map((r) => r.stageSeconds[stage]);
    if (ys.every((y) => y !== undefined))
      fit[stage] = exponent(
        rs.map((r) => r.parameters),
        ys.map((y) => Math.max(y, 1e-3)),
      );
  }
  fit.gateWall = exponent(
    rs.map((r) => r.parameters),
    rs.map((r) => r.gateWallSeconds),
  );
  const key = minParams ? `${preset} (from 100M parameters)` : preset;
  exponents[key] = fit;
  process.stdout.write(
    `${key}: seconds ~ params^b: ${Object.entries(fit)
      .map(([k, v]) => `${k} b=${v}`)
      .join(", ")}\n`,
  );
}
const biggest = rows.find((r) => r.size === "1.1B" && r.preset === "int4-rtn");
mkdirSync(out, { recursive: true });
writeFileSync(
  path.join(out, "scale.json"),
  JSON.stringify(
    {
      when: new Date().toISOString(),
      machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, memoryBytes: os.totalmem(), loadAverage: os.loadavg() },
      threads,
      rows,
      exponents,
      quantizeSeconds1_1B: biggest?.stageSeconds.quantize ?? null,
      targets: { gatePeakRssOverFloatSize: 1.6, quantizeSeconds1_1B: 30, timeExponent: 1 },
      note: "whole gate through bin/quantgate.js run; gate peak RSS is the gate process's VmHWM (measure-stage children apart)",
    },
    null,
    1,
  ) + "\n",
);
