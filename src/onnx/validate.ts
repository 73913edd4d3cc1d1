// Checks a loaded model before anything decodes it: versions ONNX Runtime can run, tensor shapes that fit in
// memory and match their data, and finite weights. Each error names the file and the tensor.
import { TensorProto_DataLocation, type GraphProto, type TensorProto } from "onnx-buf";
import { UserError } from "../errors.js";
import type { LoadedModel } from "./model.js";
import { allInitializers } from "./model.js";
import type { WeightSite } from "./weights.js";

/** The newest IR version and ai.onnx opset that ONNX Runtime 1.30 loads. */
export const MAX_IR_VERSION = 13;
export const MAX_ONNX_OPSET = 26;
/** Largest tensor QuantGate decodes (elements): past this a typed array cannot hold it. */
const MAX_ELEMENTS = 2 ** 31 - 1;

/** Bits per element of each TensorProto data type (undefined: not checked, e.g. strings). */
const ELEMENT_BITS: Record<number, number> = {
  1: 32, // FLOAT
  2: 8, // UINT8
  3: 8, // INT8
  4: 16, // UINT16
  5: 16, // INT16
  6: 32, // INT32
  7: 64, // INT64
  9: 8, // BOOL
  10: 16, // FLOAT16
  11: 64, // DOUBLE
  12: 32, // UINT32
  13: 64, // UINT64
  16: 16, // BFLOAT16
  17: 8, // FLOAT8E4M3FN
  18: 8, // FLOAT8E4M3FNUZ
  19: 8, // FLOAT8E5M2
  20: 8, // FLOAT8E5M2FNUZ
  21: 4, // UINT4
  22: 4, // INT4
};

function graphTensors(graph: GraphProto): TensorProto[] {
  return [...allInitializers(graph)];
}

/** IR version, opsets, and every initializer's shape against its data. */
export function validateModel(model: LoadedModel): void {
  const file = model.path;
  const ir = Number(model.proto.irVersion);
  if (ir > MAX_IR_VERSION) {
    throw new UserError(`${file}: IR version ${ir} is newer than ONNX Runtime 1.30 supports (up to ${MAX_IR_VERSION}); export with an older IR version`, file);
  }
  for (const o of model.proto.opsetImport) {
    const version = Number(o.version);
    if ((o.domain === "" || o.domain === "ai.onnx") && version > MAX_ONNX_OPSET) {
      throw new UserError(
        `${file}: opset ${version} of ai.onnx is newer than ONNX Runtime 1.30 supports (up to ${MAX_ONNX_OPSET}); export with opset ${MAX_ONNX_OPSET} or older`,
        file,
      );
    }
  }
  for (const t of graphTensors(model.graph)) {
    const dims = t.dims.map((d) => Number(d));
    const shape = `[${dims.join(", ")}]`;
    if (dims.some((d) => !Number.isSafeInteger(d) || d < 0))
      throw new UserError(`${file}: tensor "${t.name}" declares shape ${shape}, with a negative or absurd dimension`, file);
    const count = dims.reduce((a, b) => a * b, 1);
    if (count > MAX_ELEMENTS)
      throw new UserError(`${file}: tensor "${t.name}" declares shape ${shape} (${count} elements), more than QuantGate can hold in memory`, file);
    if (t.dataLocation === TensorProto_DataLocation.EXTERNAL) continue;
    const bits = ELEMENT_BITS[t.dataType];
    if (bits === undefined) continue;
    const needBytes = Math.ceil((count * bits) / 8);
    if (t.rawData.length > 0 && t.rawData.length !== needBytes) {
      throw new UserError(`${file}: tensor "${t.name}" has ${t.rawData.length} bytes of data, its shape ${shape} needs ${needBytes}`, file);
    }
    if (t.rawData.length === 0) {
      const typed = t.floatData.length || t.doubleData.length || t.int64Data.length || t.uint64Data.length;
      if (typed > 0 && typed < count && bits >= 32)
        throw new UserError(`${file}: tensor "${t.name}" has ${typed} values, its shape ${shape} needs ${count}`, file);
    }
  }
}

/** Weights that would be quantized must be finite: a NaN or infinity poisons every block it sits in. */
export function checkFiniteWeights(file: string, sites: readonly WeightSite[]): void {
  for (const s of sites) {
    const v = s.values;
    for (let i = 0; i < v.length; i++) {
      const x = v[i]!;
      if (!Number.isFinite(x)) {
        throw new UserError(
          `${file}: tensor "${s.name}" holds ${Number.isNaN(x) ? "NaN" : x > 0 ? "Infinity" : "-Infinity"} at element ${i}; quantization needs finite weights`,
          file,
        );
      }
    }
  }
}
