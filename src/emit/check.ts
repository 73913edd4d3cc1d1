// Emit with a loadability check: the emitted model is loaded in ONNX Runtime before the stage ends. A
// weight whose form ONNX Runtime refuses falls back to the next bit-exact form, and when none loads it
// stays float, listed as skipped with ONNX Runtime's reason. An unloadable model is never returned.
import type { WeightFormat } from "../config/schema.js";
import { serializeModel, type ModelProto } from "../onnx/model.js";
import type { SkippedWeight, WeightDiscovery } from "../onnx/weights.js";
import type { QuantizedWeight } from "../quantize/index.js";
import { createSession, type Ort } from "../runtime/ort.js";
import { defaultOpset, emitModel, fallbackForm, type EmittedLayer, type ExecForm } from "./index.js";

export interface CheckedEmit {
  readonly proto: ModelProto;
  readonly layers: EmittedLayer[];
  /** The quantized weights that were emitted, aligned with `layers`. */
  readonly weights: QuantizedWeight[];
  /** The discovery's skipped list plus every weight that stayed float at emit, with why. */
  readonly skipped: SkippedWeight[];
  /** What the check changed (fallbacks), for the report. */
  readonly notes: string[];
}

/** Does ONNX Runtime load this model? undefined when it does, else its message (first line). */
export async function loadError(ort: Ort, proto: ModelProto): Promise<string | undefined> {
  try {
    const s = await createSession(ort, serializeModel(proto), 1);
    await s.release();
    return undefined;
  } catch (err) {
    return (err as Error).message.replace(/^ONNX Runtime could not load in-memory model: /, "").split("\n")[0]!;
  }
}

function skippedOf(w: QuantizedWeight, reason: string): SkippedWeight {
  const { site } = w.plan;
  return { name: site.name, nodeName: site.nodeName, opType: site.opType, shape: site.dims, reason, origin: site.origin };
}

/**
 * @param discovery the load stage's findings; its skipped list is extended, never shortened.
 * Each attempt costs one ONNX Runtime session on the whole model; a refusal that names no added node
 * is traced to its weight by loading one weight at a time.
 */
export async function emitChecked(
  ort: Ort,
  source: ModelProto,
  weights: readonly QuantizedWeight[],
  forms: ReadonlyMap<WeightFormat, ExecForm>,
  accuracyLevel: number,
  discovery: Pick<WeightDiscovery, "skipped">,
): Promise<CheckedEmit> {
  const pinned = new Map<number, ExecForm>();
  const dropped = new Map<number, string>();
  const notes: string[] = [];
  const skipped = [...discovery.skipped];
  for (let attempt = 0; attempt <= 2 * weights.length + 1; attempt++) {
    const active = weights.map((w, i) => (dropped.has(i) ? undefined : w));
    const kept = active.flatMap((w, i) => (w ? [i] : []));
    const emitted = emitModel(
      source,
      kept.map((i) => weights[i]!),
      forms,
      accuracyLevel,
      new Map(kept.flatMap((i, j) => (pinned.has(i) ? [[j, pinned.get(i)!] as const] : []))),
    );
    // Weights the emitter could not write at this opset or for their consumer stay float, with its reason.
    if (emitted.refused.length > 0) {
      for (const r of emitted.refused) dropped.set(kept[r.index]!, `not emitted: ${r.reason}`);
      continue;
    }
    const error = await loadError(ort, emitted.proto);
    if (error === undefined) {
      for (const [i, reason] of dropped) skipped.push(skippedOf(weights[i]!, reason));
      return { proto: emitted.proto, layers: emitted.layers, weights: emitted.layerIndex.map((j) => weights[kept[j]!]!), skipped, notes };
    }
    const culprit = await findCulprit(ort, source, weights, kept, emitted.layers, emitted.layerIndex, error, forms, accuracyLevel, pinned);
    if (culprit === undefined) {
      throw new Error(`ONNX Runtime refused the quantized model and no single weight explains it (${error}); nothing was written`);
    }
    const layer = emitted.layers[emitted.layerIndex.indexOf(culprit.position)]!;
    const next = fallbackForm(layer.form, weights[kept[culprit.position]!]!.q, defaultOpset(source));
    const index = kept[culprit.position]!;
    if (next) {
      pinned.set(index, next);
      notes.push(`${layer.name}: ONNX Runtime refused ${layer.form} (${culprit.error}); using ${next}`);
    } else {
      dropped.set(index, `ONNX Runtime refused its ${layer.form} form: ${culprit.error}`);
      notes.push(`${layer.name}: ONNX Runtime refused ${layer.form} (${culprit.error}); kept float`);
    }
  }
  throw new Error("internal: the loadability check did not converge");
}

/** The position (in `kept`) of the weight that makes ONNX Runtime refuse the model, and its own error. */
async function findCulprit(
  ort: Ort,
  source: ModelProto,
  weights: readonly QuantizedWeight[],
  kept: readonly number[],
  layers: readonly EmittedLayer[],
  layerIndex: readonly number[],
  error: string,
  forms: ReadonlyMap<WeightFormat, ExecForm>,
  accuracyLevel: number,
  pinned: ReadonlyMap<number, ExecForm>,
): Promise<{ position: number; error: string } | undefined> {
  // ONNX Runtime names the node it refused; the nodes we added carry the weight's prefix (longest match wins).
  let named = -1;
  let longest = 0;
  layers.forEach((l, i) => {
    for (const n of l.nodes) {
      if (n.length > longest && error.includes(n)) [named, longest] = [i, n.length];
    }
  });
  if (named >= 0) return { position: layerIndex[named]!, error };
  const sourceError = await loadError(ort, source);
  if (sourceError) throw new Error(`ONNX Runtime cannot load the float model itself, so no quantized form can be checked: ${sourceError}`);
  for (let j = 0; j < kept.length; j++) {
    const i = kept[j]!;
    const one = emitModel(source, [weights[i]!], forms, accuracyLevel, pinned.has(i) ? new Map([[0, pinned.get(i)!]]) : new Map());
    const e = await loadError(ort, one.proto);
    if (e !== undefined) return { position: j, error: e };
  }
  return undefined;
}
