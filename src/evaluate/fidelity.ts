// Output comparison: the same inputs through the float and the quantized model, every selected output
// compared (cosine, relative L2, max |error|, top-1 agreement and KL along an axis).
import type { FidelityOutputSpec } from "../config/schema.js";
import { toOrtFeeds, type Feeds } from "../data/tensors.js";
import type { Ort, OrtTensor, Session } from "../runtime/ort.js";
import { argmax, klDivergence, logSoftmax, mean, percentile } from "./metrics.js";
import type { OutputTensor } from "./user-metric.js";

export interface OutputFidelity {
  readonly name: string;
  readonly kind: FidelityOutputSpec["kind"];
  readonly dims: readonly number[];
  /** Mean and worst per-sample cosine similarity of the flattened outputs. */
  readonly cosineMean: number;
  readonly cosineMin: number;
  /** ||q - f|| / ||f|| over every sample. */
  readonly relativeL2: number;
  readonly maxAbsError: number;
  /** Share of positions (all indices but `axis`) whose argmax along `axis` agrees; undefined for scalar outputs. */
  readonly top1Agreement: number | undefined;
  /** KL(float || quantized) per position, for logits and probabilities. */
  readonly kl: { readonly mean: number; readonly p99: number; readonly max: number } | undefined;
  readonly positions: number;
  /** Per sample: cosine; per position: KL (logits/probabilities) and top-1 agreement (1 or 0). */
  readonly cosines: readonly number[];
  readonly kls: readonly number[];
  readonly agreements: readonly number[];
  /** Sum of squared errors and of squared float values over every sample (merging shards: relativeL2 from sums). */
  readonly sumSq?: { readonly err: number; readonly ref: number };
}

/** One model call's feeds; chunks of one sequence carry each model's state forward. */
export interface ComparedSample {
  readonly feeds: Feeds;
  readonly label: number | undefined;
  readonly sequence: number;
  readonly chunk: number;
}

/** What comparing the float and the quantized session on every sample gives. */
export interface ComparisonResult {
  readonly outputs: OutputFidelity[];
  /** Per sample: argmax of the first logits/probabilities output, where the samples are labelled. */
  readonly predFloat: number[];
  readonly predQuantized: number[];
  readonly labels: (number | undefined)[];
  /** Index of that output among `outputs` (-1: none). */
  readonly classOutput: number;
  /** Per-sample outputs, kept only when a user metric reads them. */
  readonly floatOutputs: Record<string, OutputTensor>[];
  readonly quantizedOutputs: Record<string, OutputTensor>[];
}

/** Running comparison of one output over all samples. */
export class OutputComparer {
  private errSq = 0;
  private refSq = 0;
  private maxAbs = 0;
  private agree = 0;
  private positions = 0;
  readonly cosines: number[] = [];
  readonly kls: number[] = [];
  readonly agreements: number[] = [];
  dims: readonly number[] = [];
  constructor(readonly spec: FidelityOutputSpec) {}

  add(f: Float32Array, q: Float32Array, dims: readonly number[]): void {
    if (f.length !== q.length) throw new Error(`output "${this.spec.name}": float has ${f.length} values, quantized ${q.length}`);
    this.dims = dims;
    let dot = 0;
    let nf = 0;
    let nq = 0;
    for (let i = 0; i < f.length; i++) {
      const a = f[i]!;
      const b = q[i]!;
      const d = b - a;
      dot += a * b;
      nf += a * a;
      nq += b * b;
      this.errSq += d * d;
      if (Math.abs(d) > this.maxAbs || Number.isNaN(d)) this.maxAbs = Number.isNaN(d) ? Infinity : Math.max(this.maxAbs, Math.abs(d));
    }
    this.refSq += nf;
    this.cosines.push(nf === 0 && nq === 0 ? 1 : dot / Math.sqrt(nf * nq || Number.MIN_VALUE));
    if (dims.length === 0) return;
    const rank = dims.length;
    const axis = this.spec.axis < 0 ? this.spec.axis + rank : this.spec.axis;
    if (axis < 0 || axis >= rank) throw new Error(`output "${this.spec.name}": axis ${this.spec.axis} is outside its shape [${dims.join(", ")}]`);
    const size = dims[axis]!;
    const inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1);
    const outer = dims.slice(0, axis).reduce((a, b) => a * b, 1);
    const withKl = this.spec.kind !== "values";
    const rowF = new Float32Array(size);
    const rowQ = new Float32Array(size);
    const lpF = new Float64Array(size);
    const lpQ = new Float64Array(size);
    for (let o = 0; o < outer; o++) {
      for (let i = 0; i < inner; i++) {
        for (let c = 0; c < size; c++) {
          rowF[c] = f[(o * size + c) * inner + i]!;
          rowQ[c] = q[(o * size + c) * inner + i]!;
        }
        const same = argmax(rowF) === argmax(rowQ);
        if (same) this.agree++;
        this.agreements.push(same ? 1 : 0);
        this.positions++;
        if (withKl) {
          logProbs(rowF, this.spec.kind, lpF);
          logProbs(rowQ, this.spec.kind, lpQ);
          this.kls.push(klDivergence(lpF, lpQ));
        }
      }
    }
  }

  result(): OutputFidelity {
    return {
      name: this.spec.name,
      kind: this.spec.kind,
      dims: this.dims,
      cosineMean: mean(this.cosines),
      cosineMin: this.cosines.reduce((a, b) => Math.min(a, b), Infinity),
      relativeL2: this.refSq > 0 ? Math.sqrt(this.errSq / this.refSq) : Math.sqrt(this.errSq),
      maxAbsError: this.maxAbs,
      top1Agreement: this.positions > 0 ? this.agree / this.positions : undefined,
      kl: this.kls.length ? { mean: mean(this.kls), p99: percentile(this.kls, 99), max: this.kls.reduce((a, b) => Math.max(a, b), -Infinity) } : undefined,
      positions: this.positions,
      cosines: this.cosines,
      kls: this.kls,
      agreements: this.agreements,
      sumSq: { err: this.errSq, ref: this.refSq },
    };
  }
}

/** One output's comparisons over consecutive slices of the samples, merged as if compared in one pass. */
export function mergeOutputFidelity(parts: readonly OutputFidelity[]): OutputFidelity {
  const first = parts[0]!;
  const cosines = parts.flatMap((p) => p.cosines);
  const kls = parts.flatMap((p) => p.kls);
  const agreements = parts.flatMap((p) => p.agreements);
  const positions = parts.reduce((a, p) => a + p.positions, 0);
  const err = parts.reduce((a, p) => a + (p.sumSq?.err ?? NaN), 0);
  const ref = parts.reduce((a, p) => a + (p.sumSq?.ref ?? NaN), 0);
  const agree = agreements.reduce((a, b) => a + b, 0);
  return {
    name: first.name,
    kind: first.kind,
    dims: [...parts].reverse().find((p) => p.cosines.length > 0)?.dims ?? first.dims,
    cosineMean: mean(cosines),
    cosineMin: cosines.reduce((a, b) => Math.min(a, b), Infinity),
    relativeL2: ref > 0 ? Math.sqrt(err / ref) : Math.sqrt(err),
    maxAbsError: parts.reduce((a, p) => Math.max(a, p.maxAbsError), 0),
    top1Agreement: positions > 0 ? agree / positions : undefined,
    kl: kls.length ? { mean: mean(kls), p99: percentile(kls, 99), max: kls.reduce((a, b) => Math.max(a, b), -Infinity) } : undefined,
    positions,
    cosines,
    kls,
    agreements,
    sumSq: { err, ref },
  };
}

/** Log-probabilities of a row of logits (log-softmax) or probabilities (renormalized, floored at 1e-12). */
function logProbs(row: Float32Array, kind: FidelityOutputSpec["kind"], out: Float64Array): void {
  if (kind === "logits") {
    logSoftmax(row, 0, row.length, out);
    return;
  }
  let sum = 0;
  for (const v of row) sum += Math.max(v, 0);
  for (let i = 0; i < row.length; i++) out[i] = Math.log(Math.max(Math.max(row[i]!, 0) / (sum || 1), 1e-12));
}

function asFloat32(t: OrtTensor, name: string): Float32Array {
  const d = t.data as unknown;
  if (d instanceof Float32Array) return d;
  if (d instanceof BigInt64Array || d instanceof BigUint64Array) return Float32Array.from(d, Number);
  if (ArrayBuffer.isView(d) && !(d instanceof DataView)) return Float32Array.from(d as unknown as ArrayLike<number>);
  throw new Error(`output "${name}" is not numeric (type ${t.type})`);
}

/** Runs every sample through both sessions (each carrying its own state) and compares the selected outputs. */
export async function compareSessions(
  ort: Ort,
  float: Session,
  quant: Session,
  samples: readonly ComparedSample[],
  state: readonly { readonly input: string; readonly output: string }[],
  specs: readonly FidelityOutputSpec[],
  keepOutputs: boolean,
): Promise<ComparisonResult> {
  const comparers = specs.map((s) => new OutputComparer(s));
  const fetch = [...new Set([...specs.map((s) => s.name), ...state.map((s) => s.output)])];
  const classOutput = specs.findIndex((s) => s.kind !== "values");
  const predFloat: number[] = [];
  const predQuantized: number[] = [];
  const labels: (number | undefined)[] = [];
  const allF: Record<string, OutputTensor>[] = [];
  const allQ: Record<string, OutputTensor>[] = [];
  let stateF: Record<string, OrtTensor> = {};
  let stateQ: Record<string, OrtTensor> = {};
  for (const sample of samples) {
    const feeds = toOrtFeeds(ort, sample.feeds);
    // Each model carries its own state from chunk to chunk: the comparison is of two running streams.
    const feedsF = sample.chunk > 0 ? { ...feeds, ...stateF } : feeds;
    const feedsQ = sample.chunk > 0 ? { ...feeds, ...stateQ } : feeds;
    const rf = await float.run(feedsF, fetch);
    const rq = await quant.run(feedsQ, fetch);
    stateF = Object.fromEntries(state.map((s) => [s.input, rf[s.output]!]));
    stateQ = Object.fromEntries(state.map((s) => [s.input, rq[s.output]!]));
    const outF: Record<string, OutputTensor> = {};
    const outQ: Record<string, OutputTensor> = {};
    specs.forEach((s, i) => {
      const f = asFloat32(rf[s.name]!, s.name);
      const q = asFloat32(rq[s.name]!, s.name);
      const dims = rf[s.name]!.dims;
      comparers[i]!.add(f, q, dims);
      if (keepOutputs) {
        outF[s.name] = { dims, data: f };
        outQ[s.name] = { dims, data: q };
      }
      if (i === classOutput && sample.label !== undefined) {
        predFloat.push(argmax(f));
        predQuantized.push(argmax(q));
      }
    });
    labels.push(sample.label);
    if (keepOutputs) {
      allF.push(outF);
      allQ.push(outQ);
    }
  }
  return { outputs: comparers.map((c) => c.result()), predFloat, predQuantized, labels, classOutput, floatOutputs: allF, quantizedOutputs: allQ };
}
