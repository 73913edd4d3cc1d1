// Folds the constant that reaches an op input: an initializer, a Constant node, or either of them behind
// Cast, Transpose, Reshape, Squeeze, Unsqueeze, Flatten or Identity (how exporters really store weights).
import {
  dataTypeName,
  elementCount,
  getAttr,
  isExternalTensor,
  tensorShape,
  tensorToFloat32,
  tensorToInts,
  DataType,
  type GraphProto,
  type NodeProto,
  type TensorProto,
} from "./model.js";

export interface FoldedConstant {
  /**
   * The folded float32 values. For a tensor kept in external data this is a getter that reads (and folds)
   * the values from the file on every access: read it once per use and drop it.
   */
  readonly values: Float32Array;
  /** True when `values` is read from external data on access (not held). */
  readonly lazy?: boolean;
  readonly dims: number[];
  /** Where it came from, e.g. `initializer "w" (FLOAT16) via Cast -> Transpose`. */
  readonly origin: string;
  /** The stored tensor (initializer or Constant attribute) at the root of the chain. */
  readonly rootName: string;
  /** Nodes of this graph on the chain (Constant node included), by index. */
  readonly chainNodes: number[];
  /** Source element type, for reasons (FLOAT, FLOAT16, BFLOAT16, DOUBLE). */
  readonly sourceType: number;
  /** Element type the op reads: FLOAT after a Cast, else the stored type (a float16 model computes in float16). */
  readonly consumerType: number;
}

const FLOAT_TYPES = new Set<number>([DataType.FLOAT, DataType.FLOAT16, DataType.BFLOAT16, DataType.DOUBLE]);

export interface FoldScope {
  readonly graph: GraphProto;
  readonly initializers: ReadonlyMap<string, TensorProto>;
  /** Output name -> producing node index in this graph. */
  readonly producers: ReadonlyMap<string, number>;
  /** Initializers of enclosing graphs (subgraphs may read them by name). */
  readonly outer?: ReadonlyMap<string, TensorProto>;
}

export function foldScope(graph: GraphProto, outer?: ReadonlyMap<string, TensorProto>): FoldScope {
  const producers = new Map<string, number>();
  graph.node.forEach((n, i) => n.output.forEach((o) => producers.set(o, i)));
  return { graph, initializers: new Map(graph.initializer.map((t) => [t.name, t])), producers, outer };
}

function transposeND(values: Float32Array, dims: number[], perm: number[]): { values: Float32Array; dims: number[] } {
  const rank = dims.length;
  const outDims = perm.map((p) => dims[p]!);
  const inStrides = new Array<number>(rank).fill(1);
  for (let i = rank - 2; i >= 0; i--) inStrides[i] = inStrides[i + 1]! * dims[i + 1]!;
  const out = new Float32Array(values.length);
  const idx = new Array<number>(rank).fill(0);
  for (let o = 0; o < out.length; o++) {
    let src = 0;
    for (let d = 0; d < rank; d++) src += idx[d]! * inStrides[perm[d]!]!;
    out[o] = values[src]!;
    for (let d = rank - 1; d >= 0; d--) {
      if (++idx[d]! < outDims[d]!) break;
      idx[d] = 0;
    }
  }
  return { values: out, dims: outDims };
}

function constInts(name: string | undefined, scope: FoldScope): number[] | undefined {
  if (!name) return undefined;
  const t = scope.initializers.get(name) ?? scope.outer?.get(name);
  if (t) return tensorToInts(t);
  const pi = scope.producers.get(name);
  const node = pi === undefined ? undefined : scope.graph.node[pi];
  const value = node?.opType === "Constant" ? getAttr(node, "value")?.t : undefined;
  return value ? tensorToInts(value) : undefined;
}

/** The constant behind `name`, or undefined when it is computed at run time. */
export function foldConstant(name: string, scope: FoldScope, depth = 0): FoldedConstant | undefined {
  if (depth > 16) return undefined;
  const init = scope.initializers.get(name) ?? scope.outer?.get(name);
  if (init) {
    if (!FLOAT_TYPES.has(init.dataType)) return undefined;
    const type = init.dataType === DataType.FLOAT ? "" : ` (${dataTypeName(init.dataType)})`;
    const base = {
      dims: tensorShape(init),
      origin: `initializer "${name}"${type}`,
      rootName: name,
      chainNodes: [],
      sourceType: init.dataType,
      consumerType: init.dataType,
    };
    return isExternalTensor(init) ? lazyValues(base, () => tensorToFloat32(init)) : { ...base, values: tensorToFloat32(init) };
  }
  const index = scope.producers.get(name);
  if (index === undefined) return undefined;
  const node: NodeProto = scope.graph.node[index]!;
  if (node.domain !== "" && node.domain !== "ai.onnx") return undefined;
  // `transform` maps the inner values to this node's (identity for the reshaping ops).
  const via = (inner: FoldedConstant, dims: number[], transform?: (v: Float32Array) => Float32Array, consumerType?: number): FoldedConstant => {
    const { values: _values, lazy: _lazy, ...rest } = Object.getOwnPropertyDescriptors(inner);
    void _values;
    void _lazy;
    const base = Object.defineProperties({}, rest) as Omit<FoldedConstant, "values" | "lazy">;
    const fields = {
      ...base,
      dims,
      origin: `${inner.origin} -> ${node.opType}`,
      chainNodes: [...inner.chainNodes, index],
      consumerType: consumerType ?? inner.consumerType,
    };
    if (inner.lazy) return lazyValues(fields, () => (transform ? transform(inner.values) : inner.values));
    return { ...fields, values: transform ? transform(inner.values) : inner.values };
  };
  switch (node.opType) {
    case "Constant": {
      const t = getAttr(node, "value")?.t;
      if (!t || !FLOAT_TYPES.has(t.dataType)) return undefined;
      const type = t.dataType === DataType.FLOAT ? "" : ` (${dataTypeName(t.dataType)})`;
      return {
        values: tensorToFloat32(t),
        dims: tensorShape(t),
        origin: `Constant node "${node.name || node.output[0]}"${type}`,
        rootName: node.output[0]!,
        chainNodes: [index],
        sourceType: t.dataType,
        consumerType: t.dataType,
      };
    }
    case "Identity":
    case "Cast": {
      const inner = foldConstant(node.input[0]!, scope, depth + 1);
      if (!inner) return undefined;
      if (node.opType === "Cast" && Number(getAttr(node, "to")?.i ?? 0) !== DataType.FLOAT) return undefined;
      return via(inner, inner.dims, undefined, node.opType === "Cast" ? DataType.FLOAT : undefined);
    }
    case "Transpose": {
      const inner = foldConstant(node.input[0]!, scope, depth + 1);
      if (!inner) return undefined;
      const permAttr = getAttr(node, "perm")?.ints.map(Number);
      const perm = permAttr && permAttr.length ? permAttr : inner.dims.map((_, i) => inner.dims.length - 1 - i);
      const outDims = perm.map((p) => inner.dims[p]!);
      return via(inner, outDims, (v) => transposeND(v, inner.dims, perm).values);
    }
    case "Reshape":
    case "Squeeze":
    case "Unsqueeze":
    case "Flatten": {
      const inner = foldConstant(node.input[0]!, scope, depth + 1);
      if (!inner) return undefined;
      let dims: number[] | undefined;
      if (node.opType === "Reshape") {
        const shape = constInts(node.input[1], scope);
        if (!shape) return undefined;
        const total = elementCount(inner.dims);
        const fixed = shape.map((d, i) => (d === 0 ? inner.dims[i]! : d));
        const known = fixed.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
        dims = fixed.map((d) => (d === -1 ? total / known : d));
      } else if (node.opType === "Flatten") {
        const axis = Number(getAttr(node, "axis")?.i ?? 1);
        const a = axis < 0 ? axis + inner.dims.length : axis;
        dims = [elementCount(inner.dims.slice(0, a)), elementCount(inner.dims.slice(a))];
      } else {
        const axes = getAttr(node, "axes")?.ints.map(Number) ?? constInts(node.input[1], scope) ?? [];
        if (node.opType === "Squeeze") {
          const rank = inner.dims.length;
          const drop = new Set(axes.length ? axes.map((a) => (a < 0 ? a + rank : a)) : inner.dims.flatMap((d, i) => (d === 1 ? [i] : [])));
          dims = inner.dims.filter((_, i) => !drop.has(i));
        } else {
          const rank = inner.dims.length + axes.length;
          const add = new Set(axes.map((a) => (a < 0 ? a + rank : a)));
          dims = [];
          let j = 0;
          for (let i = 0; i < rank; i++) dims.push(add.has(i) ? 1 : inner.dims[j++]!);
        }
      }
      if (!dims || elementCount(dims) !== elementCount(inner.dims)) return undefined;
      return via(inner, dims);
    }
    default:
      return undefined;
  }
}

/** A folded constant whose values are read from external data on each access (never held). */
function lazyValues(fields: Omit<FoldedConstant, "values" | "lazy">, read: () => Float32Array): FoldedConstant {
  return Object.defineProperty({ ...fields, lazy: true }, "values", { get: read, enumerable: true }) as FoldedConstant;
}
