// Checks model.onnx under onnxruntime-node against the torch reference logits that train.py wrote
// (reference_logits.json), then recomputes the eval perplexity end to end (tokenizer.json +
// model.onnx on eval.txt) with the protocol train.py uses, and compares it with torch's.
// Run from the repository root:  node examples/tiny-lm/check_onnx.mjs [dir]
import { readFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import ort from "onnxruntime-node";
import { Tokenizer } from "@huggingface/tokenizers";

const dir = process.argv[2] ?? dirname(fileURLToPath(import.meta.url));
const read = (name) => readFileSync(join(dir, name), "utf8");
const LOGIT_TOL = 1e-4;
const LOSS_TOL = 1e-4;

const session = await ort.InferenceSession.create(join(dir, "model.onnx"), {
  graphOptimizationLevel: "all",
  intraOpNumThreads: 2,
});
console.log(`inputs ${JSON.stringify(session.inputNames)}, outputs ${JSON.stringify(session.outputNames)}`);

async function run(rows) {
  const batch = rows.length;
  const seq = rows[0].length;
  const data = BigInt64Array.from(rows.flat(), (v) => BigInt(v));
  const out = await session.run({ input_ids: new ort.Tensor("int64", data, [batch, seq]) });
  const logits = out.logits;
  if (logits.type !== "float32") throw new Error(`logits type ${logits.type}`);
  return logits;
}

function decodeF32(b64) {
  const buf = Buffer.from(b64, "base64");
  return new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
}

let failures = 0;
const ref = JSON.parse(read("reference_logits.json"));
for (const c of ref.cases) {
  const logits = await run(c.input_ids);
  const [batch, seq] = [c.input_ids.length, c.input_ids[0].length];
  const vocab = logits.dims[2];
  const shapeOk = logits.dims.length === 3 && logits.dims[0] === batch && logits.dims[1] === seq;
  const want = decodeF32(c.logits_f32_b64);
  const positions = c.positions ?? Array.from({ length: seq }, (_, i) => i);
  let maxAbs = 0;
  let k = 0;
  for (let b = 0; b < batch; b++) {
    for (const p of positions) {
      for (let v = 0; v < vocab; v++) {
        const got = logits.data[(b * seq + p) * vocab + v];
        maxAbs = Math.max(maxAbs, Math.abs(got - want[k++]));
      }
    }
  }
  const ok = shapeOk && k === want.length && maxAbs <= LOGIT_TOL;
  if (!ok) failures++;
  console.log(
    `input [${batch}, ${seq}] -> logits [${logits.dims.join(", ")}]: max |ort - torch| = ${maxAbs.toExponential(3)} ` +
      `over ${k} values ${ok ? "ok" : "FAIL"}`,
  );
}

// End-to-end perplexity on eval.txt: same windows as train.py's mean_nll().
const tokenizer = new Tokenizer(JSON.parse(read("tokenizer.json")), JSON.parse(read("tokenizer_config.json")));
const ids = tokenizer.encode(read("eval.txt"), { add_special_tokens: false }).ids;
const ctx = ref.ctx;
let nll = 0;
let count = 0;
for (let start = 0; start < ids.length; start += ctx) {
  const w = ids.slice(start, start + ctx);
  if (w.length < 2) continue;
  const input = w.slice(0, -1);
  const logits = await run([input]);
  const vocab = logits.dims[2];
  for (let p = 0; p < input.length; p++) {
    const row = logits.data.subarray(p * vocab, (p + 1) * vocab);
    let max = -Infinity;
    for (const x of row) max = Math.max(max, x);
    let sum = 0;
    for (const x of row) sum += Math.exp(x - max);
    nll += Math.log(sum) + max - row[w[p + 1]];
    count++;
  }
}
const loss = nll / count;
const lossOk = ref.val_loss == null || Math.abs(loss - ref.val_loss) <= LOSS_TOL;
if (!lossOk) failures++;
console.log(
  `eval.txt: ${ids.length} tokens, ${count} predicted; ORT loss ${loss.toFixed(6)} ppl ${Math.exp(loss).toFixed(3)}` +
    (ref.val_loss == null ? "" : `; torch loss ${ref.val_loss.toFixed(6)} ppl ${Math.exp(ref.val_loss).toFixed(3)}`) +
    ` ${lossOk ? "ok" : "FAIL"}`,
);

if (failures) {
  console.error(`FAIL (${failures})`);
  process.exit(1);
}
console.log("OK");
