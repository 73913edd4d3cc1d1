// Conformance of quantize -> emit on one model and one recipe: the quantized model loads and runs in
// ONNX Runtime, every float weight is accounted for, the stored bits per weight match the file, and the
// outputs stay close to float. Used by test/conformance.test.ts and bench/conformance.mjs.
import { parseConfig } from "../config/load.js";
import { FORMATS, isIntFormat, type Recipe, type WeightFormat } from "../config/schema.js";
import type { ExecForm } from "./index.js";
import {
  allInitializers,
  cloneModel,
  DataType,
  elementCount,
  getAttr,
  halfToFloat,
  loadModel,
  serializeModel,
  tensorShape,
  valueInfoTensorType,
  type GraphProto,
  type ModelProto,
} from "../onnx/model.js";
import { findWeights } from "../onnx/weights.js";
import { quantizeBlockwiseRef, type BlockwiseSpec } from "../quantize/blockwise.js";
import { planWeights, quantizeWeights } from "../quantize/index.js";
import { planMixedPrecision } from "../quantize/mixed-plan.js";
import { createSession, type Ort, type OrtTensor, type Session } from "../runtime/ort.js";
import { gaussianSource } from "../quantize/algorithms/linalg.js";
import { emitChecked } from "./check.js";
import { storedBytesInFile } from "./stored.js";

export const CONFORMANCE_FORMATS = ["int8", "int4", "int3", "nf4", "mixed"] as const;
export type ConformanceFormat = (typeof CONFORMANCE_FORMATS)[number];

/**
 * Minimum mean per-sample cosine similarity of every output to float, per format. Small random-weight
 * models have no redundancy, so int3 loses more than it does on trained networks; these are floors
 * that a wrong emit (transposed, mis-scaled or mis-packed weights: cosine near 0) cannot pass.
 */
export const COSINE_TOLERANCE: Record<ConformanceFormat, number> = { int8: 0.999, int4: 0.98, int3: 0.93, nf4: 0.98, mixed: 0.93 };

const RECIPES: Record<ConformanceFormat, string> = {
  int8: "format: int8\n  block_size: 32\n  symmetric: true",
  int4: "format: int4\n  block_size: 32",
  int3: "format: int3\n  block_size: 32",
  nf4: "format: nf4\n  block_size: 64",
  // Half of the parameters (the least sensitive layers) in int3, the rest in int8: no calibration needed.
  mixed: "format: int4\n  block_size: 32\n  mixed: { target_bpw: 5, method: uniform, q_ratio: 0.5, low: int3, high: int8 }",
};

export function conformanceRecipe(format: ConformanceFormat): Recipe {
  return parseConfig(
    `model: m.onnx\nevaluation:\n  task: classification\n  dataset: d.jsonl\nrecipe:\n  ${RECIPES[format]}\n  min_elements: 1024\n`,
    "conformance.yml",
  ).recipe;
}

/** Every stored float tensor (initializers and Constant values, in every graph) with at least `minElements` elements. */
export function floatTensors(main: GraphProto, minElements: number): { name: string; elements: number; bytes: number }[] {
  const out: { name: string; elements: number; bytes: number }[] = [];
  const isFloat = (t: number): boolean => t === DataType.FLOAT || t === DataType.FLOAT16 || t === DataType.BFLOAT16 || t === DataType.DOUBLE;
  const width = (t: number): number => (t === DataType.DOUBLE ? 8 : t === DataType.FLOAT ? 4 : 2);
  for (const t of allInitializers(main)) {
    const n = elementCount(tensorShape(t));
    if (isFloat(t.dataType) && n >= minElements) out.push({ name: t.name, elements: n, bytes: n * width(t.dataType) });
  }
  const visit = (g: GraphProto): void => {
    for (const node of g.node) {
      const v = node.opType === "Constant" ? getAttr(node, "value")?.t : undefined;
      if (v && isFloat(v.dataType)) {
        const n = elementCount(tensorShape(v));
        if (n >= minElements) out.push({ name: node.output[0]!, elements: n, bytes: n * width(v.dataType) });
      }
      for (const a of node.attribute) [a.g, ...a.graphs].forEach((s) => s && visit(s));
    }
  };
  visit(main);
  return out;
}

/** Inputs for a model from its declared types and shapes: symbolic sizes become `batch`, integers stay small. */
export function generatedInputs(ort: Ort, proto: ModelProto, seed: number, batch = 2): Record<string, OrtTensor> {
  const g = gaussianSource(seed);
  const inits = new Set(proto.graph!.initializer.map((t) => t.name));
  const feeds: Record<string, OrtTensor> = {};
  for (const input of proto.graph!.input) {
    if (inits.has(input.name)) continue;
    const t = valueInfoTensorType(input);
    if (!t || input.type?.value.case !== "tensorType") throw new Error(`input "${input.name}" has no tensor type`);
    const dims = (input.type.value.value.shape?.dim ?? []).map((d) => (d.value.case === "dimValue" ? Number(d.value.value) : batch));
    const n = elementCount(dims);
    if (t.elemType === DataType.FLOAT)
      feeds[input.name] = new ort.Tensor(
        "float32",
        Float32Array.from({ length: n }, () => g()),
        dims,
      );
    else if (t.elemType === DataType.FLOAT16) {
      const v = Float32Array.from({ length: n }, () => g());
      feeds[input.name] = new ort.Tensor(
        "float16",
        Uint16Array.from(v, (x) => floatToHalfBits(x)),
        dims,
      );
    } else if (t.elemType === DataType.INT64)
      feeds[input.name] = new ort.Tensor(
        "int64",
        BigInt64Array.from({ length: n }, (_, i) => BigInt((i * 7 + seed) % 16)),
        dims,
      );
    else throw new Error(`input "${input.name}": element type ${t.elemType} is not generated`);
  }
  return feeds;
}

function floatToHalfBits(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer)[0]!;
  const sign = (u >>> 16) & 0x8000;
  const exp = ((u >>> 23) & 0xff) - 127 + 15;
  if (exp <= 0) return sign;
  if (exp >= 31) return sign | 0x7c00;
  return sign | (exp << 10) | ((u >>> 13) & 0x3ff);
}

export function outputValues(t: OrtTensor): Float64Array {
  if (t.type === "float16") {
    const d = t.data as Uint16Array;
    return Float64Array.from(d, (h) => halfToFloat(h));
  }
  return Float64Array.from(t.data as Float32Array);
}

/** Mean over samples (axis 0) of the cosine similarity of the flattened per-sample outputs. */
export function meanCosine(a: Float64Array, b: Float64Array, samples: number): number {
  const per = a.length / samples;
  let total = 0;
  for (let s = 0; s < samples; s++) {
    let dot = 0;
    let na = 0;
    let nb = 0;
    for (let i = s * per; i < (s + 1) * per; i++) {
      dot += a[i]! * b[i]!;
      na += a[i]! * a[i]!;
      nb += b[i]! * b[i]!;
    }
    total += na === 0 && nb === 0 ? 1 : dot / Math.sqrt(na * nb || 1e-300);
  }
  return total / samples;
}

export interface ConformanceResult {
  readonly model: string;
  readonly format: ConformanceFormat;
  /** The quantized model loads and runs in ONNX Runtime. */
  readonly loads: boolean;
  readonly error?: string;
  /** Float weights at or above min_elements, and their elements. */
  readonly floatTensors: number;
  readonly floatParams: number;
  readonly quantizedParams: number;
  readonly quantizedShare: number;
  readonly quantized: { name: string; form: string; format: string }[];
  readonly skipped: { name: string; reason: string }[];
  readonly alreadyQuantized: { name: string; bits: number }[];
  /** Float tensors in neither list, or listed more than once. */
  readonly unaccounted: string[];
  readonly duplicated: string[];
  /** Stored bits per quantized weight as the emit stage reports it, and as the file's tensors hold it. */
  readonly storedBitsPerWeight: number;
  readonly fileBitsPerWeight: number;
  /** (file size - float-free remainder) / reported stored bytes. */
  readonly fileGrowthRatio: number;
  readonly packedBitsPerWeight: number;
  readonly cosine: number;
  readonly minCosine: number;
  readonly notes: string[];
}

export interface ConformanceCache {
  floatOutputs?: Map<string, { outputs: Float64Array[]; feeds: Record<string, OrtTensor>; samples: number }>;
}

/** Every int format in the dequantizing subgraph and every table format in the lookup subgraph (the forms Conv and float16 consumers use). */
export const SUBGRAPH_FORMS: ReadonlyMap<WeightFormat, ExecForm> = new Map(
  FORMATS.map((f) => [f, isIntFormat(f) ? "dequant-subgraph" : "lookup-subgraph"] as [WeightFormat, ExecForm]),
);

/** Every int format as blocked DequantizeLinear where the model's opset has it (21+), else the dequantizing subgraph. */
export const DEQUANTIZELINEAR_FORMS: ReadonlyMap<WeightFormat, ExecForm> = new Map(
  FORMATS.map((f) => [f, isIntFormat(f) ? "dequantizelinear" : "lookup-subgraph"] as [WeightFormat, ExecForm]),
);

export async function runConformance(
  ort: Ort,
  modelPath: string,
  format: ConformanceFormat,
  cache: ConformanceCache = {},
  forms: ReadonlyMap<WeightFormat, ExecForm> = new Map(),
): Promise<ConformanceResult> {
  const name = modelPath.replace(/^.*\//, "").replace(/\.onnx$/, "");
  const model = await loadModel(modelPath);
  const recipe = conformanceRecipe(format);
  const discovery = findWeights(model.graph, recipe);
  let plans = planWeights(discovery.weights, recipe);
  if (recipe.mixed) plans = planMixedPrecision(plans, undefined, recipe.mixed).plans;
  const quantized = quantizeWeights(plans, {
    quantize: (w: Float32Array, n: number, k: number, spec: BlockwiseSpec) => quantizeBlockwiseRef(w, n, k, spec),
    stats: undefined,
    recipe,
    threads: 1,
  });
  const floats = floatTensors(model.graph, recipe.min_elements);
  const base = { model: name, format, floatTensors: floats.length, floatParams: floats.reduce((a, t) => a + t.elements, 0) };
  cache.floatOutputs ??= new Map();
  let ref = cache.floatOutputs.get(modelPath);
  if (!ref) {
    const s = await createSession(ort, modelPath, 1);
    const feeds = generatedInputs(ort, model.proto, 7);
    const out = await s.run(feeds);
    ref = { feeds, outputs: s.outputNames.map((o) => outputValues(out[o]!)), samples: 2 };
    await s.release();
    cache.floatOutputs.set(modelPath, ref);
  }
  let emitted;
  try {
    emitted = await emitChecked(ort, model.proto, quantized, forms, 0, discovery);
  } catch (err) {
    return {
      ...base,
      loads: false,
      error: (err as Error).message,
      quantizedParams: 0,
      quantizedShare: 0,
      quantized: [],
      skipped: discovery.skipped.map((s) => ({ name: s.name, reason: s.reason })),
      alreadyQuantized: [],
      unaccounted: [],
      duplicated: [],
      storedBitsPerWeight: NaN,
      fileBitsPerWeight: NaN,
      fileGrowthRatio: NaN,
      packedBitsPerWeight: NaN,
      cosine: NaN,
      minCosine: COSINE_TOLERANCE[format],
      notes: [],
    };
  }
  const bytes = serializeModel(emitted.proto);
  let session: Session | undefined;
  let cosine = NaN;
  let error: string | undefined;
  try {
    session = await createSession(ort, bytes, 1);
    const out = await session.run(ref.feeds);
    cosine = Math.min(...session.outputNames.map((o, i) => meanCosine(ref.outputs[i]!, outputValues(out[o]!), ref.samples)));
  } catch (err) {
    error = (err as Error).message;
  } finally {
    await session?.release();
  }
  const layers = emitted.layers;
  const quantizedList = layers.map((l) => ({ name: l.name, form: l.form, format: l.format }));
  const skipped = emitted.skipped.map((s) => ({ name: s.name, reason: s.reason }));
  const listed = [...quantizedList.map((q) => q.name), ...skipped.map((s) => s.name)];
  const counts = new Map<string, number>();
  for (const n of listed) counts.set(n, (counts.get(n) ?? 0) + 1);
  const unaccounted = floats.filter((t) => !counts.has(t.name)).map((t) => t.name);
  const duplicated = [...counts].filter(([, c]) => c > 1).map(([n]) => n);
  const quantizedParams = layers.reduce((a, l) => a + l.weights, 0);
  const storedBytes = layers.reduce((a, l) => a + l.storedBytes, 0);
  const packedBytes = layers.reduce((a, l) => a + l.packedBytes, 0);
  // The float-free remainder: the emitted file with the data of every tensor written for a quantized weight
  // emptied. What the file grows by over it is what the weights really take (framing of the tensors included).
  const stripped = cloneModel(emitted.proto);
  const weightTensors = new Set(layers.flatMap((l) => l.tensors));
  for (const t of allInitializers(stripped.graph!)) if (weightTensors.has(t.name)) t.rawData = new Uint8Array(0);
  const remainder = serializeModel(stripped).length;
  const fileStored = storedBytesInFile(emitted.proto, layers);
  return {
    ...base,
    loads: error === undefined,
    error,
    quantizedParams,
    quantizedShare: base.floatParams > 0 ? quantizedParams / base.floatParams : 0,
    quantized: quantizedList,
    skipped,
    alreadyQuantized: emitted.skipped.filter((s) => s.alreadyQuantizedBits !== undefined).map((s) => ({ name: s.name, bits: s.alreadyQuantizedBits! })),
    unaccounted,
    duplicated,
    storedBitsPerWeight: quantizedParams ? (storedBytes * 8) / quantizedParams : 0,
    fileBitsPerWeight: quantizedParams ? (fileStored * 8) / quantizedParams : 0,
    fileGrowthRatio: storedBytes ? (bytes.length - remainder) / storedBytes : NaN,
    packedBitsPerWeight: quantizedParams ? (packedBytes * 8) / quantizedParams : 0,
    cosine,
    minCosine: COSINE_TOLERANCE[format],
    notes: emitted.notes,
  };
}
