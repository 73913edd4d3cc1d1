// Conformance matrix on the corpus (not a test; test/conformance.test.ts asserts the same checks):
// model x format -> loads / quantized share of parameters / stored bits per weight / cosine to float.
// Writes bench/out/conformance.json and bench/out/conformance.md. Run: npm run bench:conformance
import { mkdir, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { CONFORMANCE_FORMATS, runConformance } from "../lib/emit/conformance.js";
import { loadOrt } from "../lib/runtime/ort.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const corpus = path.join(root, "test", "corpus");
const { ort, version } = await loadOrt();
const models = (await readdir(corpus)).filter((f) => f.endsWith(".onnx") && f !== "prequantized_float_reference.onnx").sort();
const cache = {};
const results = [];
for (const file of models) {
  for (const format of CONFORMANCE_FORMATS) {
    const r = await runConformance(ort, path.join(corpus, file), format, cache);
    results.push(r);
    const ok = r.loads && r.unaccounted.length === 0 && r.duplicated.length === 0 && (r.quantizedParams === 0 || r.cosine >= r.minCosine);
    process.stdout.write(
      `${ok ? "ok  " : "FAIL"} ${file} ${format}: share ${(r.quantizedShare * 100).toFixed(0)}%, stored ${r.storedBitsPerWeight.toFixed(2)} bpw (packed ${r.packedBitsPerWeight.toFixed(2)}), cos ${r.cosine.toFixed(5)}${r.error ? `, ${r.error}` : ""}\n`,
    );
  }
}
const cell = (r) => {
  if (!r.loads) return `**no**: ${r.error ?? "?"}`;
  if (r.quantizedParams === 0) return `yes / 0% (${r.alreadyQuantized.length ? "already quantized" : "nothing to quantize"})`;
  const ok = r.unaccounted.length === 0 && r.duplicated.length === 0 && r.cosine >= r.minCosine;
  return `${ok ? "yes" : "**RED**"} / ${(r.quantizedShare * 100).toFixed(0)}% / ${r.storedBitsPerWeight.toFixed(2)} / ${r.cosine.toFixed(4)}`;
};
const lines = [
  `Each cell: loads / quantized share of float parameters (tensors >= min_elements 1024) / stored bits per quantized weight (read from the file) / mean per-sample cosine of the outputs to float. onnxruntime-node ${version}, ${new Date().toISOString().slice(0, 10)}.`,
  "",
  `| model | ${CONFORMANCE_FORMATS.join(" | ")} |`,
  `| --- | ${CONFORMANCE_FORMATS.map(() => "---").join(" | ")} |`,
];
for (const file of models) {
  const row = CONFORMANCE_FORMATS.map((f) => cell(results.find((r) => r.model === file.replace(/\.onnx$/, "") && r.format === f)));
  lines.push(`| \`${file.replace(/\.onnx$/, "")}\` | ${row.join(" | ")} |`);
}
const floors = CONFORMANCE_FORMATS.map((f) => `${f} ${results.find((r) => r.format === f)?.minCosine}`).join(", ");
lines.push("", `Cosine floors per format: ${floors}.`);
await mkdir(path.join(root, "bench", "out"), { recursive: true });
await writeFile(path.join(root, "bench", "out", "conformance.json"), JSON.stringify({ onnxruntime: version, results }, null, 2));
await writeFile(path.join(root, "bench", "out", "conformance.md"), lines.join("\n") + "\n");
process.stdout.write(lines.join("\n") + "\n");

// Which form ONNX Runtime runs fastest (M = 1, one thread): every bit-exact form of int8/int4/int3/int2
// at one layer shape, against the float MatMul. Load time matters too: subgraph forms are folded at load.
const { quantizedLayerModel, floatLayerModel } = await import("../lib/emit/select.js");
const { formApplies } = await import("../lib/emit/index.js");
const { quantizeBlockwiseRef, transpose } = await import("../lib/quantize/blockwise.js");
const { serializeModel } = await import("../lib/onnx/model.js");
const [K, N] = [2048, 2048];
const w = Float32Array.from({ length: K * N }, (_, i) => Math.sin(i * 0.618) * 0.05);
async function time(bytes) {
  const t0 = performance.now();
  const s = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1, interOpNumThreads: 1 });
  const loadMs = performance.now() - t0;
  const feeds = {
    A: new ort.Tensor(
      "float32",
      Float32Array.from({ length: K }, (_, i) => Math.cos(i)),
      [1, K],
    ),
  };
  for (let i = 0; i < 3; i++) await s.run(feeds);
  const times = [];
  for (let i = 0; i < 20; i++) {
    const t = performance.now();
    await s.run(feeds);
    times.push(performance.now() - t);
  }
  await s.release();
  times.sort((a, b) => a - b);
  return { loadMs, p50Ms: times[times.length >> 1], bytes: bytes.length };
}
const formRows = [];
const floatT = await time(serializeModel(floatLayerModel(transpose(w, N, K), K, N)));
formRows.push({ format: "float32", form: "MatMul", exact: "", ...floatT });
for (const bits of [8, 4, 3, 2]) {
  const q = quantizeBlockwiseRef(w, N, K, { bits, blockSize: 32, symmetric: false, clipSearch: false });
  const variants = [
    ["matmulnbits", 0, "yes"],
    ["matmulnbits", 4, "no: int8 activations (accuracy_level 4)"],
    ["dequantizelinear", 0, "no: ORT fuses it into MatMulNBits at accuracy level 4"],
    ["dequant-subgraph", 0, "yes (folded to float at load)"],
  ];
  for (const [form, level, exact] of variants) {
    if (!formApplies(form, q, 21)) continue;
    const label = form === "matmulnbits" ? `${form} (accuracy_level ${level})` : form;
    try {
      formRows.push({ format: `int${bits}`, form: label, exact, ...(await time(serializeModel(quantizedLayerModel(q, form, level)))) });
    } catch (err) {
      formRows.push({ format: `int${bits}`, form: label, exact, refused: err.message.split("\n")[0] });
    }
  }
}
const formLines = [
  "",
  `Forms at K = N = ${K}, M = 1, block 32, one thread (onnxruntime-node ${version}): session load, p50 per run, file bytes.`,
  "",
  "| format | form | bit-exact | load ms | p50 ms | file bytes |",
  "| --- | --- | --- | --- | --- | --- |",
  ...formRows.map((r) =>
    r.refused
      ? `| ${r.format} | ${r.form} | ${r.exact} | refused: ${r.refused} | | |`
      : `| ${r.format} | ${r.form} | ${r.exact} | ${r.loadMs.toFixed(1)} | ${r.p50Ms.toFixed(3)} | ${r.bytes} |`,
  ),
];
process.stdout.write(formLines.join("\n") + "\n");
await writeFile(path.join(root, "bench", "out", "conformance.json"), JSON.stringify({ onnxruntime: version, results, forms: formRows }, null, 2));
await writeFile(path.join(root, "bench", "out", "conformance.md"), [...lines, ...formLines].join("\n") + "\n");
