// The emit stage: rewrite each quantized weight into the ONNX Runtime form chosen for its format, with
// nodes that are valid at the model's opset and compute in its consumers' element type.
import { create } from "@bufbuild/protobuf";
import { OperatorSetIdProtoSchema } from "onnx-buf";
import type { WeightFormat } from "../config/schema.js";
import {
  cloneModel,
  DataType,
  floatToHalf,
  getFloatAttr,
  makeAttribute,
  makeNode,
  makeTensor,
  opsetVersion,
  tensorToFloat32,
  type GraphProto,
  type ModelProto,
  type NodeProto,
  type TensorProto,
} from "../onnx/model.js";
import { activeKernels } from "../kernels/active.js";
import { containerBits, packBits, toMatMulNBits, type BlockwiseQuantized } from "../quantize/blockwise.js";
import { tablePackedBytes, type TableQuantized } from "../quantize/tables.js";
import { isTable, type AnyQuantized, type QuantizedWeight } from "../quantize/index.js";
import { graphAt, readCounts } from "../onnx/weights.js";
import { tensorDataBytes } from "./stored.js";

/**
 * How a quantized weight executes in ONNX Runtime. Every form computes with exactly the dequantized
 * values the quantizer defines (at accuracy_level 0):
 * - matmulnbits: com.microsoft.MatMulNBits on packed codes (int2/int4/int8; int3 in a 4-bit container).
 * - dequant-subgraph: packed codes -> unpack -> Sub(zp) -> Mul(scale) -> MatMul (or the op that read the
 *   weight), standard ops only.
 * - lookup-subgraph: packed codes -> unpack -> Gather(table) -> Mul(block scale) -> MatMul (or the op), for
 *   table formats (NF4, FP4 E2M1, MXFP4, FP8 E4M3, codebooks), standard ops only.
 * - matmulbnb4: com.microsoft.MatMulBnb4 (NF4 quant_type 1, bitsandbytes FP4 quant_type 0) on codes
 *   packed two per byte, first code in the high nibble, blocks over the flattened [N, K] weight
 *   (so only when K is a multiple of the block size, where those blocks equal ours).
 * - dequantizelinear: the standard op at opset 21+: blocked DequantizeLinear on UINT4 codes (int3 and
 *   int4, two per byte) or UINT8 codes (int8), feeding MatMul (the [K, N] weight, blocks along axis 0) or
 *   the op. Not for int2 (2-bit types need opset 25). Only when asked for: ONNX Runtime 1.30 fuses it with
 *   MatMul into MatMulNBits at accuracy level 4 (int8 activations: not bit-exact to the dequantized
 *   weights), and before Conv it is not folded at load, so it dequantizes on every run
 *   (bench/conformance.mjs measures both).
 * DequantizeLinear with FLOAT4E2M1 (opset 23) would be the standard form for FP4, but ONNX Runtime 1.30
 * has no CPU kernel for it (test/ort-forms.test.ts), so FP4 and MXFP4 fall back to lookup-subgraph.
 *
 * Codes narrower than 8 bits are stored packed in every form: 2-bit codes four per byte, 3- and 4-bit
 * codes two per byte (int3 in a 4-bit container). The subgraph forms unpack them with float arithmetic
 * (Cast, Div, Floor, Mul, Sub, Reshape: every one valid from opset 7, exact for 0..255), which
 * ONNX Runtime folds into a constant at session load.
 */
export type ExecForm = "matmulnbits" | "dequantizelinear" | "dequant-subgraph" | "lookup-subgraph" | "matmulbnb4";

/** The first default-domain opset whose DequantizeLinear has block_size and 4-bit types. */
export const BLOCKED_DQ_OPSET = 21;

/** The oldest default-domain opset the added nodes are valid at (numpy broadcasting of Sub/Mul). */
export const MIN_EMIT_OPSET = 7;

/** Whether a form can carry this weight at all (before timing it). */
export function formApplies(form: ExecForm, q: AnyQuantized, opset = BLOCKED_DQ_OPSET): boolean {
  if (form === "dequantizelinear") return !isTable(q) && q.spec.bits !== 2 && opset >= BLOCKED_DQ_OPSET;
  if (form === "matmulbnb4") return isTable(q) && (q.format === "nf4" || q.format === "bnb-fp4") && q.k % q.blockSize === 0;
  if (form === "lookup-subgraph") return isTable(q);
  return !isTable(q);
}

/** The next bit-exact form to try when ONNX Runtime refuses one (undefined: keep the weight float). */
export function fallbackForm(form: ExecForm, q?: AnyQuantized, opset?: number): ExecForm | undefined {
  const next = (f: ExecForm): ExecForm | undefined =>
    f === "matmulnbits" || f === "dequantizelinear" ? "dequant-subgraph" : f === "matmulbnb4" ? "lookup-subgraph" : undefined;
  let f = next(form);
  while (f && q && !formApplies(f, q, opset)) f = next(f);
  return f;
}

export interface LayerStorage {
  /** Bytes of the quantized weight as stored in the emitted ONNX file (codes + scales + zero points + tables, padding included). */
  readonly storedBytes: number;
  /** Bytes of the densely packed form (bits per code exactly), what a deployment of the format needs. */
  readonly packedBytes: number;
}

export interface EmittedLayer extends LayerStorage {
  readonly name: string;
  readonly nodeName: string;
  readonly format: WeightFormat;
  readonly form: ExecForm;
  /** Elements of the quantized weight. */
  readonly weights: number;
  /** The same weights in float32. */
  readonly floatBytes: number;
  /** Names of the initializers that hold this weight's codes, scales, zero points and tables. */
  readonly tensors: readonly string[];
  /** Names of the nodes added for this weight (to name it when ONNX Runtime refuses one). */
  readonly nodes: readonly string[];
}

/** A weight that could not be emitted, and why (it stays float). */
export interface RefusedWeight {
  readonly index: number;
  readonly name: string;
  readonly nodeName: string;
  readonly reason: string;
}

export interface EmittedModel {
  readonly proto: ModelProto;
  readonly layers: EmittedLayer[];
  /** Index into the weights given to emitModel of each layer. */
  readonly layerIndex: number[];
  readonly refused: RefusedWeight[];
}

/** What the added nodes must respect: the default-domain opset and the element type the consumer reads. */
export interface EmitTarget {
  readonly opset: number;
  /** FLOAT, FLOAT16 or BFLOAT16: the dequantized weight is produced in this type. */
  readonly elemType: number;
}

const FLOAT_TARGET: EmitTarget = { opset: 17, elemType: DataType.FLOAT };

export interface LayerGraph {
  readonly nodes: NodeProto[];
  readonly initializers: TensorProto[];
  readonly storage: LayerStorage;
  /** The form the graph is written in, where the function chose it. */
  readonly form?: ExecForm;
}

/**
 * Blocked DequantizeLinear (opset 21) -> `out` float32: codes of `dims` as UINT4 (bits <= 4, two per
 * byte, first element in the low nibble) or UINT8, with a float32 scale and a zero point of the codes'
 * type per block of `blockSize` along `axis`. Returns the stored bytes.
 */
function dequantizeLinearNode(
  p: string,
  codes: Uint8Array,
  dims: readonly number[],
  scales: Float32Array,
  zeroPoints: Uint8Array,
  blockDims: readonly number[],
  axis: number,
  bits: number,
  blockSize: number,
  out: string,
  inits: TensorProto[],
  nodes: NodeProto[],
): number {
  const four = bits <= 4;
  const type = four ? DataType.UINT4 : DataType.UINT8;
  const pack = (values: Uint8Array): Uint8Array => {
    if (!four) return values;
    let even = values;
    if (values.length % 2) {
      even = new Uint8Array(values.length + 1);
      even.set(values);
    }
    return packBits(even, 4, even.length);
  };
  const packedCodes = pack(codes);
  const packedZps = pack(zeroPoints);
  inits.push(makeTensor(`${p}_codes`, type, dims, packedCodes));
  inits.push(makeTensor(`${p}_scales`, DataType.FLOAT, blockDims, scales));
  inits.push(makeTensor(`${p}_zp`, type, blockDims, packedZps));
  nodes.push(
    makeNode("DequantizeLinear", [`${p}_codes`, `${p}_scales`, `${p}_zp`], [out], [makeAttribute("axis", axis), makeAttribute("block_size", blockSize)], {
      name: `${p}_DequantizeLinear`,
    }),
  );
  return packedCodes.length + scales.length * 4 + packedZps.length;
}

/** Blocked DequantizeLinear of the quantizer's rows: codes [n, kPadded], blocks along axis 1 -> `out` [n, kPadded]. */
function blockedDequantize(p: string, q: BlockwiseQuantized, out: string, inits: TensorProto[], nodes: NodeProto[]): number {
  const { n, blocksPerRow } = q;
  const { bits, blockSize } = q.spec;
  return dequantizeLinearNode(p, q.codes, [n, blocksPerRow * blockSize], q.scales, q.zeroPoints, [n, blocksPerRow], 1, bits, blockSize, out, inits, nodes);
}

/** Dense storage of a block-wise quantized weight: codes at `bits` each, scales (fp32, or fp16 where the form stores them so), zero points at `bits` each. */
export function packedBytes(q: BlockwiseQuantized, scaleBytes: 2 | 4 = 4): number {
  const blocks = q.n * q.blocksPerRow;
  const codeBits = q.n * q.k * q.spec.bits;
  const zpBits = q.spec.symmetric ? 0 : blocks * q.spec.bits;
  return Math.ceil(codeBits / 8) + blocks * scaleBytes + Math.ceil(zpBits / 8);
}

/** Codes [n][blocksPerRow*blockSize] -> [blocks, blockSize, n] so per-block values broadcast as [blocks, 1, n]. */
function codesBlocksFirst(codes: Uint8Array, n: number, kPadded: number): Uint8Array {
  const out = new Uint8Array(kPadded * n);
  const raw = activeKernels();
  if (raw?.transposeU8 && codes.length >= n * kPadded) {
    raw.transposeU8(codes, n, kPadded, kPadded, out, 1);
    return out;
  }
  for (let row = 0; row < n; row++) {
    for (let col = 0; col < kPadded; col++) out[col * n + row] = codes[row * kPadded + col]!;
  }
  return out;
}

function perBlockBlocksFirst<T extends Float32Array | Uint8Array>(values: T, n: number, blocksPerRow: number, make: (len: number) => T): T {
  const out = make(values.length);
  const raw = activeKernels();
  if (raw?.transposeU8 && values instanceof Uint8Array && out instanceof Uint8Array && values.length === n * blocksPerRow) {
    raw.transposeU8(values, n, blocksPerRow, blocksPerRow, out, 1);
    return out;
  }
  if (raw && values instanceof Float32Array && out instanceof Float32Array && values.length === n * blocksPerRow) {
    raw.transposeF32(values, n, blocksPerRow, out, 1);
    return out;
  }
  for (let row = 0; row < n; row++) {
    for (let b = 0; b < blocksPerRow; b++) out[b * n + row] = values[row * blocksPerRow + b]!;
  }
  return out;
}

const int64s = (values: readonly number[]): BigInt64Array => BigInt64Array.from(values.map((v) => BigInt(v)));

/** The width codes of `bits` are stored at in the ONNX file: 2, 4 (int3 and 4-bit tables) or 8. */
export function storedCodeBits(bits: number): 2 | 4 | 8 {
  return bits <= 2 ? 2 : bits <= 4 ? 4 : 8;
}

/**
 * Stores codes packed at `storedCodeBits(bits)` (LSB first) and adds the nodes that turn them back into a
 * float32 tensor of `shape`. Returns the stored bytes.
 */
function codesAsFloat(p: string, codes: Uint8Array, bits: number, shape: readonly number[], out: string, nodes: NodeProto[], inits: TensorProto[]): number {
  const width = storedCodeBits(bits);
  const toFloat = [makeAttribute("to", DataType.FLOAT)];
  if (width === 8) {
    inits.push(makeTensor(`${p}_codes`, DataType.UINT8, shape, codes));
    nodes.push(makeNode("Cast", [`${p}_codes`], [out], toFloat, { name: `${p}_CastCodes` }));
    return codes.length;
  }
  const perByte = 8 / width;
  if (codes.length % perByte !== 0) throw new Error(`internal: ${codes.length} codes do not fill whole bytes at ${width} bits`);
  const packed = packBits(codes, width, codes.length);
  const m = packed.length;
  const base = 1 << width;
  // Field j of byte v (LSB first) is t_j - base * floor(t_j / base) with t_j = floor(v / base^j): one
  // broadcast over the [m, perByte] fields, exact in float32 for bytes.
  inits.push(makeTensor(`${p}_codes_packed`, DataType.UINT8, [m, 1], packed));
  inits.push(
    makeTensor(
      `${p}_field_div`,
      DataType.FLOAT,
      [perByte],
      Float32Array.from({ length: perByte }, (_, j) => base ** j),
    ),
  );
  inits.push(makeTensor(`${p}_field_base`, DataType.FLOAT, [], Float32Array.of(base)));
  nodes.push(makeNode("Cast", [`${p}_codes_packed`], [`${p}_bytes`], toFloat, { name: `${p}_CastPacked` }));
  nodes.push(makeNode("Div", [`${p}_bytes`, `${p}_field_div`], [`${p}_shifted_f`], [], { name: `${p}_Shift` }));
  nodes.push(makeNode("Floor", [`${p}_shifted_f`], [`${p}_shifted`], [], { name: `${p}_ShiftFloor` }));
  nodes.push(makeNode("Div", [`${p}_shifted`, `${p}_field_base`], [`${p}_high_f`], [], { name: `${p}_High` }));
  nodes.push(makeNode("Floor", [`${p}_high_f`], [`${p}_high`], [], { name: `${p}_HighFloor` }));
  nodes.push(makeNode("Mul", [`${p}_high`, `${p}_field_base`], [`${p}_high_base`], [], { name: `${p}_HighScale` }));
  nodes.push(makeNode("Sub", [`${p}_shifted`, `${p}_high_base`], [`${p}_fields`], [], { name: `${p}_Field` }));
  inits.push(makeTensor(`${p}_codes_shape`, DataType.INT64, [shape.length], int64s(shape)));
  nodes.push(makeNode("Reshape", [`${p}_fields`, `${p}_codes_shape`], [out], [], { name: `${p}_ReshapeCodes` }));
  return m;
}

/** Slice [0, end) along `axis`, in the form the opset has (attributes below opset 10, inputs from 10). */
function sliceNode(p: string, input: string, output: string, axis: number, end: number, opset: number, inits: TensorProto[]): NodeProto {
  if (opset < 10) {
    return makeNode("Slice", [input], [output], [makeAttribute("starts", [0]), makeAttribute("ends", [end]), makeAttribute("axes", [axis])], {
      name: `${p}_Slice`,
    });
  }
  inits.push(makeTensor(`${p}_slice_starts`, DataType.INT64, [1], int64s([0])));
  inits.push(makeTensor(`${p}_slice_ends`, DataType.INT64, [1], int64s([end])));
  inits.push(makeTensor(`${p}_slice_axes`, DataType.INT64, [1], int64s([axis])));
  return makeNode("Slice", [input, `${p}_slice_starts`, `${p}_slice_ends`, `${p}_slice_axes`], [output], [], { name: `${p}_Slice` });
}

function checkTarget(target: EmitTarget): void {
  if (target.opset < MIN_EMIT_OPSET) {
    throw new Error(`the model's default-domain opset ${target.opset} is older than ${MIN_EMIT_OPSET}, the oldest the dequantizing nodes are written for`);
  }
  if (target.elemType === DataType.BFLOAT16 && target.opset < 13)
    throw new Error(`a bfloat16 consumer needs Cast to bfloat16, which opset ${target.opset} lacks (13+)`);
}

/** Reshape [blocks, blockSize, n] -> [kPadded, n], slice to K rows, MatMul. */
function finishSubgraph(
  p: string,
  input: string,
  output: string,
  w3: string,
  k: number,
  kPadded: number,
  n: number,
  nodes: NodeProto[],
  inits: TensorProto[],
  target: EmitTarget,
): void {
  inits.push(makeTensor(`${p}_shape`, DataType.INT64, [2], int64s([kPadded, n])));
  nodes.push(makeNode("Reshape", [w3, `${p}_shape`], [`${p}_w`], [], { name: `${p}_Reshape` }));
  let weight = `${p}_w`;
  if (kPadded !== k) {
    nodes.push(sliceNode(p, weight, `${p}_w_k`, 0, k, target.opset, inits));
    weight = `${p}_w_k`;
  }
  nodes.push(makeNode("MatMul", [input, weight], [output], [], { name: `${p}_MatMul` }));
}

function bnb4LayerGraph(p: string, input: string, output: string, q: TableQuantized): LayerGraph {
  const { n, k, blockSize } = q;
  const total = n * k;
  const packed = new Uint8Array(Math.ceil(total / 2));
  const raw = activeKernels();
  if (raw?.packNibblesHigh && q.codes.length >= total) raw.packNibblesHigh(q.codes, total, packed);
  else for (let i = 0; i < total; i += 2) packed[i >> 1] = (q.codes[i]! << 4) | (i + 1 < total ? q.codes[i + 1]! : 0);
  const inits = [makeTensor(`${p}_bnb4`, DataType.UINT8, [packed.length], packed), makeTensor(`${p}_absmax`, DataType.FLOAT, [q.scales.length], q.scales)];
  const node = makeNode(
    "MatMulBnb4",
    [input, inits[0]!.name, inits[1]!.name],
    [output],
    [makeAttribute("K", k), makeAttribute("N", n), makeAttribute("block_size", blockSize), makeAttribute("quant_type", q.format === "nf4" ? 1 : 0)],
    { name: `${p}_MatMulBnb4`, domain: "com.microsoft" },
  );
  return { nodes: [node], initializers: inits, storage: { storedBytes: packed.length + q.scales.length * 4, packedBytes: tablePackedBytes(q) } };
}

/** Table codes -> int32 indices -> Gather(table) -> `out` (float32), with codes packed. */
function lookupValues(
  p: string,
  q: TableQuantized,
  codes: Uint8Array,
  shape: readonly number[],
  out: string,
  nodes: NodeProto[],
  inits: TensorProto[],
): number {
  const stored = codesAsFloat(p, codes, q.codeBits, shape, `${p}_codes_f`, nodes, inits);
  inits.push(makeTensor(`${p}_table`, DataType.FLOAT, [q.table.length], q.table));
  nodes.push(makeNode("Cast", [`${p}_codes_f`], [`${p}_idx`], [makeAttribute("to", DataType.INT32)], { name: `${p}_CastIndex` }));
  nodes.push(makeNode("Gather", [`${p}_table`, `${p}_idx`], [out], [makeAttribute("axis", 0)], { name: `${p}_Lookup` }));
  return stored + q.table.length * 4;
}

function tableLayerGraph(p: string, input: string, output: string, q: TableQuantized, target: EmitTarget): LayerGraph {
  const { n, k, blocksPerRow, blockSize } = q;
  const kPadded = blocksPerRow * blockSize;
  const codes = codesBlocksFirst(q.codes, n, kPadded);
  const scales = perBlockBlocksFirst(q.scales, n, blocksPerRow, (len) => new Float32Array(len));
  const inits: TensorProto[] = [makeTensor(`${p}_scales`, DataType.FLOAT, [blocksPerRow, 1, n], scales)];
  const nodes: NodeProto[] = [];
  const stored = lookupValues(p, q, codes, [blocksPerRow, blockSize, n], `${p}_values`, nodes, inits);
  nodes.push(makeNode("Mul", [`${p}_values`, `${p}_scales`], [`${p}_w3`], [], { name: `${p}_Mul` }));
  finishSubgraph(p, input, output, `${p}_w3`, k, kPadded, n, nodes, inits, target);
  return { nodes, initializers: inits, storage: { storedBytes: stored + scales.length * 4, packedBytes: tablePackedBytes(q) } };
}

/** Nodes and initializers computing `output = input @ dequant(q)` (plus nothing else), in float32. */
export function layerGraph(
  prefix: string,
  input: string,
  output: string,
  q: AnyQuantized,
  form: ExecForm,
  accuracyLevel: number,
  target: EmitTarget = FLOAT_TARGET,
): LayerGraph {
  if (!formApplies(form, q)) throw new Error(`internal: ${isTable(q) ? q.format : `int${q.spec.bits}`} cannot execute as ${form}`);
  checkTarget(target);
  if (isTable(q)) return form === "matmulbnb4" ? bnb4LayerGraph(prefix, input, output, q) : tableLayerGraph(prefix, input, output, q, target);
  const { n, k, blocksPerRow } = q;
  const { bits, blockSize } = q.spec;
  if (form === "matmulnbits") {
    const t = toMatMulNBits(q);
    const container = containerBits(bits);
    // T (activations and scales) is float16 for a float16 consumer.
    const half = target.elemType === DataType.FLOAT16;
    const inits = [
      makeTensor(`${prefix}_Q${bits}`, DataType.UINT8, [n, blocksPerRow, (blockSize * container) / 8], t.b),
      half
        ? makeTensor(
            `${prefix}_scales`,
            DataType.FLOAT16,
            [n * blocksPerRow],
            Uint16Array.from(t.scales, (v) => floatToHalf(v)),
          )
        : makeTensor(`${prefix}_scales`, DataType.FLOAT, [n * blocksPerRow], t.scales),
    ];
    const inputs = [input, inits[0]!.name, inits[1]!.name];
    if (t.zeroPoints) {
      inits.push(makeTensor(`${prefix}_zp`, DataType.UINT8, [t.zeroPoints.length], t.zeroPoints));
      inputs.push(inits[2]!.name);
    }
    const node = makeNode(
      "MatMulNBits",
      inputs,
      [output],
      [
        makeAttribute("K", k),
        makeAttribute("N", n),
        makeAttribute("bits", container),
        makeAttribute("block_size", blockSize),
        makeAttribute("accuracy_level", accuracyLevel),
      ],
      { name: `${prefix}_MatMulNBits`, domain: "com.microsoft" },
    );
    const storedBytes = t.b.length + t.scales.length * (half ? 2 : 4) + (t.zeroPoints?.length ?? 0);
    return { nodes: [node], initializers: inits, storage: { storedBytes, packedBytes: packedBytes(q, half ? 2 : 4) } };
  }
  if (form === "dequantizelinear") {
    if (target.opset < BLOCKED_DQ_OPSET) throw new Error(`internal: dequantizelinear needs opset ${BLOCKED_DQ_OPSET}, the model has ${target.opset}`);
    // The MatMul's own [K, N] layout with blocks along axis 0 (a partial last block, no padding): the
    // pattern ONNX Runtime fuses into MatMulNBits at load.
    const p = prefix;
    const kPadded = blocksPerRow * blockSize;
    const codesKN = new Uint8Array(k * n);
    const raw = activeKernels();
    if (raw?.transposeU8) raw.transposeU8(q.codes, n, k, kPadded, codesKN, 1);
    else for (let row = 0; row < n; row++) for (let col = 0; col < k; col++) codesKN[col * n + row] = q.codes[row * kPadded + col]!;
    const inits: TensorProto[] = [];
    const nodes: NodeProto[] = [];
    const scales = perBlockBlocksFirst(q.scales, n, blocksPerRow, (len) => new Float32Array(len));
    const zps = perBlockBlocksFirst(q.zeroPoints, n, blocksPerRow, (len) => new Uint8Array(len));
    const storedBytes = dequantizeLinearNode(p, codesKN, [k, n], scales, zps, [blocksPerRow, n], 0, bits, blockSize, `${p}_w`, inits, nodes);
    nodes.push(makeNode("MatMul", [input, `${p}_w`], [output], [], { name: `${p}_MatMul` }));
    return { nodes, initializers: inits, storage: { storedBytes, packedBytes: packedBytes(q) }, form };
  }
  if (form !== "dequant-subgraph") throw new Error(`internal: int${bits} cannot execute as ${form}`);
  const kPadded = blocksPerRow * blockSize;
  const codes = codesBlocksFirst(q.codes, n, kPadded);
  const scales = perBlockBlocksFirst(q.scales, n, blocksPerRow, (len) => new Float32Array(len));
  const zps = perBlockBlocksFirst(q.zeroPoints, n, blocksPerRow, (len) => new Uint8Array(len));
  const p = prefix;
  const inits: TensorProto[] = [
    makeTensor(`${p}_zp`, DataType.UINT8, [blocksPerRow, 1, n], zps),
    makeTensor(`${p}_scales`, DataType.FLOAT, [blocksPerRow, 1, n], scales),
  ];
  const nodes: NodeProto[] = [];
  const codeBytes = codesAsFloat(p, codes, bits, [blocksPerRow, blockSize, n], `${p}_codes_f`, nodes, inits);
  nodes.push(makeNode("Cast", [`${p}_zp`], [`${p}_zp_f`], [makeAttribute("to", DataType.FLOAT)], { name: `${p}_CastZp` }));
  nodes.push(makeNode("Sub", [`${p}_codes_f`, `${p}_zp_f`], [`${p}_centered`], [], { name: `${p}_Sub` }));
  nodes.push(makeNode("Mul", [`${p}_centered`, `${p}_scales`], [`${p}_w3`], [], { name: `${p}_Mul` }));
  finishSubgraph(p, input, output, `${p}_w3`, k, kPadded, n, nodes, inits, target);
  return { nodes, initializers: inits, storage: { storedBytes: codeBytes + scales.length * 4 + zps.length, packedBytes: packedBytes(q) } };
}

function ensureOpset(proto: ModelProto, domain: string, version: number): void {
  if (!proto.opsetImport.some((o) => o.domain === domain)) {
    proto.opsetImport.push(create(OperatorSetIdProtoSchema, { domain, version: BigInt(version) }));
  }
}

function safeName(s: string): string {
  return s.replace(/[^A-Za-z0-9_./-]/g, "_");
}

/**
 * A tensor of the weight's original shape from its codes, for ops without a low-bit kernel (Conv,
 * ConvTranspose, Gather, LSTM/GRU/RNN, batched or float16 MatMul). Codes keep the quantizer's
 * [n][blocks][blockSize] layout; `transposeToKN` turns the [n, k] rows into a [k, n] MatMul weight.
 * The result is cast to the consumer's element type (float16/bfloat16 graphs).
 */
export function dequantTensorGraph(
  p: string,
  output: string,
  q: AnyQuantized,
  dims: readonly number[],
  target: EmitTarget = FLOAT_TARGET,
  transposeToKN = false,
  allowDequantizeLinear = false,
): LayerGraph {
  checkTarget(target);
  const { n, k, blocksPerRow } = q;
  const blockSize = isTable(q) ? q.blockSize : q.spec.blockSize;
  const kPadded = blocksPerRow * blockSize;
  const inits: TensorProto[] = [];
  const nodes: NodeProto[] = [];
  let storedBytes = 0;
  // At opset 21+ the standard blocked DequantizeLinear carries int3/int4/int8; otherwise float arithmetic.
  const useDq = allowDequantizeLinear && formApplies("dequantizelinear", q, target.opset);
  if (!useDq) {
    inits.push(makeTensor(`${p}_scales`, DataType.FLOAT, [n, blocksPerRow, 1], q.scales));
    storedBytes += q.scales.length * 4;
  }
  if (useDq && !isTable(q)) {
    storedBytes += blockedDequantize(p, q, `${p}_w2`, inits, nodes);
  } else if (isTable(q)) {
    storedBytes += lookupValues(p, q, q.codes, [n, blocksPerRow, blockSize], `${p}_values`, nodes, inits);
    nodes.push(makeNode("Mul", [`${p}_values`, `${p}_scales`], [`${p}_w3`], [], { name: `${p}_Mul` }));
  } else {
    storedBytes += codesAsFloat(p, q.codes, q.spec.bits, [n, blocksPerRow, blockSize], `${p}_codes_f`, nodes, inits);
    inits.push(makeTensor(`${p}_zp`, DataType.UINT8, [n, blocksPerRow, 1], q.zeroPoints));
    nodes.push(makeNode("Cast", [`${p}_zp`], [`${p}_zp_f`], [makeAttribute("to", DataType.FLOAT)], { name: `${p}_CastZp` }));
    nodes.push(makeNode("Sub", [`${p}_codes_f`, `${p}_zp_f`], [`${p}_centered`], [], { name: `${p}_Sub` }));
    nodes.push(makeNode("Mul", [`${p}_centered`, `${p}_scales`], [`${p}_w3`], [], { name: `${p}_Mul` }));
    storedBytes += q.zeroPoints.length;
  }
  if (!useDq) {
    inits.push(makeTensor(`${p}_rows`, DataType.INT64, [2], int64s([n, kPadded])));
    nodes.push(makeNode("Reshape", [`${p}_w3`, `${p}_rows`], [`${p}_w2`], [], { name: `${p}_ReshapeRows` }));
  }
  let flat = `${p}_w2`;
  if (kPadded !== k) {
    nodes.push(sliceNode(p, flat, `${p}_w2k`, 1, k, target.opset, inits));
    flat = `${p}_w2k`;
  }
  if (transposeToKN) {
    nodes.push(makeNode("Transpose", [flat], [`${p}_wkn`], [makeAttribute("perm", [1, 0])], { name: `${p}_TransposeKN` }));
    flat = `${p}_wkn`;
  }
  const typed = target.elemType === DataType.FLOAT ? output : `${p}_weight_f32`;
  inits.push(makeTensor(`${p}_dims`, DataType.INT64, [dims.length], int64s(dims)));
  nodes.push(makeNode("Reshape", [flat, `${p}_dims`], [typed], [], { name: `${p}_ReshapeWeight` }));
  if (typed !== output) {
    // Dequantize in float32 (exact for the codes and float32 scales), then round once to the consumer's type.
    nodes.push(makeNode("Cast", [typed], [output], [makeAttribute("to", target.elemType)], { name: `${p}_CastToConsumer` }));
  }
  const packed = isTable(q) ? tablePackedBytes(q) : packedBytes(q);
  const form: ExecForm = useDq ? "dequantizelinear" : isTable(q) ? "lookup-subgraph" : "dequant-subgraph";
  return { nodes, initializers: inits, storage: { storedBytes, packedBytes: packed }, form };
}

interface GraphEdits {
  readonly graph: GraphProto;
  readonly replaced: Map<number, NodeProto[]>;
  readonly newInits: TensorProto[];
  /** Chain nodes (Cast, Transpose, Constant...) that may be dead after the rewrite. */
  readonly chain: Set<NodeProto>;
}

/** The default-domain opset of a model (ONNX's rule: a model without an import is invalid, so refuse it). */
export function defaultOpset(proto: ModelProto): number {
  const v = opsetVersion(proto, "");
  if (v === undefined) throw new Error("the model imports no default-domain (ai.onnx) opset");
  return v;
}

/**
 * Rewrites the quantized weights. A weight that cannot be written at this model's opset or for its
 * consumer (or whose form is in `floatFallback`) stays float and is returned in `refused` with why;
 * `formOf` picks a weight's form (by index), overriding the per-format choice.
 */
export function emitModel(
  source: ModelProto,
  weights: readonly QuantizedWeight[],
  forms: ReadonlyMap<WeightFormat, ExecForm>,
  accuracyLevel: number,
  formOf: ReadonlyMap<number, ExecForm> = new Map(),
): EmittedModel {
  const proto = cloneModel(source);
  const main = proto.graph!;
  const opset = defaultOpset(source);
  const edits = new Map<string, GraphEdits>();
  const roots = new Set<string>();
  const layers: EmittedLayer[] = [];
  const layerIndex: number[] = [];
  const refused: RefusedWeight[] = [];
  const usedPrefixes = new Set<string>();
  for (const [index, w] of weights.entries()) {
    const { site, format } = w.plan;
    const key = JSON.stringify(site.graphPath);
    let e = edits.get(key);
    if (!e) edits.set(key, (e = { graph: graphAt(main, site.graphPath), replaced: new Map(), newInits: [], chain: new Set() }));
    const graph = e.graph;
    const node = graph.node[site.nodeIndex]!;
    let prefix = safeName(`${site.nodeName}_${site.inputIndex}_${format}`);
    // Names are one namespace across the main graph and its subgraphs.
    while (usedPrefixes.has(prefix)) prefix = `${prefix}_${usedPrefixes.size}`;
    usedPrefixes.add(prefix);
    const target: EmitTarget = { opset, elemType: site.consumerType };
    const weightCount = site.k * site.n;
    let built: { nodes: NodeProto[]; inits: TensorProto[]; storage: LayerStorage; form: ExecForm; rewire?: string; replaceNode: boolean };
    try {
      built = buildWeight(w, prefix, node, graph, target, forms.get(format), formOf.get(index), accuracyLevel);
    } catch (err) {
      refused.push({ index, name: site.name, nodeName: site.nodeName, reason: (err as Error).message });
      continue;
    }
    if (e.replaced.has(site.nodeIndex) && built.replaceNode) throw new Error(`internal: node ${site.nodeName} rewritten twice`);
    for (const c of site.chainNodes) e.chain.add(graph.node[c]!);
    roots.add(site.name);
    e.newInits.push(...built.inits);
    if (built.rewire) {
      for (const r of site.readers) graph.node[r.nodeIndex]!.input[r.inputIndex] = built.rewire;
      // The dequantizing nodes go right before the first reader (topological order is kept).
      const first = Math.min(...site.readers.map((r) => r.nodeIndex));
      const before = e.replaced.get(first) ?? [graph.node[first]!];
      e.replaced.set(first, [...built.nodes, ...before]);
    } else {
      e.replaced.set(site.nodeIndex, built.nodes);
    }
    // Stored bytes are those of the tensors written for the weight (a Gemm bias rescaled by beta is not the weight's).
    const storageTensors = built.inits.filter((t) => t.name !== `${prefix}_bias`);
    layers.push({
      name: site.name,
      nodeName: site.nodeName,
      format,
      form: built.form,
      weights: weightCount,
      floatBytes: weightCount * 4,
      tensors: storageTensors.map((t) => t.name),
      nodes: built.nodes.filter((n) => n !== node).map((n) => n.name),
      storedBytes: storageTensors.reduce((a, t) => a + tensorDataBytes(t), 0),
      packedBytes: built.storage.packedBytes,
    });
    layerIndex.push(index);
    if (built.form === "matmulnbits" || built.form === "matmulbnb4") ensureOpset(proto, "com.microsoft", 1);
  }
  for (const e of edits.values()) {
    e.graph.node = e.graph.node.flatMap((node, i) => e.replaced.get(i) ?? [node]);
    e.graph.initializer.push(...e.newInits);
  }
  removeDeadWeights(main, edits, roots);
  proto.producerName = "quantgate";
  return { proto, layers, layerIndex, refused };
}

function buildWeight(
  w: QuantizedWeight,
  prefix: string,
  node: NodeProto,
  graph: GraphProto,
  target: EmitTarget,
  formatForm: ExecForm | undefined,
  pinned: ExecForm | undefined,
  accuracyLevel: number,
): { nodes: NodeProto[]; inits: TensorProto[]; storage: LayerStorage; form: ExecForm; rewire?: string; replaceNode: boolean } {
  const { site } = w.plan;
  const subgraphForm: ExecForm = isTable(w.q) ? "lookup-subgraph" : "dequant-subgraph";
  // Consumers that compute in float16/bfloat16 keep their op and read a dequantized tensor of their type:
  // the float32 MatMul of the product forms would bind a different type. A float16 MatMul takes MatMulNBits with
  // T = float16 (float16 scales) instead: ONNX Runtime 1.30's CPU kernel accepts it, and it peaks at 0.17x the
  // memory of the dequantizing subgraph that ONNX Runtime folds at load (docs/models.md, bench/fp16-matmulnbits.mjs).
  const halfMatMulNBits =
    site.kind === "product" &&
    target.elemType === DataType.FLOAT16 &&
    site.opType === "MatMul" &&
    !isTable(w.q) &&
    (pinned ?? formatForm ?? "matmulnbits") === "matmulnbits" &&
    formApplies("matmulnbits", w.q, target.opset);
  const asTensor = site.kind === "dequant" || (target.elemType !== DataType.FLOAT && !halfMatMulNBits);
  if (asTensor) {
    if (w.inputScales || w.lowRank) throw new Error("AWQ scales and low-rank branches need the product form, which a float16/bfloat16 consumer cannot take");
    if (site.alpha !== 1) throw new Error(`Gemm alpha ${site.alpha} with a float16/bfloat16 weight: the dequantized weight would be scaled twice`);
    const out = `${prefix}_weight`;
    // DequantizeLinear is not folded at load (it dequantizes on every run), so tensors take it only when it was chosen.
    const chosen = pinned ?? formatForm;
    const lg = dequantTensorGraph(prefix, out, w.q, site.dims, target, site.kind === "product" && !site.transposed, chosen === "dequantizelinear");
    return { nodes: lg.nodes, inits: lg.initializers, storage: lg.storage, form: lg.form ?? subgraphForm, rewire: out, replaceNode: false };
  }
  const initByName = new Map(graph.initializer.map((t) => [t.name, t]));
  let form = pinned ?? formatForm ?? (isTable(w.q) ? "lookup-subgraph" : "matmulnbits");
  // The form measured on the largest layer may not fit this one (MatMulBnb4 needs K % block == 0).
  if (!formApplies(form, w.q, target.opset)) form = subgraphForm;
  const output = node.output[0]!;
  const nodes: NodeProto[] = [];
  const inits: TensorProto[] = [];
  let input = node.input[0]!;
  let extraFloatBytes = 0;
  // A float16 MatMul (MatMulNBits with T = float16) takes its AWQ scales and low-rank branch in float16 too.
  const half = target.elemType === DataType.FLOAT16;
  if (w.inputScales) {
    // AWQ: W was quantized as W*diag(s); x*(1/s) keeps the product equal.
    inits.push(
      half
        ? makeTensor(
            `${prefix}_awq_inv_scales`,
            DataType.FLOAT16,
            [site.k],
            Uint16Array.from(w.inputScales, (v) => floatToHalf(v)),
          )
        : makeTensor(`${prefix}_awq_inv_scales`, DataType.FLOAT, [site.k], w.inputScales),
    );
    nodes.push(makeNode("Mul", [input, `${prefix}_awq_inv_scales`], [`${prefix}_awq_input`], [], { name: `${prefix}_AwqScale` }));
    input = `${prefix}_awq_input`;
    extraFloatBytes += site.k * (half ? 2 : 4);
  }
  const isGemmWithBias = site.opType === "Gemm" && (node.input[2] ?? "") !== "";
  const needsSum = isGemmWithBias || w.lowRank !== undefined;
  const product = needsSum ? `${prefix}_product` : output;
  const lg = layerGraph(prefix, input, product, w.q, form, accuracyLevel, target);
  nodes.push(...lg.nodes);
  inits.push(...lg.initializers);
  let sum = product;
  if (w.lowRank) {
    // Low-rank error correction: y += (x @ A) @ B, a small float16 branch on the original input.
    const { aHalf, bHalf, rank } = w.lowRank;
    inits.push(makeTensor(`${prefix}_lr_a`, DataType.FLOAT16, [site.k, rank], aHalf));
    inits.push(makeTensor(`${prefix}_lr_b`, DataType.FLOAT16, [rank, site.n], bHalf));
    let a = `${prefix}_lr_a`;
    let b = `${prefix}_lr_b`;
    if (!half) {
      const toFloat = [makeAttribute("to", DataType.FLOAT)];
      nodes.push(makeNode("Cast", [a], [`${prefix}_lr_a_f`], toFloat, { name: `${prefix}_LowRankCastA` }));
      nodes.push(makeNode("Cast", [b], [`${prefix}_lr_b_f`], toFloat, { name: `${prefix}_LowRankCastB` }));
      a = `${prefix}_lr_a_f`;
      b = `${prefix}_lr_b_f`;
    }
    nodes.push(makeNode("MatMul", [node.input[0]!, a], [`${prefix}_lr_mid`], [], { name: `${prefix}_LowRankA` }));
    nodes.push(makeNode("MatMul", [`${prefix}_lr_mid`, b], [`${prefix}_lr_out`], [], { name: `${prefix}_LowRankB` }));
    const target2 = isGemmWithBias ? `${prefix}_corrected` : output;
    nodes.push(makeNode("Add", [product, `${prefix}_lr_out`], [target2], [], { name: `${prefix}_LowRankAdd` }));
    sum = target2;
    extraFloatBytes += rank * (site.k + site.n) * 2;
  }
  if (isGemmWithBias) {
    const c = node.input[2]!;
    const beta = getFloatAttr(node, "beta", 1);
    let bias = c;
    if (beta !== 1) {
      const cTensor = initByName.get(c)!;
      const scaled = tensorToFloat32(cTensor).map((v) => Math.fround(v * beta));
      bias = `${prefix}_bias`;
      inits.push(makeTensor(bias, DataType.FLOAT, cTensor.dims.map(Number), scaled));
    }
    nodes.push(makeNode("Add", [sum, bias], [output], [], { name: `${prefix}_AddBias` }));
  }
  const storage = { storedBytes: lg.storage.storedBytes + extraFloatBytes, packedBytes: lg.storage.packedBytes + extraFloatBytes };
  return { nodes, inits, storage, form, replaceNode: true };
}

/** Drop the chain nodes and the float tensors the rewrite left unread (never anything still read). */
function removeDeadWeights(main: GraphProto, edits: ReadonlyMap<string, GraphEdits>, roots: ReadonlySet<string>): void {
  for (let changed = true; changed;) {
    changed = false;
    const reads = readCounts(main);
    for (const e of edits.values()) {
      const outputs = new Set(e.graph.output.map((o) => o.name));
      const before = e.graph.node.length;
      e.graph.node = e.graph.node.filter((n) => !e.chain.has(n) || n.output.some((o) => (reads.get(o) ?? 0) > 0 || outputs.has(o)));
      if (e.graph.node.length !== before) changed = true;
    }
  }
  const reads = readCounts(main);
  const prune = (g: GraphProto): void => {
    const outputs = new Set(g.output.map((o) => o.name));
    g.initializer = g.initializer.filter((t) => !roots.has(t.name) || (reads.get(t.name) ?? 0) > 0 || outputs.has(t.name));
    for (const n of g.node) for (const a of n.attribute) [a.g, ...a.graphs].forEach((sub) => sub && prune(sub));
  };
  prune(main);
}
