// ONNX model I/O: parse and serialize with protobuf-es (unknown fields survive a round trip),
// resolve external data, and convert tensors to and from typed arrays.
import { isInside, realLocation } from "../config/paths.js";
import { randomBytes } from "node:crypto";
import { closeSync, fsyncSync, openSync, readSync, statSync, writeSync } from "node:fs";
import { readFile, rename, rm } from "node:fs/promises";
import { writeFileAtomic } from "../util/atomic.js";
import path from "node:path";
import { clearField, create, fromBinary, isFieldSet, toBinary } from "@bufbuild/protobuf";
import {
  AttributeProto_AttributeType,
  AttributeProtoSchema,
  GraphProtoSchema,
  ModelProtoSchema,
  NodeProtoSchema,
  StringStringEntryProtoSchema,
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
  type StringStringEntryProto,
  type TensorProto,
} from "onnx-buf";
import { UserError } from "../errors.js";
import { floatToHalf, halfToFloat } from "../util/half.js";

export { floatToHalf, halfToFloat };

export { TensorProto_DataType as DataType };
export type { AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto };

export interface LoadedModel {
  readonly path: string;
  readonly proto: ModelProto;
  readonly graph: GraphProto;
  /** Bytes of the .onnx file plus any external data files. */
  readonly sizeBytes: number;
  /** Initializers whose data stays in external files, read on demand (tensorBytes, tensorToFloat32). */
  readonly externalTensors: number;
}

/**
 * Where an external tensor's bytes lie: its data is read from the file on demand and never kept (a lazily
 * loaded initializer keeps dataLocation EXTERNAL and empty rawData). Keyed by the tensor object; cloneModel
 * carries it to the copy.
 */
interface ExternalRef {
  /** Absolute path of the data file (inside the model folder, checked at load). */
  readonly file: string;
  readonly offset: number;
  readonly length: number;
}
const externalRefs = new WeakMap<TensorProto, ExternalRef>();

export interface LoadOptions {
  /** Read every external tensor into rawData at load (the whole model in memory); default: read on demand. */
  readonly inlineExternal?: boolean;
}

export async function loadModel(modelPath: string, opts: LoadOptions = {}): Promise<LoadedModel> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(modelPath);
  } catch (err) {
    throw new UserError(`${modelPath}: cannot read model file (${(err as Error).message})`);
  }
  return parseModel(bytes, modelPath, opts);
}

export async function parseModel(bytes: Uint8Array, modelPath: string, opts: LoadOptions = {}): Promise<LoadedModel> {
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
  const external = resolveExternalData(graph, path.dirname(modelPath), modelPath);
  if (opts.inlineExternal) materializeTensors(graph);
  return { path: modelPath, proto, graph, sizeBytes: bytes.length + external.fileBytes, externalTensors: opts.inlineExternal ? 0 : external.tensors };
}

/**
 * Checks every external tensor's location (inside the model folder, symlinks followed) and extent, and
 * records where its bytes lie; no tensor data is read.
 */
function resolveExternalData(graph: GraphProto, baseDir: string, modelPath: string): { fileBytes: number; tensors: number } {
  const sizes = new Map<string, number>();
  let tensors = 0;
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
    let size = sizes.get(file);
    if (size === undefined) {
      try {
        size = statSync(file).size;
      } catch (err) {
        throw new UserError(`${modelPath}: tensor "${t.name}": cannot read external data ${location} (${(err as Error).message})`);
      }
      sizes.set(file, size);
    }
    const offset = Number(entry("offset") ?? 0);
    const length = entry("length") !== undefined ? Number(entry("length")) : size - offset;
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
      throw new UserError(`${modelPath}: tensor "${t.name}": external data ${location} is shorter than offset+length`);
    }
    const width = FIXED_WIDTH[t.dataType];
    if (width !== undefined && length !== elementCount(tensorShape(t)) * width) {
      throw new UserError(
        `${modelPath}: tensor "${t.name}" has ${length} bytes of external data, its shape [${tensorShape(t).join(", ")}] needs ${elementCount(tensorShape(t)) * width}`,
      );
    }
    externalRefs.set(t, { file, offset, length });
    tensors++;
  }
  return { fileBytes: [...sizes.values()].reduce((a, b) => a + b, 0), tensors };
}

/** Bytes per element of the fixed-width types (external data length checks). */
const FIXED_WIDTH: Partial<Record<number, number>> = {
  [TensorProto_DataType.FLOAT]: 4,
  [TensorProto_DataType.DOUBLE]: 8,
  [TensorProto_DataType.FLOAT16]: 2,
  [TensorProto_DataType.BFLOAT16]: 2,
  [TensorProto_DataType.INT64]: 8,
  [TensorProto_DataType.INT32]: 4,
  [TensorProto_DataType.INT16]: 2,
  [TensorProto_DataType.UINT16]: 2,
  [TensorProto_DataType.INT8]: 1,
  [TensorProto_DataType.UINT8]: 1,
  [TensorProto_DataType.BOOL]: 1,
};

/** The data files (absolute, first use order) the model's external tensors are read from. */
export function externalDataFiles(graph: GraphProto): string[] {
  const files = new Set<string>();
  for (const t of allInitializers(graph)) {
    const ref = externalRefs.get(t);
    if (ref) files.add(ref.file);
  }
  return [...files];
}

/** Is the tensor's data in an external file, read on demand? */
export function isExternalTensor(t: TensorProto): boolean {
  return externalRefs.has(t);
}

/** Bytes of a tensor's raw data, inline or external (without reading it). */
export function rawDataLength(t: TensorProto): number {
  return externalRefs.get(t)?.length ?? t.rawData.length;
}

function readExternal(ref: ExternalRef, into: Uint8Array, name: string): void {
  let fd: number;
  try {
    fd = openSync(ref.file, "r");
  } catch (err) {
    throw new UserError(`tensor "${name}": cannot read external data ${ref.file} (${(err as Error).message})`);
  }
  try {
    let done = 0;
    while (done < ref.length) {
      const n = readSync(fd, into, done, Math.min(ref.length - done, 1 << 30), ref.offset + done);
      if (n === 0) throw new UserError(`tensor "${name}": external data ${ref.file} ended before offset+length`);
      done += n;
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * A tensor's raw bytes: its rawData, or for an external tensor a fresh read of its bytes from the data file
 * (not kept: the caller owns the copy and drops it when done).
 */
export function tensorBytes(t: TensorProto): Uint8Array {
  const ref = externalRefs.get(t);
  if (!ref) return t.rawData;
  const out = new Uint8Array(ref.length);
  readExternal(ref, out, t.name);
  return out;
}

/** Reads external tensors into rawData (the whole model in memory, as an inline model). */
export function materializeTensors(graph: GraphProto): void {
  for (const t of allInitializers(graph)) {
    if (!externalRefs.has(t)) continue;
    t.rawData = tensorBytes(t) as Uint8Array<ArrayBuffer>;
    // Unset, not DEFAULT: the tensor serializes as one stored inline would.
    clearField(t, TensorProtoSchema.field.dataLocation);
    t.externalData = [];
    externalRefs.delete(t);
  }
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

/** Sets tensor fields for the length of `fn`, then restores them (the proto is never left changed). */
function withTensorFields<T>(
  edits: readonly { t: TensorProto; rawData: Uint8Array; location: TensorProto_DataLocation; entries: StringStringEntryProto[] }[],
  fn: () => T,
): T {
  const saved = edits.map(({ t }) => ({
    t,
    rawData: t.rawData,
    rawSet: isFieldSet(t, TensorProtoSchema.field.rawData),
    location: t.dataLocation,
    locationSet: isFieldSet(t, TensorProtoSchema.field.dataLocation),
    entries: t.externalData,
  }));
  try {
    for (const e of edits) {
      if (e.rawData.length > 0) e.t.rawData = e.rawData as Uint8Array<ArrayBuffer>;
      else clearField(e.t, TensorProtoSchema.field.rawData);
      if (e.location === TensorProto_DataLocation.DEFAULT) clearField(e.t, TensorProtoSchema.field.dataLocation);
      else e.t.dataLocation = e.location;
      e.t.externalData = e.entries;
    }
    return fn();
  } finally {
    // Field presence restored too (proto2: a field set to its default still serializes).
    for (const s of saved) {
      if (s.rawSet) s.t.rawData = s.rawData as Uint8Array<ArrayBuffer>;
      else clearField(s.t, TensorProtoSchema.field.rawData);
      if (s.locationSet) s.t.dataLocation = s.location;
      else clearField(s.t, TensorProtoSchema.field.dataLocation);
      s.t.externalData = s.entries;
    }
  }
}

/** Tensor data above which serializeModel assembles the bytes itself (each tensor's data copied once). */
const ASSEMBLE_MIN_BYTES = 1 << 26;

/**
 * The model as one self-contained buffer (ONNX Runtime in-memory sessions, inline files): external tensors
 * are read in for the serialization only. A large model (or one with external tensors) is assembled field by
 * field: each tensor's data is copied once, straight into the result (read from its file when external), not
 * through protobuf's nested writers (which copy it once per nesting level). Same message, fields in another
 * order (raw_data last in each tensor, initializers after the graph's other fields).
 */
export function serializeModel(proto: ModelProto): Uint8Array {
  const graph = proto.graph;
  const all = graph ? [...allInitializers(graph)] : [];
  const lazy = all.filter((t) => externalRefs.has(t)).length;
  if (!graph || (lazy === 0 && all.reduce((a, t) => a + t.rawData.length, 0) < ASSEMBLE_MIN_BYTES)) return toBinary(ModelProtoSchema, proto);
  // Main-graph tensors of 1 KiB or more are appended by hand; other external tensors are read in.
  const big = graph.initializer.filter((t) => rawDataLength(t) >= 1024);
  const bigSet = new Set(big);
  const edits = [
    ...big.map((t) => ({ t, rawData: new Uint8Array(0), location: TensorProto_DataLocation.DEFAULT, entries: [] })),
    ...all
      .filter((t) => !bigSet.has(t) && externalRefs.has(t))
      .map((t) => ({ t, rawData: tensorBytes(t), location: TensorProto_DataLocation.DEFAULT, entries: [] })),
  ];
  const sources = new Map(big.map((t) => [t, { ref: externalRefs.get(t), raw: t.rawData }]));
  const { modelHead, graphHead, heads } = withTensorFields(edits, () => {
    const heads = graph.initializer.map((t) => toBinary(TensorProtoSchema, t));
    const inits = graph.initializer;
    graph.initializer = [];
    let graphHead: Uint8Array;
    try {
      graphHead = toBinary(GraphProtoSchema, graph);
    } finally {
      graph.initializer = inits;
    }
    proto.graph = undefined;
    let modelHead: Uint8Array;
    try {
      modelHead = toBinary(ModelProtoSchema, proto);
    } finally {
      proto.graph = graph;
    }
    return { modelHead, graphHead, heads };
  });
  const varintLength = (n: number): number => {
    let len = 1;
    while (n >= 128) {
      n = Math.floor(n / 128);
      len++;
    }
    return len;
  };
  const tensorLengths = graph.initializer.map((t, i) => {
    const data = bigSet.has(t) ? rawDataLength(t) : -1;
    return heads[i]!.length + (data >= 0 ? 1 + varintLength(data) + data : 0);
  });
  const graphLength = graphHead.length + tensorLengths.reduce((a, n) => a + 1 + varintLength(n) + n, 0);
  const out = new Uint8Array(modelHead.length + 1 + varintLength(graphLength) + graphLength);
  let pos = 0;
  const put = (bytes: Uint8Array): void => {
    out.set(bytes, pos);
    pos += bytes.length;
  };
  const putVarint = (n: number): void => {
    while (n >= 128) {
      out[pos++] = (n % 128) | 128;
      n = Math.floor(n / 128);
    }
    out[pos++] = n;
  };
  const tag = (field: number): void => putVarint(field * 8 + 2);
  put(modelHead);
  tag(7); // ModelProto.graph
  putVarint(graphLength);
  put(graphHead);
  graph.initializer.forEach((t, i) => {
    tag(5); // GraphProto.initializer
    putVarint(tensorLengths[i]!);
    put(heads[i]!);
    const src = sources.get(t);
    if (!src) return;
    const length = rawDataLength(t);
    tag(9); // TensorProto.raw_data
    putVarint(length);
    if (src.ref) readExternal(src.ref, out.subarray(pos, pos + length), t.name);
    else out.set(src.raw, pos);
    pos += length;
  });
  if (pos !== out.length) throw new Error(`internal: assembled ${pos} of ${out.length} model bytes`);
  return out;
}

/** Protobuf's limit on one message: a model whose file would pass it must keep its tensors in external data. */
export const PROTOBUF_LIMIT_BYTES = 2 ** 31 - 1;
/** Tensors at or above this many bytes go to the data file when a model is written with external data (onnx's default). */
const EXTERNAL_MIN_BYTES = 1024;

export interface SaveOptions {
  /**
   * External data: true always, false never (a model over the limit is then an error), "auto" (default) when
   * the model has tensors read from external data or its file would exceed `limitBytes`.
   */
  readonly external?: boolean | "auto";
  /** The size above which "auto" writes external data (protobuf's 2 GB limit; lowered in tests). */
  readonly limitBytes?: number;
}

export interface SavedModel {
  /** Bytes of the .onnx file plus its data file. */
  readonly bytes: number;
  /** The data file (absolute) when written with external data. */
  readonly dataFile?: string;
  /** Why external data was used. */
  readonly externalReason?: string;
}

/** Writes the model; returns its size in bytes (model file plus external data). */
export async function saveModel(proto: ModelProto, file: string, opts: SaveOptions = {}): Promise<number> {
  return (await saveModelDetailed(proto, file, opts)).bytes;
}

/**
 * Writes the model, with external data (`<file>.data` beside it) when `opts.external` says so. Tensors read
 * from external data are copied file to file in chunks, never held whole; the proto is left as it was.
 */
export async function saveModelDetailed(proto: ModelProto, file: string, opts: SaveOptions = {}): Promise<SavedModel> {
  const limit = opts.limitBytes ?? PROTOBUF_LIMIT_BYTES;
  const tensors = proto.graph ? [...allInitializers(proto.graph)] : [];
  const lazy = tensors.filter((t) => externalRefs.has(t)).length;
  const dataBytes = tensors.reduce((a, t) => a + rawDataLength(t), 0);
  let reason: string | undefined;
  if (opts.external === true) reason = "external data requested";
  else if (opts.external !== false && lazy > 0) reason = `the input model keeps ${lazy} tensors in external data`;
  else if (opts.external !== false && dataBytes > limit) reason = `tensor data of ${dataBytes} bytes exceeds the ${limit}-byte limit of one protobuf file`;
  if (!reason) {
    const bytes = serializeModel(proto);
    if (bytes.length > limit) {
      if (opts.external === false) throw new UserError(`${file}: model exceeds protobuf's 2 GB limit`);
      reason = `the model file would be ${bytes.length} bytes, over the ${limit}-byte limit of one protobuf file`;
    } else {
      // Atomic: an interrupted emit never leaves a truncated model under the final name.
      await writeFileAtomic(file, bytes);
      await rm(`${file}.data`, { force: true });
      return { bytes: bytes.length };
    }
  }
  const dataFile = `${file}.data`;
  const location = path.basename(dataFile);
  const edits: { t: TensorProto; rawData: Uint8Array; location: TensorProto_DataLocation; entries: StringStringEntryProto[] }[] = [];
  const entry = (key: string, value: string): StringStringEntryProto => create(StringStringEntryProtoSchema, { key, value });
  const dataBytesWritten = await writeDataFileAtomic(dataFile, (write) => {
    let offset = 0;
    for (const t of tensors) {
      const length = rawDataLength(t);
      if (!externalRefs.has(t) && length < EXTERNAL_MIN_BYTES) continue;
      // Large tensors start on a 4 KiB boundary (a runtime may map them from the file).
      const pad = length >= 1 << 16 ? (4096 - (offset % 4096)) % 4096 : 0;
      if (pad) write.zeros(pad);
      offset += pad;
      const ref = externalRefs.get(t);
      if (ref) write.copy(ref);
      else write.bytes(t.rawData);
      edits.push({
        t,
        rawData: new Uint8Array(0),
        location: TensorProto_DataLocation.EXTERNAL,
        entries: [entry("location", location), entry("offset", String(offset)), entry("length", String(length))],
      });
      offset += length;
    }
    return offset;
  });
  const bytes = withTensorFields(edits, () => toBinary(ModelProtoSchema, proto));
  if (bytes.length > PROTOBUF_LIMIT_BYTES) throw new UserError(`${file}: model exceeds protobuf's 2 GB limit even with its tensors in external data`);
  await writeFileAtomic(file, bytes);
  return { bytes: bytes.length + dataBytesWritten, dataFile, externalReason: reason };
}

interface DataWriter {
  bytes(data: Uint8Array): void;
  zeros(n: number): void;
  copy(ref: ExternalRef): void;
}

/** Writes a data file through a temporary name beside it, renamed into place; returns its length. */
async function writeDataFileAtomic(file: string, fill: (w: DataWriter) => number): Promise<number> {
  const tmp = path.join(path.dirname(file), `.quantgate-tmp-${process.pid}-${randomBytes(4).toString("hex")}-${path.basename(file)}`);
  const fd = openSync(tmp, "wx", 0o644);
  let length: number;
  try {
    let pos = 0;
    const writeAll = (data: Uint8Array): void => {
      let done = 0;
      while (done < data.length) done += writeSync(fd, data, done, data.length - done, pos + done);
      pos += data.length;
    };
    const chunk = Buffer.allocUnsafe(1 << 24);
    length = fill({
      bytes: writeAll,
      zeros: (n) => writeAll(new Uint8Array(n)),
      copy: (ref) => {
        const src = openSync(ref.file, "r");
        try {
          for (let done = 0; done < ref.length;) {
            const n = readSync(src, chunk, 0, Math.min(chunk.length, ref.length - done), ref.offset + done);
            if (n === 0) throw new UserError(`external data ${ref.file} ended before offset+length`);
            writeAll(chunk.subarray(0, n));
            done += n;
          }
        } finally {
          closeSync(src);
        }
      },
    });
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    await rm(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  await rename(tmp, file);
  return length;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

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
  const ref = externalRefs.get(t);
  if (ref && t.dataType === TensorProto_DataType.FLOAT && LITTLE_ENDIAN && ref.length === n * 4) {
    // Read straight into the result: one copy of the weight, never the file.
    const out = new Float32Array(n);
    readExternal(ref, new Uint8Array(out.buffer), t.name);
    return out;
  }
  const raw = ref ? tensorBytes(t) : t.rawData;
  if (t.dataType === TensorProto_DataType.FLOAT && LITTLE_ENDIAN && raw.length === n * 4) {
    return raw.byteOffset % 4 === 0
      ? new Float32Array(raw.buffer, raw.byteOffset, n).slice()
      : new Float32Array((Uint8Array.prototype.slice.call(raw) as Uint8Array).buffer);
  }
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
  const copy = fromBinary(ModelProtoSchema, toBinary(ModelProtoSchema, proto));
  // External tensors are serialized as references (no data); the copy reads from the same files.
  if (proto.graph && copy.graph) {
    const from = [...allInitializers(proto.graph)];
    const to = [...allInitializers(copy.graph)];
    from.forEach((t, i) => {
      const ref = externalRefs.get(t);
      if (ref && to[i]) externalRefs.set(to[i], ref);
    });
  }
  return copy;
}

/** Integer tensor (INT64, INT32) as numbers (shapes, axes, perms). */
export function tensorToInts(t: TensorProto): number[] {
  const n = elementCount(tensorShape(t));
  const raw = tensorBytes(t);
  if (raw.length) {
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    if (t.dataType === TensorProto_DataType.INT64) return Array.from({ length: n }, (_, i) => Number(view.getBigInt64(i * 8, true)));
    if (t.dataType === TensorProto_DataType.INT32) return Array.from({ length: n }, (_, i) => view.getInt32(i * 4, true));
  }
  if (t.dataType === TensorProto_DataType.INT64) return t.int64Data.map(Number);
  if (t.dataType === TensorProto_DataType.INT32) return [...t.int32Data];
  throw new UserError(`tensor "${t.name}" has type ${dataTypeName(t.dataType)}, expected INT64 or INT32`);
}
