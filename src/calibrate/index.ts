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
}

export interface CalibrationResult {
  readonly stats: Map<string, ActivationStats>;
  readonly batches: number;
  readonly ms: number;
}

/** Accumulates statistics over rows of the last axis without keeping the activations. */
export class ChannelAccumulator {
  private rows = 0;
  private readonly sumAbs: Float64Array;
  private readonly sumSq: Float64Array;
  constructor(readonly channels: number) {
    this.sumAbs = new Float64Array(channels);
    this.sumSq = new Float64Array(channels);
  }
  add(data: Float32Array): void {
    const c = this.channels;
    const rows = data.length / c;
    for (let r = 0; r < rows; r++) {
      const base = r * c;
      for (let j = 0; j < c; j++) {
        const v = data[base + j]!;
        this.sumAbs[j]! += Math.abs(v);
        this.sumSq[j]! += v * v;
      }
    }
    this.rows += rows;
  }
  result(): ActivationStats {
    const n = Math.max(1, this.rows);
    return { rows: this.rows, meanAbs: this.sumAbs.map((v) => v / n), meanSquare: this.sumSq.map((v) => v / n) };
  }
}

export async function calibrate(
  ort: Ort,
  model: ModelProto,
  activationNames: readonly string[],
  batches: readonly Feeds[],
  threads: number,
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
        if (!a) acc.set(name, (a = new ChannelAccumulator(channels)));
        a.add(tensor.data as Float32Array);
      }
    }
  } finally {
    await session.release();
  }
  const stats = new Map([...acc].map(([name, a]) => [name, a.result()]));
  return { stats, batches: batches.length, ms: performance.now() - t0 };
}
