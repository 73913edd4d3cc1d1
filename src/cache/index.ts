// The work cache: results that depend only on their inputs (quantized model, calibration statistics,
// float-model evaluation) kept in a local folder under keys hashed from model, recipe, data, tool
// version and runtime. The action persists the folder with @actions/cache (see ./actions.ts).
import { createHash, randomBytes } from "node:crypto";
import { copyFile, mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";

export const WORK_CACHE_DIR = ".quantgate/cache";
const MANIFEST = "manifest.json";
const CACHE_SCHEMA = "quantgate.cache/v1";

/** What a cached result is. */
export type WorkKind = "quantized" | "calibration" | "float-eval" | (string & {});

export interface WorkKeyInputs {
  readonly kind: WorkKind;
  /** sha256 of the float model file. */
  readonly model: string;
  /** sha256 of the canonical recipe (quantized model, and calibration when the recipe decides what is collected). */
  readonly recipe?: string;
  /** The data files the result was computed from, with their sha256. */
  readonly data?: readonly { readonly path?: string; readonly sha256: string }[];
  readonly toolVersion: string;
  /** Whatever in the runtime can change the result: ONNX Runtime version, platform, arch, kernel backend, CPU where a choice is measured. */
  readonly runtime: Readonly<Record<string, string | number | undefined>>;
  /** Settings that change the result (evaluation settings, accuracy level, thread count for numerics). */
  readonly settings?: unknown;
}

/** Canonical JSON (sorted keys, undefined dropped) so the key does not depend on property order. */
export function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? "null" : canonical(v))).join(",")}]`;
  if (value && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

/**
 * The cache key of one piece of work: `<kind>-<first 32 hex of sha256>`. Data paths are left out (a
 * moved file with the same bytes is the same data); data order is kept only where it matters to the caller.
 */
export function workCacheKey(inputs: WorkKeyInputs): string {
  const material = canonical({
    v: CACHE_SCHEMA,
    kind: inputs.kind,
    model: inputs.model,
    recipe: inputs.recipe,
    data: (inputs.data ?? []).map((d) => d.sha256).sort(),
    tool: inputs.toolVersion,
    runtime: inputs.runtime,
    settings: inputs.settings,
  });
  const safeKind = String(inputs.kind).replace(/[^A-Za-z0-9_-]+/g, "-");
  return `${safeKind}-${createHash("sha256").update(material).digest("hex").slice(0, 32)}`;
}

// Values with typed arrays and maps (calibration statistics) survive a JSON round trip through tagged objects;
// typed arrays go to their own binary files so a Gram matrix is not turned into text.
type Tagged = { $map: [unknown, unknown][] } | { $typed: string; blob: number; length: number };
const TYPED: Record<string, { new (buf: ArrayBuffer): ArrayBufferView; BYTES_PER_ELEMENT: number }> = {
  Float64Array,
  Float32Array,
  Int32Array,
  Uint32Array,
  Int8Array,
  Uint8Array,
  Uint16Array,
  Int16Array,
  BigInt64Array,
  BigUint64Array,
};

export function encodeValue(value: unknown, blobs: Buffer[] = []): { json: string; blobs: Buffer[] } {
  const walk = (v: unknown): unknown => {
    if (ArrayBuffer.isView(v) && !(v instanceof DataView)) {
      const name = v.constructor.name;
      if (!TYPED[name]) throw new Error(`cannot cache a ${name}`);
      blobs.push(Buffer.from(v.buffer, v.byteOffset, v.byteLength));
      return { $typed: name, blob: blobs.length - 1, length: (v as unknown as { length: number }).length } satisfies Tagged;
    }
    if (v instanceof Map) return { $map: [...v.entries()].map(([k, x]) => [walk(k), walk(x)]) } satisfies Tagged;
    if (Array.isArray(v)) return v.map(walk);
    if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x)]));
    return v;
  };
  return { json: JSON.stringify(walk(value)), blobs };
}

export function decodeValue(json: string, blobs: readonly Buffer[]): unknown {
  const walk = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(walk);
    if (v && typeof v === "object") {
      const o = v as Record<string, unknown>;
      if (typeof o.$typed === "string" && typeof o.blob === "number") {
        const ctor = TYPED[o.$typed];
        const blob = blobs[o.blob];
        if (!ctor || !blob) throw new Error(`cache value refers to a missing ${String(o.$typed)} blob`);
        const copy = new ArrayBuffer(blob.byteLength);
        new Uint8Array(copy).set(blob);
        return new ctor(copy);
      }
      if (Array.isArray(o.$map)) return new Map((o.$map as [unknown, unknown][]).map(([k, x]) => [walk(k), walk(x)]));
      return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, walk(x)]));
    }
    return v;
  };
  return walk(JSON.parse(json));
}

interface Manifest {
  readonly schema: string;
  readonly key: string;
  readonly createdAt: string;
  readonly files: Record<string, { readonly bytes: number; readonly sha256: string }>;
  readonly meta?: unknown;
}

export interface CacheEvent {
  readonly kind: string;
  readonly key: string;
  readonly hit: boolean;
  readonly note?: string;
}

export interface WorkCacheOptions {
  /** Least recently written entries past this count are removed on save. */
  readonly maxEntries?: number;
  /** Turns the cache off: every restore misses and saves do nothing (the `cache: false` input). */
  readonly disabled?: boolean;
}

const sha256 = (b: Buffer): string => createHash("sha256").update(b).digest("hex");

/** A folder of entries `<dir>/<key>/` (manifest and files); writes are atomic (temp folder, then rename). */
export class WorkCache {
  readonly events: CacheEvent[] = [];
  constructor(
    readonly dir: string = WORK_CACHE_DIR,
    private readonly opts: WorkCacheOptions = {},
  ) {}

  private entryDir(key: string): string {
    if (!/^[A-Za-z0-9_-]+$/.test(key)) throw new Error(`invalid cache key "${key}"`);
    return path.join(this.dir, key);
  }

  private record(key: string, hit: boolean, note?: string): void {
    this.events.push({ kind: key.replace(/-[0-9a-f]{32}$/, ""), key, hit, ...(note ? { note } : {}) });
  }

  /** The entry's files (name -> absolute path) and meta, verified against the manifest; undefined on a miss. */
  async restore(key: string): Promise<{ files: Record<string, string>; meta: unknown } | undefined> {
    if (this.opts.disabled) {
      this.record(key, false, "cache disabled");
      return undefined;
    }
    const dir = this.entryDir(key);
    let manifest: Manifest;
    try {
      manifest = JSON.parse(await readFile(path.join(dir, MANIFEST), "utf8")) as Manifest;
    } catch {
      this.record(key, false);
      return undefined;
    }
    const files: Record<string, string> = {};
    for (const [name, info] of Object.entries(manifest.files)) {
      const file = path.join(dir, name);
      try {
        const bytes = await readFile(file);
        if (bytes.byteLength !== info.bytes || sha256(bytes) !== info.sha256) throw new Error("checksum mismatch");
      } catch (err) {
        this.record(key, false, `corrupt entry (${name}: ${(err as Error).message}); ignored`);
        await rm(dir, { recursive: true, force: true });
        return undefined;
      }
      files[name] = file;
    }
    this.record(key, true);
    return { files, meta: manifest.meta };
  }

  /** Stores files (name -> source path or bytes) and meta under the key, replacing an older entry. */
  async save(key: string, files: Record<string, string | Buffer>, meta?: unknown): Promise<void> {
    if (this.opts.disabled) return;
    const dest = this.entryDir(key);
    await mkdir(this.dir, { recursive: true });
    const tmp = path.join(this.dir, `.tmp-${randomBytes(6).toString("hex")}`);
    await mkdir(tmp, { recursive: true });
    try {
      const listed: Manifest["files"] = {};
      for (const [name, src] of Object.entries(files)) {
        if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new Error(`invalid cache file name "${name}"`);
        const target = path.join(tmp, name);
        if (typeof src === "string") await copyFile(src, target);
        else await writeFile(target, src);
        const bytes = await readFile(target);
        listed[name] = { bytes: bytes.byteLength, sha256: sha256(bytes) };
      }
      const manifest: Manifest = { schema: CACHE_SCHEMA, key, createdAt: new Date().toISOString(), files: listed, meta };
      await writeFile(path.join(tmp, MANIFEST), JSON.stringify(manifest, null, 1));
      await rm(dest, { recursive: true, force: true });
      await rename(tmp, dest);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
    await this.prune();
  }

  /** Stores a value (objects, arrays, Maps, typed arrays) under the key. */
  async saveValue(key: string, value: unknown, meta?: unknown): Promise<void> {
    const { json, blobs } = encodeValue(value);
    const files: Record<string, Buffer> = { "value.json": Buffer.from(json) };
    blobs.forEach((b, i) => (files[`blob-${i}.bin`] = b));
    await this.save(key, files, meta);
  }

  async restoreValue<T>(key: string): Promise<T | undefined> {
    const entry = await this.restore(key);
    if (!entry || !entry.files["value.json"]) return undefined;
    const blobs: Buffer[] = [];
    for (let i = 0; entry.files[`blob-${i}.bin`]; i++) blobs.push(await readFile(entry.files[`blob-${i}.bin`]!));
    return decodeValue(await readFile(entry.files["value.json"], "utf8"), blobs) as T;
  }

  /** Copies a cached file to `dest`; false on a miss. */
  async restoreFile(key: string, name: string, dest: string): Promise<boolean> {
    const entry = await this.restore(key);
    const src = entry?.files[name];
    if (!src) return false;
    await mkdir(path.dirname(dest), { recursive: true });
    await copyFile(src, dest);
    return true;
  }

  private async prune(): Promise<void> {
    const max = this.opts.maxEntries ?? 64;
    const names = (await readdir(this.dir)).filter((n) => !n.startsWith("."));
    if (names.length <= max) return;
    const dated = await Promise.all(names.map(async (n) => ({ n, t: (await stat(path.join(this.dir, n))).mtimeMs })));
    dated.sort((a, b) => a.t - b.t);
    for (const { n } of dated.slice(0, names.length - max)) await rm(path.join(this.dir, n), { recursive: true, force: true });
  }

  /** Hits and misses of this run, for the report and the summary. */
  summary(): CacheSummary {
    return {
      hits: this.events.filter((e) => e.hit).map((e) => e.kind),
      misses: this.events.filter((e) => !e.hit).map((e) => e.kind),
      events: [...this.events],
    };
  }
}

export interface CacheSummary {
  readonly hits: string[];
  readonly misses: string[];
  readonly events: CacheEvent[];
}

/** One line for the summary: "cache: 3 hits (quantized, calibration, float-eval), 0 misses". */
export function cacheSummaryLine(s: CacheSummary): string {
  const list = (xs: string[]): string => (xs.length ? ` (${xs.join(", ")})` : "");
  return `Cache: ${s.hits.length} hit${s.hits.length === 1 ? "" : "s"}${list(s.hits)}, ${s.misses.length} miss${s.misses.length === 1 ? "" : "es"}${list(s.misses)}`;
}
