// The gate on an LLM export end to end (test/fixtures/llm, random weights): every input fed, the tied embedding
// quantized once (GatherBlockQuantized + MatMulNBits on one packed copy), the model loads and shrinks.
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fromBinary } from "@bufbuild/protobuf";
import { ModelProtoSchema } from "onnx-buf";
import { describe, expect, it } from "vitest";
import { parseConfig } from "../src/config/load.js";
import { runGate } from "../src/pipeline.js";
import { renderMarkdown } from "../src/report/markdown.js";
import { createSession, loadOrt } from "../src/runtime/ort.js";

const ROOT = path.join(import.meta.dirname, "..");
const FIXTURES = path.join(ROOT, "test", "fixtures", "llm");

async function config(model: string, recipe: string, extra = "", evaluation = ""): Promise<ReturnType<typeof parseConfig>> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "qg-llm-"));
  const text = `allow_outside_workspace: true
model: ${path.join(FIXTURES, model)}
output_dir: out
recipe: { ${recipe} }
evaluation:
  task: language-modeling
  dataset: ${path.join(ROOT, "examples/tiny-lm/eval.txt")}
  tokenizer: ${path.join(ROOT, "examples/tiny-lm/tokenizer.json")}
  sequence_length: 32
  samples: 4
  batch_size: 2
${evaluation}measure:
  threads: 1
  warmup: 1
  runs: 3
  kernel_benchmark: false
${extra}`;
  const file = path.join(dir, "quantgate.yml");
  await writeFile(file, text);
  return parseConfig(text, file);
}

describe("the gate on an LLM export", () => {
  it("quantizes the tied embedding once; the model loads and shrinks", { timeout: 120_000 }, async () => {
    const ort = await loadOrt();
    const run = await runGate(
      await config(
        "model.onnx",
        "format: int4, block_size: 32, accuracy_level: 0",
        "  decode: { prompt_tokens: 8, decode_tokens: 4, prompts: 2 }\ngate:\n  max_decode_ms_per_token: 1000\n  max_decode_slowdown_vs_float: 100\n  min_decode_tokens_per_second: 0.1\n  max_time_to_first_token_ms: 10000\n",
      ),
      { ort },
    );
    const r = run.report;
    expect(r.stages.filter((s) => s.status === "error")).toEqual([]);
    const tied = r.weights.quantized.filter((l) => l.name === "model.embed_tokens.weight");
    expect(tied).toHaveLength(1);
    expect(tied[0]!.notes.join(" ")).toMatch(/quantized once/);
    // which activation type each MatMulNBits ran with is in the report (float32 model: float32)
    expect(tied[0]!.notes).toContain("MatMulNBits with float32 activations (the LM head)");
    expect(r.weights.quantized.filter((l) => l.form === "matmulnbits" && l.notes.includes("MatMulNBits with float32 activations"))).toHaveLength(14);
    expect(tied[0]!.relativeError).toBeGreaterThan(0);
    expect(tied[0]!.relativeError).toBeLessThan(0.2);
    expect(r.weights.skipped.some((s) => s.name === "model.embed_tokens.weight")).toBe(false);
    const model = fromBinary(ModelProtoSchema, await readFile(run.quantizedModelPath!));
    expect(model.graph!.initializer.some((t) => t.name === "model.embed_tokens.weight")).toBe(false);
    expect(model.graph!.node.filter((n) => n.opType === "GatherBlockQuantized")).toHaveLength(1);
    const s = await createSession(ort.ort, run.quantizedModelPath!, 1);
    await s.release();
    expect(r.quantized!.sizeBytes).toBeLessThan(r.float.sizeBytes * 0.6);
    // the embedding (512 x 64 fp32, 131,072 bytes) stored once at int4: over 100 kB smaller than kept float
    const kept = await runGate(await config("model.onnx", "format: int4, block_size: 32, accuracy_level: 0, tied_embedding: float"), { ort });
    expect(kept.report.weights.quantized.some((l) => l.name === "model.embed_tokens.weight")).toBe(false);
    expect(kept.report.quantized!.sizeBytes - r.quantized!.sizeBytes).toBeGreaterThan(100_000);
    // The tied table is counted once in the stored bytes and bits per weight: the stored bytes are exactly the bytes of
    // the initializers the emit added, and the file with the tied table quantized is predicted from the file with it kept
    // float (131,072 float bytes) and the two runs' stored BPW x weights within 1% (the rest is node protobuf overhead).
    const st = r.storage!;
    const floatModel = fromBinary(ModelProtoSchema, await readFile(path.join(FIXTURES, "model.onnx")));
    const before = new Set(floatModel.graph!.initializer.map((t) => t.name));
    const added = model.graph!.initializer.filter((t) => !before.has(t.name));
    expect(st.storedBytes).toBe(added.reduce((a, t) => a + t.rawData.length + t.int64Data.length * 8 + t.floatData.length * 4 + t.int32Data.length * 4, 0));
    expect(st.quantizedWeights).toBe(r.weights.quantized.reduce((a, l) => a + l.k * l.n, 0));
    const keptSt = kept.report.storage!;
    expect(st.quantizedWeights - keptSt.quantizedWeights).toBe(512 * 64);
    const storedByBpw = (x: typeof st): number => (x.storedBitsPerWeight * x.quantizedWeights) / 8;
    const predictedSize = kept.report.quantized!.sizeBytes - 512 * 64 * 4 + (storedByBpw(st) - storedByBpw(keptSt));
    expect(Math.abs(predictedSize - r.quantized!.sizeBytes) / r.quantized!.sizeBytes).toBeLessThan(0.01);
    const m = Object.fromEntries(r.metrics.map((x) => [x.key, x]));
    expect(m.perplexity!.quantized).toBeGreaterThan(0);
    expect(m.kl_mean!.quantized).toBeGreaterThan(0);
    // KV-cache I/O: decode measured for both models, judged by the decode rules
    for (const key of ["ttft_ms", "decode_ms_per_token_p50", "decode_tokens_per_second"]) {
      expect(m[key]!.float, key).toBeGreaterThan(0);
      expect(m[key]!.quantized, key).toBeGreaterThan(0);
    }
    const decode = (r.evaluation!.details as { llmDecode: { firstDivergence: { compared: number }[] } }).llmDecode;
    expect(decode.firstDivergence).toHaveLength(2);
    expect(decode.firstDivergence[0]!.compared).toBe(5);
    expect(renderMarkdown(r)).toMatch(/Greedy decode, float vs quantized \(2 prompts of 8 tokens, 4 steps\)[\s\S]*\| 0 \| (none in 5 tokens|token \d of 5) \|/);
    const judged = r.gate.rules.filter((x) => x.rule.includes("decode") || x.rule.includes("first_token"));
    expect(judged.map((x) => x.rule).sort()).toEqual([
      "max_decode_ms_per_token",
      "max_decode_slowdown_vs_float",
      "max_time_to_first_token_ms",
      "min_decode_tokens_per_second",
    ]);
    for (const x of judged) expect(x.status, x.message).toBe("pass");
    const slowdown = judged.find((x) => x.rule === "max_decode_slowdown_vs_float")!;
    // judged on the per-round ratios of interleaved rounds (measure.runs of them), their interval in the message
    expect(m.decode_slowdown_vs_float!.raw!.quantized).toHaveLength(3);
    expect(slowdown.observed).toBe(m.decode_slowdown_vs_float!.quantized);
    expect(slowdown.message).toMatch(/interval \d+\.\d{3}-\d+\.\d{3}x/);
    expect(renderMarkdown(r)).toMatch(/Decode ms\/token, quantized\/float <sub>median of 3 interleaved rounds, 75% interval/);
  });

  it("keeps the tied embedding float where the shared form cannot hold it, and says why", { timeout: 120_000 }, async () => {
    const ort = await loadOrt();
    // hidden size 64 is not a multiple of block 128
    const wide = await runGate(await config("model.onnx", "format: int4, block_size: 128, accuracy_level: 0"), { ort });
    expect(wide.report.weights.quantized.some((l) => l.name === "model.embed_tokens.weight")).toBe(false);
    const skipped = wide.report.weights.skipped.find((x) => x.name === "model.embed_tokens.weight");
    expect(skipped?.reason).toMatch(/tied embedding kept float: hidden size 64 is not a multiple of the block size 128/);
  });

  it("runs GPTQ on the tied table with the LM head input's calibration, and says so", { timeout: 120_000 }, async () => {
    const ort = await loadOrt();
    const calib = `  calibration: ${path.join(ROOT, "examples/tiny-lm/calib.txt")}\n  calibration_samples: 2\n`;
    const run = await runGate(await config("model.onnx", "format: int4, block_size: 32, algorithm: gptq, accuracy_level: 0", "", calib), { ort });
    const tied = run.report.weights.quantized.find((l) => l.name === "model.embed_tokens.weight")!;
    expect(tied.algorithm).toBe("gptq");
    expect(tied.notes.join(" ")).toMatch(/gptq on the LM head input's Hessian \(\d+ rows of "[^"]+"\)/);
    const awq = await runGate(await config("model.onnx", "format: int4, block_size: 32, algorithm: awq, accuracy_level: 0", "", calib), { ort });
    const tiedAwq = awq.report.weights.quantized.find((l) => l.name === "model.embed_tokens.weight")!;
    expect(tiedAwq.algorithm).toBe("rtn");
    expect(awq.report.warnings.join(" ")).toMatch(/tied embedding model.embed_tokens.weight: rtn instead of the recipe's awq/);
  });

  it("runs an fp16 export's projections on MatMulNBits with float16 activations, and says so", { timeout: 120_000 }, async () => {
    const ort = await loadOrt();
    const run = await runGate(await config("model-fp16.onnx", "format: int4, block_size: 32, accuracy_level: 0"), { ort });
    const q = run.report.weights.quantized;
    expect(q).toHaveLength(15);
    for (const l of q) {
      expect(l.form, l.name).toBe("matmulnbits");
      expect(l.notes.join(" "), l.name).toMatch(/MatMulNBits with float16 activations/);
    }
    const model = fromBinary(ModelProtoSchema, await readFile(run.quantizedModelPath!));
    const scales = new Map(model.graph!.initializer.map((t) => [t.name, t.dataType]));
    const nodes = model.graph!.node.filter((n) => n.opType === "MatMulNBits");
    expect(nodes).toHaveLength(15);
    expect(nodes.every((n) => scales.get(n.input[2]!) === 10)).toBe(true);
    const m = Object.fromEntries(run.report.metrics.map((x) => [x.key, x]));
    // the same codes as the fp32 export's int4 (float16 scales and arithmetic): KL of the same size
    const fp32 = await runGate(await config("model.onnx", "format: int4, block_size: 32, accuracy_level: 0"), { ort });
    const kl32 = fp32.report.metrics.find((x) => x.key === "kl_mean")!.quantized;
    expect(m.kl_mean!.quantized).toBeLessThan(kl32 * 1.25);
  });
});
