// Checks every export of the Llama-KJV example under onnxruntime-node against torch's logits
// (reference_logits.json, written by export.py --reference): single calls with an empty past
// (past length 0) and two-call runs whose first call's present.* is fed back as past_key_values.*.
// With the trained model it also recomputes the eval perplexity (tiny LM protocol: windows of 128).
// Run from the repository root:  node examples/llama-kjv/check_onnx.mjs [dir] [variant ...]
import { existsSync, readFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import ort from "onnxruntime-node";

const here = dirname(fileURLToPath(import.meta.url));
const dir = process.argv[2] ?? here;
const wanted = process.argv.slice(3);
const variants = (wanted.length ? wanted : ["model", "model-ext", "model-fp16", "genai", "genai-fp16"]).filter((v) => existsSync(join(dir, `${v}.onnx`)));
const ref = JSON.parse(readFileSync(join(dir, "reference_logits.json"), "utf8"));
const TOL_F32 = 2e-4;
const TOL_F16 = 0.15; // logits of order 10 through ~30 fp16 ops

function f16ToF32(h) {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}
const asF32 = (t) => (t.type === "float16" ? Float32Array.from(t.data, f16ToF32) : t.data);
const decodeF32 = (b64) => {
  const buf = Buffer.from(b64, "base64");
  return new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
};

function kvInputs(session) {
  const meta = new Map(session.inputMetadata.map((m) => [m.name, m]));
  return session.inputNames.filter((n) => n.startsWith("past_key_values.")).map((n) => ({ name: n, meta: meta.get(n) }));
}

/** One forward call: rows of new tokens, `past` (name -> tensor) or empty past of the declared shape. */
async function call(session, rows, pastLen, past) {
  const batch = rows.length;
  const seq = rows[0].length;
  const total = pastLen + seq;
  const feeds = {
    input_ids: new ort.Tensor("int64", BigInt64Array.from(rows.flat(), BigInt), [batch, seq]),
    attention_mask: new ort.Tensor("int64", new BigInt64Array(batch * total).fill(1n), [batch, total]),
  };
  if (session.inputNames.includes("position_ids")) {
    const pos = new BigInt64Array(batch * seq);
    for (let b = 0; b < batch; b++) for (let i = 0; i < seq; i++) pos[b * seq + i] = BigInt(pastLen + i);
    feeds.position_ids = new ort.Tensor("int64", pos, [batch, seq]);
  }
  for (const { name, meta } of kvInputs(session)) {
    if (past) {
      feeds[name] = past[name.replace("past_key_values.", "present.")];
    } else {
      const [, kv, , hd] = meta.shape;
      const type = meta.type;
      feeds[name] = new ort.Tensor(type, type === "float16" ? new Uint16Array(0) : new Float32Array(0), [batch, kv, 0, hd]);
    }
  }
  return session.run(feeds);
}

let failures = 0;
for (const variant of variants) {
  const session = await ort.InferenceSession.create(join(dir, `${variant}.onnx`), { intraOpNumThreads: 1 });
  const tol = variant.endsWith("fp16") ? TOL_F16 : TOL_F32;
  for (const c of ref.cases) {
    const rows = c.input_ids;
    const seq = rows[0].length;
    let out;
    let offset = 0;
    if (c.prefix > 0) {
      let cache = await call(
        session,
        rows.map((r) => r.slice(0, c.prefix)),
        0,
        null,
      );
      if (rows.length === 1) {
        out = await call(
          session,
          rows.map((r) => r.slice(c.prefix)),
          c.prefix,
          cache,
        );
      } else {
        // GroupQueryAttention takes several new tokens with a past only at batch 1: decode one at a time
        const steps = [];
        for (let t = c.prefix; t < seq; t++) {
          cache = await call(
            session,
            rows.map((r) => [r[t]]),
            t,
            cache,
          );
          steps.push(asF32(cache.logits));
        }
        const vocab = cache.logits.dims[2];
        const data = new Float32Array(rows.length * steps.length * vocab);
        for (let b = 0; b < rows.length; b++) {
          steps.forEach((l, i) => data.set(l.subarray(b * vocab, (b + 1) * vocab), (b * steps.length + i) * vocab));
        }
        out = { logits: { type: "float32", data, dims: [rows.length, steps.length, vocab] } };
      }
      offset = c.prefix;
    } else {
      out = await call(session, rows, 0, null);
    }
    const logits = asF32(out.logits);
    const vocab = out.logits.dims[2];
    const want = decodeF32(c.logits_f32_b64);
    const positions = c.positions ?? Array.from({ length: seq }, (_, i) => i);
    const n = out.logits.dims[1];
    let maxAbs = 0;
    let k = 0;
    for (let b = 0; b < rows.length; b++) {
      for (const p of positions) {
        for (let v = 0; v < vocab; v++) maxAbs = Math.max(maxAbs, Math.abs(logits[(b * n + p - offset) * vocab + v] - want[k++]));
      }
    }
    const ok = k === want.length && maxAbs <= tol;
    if (!ok) failures++;
    console.log(
      `${variant}: [${rows.length}, ${seq}]${c.prefix ? ` as ${c.prefix} + ${seq - c.prefix} with past` : ", past 0"}: ` +
        `max |ort - torch| = ${maxAbs.toExponential(3)} ${ok ? "ok" : "FAIL"}`,
    );
  }
  if (ref.val_loss != null) {
    const ids = JSON.parse(readFileSync(join(here, "..", "tiny-lm", "eval_ids.json"), "utf8")).eval;
    let nll = 0;
    let count = 0;
    for (let s = 0; s < ids.length; s += ref.ctx) {
      const w = ids.slice(s, s + ref.ctx);
      if (w.length < 2) continue;
      const out = await call(session, [w], 0, null);
      const l = asF32(out.logits);
      const vocab = out.logits.dims[2];
      for (let i = 0; i + 1 < w.length; i++) {
        let max = -Infinity;
        for (let v = 0; v < vocab; v++) max = Math.max(max, l[i * vocab + v]);
        let sum = 0;
        for (let v = 0; v < vocab; v++) sum += Math.exp(l[i * vocab + v] - max);
        nll += Math.log(sum) + max - l[i * vocab + w[i + 1]];
        count++;
      }
    }
    const loss = nll / count;
    const lossTol = variant.endsWith("fp16") ? 5e-3 : 1e-4;
    const ok = Math.abs(loss - ref.val_loss) <= lossTol;
    if (!ok) failures++;
    console.log(
      `${variant}: eval loss ${loss.toFixed(6)} (ppl ${Math.exp(loss).toFixed(3)}) vs torch ${ref.val_loss.toFixed(6)} ` +
        `(ppl ${Math.exp(ref.val_loss).toFixed(3)}) ${ok ? "ok" : "FAIL"}`,
    );
  }
}
if (variants.length === 0) {
  console.log(`no model files in ${dir}`);
  failures++;
}
process.exit(failures ? 1 : 0);
