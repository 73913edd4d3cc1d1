// The emit stage: rewrite each quantized MatMul/Gemm into the ONNX Runtime form chosen for its format.
import { create } from "@bufbuild/protobuf";
import { OperatorSetIdProtoSchema } from "onnx-buf";
import type { WeightFormat } from "../config/schema.js";
import {
  cloneModel,
  DataType,
  getFloatAttr,
  makeAttribute,
  makeNode,
  makeTensor,
  tensorToFloat32,
  type ModelProto,
  type NodeProto,
  type TensorProto,
} from "../onnx/model.js";
import { containerBits, toMatMulNBits, type BlockwiseQuantized } from "../quantize/blockwise.js";
import { tablePackedBytes, type TableQuantized } from "../quantize/tables.js";
import type { QuantizedWeight } from "../quantize/index.js";

/**
 * How a quantized weight executes in ONNX Runtime. Every form computes with exactly the dequantized
 * values the quantizer defines (at accuracy_level 0):
 * - matmulnbits: com.microsoft.MatMulNBits on packed codes (int2/int4/int8; int3 in a 4-bit container).
 * - dequant-subgraph: uint8 codes -> Cast -> Sub(zp) -> Mul(scale) -> MatMul, standard ops only.
 * - lookup-subgraph: uint8 codes -> Cast -> Gather(table) -> Mul(block scale) -> MatMul, for table
 *   formats (NF4, FP4 E2M1, MXFP4, FP8 E4M3, codebooks), standard ops only.
 */
export type ExecForm = "matmulnbits" | "dequant-subgraph" | "lookup-subgraph";

export type AnyQuantized = BlockwiseQuantized | TableQuantized;

export function isTable(q: AnyQuantized): q is TableQuantized {
  return "table" in q;
}

export interface LayerStorage {
  /** Bytes of the quantized weight as stored in the emitted ONNX file (codes + scales + zero points). */
  readonly storedBytes: number;
  /** Bytes of the densely packed form (bits per code exactly), what a deployment of the format needs. */
  readonly packedBytes: number;
}

export interface EmittedLayer extends LayerStorage {
  readonly name: string;
  readonly nodeName: string;
  readonly format: WeightFormat;
  readonly form: ExecForm;
  readonly floatBytes: number;
}

export interface EmittedModel {
  readonly proto: ModelProto;
  readonly layers: EmittedLayer[];
}

export interface LayerGraph {
  readonly nodes: NodeProto[];
  readonly initializers: TensorProto[];
  readonly storage: LayerStorage;
}

/** Dense storage of a block-wise quantized weight: codes at `bits` each, fp32 scales, zero points at `bits` each. */
export function packedBytes(q: BlockwiseQuantized): number {
  const blocks = q.n * q.blocksPerRow;
  const codeBits = q.n * q.k * q.spec.bits;
  const zpBits = q.spec.symmetric ? 0 : blocks * q.spec.bits;
  return Math.ceil(codeBits / 8) + blocks * 4 + Math.ceil(zpBits / 8);
}

/** Codes [n][blocksPerRow*blockSize] -> [blocks, blockSize, n] so per-block values broadcast as [blocks, 1, n]. */
function codesBlocksFirst(codes: Uint8Array, n: number, kPadded: number): Uint8Array {
  const out = new Uint8Array(kPadded * n);
  for (let row = 0; row < n; row++) {
    for (let col = 0; col < kPadded; col++) out[col * n + row] = codes[row * kPadded + col]!;
  }
  return out;
}

function perBlockBlocksFirst<T extends Float32Array | Uint8Array>(values: T, n: number, blocksPerRow: number, make: (len: number) => T): T {
  const out = make(values.length);
  for (let row = 0; row < n; row++) {
    for (let b = 0; b < blocksPerRow; b++) out[b * n + row] = values[row * blocksPerRow + b]!;
  }
  return out;
}

/** Reshape [blocks, blockSize, n] -> [kPadded, n], slice to K rows, MatMul. */
function finishSubgraph(p: string, input: string, output: string, w3: string, k: number, kPadded: number, n: number, nodes: NodeProto[], inits: TensorProto[]): void {
  inits.push(makeTensor(`${p}_shape`, DataType.INT64, [2], BigInt64Array.from([BigInt(kPadded), BigInt(n)])));
  nodes.push(makeNode("Reshape", [w3, `${p}_shape`], [`${p}_w`], [], { name: `${p}_Reshape` }));
  let weight = `${p}_w`;
  if (kPadded !== k) {
    inits.push(makeTensor(`${p}_slice_starts`, DataType.INT64, [1], BigInt64Array.from([0n])));
    inits.push(makeTensor(`${p}_slice_ends`, DataType.INT64, [1], BigInt64Array.from([BigInt(k)])));
    inits.push(makeTensor(`${p}_slice_axes`, DataType.INT64, [1], BigInt64Array.from([0n])));
    nodes.push(makeNode("Slice", [weight, `${p}_slice_starts`, `${p}_slice_ends`, `${p}_slice_axes`], [`${p}_w_k`], [], { name: `${p}_Slice` }));
    weight = `${p}_w_k`;
  }
  nodes.push(makeNode("MatMul", [input, weight], [output], [], { name: `${p}_MatMul` }));
}

function tableLayerGraph(p: string, input: string, output: string, q: TableQuantized): LayerGraph {
  const { n, k, blocksPerRow, blockSize } = q;
  const kPadded = blocksPerRow * blockSize;
  const codes = codesBlocksFirst(q.codes, n, kPadded);
  const scales = perBlockBlocksFirst(q.scales, n, blocksPerRow, (len) => new Float32Array(len));
  const inits: TensorProto[] = [
    makeTensor(`${p}_codes`, DataType.UINT8, [blocksPerRow, blockSize, n], codes),
    makeTensor(`${p}_table`, DataType.FLOAT, [q.table.length], q.table),
    makeTensor(`${p}_scales`, DataType.FLOAT, [blocksPerRow, 1, n], scales),
  ];
  const nodes = [
    makeNode("Cast", [`${p}_codes`], [`${p}_idx`], [makeAttribute("to", DataType.INT32)], { name: `${p}_CastCodes` }),
    makeNode("Gather", [`${p}_table`, `${p}_idx`], [`${p}_values`], [makeAttribute("axis", 0)], { name: `${p}_Lookup` }),
    makeNode("Mul", [`${p}_values`, `${p}_scales`], [`${p}_w3`], [], { name: `${p}_Mul` }),
  ];
  finishSubgraph(p, input, output, `${p}_w3`, k, kPadded, n, nodes, inits);
  const storedBytes = codes.length + scales.length * 4 + q.table.length * 4;
  return { nodes, initializers: inits, storage: { storedBytes, packedBytes: tablePackedBytes(q) } };
}

/** Nodes and initializers computing `output = input @ dequant(q)` (plus nothing else). */
export function layerGraph(prefix: string, input: string, output: string, q: AnyQuantized, form: ExecForm, accuracyLevel: number): LayerGraph {
  if (isTable(q)) {
    if (form !== "lookup-subgraph") throw new Error(`internal: ${q.format} cannot execute as ${form}`);
    return tableLayerGraph(prefix, input, output, q);
  }
  const { n, k, blocksPerRow } = q;
  const { bits, blockSize } = q.spec;
  if (form === "matmulnbits") {
    const t = toMatMulNBits(q);
    const container = containerBits(bits);
    const inits = [
      makeTensor(`${prefix}_Q${bits}`, DataType.UINT8, [n, blocksPerRow, (blockSize * container) / 8], t.b),
      makeTensor(`${prefix}_scales`, DataType.FLOAT, [n * blocksPerRow], t.scales),
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
        makeAttribute("bits", bits),
        makeAttribute("block_size", blockSize),
        makeAttribute("accuracy_level", accuracyLevel),
      ],
      { name: `${prefix}_MatMulNBits`, domain: "com.microsoft" },
    );
    const storedBytes = t.b.length + t.scales.length * 4 + (t.zeroPoints?.length ?? 0);
    return { nodes: [node], initializers: inits, storage: { storedBytes, packedBytes: packedBytes(q) } };
  }
  if (form !== "dequant-subgraph") throw new Error(`internal: int${bits} cannot execute as ${form}`);
  const kPadded = blocksPerRow * blockSize;
  const codes = codesBlocksFirst(q.codes, n, kPadded);
  const scales = perBlockBlocksFirst(q.scales, n, blocksPerRow, (len) => new Float32Array(len));
  const zps = perBlockBlocksFirst(q.zeroPoints, n, blocksPerRow, (len) => new Uint8Array(len));
  const p = prefix;
  const inits: TensorProto[] = [
    makeTensor(`${p}_codes`, DataType.UINT8, [blocksPerRow, blockSize, n], codes),
    makeTensor(`${p}_zp`, DataType.UINT8, [blocksPerRow, 1, n], zps),
    makeTensor(`${p}_scales`, DataType.FLOAT, [blocksPerRow, 1, n], scales),
  ];
  const toFloat = [makeAttribute("to", DataType.FLOAT)];
  const nodes = [
    makeNode("Cast", [`${p}_codes`], [`${p}_codes_f`], toFloat, { name: `${p}_CastCodes` }),
    makeNode("Cast", [`${p}_zp`], [`${p}_zp_f`], toFloat, { name: `${p}_CastZp` }),
    makeNode("Sub", [`${p}_codes_f`, `${p}_zp_f`], [`${p}_centered`], [], { name: `${p}_Sub` }),
    makeNode("Mul", [`${p}_centered`, `${p}_scales`], [`${p}_w3`], [], { name: `${p}_Mul` }),
  ];
  finishSubgraph(p, input, output, `${p}_w3`, k, kPadded, n, nodes, inits);
  return { nodes, initializers: inits, storage: { storedBytes: codes.length + scales.length * 4 + zps.length, packedBytes: packedBytes(q) } };
}

function ensureOpset(proto: ModelProto, domain: string, version: number): void {
  if (!proto.opsetImport.some((o) => o.domain === domain)) {
    proto.opsetImport.push(create(OperatorSetIdProtoSchema, { domain, version: BigInt(version) }));
  }
}

function safeName(s: string): string {
  return s.replace(/[^A-Za-z0-9_./-]/g, "_");
}

export function emitModel(
  source: ModelProto,
  weights: readonly QuantizedWeight[],
  forms: ReadonlyMap<WeightFormat, ExecForm>,
  accuracyLevel: number,
): EmittedModel {
  const proto = cloneModel(source);
  const graph = proto.graph!;
  const replaced = new Map<number, NodeProto[]>();
  const newInits: TensorProto[] = [];
  const removed = new Set<string>();
  const layers: EmittedLayer[] = [];
  const initByName = new Map(graph.initializer.map((t) => [t.name, t]));
  for (const w of weights) {
    const { site, format } = w.plan;
    const node = graph.node[site.nodeIndex]!;
    const form = forms.get(format) ?? "matmulnbits";
    const prefix = safeName(`${site.nodeName}_${format}`);
    const input = node.input[0]!;
    const output = node.output[0]!;
    const isGemmWithBias = site.opType === "Gemm" && (node.input[2] ?? "") !== "";
    const product = isGemmWithBias ? `${prefix}_product` : output;
    const lg = layerGraph(prefix, input, product, w.q, form, accuracyLevel);
    const nodes = [...lg.nodes];
    newInits.push(...lg.initializers);
    if (isGemmWithBias) {
      const c = node.input[2]!;
      const beta = getFloatAttr(node, "beta", 1);
      let bias = c;
      if (beta !== 1) {
        const cTensor = initByName.get(c)!;
        const scaled = tensorToFloat32(cTensor).map((v) => Math.fround(v * beta));
        bias = `${prefix}_bias`;
        newInits.push(makeTensor(bias, DataType.FLOAT, cTensor.dims.map(Number), scaled));
      }
      nodes.push(makeNode("Add", [product, bias], [output], [], { name: `${prefix}_AddBias` }));
    }
    replaced.set(site.nodeIndex, nodes);
    removed.add(site.name);
    layers.push({
      name: site.name,
      nodeName: site.nodeName,
      format,
      form,
      floatBytes: site.k * site.n * 4,
      ...lg.storage,
    });
    if (form === "matmulnbits") ensureOpset(proto, "com.microsoft", 1);
  }
  graph.node = graph.node.flatMap((node, i) => replaced.get(i) ?? [node]);
  const stillUsed = new Set(graph.node.flatMap((n) => n.input));
  graph.initializer = [...graph.initializer.filter((t) => !removed.has(t.name) || stillUsed.has(t.name)), ...newInits];
  proto.producerName = "quantgate";
  return { proto, layers };
}
