// Scale benchmark (not a test): the Llama-KJV architecture at growing sizes with random weights, saved with
// external data, through QuantGate's stages (load, find weights, int4 RTN quantize, emit with the tied embedding
// quantized once, save). Each size runs in a child process of its own; per stage it records wall time and the
// child's peak RSS so far. Fits time ~ params^b per stage (log-log least squares). Writes bench/out/scale.json.
// Generation needs Debian's python3 with onnx and numpy (examples/llama-kjv/export.py --random); generated models
// are kept in bench/out/scale/ and reused.
// Run: npm run bench:scale [-- --sizes 25M,125M --threads 2]
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
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

// ---- child: run the stages on one model and print JSON
if (process.env.QUANTGATE_SCALE_CHILD) {
  const { model: modelPath, threads } = JSON.parse(process.env.QUANTGATE_SCALE_CHILD);
  const lib = (p) => import(path.join(root, "lib", p));
  const { loadModel, saveModel, tensorToFloat32 } = await lib("onnx/model.js");
  const { findWeights } = await lib("onnx/weights.js");
  const { recipeSchema } = await lib("config/schema.js");
  const { planWeights, quantizeWeights, specFor } = await lib("quantize/index.js");
  const { loadKernelQuantizer } = await lib("quantize/kernels.js");
  const { emitModel } = await lib("emit/index.js");
  const { emitTiedEmbedding, findTiedEmbeddings } = await lib("emit/tied.js");
  const stages = [];
  let t = performance.now();
  const mark = (stage) => {
    const now = performance.now();
    stages.push({ stage, seconds: (now - t) / 1000, peakRssBytes: process.resourceUsage().maxRSS * 1024 });
    t = now;
  };
  const kernels = await loadKernelQuantizer(() => {});
  const recipe = recipeSchema.parse({ preset: "int4-rtn" });
  t = performance.now();
  const model = await loadModel(modelPath);
  mark("load");
  const discovery = findWeights(model.graph, recipe);
  const plans = planWeights(discovery.weights, recipe);
  mark("find weights");
  const quantized = quantizeWeights(plans, { quantize: kernels.quantize, stats: undefined, recipe, threads });
  const sites = findTiedEmbeddings(model.graph);
  const tiedQ = sites.map((s) => {
    const table = model.graph.initializer.find((x) => x.name === s.name);
    return kernels.quantize(tensorToFloat32(table), s.vocab, s.hidden, specFor("int4", recipe.block_size, recipe.symmetric, "rtn"), threads);
  });
  mark("quantize");
  const emitted = emitModel(model.proto, quantized, new Map([["int4", "matmulnbits"]]), 0);
  findTiedEmbeddings(emitted.proto.graph).forEach((s, i) => emitTiedEmbedding(emitted.proto, s, tiedQ[i]));
  mark("emit");
  const qPath = modelPath.replace(/\.onnx$/, ".int4.onnx");
  const bytes = await saveModel(emitted.proto, qPath);
  mark("save");
  process.stdout.write(JSON.stringify({ stages, quantizedBytes: bytes, weights: plans.length, tied: sites.length, kernels: kernels.name }));
  process.exit(0);
}

// ---- parent
const sizes = opt("--sizes", "25M,125M").split(",");
const threads = Number(opt("--threads", "2"));
const rows = [];
for (const size of sizes) {
  const shape = SIZES[size];
  if (!shape) throw new Error(`unknown size ${size}; choose from ${Object.keys(SIZES).join(", ")}`);
  const dir = path.join(out, "scale", size);
  mkdirSync(dir, { recursive: true });
  const cfg = {
    ...shape,
    head_dim: 64,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    max_position_embeddings: 2048,
    tie_word_embeddings: true,
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
  };
  const modelPath = path.join(dir, "model-ext.onnx");
  if (!existsSync(modelPath)) {
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
  }
  const floatBytes = statSync(modelPath).size + statSync(modelPath + ".data").size;
  const t0 = performance.now();
  const res = JSON.parse(
    execFileSync(process.execPath, [fileURLToPath(import.meta.url)], {
      env: { ...process.env, QUANTGATE_SCALE_CHILD: JSON.stringify({ model: modelPath, threads }) },
      encoding: "utf8",
      maxBuffer: 1 << 20,
    }),
  );
  const wall = (performance.now() - t0) / 1000;
  const peak = Math.max(...res.stages.map((s) => s.peakRssBytes));
  const row = { size, parameters: params(shape), floatBytes, ...res, wallSeconds: wall, peakRssBytes: peak, peakRssOverFloatSize: peak / floatBytes };
  rows.push(row);
  process.stdout.write(
    `${size} (${(row.parameters / 1e6).toFixed(1)} M parameters, ${(floatBytes / 2 ** 20).toFixed(0)} MiB float): ` +
      res.stages.map((s) => `${s.stage} ${s.seconds.toFixed(2)} s`).join(", ") +
      `; peak RSS ${(peak / 2 ** 20).toFixed(0)} MiB (${row.peakRssOverFloatSize.toFixed(2)}x the float model)\n`,
  );
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
  return den > 0 ? num / den : null;
}
const fits = {};
if (rows.length >= 2) {
  for (const stage of rows[0].stages.map((s) => s.stage)) {
    fits[stage] = exponent(
      rows.map((r) => r.parameters),
      rows.map((r) => Math.max(r.stages.find((s) => s.stage === stage).seconds, 1e-4)),
    );
  }
  fits.total = exponent(
    rows.map((r) => r.parameters),
    rows.map((r) => r.wallSeconds),
  );
  process.stdout.write(
    `time ~ params^b: ${Object.entries(fits)
      .map(([k, v]) => `${k} b=${v?.toFixed(2)}`)
      .join(", ")}\n`,
  );
}
mkdirSync(out, { recursive: true });
const previous = existsSync(path.join(out, "scale.json")) ? JSON.parse(readFileSync(path.join(out, "scale.json"), "utf8")) : undefined;
writeFileSync(
  path.join(out, "scale.json"),
  JSON.stringify(
    {
      when: new Date().toISOString(),
      threads,
      rows,
      exponents: fits,
      note: "stages through lib/ (npm run build); whole-gate runs need the LLM task",
      previous: previous?.when,
    },
    null,
    1,
  ) + "\n",
);
