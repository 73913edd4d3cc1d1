// Finds the quantizable weights of a model wherever exporters put them (initializers, Constant nodes,
// fp16/bf16 behind Cast, Transpose/Reshape/Squeeze chains, If/Loop/Scan bodies) for MatMul, Gemm, Conv,
// ConvTranspose, Gather and LSTM/GRU/RNN, and accounts for every other float tensor at or above
// min_elements: skipped with the reason, or already quantized (with its bit width).
import { globMatch } from "../util/glob.js";
import type { Recipe } from "../config/schema.js";
import { foldConstant, foldScope, type FoldedConstant, type FoldScope } from "./fold.js";
import {
  DataType,
  dataTypeName,
  elementCount,
  getAttr,
  getFloatAttr,
  getIntAttr,
  tensorShape,
  type GraphProto,
  type NodeProto,
  type TensorProto,
} from "./model.js";

export type OpKind = "matmul" | "gemm" | "conv" | "conv_transpose" | "gather" | "rnn";
export const OP_KINDS: readonly OpKind[] = ["matmul", "gemm", "conv", "conv_transpose", "gather", "rnn"];

/** One step from a graph into a subgraph: the node, and which attribute (and which graph of it). */
export interface GraphStep {
  readonly nodeIndex: number;
  readonly attribute: string;
  readonly graphIndex?: number;
}

export interface WeightSite {
  /** The stored tensor's name (initializer or Constant output) at the root of the chain. */
  readonly name: string;
  readonly node: NodeProto;
  /** Index of the node in its graph, to find it again in a copy of the model. */
  readonly nodeIndex: number;
  readonly nodeName: string;
  readonly opType: "MatMul" | "Gemm" | "Conv" | "ConvTranspose" | "Gather" | "LSTM" | "GRU" | "RNN";
  readonly opKind: OpKind;
  /**
   * "product": a 2-D MatMul/Gemm weight, replaced by a low-bit product (MatMulNBits and friends).
   * "dequant": the op stays and reads a dequantized float tensor of the original shape.
   */
  readonly kind: "product" | "dequant";
  /** Which input of the node is the weight. */
  readonly inputIndex: number;
  /** product: reduction and output size of x @ W. dequant: rows (output channels / table entries) and row length. */
  readonly k: number;
  readonly n: number;
  /** `values` are laid out [n, k] (Gemm transB=1, and every dequant site) rather than [k, n]. */
  readonly transposed: boolean;
  /** Gemm alpha (1 otherwise), folded into the scales. */
  readonly alpha: number;
  /** The folded float32 weight. */
  readonly values: Float32Array;
  /** Shape of the weight as the op reads it. */
  readonly dims: number[];
  /** Where the weight came from, for the report. */
  readonly origin: string;
  /** Nodes of the weight's chain (Cast, Transpose, Constant, ...) in its graph. */
  readonly chainNodes: readonly number[];
  /** Path from the main graph to the graph holding the node ([] for the main graph). */
  readonly graphPath: readonly GraphStep[];
  /** "main graph" or e.g. `If "cond" then_branch`. */
  readonly graphLabel: string;
  /**
   * Every node that reads the weight, at which input (dequant sites). More than one for a tied weight that
   * is quantized once: all readers then see the same dequantized tensor.
   */
  readonly readers: { readonly nodeIndex: number; readonly inputIndex: number }[];
  /** Element type the op computes in (FLOAT, or FLOAT16/BFLOAT16 when the weight reaches it without a Cast). */
  readonly consumerType: number;
}

export interface SkippedWeight {
  readonly name: string;
  readonly nodeName: string;
  readonly opType: string;
  readonly shape: number[] | undefined;
  readonly reason: string;
  readonly origin?: string;
  /** Set when the tensor is already quantized (integer codes behind DequantizeLinear, MatMulNBits, QLinear ops): its bit width. */
  readonly alreadyQuantizedBits?: number;
}

export interface WeightDiscovery {
  readonly weights: WeightSite[];
  readonly skipped: SkippedWeight[];
}

export function matchesAny(patterns: readonly string[], ...names: string[]): string | undefined {
  // Linear-time matching (src/util/glob.ts): a pattern from a config cannot hang the run.
  return patterns.find((p) => names.some((n) => n !== "" && globMatch(p, n)));
}

export function nodeLabel(node: NodeProto, index: number): string {
  return node.name || `${node.opType}_${index}`;
}

/** The weight inputs of each supported op (LSTM/GRU/RNN: W and R; their bias B stays float). */
const OP_OF: Record<string, { kind: OpKind; inputs: readonly number[] }> = {
  MatMul: { kind: "matmul", inputs: [1] },
  Gemm: { kind: "gemm", inputs: [1] },
  Conv: { kind: "conv", inputs: [1] },
  ConvTranspose: { kind: "conv_transpose", inputs: [1] },
  Gather: { kind: "gather", inputs: [0] },
  LSTM: { kind: "rnn", inputs: [1, 2] },
  GRU: { kind: "rnn", inputs: [1, 2] },
  RNN: { kind: "rnn", inputs: [1, 2] },
};

/** Ops whose input holds integer codes of an already-quantized weight: input index, and the bit width when an attribute gives it. */
const QUANTIZED_OPS: Record<string, { input: number; bitsAttr?: string; bits?: number }> = {
  DequantizeLinear: { input: 0 },
  MatMulNBits: { input: 1, bitsAttr: "bits" },
  MatMulBnb4: { input: 1, bits: 4 },
  QLinearMatMul: { input: 3 },
  QLinearConv: { input: 3 },
  MatMulInteger: { input: 1 },
  ConvInteger: { input: 1 },
  DynamicQuantizeMatMul: { input: 1 },
  GatherBlockQuantized: { input: 0, bitsAttr: "bits" },
};

const INT_BITS: Record<number, number> = {
  [DataType.UINT8]: 8,
  [DataType.INT8]: 8,
  [DataType.UINT16]: 16,
  [DataType.INT16]: 16,
  [DataType.INT32]: 32,
  [DataType.UINT4]: 4,
  [DataType.INT4]: 4,
};

const FLOAT_TYPES = new Set<number>([DataType.FLOAT, DataType.FLOAT16, DataType.BFLOAT16, DataType.DOUBLE]);

type RecipeView = Pick<Recipe, "exclude" | "min_elements" | "overrides"> &
  Partial<Pick<Recipe, "exclude_shapes" | "exclude_subgraphs" | "shared_weights">> & { readonly op_types?: readonly string[] };

/** Every graph reachable from `graph`, with its path and label: the main graph first, then subgraphs in node order. */
export function* graphsOf(graph: GraphProto, path: GraphStep[] = [], label = "main graph"): Generator<{ graph: GraphProto; path: GraphStep[]; label: string }> {
  yield { graph, path, label };
  for (const [nodeIndex, node] of graph.node.entries()) {
    for (const a of node.attribute) {
      const where = `${node.opType} "${nodeLabel(node, nodeIndex)}" ${a.name}`;
      if (a.g) yield* graphsOf(a.g, [...path, { nodeIndex, attribute: a.name }], where);
      for (const [graphIndex, g] of a.graphs.entries()) yield* graphsOf(g, [...path, { nodeIndex, attribute: a.name, graphIndex }], `${where}[${graphIndex}]`);
    }
  }
}

/** Resolve a graph path in (a copy of) the model's main graph. */
export function graphAt(main: GraphProto, path: readonly GraphStep[]): GraphProto {
  let g = main;
  for (const step of path) {
    const a = g.node[step.nodeIndex]!.attribute.find((x) => x.name === step.attribute)!;
    g = step.graphIndex === undefined ? a.g! : a.graphs[step.graphIndex]!;
  }
  return g;
}

/** How many times each value name is read, across the main graph and every subgraph. */
export function readCounts(main: GraphProto): Map<string, number> {
  const counts = new Map<string, number>();
  for (const { graph } of graphsOf(main)) for (const n of graph.node) for (const i of n.input) if (i) counts.set(i, (counts.get(i) ?? 0) + 1);
  return counts;
}

export function findWeights(main: GraphProto, recipe: RecipeView): WeightDiscovery {
  const opTypes = new Set<string>(recipe.op_types ?? ["matmul", "gemm", "conv", "conv_transpose", "rnn"]);
  const weights: WeightSite[] = [];
  const skipped: SkippedWeight[] = [];
  const reads = readCounts(main);
  const outputs = new Set(main.output.map((o) => o.name));
  const outerInits = new Map<string, TensorProto>();
  for (const { graph, path, label } of graphsOf(main)) {
    const scope: FoldScope = foldScope(graph, path.length ? outerInits : undefined);
    // A tied weight read directly by several supported ops of this graph is quantized once (one site).
    const sharedSites = new Map<string, WeightSite>();
    // Identity outputs of a stored tensor are that tensor (torch writes a tied weight as one initializer and Identity copies).
    const aliasBase = new Map<string, string>();
    const aliasesOf = new Map<string, { outputs: string[]; nodes: number[] }>();
    const stored = (v: string): boolean =>
      scope.initializers.has(v) || (scope.outer?.has(v) ?? false) || graph.node[scope.producers.get(v) ?? -1]?.opType === "Constant";
    graph.node.forEach((n, i) => {
      const v = n.input[0];
      if (n.opType !== "Identity" || !v || !n.output[0]) return;
      const b = aliasBase.get(v) ?? (stored(v) ? v : undefined);
      if (b === undefined) return;
      aliasBase.set(n.output[0], b);
      const group = aliasesOf.get(b) ?? { outputs: [], nodes: [] };
      group.outputs.push(n.output[0]);
      group.nodes.push(i);
      aliasesOf.set(b, group);
    });
    const baseOf = (v: string): string => aliasBase.get(v) ?? v;
    const weightReaders = new Map<string, { nodeIndex: number; inputIndex: number; kind: OpKind }[]>();
    graph.node.forEach((n, i) => {
      const o = OP_OF[n.opType];
      if (!o || (n.domain !== "" && n.domain !== "ai.onnx")) return;
      for (const inputIndex of o.inputs) {
        const v = n.input[inputIndex] ? baseOf(n.input[inputIndex]) : undefined;
        if (v) weightReaders.set(v, [...(weightReaders.get(v) ?? []), { nodeIndex: i, inputIndex, kind: o.kind }]);
      }
    });
    graph.node.forEach((node, index) => {
      const nodeName = nodeLabel(node, index);
      if (node.opType in QUANTIZED_OPS) {
        const already = alreadyQuantized(node, nodeName, scope);
        if (already) skipped.push(already);
      }
      const op = OP_OF[node.opType];
      if (!op || (node.domain !== "" && node.domain !== "ai.onnx")) return;
      for (const inputIndex of op.inputs) {
        const input = node.input[inputIndex] ?? "";
        if (input) visitWeight(node, index, nodeName, op.kind, inputIndex, input);
      }
      if (op.kind === "rnn" && node.input[3]) {
        const b = foldConstant(node.input[3], scope);
        if (b && elementCount(b.dims) >= recipe.min_elements) {
          skipped.push({
            name: b.rootName,
            nodeName,
            opType: node.opType,
            shape: b.dims,
            reason: `recurrent bias B of ${node.opType}: added, not multiplied, so it stays float`,
            origin: b.origin,
          });
        }
      }
    });
    function visitWeight(node: NodeProto, index: number, nodeName: string, kind: OpKind, inputIndex: number, input: string): void {
      const folded = foldConstant(input, scope);
      const skip = (reason: string, shape?: number[]): void => {
        skipped.push({ name: folded?.rootName ?? input, nodeName, opType: node.opType, shape, reason, origin: folded?.origin });
      };
      if (!folded) {
        // Codes behind DequantizeLinear are listed once, as already quantized, by the DequantizeLinear itself.
        const producer = scope.producers.get(input);
        if (producer !== undefined && graph.node[producer]!.opType === "DequantizeLinear") return;
        if (kind !== "gather") skip(`dynamic: the weight input is computed at run time, not a stored constant`);
        return;
      }
      const dims = folded.dims;
      const name = folded.rootName;
      if (!opTypes.has(kind)) return skip(`op type ${kind} is not in recipe.op_types`, dims);
      const excludedBy = matchesAny(recipe.exclude, name, nodeName, input);
      if (excludedBy) return skip(`excluded by recipe pattern "${excludedBy}"`, dims);
      const skipOverride = recipe.overrides.find((o) => o.skip && matchesAny([o.match], name, nodeName, input));
      if (skipOverride) return skip(`excluded by recipe override "${skipOverride.match}"`, dims);
      const shapeRule = recipe.exclude_shapes?.find((s) => s.length === dims.length && s.every((d, i) => d === -1 || d === dims[i]));
      if (shapeRule) return skip(`excluded by recipe shape [${shapeRule.join(", ")}]`, dims);
      const subgraphRule = path.length ? recipe.exclude_subgraphs?.find((p) => globMatch(p, label)) : undefined;
      if (subgraphRule) return skip(`excluded by recipe subgraph pattern "${subgraphRule}" (${label})`, dims);
      // The stored tensor, and every value on the chain, must have this node as its only reader.
      const key = baseOf(input);
      const aliases = aliasesOf.get(key) ?? { outputs: [], nodes: [] };
      const rootReads = reads.get(name) ?? 0;
      // Reads of the tensor through its Identity copies count; the Identity nodes themselves do not.
      const inputReads = (reads.get(key) ?? 0) + aliases.outputs.reduce((a, o) => a + (reads.get(o) ?? 0), 0) - aliases.nodes.length;
      const existing = sharedSites.get(key);
      if (existing) {
        existing.readers.push({ nodeIndex: index, inputIndex });
        return;
      }
      const readersHere = weightReaders.get(key) ?? [];
      const quantizeOnce =
        (recipe.shared_weights ?? "quantize") === "quantize" &&
        inputReads > 1 &&
        (rootReads <= 1 || name === key) &&
        ![key, ...aliases.outputs].some((o) => outputs.has(o)) &&
        readersHere.length === inputReads &&
        readersHere.every((r) => opTypes.has(r.kind));
      const shared = !quantizeOnce && (rootReads > 1 || outputs.has(name) || inputReads > 1);
      if (shared) {
        return skip(
          `shared: "${name}" is read by ${Math.max(rootReads, inputReads)} nodes (a tied weight); kept float so every reader sees the same values`,
          dims,
        );
      }
      if (elementCount(dims) < recipe.min_elements) return skip(`too small: ${elementCount(dims)} elements < min_elements ${recipe.min_elements}`, dims);
      const base = {
        readers: [{ nodeIndex: index, inputIndex }],
        name,
        node,
        nodeIndex: index,
        nodeName,
        opType: node.opType as WeightSite["opType"],
        opKind: kind,
        inputIndex,
        dims,
        origin: folded.origin,
        chainNodes: folded.chainNodes,
        graphPath: path,
        graphLabel: label,
        consumerType: folded.consumerType,
      };
      if (quantizeOnce) {
        const n = kind === "conv" || kind === "conv_transpose" ? dims[0]! : elementCount(dims.slice(0, -1));
        const site: WeightSite = withValues(
          {
            ...base,
            kind: "dequant",
            k: elementCount(dims) / n,
            n,
            transposed: true,
            alpha: 1,
            origin: `${folded.origin}, read by ${inputReads} nodes (quantized once)`,
            chainNodes: [...new Set([...folded.chainNodes, ...aliases.nodes])],
          },
          folded,
        );
        sharedSites.set(key, site);
        weights.push(site);
        return;
      }
      if ((kind === "matmul" || kind === "gemm") && dims.length === 2) {
        let transposed = false;
        let alpha = 1;
        if (kind === "gemm") {
          if (getIntAttr(node, "transA", 0) !== 0) return skip("unsupported: Gemm with transA=1", dims);
          const c = node.input[2];
          if (c && getFloatAttr(node, "beta", 1) !== 1 && !scope.initializers.has(c)) return skip("unsupported: Gemm with beta != 1 on a computed bias", dims);
          transposed = getIntAttr(node, "transB", 0) !== 0;
          alpha = getFloatAttr(node, "alpha", 1);
        }
        const [d0, d1] = dims as [number, number];
        weights.push(withValues({ ...base, kind: "product", k: transposed ? d1 : d0, n: transposed ? d0 : d1, transposed, alpha }, folded));
        return;
      }
      if (kind === "gemm") return skip(`unsupported shape [${dims.join(", ")}]: Gemm takes a 2-D weight`, dims);
      if (dims.length < 2) return skip(`unsupported shape [${dims.join(", ")}]: expected at least 2 dimensions`, dims);
      // Conv/ConvTranspose: one row per output (or input) channel; others (batched MatMul, Gather, LSTM/GRU/RNN
      // W [dirs, gates*hidden, input] and R): rows over the last axis.
      const perChannel = kind === "conv" || kind === "conv_transpose";
      const n = perChannel ? dims[0]! : elementCount(dims.slice(0, -1));
      weights.push(withValues({ ...base, kind: "dequant", k: elementCount(dims) / n, n, transposed: true, alpha: 1 }, folded));
    }
    for (const t of graph.initializer) outerInits.set(t.name, t);
  }
  return { weights, skipped: accountRemaining(main, weights, skipped, recipe.min_elements) };
}

/** The integer codes an already-quantized op reads, listed with their bit width (undefined when not a stored constant). */
function alreadyQuantized(node: NodeProto, nodeName: string, scope: FoldScope): SkippedWeight | undefined {
  const spec = QUANTIZED_OPS[node.opType]!;
  const input = node.input[spec.input];
  if (!input) return undefined;
  let t = scope.initializers.get(input) ?? scope.outer?.get(input);
  if (!t) {
    const pi = scope.producers.get(input);
    const producer = pi === undefined ? undefined : scope.graph.node[pi];
    if (producer?.opType === "Constant") t = getAttr(producer, "value")?.t;
  }
  if (!t || FLOAT_TYPES.has(t.dataType)) return undefined;
  const attrBits = spec.bitsAttr ? getAttr(node, spec.bitsAttr) : undefined;
  const bits = attrBits ? Number(attrBits.i) : (spec.bits ?? INT_BITS[t.dataType] ?? 8);
  return {
    name: input,
    nodeName,
    opType: node.opType,
    shape: tensorShape(t),
    reason: `already quantized: ${bits}-bit codes (${dataTypeName(t.dataType)}) read by ${node.opType}`,
    origin: `initializer "${input}" (${dataTypeName(t.dataType)})`,
    alreadyQuantizedBits: bits,
  };
}

/**
 * One entry per tensor: duplicate skip entries of a tensor read by several nodes are merged, and every
 * stored float tensor at or above `minElements` that is neither quantized nor skipped yet is listed with
 * what reads it.
 */
function accountRemaining(main: GraphProto, weights: readonly WeightSite[], skipped: readonly SkippedWeight[], minElements: number): SkippedWeight[] {
  const quantized = new Set(weights.map((w) => w.name));
  const merged = new Map<string, SkippedWeight>();
  for (const s of skipped) {
    if (quantized.has(s.name) && s.alreadyQuantizedBits === undefined) continue;
    const prior = merged.get(s.name);
    if (!prior) merged.set(s.name, s);
    else if (!prior.reason.includes(s.reason)) merged.set(s.name, { ...prior, reason: `${prior.reason}; at ${s.nodeName}: ${s.reason}` });
  }
  const readersOf = new Map<string, string[]>();
  const stored: { name: string; dims: number[]; type: number; origin: string }[] = [];
  for (const { graph } of graphsOf(main)) {
    graph.node.forEach((n, i) =>
      n.input.forEach((v, j) => v && readersOf.set(v, [...(readersOf.get(v) ?? []), `${n.opType} "${nodeLabel(n, i)}" input ${j}`])),
    );
    for (const t of graph.initializer) stored.push({ name: t.name, dims: tensorShape(t), type: t.dataType, origin: `initializer "${t.name}"` });
    for (const n of graph.node) {
      const v = n.opType === "Constant" ? getAttr(n, "value")?.t : undefined;
      if (v) stored.push({ name: n.output[0]!, dims: tensorShape(v), type: v.dataType, origin: `Constant node "${n.name || n.output[0]}"` });
    }
  }
  for (const t of stored) {
    if (!FLOAT_TYPES.has(t.type) || elementCount(t.dims) < minElements || quantized.has(t.name) || merged.has(t.name)) continue;
    const readers = readersOf.get(t.name) ?? [];
    const quantizedOps = readers.length > 0 && readers.every((r) => Object.keys(QUANTIZED_OPS).some((op) => r.startsWith(`${op} `)));
    merged.set(t.name, {
      name: t.name,
      nodeName: "",
      opType: "",
      shape: t.dims,
      reason: quantizedOps
        ? `scales or zero points of an already-quantized weight: read by ${readers.slice(0, 3).join(", ")}`
        : readers.length
          ? `not a weight QuantGate quantizes: read by ${readers.slice(0, 3).join(", ")}${readers.length > 3 ? ` and ${readers.length - 3} more` : ""}`
          : "not read by any node",
      origin: `${t.origin}${t.type === DataType.FLOAT ? "" : ` (${dataTypeName(t.type)})`}`,
    });
  }
  return [...merged.values()];
}

/**
 * The site with its folded values: held for an inline tensor; for one kept in external data, a getter that
 * reads them from the file on each access (quantize streams one weight at a time and drops it).
 */
function withValues(site: Omit<WeightSite, "values">, folded: FoldedConstant): WeightSite {
  if (!folded.lazy) return { ...site, values: folded.values };
  return Object.defineProperty(site, "values", { get: () => folded.values, enumerable: true }) as WeightSite;
}
