// fp16 LLM at int4: peak memory and decode speed of the forms an fp16 MatMul weight can take under ONNX Runtime's
// CPU provider (writes bench/out/fp16-matmulnbits.json). Usage: node bench/fp16-matmulnbits.mjs <model-fp16.onnx> <dequant-subgraph quantized.onnx> (after npm run build)
// Builds (a) MatMulNBits with float16 activations (T = float16, fp16 scales) and (b) MatMulNBits in float32 with
// Cast nodes around it, from the same RTN int4 block-32 asymmetric codes, and measures each in a child process.
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseModel, saveModel, tensorToFloat32, floatToHalf, makeTensor, makeNode, makeAttribute, DataType, cloneModel } from "../lib/onnx/model.js";
import { layerGraph } from "../lib/emit/index.js";
import { quantizeBlockwiseRef, transpose } from "../lib/quantize/blockwise.js";
import { measureDecode } from "../lib/measure/decode.js";
import { readFileSync } from "node:fs";
import { create } from "@bufbuild/protobuf";
import { OperatorSetIdProtoSchema } from "onnx-buf";

const [floatPath, subgraphPath] = process.argv.slice(2);
const spec = { bits: 4, blockSize: 32, symmetric: false, clipSearch: false };
const base = (await parseModel(readFileSync(floatPath), floatPath)).proto;

function build(castToFloat) {
  const m = cloneModel(base);
  m.opsetImport.push(create(OperatorSetIdProtoSchema, { domain: "com.microsoft", version: 1n }));
  const g = m.graph;
  const inits = new Map(g.initializer.map((t) => [t.name, t]));
  const out = [];
  for (const n of g.node) {
    const w = inits.get(n.input[1] ?? "");
    if (n.opType !== "MatMul" || !w || w.dims.length !== 2) {
      out.push(n);
      continue;
    }
    const [k, nn] = w.dims.map(Number);
    const q = quantizeBlockwiseRef(transpose(tensorToFloat32(w), k, nn), nn, k, spec);
    const p = `${w.name}_q4`;
    const a = castToFloat ? `${p}_a32` : n.input[0];
    const y = castToFloat ? `${p}_y32` : n.output[0];
    const lg = layerGraph(p, a, y, q, "matmulnbits", 0);
    let [packed, scales, zp] = lg.initializers;
    if (!castToFloat)
      scales = makeTensor(
        scales.name,
        DataType.FLOAT16,
        scales.dims.map(Number),
        Uint16Array.from(q.scales, (v) => floatToHalf(v)),
      );
    g.initializer.push(packed, scales, ...(zp ? [zp] : []));
    const mm = lg.nodes[0];
    mm.input.splice(1, mm.input.length - 1, packed.name, scales.name, ...(zp ? [zp.name] : []));
    if (castToFloat) out.push(makeNode("Cast", [n.input[0]], [a], [makeAttribute("to", DataType.FLOAT)], { name: `${p}_CastIn` }));
    out.push(mm);
    if (castToFloat) out.push(makeNode("Cast", [y], [n.output[0]], [makeAttribute("to", DataType.FLOAT16)], { name: `${p}_CastOut` }));
    g.initializer.splice(g.initializer.indexOf(w), 1);
  }
  g.node.splice(0, g.node.length, ...out);
  return m;
}

const dir = mkdtempSync(path.join(os.tmpdir(), "qg-fp16-"));
const files = { "float16 (no quantization)": floatPath, "int4 dequant-subgraph (QuantGate's fp16 form)": subgraphPath };
for (const [label, cast] of [
  ["int4 MatMulNBits, float16 activations", false],
  ["int4 MatMulNBits, float32 activations (Cast around)", true],
]) {
  const f = path.join(dir, `${cast ? "cast" : "half"}.onnx`);
  await saveModel(build(cast), f);
  files[label] = f;
}
const prompts = [Array.from({ length: 32 }, (_, i) => 100 + i), Array.from({ length: 32 }, (_, i) => 300 - i)];
const rows = {};
for (let round = 0; round < 2; round++) {
  for (const [label, f] of Object.entries(files)) {
    const m = await measureDecode(f, { prompts, decodeTokens: 16, threads: 1, warmup: 2 });
    const r = (rows[label] ??= { peakMiB: [], stepP50Ms: [], ttftMs: [], loadMs: [], generated: m.generated[0].join(" ") });
    r.peakMiB.push(+(m.peakRssBytes / 2 ** 20).toFixed(1));
    r.stepP50Ms.push(+m.stepP50Ms.toFixed(3));
    r.ttftMs.push(+m.ttftP50Ms.toFixed(2));
    r.loadMs.push(+m.loadMs.toFixed(0));
  }
}
const outDir = path.join(path.dirname(new URL(import.meta.url).pathname), "out");
mkdirSync(outDir, { recursive: true });
writeFileSync(
  path.join(outDir, "fp16-matmulnbits.json"),
  JSON.stringify({ onnxruntime: "onnxruntime-node", threads: 1, prompts: 2, promptTokens: 32, decodeTokens: 16, rows }, null, 1),
);
for (const [label, r] of Object.entries(rows))
  console.log(`${label}: peak ${r.peakMiB.join(" / ")} MiB, decode p50 ${r.stepP50Ms.join(" / ")} ms/token, load ${r.loadMs.join(" / ")} ms`);
