// Models with external data: tensors stay in their files until a stage reads them (per weight), and the
// quantized model is written with external data when the input had it or when it would pass protobuf's limit.
import { copyFileSync, existsSync, mkdtempSync, openSync, closeSync, rmSync, statSync, writeFileSync, writeSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { ModelProtoSchema } from "onnx-buf";
import ort from "onnxruntime-node";
import { afterAll, describe, expect, it } from "vitest";
import { recipeSchema, type WeightFormat } from "../src/config/schema.js";
import { emitModel, type ExecForm } from "../src/emit/index.js";
import {
  allInitializers,
  isExternalTensor,
  loadModel,
  rawDataLength,
  saveModelDetailed,
  serializeModel,
  tensorBytes,
  tensorToFloat32,
  type LoadedModel,
} from "../src/onnx/model.js";
import { findWeights } from "../src/onnx/weights.js";
import { checkFiniteWeights } from "../src/onnx/validate.js";
import { quantizeBlockwiseRef } from "../src/quantize/blockwise.js";
import { planWeights, quantizeWeights } from "../src/quantize/index.js";

const FIXTURES = path.join(import.meta.dirname, "fixtures", "llm");
const tmp = mkdtempSync(path.join(os.tmpdir(), "quantgate-external-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The fixture with external data, copied to a folder of its own (tests change or remove the data file). */
function fixtureCopy(name: string): string {
  const dest = path.join(mkdtempSync(path.join(tmp, `${name}-`)), "model-ext.onnx");
  copyFileSync(path.join(FIXTURES, "model-ext.onnx"), dest);
  copyFileSync(path.join(FIXTURES, "model-ext.onnx.data"), `${dest}.data`);
  return dest;
}

const recipe = recipeSchema.parse({ format: "int4", block_size: 32, min_elements: 16 });
const forms = new Map<WeightFormat, ExecForm>([["int4", "matmulnbits"]]);

function quantizeAndEmit(model: LoadedModel) {
  const plans = planWeights(findWeights(model.graph, recipe).weights, recipe);
  const weights = quantizeWeights(plans, { quantize: (wT, n, k, spec) => quantizeBlockwiseRef(wT, n, k, spec), stats: undefined, recipe, threads: 1 });
  return emitModel(model.proto, weights, forms, 0);
}

async function logits(file: string): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(file, { intraOpNumThreads: 1 });
  try {
    const feeds: Record<string, ort.Tensor> = {};
    for (const [i, name] of s.inputNames.entries()) {
      const meta = s.inputMetadata[i] as unknown as { shape: readonly (number | string)[] };
      if (name === "input_ids") feeds[name] = new ort.Tensor("int64", BigInt64Array.from([1n, 5n, 9n, 3n, 7n, 2n]), [1, 6]);
      else if (name === "attention_mask") feeds[name] = new ort.Tensor("int64", new BigInt64Array(6).fill(1n), [1, 6]);
      else if (name === "position_ids") feeds[name] = new ort.Tensor("int64", BigInt64Array.from([0n, 1n, 2n, 3n, 4n, 5n]), [1, 6]);
      else {
        // past key/value: [batch, kv heads, 0, head size]
        const dims = meta.shape.map((d, j) => (j === 0 ? 1 : j === 2 ? 0 : Number(d)));
        feeds[name] = new ort.Tensor("float32", new Float32Array(0), dims);
      }
    }
    return (await s.run(feeds, ["logits"])).logits!.data as Float32Array;
  } finally {
    await s.release();
  }
}

describe("external data", () => {
  it("keeps external tensors as file references until a stage reads them", async () => {
    const file = fixtureCopy("lazy");
    const model = await loadModel(file);
    expect(model.externalTensors).toBeGreaterThan(0);
    expect(model.sizeBytes).toBe(statSync(file).size + statSync(`${file}.data`).size);
    const external = [...allInitializers(model.graph)].filter(isExternalTensor);
    expect(external.length).toBe(model.externalTensors);
    // Nothing was read: no external tensor holds data in memory.
    for (const t of external) expect(t.rawData.length).toBe(0);
    const big = external.reduce((a, t) => (rawDataLength(t) > rawDataLength(a) ? t : a));
    const before = tensorToFloat32(big);
    // Overwrite the tensor's bytes in the file after load: an on-demand read sees the new values.
    const { offset } = Object.fromEntries(big.externalData.map((e) => [e.key, e.value]));
    const fd = openSync(`${file}.data`, "r+");
    writeSync(fd, new Float32Array([1234.5, -2]), 0, 8, Number(offset));
    closeSync(fd);
    const after = tensorToFloat32(big);
    expect([after[0], after[1]]).toEqual([1234.5, -2]);
    expect(after.subarray(2)).toEqual(before.subarray(2));
    expect(big.rawData.length).toBe(0);
    // Weight discovery does not read them either; the finiteness check reads each weight once, from the file.
    const discovery = findWeights(model.graph, recipe);
    expect(discovery.weights.length).toBeGreaterThan(0);
    const poisoned = discovery.weights.find((w) => w.name === big.name);
    if (poisoned) {
      const fd2 = openSync(`${file}.data`, "r+");
      writeSync(fd2, new Float32Array([NaN]), 0, 4, Number(offset));
      closeSync(fd2);
      expect(() => checkFiniteWeights(file, discovery.weights)).toThrow(/NaN at element/);
    }
    // A data file gone after load is named when a tensor is read.
    rmSync(`${file}.data`);
    expect(() => tensorBytes(big)).toThrow(/cannot read external data/);
  });

  it("quantizes and emits the same model from external data as from the inline copy, and writes it with external data", async () => {
    const file = fixtureCopy("emit");
    const inlineOut = path.join(path.dirname(file), "inline.quantized.onnx");
    const extOut = path.join(path.dirname(file), "ext.quantized.onnx");
    const inline = await loadModel(file, { inlineExternal: true });
    expect(inline.externalTensors).toBe(0);
    const inlineSaved = await saveModelDetailed(quantizeAndEmit(inline).proto, inlineOut);
    expect(inlineSaved.dataFile).toBeUndefined();
    expect(existsSync(`${inlineOut}.data`)).toBe(false);

    const lazy = await loadModel(file);
    const emitted = quantizeAndEmit(lazy);
    const extSaved = await saveModelDetailed(emitted.proto, extOut);
    expect(extSaved.dataFile).toBe(`${extOut}.data`);
    expect(extSaved.externalReason).toMatch(/input model keeps \d+ tensors in external data/);
    expect(extSaved.bytes).toBe(statSync(extOut).size + statSync(`${extOut}.data`).size);
    // The emitted proto is left as it was (its tensors still read from the input's data file).
    expect([...allInitializers(emitted.proto.graph!)].some(isExternalTensor)).toBe(true);

    // Same model: the external output read back in full serializes to the inline output's bytes.
    const back = await loadModel(extOut, { inlineExternal: true });
    const inlineBack = await loadModel(inlineOut);
    expect(Buffer.compare(Buffer.from(serializeModel(back.proto)), Buffer.from(serializeModel(inlineBack.proto)))).toBe(0);
    // In-memory serialization of the lazily emitted proto (assembled field by field) is the same message.
    const canonical = (bytes: Uint8Array): Buffer => Buffer.from(toBinary(ModelProtoSchema, fromBinary(ModelProtoSchema, bytes)));
    const assembled = serializeModel(emitted.proto);
    expect(Buffer.compare(canonical(assembled), Buffer.from(serializeModel(inlineBack.proto)))).toBe(0);
    expect(Buffer.compare(canonical(serializeModel(lazy.proto)), Buffer.from(serializeModel(inline.proto)))).toBe(0);
    const s = await ort.InferenceSession.create(assembled);
    await s.release();

    // Both load in ONNX Runtime from their files and compute the same logits.
    const [a, b] = [await logits(inlineOut), await logits(extOut)];
    expect(a.length).toBeGreaterThan(0);
    expect(b).toEqual(a);
  });

  it("writes a model over the size limit with external data (limit lowered for the test)", async () => {
    const model = await loadModel(path.join(FIXTURES, "model.onnx"));
    expect(model.externalTensors).toBe(0);
    const out = path.join(tmp, "limit.onnx");
    const under = await saveModelDetailed(model.proto, out, { limitBytes: 10 * 2 ** 20 });
    expect(under.dataFile).toBeUndefined();
    const over = await saveModelDetailed(model.proto, out, { limitBytes: 200_000 });
    expect(over.dataFile).toBe(`${out}.data`);
    expect(over.externalReason).toMatch(/exceeds the 200000-byte limit/);
    expect(statSync(out).size).toBeLessThan(200_000);
    // Unchanged proto, and the same logits as the model itself.
    expect([...allInitializers(model.graph)].some((t) => t.externalData.length > 0)).toBe(false);
    expect(await logits(out)).toEqual(await logits(path.join(FIXTURES, "model.onnx")));
    await expect(saveModelDetailed(model.proto, out, { limitBytes: 200_000, external: false })).rejects.toThrow(/2 GB limit/);
    // Written inline again: the stale data file is removed.
    await saveModelDetailed(model.proto, out);
    expect(existsSync(`${out}.data`)).toBe(false);
  });
});

describe("the gate on a model with external data", () => {
  it("runs end to end: the quantized model is written with external data and evaluates as the inline model does", { timeout: 180_000 }, async () => {
    const { parseConfig } = await import("../src/config/load.js");
    const { runGate } = await import("../src/pipeline.js");
    const { loadOrt } = await import("../src/runtime/ort.js");
    const ROOT = path.join(import.meta.dirname, "..");
    const run = async (model: string) => {
      const dir = mkdtempSync(path.join(tmp, "gate-"));
      const text = `allow_outside_workspace: true
model: ${model}
output_dir: out
recipe: { format: int4, block_size: 32, accuracy_level: 0 }
evaluation:
  task: language-modeling
  dataset: ${path.join(ROOT, "examples/tiny-lm/eval.txt")}
  tokenizer: ${path.join(ROOT, "examples/tiny-lm/tokenizer.json")}
  sequence_length: 32
  samples: 4
  batch_size: 2
measure: { threads: 1, warmup: 1, runs: 2, kernel_benchmark: false, memory: false, decode: { prompts: 0 } }
`;
      const file = path.join(dir, "quantgate.yml");
      writeFileSync(file, text);
      return runGate(parseConfig(text, file), { ort: await loadOrt() });
    };
    const ext = await run(fixtureCopy("gate"));
    const inline = await run(path.join(FIXTURES, "model.onnx"));
    for (const r of [ext, inline]) expect(r.report.stages.filter((s) => s.status === "error")).toEqual([]);
    const q = ext.quantizedModelPath!;
    expect(existsSync(`${q}.data`)).toBe(true);
    expect(ext.report.quantized!.sizeBytes).toBe(statSync(q).size + statSync(`${q}.data`).size);
    expect(ext.report.warnings.some((w) => /written with external data .* the input model keeps \d+ tensors in external data/.test(w))).toBe(true);
    expect(existsSync(`${inline.quantizedModelPath!}.data`)).toBe(false);
    // No candidate files left behind.
    const { readdirSync } = await import("node:fs");
    expect(readdirSync(path.dirname(q)).filter((f) => f.includes(".tmp."))).toEqual([]);
    // Same weights, same quantized tensors: the same evaluation.
    const metrics = (r: typeof ext) =>
      Object.fromEntries(
        r.report.metrics.filter((m) => ["perplexity", "kl_mean", "top1_agreement"].includes(m.key)).map((m) => [m.key, [m.float, m.quantized]]),
      );
    expect(metrics(ext)).toEqual(metrics(inline));
    expect(Object.keys(metrics(ext))).toHaveLength(3);
  });
});
