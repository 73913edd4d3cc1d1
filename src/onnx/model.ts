// ONNX model I/O: parse and serialize with protobuf-es (unknown fields survive a round trip),
// resolve external data, and convert tensors to and from typed arrays.
import { isInside, realLocation } from "../config/paths.js";
import { readFile } from "node:fs/promises";
import { writeFileAtomic } from "../util/atomic.js";
import path from "node:path";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  AttributeProto_AttributeType,
  AttributeProtoSchema,
  ModelProtoSchema,
  NodeProtoSchema,
  TensorProto_DataLocation,
  TensorProto_DataType,
  TensorProtoSchema,
  TensorShapeProto_DimensionSchema,
  TensorShapeProtoSchema,
  TypeProto_TensorSchema,
  TypeProtoSchema,
  ValueInfoProtoSchema,
  type ValueInfoProto,
  type AttributeProto,
  type GraphProto,
  type ModelProto,
  type NodeProto,
  type TensorProto,
} from "onnx-buf";
import { UserError } from "../errors.js";

export { TensorProto_DataType as DataType };
export type { AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto };

export interface LoadedModel {
  readonly path: string;
  readonly proto: ModelProto;
  readonly graph: GraphProto;
  /** Bytes of the .onnx file plus any external data files. */
  readonly sizeBytes: number;
}

export async function loadModel(modelPath: string): Promise<LoadedModel> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(modelPath);
  } catch (err) {
    throw new UserError(`${modelPath}: cannot read model file (${(err as Error).message})`);
  }
  return parseModel(bytes, modelPath);
}

export async function parseModel(bytes: Uint8Array, modelPath: string): Promise<LoadedModel> {
  let proto: ModelProto;
  try {
    proto = fromBinary(ModelProtoSchema, bytes);
  } catch (err) {
    throw new UserError(`${modelPath}: not a valid ONNX model (protobuf parse failed: ${(err as Error).message})`);
  }
  const graph = proto.graph;
  if (!graph || graph.node.length === 0) {
    throw new UserError(`${modelPath}: ONNX model has no graph or the graph has no nodes`);
  }
  let sizeBytes = bytes.length;
  sizeBytes += await inlineExternalData(graph, path.dirname(modelPath), modelPath);
  return { path: modelPath, proto, graph, sizeBytes };
}

/** Read external tensor data into rawData so the rest of the pipeline sees one model. */
async function inlineExternalData(graph: GraphProto, baseDir: string, modelPath: string): Promise<number> {
  const files = new Map<string, Buffer>();
  let externalBytes = 0;
  for (const t of allInitializers(graph)) {
    if (t.dataLocation !== TensorProto_DataLocation.EXTERNAL) continue;
    const entry = (key: string): string | undefined => t.externalData.find((e) => e.key === key)?.value;
    const location = entry("location");
    if (!location) throw new UserError(`${modelPath}: tensor "${t.name}" is external but names no location`);
    const file = path.resolve(baseDir, location);
    // Lexically and with symlinks followed: a link in the model folder must not reach outside it.
    if (path.relative(baseDir, file).startsWith("..") || !isInside(realLocation(baseDir), realLocation(file))) {
      throw new UserError(`${modelPath}: tensor "${t.name}" external data "${location}" lies outside the model folder`);
    }
    let data = files.get(file);
    if (!data) {
      try {
        data = await readFile(file);
      } catch (err) {
        throw new UserError(`${modelPath}: tensor "${t.name}": cannot read external data ${location} (${(err as Error).message})`);
      }
      files.set(file, data);
      externalBytes += data.length;
    }
    const offset = Number(entry("offset") ?? 0);
    const length = entry("length") !== undefined ? Number(entry("length")) : data.length - offset;
    if (offset + length > data.length) {
      throw new UserError(`${modelPath}: tensor "${t.name}": external data ${location} is shorter than offset+length`);
    }
    t.rawData = Uint8Array.prototype.slice.call(data, offset, offset + length) as Uint8Array<ArrayBuffer>;
    t.dataLocation = TensorProto_DataLocation.DEFAULT;
    t.externalData = [];
  }
  return externalBytes;
}

/** Initializers of the graph and of every subgraph (If/Loop/Scan bodies). */
export function* allInitializers(graph: GraphProto): Generator<TensorProto> {
  yield* graph.initializer;
  for (const node of graph.node) {
    for (const a of node.attribute) {
      if (a.g) yield* allInitializers(a.g);
      for (const g of a.graphs) yield* allInitializers(g);
    }
  }
}

export function serializeModel(proto: ModelProto): Uint8Array {
  return toBinary(ModelProtoSchema, proto);
}

/** Writes the model; returns its size in bytes. */
export async function saveModel(proto: ModelProto, file: string): Promise<number> {
  const bytes = serializeModel(proto);
  if (bytes.length > 2 ** 31 - 1) throw new UserError(`${file}: model exceeds protobuf's 2 GB limit`);
  // Atomic: an interrupted emit never leaves a truncated model under the final name.
  await writeFileAtomic(file, bytes);
  return bytes.length;
}

export const dataTypeName = (t: number): string => TensorProto_DataType[t] ?? `type ${t}`;

export function tensorShape(t: TensorProto): number[] {
  return t.dims.map((d) => Number(d));
}

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Float tensor (FLOAT, FLOAT16, BFLOAT16, DOUBLE) as float32 values. */
export function tensorToFloat32(t: TensorProto): Float32Array {
  const n = elementCount(tensorShape(t));
  const raw = t.rawData;
  const view = raw.length ? new DataView(raw.buffer, raw.byteOffset, raw.byteLength) : undefined;
  const out = new Float32Array(n);
  switch (t.dataType) {
    case TensorProto_DataType.FLOAT:
      if (view) for (let i = 0; i < n; i++) out[i] = view.getFloat32(i * 4, true);
      else out.set(t.floatData);
      break;
    case TensorProto_DataType.DOUBLE:
      if (view) for (let i = 0; i < n; i++) out[i] = view.getFloat64(i * 8, true);
      else out.set(t.doubleData);
      break;
    case TensorProto_DataType.BFLOAT16:
      for (let i = 0; i < n; i++) {
        const bits = (view ? view.getUint16(i * 2, true) : t.int32Data[i]!) << 16;
        out[i] = new Float32Array(new Uint32Array([bits >>> 0]).buffer)[0]!;
      }
      break;
    case TensorProto_DataType.FLOAT16:
      for (let i = 0; i < n; i++) out[i] = halfToFloat(view ? view.getUint16(i * 2, true) : t.int32Data[i]!);
      break;
    default:
      throw new UserError(`tensor "${t.name}" has type ${dataTypeName(t.dataType)}, expected a float type`);
  }
  return out;
}

export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** float32 -> IEEE half bits, round to nearest even (subnormals kept, overflow to infinity). */
export function floatToHalf(value: number): number {
  const f32 = new Float32Array([value]);
  const x = new Uint32Array(f32.buffer)[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  e = half >>> 10;
  return sign | half;
}

/** Values rounded to float16 precision (as float32), and their half bits. */
export function roundToHalf(values: Float32Array): { values: Float32Array; bits: Uint16Array } {
  const bits = new Uint16Array(values.length);
  const rounded = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    bits[i] = floatToHalf(values[i]!);
    rounded[i] = halfToFloat(bits[i]!);
  }
  return { values: rounded, bits };
}

type TypedData = Float32Array | Uint8Array | Int8Array | Int32Array | BigInt64Array | Uint16Array;

export function makeTensor(name: string, dataType: TensorProto_DataType, dims: readonly number[], data: TypedData): TensorProto {
  const bytes = new Uint8Array(data.byteLength);
  bytes.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  return create(TensorProtoSchema, {
    name,
    dataType,
    dims: dims.map((d) => BigInt(d)),
    rawData: bytes,
  });
}

export type AttrValue = number | bigint | string | number[] | TensorProto;

export function makeAttribute(name: string, value: AttrValue, asFloat = false): AttributeProto {
  if (typeof value === "string") {
    return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.STRING, s: new TextEncoder().encode(value) });
  }
  if (typeof value === "bigint" || (typeof value === "number" && !asFloat)) {
    return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.INT, i: BigInt(value) });
  }
  if (typeof value === "number") {
    return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.FLOAT, f: value });
  }
  if (Array.isArray(value)) {
    return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.INTS, ints: value.map((v) => BigInt(v)) });
  }
  return create(AttributeProtoSchema, { name, type: AttributeProto_AttributeType.TENSOR, t: value });
}

export function makeNode(
  opType: string,
  inputs: string[],
  outputs: string[],
  attrs: AttributeProto[] = [],
  opts: { name?: string; domain?: string } = {},
): NodeProto {
  return create(NodeProtoSchema, {
    opType,
    input: inputs,
    output: outputs,
    attribute: attrs,
    name: opts.name ?? "",
    domain: opts.domain ?? "",
  });
}

export function getAttr(node: NodeProto, name: string): AttributeProto | undefined {
  return node.attribute.find((a) => a.name === name);
}

export function getIntAttr(node: NodeProto, name: string, fallback: number): number {
  const a = getAttr(node, name);
  return a ? Number(a.i) : fallback;
}

export function getFloatAttr(node: NodeProto, name: string, fallback: number): number {
  const a = getAttr(node, name);
  return a ? a.f : fallback;
}

/** The opset version the model imports for a domain ("" is the default ONNX domain). */
export function opsetVersion(proto: ModelProto, domain: string): number | undefined {
  const d = domain === "ai.onnx" ? "" : domain;
  const entry = proto.opsetImport.find((o) => (o.domain === "ai.onnx" ? "" : o.domain) === d);
  return entry ? Number(entry.version) : undefined;
}

/** A graph input/output declaration; dims are numbers or symbolic names. */
export function makeValueInfo(name: string, elemType: TensorProto_DataType, dims?: readonly (number | string)[]): ValueInfoProto {
  const shape = dims
    ? create(TensorShapeProtoSchema, {
        dim: dims.map((d) =>
          create(TensorShapeProto_DimensionSchema, {
            value: typeof d === "string" ? { case: "dimParam", value: d } : { case: "dimValue", value: BigInt(d) },
          }),
        ),
      })
    : undefined;
  return create(ValueInfoProtoSchema, {
    name,
    type: create(TypeProtoSchema, { value: { case: "tensorType", value: create(TypeProto_TensorSchema, { elemType, shape }) } }),
  });
}

/** Element type and rank of a graph input, when declared. */
export function valueInfoTensorType(v: ValueInfoProto): { elemType: number; rank: number | undefined } | undefined {
  if (v.type?.value.case !== "tensorType") return undefined;
  const t = v.type.value.value;
  return { elemType: t.elemType, rank: t.shape ? t.shape.dim.length : undefined };
}

/** A deep copy, through the wire format (keeps unknown fields). */
export function cloneModel(proto: ModelProto): ModelProto {
  return fromBinary(ModelProtoSchema, toBinary(ModelProtoSchema, proto));
}

/** Integer tensor (INT64, INT32) as numbers (shapes, axes, perms). */
export function tensorToInts(t: TensorProto): number[] {
  const n = elementCount(tensorShape(t));
  const raw = t.rawData;
  if (raw.length) {
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    if (t.dataType === TensorProto_DataType.INT64) return Array.from({ length: n }, (_, i) => Number(view.getBigInt64(i * 8, true)));
    if (t.dataType === TensorProto_DataType.INT32) return Array.from({ length: n }, (_, i) => view.getInt32(i * 4, true));
  }
  if (t.dataType === TensorProto_DataType.INT64) return t.int64Data.map(Number);
  if (t.dataType === TensorProto_DataType.INT32) return [...t.int32Data];
  throw new UserError(`tensor "${t.name}" has type ${dataTypeName(t.dataType)}, expected INT64 or INT32`);
}
