// Small hand-built ONNX graphs and datasets for tests (built in the tests, not downloaded).
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { create } from "@bufbuild/protobuf";
import { gaussianSource } from "../../src/quantize/algorithms/linalg.js";
import { GraphProtoSchema, ModelProtoSchema, OperatorSetIdProtoSchema } from "onnx-buf";
import {
  DataType,
  makeAttribute,
  makeNode,
  makeTensor,
  makeValueInfo,
  serializeModel,
  type ModelProto,
  type NodeProto,
  type TensorProto,
} from "../../src/onnx/model.js";

/** Deterministic standard-normal generator (the algorithms' xorshift + Box-Muller source). */
export function gaussian(seed: number): () => number {
  return gaussianSource(seed);
}

export function randomMatrix(rows: number, cols: number, seed: number, scale = 1): Float32Array {
  const g = gaussian(seed);
  return Float32Array.from({ length: rows * cols }, () => g() * scale);
}

export function model(
  nodes: NodeProto[],
  inits: TensorProto[],
  inputs: ReturnType<typeof makeValueInfo>[],
  outputs: ReturnType<typeof makeValueInfo>[],
  opset = 17,
): ModelProto {
  return create(ModelProtoSchema, {
    irVersion: 8n,
    producerName: "quantgate-test",
    opsetImport: [create(OperatorSetIdProtoSchema, { domain: "", version: BigInt(opset) })],
    graph: create(GraphProtoSchema, { name: "test", node: nodes, initializer: inits, input: inputs, output: outputs }),
  });
}

export interface Mlp {
  readonly proto: ModelProto;
  readonly w1: Float32Array;
  readonly w2: Float32Array;
  readonly dims: readonly [number, number, number];
}

/** x[?, d0] -> MatMul(W1[d0,d1]) -> Relu -> Gemm(W2 stored [d2,d1], transB=1, bias) -> logits[?, d2] */
export function buildMlp(d0: number, d1: number, d2: number, seed = 1): Mlp {
  const w1 = randomMatrix(d0, d1, seed, 1 / Math.sqrt(d0));
  const w2 = randomMatrix(d2, d1, seed + 1, 1 / Math.sqrt(d1));
  const b2 = randomMatrix(1, d2, seed + 2, 0.1);
  const proto = model(
    [
      makeNode("MatMul", ["x", "fc1.weight"], ["h"], [], { name: "fc1" }),
      makeNode("Relu", ["h"], ["h_relu"], [], { name: "relu" }),
      makeNode("Gemm", ["h_relu", "fc2.weight", "fc2.bias"], ["logits"], [makeAttribute("transB", 1)], { name: "fc2" }),
    ],
    [
      makeTensor("fc1.weight", DataType.FLOAT, [d0, d1], w1),
      makeTensor("fc2.weight", DataType.FLOAT, [d2, d1], w2),
      makeTensor("fc2.bias", DataType.FLOAT, [d2], b2),
    ],
    [makeValueInfo("x", DataType.FLOAT, ["batch", d0])],
    [makeValueInfo("logits", DataType.FLOAT, ["batch", d2])],
  );
  return { proto, w1, w2, dims: [d0, d1, d2] };
}

/** The MLP's own float forward pass in TypeScript (float64 accumulate). */
export function mlpForward(m: Mlp, x: Float32Array, bias: Float32Array): Float64Array {
  const [d0, d1, d2] = m.dims;
  const h = new Float64Array(d1);
  for (let j = 0; j < d1; j++) {
    let s = 0;
    for (let i = 0; i < d0; i++) s += x[i]! * m.w1[i * d1 + j]!;
    h[j] = Math.max(0, s);
  }
  const out = new Float64Array(d2);
  for (let c = 0; c < d2; c++) {
    let s = bias[c]!;
    for (let j = 0; j < d1; j++) s += h[j]! * m.w2[c * d1 + j]!;
    out[c] = s;
  }
  return out;
}

/**
 * Writes an MLP classifier, a labelled JSONL eval set (labels from the float model, with some
 * label noise so accuracy is not trivially 1), a calibration set and a quantgate.yml into dir.
 */
/** `opts.extra`: YAML appended after the gate block (a search section, say). */
export async function writeClassifierFixture(dir: string, gate: string, opts: { recipe?: string; samples?: number; extra?: string } = {}): Promise<string> {
  await mkdir(dir, { recursive: true });
  const [d0, d1, d2] = [64, 128, 10];
  const mlp = buildMlp(d0, d1, d2, 7);
  await writeFile(path.join(dir, "mlp.onnx"), serializeModel(mlp.proto));
  const bias = randomMatrix(1, d2, 7 + 2, 0.1);
  const rows = (count: number, seed: number): string => {
    const g = gaussian(seed);
    const lines: string[] = [];
    for (let r = 0; r < count; r++) {
      const x = Float32Array.from({ length: d0 }, () => g());
      const logits = mlpForward(mlp, x, bias);
      let label = logits.indexOf(Math.max(...logits));
      if (r % 7 === 3) label = (label + 1) % d2;
      lines.push(JSON.stringify({ inputs: { x: Array.from(x) }, label }));
    }
    return lines.join("\n") + "\n";
  };
  await writeFile(path.join(dir, "eval.jsonl"), rows(opts.samples ?? 64, 11));
  await writeFile(path.join(dir, "calib.jsonl"), rows(16, 12));
  const config = `model: mlp.onnx
recipe:
${opts.recipe ?? "  format: int4\n  block_size: 32\n  symmetric: false"}
  min_elements: 256
evaluation:
  task: classification
  dataset: eval.jsonl
  calibration: calib.jsonl
measure:
  threads: 1
  warmup: 2
  runs: 10
gate:
${gate}
${opts.extra ?? ""}`;
  const configPath = path.join(dir, "quantgate.yml");
  await writeFile(configPath, config);
  return configPath;
}
