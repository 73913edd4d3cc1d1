// Whole-gate timing on the bundled example (not a test): a cold run, then a re-run with nothing changed
// served from the work cache (latency and memory are measured again). Writes bench/out/gate.json.
// Run: npm run bench:gate
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const example = path.join(root, "examples", "tiny-lm");
const base = await readFile(path.join(example, "quantgate.yml"), "utf8");
const recipes = {
  "int4-rtn (the example)": null,
  "int4-gptq": "recipe:\n  preset: int4-gptq\n",
};
const rows = [];
for (const [name, recipe] of Object.entries(recipes)) {
  const dir = await mkdtemp(path.join(os.tmpdir(), "qg-bench-gate-"));
  let text = base.replace(/model: model\.onnx/, `model: ${path.join(example, "model.onnx")}`);
  for (const f of ["eval.txt", "calib.txt", "tokenizer.json"]) text = text.replace(new RegExp(`: ${f.replace(".", "\\.")}`), `: ${path.join(example, f)}`);
  if (recipe) text = text.replace(/recipe:\n( {2}.*\n)+/, recipe).replace(/ {2}max_bits_per_weight: .*\n/, "");
  // The example's files lie outside this config's folder: the CLI's opt-in for reads (outputs stay in dir).
  text += "allow_outside_workspace: true\n";
  const config = path.join(dir, "quantgate.yml");
  await writeFile(config, text);
  const times = [];
  const hits = [];
  for (let i = 0; i < 2; i++) {
    const t0 = performance.now();
    const out = execFileSync(process.execPath, [path.join(root, "bin", "quantgate.js"), "run", "-c", config, "--cache"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    });
    times.push((performance.now() - t0) / 1000);
    hits.push(/Cache: .*/.exec(out)?.[0] ?? "");
  }
  rows.push({ recipe: name, coldSeconds: times[0], cachedSeconds: times[1], ratio: times[1] / times[0], cache: hits[1] });
  process.stdout.write(`${name}: cold ${times[0].toFixed(2)} s, cached ${times[1].toFixed(2)} s (${((times[1] / times[0]) * 100).toFixed(0)}%), ${hits[1]}\n`);
  await rm(dir, { recursive: true, force: true });
}
await mkdir(path.join(root, "bench", "out"), { recursive: true });
await writeFile(path.join(root, "bench", "out", "gate.json"), JSON.stringify({ cpu: os.cpus()[0]?.model, rows }, null, 2) + "\n");
