// The calibrate stage: run the float model on calibration data with the inputs of the quantized
// MatMuls exposed as extra outputs, and stream per-input-channel statistics in float64.
// Activations inside If/Loop/Scan bodies are routed out through the control-flow node's own outputs
// (never by naming a subgraph tensor as a main-graph output, which ONNX Runtime rejects): an If gets one
// more output, which the branch holding the activation fills and the other branch leaves empty; a Loop
// or Scan body gets one more scan output, which stacks the activation over the iterations.
import {
  cloneModel,
  DataType,
  halfToFloat,
  makeAttribute,
  makeNode,
  makeTensor,
  makeValueInfo,
  serializeModel,
  type GraphProto,
  type ModelProto,
} from "../onnx/model.js";
import { toOrtFeeds, type Feeds } from "../data/tensors.js";
import { createSession, type Ort } from "../runtime/ort.js";

export interface ActivationStats {
  /** Rows (tokens or samples) seen. */
  readonly rows: number;
  /** Per input channel mean |x|. */
  readonly meanAbs: Float64Array;
  /** Per input channel E[x^2]. */
  readonly meanSquare: Float64Array;
  /** E[x x^T] (k*k, float64), when an algorithm asked for it (GPTQ, AWQ, low-rank correction). */
  readonly gram?: Float64Array;
  /** Rows that went into the Gram matrix (it may use fewer rows than the channel statistics). */
  readonly gramRows?: number;
}

export interface CalibrationResult {
  readonly stats: Map<string, ActivationStats>;
  readonly batches: number;
  readonly ms: number;
}

/** Accumulates statistics over rows of the last axis without keeping the activations. */
export class ChannelAccumulator {
  private rows = 0;
  private gramRows = 0;
  private readonly sumAbs: Float64Array;
  private readonly sumSq: Float64Array;
  /** Lower triangle of sum x x^T, mirrored in result(). */
  private readonly gram: Float64Array | undefined;
  constructor(
    readonly channels: number,
    /** Rows to put into the Gram matrix (0: none). Its cost is channels^2 per row. */
    readonly maxGramRows = 0,
  ) {
    this.sumAbs = new Float64Array(channels);
    this.sumSq = new Float64Array(channels);
    this.gram = maxGramRows > 0 ? new Float64Array(channels * channels) : undefined;
  }
  add(data: Float32Array): void {
    const c = this.channels;
    const rows = data.length / c;
    const g = this.gram;
    for (let r = 0; r < rows; r++) {
      const base = r * c;
      for (let j = 0; j < c; j++) {
        const v = data[base + j]!;
        this.sumAbs[j]! += Math.abs(v);
        this.sumSq[j]! += v * v;
      }
      if (g && this.gramRows < this.maxGramRows) {
        for (let i = 0; i < c; i++) {
          const xi = data[base + i]!;
          if (xi === 0) continue;
          const rowOff = i * c;
          for (let j = 0; j <= i; j++) g[rowOff + j]! += xi * data[base + j]!;
        }
        this.gramRows++;
      }
    }
    this.rows += rows;
  }
  result(): ActivationStats {
    const n = Math.max(1, this.rows);
    const stats = { rows: this.rows, meanAbs: this.sumAbs.map((v) => v / n), meanSquare: this.sumSq.map((v) => v / n) };
    const g = this.gram;
    if (!g || this.gramRows === 0) return stats;
    const c = this.channels;
    const gram = new Float64Array(c * c);
    for (let i = 0; i < c; i++) {
      for (let j = 0; j <= i; j++) {
        const v = g[i * c + j]! / this.gramRows;
        gram[i * c + j] = v;
        gram[j * c + i] = v;
      }
    }
    return { ...stats, gram, gramRows: this.gramRows };
  }
}

export async function calibrate(
  ort: Ort,
  model: ModelProto,
  activationNames: readonly string[],
  batches: readonly Feeds[],
  threads: number,
  /** Activations whose Gram matrix E[x x^T] is needed, and how many rows to use for it. */
  gram: { readonly names: ReadonlySet<string>; readonly maxRows: number } = { names: new Set(), maxRows: 0 },
  /** Element type of each activation when not float32 (a float16 model's MatMul inputs are float16). */
  elemTypes: ReadonlyMap<string, number> = new Map(),
): Promise<CalibrationResult> {
  const t0 = performance.now();
  const unique = [...new Set(activationNames)];
  const probe = cloneModel(model);
  const graph = probe.graph!;
  const existing = new Set(graph.output.map((o) => o.name));
  const graphInputs = new Set(graph.input.map((i) => i.name));
  // Main-graph output name of each activation (subgraph activations come out under a routed name).
  const outputOf = new Map<string, string>();
  for (const name of unique.filter((n) => !existing.has(n) && !graphInputs.has(n))) {
    const type = elemTypes.get(name) ?? DataType.FLOAT;
    const routed = exposeActivation(graph, name, 0, type);
    if (routed === undefined) continue;
    outputOf.set(name, routed);
    if (!graph.output.some((o) => o.name === routed)) graph.output.push(makeValueInfo(routed, type));
  }
  const session = await createSession(ort, serializeModel(probe), threads);
  const acc = new Map<string, ChannelAccumulator>();
  try {
    for (const batch of batches) {
      const result = await session.run(toOrtFeeds(ort, batch));
      for (const name of unique) {
        const tensor =
          result[outputOf.get(name) ?? name] ??
          (graphInputs.has(name) ? new ort.Tensor(batch[name]!.type, batch[name]!.data, batch[name]!.dims as number[]) : undefined);
        // An empty tensor is the branch of an If that this batch did not take.
        if (!tensor || (tensor.type !== "float32" && tensor.type !== "float16") || tensor.data.length === 0) continue;
        const values = tensor.type === "float16" ? Float32Array.from(tensor.data as Uint16Array, halfToFloat) : (tensor.data as Float32Array);
        const channels = tensor.dims[tensor.dims.length - 1]!;
        let a = acc.get(name);
        if (!a) acc.set(name, (a = new ChannelAccumulator(channels, gram.names.has(name) ? gram.maxRows : 0)));
        a.add(values);
      }
    }
  } finally {
    await session.release();
  }
  const stats = new Map([...acc].map(([name, a]) => [name, a.result()]));
  return { stats, batches: batches.length, ms: performance.now() - t0 };
}

/** Whether `name` is produced (by a node, or as an input) in this graph itself. */
function producedIn(graph: GraphProto, name: string): boolean {
  return graph.node.some((n) => n.output.includes(name)) || graph.input.some((i) => i.name === name);
}

let routeCounter = 0;

/**
 * Makes `name` (produced in `graph` or in one of its subgraphs) visible in `graph` and returns the name it
 * has there; undefined when it is not produced anywhere below (an outer-scope value).
 */
function exposeActivation(graph: GraphProto, name: string, depth: number, type: number): string | undefined {
  if (producedIn(graph, name)) return name;
  if (depth > 8) return undefined;
  for (const node of graph.node) {
    const bodies = node.attribute.filter((a) => a.g).map((a) => ({ g: a.g! }));
    for (const { g } of bodies) {
      const inner = exposeActivation(g, name, depth + 1, type);
      if (inner === undefined) continue;
      const routed = `${name}__quantgate_calibration_${routeCounter++}`;
      if (node.opType === "If") {
        for (const b of bodies) {
          if (b.g === g) {
            b.g.output.push(makeValueInfo(inner, type));
          } else {
            // The branch not holding the activation yields an empty float tensor in its place.
            const empty = `${routed}_empty`;
            const value = makeTensor(`${empty}_value`, type, [0], new Float32Array(0));
            b.g.node.push(makeNode("Constant", [], [empty], [makeAttribute("value", value)], { name: `${empty}_Constant` }));
            b.g.output.push(makeValueInfo(empty, type));
          }
        }
      } else if (node.opType === "Loop" || node.opType === "Scan") {
        // One more scan output of the body: the node stacks it over the iterations.
        g.output.push(makeValueInfo(inner, type));
        if (node.opType === "Scan") {
          for (const key of ["scan_output_axes", "scan_output_directions"]) {
            const a = node.attribute.find((x) => x.name === key);
            if (a) a.ints.push(0n);
          }
        }
      } else {
        return undefined;
      }
      node.output.push(routed);
      return routed;
    }
  }
  return undefined;
}
