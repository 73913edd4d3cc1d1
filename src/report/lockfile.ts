// The precision lockfile (quantgate.lock.json): one row per weight with its format, bits, block size,
// algorithm and error, committed beside the config so a pull request shows which layers changed.
import { readFile, writeFile } from "node:fs/promises";
import type { QuantizedLayerReport } from "./types.js";

export const LOCKFILE_NAME = "quantgate.lock.json";
export const LOCK_SCHEMA = "quantgate.lock/v1";

export interface LockEntry {
  readonly format: string;
  readonly bits: number;
  readonly blockSize: number;
  readonly symmetric: boolean;
  readonly algorithm: string;
  readonly form: string;
  readonly bitsPerWeight: number;
  readonly relativeError: number;
}

/**
 * How the emitted model executes, pinned so that another runner emits the same bytes: the ONNX Runtime
 * form per weight format and the MatMulNBits accuracy_level. Chosen by timing (and, for the level, by the
 * accuracy rules) on the runner that wrote the lockfile; used as is while the model and recipe hashes match.
 */
export interface LockExecution {
  readonly accuracyLevel: number;
  readonly forms: Record<string, string>;
  /** Where the pins came from, e.g. "timing on AMD EPYC 7B13 (2 threads)". */
  readonly chosenBy: string;
}

export interface Lockfile {
  readonly schema: string;
  readonly model: string;
  readonly modelSha256: string;
  readonly recipeSha256: string;
  /** Absent in lockfiles written before forms were pinned. */
  readonly execution?: LockExecution;
  readonly layers: Record<string, LockEntry>;
}

export interface LayerChange {
  readonly name: string;
  readonly change: "added" | "removed" | "changed";
  readonly before?: LockEntry;
  readonly after?: LockEntry;
  /** Fields that differ (for "changed"). */
  readonly fields: string[];
}

const round = (x: number, digits: number): number => Number(x.toPrecision(digits));

export function buildLockfile(
  model: string,
  modelSha256: string,
  recipeSha256: string,
  layers: readonly QuantizedLayerReport[],
  execution?: LockExecution,
): Lockfile {
  const entries: Record<string, LockEntry> = {};
  for (const l of [...layers].sort((a, b) => (a.name < b.name ? -1 : 1))) {
    entries[l.name] = {
      format: l.format,
      bits: l.bits,
      blockSize: l.blockSize,
      symmetric: l.symmetric,
      algorithm: l.algorithm,
      form: l.form,
      bitsPerWeight: round(l.bitsPerWeight, 6),
      relativeError: round(l.relativeError, 4),
    };
  }
  const pinned = execution
    ? { execution: { ...execution, forms: Object.fromEntries(Object.entries(execution.forms).sort(([a], [b]) => (a < b ? -1 : 1))) } }
    : {};
  return { schema: LOCK_SCHEMA, model, modelSha256, recipeSha256, ...pinned, layers: entries };
}

/** Fields whose change is a precision change (errors move with every retrain and are not compared). */
const COMPARED: (keyof LockEntry)[] = ["format", "bits", "blockSize", "symmetric", "algorithm", "form"];

export function diffLockfiles(before: Lockfile | undefined, after: Lockfile): LayerChange[] {
  if (!before) return [];
  const changes: LayerChange[] = [];
  for (const [name, a] of Object.entries(after.layers)) {
    const b = before.layers[name];
    if (!b) {
      changes.push({ name, change: "added", after: a, fields: [] });
      continue;
    }
    const fields = COMPARED.filter((key) => a[key] !== b[key]);
    if (fields.length > 0) changes.push({ name, change: "changed", before: b, after: a, fields });
  }
  for (const [name, b] of Object.entries(before.layers)) if (!after.layers[name]) changes.push({ name, change: "removed", before: b, fields: [] });
  return changes;
}

export async function readLockfile(file: string): Promise<Lockfile | undefined> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch {
    return undefined;
  }
  const parsed = JSON.parse(text) as Lockfile;
  if (parsed.schema !== LOCK_SCHEMA) throw new Error(`${file}: expected a ${LOCK_SCHEMA} lockfile, found schema ${JSON.stringify(parsed.schema)}`);
  return parsed;
}

export async function writeLockfile(file: string, lock: Lockfile): Promise<void> {
  await writeFile(file, JSON.stringify(lock, null, 2) + "\n");
}
