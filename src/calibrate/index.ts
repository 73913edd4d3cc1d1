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
  externalDataFiles,
  serializeModel,
  type GraphProto,
  type ModelProto,
  type NodeProto,
} from "../onnx/model.js";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { toBinary } from "@bufbuild/protobuf";
import { ModelProtoSchema } from "onnx-buf";
import { toOrtFeeds, type Feeds } from "../data/tensors.js";
import { activeKernels } from "../kernels/active.js";
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
  /** Per Conv weight (by the key given), the statistics of its im2col rows, one entry per group. */
  readonly convStats?: Map<string, ActivationStats[]>;
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
    const raw = activeKernels();
    if (raw?.activationStats && Number.isInteger(rows) && c > 0) {
      // The same float64 sums in the same order, in the kernels (the Gram part is rows x channels^2 / 2).
      const gramRows = g ? Math.max(0, Math.min(rows, this.maxGramRows - this.gramRows)) : 0;
      raw.activationStats(data, rows, c, this.sumAbs, this.sumSq, g ?? new Float64Array(0), gramRows, 2);
      this.gramRows += gramRows;
      this.rows += rows;
      return;
    }
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
  /** Whether the Gram matrix (if any) has all its rows: later rows only change the channel statistics. */
  get gramFull(): boolean {
    return this.gram === undefined || this.gramRows >= this.maxGramRows;
  }
  private finished: ActivationStats | undefined;
  /**
   * The statistics so far. The Gram matrix is finished in place (the sums' buffer becomes E[x x^T], no second
   * k x k copy): the accumulator is done after its first result(), which later calls return again.
   */
  result(): ActivationStats {
    if (this.finished) return this.finished;
    const n = Math.max(1, this.rows);
    const stats = { rows: this.rows, meanAbs: this.sumAbs.map((v) => v / n), meanSquare: this.sumSq.map((v) => v / n) };
    const g = this.gram;
    if (!g || this.gramRows === 0) return (this.finished = stats);
    const c = this.channels;
    // Only the lower triangle holds sums (the upper one is zero): divide it and mirror it.
    for (let i = 0; i < c; i++) {
      for (let j = 0; j <= i; j++) {
        const v = g[i * c + j]! / this.gramRows;
        g[i * c + j] = v;
        g[j * c + i] = v;
      }
    }
    return (this.finished = { ...stats, gram: g, gramRows: this.gramRows });
  }
}

/** Writes a file that must not exist yet; when the write fails, what it left is removed (a file already there is not ours). */
function writeNewFile(file: string, bytes: Uint8Array): void {
  try {
    writeFileSync(file, bytes, { flag: "wx" });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") rmSync(file, { force: true });
    throw err;
  }
}

export interface CalibrateOptions {
  /**
   * The float model's file. A model whose weights lie in external data is then given to ONNX Runtime as a small
   * graph file written beside it (the weights read from the original data file), not as one in-memory copy of the
   * whole model; the file is removed when the calibration ends.
   */
  readonly modelPath?: string;
  /**
   * Write an inline model's calibration graph to a temporary file, read by each pass's session, rather than keep it
   * in memory between passes (CalibrationRunner).
   */
  readonly spill?: boolean;
  /**
   * With a model in external data: each run's session gets the graph up to the last node its activations need (the
   * nodes before it all kept, the same exposed outputs among them), so early passes load and run a prefix only.
   */
  readonly prefix?: boolean;
  /** More activations exposed as outputs without statistics (to keep the graph that of a calibration that has them). */
  readonly expose?: readonly string[];
}

/**
 * One calibration graph (the float model with every requested activation exposed), run once per pass: each run
 * opens a session, accumulates the statistics of the activations (and Conv im2col rows) it is asked for, and
 * releases the session. The graph is the same for every pass, so an activation's statistics do not depend on
 * which pass collects them (the Gram matrices of a pass are those of a single pass over all activations).
 */
export class CalibrationRunner {
  private constructor(
    private readonly ort: Ort,
    private readonly source: Uint8Array | string,
    private readonly outputOf: ReadonlyMap<string, string>,
    private readonly graphInputs: ReadonlySet<string>,
    private readonly temp: string | undefined,
    private readonly tempDir: string | undefined,
    /** The calibration graph whose tensors refer to the model's external data, when runs take a prefix of it. */
    private readonly prefixOf: ModelProto | undefined,
  ) {}
  private runs = 0;

  static open(
    ort: Ort,
    model: ModelProto,
    exposed: readonly string[],
    elemTypes: ReadonlyMap<string, number> = new Map(),
    opts: CalibrateOptions = {},
  ): CalibrationRunner {
    const probe = cloneModel(model);
    const graph = probe.graph!;
    const existing = new Set(graph.output.map((o) => o.name));
    const graphInputs = new Set(graph.input.map((i) => i.name));
    // Main-graph output name of each activation (subgraph activations come out under a routed name).
    const outputOf = new Map<string, string>();
    for (const name of [...new Set(exposed)].filter((n) => !existing.has(n) && !graphInputs.has(n))) {
      const type = elemTypes.get(name) ?? DataType.FLOAT;
      const routed = exposeActivation(graph, name, 0, type);
      if (routed === undefined) continue;
      outputOf.set(name, routed);
      if (!graph.output.some((o) => o.name === routed)) graph.output.push(makeValueInfo(routed, type));
    }
    if (opts.modelPath && externalDataFiles(graph).length > 0) {
      // External tensors serialize as their references (location relative to the model's folder): the graph file
      // goes into that folder, and ONNX Runtime reads the weights from the model's own data file.
      const file = path.join(
        path.dirname(opts.modelPath),
        `.${path.basename(opts.modelPath, ".onnx")}.quantgate-calibration-${process.pid}-${randomBytes(4).toString("hex")}.onnx`,
      );
      try {
        writeNewFile(file, toBinary(ModelProtoSchema, probe));
        return new CalibrationRunner(ort, file, outputOf, graphInputs, file, undefined, opts.prefix ? probe : undefined);
      } catch {
        // A read-only model folder: the in-memory copy below.
      }
    }
    const bytes = serializeModel(probe);
    if (opts.spill) {
      const dir = mkdtempSync(path.join(os.tmpdir(), "quantgate-calibration-"));
      try {
        const file = path.join(dir, "calibration.onnx");
        writeFileSync(file, bytes);
        return new CalibrationRunner(ort, file, outputOf, graphInputs, undefined, dir, undefined);
      } catch {
        rmSync(dir, { recursive: true, force: true });
      }
    }
    return new CalibrationRunner(ort, bytes, outputOf, graphInputs, undefined, undefined, undefined);
  }

  /**
   * Accumulates the statistics of `names` (a subset of the exposed activations) and `convs` over the batches. With
   * `gramsOnly`, stops at the first batch after which every Gram matrix has its rows (the channel statistics are then
   * of those batches only: the caller has them from a full pass).
   */
  async run(
    names: readonly string[],
    batches: readonly Feeds[],
    threads: number,
    gram: { readonly names: ReadonlySet<string>; readonly maxRows: number },
    convs: readonly { readonly key: string; readonly activation: string; readonly spec: ConvPatchSpec }[] = [],
    opts: { readonly gramsOnly?: boolean } = {},
  ): Promise<CalibrationResult> {
    const t0 = performance.now();
    const { ort, outputOf, graphInputs } = this;
    const unique = [...new Set(names)];
    const wanted = [...new Set([...unique, ...convs.map((c) => c.activation)])]
      .map((n) => outputOf.get(n) ?? (graphInputs.has(n) ? undefined : n))
      .filter((n): n is string => n !== undefined);
    // The graph up to the last node these activations need, in a file beside the model's (its data file read).
    const prefix = this.prefixOf && this.temp ? prefixModel(this.prefixOf, wanted) : undefined;
    const prefixFile = prefix && this.temp ? this.temp.replace(/\.onnx$/, `-${(this.runs++).toString(16)}.onnx`) : undefined;
    let session: Awaited<ReturnType<typeof createSession>>;
    let written = false;
    try {
      if (prefix && prefixFile) {
        writeNewFile(prefixFile, toBinary(ModelProtoSchema, prefix));
        written = true;
      }
      session = await createSession(ort, prefixFile ?? this.source, threads);
    } finally {
      if (written && prefixFile) rmSync(prefixFile, { force: true });
    }
    // Only this run's activations are fetched (the graph, and so every value, is the same whatever is fetched).
    const fetches = wanted.filter((n) => session.outputNames.includes(n));
    const acc = new Map<string, ChannelAccumulator>();
    const patches = new Map(convs.map((c) => [c.key, new ConvPatchAccumulator(c.spec, gram.maxRows)]));
    let ran = 0;
    try {
      for (const batch of batches) {
        const full = unique.every((n) => !gram.names.has(n) || acc.get(n)?.gramFull) && [...patches.values()].every((p) => p.gramFull);
        if (opts.gramsOnly && ran > 0 && full) break;
        ran++;
        const result = fetches.length > 0 ? await session.run(toOrtFeeds(ort, batch), fetches) : {};
        const valuesOf = (name: string): { values: Float32Array; dims: readonly number[] } | undefined => {
          const tensor =
            result[outputOf.get(name) ?? name] ??
            (graphInputs.has(name) ? new ort.Tensor(batch[name]!.type, batch[name]!.data, batch[name]!.dims as number[]) : undefined);
          // An empty tensor is the branch of an If that this batch did not take.
          if (!tensor || (tensor.type !== "float32" && tensor.type !== "float16") || tensor.data.length === 0) return undefined;
          const values = tensor.type === "float16" ? Float32Array.from(tensor.data as Uint16Array, halfToFloat) : (tensor.data as Float32Array);
          return { values, dims: tensor.dims };
        };
        for (const c of convs) {
          const v = valuesOf(c.activation);
          if (v) patches.get(c.key)!.add(v.values, v.dims);
        }
        for (const name of unique) {
          const v = valuesOf(name);
          if (!v) continue;
          const { values } = v;
          const channels = v.dims[v.dims.length - 1]!;
          let a = acc.get(name);
          if (!a) acc.set(name, (a = new ChannelAccumulator(channels, gram.names.has(name) ? gram.maxRows : 0)));
          a.add(values);
        }
      }
    } finally {
      await session.release();
    }
    const stats = new Map([...acc].map(([name, a]) => [name, a.result()]));
    const convStats = new Map([...patches].map(([key, p]) => [key, p.result()]));
    return { stats, convStats, batches: ran, ms: performance.now() - t0 };
  }

  /** Removes the graph file written beside the model, if any. */
  close(): void {
    if (this.temp) rmSync(this.temp, { force: true });
    if (this.tempDir) rmSync(this.tempDir, { recursive: true, force: true });
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
  /** Conv weights whose im2col statistics are needed (GPTQ on Conv), each with its input and geometry. */
  convs: readonly { readonly key: string; readonly activation: string; readonly spec: ConvPatchSpec }[] = [],
  opts: CalibrateOptions = {},
): Promise<CalibrationResult> {
  const runner = CalibrationRunner.open(ort, model, [...activationNames, ...convs.map((c) => c.activation), ...(opts.expose ?? [])], elemTypes, opts);
  try {
    return await runner.run(activationNames, batches, threads, gram, convs);
  } finally {
    runner.close();
  }
}

/**
 * The model cut after the last main-graph node producing one of `outputs`: every node before it kept (so the nodes
 * computing those outputs, and the graph outputs among them, are as in the whole graph), later nodes and the
 * initializers only they read dropped. Undefined when nothing would be cut.
 */
export function prefixModel(model: ModelProto, outputs: readonly string[]): ModelProto | undefined {
  const graph = model.graph;
  if (!graph) return undefined;
  const at = new Map<string, number>();
  graph.node.forEach((n, i) => n.output.forEach((o) => at.set(o, i)));
  const last = Math.max(-1, ...outputs.map((o) => at.get(o) ?? -1));
  if (last < 0 || last >= graph.node.length - 1) return undefined;
  const node = graph.node.slice(0, last + 1);
  const read = new Set<string>();
  const reads = (nodes: readonly NodeProto[]): void => {
    for (const n of nodes) {
      n.input.forEach((x) => read.add(x));
      for (const a of n.attribute) {
        if (a.g) reads(a.g.node);
        for (const g of a.graphs) reads(g.node);
      }
    }
  };
  reads(node);
  const dropped = new Set(graph.initializer.filter((t) => !read.has(t.name)).map((t) => t.name));
  const produced = new Set([...graph.input.map((i) => i.name), ...graph.initializer.map((t) => t.name), ...node.flatMap((n) => n.output)]);
  return {
    ...model,
    graph: {
      ...graph,
      node,
      initializer: graph.initializer.filter((t) => !dropped.has(t.name)),
      // Inputs that name dropped initializers go with them (old IRs list initializers as inputs); feeds stay.
      input: graph.input.filter((i) => !dropped.has(i.name)),
      output: graph.output.filter((o) => produced.has(o.name) && !dropped.has(o.name)),
    },
  };
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

/**
 * How a Conv reads its input, for the im2col view GPTQ needs: each output position's receptive field,
 * flattened in the weight's own row order (input channel of the group, then kernel offsets).
 */
export interface ConvPatchSpec {
  readonly groups: number;
  /** Input channels (C). */
  readonly channels: number;
  /** Kernel size per spatial axis (1 or 2 axes). */
  readonly kernel: readonly number[];
  readonly strides: readonly number[];
  readonly dilations: readonly number[];
  /** [begin..., end...] per spatial axis, as ONNX writes pads. */
  readonly pads: readonly number[];
  /** ONNX auto_pad: NOTSET (pads apply), VALID, SAME_UPPER or SAME_LOWER. */
  readonly autoPad: string;
}

/** Pads before each spatial axis for this input size (auto_pad resolved). */
function padsBegin(spec: ConvPatchSpec, spatial: readonly number[]): number[] {
  return spatial.map((size, a) => {
    if (spec.autoPad === "VALID") return 0;
    if (spec.autoPad === "SAME_UPPER" || spec.autoPad === "SAME_LOWER") {
      const out = Math.ceil(size / spec.strides[a]!);
      const total = Math.max(0, (out - 1) * spec.strides[a]! + (spec.kernel[a]! - 1) * spec.dilations[a]! + 1 - size);
      return spec.autoPad === "SAME_UPPER" ? Math.floor(total / 2) : Math.ceil(total / 2);
    }
    return spec.pads[a] ?? 0;
  });
}

function outputSize(spec: ConvPatchSpec, spatial: readonly number[], begin: readonly number[]): number[] {
  return spatial.map((size, a) => {
    if (spec.autoPad === "SAME_UPPER" || spec.autoPad === "SAME_LOWER") return Math.ceil(size / spec.strides[a]!);
    const end = spec.autoPad === "VALID" ? 0 : (spec.pads[a + spatial.length] ?? 0);
    return Math.floor((size + begin[a]! + end - (spec.kernel[a]! - 1) * spec.dilations[a]! - 1) / spec.strides[a]!) + 1;
  });
}

/**
 * Accumulates, per group, the statistics of a Conv's im2col rows: for every sample and output position the
 * K = C/groups * prod(kernel) inputs that one output channel of the group multiplies (zero where padded).
 * Rows go into the Gram matrices up to `maxGramRows` per group, spread over the positions.
 */
export class ConvPatchAccumulator {
  readonly groups: ChannelAccumulator[];
  readonly k: number;
  constructor(
    readonly spec: ConvPatchSpec,
    maxGramRows: number,
  ) {
    const cg = spec.channels / spec.groups;
    this.k = cg * spec.kernel.reduce((a, b) => a * b, 1);
    this.groups = Array.from({ length: spec.groups }, () => new ChannelAccumulator(this.k, maxGramRows));
  }
  get gramFull(): boolean {
    return this.groups.every((g) => g.gramFull);
  }
  /** x: [N, C, L] or [N, C, H, W], row-major. */
  add(x: Float32Array, dims: readonly number[]): void {
    const { spec, k } = this;
    const spatial = dims.slice(2);
    if (spatial.length !== spec.kernel.length || dims[1] !== spec.channels) {
      throw new Error(
        `calibration: Conv input of shape [${dims.join(", ")}] does not match its kernel (${spec.kernel.length} spatial axes, ${spec.channels} channels)`,
      );
    }
    const [h, w] = spatial.length === 2 ? [spatial[0]!, spatial[1]!] : [1, spatial[0]!];
    const [kh, kw] = spec.kernel.length === 2 ? [spec.kernel[0]!, spec.kernel[1]!] : [1, spec.kernel[0]!];
    const [sh, sw] = spec.strides.length === 2 ? [spec.strides[0]!, spec.strides[1]!] : [1, spec.strides[0]!];
    const [dh, dw] = spec.dilations.length === 2 ? [spec.dilations[0]!, spec.dilations[1]!] : [1, spec.dilations[0]!];
    const begin = padsBegin(spec, spatial);
    const [ph, pw] = begin.length === 2 ? [begin[0]!, begin[1]!] : [0, begin[0]!];
    const out = outputSize(spec, spatial, begin);
    const [oh, ow] = out.length === 2 ? [out[0]!, out[1]!] : [1, out[0]!];
    const cg = spec.channels / spec.groups;
    const batch = dims[0]!;
    const positions = oh * ow;
    const rows = new Float32Array(positions * k);
    for (let n = 0; n < batch; n++) {
      for (let g = 0; g < spec.groups; g++) {
        rows.fill(0);
        for (let oy = 0; oy < oh; oy++) {
          for (let ox = 0; ox < ow; ox++) {
            const base = (oy * ow + ox) * k;
            for (let c = 0; c < cg; c++) {
              const plane = (n * spec.channels + g * cg + c) * h * w;
              for (let i = 0; i < kh; i++) {
                const y = oy * sh - ph + i * dh;
                if (y < 0 || y >= h) continue;
                for (let j = 0; j < kw; j++) {
                  const xx = ox * sw - pw + j * dw;
                  if (xx >= 0 && xx < w) rows[base + (c * kh + i) * kw + j] = x[plane + y * w + xx]!;
                }
              }
            }
          }
        }
        this.groups[g]!.add(rows);
      }
    }
  }
  result(): ActivationStats[] {
    return this.groups.map((g) => g.result());
  }
}

/** A Conv node's geometry for the im2col view of its input (weight dims [O, C/groups, k...]). */
export function convPatchSpecOf(node: NodeProto, weightDims: readonly number[]): ConvPatchSpec {
  const ints = (name: string, fallback: number[]): number[] => {
    const a = node.attribute.find((x) => x.name === name);
    return a && a.ints.length ? a.ints.map(Number) : fallback;
  };
  const groups = Number(node.attribute.find((x) => x.name === "group")?.i ?? 1n);
  const kernel = ints("kernel_shape", weightDims.slice(2) as number[]);
  const autoPadAttr = node.attribute.find((x) => x.name === "auto_pad");
  return {
    groups,
    channels: weightDims[1]! * groups,
    kernel,
    strides: ints(
      "strides",
      kernel.map(() => 1),
    ),
    dilations: ints(
      "dilations",
      kernel.map(() => 1),
    ),
    pads: ints(
      "pads",
      [...kernel, ...kernel].map(() => 0),
    ),
    autoPad: autoPadAttr ? new TextDecoder().decode(autoPadAttr.s) || "NOTSET" : "NOTSET",
  };
}
