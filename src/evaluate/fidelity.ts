// The fidelity task: the same inputs through the float and the quantized model, every selected output
// compared (cosine, relative L2, max |error|, top-1 agreement and KL along an axis), with per-output rules.
import type { FidelityEvaluation, FidelityOutputSpec, Limit } from "../config/schema.js";
import type { FidelityData } from "../data/fidelity.js";
import { toOrtFeeds } from "../data/tensors.js";
import type { RuleResult, RuleStatus, Unit } from "../gate/index.js";
import type { Ort, OrtTensor, Session } from "../runtime/ort.js";
import { argmax, klDivergence, logSoftmax, mean, percentile } from "./metrics.js";
import { runUserMetric, type OutputTensor, type UserMetricFn } from "./user-metric.js";

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
}

export interface FidelityEvaluationResult {
  readonly task: "fidelity";
  readonly samples: number;
  readonly sequences: number;
  readonly outputs: OutputFidelity[];
  /** Of the first logits/probabilities output (what max_kl_mean and max_kl_p99 gate). */
  readonly kl: { readonly mean: number; readonly p99: number; readonly max: number };
  /** Of the first output with a class axis (what min_top1_agreement gates). */
  readonly top1Agreement: number | undefined;
  /** With labels: argmax of the first logits/probabilities output against them. */
  readonly accuracyFloat?: number;
  readonly accuracyQuantized?: number;
  readonly floatCorrect?: boolean[];
  readonly quantizedCorrect?: boolean[];
  /** Named numbers from the user metric module. */
  readonly userMetrics?: Record<string, number>;
  /** Per-output and user-metric rules, evaluated here (the gate fails on any "fail"). */
  readonly rules: RuleResult[];
  readonly ms: number;
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
        if (argmax(rowF) === argmax(rowQ)) this.agree++;
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
      cosineMin: Math.min(...this.cosines),
      relativeL2: this.refSq > 0 ? Math.sqrt(this.errSq / this.refSq) : Math.sqrt(this.errSq),
      maxAbsError: this.maxAbs,
      top1Agreement: this.positions > 0 ? this.agree / this.positions : undefined,
      kl: this.kls.length ? { mean: mean(this.kls), p99: percentile(this.kls, 99), max: Math.max(...this.kls) } : undefined,
      positions: this.positions,
    };
  }
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

/** One rule row: `observed` against a { warn, fail } limit in the given direction. */
export function fidelityRule(rule: string, label: string, unit: Unit, direction: "max" | "min", observed: number | undefined, limit: Limit): RuleResult {
  const worse = (x: number, bound: number): boolean => (direction === "max" ? x > bound : x < bound);
  let status: RuleStatus = "pass";
  if (observed === undefined || !Number.isFinite(observed)) status = limit.fail !== undefined ? "fail" : "warn";
  else if (limit.fail !== undefined && worse(observed, limit.fail)) status = "fail";
  else if (limit.warn !== undefined && worse(observed, limit.warn)) status = "warn";
  const sign = direction === "max" ? "<=" : ">=";
  const bound = [limit.warn !== undefined ? `warn ${sign} ${limit.warn}` : "", limit.fail !== undefined ? `fail ${sign} ${limit.fail}` : ""]
    .filter(Boolean)
    .join(", ");
  const shown = observed === undefined ? "not measured" : Number.isFinite(observed) ? observed.toPrecision(4) : String(observed);
  return { rule, label, unit, direction, observed, limit, status, message: `${label}: ${shown} (${bound})` };
}

export function outputRules(spec: FidelityOutputSpec, r: OutputFidelity): RuleResult[] {
  const rules: RuleResult[] = [];
  const p = `outputs.${spec.name}`;
  if (spec.min_cosine) rules.push(fidelityRule(`${p}.min_cosine`, `${spec.name} cosine similarity (mean)`, "ratio", "min", r.cosineMean, spec.min_cosine));
  if (spec.max_relative_l2)
    rules.push(fidelityRule(`${p}.max_relative_l2`, `${spec.name} relative L2 error`, "ratio", "max", r.relativeL2, spec.max_relative_l2));
  if (spec.max_abs_error) rules.push(fidelityRule(`${p}.max_abs_error`, `${spec.name} max |error|`, "ratio", "max", r.maxAbsError, spec.max_abs_error));
  if (spec.min_top1_agreement)
    rules.push(fidelityRule(`${p}.min_top1_agreement`, `${spec.name} top-1 agreement`, "ratio", "min", r.top1Agreement, spec.min_top1_agreement));
  if (spec.max_kl_mean) rules.push(fidelityRule(`${p}.max_kl_mean`, `${spec.name} KL mean`, "nats", "max", r.kl?.mean, spec.max_kl_mean));
  if (spec.max_kl_p99) rules.push(fidelityRule(`${p}.max_kl_p99`, `${spec.name} KL p99`, "nats", "max", r.kl?.p99, spec.max_kl_p99));
  return rules;
}

export async function evaluateFidelity(
  ort: Ort,
  float: Session,
  quant: Session,
  data: FidelityData,
  cfg: Pick<FidelityEvaluation, "outputs" | "metric">,
  userMetric?: UserMetricFn,
): Promise<FidelityEvaluationResult> {
  const t0 = performance.now();
  const stateOutputs = new Set(data.state.map((s) => s.output));
  const specs: FidelityOutputSpec[] = cfg.outputs.length
    ? cfg.outputs
    : float.outputNames.filter((n) => !stateOutputs.has(n)).map((name) => ({ name, axis: -1, kind: "values" as const }));
  for (const s of specs) {
    if (!float.outputNames.includes(s.name))
      throw new Error(`evaluation.outputs: the model has no output "${s.name}" (outputs: ${float.outputNames.join(", ")})`);
  }
  const comparers = specs.map((s) => new OutputComparer(s));
  const fetch = [...new Set([...specs.map((s) => s.name), ...data.state.map((s) => s.output)])];
  const classOutput = specs.findIndex((s) => s.kind !== "values");
  const predF: number[] = [];
  const predQ: number[] = [];
  const labels: (number | undefined)[] = [];
  const keepOutputs = userMetric !== undefined;
  const allF: Record<string, OutputTensor>[] = [];
  const allQ: Record<string, OutputTensor>[] = [];
  let stateF: Record<string, OrtTensor> = {};
  let stateQ: Record<string, OrtTensor> = {};
  const sequences = new Set<number>();
  for (const sample of data.samples) {
    sequences.add(sample.sequence);
    const feeds = toOrtFeeds(ort, sample.feeds);
    // Each model carries its own state from chunk to chunk: the comparison is of two running streams.
    const feedsF = sample.chunk > 0 ? { ...feeds, ...stateF } : feeds;
    const feedsQ = sample.chunk > 0 ? { ...feeds, ...stateQ } : feeds;
    const rf = await float.run(feedsF, fetch);
    const rq = await quant.run(feedsQ, fetch);
    stateF = Object.fromEntries(data.state.map((s) => [s.input, rf[s.output]!]));
    stateQ = Object.fromEntries(data.state.map((s) => [s.input, rq[s.output]!]));
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
        predF.push(argmax(f));
        predQ.push(argmax(q));
      }
    });
    labels.push(sample.label);
    if (keepOutputs) {
      allF.push(outF);
      allQ.push(outQ);
    }
  }
  const outputs = comparers.map((c) => c.result());
  const rules = specs.flatMap((s, i) => outputRules(s, outputs[i]!));
  const labelled = classOutput >= 0 && labels.every((l) => l !== undefined) && predF.length === labels.length;
  const labelValues = labels as number[];
  let userMetrics: Record<string, number> | undefined;
  if (userMetric) {
    userMetrics = await runUserMetric(userMetric, allF, allQ, labels);
    for (const [name, limits] of Object.entries(cfg.metric?.limits ?? {})) {
      const observed = userMetrics[name];
      if (limits.max) rules.push(fidelityRule(`metric.${name}.max`, `metric ${name}`, "ratio", "max", observed, limits.max));
      if (limits.min) rules.push(fidelityRule(`metric.${name}.min`, `metric ${name}`, "ratio", "min", observed, limits.min));
    }
  }
  const klSource = outputs.find((o) => o.kl !== undefined);
  const top1Source = classOutput >= 0 ? outputs[classOutput] : outputs.find((o) => o.top1Agreement !== undefined);
  return {
    task: "fidelity",
    samples: data.samples.length,
    sequences: sequences.size,
    outputs,
    kl: klSource?.kl ?? { mean: NaN, p99: NaN, max: NaN },
    top1Agreement: top1Source?.top1Agreement,
    ...(labelled
      ? {
          accuracyFloat: predF.filter((p, i) => p === labelValues[i]).length / predF.length,
          accuracyQuantized: predQ.filter((p, i) => p === labelValues[i]).length / predQ.length,
          floatCorrect: predF.map((p, i) => p === labelValues[i]),
          quantizedCorrect: predQ.map((p, i) => p === labelValues[i]),
        }
      : {}),
    userMetrics,
    rules,
    ms: performance.now() - t0,
  };
}
