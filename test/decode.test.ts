// Decode measurement on the small Llama fixtures: greedy generation with the KV cache must equal generation
// that re-reads the whole sequence each step, timings are consistent, and the records carry the rule keys.
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import ort from "onnxruntime-node";
import {
  compareGenerations,
  decodeMetricRecords,
  decodeRoundsSession,
  decodeSlowdownOf,
  lastTokenArgmax,
  measureDecode,
  measureDecodeSession,
  measureDecodeSlowdown,
} from "../src/measure/decode.js";
import { makeNode, makeValueInfo, parseModel, saveModel, DataType } from "../src/onnx/model.js";
import { buildLmFeeds, planLmInputs, sessionDecls, toOrtLmFeeds } from "../src/tasks/lm-inputs.js";
import type { Ort } from "../src/runtime/ort.js";

const ORT = ort as unknown as Ort;
const FIX = path.resolve("test/fixtures/llm");
const PROMPTS = [
  [11, 400, 23, 5, 77, 301, 9, 150],
  [3, 3, 3, 3, 200, 201, 202, 203],
];
const D = 12;

async function session(file: string) {
  return ort.InferenceSession.create(path.join(FIX, file), { intraOpNumThreads: 1 });
}

/** Greedy generation without a cache: every step runs the whole sequence with an empty past. */
async function generateNoCache(s: ort.InferenceSession, prompt: number[], steps: number): Promise<number[]> {
  const plan = planLmInputs(sessionDecls(s.inputMetadata), sessionDecls(s.outputMetadata));
  const seq = [...prompt];
  const out: number[] = [];
  for (let i = 0; i <= steps; i++) {
    const r = await s.run(toOrtLmFeeds(ORT, buildLmFeeds(plan, [seq])));
    const t = lastTokenArgmax(r.logits!);
    out.push(t);
    seq.push(t);
  }
  return out;
}

describe.each(["model.onnx", "genai.onnx", "model-fp16.onnx"])("decode on %s", (file) => {
  it("generates with the KV cache exactly what full re-reads generate, and times every step", async () => {
    const s = await session(file);
    const m = await measureDecodeSession(ORT, s, { prompts: PROMPTS, decodeTokens: D, threads: 1 });
    expect(m.generated.length).toBe(2);
    for (let p = 0; p < PROMPTS.length; p++) {
      expect(m.generated[p]).toEqual(await generateNoCache(s, PROMPTS[p]!, D));
    }
    expect(m.generated[0]!.length).toBe(D + 1);
    expect(m.ttftMs.length).toBe(2);
    expect(m.stepMs.length).toBe(2 * D);
    expect(m.stepP95Ms).toBeGreaterThanOrEqual(m.stepP50Ms);
    expect(m.tokensPerSecond).toBeCloseTo((2 * D * 1000) / m.stepMs.reduce((a, b) => a + b, 0), 6);
    expect(m.peakRssBytes).toBeGreaterThan(10 * 1024 * 1024);
    expect(m.memoryScope).toBe("in-process");
    expect(m.logitsType).toBe(file.includes("fp16") ? "float16" : "float32");
  });
});

describe("decode measurement", () => {
  it("refuses a model without a KV cache, saying what is missing", async () => {
    const s = await ort.InferenceSession.create(path.resolve("examples/tiny-lm/model.onnx"));
    await expect(measureDecodeSession(ORT, s, { prompts: PROMPTS, decodeTokens: 2, threads: 1 })).rejects.toThrow(
      /needs past_key_values.\* inputs with matching present.\* outputs; this model has no past inputs/,
    );
  });

  it("finds where two greedy generations first diverge", () => {
    const d = compareGenerations(
      [
        [1, 2, 3, 4],
        [5, 6, 7],
      ],
      [
        [1, 2, 9, 4],
        [5, 6, 7],
      ],
    );
    expect(d.map((x) => [x.firstDivergence, x.compared])).toEqual([
      [2, 4],
      [undefined, 3],
    ]);
  });

  it("compares float32 and float16 generations and emits records with the decode rule keys", async () => {
    const f = await measureDecodeSession(ORT, await session("model.onnx"), { prompts: PROMPTS, decodeTokens: D, threads: 1 });
    const q = await measureDecodeSession(ORT, await session("model-fp16.onnx"), { prompts: PROMPTS, decodeTokens: D, threads: 1 });
    const div = compareGenerations(f.generated, q.generated);
    expect(div.every((x) => x.compared === D + 1)).toBe(true);
    const records = decodeMetricRecords(f, q, PROMPTS[0]!.length, D);
    const byKey = Object.fromEntries(records.map((r) => [r.key, r]));
    expect(Object.keys(byKey)).toEqual(["ttft_ms", "decode_ms_per_token_p50", "decode_ms_per_token_p95", "decode_tokens_per_second", "decode_peak_rss"]);
    expect(byKey.ttft_ms!.rules).toEqual(["max_time_to_first_token_ms"]);
    expect(byKey.decode_ms_per_token_p50!.rules).toEqual(["max_decode_ms_per_token"]);
    // The slowdown is its own record from per-round ratios, with the interval of their median in its note.
    const rounds = await decodeRoundsSession(
      ORT,
      [await session("model.onnx"), await session("model-fp16.onnx")],
      { prompts: PROMPTS, decodeTokens: 4, threads: 1 },
      6,
    );
    expect(rounds.map((r) => r.length)).toEqual([6, 6]);
    const slowdown = decodeSlowdownOf(rounds[0]!, rounds[1]!, true);
    const withRatio = Object.fromEntries(decodeMetricRecords(f, q, PROMPTS[0]!.length, D, slowdown).map((r) => [r.key, r]));
    expect(withRatio.decode_slowdown_vs_float).toMatchObject({
      quantized: slowdown.ratioP50,
      rules: ["max_decode_slowdown_vs_float"],
      raw: { quantized: slowdown.ratioPerRound },
    });
    expect(withRatio.decode_slowdown_vs_float!.note).toMatch(/^median of 6 interleaved rounds, 96\.9% interval \d+\.\d{3}-\d+\.\d{3}x$/);
    expect(byKey.decode_tokens_per_second).toMatchObject({ direction: "higher", rules: ["min_decode_tokens_per_second"], quantized: q.tokensPerSecond });
  });

  const child = path.resolve("lib/measure/decode-child.js");
  it.skipIf(!existsSync(child))("measures in a child process of its own (needs `npm run build`)", async () => {
    const m = await measureDecode(path.join(FIX, "genai.onnx"), { prompts: PROMPTS, decodeTokens: 4, threads: 1 });
    expect(m.memoryScope).toBe("child");
    expect(m.generated[0]).toEqual(await generateNoCache(await session("genai.onnx"), PROMPTS[0]!, 4));
    expect(m.loadMs).toBeGreaterThan(0);
  });

  it.skipIf(!existsSync(child))("feeds constant inputs on every decode call (evaluation.constant_inputs), in the child too", async () => {
    // The fixture with one more input, a logit scale the model multiplies its logits by: decoding must feed it.
    const { proto } = await parseModel(readFileSync(path.join(FIX, "model.onnx")), "model.onnx");
    const g = proto.graph!;
    const producer = g.node.find((n) => n.output.includes("logits"))!;
    producer.output[producer.output.indexOf("logits")] = "logits_unscaled";
    g.node.push(makeNode("Mul", ["logits_unscaled", "logit_scale"], ["logits"], [], { name: "ScaleLogits" }));
    g.input.push(makeValueInfo("logit_scale", DataType.FLOAT, [1]));
    const dir = await mkdtemp(path.join(os.tmpdir(), "qg-decode-const-"));
    const file = path.join(dir, "scaled.onnx");
    await saveModel(proto, file);
    const settings = { prompts: PROMPTS, decodeTokens: 4, threads: 1 };
    await expect(measureDecode(file, settings)).rejects.toThrow(/cannot fill model input "logit_scale" \(float32 \[1\]\)/);
    const constants = { logit_scale: { type: "float32" as const, dims: [1], data: Float32Array.from([1]) } };
    const m = await measureDecode(file, { ...settings, constants });
    expect(m.generated).toEqual([
      await generateNoCache(await session("model.onnx"), PROMPTS[0]!, 4),
      await generateNoCache(await session("model.onnx"), PROMPTS[1]!, 4),
    ]);
    // a negative scale flips the argmax: the value really reaches the model on every call
    const flipped = await measureDecode(file, { ...settings, constants: { logit_scale: { ...constants.logit_scale, data: Float32Array.from([-1]) } } });
    expect(flipped.generated[0]).not.toEqual(m.generated[0]);
    const rounds = await measureDecodeSlowdown(file, file, { ...settings, constants }, 3, true);
    expect(rounds.ratioPerRound).toHaveLength(3);
    await rm(dir, { recursive: true, force: true });
  });
});
