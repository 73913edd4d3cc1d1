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
  type GraphProto,
  type ModelProto,
  type NodeProto,
  type TensorProto,
} from "../onnx/model.js";
import { containerBits, toMatMulNBits, type BlockwiseQuantized } from "../quantize/blockwise.js";
import { tablePackedBytes, type TableQuantized } from "../quantize/tables.js";
import { isTable, type AnyQuantized, type QuantizedWeight } from "../quantize/index.js";
import { graphAt, readCounts } from "../onnx/weights.js";

/**
 * How a quantized weight executes in ONNX Runtime. Every form computes with exactly the dequantized
 * values the quantizer defines (at accuracy_level 0):
 * - matmulnbits: com.microsoft.MatMulNBits on packed codes (int2/int4/int8; int3 in a 4-bit container).
 * - dequant-subgraph: uint8 codes -> Cast -> Sub(zp) -> Mul(scale) -> MatMul, standard ops only.
 * - lookup-subgraph: uint8 codes -> Cast -> Gather(table) -> Mul(block scale) -> MatMul, for table
 *   formats (NF4, FP4 E2M1, MXFP4, FP8 E4M3, codebooks), standard ops only.
 * - matmulbnb4: com.microsoft.MatMulBnb4 (NF4 quant_type 1, bitsandbytes FP4 quant_type 0) on codes
 *   packed two per byte, first code in the high nibble, blocks over the flattened [N, K] weight
 *   (so only when K is a multiple of the block size, where those blocks equal ours).
 * DequantizeLinear with FLOAT4E2M1 (opset 23) would be the standard form for FP4, but ONNX Runtime 1.30
 * has no CPU kernel for it (test/ort-forms.test.ts), so FP4 and MXFP4 fall back to lookup-subgraph.
 */
export type ExecForm = "matmulnbits" | "dequant-subgraph" | "lookup-subgraph" | "matmulbnb4";

/** Whether a form can carry this weight at all (before timing it). */
export function formApplies(form: ExecForm, q: AnyQuantized): boolean {
  if (form === "matmulbnb4") return isTable(q) && (q.format === "nf4" || q.format === "bnb-fp4") && q.k % q.blockSize === 0;
  if (form === "lookup-subgraph") return isTable(q);
  return !isTable(q);
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
): void {
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

function bnb4LayerGraph(p: string, input: string, output: string, q: TableQuantized): LayerGraph {
  const { n, k, blockSize } = q;
  const total = n * k;
  const packed = new Uint8Array(Math.ceil(total / 2));
  for (let i = 0; i < total; i += 2) packed[i >> 1] = (q.codes[i]! << 4) | (i + 1 < total ? q.codes[i + 1]! : 0);
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
  if (!formApplies(form, q)) throw new Error(`internal: ${isTable(q) ? q.format : `int${q.spec.bits}`} cannot execute as ${form}`);
  if (isTable(q)) return form === "matmulbnb4" ? bnb4LayerGraph(prefix, input, output, q) : tableLayerGraph(prefix, input, output, q);
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
        makeAttribute("bits", container),
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

/**
 * A float tensor of the weight's original shape from its codes: for ops without a low-bit kernel
 * (Conv, ConvTranspose, Gather, batched MatMul). Codes keep the quantizer's [n][blocks][blockSize] layout.
 */
export function dequantTensorGraph(p: string, output: string, q: AnyQuantized, dims: readonly number[]): LayerGraph {
  const { n, k, blocksPerRow } = q;
  const blockSize = isTable(q) ? q.blockSize : q.spec.blockSize;
  const kPadded = blocksPerRow * blockSize;
  const inits: TensorProto[] = [
    makeTensor(`${p}_codes`, DataType.UINT8, [n, blocksPerRow, blockSize], q.codes),
    makeTensor(`${p}_scales`, DataType.FLOAT, [n, blocksPerRow, 1], q.scales),
  ];
  const nodes: NodeProto[] = [];
  let storedBytes = q.codes.length + q.scales.length * 4;
  if (isTable(q)) {
    inits.push(makeTensor(`${p}_table`, DataType.FLOAT, [q.table.length], q.table));
    nodes.push(makeNode("Cast", [`${p}_codes`], [`${p}_idx`], [makeAttribute("to", DataType.INT32)], { name: `${p}_CastCodes` }));
    nodes.push(makeNode("Gather", [`${p}_table`, `${p}_idx`], [`${p}_values`], [makeAttribute("axis", 0)], { name: `${p}_Lookup` }));
    nodes.push(makeNode("Mul", [`${p}_values`, `${p}_scales`], [`${p}_w3`], [], { name: `${p}_Mul` }));
    storedBytes += q.table.length * 4;
  } else {
    inits.push(makeTensor(`${p}_zp`, DataType.UINT8, [n, blocksPerRow, 1], q.zeroPoints));
    const toFloat = [makeAttribute("to", DataType.FLOAT)];
    nodes.push(makeNode("Cast", [`${p}_codes`], [`${p}_codes_f`], toFloat, { name: `${p}_CastCodes` }));
    nodes.push(makeNode("Cast", [`${p}_zp`], [`${p}_zp_f`], toFloat, { name: `${p}_CastZp` }));
    nodes.push(makeNode("Sub", [`${p}_codes_f`, `${p}_zp_f`], [`${p}_centered`], [], { name: `${p}_Sub` }));
    nodes.push(makeNode("Mul", [`${p}_centered`, `${p}_scales`], [`${p}_w3`], [], { name: `${p}_Mul` }));
    storedBytes += q.zeroPoints.length;
  }
  inits.push(makeTensor(`${p}_rows`, DataType.INT64, [2], BigInt64Array.from([BigInt(n), BigInt(kPadded)])));
  nodes.push(makeNode("Reshape", [`${p}_w3`, `${p}_rows`], [`${p}_w2`], [], { name: `${p}_ReshapeRows` }));
  let flat = `${p}_w2`;
  if (kPadded !== k) {
    inits.push(makeTensor(`${p}_slice_starts`, DataType.INT64, [1], BigInt64Array.from([0n])));
    inits.push(makeTensor(`${p}_slice_ends`, DataType.INT64, [1], BigInt64Array.from([BigInt(k)])));
    inits.push(makeTensor(`${p}_slice_axes`, DataType.INT64, [1], BigInt64Array.from([1n])));
    nodes.push(makeNode("Slice", [flat, `${p}_slice_starts`, `${p}_slice_ends`, `${p}_slice_axes`], [`${p}_w2k`], [], { name: `${p}_Slice` }));
    flat = `${p}_w2k`;
  }
  inits.push(makeTensor(`${p}_dims`, DataType.INT64, [dims.length], BigInt64Array.from(dims.map((d) => BigInt(d)))));
  nodes.push(makeNode("Reshape", [flat, `${p}_dims`], [output], [], { name: `${p}_ReshapeWeight` }));
  const packed = isTable(q) ? tablePackedBytes(q) : packedBytes(q);
  return { nodes, initializers: inits, storage: { storedBytes, packedBytes: packed } };
}

interface GraphEdits {
  readonly graph: GraphProto;
  readonly replaced: Map<number, NodeProto[]>;
  readonly newInits: TensorProto[];
  /** Chain nodes (Cast, Transpose, Constant...) that may be dead after the rewrite. */
  readonly chain: Set<NodeProto>;
}

export function emitModel(
  source: ModelProto,
  weights: readonly QuantizedWeight[],
  forms: ReadonlyMap<WeightFormat, ExecForm>,
  accuracyLevel: number,
): EmittedModel {
  const proto = cloneModel(source);
  const main = proto.graph!;
  const edits = new Map<string, GraphEdits>();
  const roots = new Set<string>();
  const layers: EmittedLayer[] = [];
  const usedPrefixes = new Set<string>();
  for (const w of weights) {
    const { site, format } = w.plan;
    const key = JSON.stringify(site.graphPath);
    let e = edits.get(key);
    if (!e) edits.set(key, (e = { graph: graphAt(main, site.graphPath), replaced: new Map(), newInits: [], chain: new Set() }));
    const { graph, newInits } = e;
    const node = graph.node[site.nodeIndex]!;
    for (const c of site.chainNodes) e.chain.add(graph.node[c]!);
    roots.add(site.name);
    let prefix = safeName(`${site.nodeName}_${format}`);
    // Names are one namespace across the main graph and its subgraphs.
    while (usedPrefixes.has(prefix)) prefix = `${prefix}_${usedPrefixes.size}`;
    usedPrefixes.add(prefix);
    if (site.kind === "dequant") {
      const form: ExecForm = isTable(w.q) ? "lookup-subgraph" : "dequant-subgraph";
      const lg = dequantTensorGraph(prefix, `${prefix}_weight`, w.q, site.dims);
      newInits.push(...lg.initializers);
      for (const r of site.readers) graph.node[r.nodeIndex]!.input[r.inputIndex] = `${prefix}_weight`;
      e.replaced.set(site.nodeIndex, [...lg.nodes, node]);
      layers.push({ name: site.name, nodeName: site.nodeName, format, form, floatBytes: site.k * site.n * 4, ...lg.storage });
      continue;
    }
    const initByName = new Map(graph.initializer.map((t) => [t.name, t]));
    let form = forms.get(format) ?? (isTable(w.q) ? "lookup-subgraph" : "matmulnbits");
    // The form measured on the largest layer may not fit this one (MatMulBnb4 needs K % block == 0).
    if (!formApplies(form, w.q)) form = isTable(w.q) ? "lookup-subgraph" : "dequant-subgraph";
    const output = node.output[0]!;
    const nodes: NodeProto[] = [];
    let input = node.input[0]!;
    let extraFloatBytes = 0;
    if (w.inputScales) {
      // AWQ: W was quantized as W*diag(s); x*(1/s) keeps the product equal.
      newInits.push(makeTensor(`${prefix}_awq_inv_scales`, DataType.FLOAT, [site.k], w.inputScales));
      nodes.push(makeNode("Mul", [input, `${prefix}_awq_inv_scales`], [`${prefix}_awq_input`], [], { name: `${prefix}_AwqScale` }));
      input = `${prefix}_awq_input`;
      extraFloatBytes += site.k * 4;
    }
    const isGemmWithBias = site.opType === "Gemm" && (node.input[2] ?? "") !== "";
    const needsSum = isGemmWithBias || w.lowRank !== undefined;
    const product = needsSum ? `${prefix}_product` : output;
    const lg = layerGraph(prefix, input, product, w.q, form, accuracyLevel);
    nodes.push(...lg.nodes);
    newInits.push(...lg.initializers);
    let sum = product;
    if (w.lowRank) {
      // Low-rank error correction: y += (x @ A) @ B, a small float16 branch on the original input.
      const { aHalf, bHalf, rank } = w.lowRank;
      newInits.push(makeTensor(`${prefix}_lr_a`, DataType.FLOAT16, [site.k, rank], aHalf));
      newInits.push(makeTensor(`${prefix}_lr_b`, DataType.FLOAT16, [rank, site.n], bHalf));
      const toFloat = [makeAttribute("to", DataType.FLOAT)];
      nodes.push(makeNode("Cast", [`${prefix}_lr_a`], [`${prefix}_lr_a_f`], toFloat, { name: `${prefix}_LowRankCastA` }));
      nodes.push(makeNode("Cast", [`${prefix}_lr_b`], [`${prefix}_lr_b_f`], toFloat, { name: `${prefix}_LowRankCastB` }));
      nodes.push(makeNode("MatMul", [node.input[0]!, `${prefix}_lr_a_f`], [`${prefix}_lr_mid`], [], { name: `${prefix}_LowRankA` }));
      nodes.push(makeNode("MatMul", [`${prefix}_lr_mid`, `${prefix}_lr_b_f`], [`${prefix}_lr_out`], [], { name: `${prefix}_LowRankB` }));
      const target = isGemmWithBias ? `${prefix}_corrected` : output;
      nodes.push(makeNode("Add", [product, `${prefix}_lr_out`], [target], [], { name: `${prefix}_LowRankAdd` }));
      sum = target;
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
        newInits.push(makeTensor(bias, DataType.FLOAT, cTensor.dims.map(Number), scaled));
      }
      nodes.push(makeNode("Add", [sum, bias], [output], [], { name: `${prefix}_AddBias` }));
    }
    e.replaced.set(site.nodeIndex, nodes);
    layers.push({
      name: site.name,
      nodeName: site.nodeName,
      format,
      form,
      floatBytes: site.k * site.n * 4,
      storedBytes: lg.storage.storedBytes + extraFloatBytes,
      packedBytes: lg.storage.packedBytes + extraFloatBytes,
    });
    if (form === "matmulnbits" || form === "matmulbnb4") ensureOpset(proto, "com.microsoft", 1);
  }
  for (const e of edits.values()) {
    e.graph.node = e.graph.node.flatMap((node, i) => e.replaced.get(i) ?? [node]);
    e.graph.initializer.push(...e.newInits);
  }
  removeDeadWeights(main, edits, roots);
  proto.producerName = "quantgate";
  return { proto, layers };
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
