// The calibrate stage: run the float model on calibration data with the inputs of the quantized
// MatMuls exposed as extra outputs, and stream per-input-channel statistics in float64.
import { cloneModel, DataType, makeValueInfo, serializeModel, type ModelProto } from "../onnx/model.js";
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
): Promise<CalibrationResult> {
  const t0 = performance.now();
  const unique = [...new Set(activationNames)];
  const probe = cloneModel(model);
  const graph = probe.graph!;
  const existing = new Set(graph.output.map((o) => o.name));
  const graphInputs = new Set(graph.input.map((i) => i.name));
  const exposed = unique.filter((n) => !existing.has(n) && !graphInputs.has(n));
  for (const name of exposed) graph.output.push(makeValueInfo(name, DataType.FLOAT));
  const session = await createSession(ort, serializeModel(probe), threads);
  const acc = new Map<string, ChannelAccumulator>();
  try {
    for (const batch of batches) {
      const result = await session.run(toOrtFeeds(ort, batch));
      for (const name of unique) {
        const tensor =
          result[name] ?? (graphInputs.has(name) ? new ort.Tensor(batch[name]!.type, batch[name]!.data, batch[name]!.dims as number[]) : undefined);
        if (!tensor || tensor.type !== "float32") continue;
        const channels = tensor.dims[tensor.dims.length - 1]!;
        let a = acc.get(name);
        if (!a) acc.set(name, (a = new ChannelAccumulator(channels, gram.names.has(name) ? gram.maxRows : 0)));
        a.add(tensor.data as Float32Array);
      }
    }
  } finally {
    await session.release();
  }
  const stats = new Map([...acc].map(([name, a]) => [name, a.result()]));
  return { stats, batches: batches.length, ms: performance.now() - t0 };
}
