// Recognises what a language-model export declares (input ids, attention mask, position ids, past/present
// key-value pairs) and builds the feeds to score text or to decode with a KV cache. Pure: no ORT, no files.
//
// Recognised by name (case-insensitive) and checked by rank and element type; `LmInputOverrides` names them
// explicitly where an export uses other names:
//   input ids        evaluation.input_name (default "input_ids")
//   attention mask   attention_mask | attn_mask | mask                     rank 2 integer (or bool): [batch, past+seq]
//   position ids     position_ids | positions | pos_ids                    rank 2 integer: [batch, seq] -> past..past+seq-1
//   cache position   cache_position                                        rank 1 integer: [seq] -> past..past+seq-1
//   use-cache flag   use_cache_branch | use_cache                          bool [1] (Optimum merged decoders): past > 0
//   token types      token_type_ids                                        rank 2 integer: zeros
//   past key/value   a name containing "past" (past_key_values.3.key, past.3.value, past_key_3, past_value_3,
//                    past_key_values.3.decoder.key, ...): the first number is the layer, "key"/"value" the kind;
//                    float rank 4, usually [batch, kv_heads, past_length, head_dim]
//   present          outputs named like the past with "present" (present.3.key, present_key_values.3.value, ...)
// Empty past (length 0) keeps every declared fixed size and sets the batch axis and the past-length axis.
import { z } from "zod";
import { UserError } from "../errors.js";
import type { Ort, OrtTensor } from "../runtime/ort.js";
import { floatToHalf } from "../util/half.js";

export type LmElemType = "int64" | "int32" | "float32" | "float16" | "bool";

/** What a model declares for one input or output (ORT's session metadata has this form). */
export interface LmValueDecl {
  readonly name: string;
  readonly type: string;
  /** Sizes per axis: numbers where fixed, strings (symbolic names) or undefined where dynamic. */
  readonly shape?: readonly (number | string | undefined)[];
}

export interface LmTensor {
  readonly type: LmElemType;
  readonly dims: readonly number[];
  readonly data: BigInt64Array | Int32Array | Float32Array | Uint16Array | Uint8Array;
}

export type LmFeeds = Record<string, LmTensor>;

/** Config keys (proposed under `evaluation.inputs`) naming inputs whose names the patterns miss. */
export interface LmInputOverrides {
  readonly input_ids?: string;
  readonly attention_mask?: string;
  readonly position_ids?: string;
  /** Templates with `{layer}`, e.g. "cache.{layer}.k". */
  readonly past_key?: string;
  readonly past_value?: string;
  readonly present_key?: string;
  readonly present_value?: string;
  /** Inputs to feed with a constant: name -> number (integer/float inputs, filled with it) or boolean. */
  readonly constants?: Readonly<Record<string, number | boolean>>;
}

/**
 * The proposed `evaluation.inputs` block of the language-modeling task (zod), producing LmInputOverrides.
 * Templates must contain "{layer}". Plug in as `inputs: lmInputsConfigSchema.optional()` beside
 * `stride: z.number().int().positive().optional()` (default: sequence_length, non-overlapping windows).
 */
const layerTemplate = z.string().refine((s) => s.split("{layer}").length === 2, 'must contain "{layer}" once, e.g. "past_key_values.{layer}.key"');
export const lmInputsConfigSchema = z.strictObject({
  attention_mask: z.string().min(1).optional(),
  position_ids: z.string().min(1).optional(),
  past_key: layerTemplate.optional(),
  past_value: layerTemplate.optional(),
  present_key: layerTemplate.optional(),
  present_value: layerTemplate.optional(),
  constants: z.record(z.string(), z.union([z.number(), z.boolean()])).optional(),
});

export interface KvSlot {
  readonly name: string;
  readonly type: "float32" | "float16";
  /** Declared dims with the batch and past-length axes marked. */
  readonly dims: readonly (number | undefined)[];
  readonly batchAxis: number;
  readonly pastAxis: number;
  /** The output that returns this slot's updated cache, when the model has one. */
  readonly present?: string;
}

export interface KvLayer {
  readonly layer: number;
  readonly key: KvSlot;
  readonly value: KvSlot;
}

export interface LmInputPlan {
  readonly inputIds: { readonly name: string; readonly type: "int64" | "int32" };
  readonly attentionMask?: { readonly name: string; readonly type: LmElemType };
  readonly positionIds?: { readonly name: string; readonly type: "int64" | "int32" };
  readonly cachePosition?: { readonly name: string; readonly type: "int64" | "int32" };
  readonly useCacheBranch?: { readonly name: string };
  readonly tokenTypeIds?: { readonly name: string; readonly type: "int64" | "int32" };
  readonly constants: readonly { readonly name: string; readonly type: LmElemType; readonly dims: readonly number[]; readonly value: number | boolean }[];
  /** Past key/value inputs per layer, in layer order (empty for a model without a cache). */
  readonly layers: readonly KvLayer[];
  /** True when every past has a present output: the model can decode with a cache. */
  readonly canDecode: boolean;
  /** One line per recognised input, for the report ("attention_mask: attention mask, all ones"). */
  readonly description: readonly string[];
}

const MASK_NAMES = /^(attention_mask|attn_mask|mask)$/i;
const POSITION_NAMES = /^(position_ids|positions|pos_ids)$/i;
const CACHE_POSITION_NAMES = /^cache_position$/i;
const USE_CACHE_NAMES = /^(use_cache_branch|use_cache)$/i;
const TOKEN_TYPE_NAMES = /^token_type_ids$/i;
const KIND_RE = /(^|[^a-z])(key|value|k|v)s?([^a-z]|$)/;

const INT_TYPES = new Set(["int64", "int32"]);

function rank(d: LmValueDecl): number | undefined {
  return d.shape?.length;
}

function describeDecl(d: LmValueDecl): string {
  const dims = d.shape ? `[${d.shape.map((s) => (s === undefined ? "?" : String(s))).join(", ")}]` : "(no shape)";
  return `${d.type} ${dims}`;
}

/** Layer index and kind of a cache tensor name ("past_key_values.3.value" -> {3, "value"}), or undefined. */
export function parseKvName(name: string, prefix: "past" | "present"): { layer: number; kind: "key" | "value" } | undefined {
  const lower = name.toLowerCase();
  const at = lower.indexOf(prefix);
  if (at < 0) return undefined;
  const after = lower.slice(at + prefix.length);
  const num = /\d+/.exec(after);
  if (!num) return undefined;
  // the kind after the layer number (past_key_values.3.value), else before it (past_key_3), ignoring "key_values"
  const tail = after.slice(num.index + num[0].length);
  const head = after.slice(0, num.index).replace(/key_?values?/g, "");
  const m = KIND_RE.exec(tail) ?? KIND_RE.exec(head);
  if (!m) return undefined;
  return { layer: Number(num[0]), kind: m[2]!.startsWith("k") ? "key" : "value" };
}

function templateMatch(template: string, name: string): number | undefined {
  const [pre, post] = template.split("{layer}");
  if (post === undefined) return undefined;
  if (!name.startsWith(pre!) || !name.endsWith(post) || name.length <= pre!.length + post.length) return undefined;
  const mid = name.slice(pre!.length, name.length - post.length);
  return /^\d+$/.test(mid) ? Number(mid) : undefined;
}

function kvSlot(d: LmValueDecl, present: string | undefined): KvSlot {
  if (d.type !== "float32" && d.type !== "float16") {
    throw new UserError(`the language-modeling task cannot fill model input "${d.name}" (${describeDecl(d)}): a past key/value must be float32 or float16`);
  }
  const shape = d.shape;
  if (!shape || shape.length < 3) {
    throw new UserError(
      `the language-modeling task cannot fill model input "${d.name}" (${describeDecl(d)}): a past key/value needs a declared shape of rank 3 or more, like [batch, kv_heads, past_length, head_dim]`,
    );
  }
  const dynamic = shape.map((s, i) => ({ s, i })).filter(({ s }) => typeof s !== "number" || s < 0);
  const named = (re: RegExp): number | undefined => dynamic.find(({ s }) => typeof s === "string" && re.test(s))?.i;
  let batchAxis = named(/batch|^b$|^n$/i);
  let pastAxis = named(/past|seq|len|total|cache|ctx|context/i);
  if (batchAxis === undefined && dynamic.some(({ i }) => i === 0) && pastAxis !== 0) batchAxis = 0;
  if (pastAxis === undefined) {
    const rest = dynamic.filter(({ i }) => i !== batchAxis);
    if (rest.length === 1) pastAxis = rest[0]!.i;
  }
  const others = dynamic.filter(({ i }) => i !== batchAxis && i !== pastAxis);
  if (batchAxis === undefined || pastAxis === undefined || others.length > 0) {
    throw new UserError(
      `the language-modeling task cannot fill model input "${d.name}" (${describeDecl(d)}): cannot tell its batch and past-length axes; ` +
        `an empty past needs every other size fixed (e.g. [batch, kv_heads, past_length, head_dim] with numeric kv_heads and head_dim)`,
    );
  }
  return {
    name: d.name,
    type: d.type,
    dims: shape.map((s) => (typeof s === "number" && s >= 0 ? s : undefined)),
    batchAxis,
    pastAxis,
    ...(present !== undefined ? { present } : {}),
  };
}

/**
 * Classify every input the model declares. Throws a UserError naming each input it could not fill, with its
 * declared type and shape, and the config key that would name it.
 */
export function planLmInputs(inputs: readonly LmValueDecl[], outputs: readonly LmValueDecl[] = [], overrides: LmInputOverrides = {}): LmInputPlan {
  const idsName = overrides.input_ids ?? "input_ids";
  const ids = inputs.find((i) => i.name === idsName);
  if (!ids) {
    throw new UserError(`"${idsName}" is not an input of the model (inputs: ${inputs.map((i) => i.name).join(", ")}); set evaluation.input_name`);
  }
  if (!INT_TYPES.has(ids.type)) {
    throw new UserError(`model input "${ids.name}" has type ${ids.type}; a language model takes int64 or int32 token ids`);
  }
  const description: string[] = [`${ids.name}: token ids`];
  const unfilled: LmValueDecl[] = [];
  const constants: { name: string; type: LmElemType; dims: number[]; value: number | boolean }[] = [];
  let attentionMask: LmInputPlan["attentionMask"];
  let positionIds: LmInputPlan["positionIds"];
  let cachePosition: LmInputPlan["cachePosition"];
  let useCacheBranch: LmInputPlan["useCacheBranch"];
  let tokenTypeIds: LmInputPlan["tokenTypeIds"];
  const pasts = new Map<number, { key?: LmValueDecl; value?: LmValueDecl }>();

  const presentFor = (layer: number, kind: "key" | "value"): string | undefined => {
    const template = kind === "key" ? overrides.present_key : overrides.present_value;
    for (const o of outputs) {
      if (template !== undefined ? templateMatch(template, o.name) === layer : sameKv(parseKvName(o.name, "present"), layer, kind)) return o.name;
    }
    return undefined;
  };

  for (const d of inputs) {
    if (d.name === ids.name) continue;
    const constant = overrides.constants?.[d.name];
    if (constant !== undefined) {
      const type = d.type as LmElemType;
      if (!["int64", "int32", "float32", "float16", "bool"].includes(type)) unfilled.push(d);
      else {
        const dims = (d.shape ?? []).map((s) => (typeof s === "number" && s >= 0 ? s : 1));
        constants.push({ name: d.name, type, dims, value: constant });
        description.push(`${d.name}: constant ${String(constant)} (evaluation.inputs.constants)`);
      }
      continue;
    }
    const isInt = INT_TYPES.has(d.type);
    const r = rank(d);
    const named = (key: keyof LmInputOverrides, re: RegExp): boolean => (overrides[key] !== undefined ? overrides[key] === d.name : re.test(d.name));
    if (named("attention_mask", MASK_NAMES) && (isInt || d.type === "bool" || d.type === "float32") && (r === undefined || r === 2)) {
      attentionMask = { name: d.name, type: d.type as LmElemType };
      description.push(`${d.name}: attention mask, all ones over past and new tokens`);
    } else if (named("position_ids", POSITION_NAMES) && isInt && (r === undefined || r === 2)) {
      positionIds = { name: d.name, type: d.type as "int64" | "int32" };
      description.push(`${d.name}: position ids, past..past+seq-1`);
    } else if (CACHE_POSITION_NAMES.test(d.name) && isInt && (r === undefined || r === 1)) {
      cachePosition = { name: d.name, type: d.type as "int64" | "int32" };
      description.push(`${d.name}: cache position, past..past+seq-1`);
    } else if (USE_CACHE_NAMES.test(d.name) && d.type === "bool") {
      useCacheBranch = { name: d.name };
      description.push(`${d.name}: true when a past is fed`);
    } else if (TOKEN_TYPE_NAMES.test(d.name) && isInt && (r === undefined || r === 2)) {
      tokenTypeIds = { name: d.name, type: d.type as "int64" | "int32" };
      description.push(`${d.name}: zeros`);
    } else {
      let kv: { layer: number; kind: "key" | "value" } | undefined;
      if (overrides.past_key !== undefined || overrides.past_value !== undefined) {
        const lk = overrides.past_key !== undefined ? templateMatch(overrides.past_key, d.name) : undefined;
        const lv = overrides.past_value !== undefined ? templateMatch(overrides.past_value, d.name) : undefined;
        kv = lk !== undefined ? { layer: lk, kind: "key" } : lv !== undefined ? { layer: lv, kind: "value" } : undefined;
      } else {
        kv = parseKvName(d.name, "past");
      }
      if (!kv) {
        unfilled.push(d);
        continue;
      }
      const entry = pasts.get(kv.layer) ?? {};
      if (entry[kv.kind]) {
        throw new UserError(
          `model inputs "${entry[kv.kind]!.name}" and "${d.name}" both look like the past ${kv.kind} of layer ${kv.layer}; name them with evaluation.inputs.past_key / past_value`,
        );
      }
      entry[kv.kind] = d;
      pasts.set(kv.layer, entry);
    }
  }
  if (unfilled.length > 0) {
    throw new UserError(
      `the language-modeling task cannot fill ${unfilled.length === 1 ? "model input" : "model inputs"} ` +
        unfilled.map((d) => `"${d.name}" (${describeDecl(d)})`).join(", ") +
        `: not token ids, an attention mask, position ids or a past key/value by name; name ${unfilled.length === 1 ? "its role" : "their roles"} under evaluation.inputs ` +
        `(attention_mask, position_ids, past_key, past_value, constants)`,
    );
  }
  const layers: KvLayer[] = [];
  for (const layer of [...pasts.keys()].sort((a, b) => a - b)) {
    const e = pasts.get(layer)!;
    if (!e.key || !e.value) {
      const have = (e.key ?? e.value)!;
      throw new UserError(
        `the language-modeling task cannot fill model input "${have.name}": layer ${layer} has a past ${e.key ? "key" : "value"} but no matching past ${e.key ? "value" : "key"}`,
      );
    }
    layers.push({ layer, key: kvSlot(e.key, presentFor(layer, "key")), value: kvSlot(e.value, presentFor(layer, "value")) });
  }
  if (layers.length > 0) {
    description.push(`${layers.length * 2} past key/value inputs (${layers[0]!.key.name}, ...): empty past (length 0) for scoring`);
  }
  const canDecode = layers.length > 0 && layers.every((l) => l.key.present !== undefined && l.value.present !== undefined);
  return {
    inputIds: { name: ids.name, type: ids.type as "int64" | "int32" },
    ...(attentionMask ? { attentionMask } : {}),
    ...(positionIds ? { positionIds } : {}),
    ...(cachePosition ? { cachePosition } : {}),
    ...(useCacheBranch ? { useCacheBranch } : {}),
    ...(tokenTypeIds ? { tokenTypeIds } : {}),
    constants,
    layers,
    canDecode,
    description,
  };
}

function sameKv(p: { layer: number; kind: string } | undefined, layer: number, kind: string): boolean {
  return p !== undefined && p.layer === layer && p.kind === kind;
}

function intTensor(type: "int64" | "int32", values: ArrayLike<number>, dims: number[]): LmTensor {
  const data = type === "int64" ? BigInt64Array.from(Array.from(values), (v) => BigInt(v)) : Int32Array.from(values);
  return { type, dims, data };
}

function filled(type: LmElemType, count: number, value: number | boolean, dims: number[]): LmTensor {
  const v = typeof value === "boolean" ? (value ? 1 : 0) : value;
  switch (type) {
    case "int64":
      return { type, dims, data: new BigInt64Array(count).fill(BigInt(Math.trunc(v))) };
    case "int32":
      return { type, dims, data: new Int32Array(count).fill(Math.trunc(v)) };
    case "float32":
      return { type, dims, data: new Float32Array(count).fill(v) };
    case "float16":
      return { type, dims, data: new Uint16Array(count).fill(floatToHalf(v)) };
    default:
      return { type, dims, data: new Uint8Array(count).fill(v ? 1 : 0) };
  }
}

/** An empty past (length 0) for one cache slot, at this batch size. */
export function emptyPast(slot: KvSlot, batch: number): LmTensor {
  const dims = slot.dims.map((d, i) => (i === slot.batchAxis ? batch : i === slot.pastAxis ? 0 : d!));
  return { type: slot.type, dims, data: slot.type === "float16" ? new Uint16Array(0) : new Float32Array(0) };
}

/**
 * Feeds for one forward call: `rows` are the new tokens (all rows the same length), `pastLength` tokens are already
 * in the cache. `past` maps each past input name to the tensor to feed (the previous call's present); without it
 * the past is empty (pastLength must then be 0). Scoring uses this with pastLength 0 and no past.
 */
export function buildLmFeeds<T = LmTensor>(
  plan: LmInputPlan,
  rows: readonly (readonly number[])[],
  pastLength = 0,
  past?: ReadonlyMap<string, T>,
): Record<string, LmTensor | T> {
  const batch = rows.length;
  const seq = rows[0]?.length ?? 0;
  if (batch === 0 || seq === 0) throw new Error("internal: buildLmFeeds needs at least one row of at least one token");
  if (rows.some((r) => r.length !== seq)) throw new Error("internal: buildLmFeeds rows differ in length");
  if (pastLength > 0 && plan.layers.length > 0 && !past) throw new Error("internal: a past length without past tensors");
  const total = pastLength + seq;
  const feeds: Record<string, LmTensor | T> = {};
  feeds[plan.inputIds.name] = intTensor(plan.inputIds.type, rows.flat(), [batch, seq]);
  if (plan.attentionMask) feeds[plan.attentionMask.name] = filled(plan.attentionMask.type, batch * total, 1, [batch, total]);
  const positions = Array.from({ length: seq }, (_, i) => pastLength + i);
  if (plan.positionIds) {
    feeds[plan.positionIds.name] = intTensor(plan.positionIds.type, Array.from({ length: batch }, () => positions).flat(), [batch, seq]);
  }
  if (plan.cachePosition) feeds[plan.cachePosition.name] = intTensor(plan.cachePosition.type, positions, [seq]);
  if (plan.useCacheBranch) feeds[plan.useCacheBranch.name] = filled("bool", 1, pastLength > 0, [1]);
  if (plan.tokenTypeIds) feeds[plan.tokenTypeIds.name] = filled(plan.tokenTypeIds.type, batch * seq, 0, [batch, seq]);
  for (const c of plan.constants) {
    const dims = c.dims.map((d, i) => (i === 0 && c.dims.length > 1 ? batch : d));
    feeds[c.name] = filled(
      c.type,
      dims.reduce((a, b) => a * b, 1),
      c.value,
      dims,
    );
  }
  for (const l of plan.layers) {
    for (const slot of [l.key, l.value]) {
      const given = past?.get(slot.name);
      if (past && given === undefined) throw new Error(`internal: no past tensor for "${slot.name}"`);
      feeds[slot.name] = given ?? emptyPast(slot, batch);
    }
  }
  return feeds;
}

/** Map a call's outputs to the next call's past inputs (present.{i}.key -> past_key_values.{i}.key). */
export function presentToPast<T>(plan: LmInputPlan, outputs: Readonly<Record<string, T>>): Map<string, T> {
  const next = new Map<string, T>();
  for (const l of plan.layers) {
    for (const slot of [l.key, l.value]) {
      if (slot.present === undefined) throw new UserError(`model input "${slot.name}" has no matching present output; cannot decode with a cache`);
      const t = outputs[slot.present];
      if (t === undefined) throw new Error(`internal: output "${slot.present}" missing from the run's results`);
      next.set(slot.name, t);
    }
  }
  return next;
}

// ------------------------------------------------------------------------------------------------
// Sliding-window scoring
// ------------------------------------------------------------------------------------------------

export interface ScoringWindow {
  /** Offset of the window's first token in the text. */
  readonly begin: number;
  readonly ids: readonly number[];
  /** Index in `ids` of the first target token scored here (earlier ones are context only); always >= 1. */
  readonly scoreFrom: number;
}

export interface SlidingWindows {
  readonly windows: readonly ScoringWindow[];
  /** Next-token predictions scored over all windows (each text token at most once). */
  readonly tokensScored: number;
  /** Tokens of the text the windows covered. */
  readonly tokensCovered: number;
}

/**
 * Windows of at most `length` tokens starting every `stride` tokens; each target token is scored once, in the
 * first window where it is new (so with stride < length it has at least length - stride tokens of context).
 * stride == length gives the tiny LM's protocol: consecutive windows, tokens 1..n-1 of each scored.
 * `maxWindows` stops early (the text's tail is then not scored).
 */
export function slidingWindows(ids: readonly number[], length: number, stride: number, maxWindows = Infinity): SlidingWindows {
  if (!Number.isInteger(length) || length < 2) throw new UserError(`evaluation.sequence_length must be an integer >= 2, got ${length}`);
  if (!Number.isInteger(stride) || stride < 1 || stride > length) {
    throw new UserError(`evaluation.stride must be an integer from 1 to sequence_length (${length}), got ${stride}`);
  }
  const windows: ScoringWindow[] = [];
  let scoredEnd = 0; // text tokens [0, scoredEnd) are scored or context-only (token 0 is never a target)
  let tokensScored = 0;
  for (let begin = 0; begin < ids.length && windows.length < maxWindows; begin += stride) {
    const end = Math.min(begin + length, ids.length);
    if (end - begin < 2) break;
    const scoreFrom = stride === length ? 1 : Math.max(1, scoredEnd - begin);
    if (end > begin + scoreFrom) {
      windows.push({ begin, ids: ids.slice(begin, end), scoreFrom });
      tokensScored += end - begin - scoreFrom;
    }
    scoredEnd = end;
    if (end === ids.length) break;
  }
  return { windows, tokensScored, tokensCovered: scoredEnd };
}

/** ORT tensors for feeds from buildLmFeeds (tensors already from ORT, such as a fed-back present, pass through). */
export function toOrtLmFeeds(ort: Ort, feeds: Readonly<Record<string, LmTensor | OrtTensor>>): Record<string, OrtTensor> {
  const out: Record<string, OrtTensor> = {};
  for (const [name, t] of Object.entries(feeds)) {
    out[name] = t instanceof ort.Tensor ? t : new ort.Tensor((t as LmTensor).type, (t as LmTensor).data, (t as LmTensor).dims as number[]);
  }
  return out;
}

/** The declarations ORT reports for a session's inputs or outputs, in this module's form. */
export function sessionDecls(metadata: readonly unknown[]): LmValueDecl[] {
  return metadata.map((m) => {
    const v = m as { name: string; isTensor?: boolean; type?: string; shape?: readonly (number | string)[] };
    return {
      name: v.name,
      type: v.isTensor === false ? "non-tensor" : (v.type ?? "unknown"),
      ...(v.shape ? { shape: v.shape.map((s) => (typeof s === "number" && s < 0 ? undefined : s)) } : {}),
    };
  });
}
