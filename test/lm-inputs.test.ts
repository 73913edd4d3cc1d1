// Feeding LLM exports: real ORT sessions on the small Llama fixtures (both layouts, fp32/fp16/external data)
// against torch's logits, and the recognition rules and their errors.
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import ort from "onnxruntime-node";
import {
  buildLmFeeds,
  lmInputsConfigSchema,
  parseKvName,
  planLmInputs,
  presentToPast,
  sessionDecls,
  slidingWindows,
  toOrtLmFeeds,
  type LmValueDecl,
} from "../src/tasks/lm-inputs.js";
import type { Ort } from "../src/runtime/ort.js";
import { floatToHalf } from "../src/util/half.js";

const ORT = ort as unknown as Ort;

const FIX = path.resolve("test/fixtures/llm");
interface RefCase {
  input_ids: number[][];
  prefix: number;
  positions: number[] | null;
  logits_f32_b64: string;
}
const ref = JSON.parse(readFileSync(path.join(FIX, "reference_logits.json"), "utf8")) as { cases: RefCase[] };

function f16(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

function logitsOf(t: ort.Tensor): Float32Array {
  return t.type === "float16" ? Float32Array.from(t.data as Uint16Array, f16) : (t.data as Float32Array);
}

function maxDiff(got: Float32Array, gotSeq: number, offset: number, c: RefCase, vocab: number): number {
  const buf = Buffer.from(c.logits_f32_b64, "base64");
  const want = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
  const positions = c.positions ?? c.input_ids[0]!.map((_, i) => i);
  let k = 0;
  let max = 0;
  for (let b = 0; b < c.input_ids.length; b++) {
    for (const p of positions) {
      for (let v = 0; v < vocab; v++) max = Math.max(max, Math.abs(got[(b * gotSeq + p - offset) * vocab + v]! - want[k++]!));
    }
  }
  expect(k).toBe(want.length);
  return max;
}

async function open(file: string) {
  const session = await ort.InferenceSession.create(path.join(FIX, file), { intraOpNumThreads: 1 });
  const plan = planLmInputs(sessionDecls(session.inputMetadata), sessionDecls(session.outputMetadata));
  return { session, plan };
}

describe.each([
  ["model.onnx", 1e-4],
  ["model-ext.onnx", 1e-4],
  ["model-fp16.onnx", 0.1],
  ["genai.onnx", 1e-4],
])("%s under ONNX Runtime", (file, tol) => {
  it("recognises every declared input and scores with an empty past like torch", async () => {
    const { session, plan } = await open(file);
    expect(plan.attentionMask?.name).toBe("attention_mask");
    expect(plan.positionIds?.name).toBe(file.startsWith("genai") ? undefined : "position_ids");
    expect(plan.layers.map((l) => [l.key.name, l.value.name, l.key.present])).toEqual([
      ["past_key_values.0.key", "past_key_values.0.value", "present.0.key"],
      ["past_key_values.1.key", "past_key_values.1.value", "present.1.key"],
    ]);
    expect(plan.canDecode).toBe(true);
    const c = ref.cases[0]!;
    const feeds = buildLmFeeds(plan, c.input_ids);
    expect(feeds["past_key_values.0.key"]!.dims).toEqual([2, 2, 0, 16]);
    expect(Object.keys(feeds).sort()).toEqual([...session.inputNames].sort());
    const out = await session.run(toOrtLmFeeds(ORT, feeds));
    const vocab = out.logits!.dims[2]!;
    expect(maxDiff(logitsOf(out.logits!), c.input_ids[0]!.length, 0, c, vocab)).toBeLessThan(tol);
  });

  it("decodes with present fed back as past like torch's full-sequence logits", async () => {
    const { session, plan } = await open(file);
    const c = ref.cases[3]!; // [1, 128]: 120 tokens, then 8 with the cache
    const rows = c.input_ids;
    const first = await session.run(
      toOrtLmFeeds(
        ORT,
        buildLmFeeds(
          plan,
          rows.map((r) => r.slice(0, c.prefix)),
        ),
      ),
    );
    const past = presentToPast(plan, first);
    expect(past.get("past_key_values.1.value")!.dims).toEqual([1, 2, c.prefix, 16]);
    const second = await session.run(
      toOrtLmFeeds(
        ORT,
        buildLmFeeds(
          plan,
          rows.map((r) => r.slice(c.prefix)),
          c.prefix,
          past,
        ),
      ),
    );
    const vocab = second.logits!.dims[2]!;
    expect(second.logits!.dims[1]).toBe(128 - c.prefix);
    expect(maxDiff(logitsOf(second.logits!), 128 - c.prefix, c.prefix, c, vocab)).toBeLessThan(tol);
  });
});

describe("planLmInputs", () => {
  const base: LmValueDecl[] = [
    { name: "input_ids", type: "int64", shape: ["batch", "seq"] },
    { name: "attention_mask", type: "int64", shape: ["batch", "total"] },
  ];
  const kv = (name: string, type = "float32", shape: LmValueDecl["shape"] = ["batch", 4, "past", 8]): LmValueDecl => ({ name, type, shape });

  it("names exactly the input it cannot fill, with its type and shape", () => {
    const inputs = [...base, { name: "pixel_values", type: "float32", shape: ["batch", 3, 224, 224] }];
    expect(() => planLmInputs(inputs)).toThrow(
      /cannot fill model input "pixel_values" \(float32 \[batch, 3, 224, 224\]\): not token ids, an attention mask, position ids or a past key\/value/,
    );
  });

  it("says which half of a layer's cache is missing", () => {
    expect(() => planLmInputs([...base, kv("past_key_values.0.key")])).toThrow(/"past_key_values.0.key": layer 0 has a past key but no matching past value/);
  });

  it("refuses a past whose fixed sizes are not declared", () => {
    expect(() => planLmInputs([...base, kv("past.0.key", "float32", ["a", "b", "c", 8]), kv("past.0.value")])).toThrow(
      /cannot fill model input "past.0.key" .*cannot tell its batch and past-length axes/,
    );
    expect(() => planLmInputs([...base, kv("past.0.key", "int64"), kv("past.0.value")])).toThrow(/"past.0.key" .* must be float32 or float16/);
  });

  it("finds the past-length axis by its name or by elimination (BNSH and BSNH)", () => {
    const p = planLmInputs([
      ...base,
      kv("past_key_0", "float16", ["batch_size", "past_seq", 4, 8]),
      kv("past_value_0", "float16", [undefined, 4, undefined, 8]),
    ]);
    expect(p.layers[0]!.key).toMatchObject({ batchAxis: 0, pastAxis: 1, type: "float16" });
    expect(p.layers[0]!.value).toMatchObject({ batchAxis: 0, pastAxis: 2 });
    const feeds = buildLmFeeds(p, [[1, 2, 3]]);
    expect(feeds["past_key_0"]!.dims).toEqual([1, 0, 4, 8]);
    expect(feeds["past_value_0"]!.dims).toEqual([1, 4, 0, 8]);
    expect(p.canDecode).toBe(false);
  });

  it("takes names from the config where the patterns miss them", () => {
    const inputs: LmValueDecl[] = [
      { name: "tokens", type: "int32", shape: ["b", "s"] },
      { name: "keep", type: "int64", shape: ["b", "t"] },
      { name: "where", type: "int64", shape: ["b", "s"] },
      kv("cache.0.k_in"),
      kv("cache.0.v_in"),
      { name: "temperature", type: "float32", shape: [1] },
    ];
    const outputs: LmValueDecl[] = [kv("cache.0.k_out"), kv("cache.0.v_out")];
    const p = planLmInputs(inputs, outputs, {
      input_ids: "tokens",
      attention_mask: "keep",
      position_ids: "where",
      past_key: "cache.{layer}.k_in",
      past_value: "cache.{layer}.v_in",
      present_key: "cache.{layer}.k_out",
      present_value: "cache.{layer}.v_out",
      constants: { temperature: 1 },
    });
    expect(p.canDecode).toBe(true);
    const feeds = buildLmFeeds(
      p,
      [[5, 6]],
      3,
      new Map([
        ["cache.0.k_in", "K"],
        ["cache.0.v_in", "V"],
      ]),
    );
    expect(feeds.keep).toMatchObject({ type: "int64", dims: [1, 5] });
    expect(Array.from((feeds.where as { data: BigInt64Array }).data)).toEqual([3n, 4n]);
    expect(feeds["tokens"]).toMatchObject({ type: "int32", dims: [1, 2] });
    expect(feeds["cache.0.k_in"]).toBe("K");
    expect(feeds["temperature"]).toMatchObject({ type: "float32", dims: [1] });
  });

  it("feeds an Optimum merged decoder's use_cache_branch and cache_position", () => {
    const p = planLmInputs([...base, { name: "use_cache_branch", type: "bool", shape: [1] }, { name: "cache_position", type: "int64", shape: ["seq"] }]);
    const f = buildLmFeeds(p, [[1, 2, 3]]);
    expect(Array.from((f.use_cache_branch as { data: Uint8Array }).data)).toEqual([0]);
    expect(Array.from((f.cache_position as { data: BigInt64Array }).data)).toEqual([0n, 1n, 2n]);
  });

  it.each([
    ["past_key_values.3.key", { layer: 3, kind: "key" }],
    ["past_key_values.3.value", { layer: 3, kind: "value" }],
    ["past_key_values.12.decoder.value", { layer: 12, kind: "value" }],
    ["past.0.k", { layer: 0, kind: "key" }],
    ["past_value_7", { layer: 7, kind: "value" }],
    ["past_3", undefined],
    ["input_ids", undefined],
  ])("parses %s", (name, want) => {
    expect(parseKvName(name, "past")).toEqual(want);
  });

  it("writes half-precision bits", () => {
    expect([0, 1, -2, 65504, 1e-8].map((v) => floatToHalf(v))).toEqual([0, 0x3c00, 0xc000, 0x7bff, 0]);
  });
});

describe("slidingWindows", () => {
  const ids = Array.from({ length: 300 }, (_, i) => i);

  it("with stride = length is the tiny LM's protocol: consecutive windows, tokens 1..n-1 of each", () => {
    const s = slidingWindows(ids, 128, 128);
    expect(s.windows.map((w) => [w.begin, w.ids.length, w.scoreFrom])).toEqual([
      [0, 128, 1],
      [128, 128, 1],
      [256, 44, 1],
    ]);
    expect(s.tokensScored).toBe(300 - 3);
  });

  it("with a shorter stride scores every token after the first exactly once, with context", () => {
    const s = slidingWindows(ids, 128, 64);
    const scored: number[] = [];
    for (const w of s.windows) for (let i = w.scoreFrom; i < w.ids.length; i++) scored.push(w.ids[i]!);
    expect(scored).toEqual(ids.slice(1));
    expect(s.tokensScored).toBe(299);
    expect(s.windows.slice(1).every((w) => w.scoreFrom >= 64)).toBe(true);
  });

  it("stops at maxWindows and says how many tokens it scored", () => {
    const s = slidingWindows(ids, 100, 50, 2);
    expect(s.windows.length).toBe(2);
    expect(s.tokensScored).toBe(99 + 50);
    expect(s.tokensCovered).toBe(150);
  });

  it("rejects a stride outside 1..length", () => {
    expect(() => slidingWindows(ids, 64, 65)).toThrow(/evaluation.stride must be an integer from 1 to sequence_length \(64\), got 65/);
  });
});

describe("lmInputsConfigSchema", () => {
  it.each([
    [{ past_key: "cache.{layer}.k" }, undefined],
    [{ past_key: "cache.k" }, /must contain "\{layer\}" once/],
    [{ attention_mask: "m", extra: 1 }, /Unrecognized key/],
    [{ constants: { temperature: 1, flag: true } }, undefined],
  ])("%j", (input, error) => {
    const r = lmInputsConfigSchema.safeParse(input);
    if (error) expect(r.success ? "" : r.error.issues.map((i) => i.message).join("; ")).toMatch(error);
    else expect(r.success).toBe(true);
  });
});

describe("the trained llama-kjv example (fp16 Optimum export)", () => {
  const file = path.resolve("examples/llama-kjv/model-fp16.onnx");
  it.skipIf(!existsSync(file))(
    "scores eval.txt through lm-inputs to torch's perplexity",
    async () => {
      const session = await ort.InferenceSession.create(file, { intraOpNumThreads: 1 });
      const plan = planLmInputs(sessionDecls(session.inputMetadata), sessionDecls(session.outputMetadata));
      const stats = JSON.parse(readFileSync(path.resolve("examples/llama-kjv/reference_logits.json"), "utf8")) as { val_loss: number };
      const ids = (JSON.parse(readFileSync(path.resolve("examples/tiny-lm/eval_ids.json"), "utf8")) as { eval: number[] }).eval;
      const { windows, tokensScored } = slidingWindows(ids, 128, 128);
      let nll = 0;
      for (const w of windows) {
        const out = await session.run(toOrtLmFeeds(ORT, buildLmFeeds(plan, [w.ids])));
        const l = logitsOf(out.logits!);
        const v = out.logits!.dims[2]!;
        for (let i = w.scoreFrom; i < w.ids.length; i++) {
          let max = -Infinity;
          for (let j = 0; j < v; j++) max = Math.max(max, l[(i - 1) * v + j]!);
          let sum = 0;
          for (let j = 0; j < v; j++) sum += Math.exp(l[(i - 1) * v + j]! - max);
          nll += Math.log(sum) + max - l[(i - 1) * v + w.ids[i]!]!;
        }
      }
      expect(tokensScored).toBe(ids.length - windows.length);
      expect(Math.abs(nll / tokensScored - stats.val_loss)).toBeLessThan(5e-3);
    },
    120_000,
  );
});
