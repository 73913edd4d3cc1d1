// Quantizes a Llama-KJV export with QuantGate's own stages (int4 RTN, MatMulNBits; the tied embedding once, read by
// GatherBlockQuantized and MatMulNBits), then scores float and quantized on eval.txt through src/tasks/lm-inputs
// (every declared input fed: mask, positions, empty past) and measures decode (src/measure/decode) for both.
// Needs the compiled lib/ (npm run build). From the repository root:
//   node examples/llama-kjv/evaluate.mjs [model.onnx] [--out DIR] [--stride N] [--prompt P] [--decode D] [--threads T]
//                                        [--format int4] [--block-size 32] [--symmetric] [--no-tied]
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import ort from "onnxruntime-node";

const here = path.dirname(fileURLToPath(import.meta.url));
const lib = (p) => import(path.resolve(here, "../../lib", p));
const { loadModel, saveModel } = await lib("onnx/model.js");
const { findWeights } = await lib("onnx/weights.js");
const { recipeSchema } = await lib("config/schema.js");
const { planWeights, quantizeWeights, specFor } = await lib("quantize/index.js");
const { quantizeBlockwiseRef } = await lib("quantize/blockwise.js");
const { emitModel } = await lib("emit/index.js");
const { quantizeTiedEmbeddings } = await lib("emit/tied.js");
const { buildLmFeeds, planLmInputs, sessionDecls, slidingWindows, toOrtLmFeeds } = await lib("tasks/lm-inputs.js");
const { compareGenerations, decodeMetricRecords, measureDecode } = await lib("measure/decode.js");
const { logSoftmax, klDivergence, argmax, percentile } = await lib("evaluate/metrics.js");

const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : fallback;
};
const modelPath = path.resolve(args[0] && !args[0].startsWith("--") ? args[0] : path.join(here, "model.onnx"));
const outDir = path.resolve(opt("--out", path.join(here, "quantgate-out")));
const stride = Number(opt("--stride", "128"));
const P = Number(opt("--prompt", "64"));
const D = Number(opt("--decode", "64"));
const threads = Number(opt("--threads", "1"));
const format = opt("--format", "int4");
const blockSize = Number(opt("--block-size", "32"));
const symmetric = args.includes("--symmetric");
const tied = !args.includes("--no-tied");
mkdirSync(outDir, { recursive: true });

// ---- quantize and emit with the pipeline's stages
const t0 = performance.now();
const recipe = recipeSchema.parse({ format, block_size: blockSize, symmetric, algorithm: "rtn" });
const model = await loadModel(modelPath);
const discovery = findWeights(model.graph, recipe);
const plans = planWeights(discovery.weights, recipe);
const quantized = quantizeWeights(plans, { quantize: (w, n, k, s) => quantizeBlockwiseRef(w, n, k, s), stats: undefined, recipe, threads });
const emitted = emitModel(model.proto, quantized, new Map([[format, "matmulnbits"]]), 0);
const tiedReport = tied
  ? quantizeTiedEmbeddings(emitted.proto, (w, n, k, s) => quantizeBlockwiseRef(w, n, k, s), specFor(format, blockSize, symmetric, "rtn"), threads)
  : [];
const qPath = path.join(outDir, path.basename(modelPath, ".onnx") + `.${format}.onnx`);
const qSize = await saveModel(emitted.proto, qPath);
const quantizeMs = performance.now() - t0;
console.log(
  `quantized ${plans.length} MatMul weights + ${tiedReport.length} tied embedding(s) to ${format} in ${quantizeMs.toFixed(0)} ms -> ${qPath} (${qSize} bytes, float ${model.sizeBytes})`,
);
console.log(`tied: ${JSON.stringify(tiedReport)}`);

// ---- perplexity, KL and top-1 agreement, every input fed through lm-inputs
const ids = JSON.parse(readFileSync(path.resolve(here, "../tiny-lm/eval_ids.json"), "utf8")).eval;
const { windows, tokensScored } = slidingWindows(ids, 128, stride);
const open = (p) => ort.InferenceSession.create(p, { intraOpNumThreads: threads, interOpNumThreads: 1 });
const [sf, sq] = [await open(modelPath), await open(qPath)];
const plan = planLmInputs(sessionDecls(sf.inputMetadata), sessionDecls(sf.outputMetadata));
console.log(`inputs fed: ${plan.description.join("; ")}`);
const f16 = (h) => {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  return e === 0 ? s * m * 2 ** -24 : s * (1 + m / 1024) * 2 ** (e - 15);
};
const f32 = (t) => (t.type === "float16" ? Float32Array.from(t.data, f16) : t.data);
let nllF = 0;
let nllQ = 0;
let agree = 0;
const kls = [];
for (const w of windows) {
  const feeds = toOrtLmFeeds(ort, buildLmFeeds(plan, [w.ids]));
  const lf = f32((await sf.run(feeds)).logits);
  const lq = f32((await sq.run(feeds)).logits);
  const V = lf.length / w.ids.length;
  const pf = new Float64Array(V);
  const pq = new Float64Array(V);
  for (let i = w.scoreFrom; i < w.ids.length; i++) {
    const off = (i - 1) * V;
    logSoftmax(lf, off, V, pf);
    logSoftmax(lq, off, V, pq);
    nllF -= pf[w.ids[i]];
    nllQ -= pq[w.ids[i]];
    kls.push(klDivergence(pf, pq));
    if (argmax(lf, off, V) === argmax(lq, off, V)) agree++;
  }
}
const ppl = { float: Math.exp(nllF / tokensScored), quantized: Math.exp(nllQ / tokensScored) };
const kl = { mean: kls.reduce((a, b) => a + b, 0) / kls.length, p99: percentile(kls, 99), max: Math.max(...kls) };
console.log(
  `eval.txt, windows of 128, stride ${stride}: ${tokensScored} tokens scored in ${windows.length} windows; perplexity float ${ppl.float.toFixed(3)}, ` +
    `${format} ${ppl.quantized.toFixed(3)} (+${((ppl.quantized / ppl.float - 1) * 100).toFixed(2)}%); KL mean ${kl.mean.toFixed(5)}, p99 ${kl.p99.toFixed(4)}, ` +
    `max ${kl.max.toFixed(3)}; top-1 agreement ${(agree / tokensScored).toFixed(4)}`,
);

// ---- decode: float and quantized in their own processes, same threads
const prompts = [0, 2000, 5000].map((s) => ids.slice(s, s + P));
const settings = { prompts, decodeTokens: D, threads, warmup: 1 };
const df = await measureDecode(modelPath, settings);
const dq = await measureDecode(qPath, settings);
const records = decodeMetricRecords(df, dq, P, D);
for (const r of records) console.log(`${r.label}: float ${r.float?.toFixed(3)}, ${format} ${r.quantized.toFixed(3)} ${r.unit} (${r.note})`);
const divergence = compareGenerations(df.generated, dq.generated).map((d) => ({
  prompt: d.prompt,
  firstDivergence: d.firstDivergence ?? null,
  compared: d.compared,
}));
console.log(`greedy divergence: ${JSON.stringify(divergence)}`);
const report = {
  model: path.relative(process.cwd(), modelPath),
  quantized: path.relative(process.cwd(), qPath),
  format,
  blockSize,
  symmetric,
  sizeBytes: { float: model.sizeBytes, quantized: qSize },
  quantizeMs,
  tied: tiedReport,
  inputsFed: plan.description,
  perplexity: { ...ppl, stride, window: 128, tokensScored, windows: windows.length },
  kl,
  top1Agreement: agree / tokensScored,
  decode: { promptTokens: P, decodeTokens: D, threads, records, divergence, logitsType: { float: df.logitsType, quantized: dq.logitsType } },
  onnxruntime: ort.env.versions?.common,
};
writeFileSync(path.join(outDir, `llm-eval.${path.basename(modelPath, ".onnx")}.${format}.json`), JSON.stringify(report, null, 1) + "\n");
