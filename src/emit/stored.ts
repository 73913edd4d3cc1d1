// Stored bits per weight, read from the emitted model itself: the bytes of the tensors that hold each
// quantized weight (codes, scales, zero points, tables, padding), not a formula of the format.
import { allInitializers, elementCount, rawDataLength, tensorShape, DataType, type ModelProto, type TensorProto } from "../onnx/model.js";
import type { EmittedLayer } from "./index.js";

const WIDTH: Record<number, number> = {
  [DataType.FLOAT]: 4,
  [DataType.UINT8]: 1,
  [DataType.INT8]: 1,
  [DataType.UINT16]: 2,
  [DataType.INT16]: 2,
  [DataType.INT32]: 4,
  [DataType.INT64]: 8,
  [DataType.FLOAT16]: 2,
  [DataType.BFLOAT16]: 2,
  [DataType.DOUBLE]: 8,
};

/** Bytes a tensor's data takes in the file (raw data, or the typed field's elements at their width). */
export function tensorDataBytes(t: TensorProto): number {
  const raw = rawDataLength(t);
  if (raw) return raw;
  if (t.dataType === DataType.UINT4 || t.dataType === DataType.INT4) return Math.ceil(elementCount(tensorShape(t)) / 2);
  return elementCount(tensorShape(t)) * (WIDTH[t.dataType] ?? 4);
}

/** Bytes of every tensor the layers list, as found in the model (a missing tensor is an internal error). */
export function storedBytesInFile(proto: ModelProto, layers: readonly Pick<EmittedLayer, "name" | "tensors">[]): number {
  const byName = new Map<string, TensorProto>();
  for (const t of allInitializers(proto.graph!)) byName.set(t.name, t);
  let total = 0;
  for (const l of layers) {
    for (const name of l.tensors) {
      const t = byName.get(name);
      if (!t) throw new Error(`internal: tensor "${name}" of quantized weight "${l.name}" is not in the emitted model`);
      total += tensorDataBytes(t);
    }
  }
  return total;
}

/**
 * Bits per quantized weight as the emitted file stores them: 8 * (bytes of the weights' codes, scales,
 * zero points and tables in the file) / weights. This is the figure the summary's bits-per-weight row
 * shows; the densely packed figure of a native kernel (EmittedLayer.packedBytes) is a different one.
 */
export function storedBitsPerWeight(proto: ModelProto, layers: readonly Pick<EmittedLayer, "name" | "tensors" | "weights">[]): number {
  const weights = layers.reduce((a, l) => a + l.weights, 0);
  return weights > 0 ? (storedBytesInFile(proto, layers) * 8) / weights : 0;
}
