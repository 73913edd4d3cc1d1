// Finds the quantizable weights of a model wherever exporters put them (initializers, Constant nodes,
// fp16/bf16 behind Cast, Transpose/Reshape/Squeeze chains, If/Loop/Scan bodies) for MatMul, Gemm, Conv,
// ConvTranspose and Gather, and says why every other candidate is skipped.
import { globMatch } from "../util/glob.js";
import type { Recipe } from "../config/schema.js";
import { foldConstant, foldScope, type FoldScope } from "./fold.js";
import { elementCount, getFloatAttr, getIntAttr, type GraphProto, type NodeProto, type TensorProto } from "./model.js";

export type OpKind = "matmul" | "gemm" | "conv" | "conv_transpose" | "gather";
export const OP_KINDS: readonly OpKind[] = ["matmul", "gemm", "conv", "conv_transpose", "gather"];

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
  readonly opType: "MatMul" | "Gemm" | "Conv" | "ConvTranspose" | "Gather";
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
}

export interface SkippedWeight {
  readonly name: string;
  readonly nodeName: string;
  readonly opType: string;
  readonly shape: number[] | undefined;
  readonly reason: string;
  readonly origin?: string;
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

const OP_OF: Record<string, { kind: OpKind; input: number }> = {
  MatMul: { kind: "matmul", input: 1 },
  Gemm: { kind: "gemm", input: 1 },
  Conv: { kind: "conv", input: 1 },
  ConvTranspose: { kind: "conv_transpose", input: 1 },
  Gather: { kind: "gather", input: 0 },
};

type RecipeView = Pick<Recipe, "exclude" | "min_elements" | "overrides"> &
  Partial<Pick<Recipe, "op_types" | "exclude_shapes" | "exclude_subgraphs" | "shared_weights">>;

/** Every graph reachable from `graph`, with its path and label. */
function* graphsOf(graph: GraphProto, path: GraphStep[] = [], label = "main graph"): Generator<{ graph: GraphProto; path: GraphStep[]; label: string }> {
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
  const opTypes = new Set<OpKind>(recipe.op_types ?? ["matmul", "gemm", "conv", "conv_transpose"]);
  const weights: WeightSite[] = [];
  const skipped: SkippedWeight[] = [];
  const reads = readCounts(main);
  const outputs = new Set(main.output.map((o) => o.name));
  const outerInits = new Map<string, TensorProto>();
  for (const { graph, path, label } of graphsOf(main)) {
    const scope: FoldScope = foldScope(graph, path.length ? outerInits : undefined);
    // A tied weight read directly by several supported ops of this graph is quantized once (one site).
    const sharedSites = new Map<string, WeightSite>();
    const weightReaders = new Map<string, { nodeIndex: number; inputIndex: number; kind: OpKind }[]>();
    graph.node.forEach((n, i) => {
      const o = OP_OF[n.opType];
      const v = o && (n.domain === "" || n.domain === "ai.onnx") ? n.input[o.input] : undefined;
      if (v) weightReaders.set(v, [...(weightReaders.get(v) ?? []), { nodeIndex: i, inputIndex: o!.input, kind: o!.kind }]);
    });
    graph.node.forEach((node, index) => {
      const op = OP_OF[node.opType];
      if (!op || (node.domain !== "" && node.domain !== "ai.onnx")) return;
      const nodeName = nodeLabel(node, index);
      const input = node.input[op.input] ?? "";
      const folded = input ? foldConstant(input, scope) : undefined;
      const skip = (reason: string, shape?: number[]): void => {
        skipped.push({ name: folded?.rootName ?? input, nodeName, opType: node.opType, shape, reason, origin: folded?.origin });
      };
      if (!folded) {
        if (op.kind !== "gather") skip(`dynamic: the weight input is computed at run time, not a stored constant`);
        return;
      }
      const dims = folded.dims;
      const name = folded.rootName;
      if (!opTypes.has(op.kind)) {
        skip(`op type ${op.kind} is not in recipe.op_types`, dims);
        return;
      }
      const excludedBy = matchesAny(recipe.exclude, name, nodeName, input);
      if (excludedBy) return skip(`excluded by recipe pattern "${excludedBy}"`, dims);
      const skipOverride = recipe.overrides.find((o) => o.skip && matchesAny([o.match], name, nodeName, input));
      if (skipOverride) return skip(`excluded by recipe override "${skipOverride.match}"`, dims);
      const shapeRule = recipe.exclude_shapes?.find((s) => s.length === dims.length && s.every((d, i) => d === -1 || d === dims[i]));
      if (shapeRule) return skip(`excluded by recipe shape [${shapeRule.join(", ")}]`, dims);
      const subgraphRule = path.length ? recipe.exclude_subgraphs?.find((p) => globMatch(p, label)) : undefined;
      if (subgraphRule) return skip(`excluded by recipe subgraph pattern "${subgraphRule}" (${label})`, dims);
      // The stored tensor, and every value on the chain, must have this node as its only reader.
      const rootReads = reads.get(name) ?? 0;
      const inputReads = reads.get(input) ?? 0;
      const existing = sharedSites.get(input);
      if (existing) {
        existing.readers.push({ nodeIndex: index, inputIndex: op.input });
        return;
      }
      const readersHere = weightReaders.get(input) ?? [];
      const quantizeOnce =
        (recipe.shared_weights ?? "quantize") === "quantize" &&
        inputReads > 1 &&
        (rootReads <= 1 || name === input) &&
        !outputs.has(input) &&
        readersHere.length === inputReads &&
        readersHere.every((r) => opTypes.has(r.kind));
      const shared = !quantizeOnce && (rootReads > 1 || outputs.has(name) || inputReads > 1);
      if (shared) {
        return skip(
          `shared: "${name}" is read by ${Math.max(rootReads, reads.get(input) ?? 0)} nodes (a tied weight); kept float so every reader sees the same values`,
          dims,
        );
      }
      if (elementCount(dims) < recipe.min_elements) return skip(`too small: ${elementCount(dims)} elements < min_elements ${recipe.min_elements}`, dims);
      const base = {
        readers: [{ nodeIndex: index, inputIndex: op.input }],
        name,
        node,
        nodeIndex: index,
        nodeName,
        opType: node.opType as WeightSite["opType"],
        opKind: op.kind,
        inputIndex: op.input,
        values: folded.values,
        dims,
        origin: folded.origin,
        chainNodes: folded.chainNodes,
        graphPath: path,
        graphLabel: label,
      };
      if (quantizeOnce) {
        const n = op.kind === "conv" || op.kind === "conv_transpose" ? dims[0]! : elementCount(dims.slice(0, -1));
        const site: WeightSite = {
          ...base,
          kind: "dequant",
          k: elementCount(dims) / n,
          n,
          transposed: true,
          alpha: 1,
          origin: `${folded.origin}, read by ${inputReads} nodes (quantized once)`,
        };
        sharedSites.set(input, site);
        weights.push(site);
        return;
      }
      if ((op.kind === "matmul" || op.kind === "gemm") && dims.length === 2) {
        let transposed = false;
        let alpha = 1;
        if (op.kind === "gemm") {
          if (getIntAttr(node, "transA", 0) !== 0) return skip("unsupported: Gemm with transA=1", dims);
          const c = node.input[2];
          if (c && getFloatAttr(node, "beta", 1) !== 1 && !scope.initializers.has(c)) return skip("unsupported: Gemm with beta != 1 on a computed bias", dims);
          transposed = getIntAttr(node, "transB", 0) !== 0;
          alpha = getFloatAttr(node, "alpha", 1);
        }
        const [d0, d1] = dims as [number, number];
        weights.push({ ...base, kind: "product", k: transposed ? d1 : d0, n: transposed ? d0 : d1, transposed, alpha });
        return;
      }
      if (op.kind === "gemm") return skip(`unsupported shape [${dims.join(", ")}]: Gemm takes a 2-D weight`, dims);
      if (dims.length < 2) return skip(`unsupported shape [${dims.join(", ")}]: expected at least 2 dimensions`, dims);
      // Conv/ConvTranspose: one row per output (or input) channel; others: rows over the last axis.
      const perChannel = op.kind === "conv" || op.kind === "conv_transpose";
      const n = perChannel ? dims[0]! : elementCount(dims.slice(0, -1));
      weights.push({ ...base, kind: "dequant", k: elementCount(dims) / n, n, transposed: true, alpha: 1 });
    });
    for (const t of graph.initializer) outerInits.set(t.name, t);
  }
  return { weights, skipped };
}
