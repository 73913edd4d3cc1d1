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
