// Finds the quantizable weights of a graph (the B input of MatMul and Gemm) and says why others are skipped.
import type { Recipe } from "../config/schema.js";
import { dataTypeName, DataType, elementCount, getFloatAttr, getIntAttr, tensorShape, type GraphProto, type NodeProto, type TensorProto } from "./model.js";

export interface WeightSite {
  /** Initializer name. */
  readonly name: string;
  readonly node: NodeProto;
  /** Index of the node in graph.node, to find it again in a copy of the model. */
  readonly nodeIndex: number;
  readonly nodeName: string;
  readonly opType: "MatMul" | "Gemm";
  /** Reduction size and output size of the product x @ W. */
  readonly k: number;
  readonly n: number;
  /** The initializer is stored [n, k] (Gemm transB=1) rather than [k, n]. */
  readonly transposed: boolean;
  /** Gemm alpha (1 for MatMul), folded into the scales. */
  readonly alpha: number;
  readonly tensor: TensorProto;
  readonly origin: "initializer";
}

export interface SkippedWeight {
  readonly name: string;
  readonly nodeName: string;
  readonly opType: string;
  readonly shape: number[] | undefined;
  readonly reason: string;
}

export interface WeightDiscovery {
  readonly weights: WeightSite[];
  readonly skipped: SkippedWeight[];
}

/** Glob with * and ? (no path semantics), matched against the whole name. */
export function globToRegExp(pattern: string): RegExp {
  const escaped = pattern
    .replace(/[.+^${}()|[\]\\]/g, "\\$&")
    .replace(/\*/g, ".*")
    .replace(/\?/g, ".");
  return new RegExp(`^${escaped}$`);
}

export function matchesAny(patterns: readonly string[], ...names: string[]): string | undefined {
  return patterns.find((p) => {
    const re = globToRegExp(p);
    return names.some((n) => n !== "" && re.test(n));
  });
}

export function nodeLabel(node: NodeProto, index: number): string {
  return node.name || `${node.opType}_${index}`;
}

export function findWeights(graph: GraphProto, recipe: Pick<Recipe, "exclude" | "min_elements" | "overrides">): WeightDiscovery {
  const initializers = new Map(graph.initializer.map((t) => [t.name, t]));
  const consumers = new Map<string, number>();
  for (const node of graph.node) for (const input of node.input) consumers.set(input, (consumers.get(input) ?? 0) + 1);
  const graphOutputs = new Set(graph.output.map((o) => o.name));
  const weights: WeightSite[] = [];
  const skipped: SkippedWeight[] = [];

  graph.node.forEach((node, index) => {
    if (node.domain !== "" && node.domain !== "ai.onnx") return;
    if (node.opType !== "MatMul" && node.opType !== "Gemm") return;
    const nodeName = nodeLabel(node, index);
    const name = node.input[1] ?? "";
    const tensor = initializers.get(name);
    const skip = (reason: string, shape?: number[]): void => {
      skipped.push({ name, nodeName, opType: node.opType, shape, reason });
    };
    if (!tensor) {
      skip("dynamic: the B input is computed at run time, not a stored weight");
      return;
    }
    const shape = tensorShape(tensor);
    if (tensor.dataType !== DataType.FLOAT) {
      skip(`unsupported type ${dataTypeName(tensor.dataType)} (float32 weights are quantized)`, shape);
      return;
    }
    if (shape.length !== 2) {
      skip(`unsupported shape [${shape.join(", ")}]: expected a 2-D weight`, shape);
      return;
    }
    const excludedBy = matchesAny(recipe.exclude, name, nodeName);
    if (excludedBy) {
      skip(`excluded by recipe pattern "${excludedBy}"`, shape);
      return;
    }
    const skipOverride = recipe.overrides.find((o) => o.skip && matchesAny([o.match], name, nodeName));
    if (skipOverride) {
      skip(`excluded by recipe override "${skipOverride.match}"`, shape);
      return;
    }
    if ((consumers.get(name) ?? 0) > 1 || graphOutputs.has(name)) {
      skip(`shared: used by ${consumers.get(name)} nodes; kept float so every consumer sees the same values`, shape);
      return;
    }
    if (elementCount(shape) < recipe.min_elements) {
      skip(`too small: ${elementCount(shape)} elements < min_elements ${recipe.min_elements}`, shape);
      return;
    }
    let transposed = false;
    let alpha = 1;
    if (node.opType === "Gemm") {
      if (getIntAttr(node, "transA", 0) !== 0) {
        skip("unsupported: Gemm with transA=1", shape);
        return;
      }
      const c = node.input[2];
      const beta = getFloatAttr(node, "beta", 1);
      if (c && beta !== 1 && !initializers.has(c)) {
        skip("unsupported: Gemm with beta != 1 on a computed bias", shape);
        return;
      }
      transposed = getIntAttr(node, "transB", 0) !== 0;
      alpha = getFloatAttr(node, "alpha", 1);
    }
    const [d0, d1] = shape as [number, number];
    weights.push({
      name,
      node,
      nodeIndex: index,
      nodeName,
      opType: node.opType,
      k: transposed ? d1 : d0,
      n: transposed ? d0 : d1,
      transposed,
      alpha,
      tensor,
      origin: "initializer",
    });
  });
  return { weights, skipped };
}
