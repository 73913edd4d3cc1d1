// Chooses, per weight format, the fastest bit-exact ONNX Runtime form by timing each candidate on
// one of the model's own layers (its largest in that format) next to the float MatMul, unless a committed
// lockfile pins the forms (then they are used as they are, so every runner emits the same bytes).
import { create } from "@bufbuild/protobuf";
import { GraphProtoSchema, ModelProtoSchema, OperatorSetIdProtoSchema } from "onnx-buf";
import type { WeightFormat } from "../config/schema.js";
import { DataType, makeNode, makeTensor, makeValueInfo, serializeModel, type ModelProto } from "../onnx/model.js";
import type { AnyQuantized, QuantizedWeight } from "../quantize/index.js";
import { weightRowsNK } from "../quantize/index.js";
import { transpose } from "../quantize/blockwise.js";
import { createSession, type Ort } from "../runtime/ort.js";
import type { LockExecution, Lockfile } from "../report/lockfile.js";
import { formApplies, layerGraph, type ExecForm } from "./index.js";

// Not "dequantizelinear": ONNX Runtime 1.30 fuses DequantizeLinear + MatMul into MatMulNBits at accuracy
// level 4 (int8 activations, not bit-exact) and does not fold it before a Conv (it dequantizes every run).
const INT_FORMS: readonly ExecForm[] = ["matmulnbits", "dequant-subgraph"];
const TABLE_FORMS: readonly ExecForm[] = ["lookup-subgraph"];
const BNB_FORMS: readonly ExecForm[] = ["matmulbnb4", "lookup-subgraph"];
/** Opset of the one-layer timing models: the newest the candidate forms need (blocked DequantizeLinear). */
const LAYER_OPSET = 21;

/** The bit-exact forms to try per format, packed operator first. */
export const CANDIDATE_FORMS: Record<WeightFormat, readonly ExecForm[]> = {
  int8: INT_FORMS,
  int4: INT_FORMS,
  int3: INT_FORMS,
  int2: INT_FORMS,
  nf4: BNB_FORMS,
  fp4: TABLE_FORMS,
  "bnb-fp4": BNB_FORMS,
  mxfp4: TABLE_FORMS,
  fp8: TABLE_FORMS,
  codebook: TABLE_FORMS,
};

/**
 * The packed operator is left for another form only when it is both PACKED_SLOWDOWN_LIMIT times slower
 * and PACKED_SLOWDOWN_MIN_MS slower in absolute terms: naive ORT paths are 6-60x slower, while on small
 * layers every form takes tens of microseconds and differs by noise, which must not flip the choice.
 */
export const PACKED_SLOWDOWN_LIMIT = 3;
export const PACKED_SLOWDOWN_MIN_MS = 0.1;

export interface FormTiming {
  readonly form: ExecForm;
  readonly p50Ms: number | undefined;
  /** Why ONNX Runtime refused the form, when it did. */
  readonly refused?: string;
}

export interface FormChoice {
  readonly format: WeightFormat;
  readonly layer: string;
  readonly k: number;
  readonly n: number;
  readonly floatP50Ms: number;
  readonly candidates: FormTiming[];
  readonly chosen: ExecForm;
  /** The chosen form is slower than float at this layer. */
  readonly slowerThanFloat: boolean;
  /** The accuracy level the candidates were timed at. */
  readonly timedAtLevel?: number;
}

function singleLayerModel(
  k: number,
  n: number,
  build: (g: { nodes: ReturnType<typeof makeNode>[]; inits: ReturnType<typeof makeTensor>[] }) => void,
): ModelProto {
  const g = { nodes: [] as ReturnType<typeof makeNode>[], inits: [] as ReturnType<typeof makeTensor>[] };
  build(g);
  return create(ModelProtoSchema, {
    irVersion: 10n,
    producerName: "quantgate",
    opsetImport: [
      create(OperatorSetIdProtoSchema, { domain: "", version: BigInt(LAYER_OPSET) }),
      create(OperatorSetIdProtoSchema, { domain: "com.microsoft", version: 1n }),
    ],
    graph: create(GraphProtoSchema, {
      name: "layer",
      node: g.nodes,
      initializer: g.inits,
      input: [makeValueInfo("A", DataType.FLOAT, ["M", k])],
      output: [makeValueInfo("Y", DataType.FLOAT, ["M", n])],
    }),
  });
}

/** One-layer model computing Y = A @ dequant(q) in the given form. */
export function quantizedLayerModel(q: AnyQuantized, form: ExecForm, accuracyLevel: number): ModelProto {
  return singleLayerModel(q.k, q.n, (g) => {
    const lg = layerGraph("W", "A", "Y", q, form, accuracyLevel, { opset: LAYER_OPSET, elemType: DataType.FLOAT });
    g.nodes.push(...lg.nodes);
    g.inits.push(...lg.initializers);
  });
}

export function floatLayerModel(wKN: Float32Array, k: number, n: number): ModelProto {
  return singleLayerModel(k, n, (g) => {
    g.inits.push(makeTensor("W", DataType.FLOAT, [k, n], wKN));
    g.nodes.push(makeNode("MatMul", ["A", "W"], ["Y"]));
  });
}

async function timeModel(ort: Ort, model: ModelProto, k: number, threads: number, runs: number): Promise<number> {
  const session = await createSession(ort, serializeModel(model), threads);
  try {
    const a = new Float32Array(k);
    for (let i = 0; i < k; i++) a[i] = Math.sin(i * 0.37);
    const feeds = { A: new ort.Tensor("float32", a, [1, k]) };
    for (let i = 0; i < 3; i++) await session.run(feeds);
    const times: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      await session.run(feeds);
      times.push(performance.now() - t0);
    }
    times.sort((x, y) => x - y);
    return times[times.length >> 1]!;
  } finally {
    await session.release();
  }
}

export async function chooseForms(ort: Ort, weights: readonly QuantizedWeight[], accuracyLevel: number, threads: number, runs = 30): Promise<FormChoice[]> {
  const byFormat = new Map<WeightFormat, QuantizedWeight>();
  for (const w of weights) {
    if (w.plan.site.kind !== "product") continue;
    const best = byFormat.get(w.plan.format);
    if (!best || w.q.n * w.q.k > best.q.n * best.q.k) byFormat.set(w.plan.format, w);
  }
  const choices: FormChoice[] = [];
  for (const [format, w] of byFormat) {
    const { k, n } = w.q;
    const floatP50Ms = await timeModel(ort, floatLayerModel(transpose(weightRowsNK(w.plan.site), n, k), k, n), k, threads, runs);
    const candidates: FormTiming[] = [];
    for (const form of CANDIDATE_FORMS[format].filter((fm) => formApplies(fm, w.q))) {
      try {
        candidates.push({ form, p50Ms: await timeModel(ort, quantizedLayerModel(w.q, form, accuracyLevel), k, threads, runs) });
      } catch (err) {
        candidates.push({ form, p50Ms: undefined, refused: (err as Error).message.split("\n")[0] });
      }
    }
    const timed = candidates.filter((c): c is FormTiming & { p50Ms: number } => c.p50Ms !== undefined);
    if (timed.length === 0) throw new Error(`ONNX Runtime refused every form for ${format}: ${candidates.map((c) => `${c.form}: ${c.refused}`).join("; ")}`);
    // Prefer the packed operator: its weights stay compressed in memory, while ONNX Runtime folds a
    // dequantizing subgraph back to float at load. Leave it only for a naive path (> PACKED_SLOWDOWN_LIMIT x).
    const packed = timed.find((c) => c.form === "matmulnbits" || c.form === "matmulbnb4");
    const fastest = timed.reduce((a, b) => (b.p50Ms < a.p50Ms ? b : a));
    const packedIsNaive = packed !== undefined && packed.p50Ms > fastest.p50Ms * PACKED_SLOWDOWN_LIMIT && packed.p50Ms - fastest.p50Ms > PACKED_SLOWDOWN_MIN_MS;
    const chosen = packed && !packedIsNaive ? packed : fastest;
    choices.push({
      format,
      layer: w.plan.site.name,
      k,
      n,
      floatP50Ms,
      candidates,
      chosen: chosen.form,
      slowerThanFloat: chosen.p50Ms > floatP50Ms * 1.2,
      timedAtLevel: accuracyLevel,
    });
  }
  return choices;
}

const EXEC_FORMS: readonly ExecForm[] = ["matmulnbits", "dequant-subgraph", "lookup-subgraph", "matmulbnb4"];

/** Forms and accuracy level taken from a committed lockfile instead of timing on this runner. */
export interface ExecutionPins {
  readonly forms: ReadonlyMap<WeightFormat, ExecForm>;
  readonly accuracyLevel: number | undefined;
  /** Where the lockfile's pins came from (its chosenBy). */
  readonly chosenBy: string;
}

/**
 * The committed lockfile's execution pins, used only while its model and recipe hashes match this run's
 * (another model or recipe is timed afresh; the lockfile diff then shows what moved). Returns why not otherwise.
 */
export function pinsFromLockfile(lock: Lockfile | undefined, modelSha256: string, recipeSha256: string): { pins?: ExecutionPins; note: string } {
  if (!lock) return { note: "no committed lockfile" };
  if (!lock.execution) return { note: "the committed lockfile predates pinned forms" };
  if (lock.modelSha256 !== modelSha256) return { note: "the committed lockfile is for another model file (sha256 differs)" };
  if (lock.recipeSha256 !== recipeSha256) return { note: "the committed lockfile is for another recipe (sha256 differs)" };
  const forms = new Map<WeightFormat, ExecForm>();
  for (const [format, form] of Object.entries(lock.execution.forms)) {
    if (!(EXEC_FORMS as readonly string[]).includes(form)) return { note: `the committed lockfile names an unknown form "${form}" for ${format}` };
    forms.set(format as WeightFormat, form as ExecForm);
  }
  const level = lock.execution.accuracyLevel;
  return {
    pins: { forms, accuracyLevel: Number.isInteger(level) && level >= 0 && level <= 4 ? level : undefined, chosenBy: lock.execution.chosenBy },
    note: `forms pinned by the committed lockfile (chosen by ${lock.execution.chosenBy})`,
  };
}

export interface ResolvedForms {
  /** The form per format the emitter uses. */
  readonly formMap: Map<WeightFormat, ExecForm>;
  /** Formats timed on this runner, with their evidence. */
  readonly choices: FormChoice[];
  /** Formats whose form came from the lockfile (not timed). */
  readonly pinned: WeightFormat[];
}

const isPacked = (form: ExecForm): boolean => form === "matmulnbits" || form === "matmulbnb4";

/**
 * Forms for every format among `weights`: pinned ones from the lockfile as they are (never re-timed, so a
 * second runner emits the same bytes), the rest by timing here. Where a pinned form cannot carry a weight
 * the emitter's own fallback applies, which depends on the weight alone, so the bytes stay the same.
 *
 * `earlier` are the choices timed for another accuracy level of the same weights. A format that chose the
 * packed operator there keeps it without re-timing: the two levels' builds must differ by the level alone,
 * or a noisy timing on a loaded runner could give level 4 a dequantizing subgraph, which computes like
 * level 0, and the comparison of the levels would compare forms instead. Formats whose packed form was
 * naive there are timed again at this level (int8 activations may make it the fastest).
 */
export async function resolveForms(
  ort: Ort,
  weights: readonly QuantizedWeight[],
  accuracyLevel: number,
  threads: number,
  pins: ExecutionPins | undefined,
  earlier: readonly FormChoice[] = [],
): Promise<ResolvedForms> {
  const formMap = new Map<WeightFormat, ExecForm>();
  const pinned: WeightFormat[] = [];
  const formats = new Set(weights.filter((w) => w.plan.site.kind === "product").map((w) => w.plan.format));
  for (const format of formats) {
    const form = pins?.forms.get(format);
    if (form) {
      formMap.set(format, form);
      pinned.push(format);
    }
  }
  const kept = earlier.filter((c) => formats.has(c.format) && !formMap.has(c.format) && isPacked(c.chosen));
  for (const c of kept) formMap.set(c.format, c.chosen);
  const timed = await chooseForms(
    ort,
    weights.filter((w) => !formMap.has(w.plan.format)),
    accuracyLevel,
    threads,
  );
  for (const c of timed) formMap.set(c.format, c.chosen);
  return { formMap, choices: [...kept, ...timed], pinned };
}

/** The execution block of the lockfile this run writes. */
export function lockExecution(formMap: ReadonlyMap<WeightFormat, ExecForm>, accuracyLevel: number, chosenBy: string): LockExecution {
  return { accuracyLevel, forms: Object.fromEntries(formMap), chosenBy };
}
