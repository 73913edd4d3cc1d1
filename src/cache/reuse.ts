// Work that does not depend on the recipe, computed once and shared by the gate runs of a search (in memory) and by
// later runs (the work cache): the float model's calibration statistics and its outputs on the evaluation data.
import { createHash } from "node:crypto";
import type { CalibrationResult } from "../calibrate/index.js";
import type { Ort, OrtTensor, Session } from "../runtime/ort.js";
import { canonical, workCacheKey, type WorkCache, type WorkKeyInputs } from "./index.js";

type Runtime = WorkKeyInputs["runtime"];

/** What a calibration collects, and from what: its cache key has no recipe in it. */
export interface CalibrationWork {
  /** sha256 of the float model file. */
  readonly model: string;
  /** The calibration inputs as fed (their bytes are hashed: tokenized or preprocessed data, not file names). */
  readonly batches: readonly Readonly<Record<string, { readonly type: string; readonly dims: readonly number[]; readonly data: unknown }>>[];
  readonly activations: readonly string[];
  /** Activations whose Gram matrix is collected, and the rows it takes. */
  readonly gram: { readonly names: ReadonlySet<string>; readonly maxRows: number };
  readonly types: ReadonlyMap<string, number>;
  readonly convs: readonly { readonly key: string; readonly activation: string; readonly spec: unknown }[];
  readonly threads: number;
  readonly toolVersion: string;
  readonly runtime: Runtime;
}

/** What the float model's outputs on the evaluation data depend on: model, data, task settings, runtime. */
export interface FloatEvalWork {
  /** sha256 of the float (or reference) model file. */
  readonly model: string;
  readonly data: readonly { readonly path?: string; readonly sha256: string }[];
  /** The evaluation settings (task, dataset, windows, preprocessing...). */
  readonly evaluation: unknown;
  readonly threads: number;
  readonly toolVersion: string;
  readonly runtime: Runtime;
}

interface StoredTensor {
  readonly type: string;
  readonly dims: readonly number[];
  readonly data: unknown;
}

/** One float model's recorded runs: feeds and fetches (hashed) to outputs. */
interface FloatRecord {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  readonly runs: Map<string, Record<string, StoredTensor>>;
}

interface FloatEntry {
  record?: FloatRecord;
  /** Recording stopped (over the byte budget): runs pass through to a real session. */
  overflow: boolean;
  bytes: number;
  /** Runs recorded since the entry was restored or saved. */
  unsaved: number;
}

export interface ReuseCounts {
  /** Calibrations computed (not served from memory or the work cache). */
  readonly calibrations: number;
  /** Calibrations served from memory or the work cache. */
  readonly calibrationReuses: number;
  /** Float-model evaluations computed: real float sessions opened to evaluate (per evaluation data). */
  readonly floatEvaluations: number;
  /** Float-model evaluations served from recorded outputs (no float session opened). */
  readonly floatEvaluationReuses: number;
}

export interface WorkReuseOptions {
  /** Keeps both kinds of work across runs too; without it the reuse is in memory only. */
  readonly cache?: WorkCache;
  /** Float outputs kept per evaluation data at most; past it the float model runs again each time. Default 128 MiB. */
  readonly maxRecordedBytes?: number;
  /** Told what was not reused and why (float outputs over the byte budget). */
  readonly onNote?: (message: string) => void;
}

function byteView(data: unknown): Uint8Array {
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return Buffer.from(JSON.stringify(data, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v)));
}

function sizeOf(data: unknown): number {
  return ArrayBuffer.isView(data) ? data.byteLength : Array.isArray(data) ? data.length * 16 : 0;
}

function copyData(data: unknown): unknown {
  if (ArrayBuffer.isView(data) && !(data instanceof DataView)) return (data as unknown as { slice(): unknown }).slice();
  return Array.isArray(data) ? [...(data as unknown[])] : data;
}

/** sha256 over tensors' names, types, dims and bytes (name order fixed), and anything else as canonical JSON. */
function hashTensors(
  tensors: Readonly<Record<string, { readonly type: string; readonly dims: readonly number[]; readonly data: unknown }>>,
  extra: unknown,
): string {
  const h = createHash("sha256");
  for (const name of Object.keys(tensors).sort()) {
    const t = tensors[name]!;
    h.update(`\0${name}\0${t.type}\0${t.dims.join(",")}\0`);
    h.update(byteView(t.data));
  }
  h.update(canonical(extra ?? null));
  return h.digest("hex");
}

/** A calibration's statistics with the Gram matrices of activations outside `names` dropped. */
function projectGram(result: CalibrationResult, names: ReadonlySet<string>): CalibrationResult {
  const stats = new Map(
    [...result.stats].map(([k, s]) => {
      if (names.has(k) || !s.gram) return [k, s];
      return [k, { rows: s.rows, meanAbs: s.meanAbs, meanSquare: s.meanSquare }];
    }),
  );
  return { ...result, stats };
}

/**
 * Computes the recipe-independent work of gate runs once. A gate run given one (GateRunOptions.reuse) takes its
 * calibration and the float model's outputs from it; a search passes the same one to all its runs.
 */
export class WorkReuse {
  /** Per calibration key (no Gram names in it), the activations whose Gram matrices the entry has. */
  private readonly calibrations = new Map<string, { gram: ReadonlySet<string>; result: Promise<CalibrationResult> }>();
  private readonly floats = new Map<string, FloatEntry>();
  private readonly counts = { calibrations: 0, calibrationReuses: 0, floatEvaluations: 0, floatEvaluationReuses: 0 };
  readonly notes: string[] = [];
  constructor(private readonly opts: WorkReuseOptions = {}) {}

  summary(): ReuseCounts {
    return { ...this.counts };
  }

  /**
   * The calibration `work` describes, from memory or the work cache, or computed by `compute` and kept in both.
   * Entries are keyed without the Gram matrices: one that collected them for more activations serves a request
   * for fewer (the extra ones dropped), and a request for more computes them all again with the union.
   */
  async calibration(work: CalibrationWork, compute: (gramNames: ReadonlySet<string>) => Promise<CalibrationResult>): Promise<CalibrationResult> {
    const base = {
      batches: work.batches.map((b) => hashTensors(b, null)),
      activations: [...work.activations],
      gramRows: work.gram.maxRows,
      types: [...work.types].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
      convs: work.convs,
      threads: work.threads,
    };
    const key = workCacheKey({ kind: "calibration", model: work.model, toolVersion: work.toolVersion, runtime: work.runtime, settings: base });
    const wanted = [...work.gram.names];
    const covers = (have: ReadonlySet<string>): boolean => wanted.every((n) => have.has(n));
    const known = this.calibrations.get(key);
    if (known && covers(known.gram)) {
      this.counts.calibrationReuses++;
      return projectGram(await known.result, work.gram.names);
    }
    const entry = (async (): Promise<{ gram: ReadonlySet<string>; result: CalibrationResult }> => {
      let have: ReadonlySet<string> = known?.gram ?? new Set();
      if (!known && this.opts.cache) {
        const cached = await this.opts.cache.restoreValue<{ gram: string[]; result: CalibrationResult }>(key);
        if (cached && Array.isArray(cached.gram) && cached.result?.stats instanceof Map) {
          have = new Set(cached.gram);
          if (covers(have)) {
            this.counts.calibrationReuses++;
            return { gram: have, result: cached.result };
          }
        }
      }
      const gram = new Set([...have, ...wanted]);
      this.counts.calibrations++;
      const result = await compute(gram);
      if (this.opts.cache) await this.opts.cache.saveValue(key, { gram: [...gram].sort(), result });
      return { gram, result };
    })();
    const gramNow = new Set([...(known?.gram ?? []), ...wanted]);
    const result = entry.then((e) => e.result);
    this.calibrations.set(key, { gram: gramNow, result });
    // A failed calibration is not kept: the next run tries again and reports its own error (thrown below; the
    // kept promise's rejection is handled here, or it would end the process as an unhandled rejection).
    result.catch(() => this.calibrations.get(key)?.result === result && this.calibrations.delete(key));
    return projectGram((await entry).result, work.gram.names);
  }

  /**
   * The float model as the evaluation sees it: a session whose runs are answered from the outputs recorded by an
   * earlier evaluation on the same data (memory or work cache), and recorded otherwise. `open` creates the real
   * session, only when a run has no recorded answer. Release it like a session: that saves new recordings.
   */
  async floatSession(ort: Ort, work: FloatEvalWork, open: () => Promise<Session>): Promise<Session> {
    const key = workCacheKey({
      kind: "float-eval",
      model: work.model,
      data: work.data,
      toolVersion: work.toolVersion,
      runtime: work.runtime,
      settings: { evaluation: work.evaluation, threads: work.threads },
    });
    let entry = this.floats.get(key);
    if (!entry) {
      entry = { overflow: false, bytes: 0, unsaved: 0 };
      this.floats.set(key, entry);
      const cached = this.opts.cache ? await this.opts.cache.restoreValue<FloatRecord>(key) : undefined;
      if (cached && cached.runs instanceof Map && Array.isArray(cached.outputNames)) {
        entry.record = cached;
        for (const outputs of cached.runs.values()) for (const t of Object.values(outputs)) entry.bytes += sizeOf(t.data);
      }
    }
    if (entry.overflow) {
      this.counts.floatEvaluations++;
      return open();
    }
    const max = this.opts.maxRecordedBytes ?? 128 * 1024 * 1024;
    let real: Session | undefined;
    const realSession = async (): Promise<Session> => {
      if (!real) {
        real = await open();
        this.counts.floatEvaluations++;
      }
      return real;
    };
    if (!entry.record) {
      const s = await realSession();
      entry.record = { inputNames: [...s.inputNames], outputNames: [...s.outputNames], runs: new Map() };
    }
    const record = entry.record;
    const e = entry;
    let replayed = false;
    const session = {
      inputNames: record.inputNames,
      outputNames: record.outputNames,
      run: async (feeds: Record<string, OrtTensor>, fetches?: unknown, options?: unknown): Promise<Record<string, OrtTensor>> => {
        const runKey = hashTensors(feeds as Record<string, StoredTensor>, fetches ?? null);
        const hit = e.overflow ? undefined : record.runs.get(runKey);
        if (hit) {
          if (!replayed && !real) this.counts.floatEvaluationReuses++;
          replayed = true;
          return Object.fromEntries(
            Object.entries(hit).map(([name, t]) => [name, new ort.Tensor(t.type as "float32", copyData(t.data) as Float32Array, t.dims)]),
          );
        }
        const s = await realSession();
        const out = await (s.run as (f: unknown, x?: unknown, o?: unknown) => Promise<Record<string, OrtTensor>>)(feeds, fetches, options);
        if (!e.overflow) {
          const stored: Record<string, StoredTensor> = {};
          for (const [name, t] of Object.entries(out)) {
            stored[name] = { type: t.type, dims: [...t.dims], data: copyData(t.data) };
            e.bytes += sizeOf(t.data);
          }
          if (e.bytes > max) {
            e.overflow = true;
            record.runs.clear();
            const note = `float-model outputs over ${max >= 2 ** 20 ? `${Math.round(max / 2 ** 20)} MiB` : `${max} bytes`}: not kept, the float model runs in every evaluation`;
            this.notes.push(note);
            this.opts.onNote?.(note);
          } else {
            record.runs.set(runKey, stored);
            e.unsaved++;
          }
        }
        return out;
      },
      release: async (): Promise<void> => {
        if (real) await real.release();
        if (this.opts.cache && !e.overflow && e.unsaved > 0) {
          e.unsaved = 0;
          await this.opts.cache.saveValue(key, record);
        }
      },
    };
    return session as unknown as Session;
  }
}
