// Tied input/output embeddings quantized once: the embedding Gather and the LM head (MatMul through a
// Transpose of the same matrix, or Gemm with transB) read one packed initializer.
//
// Measured with ONNX Runtime 1.30 (test/tied.test.ts builds each layout and runs it): com.microsoft.MatMulNBits
// takes B only as [N, k_blocks, blob] and scales only as [N * k_blocks] or [N, k_blocks]; com.microsoft
// GatherBlockQuantized wants scales of the data's rank. What loads and matches: the 3-D MatMulNBits B read
// directly by GatherBlockQuantized (gather_axis 0, quantize_axis 2), its scales through a Reshape to
// [N, k_blocks, 1]; zero points (asymmetric, or int3 in a 4-bit container) need a second, unpacked
// [N, k_blocks, 1] copy for the Gather (MatMulNBits packs two blocks per byte), N * k_blocks bytes.
import { create } from "@bufbuild/protobuf";
import { OperatorSetIdProtoSchema } from "onnx-buf";
import {
  DataType,
  floatToHalf,
  makeAttribute,
  makeNode,
  makeTensor,
  tensorShape,
  tensorToFloat32,
  type GraphProto,
  type ModelProto,
  type NodeProto,
  type TensorProto,
} from "../onnx/model.js";
import type { ActivationStats } from "../calibrate/index.js";
import { gptqQuantize } from "../quantize/algorithms/gptq.js";
import { containerBits, quantizeBlockwiseWeighted, type BlockwiseQuantized, type BlockwiseSpec } from "../quantize/blockwise.js";
import { layerGraph } from "./index.js";

export interface TiedEmbeddingSite {
  /** The embedding initializer [vocab, hidden]. */
  readonly name: string;
  readonly vocab: number;
  readonly hidden: number;
  readonly dataType: DataType;
  /** Gather nodes (axis 0) reading it as the table. */
  readonly gathers: readonly NodeProto[];
  /**
   * LM-head products: MatMul(h, Transpose(E)) with the Transpose node, Gemm(h, E, transB=1), or MatMul(h, E_T) where
   * E_T is a second initializer holding exactly E transposed (what constant folding makes of a tied head), named in
   * `duplicate` and dropped when the head is replaced.
   */
  readonly heads: readonly { readonly node: NodeProto; readonly transpose?: NodeProto; readonly duplicate?: string }[];
}

function intAttr(node: NodeProto, name: string, fallback: number): number {
  const a = node.attribute.find((x) => x.name === name);
  return a ? Number(a.i) : fallback;
}

function intsAttr(node: NodeProto, name: string): number[] | undefined {
  const a = node.attribute.find((x) => x.name === name);
  return a ? a.ints.map((v) => Number(v)) : undefined;
}

/** Embedding matrices that a Gather reads as a table and an LM head reads transposed (the tied form). */
export function findTiedEmbeddings(graph: GraphProto): TiedEmbeddingSite[] {
  const inits = new Map(graph.initializer.map((t) => [t.name, t]));
  const consumers = new Map<string, NodeProto[]>();
  for (const n of graph.node) for (const i of n.input) consumers.set(i, [...(consumers.get(i) ?? []), n]);
  const sites: TiedEmbeddingSite[] = [];
  for (const t of graph.initializer) {
    if (t.dataType !== DataType.FLOAT && t.dataType !== DataType.FLOAT16) continue;
    const dims = tensorShape(t);
    if (dims.length !== 2) continue;
    const readers = consumers.get(t.name) ?? [];
    const gathers: NodeProto[] = [];
    const heads: { node: NodeProto; transpose?: NodeProto; duplicate?: string }[] = [];
    let other = false;
    for (const r of readers) {
      const isDefault = r.domain === "" || r.domain === "ai.onnx";
      if (isDefault && r.opType === "Gather" && r.input[0] === t.name && intAttr(r, "axis", 0) === 0) gathers.push(r);
      else if (isDefault && r.opType === "Gemm" && r.input[1] === t.name && intAttr(r, "transB", 0) === 1 && !r.input[2] && intAttr(r, "transA", 0) === 0) {
        heads.push({ node: r });
      } else if (isDefault && r.opType === "Transpose" && [undefined, "1,0"].includes(intsAttr(r, "perm")?.join(","))) {
        const users = consumers.get(r.output[0]!) ?? [];
        const mm = users.filter((u) => (u.domain === "" || u.domain === "ai.onnx") && u.opType === "MatMul" && u.input[1] === r.output[0]);
        if (mm.length !== users.length || mm.length === 0 || graph.output.some((o) => o.name === r.output[0])) other = true;
        else for (const m of mm) heads.push({ node: m, transpose: r });
      } else other = true;
    }
    if (!other && gathers.length > 0 && heads.length === 0) heads.push(...transposedCopies(graph, t, consumers));
    if (!other && gathers.length > 0 && heads.length > 0 && inits.has(t.name)) {
      sites.push({ name: t.name, vocab: dims[0]!, hidden: dims[1]!, dataType: t.dataType, gathers, heads });
    }
  }
  return sites;
}

/** MatMuls whose B is an initializer equal to `table` transposed, read by nothing else (a tied head stored twice). */
function transposedCopies(graph: GraphProto, table: TensorProto, consumers: ReadonlyMap<string, NodeProto[]>): { node: NodeProto; duplicate: string }[] {
  const [v, d] = tensorShape(table) as [number, number];
  let values: Float32Array | undefined;
  const found: { node: NodeProto; duplicate: string }[] = [];
  for (const t of graph.initializer) {
    if (t === table || t.dataType !== table.dataType) continue;
    const dims = tensorShape(t);
    if (dims.length !== 2 || dims[0] !== d || dims[1] !== v) continue;
    const readers = consumers.get(t.name) ?? [];
    if (
      readers.length === 0 ||
      !readers.every((r) => (r.domain === "" || r.domain === "ai.onnx") && r.opType === "MatMul" && r.input[1] === t.name && r.input[0] !== t.name)
    )
      continue;
    if (graph.output.some((o) => o.name === t.name)) continue;
    values ??= tensorToFloat32(table);
    const copy = tensorToFloat32(t);
    let same = true;
    for (let i = 0; i < v && same; i++)
      for (let j = 0; j < d; j++)
        if (copy[j * v + i] !== values[i * d + j]) {
          same = false;
          break;
        }
    if (same) for (const r of readers) found.push({ node: r, duplicate: t.name });
  }
  return found;
}

export interface TiedEmission {
  readonly site: string;
  /** Bytes the shared form stores: packed codes once, scales once, Gather zero points if any. */
  readonly storedBytes: number;
  /** Bytes two separately quantized readers would store (for the report). */
  readonly separateBytes: number;
  /** Float bytes of the matrix this replaced. */
  readonly floatBytes: number;
  readonly nodesAdded: number;
  /** A stored transposed copy of the matrix that was removed, if there was one. */
  readonly duplicatesRemoved: readonly string[];
  /** The element type the LM head's MatMulNBits computes in (its T: the activations' and scales' type). */
  readonly activationType: "float16" | "float32";
}

/** Why a tied site cannot take the shared form, or undefined when it can. */
export function sharedFormProblem(site: TiedEmbeddingSite, q: BlockwiseQuantized): string | undefined {
  if (q.n !== site.vocab || q.k !== site.hidden) return `quantized shape [${q.n}, ${q.k}] is not the embedding's [${site.vocab}, ${site.hidden}]`;
  const container = containerBits(q.spec.bits);
  if (container !== 4 && container !== 8) return `GatherBlockQuantized reads 4- or 8-bit codes, not ${container}-bit`;
  if (site.hidden % q.spec.blockSize !== 0) return `hidden size ${site.hidden} is not a multiple of the block size ${q.spec.blockSize}`;
  return undefined;
}

/**
 * Replace a tied embedding by one packed initializer read by MatMulNBits (each LM head) and GatherBlockQuantized
 * (each embedding Gather). `q` quantizes the embedding's rows ([vocab][hidden], blocks along hidden: the LM head's
 * MatMulNBits layout). The float initializer is removed. Call sharedFormProblem first.
 */
export function emitTiedEmbedding(proto: ModelProto, site: TiedEmbeddingSite, q: BlockwiseQuantized, accuracyLevel = 0): TiedEmission {
  const graph = proto.graph;
  if (!graph) throw new Error("internal: model without a graph");
  if (!proto.opsetImport.some((o) => o.domain === "com.microsoft")) {
    proto.opsetImport.push(create(OperatorSetIdProtoSchema, { domain: "com.microsoft", version: 1n }));
  }
  const problem = sharedFormProblem(site, q);
  if (problem) throw new Error(`internal: tied embedding "${site.name}": ${problem}`);
  const p = `${site.name.replace(/[^A-Za-z0-9_./-]/g, "_")}_tied_q${q.spec.bits}`;
  const { blocksPerRow } = q;
  const { blockSize } = q.spec;
  const container = containerBits(q.spec.bits);
  const half = site.dataType === DataType.FLOAT16;
  const newNodes = new Map<NodeProto, NodeProto[]>();
  const newInits: TensorProto[] = [];
  let packed: TensorProto | undefined;
  let scales: TensorProto | undefined;
  let zeroPoints: TensorProto | undefined;
  site.heads.forEach((h, i) => {
    const lg = layerGraph(`${p}_head${i}`, h.node.input[0]!, h.node.output[0]!, q, "matmulnbits", accuracyLevel);
    if (!packed) {
      [packed, scales, zeroPoints] = lg.initializers;
      if (half)
        scales = makeTensor(
          scales!.name,
          DataType.FLOAT16,
          tensorShape(scales!),
          Uint16Array.from(q.scales, (v) => floatToHalf(v)),
        );
      newInits.push(packed!, scales!, ...(zeroPoints ? [zeroPoints] : []));
    }
    const mm = lg.nodes[0]!;
    mm.input.splice(1, mm.input.length - 1, packed!.name, scales!.name, ...(zeroPoints ? [zeroPoints.name] : []));
    newNodes.set(h.node, [mm]);
    if (h.transpose) newNodes.set(h.transpose, []);
  });
  // GatherBlockQuantized wants scales (and zero points) of the data's rank: [vocab, blocks, 1].
  const s3 = `${p}_scales_3d`;
  newInits.push(makeTensor(`${p}_scales_shape`, DataType.INT64, [3], BigInt64Array.from([site.vocab, blocksPerRow, 1].map(BigInt))));
  newInits.push(makeTensor(`${p}_hidden`, DataType.INT64, [1], BigInt64Array.from([BigInt(site.hidden)])));
  const headNodes: NodeProto[] = [makeNode("Reshape", [scales!.name, `${p}_scales_shape`], [s3], [], { name: `${p}_ScalesReshape` })];
  let gatherZp: string | undefined;
  if (zeroPoints) {
    gatherZp = `${p}_gather_zp`;
    newInits.push(makeTensor(gatherZp, DataType.UINT8, [site.vocab, blocksPerRow, 1], q.zeroPoints));
  }
  site.gathers.forEach((g, i) => {
    const gp = `${p}_gather${i}`;
    const ids = g.input[1]!;
    const inputs = [packed!.name, ids, s3, ...(gatherZp ? [gatherZp] : [])];
    const nodes = [
      ...(i === 0 ? headNodes : []),
      makeNode(
        "GatherBlockQuantized",
        inputs,
        [`${gp}_blocks`],
        [makeAttribute("gather_axis", 0), makeAttribute("quantize_axis", 2), makeAttribute("block_size", blockSize), makeAttribute("bits", container)],
        { name: `${gp}_GatherBlockQuantized`, domain: "com.microsoft" },
      ),
      makeNode("Shape", [ids], [`${gp}_ids_shape`], [], { name: `${gp}_Shape` }),
      makeNode("Concat", [`${gp}_ids_shape`, `${p}_hidden`], [`${gp}_shape`], [makeAttribute("axis", 0)], { name: `${gp}_Concat` }),
      makeNode("Reshape", [`${gp}_blocks`, `${gp}_shape`], [g.output[0]!], [], { name: `${gp}_Reshape` }),
    ];
    newNodes.set(g, nodes);
  });
  // Rebuild the node list in order: each replaced node's new nodes sit where it was (inputs are produced earlier).
  const rebuilt: NodeProto[] = [];
  for (const n of graph.node) rebuilt.push(...(newNodes.get(n) ?? [n]));
  const nodesAdded = rebuilt.length - graph.node.length;
  graph.node.splice(0, graph.node.length, ...rebuilt);
  const floatInit = graph.initializer.findIndex((t) => t.name === site.name);
  graph.initializer.splice(floatInit, 1, ...newInits);
  const duplicatesRemoved = [...new Set(site.heads.flatMap((h) => (h.duplicate ? [h.duplicate] : [])))];
  for (const name of duplicatesRemoved) {
    graph.initializer.splice(
      graph.initializer.findIndex((t) => t.name === name),
      1,
    );
  }
  const asInput = graph.input.findIndex((i) => i.name === site.name);
  if (asInput >= 0) graph.input.splice(asInput, 1);
  const bytesOf = (t: TensorProto | undefined): number => t?.rawData.length ?? 0;
  const scalesBytes = bytesOf(scales);
  // The two int64 shape tensors (scales reshape [3], hidden size [1]) are stored too: 32 bytes.
  const shapeBytes = 4 * 8;
  const storedBytes = bytesOf(packed) + scalesBytes + bytesOf(zeroPoints) + (gatherZp ? site.vocab * blocksPerRow : 0) + shapeBytes;
  const separateBytes = 2 * (bytesOf(packed) + scalesBytes) + (zeroPoints ? bytesOf(zeroPoints) + site.vocab * blocksPerRow : 0);
  return {
    site: site.name,
    storedBytes,
    separateBytes,
    floatBytes: site.vocab * site.hidden * (half ? 2 : 4),
    nodesAdded,
    duplicatesRemoved,
    activationType: half ? "float16" : "float32",
  };
}

export interface TiedKeptFloat {
  readonly site: string;
  readonly kept: "float";
  readonly reason: string;
}

/** The LM heads' input activations of every tied embedding (what calibration must capture for GPTQ and weighted clip search). */
export function tiedHeadActivations(graph: GraphProto): { name: string; dataType: DataType }[] {
  return findTiedEmbeddings(graph).flatMap((s) => s.heads.map((h) => ({ name: h.node.input[0]!, dataType: s.dataType })));
}

/** How a tied table is quantized: the recipe's algorithm where the shared form allows it. */
export interface TiedQuantizeContext {
  /** The pipeline's block-wise quantizer (rows [n][k], blocks along k; clip search when spec.clipSearch). */
  readonly quantize: (wT: Float32Array, n: number, k: number, spec: BlockwiseSpec, threads?: number) => BlockwiseQuantized;
  /** The recipe's algorithm (rtn, mse, awq, gptq). */
  readonly algorithm: string;
  /** Calibration statistics of an activation by name (the LM head's input), when calibration captured it. */
  readonly stats?: (activation: string) => ActivationStats | undefined;
  readonly gptq?: { readonly damp: number; readonly act_order: boolean; readonly lazy_batch: number };
  /** recipe.mse_importance: weight the clip search by the LM head input's E[x^2]. */
  readonly mseImportance?: boolean;
  readonly threads?: number;
}

export interface TiedQuantization {
  readonly q: BlockwiseQuantized;
  /** The algorithm that ran (rtn, mse, gptq). */
  readonly algorithm: string;
  /** What ran and, where it is not the recipe's algorithm, why. */
  readonly note: string;
}

/**
 * Quantize a tied table ([vocab][hidden], the LM head's MatMulNBits rows) with the recipe's algorithm where the
 * shared form allows it. GPTQ runs on the LM head input's Hessian (the Gather reads the same error-compensated codes);
 * MSE clip search runs as for any weight (weighted by the head input's E[x^2] with mse_importance). AWQ does not:
 * its per-channel input scales would also have to be undone after the Gather, which the shared form does not carry,
 * so RTN runs and the note says so; GPTQ without the head input's calibration also falls back to RTN, said in the note.
 */
export function quantizeTiedTable(site: TiedEmbeddingSite, wT: Float32Array, spec: BlockwiseSpec, ctx: TiedQuantizeContext): TiedQuantization {
  const { vocab: n, hidden: k } = site;
  const threads = ctx.threads ?? 1;
  const head = site.heads[0]!.node.input[0]!;
  const stats = site.heads.map((h) => ctx.stats?.(h.node.input[0]!)).find((s) => s !== undefined);
  const rtn = (why: string): TiedQuantization => ({
    q: ctx.quantize(wT, n, k, { ...spec, clipSearch: false }, threads),
    algorithm: "rtn",
    note: `rtn instead of the recipe's ${ctx.algorithm}: ${why}`,
  });
  if (ctx.algorithm === "gptq") {
    if (!stats?.gram) return rtn(`GPTQ needs the Hessian of the LM head's input "${head}", which calibration did not capture (set evaluation.calibration)`);
    const g = ctx.gptq ?? { damp: 0.01, act_order: false, lazy_batch: 128 };
    const q = gptqQuantize(
      wT,
      n,
      k,
      stats.gram,
      { ...spec, clipSearch: false },
      { dampRatio: g.damp, actOrder: g.act_order, lazyBatch: g.lazy_batch, threads },
    );
    return {
      q,
      algorithm: "gptq",
      note: `gptq on the LM head input's Hessian (${stats.gramRows ?? stats.rows} rows of "${head}"); the Gather reads the same codes`,
    };
  }
  if (ctx.algorithm === "awq") {
    return rtn("AWQ's per-channel input scales would have to be undone after the embedding Gather as well, and the shared form carries none");
  }
  if (ctx.algorithm === "mse") {
    if (ctx.mseImportance && stats) {
      const mean = stats.meanSquare.reduce((a, v) => a + v, 0) / k || 1;
      const q = quantizeBlockwiseWeighted(
        wT,
        n,
        k,
        { ...spec, clipSearch: true },
        Float32Array.from(stats.meanSquare, (v) => v / mean),
        threads,
      );
      return { q, algorithm: "mse", note: `mse clip search weighted by the LM head input's E[x^2] ("${head}")` };
    }
    return { q: ctx.quantize(wT, n, k, { ...spec, clipSearch: true }, threads), algorithm: "mse", note: "mse clip search per block" };
  }
  return { q: ctx.quantize(wT, n, k, { ...spec, clipSearch: false }, threads), algorithm: "rtn", note: "rtn" };
}

/**
 * The emit hook: every tied embedding of the (already emitted) model quantized once with `spec` and the recipe's
 * algorithm (quantizeTiedTable), or kept float with the reason (GatherBlockQuantized reads 4- or 8-bit codes only,
 * hidden size not a multiple of the block).
 */
export function quantizeTiedEmbeddings(
  proto: ModelProto,
  ctx: TiedQuantizeContext,
  spec: BlockwiseSpec,
  accuracyLevel = 0,
): ((TiedEmission & { readonly quantization: TiedQuantization; readonly table: Float32Array }) | TiedKeptFloat)[] {
  const graph = proto.graph;
  if (!graph) return [];
  return findTiedEmbeddings(graph).map((site) => {
    const container = containerBits(spec.bits);
    if (container !== 4 && container !== 8)
      return { site: site.name, kept: "float", reason: `GatherBlockQuantized reads 4- or 8-bit codes, not ${container}-bit` };
    if (site.hidden % spec.blockSize !== 0) {
      return { site: site.name, kept: "float", reason: `hidden size ${site.hidden} is not a multiple of the block size ${spec.blockSize}` };
    }
    const table = tensorToFloat32(graph.initializer.find((t) => t.name === site.name)!);
    const quantization = quantizeTiedTable(site, table, spec, ctx);
    return { ...emitTiedEmbedding(proto, site, quantization.q, accuracyLevel), quantization, table };
  });
}

/**
 * The element type each com.microsoft.MatMulNBits node of a graph computes in (T, read from its scales), by node
 * name: what the report states as the activation type that ran.
 */
export function matMulNBitsActivationTypes(graph: GraphProto): Map<string, "float16" | "float32"> {
  const types = new Map(graph.initializer.map((t) => [t.name, t.dataType]));
  const out = new Map<string, "float16" | "float32">();
  for (const n of graph.node) {
    if (n.opType !== "MatMulNBits" || n.domain !== "com.microsoft") continue;
    const t = types.get(n.input[2] ?? "");
    if (t !== undefined) out.set(n.name, t === DataType.FLOAT16 ? "float16" : "float32");
  }
  return out;
}
